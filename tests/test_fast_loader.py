"""The tensor-resident fast loader: coverage, shuffling, sharding, equality with torchvision, augmentation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import engine
import utils

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent


def fast(limit=1000, **kwargs) -> utils.TensorLoader:
    ds = utils.get_dataset("mnist", True, limit=limit)
    return utils.TensorLoader(ds, "mnist", CPU, **{"batch_size": 64, **kwargs})


def epoch_labels_and_images(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_every_sample_once_per_epoch_new_order_each_epoch(data_root):
    loader = fast(shuffle=True, seed=5)
    assert len(loader) == 16  # ceil(1000 / 64)
    orders = []
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        order = loader.order()
        assert sorted(order.tolist()) == list(range(1000))
        orders.append(order)
        x, y = epoch_labels_and_images(loader)
        assert len(y) == 1000
    assert not torch.equal(orders[0], orders[1])


def test_shuffle_is_reproducible_for_a_seed(data_root):
    a, b, c = fast(shuffle=True, seed=5), fast(shuffle=True, seed=5), fast(shuffle=True, seed=6)
    for loader in (a, b, c):
        loader.set_epoch(3)
    assert torch.equal(a.order(), b.order()) and not torch.equal(a.order(), c.order())


def sharded(limit: int) -> list:
    """The two ranks' fast loaders of a 2-process run over the first `limit` MNIST images, with rotation."""
    ds = utils.get_dataset("mnist", True, limit=limit)
    return [engine.ShardedTensorLoader(ds, "mnist", CPU, 64, shuffle=True, seed=2, rank=r, world_size=2,
                                       augment=utils.batch_augmentation("rotate")) for r in (0, 1)]


def test_sharding_splits_an_epoch_between_ranks_and_each_rank_augments_its_own_way(data_root):
    ranks = sharded(1001)
    for loader in ranks:
        loader.set_epoch(1)
    orders = [loader.order() for loader in ranks]
    assert sorted(torch.cat(orders).tolist()[:-1]) == list(range(1001))  # padded by one wrapped sample
    assert [len(order) for order in orders] == [engine.shard_size(1001, 2)] * 2 == [501, 501]
    assert [len(loader) for loader in ranks] == [8, 8] and sum(len(y) for _, y in ranks[1]) == 501
    thetas = [utils.augment_theta(64, 28, loader.generator) for loader in ranks]
    assert not torch.allclose(thetas[0], thetas[1])  # not the same rotation for each rank's k-th sample


def test_ranks_share_the_order_even_in_epochs_without_set_epoch(data_root):
    ranks = sharded(100)
    for epoch in range(3):  # no set_epoch: each rank's generators run on from the seed
        orders = [loader.order() for loader in ranks]
        for loader in ranks:  # and the augmentation draws in between, as a real epoch makes them
            utils.augment_theta(64, 28, loader.generator)
        assert sorted(torch.cat(orders).tolist()) == list(range(100)), epoch  # every sample once per epoch


@pytest.mark.parametrize("world_size", [2, 3])
def test_torchvision_ranks_cover_the_epoch_like_the_fast_loader(data_root, world_size):
    ranks = [engine.get_loaders("mnist", 100, CPU, limit=1000, rank=r, world_size=world_size)
             for r in range(world_size)]
    for loaders in ranks:
        loaders.train.sampler.set_epoch(1)
    seen = [i for loaders in ranks for i in loaders.train.sampler]
    assert set(seen) == set(range(1000)) and len(seen) == engine.shard_size(1000, world_size) * world_size
    assert sum(len(loaders.test.dataset) for loaders in ranks) == 10_000  # evaluation shards cover the test set


def test_augmentation_keeps_shapes_labels_and_changes_pixels(data_root):
    plain, augmented = fast(limit=256), fast(limit=256, augment=utils.batch_augmentation("rotate"))
    x0, y0 = next(iter(plain))
    x1, y1 = next(iter(augmented))
    assert x1.shape == x0.shape and x1.dtype == torch.float32 and torch.equal(y0, y1)
    assert not torch.allclose(x0, x1)
    # Labels stay aligned: each augmented image is nearer its own original than a typical other image.
    dist = torch.cdist(x1.flatten(1), x0.flatten(1))
    own = dist.diagonal()
    typical_other = dist.masked_fill(torch.eye(len(x0), dtype=torch.bool), float("nan")).nanmedian(dim=1).values
    assert (own < typical_other).float().mean() > 0.95


