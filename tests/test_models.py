"""Every network of the course: parameter counts, shapes, input errors, layer tables, one real step."""

import inspect

import pytest
import torch

import model
import train
import utils

EXPECTED_PARAMS = {
    "mlp": 203_530, "lenet": 81_194, "deep": 6_379_786, "s5": 593_200, "fashion": 32_998,
    "compact": 5_796, "quick": 12_026, "fashion_best": 75_450,
}
BUDGETS = {"compact": 6_000, "fashion_best": 99_999}  # notebook 09's budgets, as maxima


def test_registry_has_the_course_models():
    assert {"deep", "fashion", "lenet", "mlp", "s5"} <= set(model.MODELS)
    assert set(model.MODELS) == set(model.RECIPES)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name):
    assert model.count_parameters(model.build(name)) == EXPECTED_PARAMS[name] <= BUDGETS.get(name, float("inf"))


@pytest.mark.parametrize("name", sorted(model.MODELS))
def test_output_shape_is_batch_by_ten(name):
    net = model.build(name).eval()
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", sorted(model.MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (2, 3, 28, 28), (2, 1, 20, 20), (2, 784)])
def test_wrong_input_shape_names_the_expected_shape(name, shape):
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, (28, 28|32, 32)\), got"):
        model.build(name)(torch.randn(*shape))


@pytest.mark.parametrize("name", sorted(model.MODELS))
def test_a_class_copied_alone_builds_the_same_model(name):
    """A class's source, the torch imports and check_input are all it needs: no base class, no helpers."""
    factory = model.MODELS[name]  # a class, or a class with other settings (functools.partial)
    cls, settings = getattr(factory, "func", factory), getattr(factory, "keywords", {})
    namespace: dict = {}
    source = "\n".join([
        "import torch", "import torch.nn as nn", "import torch.nn.functional as F",
        inspect.getsource(model.check_input), inspect.getsource(cls),
    ])
    exec(compile(source, f"<{cls.__name__} copied alone>", "exec"), namespace)
    torch.manual_seed(0)
    copied = namespace[cls.__name__](**settings).eval()
    torch.manual_seed(0)
    original = model.build(name).eval()
    x = torch.randn(2, 1, 28, 28)
    assert model.count_parameters(copied) == EXPECTED_PARAMS[name]
    assert torch.equal(copied(x), original(x))
    assert type(original).__mro__[1] is torch.nn.Module  # a plain nn.Module subclass


@pytest.mark.parametrize("name", sorted(model.MODELS))
def test_each_recipe_names_the_loss_that_fits_what_its_model_returns(name):
    net = model.build(name).eval()
    out = net(torch.randn(4, 1, 28, 28))
    returns_log_probs = torch.allclose(out.exp().sum(dim=1), torch.ones(4))
    assert model.RECIPES[name]["loss"] == ("nll" if returns_log_probs else "cross_entropy")


def test_lenet_keeps_the_32x32_walkthrough_and_pads_28x28():
    net = model.build("lenet").eval()
    assert net(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    digit = torch.randn(1, 1, 28, 28)
    padded = torch.nn.functional.pad(digit, (2, 2, 2, 2), mode="replicate")
    assert torch.equal(net(digit), net(padded))


def test_compact_is_quicknet_at_width_11_and_the_width_scales_it():
    compact = model.build("compact")
    assert isinstance(compact, model.QuickNet) and compact.classifier.in_channels == 11
    assert repr(compact) == repr(model.QuickNet(width=11))
    smaller = model.QuickNet(width=10)  # notebook 09's stretch exercise (instructors/smaller_compact.py)
    assert model.count_parameters(smaller) == 4_820 and smaller(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.Dropout) for m in compact.modules())


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match="expected one of compact, deep, fashion"):
        model.build("resnet")


@pytest.mark.parametrize("way", ["constructor", "ordered_dict", "add_module"])
def test_fashion_sequential_matches_the_class(way):
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(0)
    reference = model.FashionNet()
    torch.manual_seed(0)
    seq = model.fashion_sequential(way)
    assert torch.equal(reference(x), seq(x))
    if way != "constructor":
        assert seq.conv1.weight.shape == (6, 1, 5, 5)


