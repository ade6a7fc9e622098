"""Reliability of train.py and the engine: resume checks, file modes, NaN guard, early errors."""

import json
import os
import stat
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

import engine
import model
import train
import utils

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
SMALL = ["--limit", "600", "--epochs", "2"]


def exit_message(argv: list[str], capsys) -> str:
    """Run train.main, expect argparse's exit status 2, and return what it printed to stderr."""
    with pytest.raises(SystemExit) as info:
        train.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def weights(path) -> dict:
    return engine.load_checkpoint(path)["model"]


# --------------------------------------------------------------------------- 1. ranks draw their own randomness
# (no float64 on the training device, which Apple MPS lacks: tests/test_devices.py)


def test_dropout_seed_differs_per_rank(monkeypatch):
    loader = torch.utils.data.DataLoader(range(8))  # no shuffle: only the global seed changes
    engine.seed_epoch(5, 3, loader)
    rank0 = torch.initial_seed()
    monkeypatch.setattr(engine, "process_rank", lambda: 1)
    engine.seed_epoch(5, 3, loader)
    assert torch.initial_seed() != rank0
    assert rank0 == utils.epoch_seed(5, 3)  # rank 0 (and single-process runs) keep the epoch's seed: results stand


# --------------------------------------------------------------------------- 2. resume refuses what it cannot honour


@pytest.fixture(scope="module")
def sgd_checkpoint(data_root, tmp_path_factory) -> Path:
    """An MLP run of 2 (of later 3) epochs with StepLR, validation split and a non-default seed."""
    ck = tmp_path_factory.mktemp("resume") / "ck.pt"
    argv = ["--model", "mlp", "--limit", "600", "--val-size", "100", "--seed", "4", "--epochs", "2",
            "--scheduler", "step", "--save", str(ck)]
    assert train.main(argv) == 0
    return ck


@pytest.mark.parametrize("extra, named", [
    (["--lr", "0.5"], ["--lr 0.5 (checkpoint: 0.05)"]),
    (["--optimizer", "adam"], ["--optimizer adam (checkpoint: sgd)"]),
    (["--model", "fashion"], ["--model fashion (checkpoint: mlp)"]),
    (["--seed", "1", "--val-size", "50", "--limit", "500", "--batch-size", "64"],
     ["--batch-size 64 (checkpoint: 128)", "--limit 500 (checkpoint: 600)", "--seed 1 (checkpoint: 4)",
      "--val-size 50 (checkpoint: 100)"]),
])
def test_resume_with_a_changed_option_is_refused_naming_it(sgd_checkpoint, capsys, extra, named):
    before = sgd_checkpoint.read_bytes()
    err = exit_message(["--resume", str(sgd_checkpoint), "--epochs", "3", *extra], capsys)
    assert "cannot resume" in err and all(text in err for text in named), err
    assert "Traceback" not in err and "KeyError" not in err
    assert sgd_checkpoint.read_bytes() == before


