"""The real download path (fetch -> verify MD5 -> extract) against loopback HTTP mirrors.

The mirror is built from the data root's own IDX files: gzipped into a temporary folder, with
torchvision's expected MD5 sums replaced by those of the new .gz files. Nothing else is needed.
"""

import functools
import gzip
import hashlib
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torchvision import datasets

import engine
import utils

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def serve():
    """Start quiet HTTP servers on 127.0.0.1 for folders; return their base URLs."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: Path) -> str:
        handler = functools.partial(Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def gzipped(data_root, tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """The data root's Fashion-MNIST IDX files gzipped into a folder, with their (file name, MD5) list."""
    folder = tmp_path_factory.mktemp("mirror")
    resources = []
    for name in engine.RAW_FILES:
        data = gzip.compress((engine.raw_folder("fashion_mnist", data_root) / name).read_bytes(),
                             compresslevel=1, mtime=0)
        (folder / f"{name}.gz").write_bytes(data)
        resources.append((f"{name}.gz", hashlib.md5(data).hexdigest()))
    return folder, resources


@pytest.fixture
def mirror(gzipped, monkeypatch) -> Path:
    """A folder to serve as a Fashion-MNIST mirror; torchvision is told to expect its files' MD5s."""
    folder, resources = gzipped
    monkeypatch.setattr(datasets.FashionMNIST, "resources", resources)
    return folder


def test_download_verify_extract_then_load(serve, mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(mirror)])
    assert engine.ensure_downloaded("fashion_mnist", tmp_path) == tmp_path
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    ds = utils.get_dataset("fashion_mnist", train=False)
    assert len(ds) == 10_000
    assert all((engine.raw_folder("fashion_mnist", tmp_path) / f).exists() for f in engine.RAW_FILES)


def test_corrupted_first_mirror_falls_back_to_the_second(serve, mirror, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    for gz in sorted(mirror.glob("*.gz")):
        (bad / gz.name).write_bytes(gz.read_bytes()[:-100] + b"x" * 100)  # same size, wrong MD5
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(bad), serve(mirror)])
    engine.ensure_downloaded("fashion_mnist", tmp_path / "root")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "root"))
    ds = utils.get_dataset("fashion_mnist", train=True, limit=10)
    assert len(ds) == 10
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and 0 <= label <= 9


def test_all_mirrors_failing_gives_the_offline_message(serve, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()  # serves 404 for every file
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(empty), "http://127.0.0.1:9/"])
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "root"))
    with pytest.raises(engine.DataNotFoundError) as info:
        engine.get_loaders("fashion_mnist", 100, torch.device("cpu"))  # train.py's loaders check the files first
    message = str(info.value)
    assert str(tmp_path / "root") in message and "DATA_DIR" in message
    assert all(name in message for name in engine.RAW_FILES)
    # What each mirror answered, not an empty "Error downloading ...:" fragment:
    assert "HTTP Error 404" in message and "Connection refused" in message and "Error downloading" not in message
    assert not (tmp_path / "root").exists()  # no empty MNIST/raw folders left behind


def test_read_only_data_root_is_not_written(data_root):
    before = sorted(p.name for p in engine.raw_folder("mnist", data_root).iterdir())
    engine.ensure_downloaded("mnist")
    utils.get_dataset("mnist", train=False)  # torchvision's download=True finds the files and leaves them
    after = sorted(p.name for p in engine.raw_folder("mnist", data_root).iterdir())
    assert before == after


def test_copy_of_data_root_loads_like_the_original(data_root, tmp_path, monkeypatch):
    shutil.copytree(engine.raw_folder("mnist", data_root), engine.raw_folder("mnist", tmp_path))
    b = utils.get_dataset("mnist", train=False)[0][0]
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    engine.ensure_downloaded("mnist")
    a = utils.get_dataset("mnist", train=False)[0][0]
    assert (a == b).all()


def test_pytest_fetches_missing_data_at_session_start(serve, mirror, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(mirror)])
    root = tmp_path / "data"
    shutil.copytree(engine.raw_folder("mnist", utils.data_root()), engine.raw_folder("mnist", root))
    monkeypatch.setenv("DATA_DIR", str(root))
    conftest.fetch_data()  # MNIST is there; Fashion-MNIST comes from the (loopback) mirror
    assert all((engine.raw_folder("fashion_mnist", root) / f).exists() for f in engine.RAW_FILES)


def test_pytest_without_data_and_network_stops_at_once_with_one_message(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path / "empty")}  # this session's proxies: a closed port
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_models.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4 and out.count("ERROR: the tests need MNIST and Fashion-MNIST on disk.") == 1
    assert out.count("DATA_DIR is") == 2 and "passed" not in out and "Traceback" not in out
    assert "MNIST/raw" in out and "FashionMNIST/raw" in out and "t10k-labels-idx1-ubyte" in out
    assert not (tmp_path / "empty").exists()  # no empty folders left behind
