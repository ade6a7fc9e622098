"""The same code on every device: each test runs on the CPU (in CI) and on CUDA or Apple MPS where present.

`pytest -m cuda` (or `-m mps`) runs the accelerator legs. A device is judged against the CPU's result
for the same seed and data, never against a fixed accuracy that only one machine ever produced:
GPU kernels add numbers in another order than the CPU does (and NVIDIA GPUs since Ampere run float32
convolutions in TF32, with a 10-bit mantissa, by default), so their floats differ, and a short
training run amplifies that into a slightly different model. A device may fall below the CPU's
accuracy by at most what an unlucky *seed* costs on the CPU, measured with the same commands.
On the CPU leg, where that comparison would be with itself, each test checks the CPU against an
independent reference instead (a computation written out in the test, a floor the CPU's own seeds
clear), so CI tests something on every leg. The settings that depend on the device type are checked
without the device, at the end of this file.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from float64_guard import Float64Guard

import engine
import model
import train
import utils

CPU = torch.device("cpu")
# Pixels after normalisation lie in about [-0.42, 2.82]; one unit in the last place of a float32 there is
# at most 2.4e-7. A GPU divides by the standard deviation as a multiplication by its reciprocal.
PIXEL_TOLERANCE = 1e-5
# train.py (its default, QuickNet) with TRAIN_ARGS on the CPU, seeds 1-5: test accuracy 92.68-94.96% (seed 1,
# used here, 93.16%) on a 2-core AMD EPYC. A device's run is judged like another seed's: within that whole
# 2.3-point spread. On the CPU leg it must clear a floor that every CPU run measured so far clears with room to
# spare: in smoke mode on a 2-core Intel Xeon, seeds 1-5 gave 89.95-92.35% with the fast loader and
# 88.75-93.00% with the torchvision loader (its PIL augmentation draws differently); chance is 10%.
TRAIN_ARGS = ["--epochs", "2", "--limit", "2500", "--val-size", "500", "--batch-size", "32"]
TRAIN_MARGIN = 0.023
CPU_FLOOR = 0.85
# One epoch of compact (QuickNet, width 11) on 2,000 images, batch 32, on a 2-core Intel Xeon: training accuracy
# 0.518 for seed 0 (used here), 0.430-0.518 for seeds 0-2 (the unluckiest 0.088 lower); bf16 or fp16 within
# 0.022 of float32 for each seed. A lower precision is judged like another seed.
AMP_MARGIN = 0.088


def reference_batches(ds, seed: int, epoch: int, batch_size: int, augment):
    """What a shuffling TensorLoader must serve, computed without it: order, then per batch warp and normalise."""
    generator = torch.Generator().manual_seed(utils.epoch_seed(seed, epoch))
    order = torch.randperm(len(ds), generator=generator)
    base, indices = utils.base_and_indices(ds)
    for start in range(0, len(order), batch_size):
        chosen = indices[order[start:start + batch_size]]
        x = augment(base.data[chosen].unsqueeze(1).float() / 255, generator)
        yield (x - utils.MNIST_MEAN) / utils.MNIST_STD, torch.as_tensor(base.targets)[chosen]


def test_fast_loader_keeps_the_data_on_the_device_and_matches_the_cpu(data_root, device):
    ds = utils.get_dataset("mnist", True, limit=512)
    rotate = utils.batch_augmentation("rotate")
    on_cpu, on_device = (utils.TensorLoader(ds, "mnist", d, 128, shuffle=True, augment=rotate, seed=7)
                         for d in (CPU, device))
    assert on_device.images.device.type == device.type
    assert on_device.generator.device.type == "cpu"  # shuffle and augmentation: drawn on the CPU
    on_cpu.set_epoch(1)
    on_device.set_epoch(1)
    if device.type == "cpu":  # against the loader's rule written out: shuffle, then each batch's own warp
        on_cpu = reference_batches(ds, seed=7, epoch=1, batch_size=128, augment=rotate)
    for (x_cpu, y_cpu), (x_dev, y_dev) in zip(on_cpu, on_device, strict=True):
        assert x_dev.device.type == device.type and y_dev.device.type == device.type
        assert torch.equal(y_cpu, y_dev.cpu())  # labels are integers: the same order on every device
        assert torch.allclose(x_cpu, x_dev.cpu(), rtol=0, atol=1e-4)  # the same warp, up to kernel rounding


def test_fast_loader_without_augmentation_matches_torchvision_within_the_pixel_tolerance(data_root, device):
    loaders = [utils.get_loaders("mnist", 256, d, limit=1000, val_size=500, loader=kind, seed=3).val
               for d, kind in ((CPU, "torchvision"), (device, "fast"))]
    for (x_tv, y_tv), (x_fast, y_fast) in zip(*loaders, strict=True):
        assert torch.equal(y_tv, y_fast.cpu())
        assert torch.allclose(x_tv, x_fast.cpu(), rtol=0, atol=PIXEL_TOLERANCE)


def test_evaluation_on_the_device_matches_the_cpu(data_root, device):
    torch.manual_seed(0)
    net = model.build("compact").eval()
    test = utils.get_dataset("mnist", False, limit=1000)
    if device.type == "cpu":  # against all 1,000 images at once: batches of 256 leave a last one of 232
        images, labels = map(torch.stack, zip(*[(x, torch.tensor(y)) for x, y in test]))
        with torch.no_grad():
            output = net(images)
        cpu_loss = F.cross_entropy(output, labels).item()
        cpu_accuracy = (output.argmax(1) == labels).float().mean().item()
    else:
        cpu_loss, cpu_accuracy = utils.evaluate(net, utils.TensorLoader(test, "mnist", CPU, 256), F.cross_entropy, CPU)
    loss, accuracy = utils.evaluate(net.to(device), utils.TensorLoader(test, "mnist", device, 256), F.cross_entropy,
                                    device)
    assert loss == pytest.approx(cpu_loss, rel=1e-3)
    assert accuracy == pytest.approx(cpu_accuracy, abs=0.002)  # at most 2 of 1,000 images differ


def train_py(device: torch.device, loader: str, tmp_path) -> dict:
    """train.py with TRAIN_ARGS on `device`, saving a checkpoint; the results it returns."""
    args = train.parse_args(["--device", device.type, "--loader", loader, *TRAIN_ARGS,
                             "--save", str(tmp_path / f"{device.type}.pt"), "--json", str(tmp_path / "out.json")])
    return train.run(args)


@pytest.mark.parametrize("loader", ["fast", "torchvision"])
def test_train_py_learns_on_the_device_as_on_the_cpu_without_float64_and_resumes_on_the_cpu(
        data_root, tmp_path, device, loader):
    # Apple MPS has no float64: no tensor on the training device may be float64 (on the CPU leg, none at all).
    with Float64Guard(include_cpu=device.type == "cpu") as guard:
        result = train_py(device, loader, tmp_path)
    assert guard.ops == [], f"float64 tensors (unsupported on Apple MPS) made by {sorted(set(guard.ops))}"
    history = result["history"]
    assert result["device"].startswith(device.type)
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # it learned
    if device.type == "cpu":
        assert result["test_accuracy"] >= CPU_FLOOR, result["test_accuracy"]  # as well as the CPU's seeds do
        return  # resuming on the CPU: tests/test_reliability.py
    cpu = train_py(CPU, loader, tmp_path / "cpu")
    assert result["test_accuracy"] >= cpu["test_accuracy"] - TRAIN_MARGIN, (result["test_accuracy"],
                                                                            cpu["test_accuracy"])
    ck, out = tmp_path / f"{device.type}.pt", tmp_path / "resumed.json"
    state = engine.load_checkpoint(ck)  # saved from the device, read on the CPU
    assert all(t.device.type == "cpu" for t in state["model"].values())
    assert train.parse_args(["--resume", str(ck), "--device", "cpu"]).epochs == 2
    assert train.main(["--resume", str(ck), "--device", "cpu", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["device"] == "cpu"


def one_amp_epoch(device: torch.device, amp: torch.dtype | None) -> tuple[float, float, set]:
    """One epoch of compact (QuickNet, width 11) in `amp` precision: training loss, accuracy, the first conv's dtypes."""
    loader = engine.get_loaders("mnist", 32, device, limit=2000, loader="fast").train  # with MNIST's rotation
    torch.manual_seed(0)
    net = model.build("compact").to(device)  # the network the margins above were measured with
    seen = set()
    net.features[0][0].register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loss, accuracy = engine.train_epoch(net, loader, F.cross_entropy, optimizer, device, amp=amp)
    trained_in = set(seen)  # evaluation below runs in float32 (engine.evaluate)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # the weights stay float32
    val_loss, _ = engine.evaluate(net, loader, F.cross_entropy, device)
    assert torch.isfinite(torch.tensor([loss, val_loss])).all()
    return loss, accuracy, trained_in


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "fp16-with-gradscaler"])
def test_autocast_trains_in_lower_precision_as_well_as_float32_on_the_cpu(data_root, device, amp):
    if device.type == "mps":
        pytest.skip("train.py --amp uses no autocast on Apple MPS (engine.amp_dtype)")
    _, cpu_accuracy, _ = one_amp_epoch(CPU, None)
    loss, accuracy, seen = one_amp_epoch(device, amp)  # float16 goes through a GradScaler (engine.train_epoch)
    assert seen == {amp}  # the convolutions ran in the lower precision
    assert accuracy >= cpu_accuracy - AMP_MARGIN, (accuracy, cpu_accuracy)


