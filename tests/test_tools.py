"""Training tools: checkpoints and resume, NaN guard, plots, confusion matrix, get_runs/RunManager."""

from collections import OrderedDict

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

import engine
import model
import utils

# --------------------------------------------------------------------------- checkpoints


def test_atomic_save_survives_a_crash_mid_save(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    engine.atomic_save({"weights": torch.ones(3)}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        engine.atomic_save({"weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(engine.load_checkpoint(path)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_loading_into_another_architecture_names_keys_and_shapes(tmp_path):
    engine.atomic_save({"model": model.S5Net().state_dict()}, tmp_path / "s5.pt")
    state = engine.load_checkpoint(tmp_path / "s5.pt")["model"]
    with pytest.raises(engine.CheckpointMismatchError) as info:
        engine.load_weights(model.FashionNet(), state)
    message = str(info.value)
    assert "FashionNet" in message and "missing keys: fc1.bias" not in message
    assert "unexpected keys: conv3.bias" in message and "missing keys: out.bias, out.weight" in message
    assert "conv1.weight: checkpoint (32, 1, 3, 3) vs model (6, 1, 5, 5)" in message


def test_missing_or_garbage_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(engine.CheckpointError, match=r"checkpoint .*nope.pt does not exist"):
        engine.load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(engine.CheckpointError) as info:
        engine.load_checkpoint(tmp_path / "bad.pt")
    assert str(tmp_path / "bad.pt") in str(info.value) and "not a PyTorch checkpoint" in str(info.value)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pt")  # a whole module: not weights-only
    with pytest.raises(engine.CheckpointError) as info:
        engine.load_checkpoint(tmp_path / "pickled.pt")
    assert "other than tensors" in str(info.value) and "weights_only=False" not in str(info.value)


# --------------------------------------------------------------------------- predictions and plots


@pytest.fixture(scope="module")
def predictions(data_root):
    torch.manual_seed(0)
    net = model.build("fashion")
    loaders = utils.get_loaders("fashion_mnist", 100, torch.device("cpu"), limit=1000, test_limit=500)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    utils.train_epoch(net, loaders.train, F.cross_entropy, optimizer, torch.device("cpu"))
    probs, targets = utils.get_all_preds(net, loaders.test)
    return net, loaders, probs, targets


def test_plots_have_titles_labels_and_axes(predictions):
    net, loaders, probs, targets = predictions
    history = [{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.6, "val_loss": 0.9, "val_accuracy": 0.65},
               {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.78}]
    fig = utils.plot_history(history)
    assert len(fig.axes) == 2 and all(ax.get_title() and ax.get_xlabel() == "epoch" for ax in fig.axes)
    images, labels = next(iter(loaders.test))
    fig2 = utils.show_images(images[:16], labels[:16], "fashion_mnist", title="Some clothes")
    assert len(fig2.axes) == 16 and fig2._suptitle.get_text() == "Some clothes"
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(probs)))  # get_all_preds: probabilities
    fig4 = utils.plot_mistakes(loaders.test.dataset, probs, targets, "fashion_mnist", k=8)
    assert "most confident mistakes" in fig4._suptitle.get_text()
    grid = utils.image_grid(images[:16], "fashion_mnist")
    assert grid.shape[0] == 3 and 0 <= grid.min() and grid.max() <= 1
    plt.close("all")


def test_taught_fit_keeps_the_weights_of_the_lowest_validation_loss(data_root, tmp_path):
    cpu = torch.device("cpu")
    loaders = utils.get_loaders("mnist", 100, cpu, limit=600, val_size=200, loader="fast")
    torch.manual_seed(0)
    net = model.MLP()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    ck = tmp_path / "best.pt"
    history = utils.fit(net, loaders.train, loaders.val, F.nll_loss, optimizer, 3, cpu, checkpoint=ck, verbose=False)
    best = min(history, key=lambda row: row["val_loss"])
    state = torch.load(ck, weights_only=True)
    assert set(state) == {"model", "epoch", "val_loss"} and (state["epoch"], state["val_loss"]) == (best["epoch"],
                                                                                                  best["val_loss"])
    kept = model.MLP()
    kept.load_state_dict(state["model"])
    assert utils.evaluate(kept, loaders.val, F.nll_loss, cpu) == (best["val_loss"], best["val_accuracy"])
    with pytest.raises(ValueError, match="pass a val_loader too"):
        utils.fit(net, loaders.train, None, F.nll_loss, optimizer, 1, cpu, checkpoint=ck, verbose=False)


def test_most_confident_mistakes_are_wrong_and_sorted(predictions):
    _, _, probs, targets = predictions
    idx = utils.most_confident_mistakes(probs, targets, k=5)
    conf = probs[idx].max(dim=1).values
    assert (probs[idx].argmax(dim=1) != targets[idx]).all()
    assert torch.all(conf[:-1] >= conf[1:])


# --------------------------------------------------------------------------- experiments


def test_get_runs_product_size_and_order():
    runs = utils.get_runs(OrderedDict(lr=[0.01, 0.001], batch_size=[100, 1000], shuffle=[True]))
    assert len(runs) == 4
    assert [(r.lr, r.batch_size) for r in runs] == [(0.01, 100), (0.01, 1000), (0.001, 100), (0.001, 1000)]
    assert runs[0]._fields == ("lr", "batch_size", "shuffle")


def test_run_manager_writes_tensorboard_events_and_one_row_per_epoch(data_root, tmp_path):
    manager = utils.RunManager(log_dir=tmp_path / "runs")
    train_set = utils.get_dataset("fashion_mnist", train=True, limit=300)
    runs = utils.get_runs(OrderedDict(lr=[0.01, 0.001], batch_size=[100]))
    for run in runs:
        torch.manual_seed(0)
        net = model.build("fashion")
        loader = torch.utils.data.DataLoader(train_set, batch_size=run.batch_size)
        optimizer = torch.optim.Adam(net.parameters(), lr=run.lr)
        manager.begin_run(run, net, loader, name="fashion_mnist")
        for _ in range(2):
            manager.begin_epoch()
            for images, labels in loader:
                preds = net(images)
                loss = torch.nn.functional.cross_entropy(preds, labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                manager.track(loss, preds, labels)
            manager.end_epoch()
        manager.end_run()
    table = manager.results()
    assert len(table) == 4 and list(table["epoch"]) == [1, 2, 1, 2] and list(table["lr"]) == [0.01, 0.01, 0.001, 0.001]
    event_files = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    assert len(event_files) == 2 and all(f.stat().st_size > 0 for f in event_files)
