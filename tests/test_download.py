"""The real download path (fetch -> verify MD5 -> extract) against loopback HTTP mirrors."""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from torchvision import datasets

import utils

# The original compressed files: $COURSE_MIRROR_DIR, or mirror/FashionMNIST beside the data root.
MIRROR = Path(os.environ.get("COURSE_MIRROR_DIR") or utils.data_root().parent / "mirror" / "FashionMNIST")


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


@pytest.fixture
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.fail(f"{MIRROR} is missing: set COURSE_MIRROR_DIR to a folder with the four FashionMNIST .gz files")
    return MIRROR


def test_download_verify_extract_then_load(serve, mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(mirror)])
    ds = utils.get_dataset("fashion_mnist", train=False, root=tmp_path)
    assert len(ds) == 10_000
    assert all((utils.raw_folder("fashion_mnist", tmp_path) / f).exists() for f in utils.RAW_FILES)


def test_corrupted_first_mirror_falls_back_to_the_second(serve, mirror, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    for gz in mirror.glob("*.gz"):
        (bad / gz.name).write_bytes(gz.read_bytes()[:-100] + b"x" * 100)  # same size, wrong MD5
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(bad), serve(mirror)])
    ds = utils.get_dataset("fashion_mnist", train=True, root=tmp_path / "root", limit=10)
    assert len(ds) == 10
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and 0 <= label <= 9


def test_all_mirrors_failing_gives_the_offline_message(serve, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()  # serves 404 for every file
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [serve(empty), "http://127.0.0.1:9/"])
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "root"))
    with pytest.raises(utils.DataNotFoundError) as info:
        utils.get_dataset("fashion_mnist", train=True)
    message = str(info.value)
    assert str(tmp_path / "root") in message and "DATA_DIR" in message
    assert all(name in message for name in utils.RAW_FILES)
    # What each mirror answered, not an empty "Error downloading ...:" fragment:
    assert "HTTP Error 404" in message and "Connection refused" in message and "Error downloading" not in message
    assert not (tmp_path / "root").exists()  # no empty MNIST/raw folders left behind


def test_read_only_data_root_is_not_written(data_root):
    before = sorted(p.name for p in utils.raw_folder("mnist", data_root).iterdir())
    utils.get_dataset("mnist", train=False)
    after = sorted(p.name for p in utils.raw_folder("mnist", data_root).iterdir())
    assert before == after


def test_copy_of_data_root_loads_like_the_original(data_root, tmp_path):
    shutil.copytree(utils.raw_folder("mnist", data_root), utils.raw_folder("mnist", tmp_path))
    a = utils.get_dataset("mnist", train=False, root=tmp_path)[0][0]
    b = utils.get_dataset("mnist", train=False, root=data_root)[0][0]
    assert (a == b).all()
