"""The CUDA and Apple MPS paths. They run only where the device exists: `pytest -m cuda` or `pytest -m mps`.

On a machine without the device every test here is skipped (CI has neither). Each test compares
the device with the CPU on real MNIST, so a GPU machine can run this file as it is.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from float64_guard import Float64Guard

import model
import train
import utils

CPU = torch.device("cpu")
DEVICES = [
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]),
    pytest.param("mps", marks=[pytest.mark.mps,
                               pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no Apple MPS here")]),
]


@pytest.mark.parametrize("device", DEVICES)
def test_fast_loader_keeps_the_data_on_the_device_and_matches_the_cpu(data_root, device):
    ds = utils.get_dataset("mnist", True, limit=512)
    loaders = {d: utils.TensorLoader(ds, "mnist", torch.device(d), 128, shuffle=True, augment=True, seed=7)
               for d in ("cpu", device)}
    assert loaders[device].images.device.type == device
    for loader in loaders.values():
        loader.set_epoch(1)
    for (x_cpu, y_cpu), (x_dev, y_dev) in zip(loaders["cpu"], loaders[device]):
        assert x_dev.device.type == device and y_dev.device.type == device
        assert torch.equal(y_cpu, y_dev.cpu())  # CPU generator: the same order on every device
        assert torch.allclose(x_cpu, x_dev.cpu(), atol=1e-4)  # the same augmentation, up to kernel rounding


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_on_the_device_matches_the_cpu(data_root, device):
    torch.manual_seed(0)
    net = model.CompactNet()
    results = {}
    for d in ("cpu", device):
        loaders = utils.get_loaders("mnist", 256, torch.device(d), limit=512, test_limit=1000, loader="fast")
        results[d] = utils.evaluate(net.to(d), loaders.test, F.cross_entropy, torch.device(d))
    assert results[device][0] == pytest.approx(results["cpu"][0], rel=1e-3)
    assert results[device][1] == pytest.approx(results["cpu"][1], abs=0.002)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("loader", ["fast", "torchvision"])
def test_train_py_runs_on_the_device_without_float64_and_resumes_on_the_cpu(data_root, tmp_path, device, loader):
    out, ck = tmp_path / "out.json", tmp_path / "ck.pt"
    args = train.parse_args(["--device", device, "--loader", loader, "--epochs", "2", "--limit", "1000",
                             "--val-size", "200", "--save", str(ck), "--json", str(out)])
    with Float64Guard(include_cpu=False) as guard:
        result = train.run(args)
    assert guard.ops == [], sorted(set(guard.ops))
    assert result["device"].startswith(device) and result["test_accuracy"] > 0.2
    state = utils.load_checkpoint(ck)  # saved from the device, read on the CPU
    assert all(t.device.type == "cpu" for t in state["model"].values())
    args = train.parse_args(["--resume", str(ck), "--device", "cpu", "--json", str(out)])
    assert args.epochs == 2 and train.main(["--resume", str(ck), "--device", "cpu", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["device"] == "cpu"


@pytest.mark.parametrize("device", DEVICES)
def test_dataloader_settings_suit_the_device(device):
    kwargs = utils.loader_kwargs(torch.device(device))
    assert kwargs["pin_memory"] is (device == "cuda") and kwargs["num_workers"] >= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_amp_on_cuda_trains_in_lower_precision_with_finite_losses(data_root):
    device = torch.device("cuda")
    amp = utils.amp_dtype(device)
    assert amp in (torch.bfloat16, torch.float16)
    loader = utils.get_loaders("mnist", 128, device, limit=2000, loader="fast").train
    torch.manual_seed(0)
    net = model.build("quick").to(device)
    seen = []
    net.features[0][0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loss, accuracy = utils.train_epoch(net, loader, F.cross_entropy, optimizer, device, amp=amp)
    assert set(seen) == {amp} and all(p.dtype == torch.float32 for p in net.parameters())
    assert loss == loss and accuracy > 0.3  # finite, and it learned (float16 goes through the GradScaler)
