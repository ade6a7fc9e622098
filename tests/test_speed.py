"""Speed: mixed precision (--amp) on the CPU side, and the time-to-accuracy benchmark in smoke mode."""

import json
import sys
from pathlib import Path

import pytest
import torch

import engine
import model
import train

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import time_to_accuracy  # noqa: E402

CPU = torch.device("cpu")


def test_amp_where_the_cpu_has_no_native_bf16_warns_and_trains_in_float32(monkeypatch, capsys):
    monkeypatch.setattr(engine, "amp_dtype", lambda device: None)
    args = train.parse_args(["--amp", "--device", "cpu"])
    amp = train.precision(args, CPU)  # where train.run resolves it, once
    assert amp is None and "--amp (no faster lower precision on cpu" in capsys.readouterr().err
    assert "autocast" not in train.describe_recipe(args, amp)


def test_amp_run_records_its_precision(data_root, tmp_path):
    out = tmp_path / "amp.json"
    assert train.main(["--amp", "--device", "cpu", "--limit", "600", "--epochs", "1", "--json", str(out)]) == 0
    expected = engine.amp_dtype(CPU)
    assert json.loads(out.read_text())["amp"] == (str(expected) if expected else None)


def test_first_reaching_counts_the_epochs_up_to_the_threshold():
    history = [{"epoch": 1, "seconds": 10.0, "test_accuracy": 0.985},
               {"epoch": 2, "seconds": 11.0, "test_accuracy": 0.991},
               {"epoch": 3, "seconds": 12.0, "test_accuracy": 0.9935}]
    assert time_to_accuracy.first_reaching(history, 0.99) == {"epoch": 2, "seconds": 21.0}
    assert time_to_accuracy.first_reaching(history, 0.994) is None


def test_reference_net_is_the_published_size():
    net = time_to_accuracy.ReferenceNet()
    assert model.count_parameters(net) == 1_199_882
    assert net(torch.zeros(2, 1, 28, 28)).exp().sum(dim=1).allclose(torch.ones(2))  # log-probabilities


def test_time_to_accuracy_writes_json_and_a_side_by_side_table(data_root, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{time_to_accuracy.TABLE_START}\nold\n{time_to_accuracy.TABLE_END}\nafter\n")
    out = tmp_path / "t.json"
    assert time_to_accuracy.main(["--seeds", "1", "--device", "cpu", "--json", str(out), "--readme", str(readme)]) == 0
    result = json.loads(out.read_text())
    runs = {run["recipe"]: run for run in result["runs"]}
    assert [run["recipe"] for run in result["runs"]][:2] == ["default", "reference"]  # they alternate
    assert all(set(run["reached"]) == {"0.990", "0.994"} and run["seconds_per_epoch"] > 0 for run in runs.values())
    assert runs["default"]["epochs"] == 1 and runs["reference"]["epochs"] == 2  # smoke: 1 epoch, the reference 2
    assert runs["default"]["process_seconds"] > runs["default"]["wall_seconds"]  # start-up and data loading too
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| PyTorch MNIST example (seed 1) | 1,199,882 |" in text and "| python train.py --seed 1 | 12,026 |" in text


def test_bad_options_are_refused_before_any_work(capsys, tmp_path):
    with pytest.raises(SystemExit):
        time_to_accuracy.parse_args(["--seeds", "-1", "--readme", ""])
    assert "seeds must be 0 or more" in capsys.readouterr().err
    (tmp_path / "R.md").write_text("no markers here\n")
    with pytest.raises(SystemExit):
        time_to_accuracy.parse_args(["--readme", str(tmp_path / "R.md")])
    assert "expected a file with the lines <!-- time-to-accuracy:start -->" in capsys.readouterr().err
