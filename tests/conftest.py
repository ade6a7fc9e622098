"""Shared test fixtures: the real data root, and the repository on sys.path."""

import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data root ($DATA_DIR); tests that need MNIST fail loudly if it is missing."""
    root = utils.data_root()
    for name in utils.DATASETS:
        missing = [f for f in utils.RAW_FILES if not (utils.raw_folder(name, root) / f).exists()]
        assert not missing, f"{name} files {missing} missing under {root}: set DATA_DIR (see README)"
    return root
