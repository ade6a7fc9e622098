"""Shared test fixtures: the real data root, the devices to test on, and the repository on sys.path."""

import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
import utils  # noqa: E402

# The CPU always (CI runs that leg); CUDA and Apple MPS where present (`pytest -m cuda`, `pytest -m mps`).
DEVICES = [
    pytest.param("cpu"),
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]),
    pytest.param("mps", marks=[pytest.mark.mps,
                               pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no Apple MPS here")]),
]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root ($DATA_DIR); tests that need MNIST fail loudly if it is missing."""
    root = utils.data_root()
    for name in utils.DATASETS:
        missing = [f for f in engine.RAW_FILES if not (engine.raw_folder(name, root) / f).exists()]
        assert not missing, f"{name} files {missing} missing under {root}: set DATA_DIR (see README)"
    return root


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device a test runs on: the CPU everywhere, and each accelerator this machine has."""
    return torch.device(request.param)
