"""train.py end to end, in smoke mode on real MNIST."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_train(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run train.py in a subprocess in smoke mode; return the finished process."""
    full_env = {**os.environ, "COURSE_SMOKE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=full_env,
        capture_output=True, text=True, timeout=600,
    )


def test_smoke_run_writes_sane_json(data_root, tmp_path):
    out = tmp_path / "out.json"
    proc = run_train("--epochs", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["model"] == "quick" and result["dataset"] == "mnist" and result["device"] == "cpu"
    assert result["epochs"] == 2 and len(result["history"]) == 2
    assert result["params"] > 0 and result["train_samples"] == 2000
    assert result["test_accuracy"] > 0.25  # chance is 0.1; 2 smoke epochs are only 32 steps
    assert {"train_loss", "train_accuracy", "seconds"} <= set(result["history"][0])
    assert "test_loss" not in result["history"][0]  # the test set is evaluated once, after training
    assert f"test accuracy {100 * result['test_accuracy']:.2f}% ({result['test_correct']}/" in proc.stdout
    assert "SMOKE MODE" in proc.stdout  # a leftover COURSE_SMOKE=1 cannot go unnoticed
    assert "\r" not in proc.stdout and "it/s" in proc.stderr  # progress bars on stderr: `> log.txt` stays clean
    recipe = "recipe: cross_entropy loss, sgd lr 0.1 momentum 0.9, weight decay 0, OneCycleLR, batch 128, 2 epochs"
    assert recipe in proc.stdout
    assert not {"weight_checksums", "weights_in_sync", "train_samples_per_rank"} & set(result)  # DDP only


def test_recipe_supplies_defaults_and_flags_override_them():
    import model
    import train

    args = train.parse_args(["--model", "fashion_best"])
    recipe = model.RECIPES["fashion_best"]
    assert (args.dataset, args.augment, args.scheduler) == ("fashion_mnist", "flip", "onecycle")
    assert (args.optimizer, args.lr, args.batch_size) == (recipe["optimizer"], recipe["lr"], recipe["batch_size"])
    args = train.parse_args(["--model", "fashion_best", "--no-augment", "--scheduler", "step", "--dataset", "mnist"])
    assert (args.augment, args.scheduler, args.dataset) == ("none", "step", "mnist")
    args = train.parse_args([])  # the default model's recipe: quick, OneCycleLR, the data set's augmentation
    assert (args.seed, args.val_size, args.loader, args.device, args.gamma) == (1, 0, "fast", "auto", 0.1)
    assert (args.model, args.dataset, args.scheduler) == ("quick", "mnist", "onecycle")
    assert train.augment_setting(args) is True and not args.amp  # the data set's own augmentation
    args = train.parse_args(["--model", "s5"])  # another model: its recipe becomes the defaults
    assert (args.lr, args.momentum) == (model.RECIPES["s5"]["lr"], model.RECIPES["s5"]["momentum"])


def test_help_shows_the_chosen_models_recipe_and_no_empty_defaults(capsys):
    import model
    import train

    with pytest.raises(SystemExit) as info:
        train.parse_args(["--model", "s5", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for value in (model.RECIPES["s5"]["lr"], model.RECIPES["s5"]["momentum"], "s5"):
        assert f"(default: {value})" in " ".join(out.split())  # S5's recipe, not the default model's
    assert "(default: None)" not in out and "(default: default)" not in out and "(default: False)" not in out


def test_every_epoch_is_judged_on_validation_and_the_test_set_is_evaluated_once(data_root, monkeypatch):
    sys.path.insert(0, str(ROOT))
    import engine
    import train

    evaluated = []
    real_evaluate = engine.evaluate

    def recording_evaluate(model, loader, *args, **kwargs):
        evaluated.append(len(loader.dataset))
        return real_evaluate(model, loader, *args, **kwargs)

    monkeypatch.setattr(engine, "evaluate", recording_evaluate)
    result = train.run(train.parse_args(["--model", "mlp", "--epochs", "3", "--val-size", "500", "--device", "cpu"]))
    assert evaluated == [500, 500, 500, 2000]  # validation after each epoch, then the test set once
    assert all("val_accuracy" in row and "test_accuracy" not in row for row in result["history"])
    evaluated.clear()
    args = train.parse_args(["--model", "mlp", "--epochs", "2", "--device", "cpu", "--test-every-epoch"])
    result = train.run(args)  # only for benchmarks of the time to reach a test accuracy
    assert evaluated == [2000, 2000] and all("test_accuracy" in row for row in result["history"])  # none after
    assert result["test_accuracy"] == result["history"][-1]["test_accuracy"]
