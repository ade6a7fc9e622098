"""Shared test setup: smoke mode, a headless plot backend, and the data root check."""

import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
os.environ.setdefault("COURSE_SMOKE", "1")  # notebooks run by nbval inherit this
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never reach the internet: any download goes to a closed loopback port and fails at
# once (the download tests serve their own mirrors on 127.0.0.1, which bypasses the proxy).
for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
    os.environ[var] = "http://127.0.0.1:9"
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
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