# --------------------------------------------------------------------------- the same rules, without the device


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16)], ids=["T4", "A100", "H100"])
def test_amp_on_cuda_uses_bf16_from_ampere_on_and_fp16_with_scaling_before(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() also says True on a T4 (it counts emulation): the capability decides.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert engine.amp_dtype(torch.device("cuda")) == expected


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, None)], ids=["native-bf16", "emulated"])
def test_amp_on_a_cpu_uses_bf16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: native)
    assert engine.amp_dtype(CPU) == expected
    assert engine.amp_dtype(torch.device("mps")) is None  # autocast gains nothing there


def test_native_bf16_is_read_from_the_cpu_flags():
    flags = "processor\t: 0\nflags\t\t: fpu avx2 avx512f {}\nbugs\t\t: spectre\n"
    assert engine.bf16_in_cpu_flags(flags.format("avx512_bf16 amx_tile"))
    assert engine.bf16_in_cpu_flags(flags.format("amx_bf16"))
    assert not engine.bf16_in_cpu_flags(flags.format("avx512_fp16"))  # AVX-512 without bf16
    assert not engine.bf16_in_cpu_flags("model name\t: avx512_bf16 in a name, not a flag\n")


@pytest.mark.parametrize("kind, pinned, workers", [("cpu", False, "none"), ("cuda", True, "some"),
                                                   ("mps", False, "some")])
def test_loader_settings_per_device_type(kind, pinned, workers):
    kwargs = utils.loader_kwargs(torch.device(kind))
    assert kwargs["pin_memory"] is pinned  # page-locked memory only speeds host->CUDA copies
    assert (kwargs["num_workers"] == 0) if workers == "none" else (kwargs["num_workers"] >= 1)
    assert "persistent_workers" not in kwargs  # workers restart per epoch, reseeded from (seed, epoch)


def test_train_pys_torchvision_loader_takes_the_settings_of_its_device(data_root):
    kwargs = utils.loader_kwargs(CPU, num_workers=1)
    train_loader = engine.get_loaders("mnist", 64, CPU, limit=256, num_workers=1).train
    assert (train_loader.num_workers, train_loader.pin_memory) == (kwargs["num_workers"], kwargs["pin_memory"])
