"""train.py under torchrun: 2 CPU processes (Gloo), DDP with a BatchNorm model, sharded data, reduced metrics."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# compact has BatchNorm: its running statistics are buffers that each rank updates on its own batches. 4 epochs:
# one process of this width-11 network reached test accuracy 0.40 after 2, 0.56 after 3, 0.75 after 4 (2-core Xeon).
COMMON = ["--model", "compact", "--dataset", "mnist", "--epochs", "4", "--limit", "4000"]


def run(cmd: list[str], out: Path) -> dict:
    """Run a command in the repo with smoke settings; return the JSON it wrote."""
    env = {**os.environ, "COURSE_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def two_process_run(data_root, tmp_path_factory) -> dict:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return run([*torchrun, "train.py", *COMMON], tmp_path_factory.mktemp("ddp") / "out.json")


def test_two_processes_complete_and_report_world_size(two_process_run):
    assert two_process_run["world_size"] == 2 and two_process_run["effective_batch_size"] == 256
    assert two_process_run["test_total"] == 2000  # smoke test set, split across ranks and summed back


def test_both_ranks_end_with_identical_weights_and_batchnorm_statistics(two_process_run):
    checksums = two_process_run["weight_checksums"]  # sums over parameters and buffers (running mean/var)
    assert len(checksums) == 2 and checksums[0] == checksums[1] and two_process_run["weights_in_sync"]


def test_ranks_together_see_every_training_sample_once(two_process_run):
    assert two_process_run["train_samples_per_rank"] == [2000, 2000]
    assert sum(two_process_run["train_samples_per_rank"]) == two_process_run["train_samples"] == 4000


def test_accuracy_matches_a_single_process_with_the_same_total_batch(two_process_run, tmp_path):
    single = run([sys.executable, "train.py", *COMMON, "--batch-size", "256"], tmp_path / "single.json")
    assert single["world_size"] == 1
    assert single["test_accuracy"] > 0.5 and two_process_run["test_accuracy"] > 0.5
    assert abs(single["test_accuracy"] - two_process_run["test_accuracy"]) < 0.08