def test_resume_takes_the_checkpoints_options(sgd_checkpoint, tmp_path):
    resumed = tmp_path / "ck.pt"
    resumed.write_bytes(sgd_checkpoint.read_bytes())
    args = train.parse_args(["--resume", str(resumed), "--epochs", "3"])
    assert (args.model, args.seed, args.val_size, args.limit, args.lr) == ("mlp", 4, 100, 600, 0.05)
    out = tmp_path / "out.json"
    assert train.main(["--resume", str(resumed), "--epochs", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [row["epoch"] for row in result["history"]] == [1, 2, 3]
    assert all("val_loss" in row for row in result["history"])
    assert result["args"]["seed"] == 4 and result["args"]["lr"] == 0.05  # what the run really used
    history = engine.load_checkpoint(resumed)["history"]
    assert isinstance(history, list) and [row["epoch"] for row in history] == [1, 2, 3]


def test_resume_of_a_model_this_script_does_not_have_is_refused(sgd_checkpoint, tmp_path, capsys):
    state = engine.load_checkpoint(sgd_checkpoint)
    state["extra"]["args"]["model"] = "compact_no_dropout"  # e.g. a model of another version of the course
    torch.save(state, tmp_path / "variant.pt")
    err = exit_message(["--resume", str(tmp_path / "variant.pt")], capsys)
    assert "was trained with model 'compact_no_dropout', which is not one of" in err and "Traceback" not in err


def test_resume_cannot_shorten_a_run(sgd_checkpoint, capsys):
    err = exit_message(["--resume", str(sgd_checkpoint), "--epochs", "1"], capsys)
    assert "already holds 2 epochs" in err


@pytest.mark.parametrize("options", [
    ["--model", "compact", "--scheduler", "onecycle", "--val-size", "100"],
    ["--model", "mlp", "--scheduler", "step", "--loader", "torchvision", "--num-workers", "1"],
], ids=["onecycle-fast-loader", "steplr-dataloader-workers"])
def test_a_run_interrupted_and_resumed_equals_an_unbroken_one(data_root, tmp_path, monkeypatch, options):
    common = [*options, "--limit", "400", "--epochs", "3"]
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    assert train.main([*common, "--save", str(full)]) == 0
    real_save = engine.save_training_state

    def save_then_stop(path, model, optimizer, scheduler, history, extra=None):
        real_save(path, model, optimizer, scheduler, history, extra)
        if history[-1]["epoch"] == 2:
            raise KeyboardInterrupt("interrupted after epoch 2")

    monkeypatch.setattr(engine, "save_training_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train.main([*common, "--save", str(part)])
    monkeypatch.undo()
    assert engine.load_checkpoint(part)["epoch"] == 2
    out = tmp_path / "resumed.json"
    assert train.main(["--resume", str(part), "--json", str(out)]) == 0  # OneCycleLR's state loads weights_only
    unbroken, resumed = weights(full), weights(part)
    assert unbroken.keys() == resumed.keys() and all(torch.equal(unbroken[k], resumed[k]) for k in unbroken)
    history = json.loads(out.read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    if "--val-size" in options:  # the best-by-validation checkpoint is kept beside the last one
        assert engine.load_checkpoint(engine.best_path(part))["best_val_loss"] == min(r["val_loss"] for r in history)


# --------------------------------------------------------------------------- 4. written files keep normal modes


def test_atomic_write_gives_new_files_the_default_mode_and_keeps_an_existing_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        engine.write_json(tmp_path / "new.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        existing = tmp_path / "ck.pt"
        existing.write_bytes(b"")
        existing.chmod(0o640)
        engine.atomic_save({"w": torch.ones(1)}, existing)
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


# --------------------------------------------------------------------------- 5. no diverged checkpoint


def test_an_epoch_whose_last_step_breaks_the_weights_is_not_saved(data_root, tmp_path):
    torch.manual_seed(0)
    net = model.MLP()
    loaders = engine.get_loaders("mnist", 100, CPU, limit=400, val_size=100, test_limit=200, loader="fast")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    steps = {"n": 0}
    real_step = optimizer.step

    def step_that_breaks_at_the_end_of_epoch_two():
        real_step()
        steps["n"] += 1
        if steps["n"] == 2 * len(loaders.train):  # the very last step of epoch 2, after its loss was computed
            with torch.no_grad():
                net.output.weight.fill_(float("nan"))

    optimizer.step = step_that_breaks_at_the_end_of_epoch_two
    ck = tmp_path / "ck.pt"
    with pytest.raises(engine.NonFiniteLossError, match="epoch 2 ended with a non-finite val_loss"):
        engine.fit(net, loaders.train, loaders.val, F.nll_loss, optimizer, 3, CPU, checkpoint=ck, verbose=False)
    state = engine.load_checkpoint(ck)
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.parametrize("good_epoch_first", [True, False], ids=["after-a-good-checkpoint", "without-one"])
def test_divergence_stops_with_one_message_and_keeps_the_last_good_checkpoint(data_root, tmp_path, capsys,
                                                                              good_epoch_first):
    ck = tmp_path / "ck.pt"
    common = ["--model", "mlp", "--limit", "500", "--save", str(ck)]
    if good_epoch_first:
        assert train.main([*common, "--epochs", "1"]) == 0
        before = weights(ck)
    assert train.main([*common, "--epochs", "3", "--lr", "1e12"]) == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "Lower the learning rate" in err and "Traceback" not in err
    if good_epoch_first:
        assert f"The last good checkpoint is still in {ck}" in err
        assert all(torch.equal(before[k], weights(ck)[k]) for k in before)
    else:
        assert "last good checkpoint" not in err and not ck.exists()


def test_training_reads_numbers_back_only_every_few_batches(data_root, monkeypatch):
    net = model.MLP()
    loader = engine.get_loaders("mnist", 10, CPU, limit=1000, loader="fast").train  # 100 batches
    calls = {"n": 0}
    real_item = torch.Tensor.item

    def counting_item(self):
        calls["n"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    engine.train_epoch(net, loader, F.nll_loss, torch.optim.SGD(net.parameters(), lr=0.01), CPU)
    assert calls["n"] <= 8, f"{calls['n']} host syncs for 100 batches"


# --------------------------------------------------------------------------- 7. fail before training, not after


def test_bad_options_fail_at_once_naming_the_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data"))  # had data loading started, this would fail first
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    cases = {
        ("--json", str(a_file / "out.json")): f"--json {a_file / 'out.json'}: cannot write a file in {a_file}",
        ("--save", str(tmp_path)): "is a directory",
        ("--step-size", "0"): "argument --step-size: must be a positive integer, got 0",
        ("--val-size", "-5"): "--val-size must be between 0 and",
        ("--limit", "100", "--val-size", "100"): "--val-size must be between 0 and 99",
        ("--resume", str(tmp_path / "missing.pt")): "does not exist",
        ("--lr", "0"): "argument --lr: must be positive, got 0",
        ("--gamma", "nan"): "argument --gamma: must be positive, got nan",
        ("--momentum", "1.5"): "argument --momentum: must be in [0, 1), got 1.5",
        ("--weight-decay", "-1"): "argument --weight-decay: must be 0 or more, got -1",
        ("--num-workers", "-1"): "argument --num-workers: must be 0 or more, got -1",
        ("--no-augment", "--augment", "rotate"): "not allowed with argument --no-augment",
        ("--epochs", "0"): "argument --epochs: must be a positive integer, got 0",
        ("--epochs", "-3"): "argument --epochs: must be a positive integer, got -3",
        ("--model", "resnet"): "invalid choice: 'resnet'",
        ("--mom", "0.5"): "unrecognized arguments: --mom 0.5",  # no abbreviations: what was given is clear
    }
    for argv, expected in cases.items():
        err = exit_message(list(argv), capsys)
        assert expected in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "no-data").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_that_cannot_be_made_is_refused_before_training(tmp_path, capsys, monkeypatch):
    # /proc refuses new folders even to root, which passes every permission check: ask the file system.
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data"))
    err = exit_message(["--json", "/proc/nope/out.json"], capsys)
    assert "--json /proc/nope/out.json: cannot write a file in /proc/nope (No such file or directory)" in err
    assert "Traceback" not in err and not (tmp_path / "no-data").exists()


def test_a_refused_path_leaves_nothing_on_disk(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(engine.tempfile, "TemporaryFile", refuse)  # a folder that can be made but not written in
    err = exit_message(["--save", str(tmp_path / "new" / "deeper" / "ck.pt")], capsys)
    assert f"cannot write a file in {tmp_path / 'new' / 'deeper'} (Permission denied)" in err
    assert list(tmp_path.iterdir()) == []  # the folders made to try are gone again
    monkeypatch.undo()
    args = train.parse_args(["--json", str(tmp_path / "out" / "r.json")])  # a writable one is made, not written
    assert (tmp_path / "out").is_dir() and list((tmp_path / "out").iterdir()) == [] and args.json


def test_a_device_this_machine_lacks_is_refused_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.main(["--device", "cuda"]) == 1  # resolved once, where the run starts
    err = capsys.readouterr().err
    assert "error: --device cuda: device 'cuda' was asked for but is not available on this machine" in err
    assert "Traceback" not in err and not (tmp_path / "no-data").exists()


def test_a_pytorch_file_that_train_py_did_not_write_is_refused_for_resume(tmp_path, capsys):
    torch.save({"weights": torch.ones(2)}, tmp_path / "plain.pt")
    err = exit_message(["--resume", str(tmp_path / "plain.pt")], capsys)
    assert "not a checkpoint written by train.py --save" in err


def test_options_that_do_nothing_warn(capsys):
    train.parse_args(["--optimizer", "adam", "--momentum", "0.5", "--num-workers", "2",
                      "--scheduler", "onecycle", "--step-size", "3"])
    err = capsys.readouterr().err
    assert "warning: --momentum" in err and "warning: --num-workers" in err and "warning: --step-size" in err
    train.parse_args(["--optimizer", "sgd", "--momentum", "0.5"])
    assert "warning" not in capsys.readouterr().err
    train.parse_args(["--optimizer", "adam", "--momentum", "0.9"])  # given, though equal to the recipe's value
    assert "warning: --momentum" in capsys.readouterr().err
    train.parse_args(["--optimizer", "adam", "--momentum=0.9"])
    assert "warning: --momentum" in capsys.readouterr().err


def test_main_catches_only_the_courses_own_errors(monkeypatch):
    def bug(args):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(train, "run", bug)
    with pytest.raises(ValueError, match="a bug"):
        train.main(["--epochs", "1"])


# --------------------------------------------------------------------------- 8. smaller faults


def test_summary_works_on_a_cpu_and_leaves_batchnorm_statistics_and_mode_alone(capsys):
    net = model.build("compact").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    utils.summary(net)  # torchsummary assumes CUDA unless told the device
    assert f"Total params: {model.count_parameters(net):,}" in capsys.readouterr().out
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_avg_pool_ceil_mode_is_not_read_as_dilation():
    class AvgPoolNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            x = F.avg_pool2d(self.conv(x), 2, 2, 0, False)  # 5th argument: ceil_mode, not dilation
            return F.max_pool2d(x, 3, 1, 0, 2)                # 5th argument: dilation 2

    rows = utils.layer_table(AvgPoolNet(), show=False)
    assert [(r["rf"], r["jump"]) for r in rows] == [(3, 1), (4, 2), (12, 2)]


# --------------------------------------------------------------------------- 9. augmentation equals torchvision's


def test_rotation_and_zoom_equal_torchvisions_bilinear_versions(data_root):
    images = utils.get_dataset("mnist", True, limit=8, transform=TF.to_tensor)
    x = torch.stack([images[i][0] for i in range(8)])
    n = len(x)
    theta = utils.augment_theta(n, 28, torch.Generator().manual_seed(0), degrees=15.0, crop_p=0.0)
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]) * 180 / torch.pi
    ours = utils.augment_batch(x, torch.Generator().manual_seed(0), degrees=15.0, crop_p=0.0)
    for i in range(n):
        theirs = TF.rotate(x[i], float(angles[i]), interpolation=InterpolationMode.BILINEAR, fill=0)
        assert (ours[i] - theirs).abs().max() < 1e-4, i  # the same warp, up to float rounding
    zoomed = utils.augment_batch(x, torch.Generator().manual_seed(0), degrees=0.0, crop_p=1.0)
    theirs = TF.resize(TF.center_crop(x, 22), [28, 28], interpolation=InterpolationMode.BILINEAR, antialias=False)
    # Equal inside; in the outermost ring of pixels torchvision's resize repeats the crop's edge pixel,
    # while our warp interpolates with the real pixel just outside the crop (a digit stroke can be there).
    assert (zoomed - theirs)[..., 1:-1, 1:-1].abs().max() < 1e-4