def test_augment_batch_zero_angle_no_zoom_is_identity():
    x = torch.rand(4, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    out = utils.augment_batch(x, g, degrees=0.0, crop_p=0.0)
    assert torch.allclose(out, x, atol=1e-5)


def test_flip_mirrors_exactly_and_shift_moves_whole_pixels():
    x = torch.rand(6, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    mirrored = utils.augment_batch(x, g, degrees=0.0, crop_p=0.0, flip_p=1.0)
    assert torch.allclose(mirrored, x.flip(-1), atol=1e-5)
    shifted = utils.augment_batch(x, g, degrees=0.0, crop_p=0.0, shift=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))  # zero fill, like grid_sample's
    for img, out in zip(padded, shifted):
        windows = [img[:, 2 + dy : 30 + dy, 2 + dx : 30 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(torch.allclose(out, w, atol=1e-5) for w in windows)  # no blur: an exact crop


def test_augmentation_policies_by_name(data_root):
    assert engine.augmentation_name("mnist", True) == "rotate"
    assert engine.augmentation_name("fashion_mnist", True) == "none"
    assert engine.augmentation_name("fashion_mnist", "flip_shift") == "flip_shift"
    assert engine.augmentation_name("mnist", False) == "none"
    assert utils.batch_augmentation("none") is None
    loader = engine.get_loaders("fashion_mnist", 64, CPU, limit=256, augment="flip_shift", loader="fast").train
    assert loader.augment.func is utils.augment_batch and loader.augment.keywords == utils.AUGMENTATIONS["flip_shift"]
    x, y = next(iter(loader))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    names = [type(t).__name__ for t in utils.train_transform("fashion_mnist", "flip_shift").transforms]
    assert names[:2] == ["RandomHorizontalFlip", "RandomCrop"]
    names = [type(t).__name__ for t in utils.train_transform("fashion_mnist", "flip").transforms]
    assert names == ["RandomHorizontalFlip", "ToTensor", "Normalize"]
    expected = "unknown augmentation 'cutout'; expected one of none, rotate, flip, flip_shift"
    with pytest.raises(ValueError, match=expected):
        engine.get_loaders("mnist", 64, CPU, limit=64, augment="cutout", loader="fast")
    with pytest.raises(ValueError, match=expected):
        utils.batch_augmentation("cutout")


def test_the_taught_loaders_take_a_transform_or_a_batch_augmentation(data_root):
    flip = utils.batch_augmentation("flip")
    fast = utils.get_loaders("mnist", 64, CPU, limit=256, loader="fast", augment=flip)
    assert isinstance(fast.train, utils.TensorLoader) and fast.train.augment is flip and fast.val is None
    x, y = next(iter(fast.train))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    slow = utils.get_loaders("mnist", 64, CPU, limit=256, train_transform=utils.train_transform("mnist", "flip"))
    base, _ = utils.base_and_indices(slow.train.dataset)
    assert type(base.transform.transforms[0]).__name__ == "RandomHorizontalFlip"
    with pytest.raises(ValueError, match="train_transform is for loader='torchvision', augment for loader='fast'"):
        utils.get_loaders("mnist", 64, CPU, limit=256, loader="fast", train_transform=utils.train_transform("mnist"))


def test_test_loader_is_deterministic(data_root):
    loaders = utils.get_loaders("mnist", 100, CPU, limit=500, test_limit=300, loader="fast")
    a = torch.cat([x for x, _ in loaders.test])
    b = torch.cat([x for x, _ in loaders.test])
    assert torch.equal(a, b) and len(loaders.test.dataset) == 300


def test_training_with_the_fast_loader_matches_the_dataloader_band(data_root, tmp_path):
    accuracies = {}
    for loader in ("fast", "torchvision"):
        out = tmp_path / f"{loader}.json"
        proc = subprocess.run(
            [sys.executable, "train.py", "--model", "fashion", "--dataset", "fashion_mnist", "--epochs", "2",
             "--limit", "3000", "--loader", loader, "--json", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        accuracies[loader] = json.loads(out.read_text())["test_accuracy"]
    assert accuracies["fast"] > 0.6 and accuracies["torchvision"] > 0.6
    assert abs(accuracies["fast"] - accuracies["torchvision"]) < 0.06, accuracies
