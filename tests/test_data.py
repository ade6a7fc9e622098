"""Data layer on the real MNIST / Fashion-MNIST files: loaders, transforms, errors."""

import shutil
from pathlib import Path

import pytest
import torch

import engine
import utils


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_loaders_shapes_dtypes_labels(data_root, name):
    loaders = utils.get_loaders(name, batch_size=64, device=torch.device("cpu"), limit=512)
    images, labels = next(iter(loaders.train))
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert 0 <= labels.min() and labels.max() <= 9
    assert len(loaders.train.dataset) == 512 and loaders.val is None
    assert len(loaders.test.dataset) == 10_000


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_normalised_test_set_has_zero_mean_unit_std(data_root, name):
    ds = utils.get_dataset(name, train=False, limit=5000)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    assert abs(images.mean().item()) < 0.05
    assert abs(images.std().item() - 1) < 0.05


def test_fashion_constants_match_the_training_pixels(data_root):
    from torchvision import transforms

    mean, std = utils.pixel_stats(utils.get_dataset("fashion_mnist", True, transforms.ToTensor(), limit=20_000))
    assert abs(mean - utils.FASHION_MEAN) < 0.005 and abs(std - utils.FASHION_STD) < 0.005


def test_dataset_classes_and_balance(data_root):
    ds = utils.get_dataset("fashion_mnist", train=True)
    assert len(ds) == 60_000 and ds.classes == list(utils.FASHION_CLASSES)
    assert torch.as_tensor(ds.targets).bincount().tolist() == [6000] * 10


def test_test_transform_is_deterministic_and_train_transform_is_not(data_root):
    image, _ = utils.get_dataset("mnist", train=False, transform=lambda im: im)[0]
    test_tf = utils.test_transform("mnist")
    assert torch.equal(test_tf(image), test_tf(image))
    train_tf = utils.train_transform("mnist", "rotate")
    torch.manual_seed(0)
    outs = [train_tf(image) for _ in range(5)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_validation_split_is_seeded_disjoint_and_unaugmented(data_root):
    a = utils.get_loaders("mnist", 100, torch.device("cpu"), limit=1000, val_size=200, seed=3)
    b = utils.get_loaders("mnist", 100, torch.device("cpu"), limit=1000, val_size=200, seed=3)
    assert a.val.dataset.indices == b.val.dataset.indices
    assert len(a.val.dataset) == 200 and len(a.train.dataset) == 800
    assert not set(a.val.dataset.indices) & set(a.train.dataset.indices)
    x1, _ = next(iter(a.val))
    x2, _ = next(iter(a.val))
    assert torch.equal(x1, x2)
    with pytest.raises(ValueError, match="val_size"):
        utils.get_loaders("mnist", 100, torch.device("cpu"), limit=100, val_size=100)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="mnist, fashion_mnist"):
        utils.get_dataset("cifar", train=True)


def test_truncated_file_gives_an_error_naming_it(data_root, tmp_path):
    raw = engine.raw_folder("mnist", tmp_path)
    shutil.copytree(engine.raw_folder("mnist", data_root), raw)
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(engine.CorruptDataError, match="t10k-labels-idx1-ubyte.*truncated"):
        engine.ensure_downloaded("mnist", tmp_path)


def test_garbage_file_gives_an_error_naming_it(data_root, tmp_path, monkeypatch):
    raw = engine.raw_folder("mnist", tmp_path)
    shutil.copytree(engine.raw_folder("mnist", data_root), raw)
    bad = raw / "train-images-idx3-ubyte"
    bad.chmod(0o644)
    bad.write_bytes(b"<html>not found</html>")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    with pytest.raises(engine.CorruptDataError, match="train-images-idx3-ubyte"):  # train.py's loaders check first
        engine.get_loaders("mnist", 100, torch.device("cpu"), limit=100)


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert utils.data_root() == tmp_path
    course = Path(utils.__file__).resolve().parent
    monkeypatch.chdir(course / "notebooks")  # where a notebook kernel runs
    monkeypatch.setenv("DATA_DIR", "tests")  # relative to the course folder, not to notebooks/
    assert utils.data_root() == course / "tests"
    monkeypatch.delenv("DATA_DIR")
    assert utils.data_root().name == "data" and utils.data_root().parent.name != "shared"