def test_mlp_sequential_matches_the_class_in_eval_mode():
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(0)
    reference = model.MLP().eval()
    torch.manual_seed(0)
    assert torch.allclose(reference(x), model.mlp_sequential()(x))


def test_mlp_dropout_is_random_in_train_and_off_in_eval():
    net, x = model.MLP(dropout=0.5), torch.randn(2, 1, 28, 28)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def rf_by_name(rows):
    return {r["name"]: (r["rf"], r["jump"]) for r in rows}


def test_layer_table_receptive_fields_of_the_deep_net():
    # By hand: rf += (k - 1) * jump; jump *= stride. 3x3 convs stride 1, 2x2 pools stride 2.
    # conv1 1+2=3, conv2 5, pool1 5+1=6 (jump 2), conv3 6+4=10, conv4 14, pool2 16 (jump 4),
    # conv5 16+8=24, conv6 32, conv7 40.
    rows = rf_by_name(utils.layer_table(model.DeepNet(), (1, 28, 28), show=False))
    assert rows["conv1"] == (3, 1) and rows["conv2"] == (5, 1) and rows["pool1"] == (6, 2)
    assert rows["conv3"] == (10, 2) and rows["conv4"] == (14, 2) and rows["pool2"] == (16, 4)
    assert rows["conv5"] == (24, 4) and rows["conv6"] == (32, 4) and rows["conv7"] == (40, 4)


def test_layer_table_sees_functional_pools_in_s5_and_lenet():
    # S5: conv 3, conv 5, F.max_pool2d 6 (jump 2), conv 10, conv 14, F.max_pool2d 16 (jump 4).
    rows = utils.layer_table(model.S5Net(), (1, 28, 28), show=False)
    assert [(r["rf"], r["jump"]) for r in rows if r["name"].startswith(("conv", "F.max"))] == [
        (3, 1), (5, 1), (6, 2), (10, 2), (14, 2), (16, 4)]
    assert rows[-1]["output_shape"] == (10,) and sum(r["params"] for r in rows) == 593_200
    # LeNet on 32x32: conv 3, pool 4 (jump 2), conv 4+2*2=8, pool 10 (jump 4).
    lenet = rf_by_name(utils.layer_table(model.LeNet(), (1, 32, 32), show=False))
    assert lenet["conv1"] == (3, 1) and lenet["conv2"] == (8, 2)
    assert [r for r in utils.layer_table(model.LeNet(), (1, 32, 32), show=False)
            if r["name"] == "fc1"][0]["rf"] == "all"


@pytest.fixture(scope="module")
def mnist_batch(data_root):
    loaders = utils.get_loaders("mnist", 16, torch.device("cpu"), limit=64)  # not augmented
    return next(iter(loaders.train))


@pytest.mark.parametrize("name", sorted(model.MODELS))
def test_one_optimiser_step_on_real_mnist_gives_a_finite_loss(name, mnist_batch):
    images, labels = mnist_batch
    net = model.build(name)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    before = [p.detach().clone() for p in net.parameters()]
    loss = train.LOSSES[model.RECIPES[name]["loss"]](net(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_quicknet_layer_plan_matches_its_docstring():
    rows = {r["name"]: r for r in utils.layer_table(model.build("compact"), show=False)}
    plan = {"features.0.0": (3, (11, 13, 13)), "features.1.0": (7, (11, 13, 13)), "features.2.0": (11, (11, 11, 11)),
            "features.3.0": (15, (11, 9, 9)), "features.4.0": (19, (11, 7, 7)), "features.5.0": (23, (11, 5, 5))}
    assert {name: (rows[name]["rf"], tuple(rows[name]["output_shape"])) for name in plan} == plan
    fashion = {r["name"]: r for r in utils.layer_table(model.FashionBestNet(), show=False)}
    assert fashion["features.6.0"]["rf"] == 30 and tuple(fashion["features.7"]["output_shape"]) == (64, 3, 3)
