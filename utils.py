"""Helpers for the notebooks, train.py and the benchmarks, in the order the notebooks teach them.

Each helper is the plain-PyTorch code a notebook writes by hand first (notebook 02 checks that
`get_loaders`, `train_epoch` and `evaluate` give the same batches and numbers as its own loops).

Sections:
 1. device and seeds (notebook 01): get_device, set_seed
 2. data through torchvision (notebook 02): get_dataset, split_indices, get_loaders
 3. the fast loader (notebook 02): TensorLoader, the same batches cut from one tensor on the device
 4. training and evaluation loops (notebook 02): train_epoch, evaluate, fit
 5. checkpoints (notebook 02): save and load training state, atomic writes
 6. looking at images and training curves (notebooks 02-03): show_images, plot_history
 7. normalisation statistics and augmentation (notebook 03): pixel_stats, train_transform, augment_batch
 8. reading a network (notebook 03): layer_table, summary
 9. predictions and mistakes (notebooks 03-04): get_all_preds, plot_mistakes
10. hyper-parameter runs and TensorBoard (notebook 04): RunBuilder, RunManager
11. speed (notebook 05): loader_kwargs, time_training_epoch
12. several processes under torchrun (notebook 05, train.py): what the loops need to agree across ranks
13. data files: find, download (with mirrors) and check the raw MNIST files
14. smoke mode: tiny runs for the course's tests (COURSE_SMOKE=1)
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 10):  # noqa: UP036 - checked first: the code below writes types as `X | None`
    raise RuntimeError(f"the course needs Python 3.10 or newer; this is Python {sys.version.split()[0]}")

import contextlib
import json
import math
import os
import pickle
import random
import struct
import tempfile
import time
import zipfile
from collections import namedtuple
from itertools import product
from pathlib import Path
from typing import NamedTuple
from urllib.error import URLError

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, random_split
from torchvision import datasets, transforms
from torchvision.datasets.utils import download_and_extract_archive
from tqdm import tqdm  # text bars: they render the same live, in stored notebooks and in logs

# ==================== 1. device and seeds (notebook 01)

def get_device(preferred: str = "auto") -> torch.device:
    """Pick CUDA, then Apple MPS, then CPU (or check and return the one asked for)."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if preferred == "auto":
        return torch.device(next(name for name, ok in available.items() if ok))
    if preferred not in available:
        raise ValueError(f"unknown device {preferred!r}; expected one of auto, cuda, mps, cpu")
    if not available[preferred]:
        raise ValueError(f"device {preferred!r} was asked for but is not available on this machine")
    return torch.device(preferred)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all CUDA devices too) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators
    torch.cuda.manual_seed_all(seed)


# ==================== 2. data: MNIST and Fashion-MNIST through torchvision (notebook 02)

# Mean and standard deviation of the training pixels (scaled to [0, 1]).
# MNIST: the classic 0.1307 / 0.3081. Fashion-MNIST: computed with `pixel_stats` on the
# 60,000 training images: mean 0.2860, std 0.3530.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


MNIST_CLASSES = tuple(str(d) for d in range(10))


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


DATASETS = {
    "mnist": {"cls": datasets.MNIST, "mean": MNIST_MEAN, "std": MNIST_STD, "classes": MNIST_CLASSES},
    "fashion_mnist": {
        "cls": datasets.FashionMNIST, "mean": FASHION_MEAN, "std": FASHION_STD, "classes": FASHION_CLASSES,
    },
}


TRAIN_SIZE = 60_000  # training images in MNIST and in Fashion-MNIST


class CourseError(Exception):
    """An error of this course's own: its message says what went wrong and what to do."""


class DataNotFoundError(CourseError):
    """The data set is not on disk and could not be downloaded."""


class CorruptDataError(CourseError):
    """A data file on disk is truncated or not an IDX file."""


def data_root() -> Path:
    """The torchvision data root: $DATA_DIR, or `data/` beside this file.

    A relative DATA_DIR is taken from the current folder; if nothing is there, from the course
    folder, so `DATA_DIR=../shared/data` set in the repo root also works in a notebook kernel,
    which runs in notebooks/.
    """
    here = Path(__file__).resolve().parent
    env = os.environ.get("DATA_DIR", "").strip()
    if not env:
        return here / "data"
    path = Path(env).expanduser()
    if not path.is_absolute() and not path.exists() and (here / path).exists():
        return (here / path).resolve()
    return path


def dataset_info(name: str) -> dict:
    """Class, normalisation and class names for a data set name."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def normalize(name: str) -> transforms.Normalize:
    """The Normalize transform with the data set's training mean and std."""
    info = dataset_info(name)
    return transforms.Normalize((info["mean"],), (info["std"],))


def test_transform(name: str) -> transforms.Compose:
    """Deterministic evaluation transform: tensor conversion and normalisation only.

    The S5 seed put RandomRotation in its *test* transform. That is a bug: the reported test
    accuracy then changes from run to run and measures a different, harder task. Augmentation
    belongs to training only.
    """
    return transforms.Compose([transforms.ToTensor(), normalize(name)])


def get_dataset(
    name: str, train: bool, transform=None, limit: int | None = None, root: Path | None = None
) -> Dataset:
    """A torchvision data set by name (first `limit` samples only if given); test transform by default."""
    root = ensure_downloaded(name, root)
    if transform is None:
        transform = test_transform(name)
    ds = dataset_info(name)["cls"](str(root), train=train, download=False, transform=transform)
    if limit is not None and limit < len(ds):
        ds = Subset(ds, range(limit))
    return ds


def split_indices(n: int, val_size: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Seeded random split of range(n) into (train indices, validation indices), exactly as
    `random_split(data, [n - val_size, val_size], generator=torch.Generator().manual_seed(seed))` splits it."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1} (the training set has {n} samples), got {val_size}")
    train, val = random_split(range(n), [n - val_size, val_size], generator=torch.Generator().manual_seed(seed))
    return list(train), list(val)


class Loaders(NamedTuple):
    """Train, validation (None without a hold-out) and test loaders."""

    train: DataLoader
    val: DataLoader | None
    test: DataLoader


def get_loaders(
    name: str,
    batch_size: int = 128,
    device: torch.device | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    val_size: int = 0,
    augment: bool | str = True,
    seed: int = 0,
    num_workers: int | None = None,
    loader: str = "torchvision",
    rank: int = 0,
    world_size: int = 1,
) -> Loaders:
    """Train, validation and test DataLoaders for a data set name.

    `limit` keeps the first N training samples; `val_size` then holds out that many of them
    (seeded, without augmentation) for model selection, so the test set stays untouched.
    `augment`: True = the data set's default augmentation, False = none, or a name from AUGMENTATIONS.
    The training loader shuffles with its own seeded generator. `loader="fast"` returns
    TensorLoaders (whole set on the device, batch augmentation) instead of DataLoaders.
    """
    if loader not in ("torchvision", "fast"):
        raise ValueError(f"unknown loader {loader!r}; expected torchvision or fast")
    device = device or get_device()
    if loader == "fast":
        return fast_loaders(name, batch_size, device, limit, test_limit, val_size, augment, seed, rank, world_size)
    kwargs = loader_kwargs(device, num_workers)
    train_set = get_dataset(name, True, train_transform(name, augment), limit)
    val_loader = None
    if val_size:
        train_idx, val_idx = split_indices(len(train_set), val_size, seed)
        val_set = Subset(get_dataset(name, True, test_transform(name), limit), val_idx)
        train_set = Subset(train_set, train_idx)
        val_loader = DataLoader(shard(val_set, rank, world_size), batch_size=max(batch_size, 1000), **kwargs)
    test_set = get_dataset(name, False, test_transform(name), test_limit)
    if world_size > 1:  # each process trains on its own part of every epoch
        sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, **kwargs)
    else:
        train_loader = DataLoader(
            train_set, batch_size=batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(seed), **kwargs,
        )
    test_loader = DataLoader(shard(test_set, rank, world_size), batch_size=max(batch_size, 1000), **kwargs)
    return Loaders(train_loader, val_loader, test_loader)


# ==================== 3. the fast loader: the same batches, cut from one tensor on the device (notebook 02)

def base_and_indices(ds: Dataset) -> tuple[Dataset, torch.Tensor]:
    """The torchvision data set under (nested) Subsets, and the indices they select."""
    indices = torch.arange(len(ds))
    while isinstance(ds, Subset):
        indices = torch.as_tensor(list(ds.indices))[indices]
        ds = ds.dataset
    return ds, indices


class TensorLoader:
    """A whole data set held as one uint8 tensor on the device, served as normalised float batches.

    A drop-in for a DataLoader of (images, labels): iterate it, take `len()` (in batches), read
    `.dataset`. No per-sample Python, PIL or host-to-device copy runs during training. Each epoch
    is reshuffled with a seeded CPU generator (one small permutation per epoch, moved to the
    device), so the same seed gives the same batches on CPU, CUDA and MPS. `rank`/`world_size`
    shard every epoch's order across processes, like DistributedSampler (call `set_epoch`); each
    process then draws its own augmentation.
    """

    def __init__(self, dataset: Dataset, name: str, device: torch.device, batch_size: int = 128,
                 shuffle: bool = False, drop_last: bool = False, augment: bool | str = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        base, indices = base_and_indices(dataset)
        info = dataset_info(name)
        self.dataset, self.name, self.device = dataset, name, torch.device(device)
        self.images = base.data[indices].unsqueeze(1).to(self.device)  # uint8, (N, 1, 28, 28)
        self.labels = torch.as_tensor(base.targets)[indices].to(self.device)
        self.mean, self.std = info["mean"], info["std"]
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment = AUGMENTATIONS[augmentation_name(name, augment)]  # {} = no augmentation
        self.rank, self.world_size, self.epoch, self.seed = rank, world_size, 0, seed
        self.generator = torch.Generator().manual_seed(seed)  # CPU, on every device (see augment_theta)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle so every process draws the same order for this epoch."""
        self.epoch = epoch
        self.generator.manual_seed(self.seed * 10_000 + epoch)

    def order(self) -> torch.Tensor:
        """This process's sample indices for the epoch (padded by wrapping to split evenly)."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        if self.world_size > 1:
            per_rank = -(-n // self.world_size)
            order = torch.cat([order, order[: per_rank * self.world_size - n]])[self.rank :: self.world_size]
            # Same order on every rank, but each rank's own augmentation draws from here on.
            self.generator.manual_seed(self.seed * 10_000 + self.epoch + RANK_SEED_STRIDE * (self.rank + 1))
        return order.to(self.device)

    def samples_per_epoch(self) -> int:
        """How many samples this process sees per epoch."""
        n = -(-len(self.labels) // self.world_size)  # ceil: shards are padded to equal size
        return n - n % self.batch_size if self.drop_last else n

    def __len__(self) -> int:
        return -(-self.samples_per_epoch() // self.batch_size)

    def __iter__(self):
        order = self.order()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = torch.index_select(self.images, 0, idx).float().div_(255)  # index_select: fastest gather
            if self.augment:
                x = augment_batch(x, self.generator, **self.augment)
            yield x.sub_(self.mean).div_(self.std), torch.index_select(self.labels, 0, idx)


def fast_loaders(name: str, batch_size: int, device: torch.device, limit: int | None = None,
                 test_limit: int | None = None, val_size: int = 0, augment: bool | str = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> Loaders:
    """Like get_loaders, but with TensorLoaders (whole data set on the device)."""
    train_set = get_dataset(name, True, test_transform(name), limit)
    val_loader = None
    if val_size:
        train_idx, val_idx = split_indices(len(train_set), val_size, seed)
        val_set = shard(Subset(train_set, val_idx), rank, world_size)
        val_loader = TensorLoader(val_set, name, device, max(batch_size, 1000))
        train_set = Subset(train_set, train_idx)
    train_loader = TensorLoader(train_set, name, device, batch_size, shuffle=True, augment=augment, seed=seed,
                                rank=rank, world_size=world_size)
    test_set = shard(get_dataset(name, False, test_transform(name), test_limit), rank, world_size)
    return Loaders(train_loader, val_loader, TensorLoader(test_set, name, device, max(batch_size, 1000)))


# ==================== 4. training and evaluation loops (notebook 02)

class NonFiniteLossError(CourseError):
    """The loss became NaN or infinite: the learning rate is probably too high."""


def progress_stream():
    """Where progress bars go: stdout in Jupyter, which frames stderr as an error; stderr elsewhere,
    so that `python train.py > log.txt` keeps the bars on the screen and the log clean."""
    return sys.stdout if "ipykernel" in sys.modules else sys.stderr


def train_epoch(
    model: nn.Module, loader, loss_fn, optimizer: torch.optim.Optimizer, device: torch.device,
    desc: str = "train", scheduler=None, check_every: int = 50, amp: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None, progress: bool = True, leave: bool = True,
) -> tuple[float, float]:
    """One pass over `loader`; returns mean training loss and accuracy. Shows a tqdm bar (`progress`),
    which stays on screen after the epoch unless `leave` is False.

    Notebook 02's hand-written loop, plus: `loss_fn` is any `loss_fn(output, labels)` returning the
    batch mean (`F.cross_entropy` for logits, `F.nll_loss` for log-probabilities).

    Loss and correct predictions are summed on the device: reading a number back (`.item()`)
    makes the CPU wait for the GPU, so that happens only every `check_every` batches, to update
    the bar and stop a diverged run (NonFiniteLossError), and once at the end. `amp` (train.py
    --amp, see `amp_dtype`) runs forward and loss in that precision; float16 gradients are scaled so
    that small ones do not round to zero (pass `scaler` to keep its calibrated scale across epochs).
    """
    model.train()
    if amp == torch.float16 and scaler is None:
        scaler = torch.amp.GradScaler(device.type)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    bar = tqdm(loader, desc=desc, mininterval=0.5, disable=not (progress and is_main_process()), leave=leave,
               file=progress_stream())
    for step, (images, labels) in enumerate(bar, start=1):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            output = model(images)
            loss = loss_fn(output, labels)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(labels)
        correct += (output.argmax(dim=1) == labels).sum()
        seen += len(labels)
        if step % check_every == 0 or step == len(loader):
            total = loss_sum.item()
            check_finite(total, seen, device)
            bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{correct.item() / seen:.4f}", refresh=False)
    total_loss, total_correct, seen = all_reduce_sums([loss_sum.item(), correct.item(), seen], device)
    return total_loss / seen, total_correct / seen


def check_finite(loss_sum: float, seen: int, device: torch.device) -> None:
    """Raise NonFiniteLossError if the summed loss is NaN or infinite (on any process)."""
    bad = not math.isfinite(loss_sum)
    if distributed():  # every process must stop together, or the others wait forever
        bad = all_reduce_sums([float(bad)], device)[0] > 0
    if bad:
        raise NonFiniteLossError(
            f"the loss became {loss_sum / max(seen, 1)} within the first {seen} samples of the epoch: training "
            "diverged. Lower the learning rate (or check the data normalisation)."
        )


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn, device: torch.device, amp: torch.dtype | None = None,
             ) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on `loader`, in eval mode and without gradients (notebook 02).

    In a distributed run each process passes its shard of the data; the sums are added up over
    all processes, so every rank returns the figures for the whole set.
    """
    model = unwrap(model)  # no DDP collectives here: ranks may hold different numbers of batches
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast(device, amp):
            output = model(images)
        loss_sum += loss_fn(output.float(), labels) * len(labels)
        correct += (output.argmax(dim=1) == labels).sum()
        seen += len(labels)
    total_loss, total_correct, seen = all_reduce_sums([loss_sum.item(), correct.item(), seen], device)
    return total_loss / seen, total_correct / seen


def seed_epoch(seed: int, epoch: int, loader) -> None:
    """Reseed the global RNG and the loader's shuffle generator for one epoch.

    Makes each epoch depend only on (seed, epoch) and the weights, so a run resumed from a
    checkpoint after epoch k continues exactly like the uninterrupted run would have (bit for bit
    on the same CPU; GPU kernels may sum in a different order from run to run). In a distributed run
    each rank gets its own dropout stream; the shuffle stays the same on every rank.
    """
    torch.manual_seed(seed * 10_000 + epoch + RANK_SEED_STRIDE * process_rank())
    for target in (loader, getattr(loader, "sampler", None)):
        if hasattr(target, "set_epoch"):  # TensorLoader or DistributedSampler: same order on every rank
            target.set_epoch(epoch)
            return
    generator = getattr(loader, "generator", None)  # a plain shuffling DataLoader
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed * 10_000 + epoch)


def steps_per_batch(scheduler) -> bool:
    """True for schedulers that step every batch (OneCycleLR), False for per-epoch ones."""
    return isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)


def fit(
    model: nn.Module, train_loader, val_loader, loss_fn, optimizer: torch.optim.Optimizer,
    epochs: int, device: torch.device, scheduler=None, *, history: list[dict] | None = None,
    seed: int = 0, checkpoint: str | Path | None = None, extra: dict | None = None, verbose: bool = True,
    amp: torch.dtype | None = None, test_loader=None,
) -> list[dict]:
    """Train up to epoch `epochs` and return the history: one dict of metrics per epoch.

    After every epoch the model is evaluated on `val_loader` (a split held out of the training
    data; None: training metrics only). The test set is not touched here: evaluate it once, after
    training. `test_loader` is only for benchmarks that report the time to reach a test accuracy
    (benchmarks/time_to_accuracy.py); nothing may be chosen by it.
    With `verbose`, each epoch's bar is replaced by its one-line summary; without, nothing is shown.
    Continues after the last epoch in `history` (when resuming). With `checkpoint`, saves the last
    state there after every epoch and, with a `val_loader`, the state with the lowest validation
    loss beside it (`best_path(checkpoint)`). Raises NonFiniteLossError if a loss diverges; an epoch
    that ends with a non-finite loss is never saved, so the checkpoint on disk is the last good one.
    """
    history = list(history) if history is not None else []
    start = history[-1]["epoch"] + 1 if history else 1
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None  # one scale for the whole run
    for epoch in range(start, epochs + 1):
        seed_epoch(seed, epoch, train_loader)
        tic = time.perf_counter()
        batch_scheduler = scheduler if steps_per_batch(scheduler) else None
        train_loss, train_acc = train_epoch(
            model, train_loader, loss_fn, optimizer, device, f"epoch {epoch}/{epochs}", batch_scheduler, amp=amp,
            scaler=scaler, progress=verbose, leave=False,
        )
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None and batch_scheduler is None:
            scheduler.step()
        row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "lr": lr}
        broadcast_buffers(model)  # every rank evaluates the model that rank 0 saves
        if val_loader is not None:
            row["val_loss"], row["val_accuracy"] = evaluate(model, val_loader, loss_fn, device, amp)
        if test_loader is not None:
            row["test_loss"], row["test_accuracy"] = evaluate(model, test_loader, loss_fn, device, amp)
        row["seconds"] = time.perf_counter() - tic
        bad = [k for k in ("train_loss", "val_loss", "test_loss") if k in row and not math.isfinite(row[k])]
        if bad:  # e.g. the last step of the epoch broke the weights: do not save them
            raise NonFiniteLossError(
                f"epoch {epoch} ended with a non-finite {', '.join(bad)}: training diverged and this epoch was "
                "not saved. Lower the learning rate (or check the data normalisation)."
            )
        history.append(row)
        if verbose and is_main_process():
            print(format_epoch(row))
        if checkpoint is not None and is_main_process():
            save_training_state(checkpoint, model, optimizer, scheduler, history, extra)
    return history


def format_epoch(row: dict) -> str:
    """One readable line for one epoch's row of a history."""
    parts = [f"epoch {row['epoch']:>2}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"]
    for split in ("val", "test"):
        if f"{split}_loss" in row:
            parts.append(f"{split} loss {row[f'{split}_loss']:.4f} acc {row[f'{split}_accuracy']:.4f}")
    parts.append(f"{row['seconds']:.1f}s")
    return " | ".join(parts)


# ==================== 5. checkpoints (notebook 02)

class CheckpointMismatchError(CourseError):
    """A checkpoint's weights do not fit the model it is loaded into."""


class CheckpointError(CourseError):
    """A checkpoint file is missing, unreadable, or not a PyTorch checkpoint."""


def best_path(path: str | Path) -> Path:
    """Where the best-by-validation checkpoint of `path` lives: ck.pt -> ck.best.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.best{path.suffix}")


def training_state(model, optimizer, scheduler, history: list[dict], extra: dict | None = None) -> dict:
    """Everything needed to resume: weights, optimiser, scheduler, epoch, history, best metric."""
    val = [row["val_loss"] for row in history if "val_loss" in row]
    return {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": history[-1]["epoch"] if history else 0,
        "history": history,
        "best_val_loss": min(val) if val else None,
        "extra": extra or {},
    }


def save_training_state(path, model, optimizer, scheduler, history: list[dict], extra: dict | None = None) -> None:
    """Save the last state to `path`, and to `best_path(path)` when validation loss improved."""
    state = training_state(model, optimizer, scheduler, history, extra)
    atomic_save(state, path)
    if history and "val_loss" in history[-1] and history[-1]["val_loss"] <= state["best_val_loss"]:
        atomic_save(state, best_path(path))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint safely (weights_only=True); one clear CheckpointError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (expected a file written by torch.save)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors, numbers, strings and containers; the course "
            "loads only such plain checkpoints (weights_only=True), as written by train.py and utils"
        ) from None
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first})") from None


def load_weights(model: nn.Module, state_dict: dict) -> None:
    """load_state_dict, but first one clear error naming every mismatched key and shape."""
    own = unwrap(model).state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own if k in state_dict and own[k].shape != state_dict[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"checkpoint does not fit {type(unwrap(model)).__name__}:"]
        if missing:
            lines.append(f"  missing keys: {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys: {', '.join(unexpected)}")
        if shapes:
            lines.append("  shape mismatches: " + "; ".join(shapes))
        raise CheckpointMismatchError("\n".join(lines))
    unwrap(model).load_state_dict(state_dict)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


def atomic_write(path: str | Path, write, mode: str = "wb") -> None:
    """Call write(file) on a temp file beside `path`, then rename it over `path`.

    A crash or an exception mid-write leaves the old file untouched and no temp file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, file_mode(path))  # mkstemp makes the file private (0600); the rename would keep that
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_mode(path: Path) -> int:
    """The permission bits `path` should have: the existing file's, or the default for a new file."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0o022)  # the only way to read the umask is to set it
        os.umask(umask)
        return 0o666 & ~umask


def atomic_save(obj, path: str | Path) -> None:
    """torch.save through a temp file and a rename: never a half-written checkpoint."""
    atomic_write(path, lambda f: torch.save(obj, f))


def write_json(path: str | Path, obj) -> None:
    """Write JSON through a temp file and a rename, so a crash never leaves half a file."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"), mode="w")


# ==================== 6. looking at images and training curves (notebooks 02-03)

def unnormalize(images: torch.Tensor, name: str) -> torch.Tensor:
    """Undo the data set's normalisation and clamp to [0, 1] for display."""
    info = dataset_info(name)
    return (images * info["std"] + info["mean"]).clamp(0, 1)


def show_images(images: torch.Tensor, labels, name: str, title: str = "Images", ncols: int = 8,
                preds=None):
    """A grid of (normalised) images titled with their class names (and predictions if given)."""
    import matplotlib.pyplot as plt

    classes = dataset_info(name)["classes"]
    images = unnormalize(images.detach().cpu(), name)
    nrows = (len(images) + ncols - 1) // ncols
    row_height = 2.0 if preds is None else 2.4
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, row_height * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(images[i, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            text = classes[int(labels[i])]
            if preds is not None:
                text = f"{text}\npred: {classes[int(preds[i])]}"
            ax.set_title(text, fontsize=8, color="black" if preds is None or preds[i] == labels[i] else "red")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, name: str, nrow: int = 8) -> torch.Tensor:
    """torchvision's make_grid of un-normalised images: one (3, H, W) tensor for imshow or TensorBoard."""
    from torchvision.utils import make_grid

    return make_grid(unnormalize(images.detach().cpu(), name), nrow=nrow, padding=2, pad_value=1.0)


def plot_history(history: list[dict], title: str = "Training history"):
    """Loss and accuracy per epoch (train, and validation/test where present); returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for split in ("train", "val", "test"):
        rows = [row for row in history if f"{split}_loss" in row]
        if rows:
            epochs = [row["epoch"] for row in rows]
            ax_loss.plot(epochs, [row[f"{split}_loss"] for row in rows], marker="o", label=split)
            ax_acc.plot(epochs, [row[f"{split}_accuracy"] for row in rows], marker="o", label=split)
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set(title=f"{metric.capitalize()} per epoch", xlabel="epoch", ylabel=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ==================== 7. normalisation statistics and augmentation (notebook 03)

def pixel_stats(ds: Dataset) -> tuple[float, float]:
    """Mean and std of all pixels of a data set whose transform is ToTensor() only (notebook 03, by hand)."""
    total = total_of_squares = 0.0
    count = 0
    for images, _ in DataLoader(ds, batch_size=10_000):
        images = images.double()  # float64 sums: float32 would lose digits over millions of pixels
        total += images.sum().item()
        total_of_squares += (images**2).sum().item()
        count += images.numel()
    mean = total / count
    return mean, (total_of_squares / count - mean**2) ** 0.5


# Training augmentations by name. "rotate" is S5's original one: a 10% chance of a 22/28 centre crop
# (a zoom) and a rotation within +-15 degrees. "flip" suits clothes, which are left-right symmetric
# but never rotated: a mirror half the time; "flip_shift" adds a shift of up to 2 pixels each way.
AUGMENTATIONS: dict[str, dict] = {
    "none": {},
    "rotate": {"degrees": 15.0, "crop_p": 0.1},
    "flip": {"degrees": 0.0, "crop_p": 0.0, "flip_p": 0.5},
    "flip_shift": {"degrees": 0.0, "crop_p": 0.0, "flip_p": 0.5, "shift": 2},
}


DEFAULT_AUGMENTATION = {"mnist": "rotate", "fashion_mnist": "none"}


def augmentation_name(dataset: str, augment: bool | str) -> str:
    """The augmentation to use: True = the data set's default, False = none, or a name from AUGMENTATIONS."""
    if augment is True:
        return DEFAULT_AUGMENTATION.get(dataset, "none")
    if augment is False or augment is None:
        return "none"
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; expected one of {', '.join(AUGMENTATIONS)}")
    return augment


def train_transform(name: str, augment: bool | str = True) -> transforms.Compose:
    """Training transform: the PIL version of the named augmentation (see AUGMENTATIONS)."""
    settings = AUGMENTATIONS[augmentation_name(name, augment)]  # one source for both pipelines
    steps = []
    if settings.get("crop_p"):  # the zoom: a 22/28 centre crop (augment_batch's `crop`) resized back
        zoom = transforms.RandomApply([transforms.CenterCrop(22)], p=settings["crop_p"])
        steps += [zoom, transforms.Resize((28, 28))]
    if settings.get("degrees"):
        steps.append(transforms.RandomRotation((-settings["degrees"], settings["degrees"]), fill=0))
    if settings.get("flip_p"):
        steps.append(transforms.RandomHorizontalFlip(settings["flip_p"]))
    if settings.get("shift"):
        steps.append(transforms.RandomCrop(28, padding=settings["shift"], fill=0))
    return transforms.Compose([*steps, transforms.ToTensor(), normalize(name)])


def augment_theta(n: int, width: int, generator: torch.Generator, degrees: float = 15.0, crop: float = 22 / 28,
                  crop_p: float = 0.1, flip_p: float = 0.0, shift: int = 0) -> torch.Tensor:
    """Random affine matrices (n, 2, 3) for `augment_batch`, drawn on the CPU from `generator`.

    Drawing on the CPU and moving the result to the device makes a run identical on every
    device, and avoids the random-number ops that are unreliable on Apple MPS.
    """
    angle = (torch.rand(n, generator=generator) * 2 - 1) * torch.pi * degrees / 180
    zoom = torch.rand(n, generator=generator) < crop_p
    scale = torch.where(zoom, torch.full_like(angle, crop), torch.ones_like(angle))
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                         torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
    if flip_p:
        mirror = torch.rand(n, generator=generator) < flip_p
        theta[:, :, 0] *= torch.where(mirror, -1.0, 1.0).unsqueeze(1)  # x_in = -x_out
    if shift:
        # Whole pixels (2 / width in grid units), so pixel centres land on pixel centres: no blur.
        pixels = torch.randint(-shift, shift + 1, (n, 2), generator=generator)
        theta[:, :, 2] = pixels * 2 / width
    return theta


def augment_batch(x: torch.Tensor, generator: torch.Generator, degrees: float = 15.0,
                  crop: float = 22 / 28, crop_p: float = 0.1, flip_p: float = 0.0, shift: int = 0) -> torch.Tensor:
    """Random affine augmentation of a whole batch of [0, 1] images, on their device.

    Per image: with probability `crop_p` a centre crop of `crop` of the side resized back to full
    size (a zoom), a rotation in [-degrees, degrees], with probability `flip_p` a left-right
    mirror, and a shift of up to `shift` whole pixels in x and y; all as one affine warp
    (`affine_grid` + `grid_sample`) with black (0) fill, like torchvision's fill=0.
    `generator` is a CPU generator (see `augment_theta`).
    """
    theta = augment_theta(len(x), x.shape[-1], generator, degrees, crop, crop_p, flip_p, shift).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ==================== 8. reading a network: layer tables and summaries (notebook 03)

POOL_OPS = {"max_pool2d", "avg_pool2d", "_max_pool2d", "max_pool2d_with_indices"}


GLOBAL_OPS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "flatten"}


def _pair(value) -> int:
    """First element of an int-or-tuple geometry argument (square kernels in this course)."""
    return value[0] if isinstance(value, (tuple, list)) else int(value)


def _conv_geometry(args, kwargs) -> tuple[int, int, int]:
    """(kernel, stride, dilation) of an F.conv2d call."""
    weight = args[1] if len(args) > 1 else kwargs["weight"]
    stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
    dilation = args[5] if len(args) > 5 else kwargs.get("dilation", 1)
    return weight.shape[-1], _pair(stride), _pair(dilation)


def _pool_geometry(op: str, args, kwargs) -> tuple[int, int, int]:
    """(kernel, stride, dilation) of an F.max_pool2d / avg_pool2d call (stride defaults to kernel).

    Only max pooling has a dilation (5th argument); avg_pool2d's 5th argument is ceil_mode.
    """
    kernel = _pair(args[1] if len(args) > 1 else kwargs["kernel_size"])
    stride = args[2] if len(args) > 2 else kwargs.get("stride")
    dilation = 1
    if "max" in op:
        dilation = args[4] if len(args) > 4 else kwargs.get("dilation", 1)
    return kernel, _pair(stride) if stride not in (None, [], ()) else kernel, _pair(dilation)


def layer_table(model: nn.Module, input_size: tuple[int, ...] = (1, 28, 28), show: bool = True) -> list[dict]:
    """One row per layer: name, output shape, parameters, receptive field and jump.

    Receptive field (rf) and jump are computed while a dummy batch flows through the model, from
    the kernel, stride and dilation of every conv and pooling op actually executed (functional
    calls such as F.max_pool2d included): rf += (kernel - 1) * dilation * jump; jump *= stride.
    After a global pool or flatten every output sees the whole image ("all").
    """
    from torch.overrides import TorchFunctionMode

    state = {"rf": 1, "jump": 1, "depth": 0}
    rows: list[dict] = []

    def add_row(name: str, kind: str, out, params: int) -> None:
        shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
        rows.append({"name": name, "type": kind, "output_shape": shape, "params": params,
                     "rf": state["rf"], "jump": state["jump"]})

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            op = getattr(func, "__name__", "")
            geometry = None
            if op == "conv2d":
                geometry = _conv_geometry(args, kwargs)
            elif op in POOL_OPS:
                geometry = _pool_geometry(op, args, kwargs)
            if geometry and state["rf"] != "all":
                kernel, stride, dilation = geometry
                state["rf"] += (kernel - 1) * dilation * state["jump"]
                state["jump"] *= stride
            elif op in GLOBAL_OPS and isinstance(out, torch.Tensor) and (out.dim() == 2 or out.shape[-1] == 1):
                state["rf"] = "all"
            if state["depth"] == 0 and (geometry or op in GLOBAL_OPS):
                add_row(f"F.{op.lstrip('_')}", "function", out, 0)
            return out

    def pre_hook(module, inputs):
        state["depth"] += 1

    def make_hook(name: str):
        def hook(module, inputs, out):
            state["depth"] -= 1
            if isinstance(module, nn.Linear):  # a fully connected unit sees every input pixel
                state["rf"] = "all"
            add_row(name, type(module).__name__, out, sum(p.numel() for p in module.parameters()))
        return hook

    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    handles = [m.register_forward_pre_hook(pre_hook) for _, m in leaves]
    handles += [m.register_forward_hook(make_hook(n)) for n, m in leaves]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), Recorder():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if show:
        print(format_layer_table(rows))
    return rows


def format_layer_table(rows: list[dict]) -> str:
    """The rows of `layer_table` as an aligned text table with a parameter total."""
    lines = [f"{'layer':<22}{'type':<18}{'output shape':<18}{'params':>10}{'RF':>6}{'jump':>6}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        lines.append(f"{r['name']:<22}{r['type']:<18}{str(r['output_shape']):<18}{r['params']:>10,}"
                     f"{str(r['rf']):>6}{r['jump']:>6}")
    lines.append(f"{'total parameters':<58}{sum(r['params'] for r in rows):>10,}")
    return "\n".join(lines)


def summary(model: nn.Module, input_size: tuple[int, ...] = (1, 28, 28)) -> None:
    """torchsummary's table on any machine (it assumes CUDA by default; we pass the model's device).

    Runs in eval mode without gradients, so its dummy batch leaves BatchNorm statistics alone.
    """
    import copy

    from torchsummary import summary as torchsummary_summary

    device = next(model.parameters()).device
    if device.type not in ("cpu", "cuda"):  # torchsummary builds its dummy input on CPU or CUDA only
        model, device = copy.deepcopy(model).cpu(), torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            torchsummary_summary(model, input_size, device=device.type)
    finally:
        model.train(was_training)


# ==================== 9. predictions and mistakes (notebooks 03-04)

@torch.no_grad()
def get_all_preds(model: nn.Module, loader, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, C) and true labels (N,) for a whole loader, on the CPU."""
    device = device or next(model.parameters()).device
    model.eval()
    probs, targets = [], []
    for images, labels in loader:
        output = model(images.to(device))
        probs.append(output.softmax(dim=1).cpu())  # also right for log-probabilities: softmax(log p) = p
        targets.append(labels.cpu())
    return torch.cat(probs), torch.cat(targets)


def most_confident_mistakes(probs: torch.Tensor, targets: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Indices of the k wrong predictions made with the highest confidence."""
    confidence, preds = probs.max(dim=1)
    wrong = (preds != targets).nonzero().flatten()
    return wrong[confidence[wrong].argsort(descending=True)[:k]]


def plot_mistakes(dataset: Dataset, probs: torch.Tensor, targets: torch.Tensor, name: str, k: int = 16):
    """The k most confidently wrong predictions, each titled true / predicted (confidence)."""
    import matplotlib.pyplot as plt

    classes = dataset_info(name)["classes"]
    idx = most_confident_mistakes(probs, targets, k)
    ncols = 8
    nrows = max(1, (len(idx) + ncols - 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.8 * ncols, 2.5 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx.tolist()):
        image = unnormalize(dataset[i][0], name)
        ax.imshow(image.squeeze().numpy(), cmap="gray_r", vmin=0, vmax=1)
        conf, pred = probs[i].max(dim=0)
        ax.set_title(f"true {classes[targets[i]]}\npred {classes[pred]} ({conf:.2f})", fontsize=7, color="red")
    fig.suptitle(f"The {len(idx)} most confident mistakes")
    fig.tight_layout()
    return fig


# ==================== 10. hyper-parameter runs and TensorBoard (notebook 04)

class RunBuilder:
    """Turn a dict of settings into every combination of them (named tuples); notebook 04 builds it by hand."""

    @staticmethod
    def get_runs(params: dict) -> list:
        """Product of the settings in insertion order, e.g. Run(lr=0.01, batch_size=100)."""
        Run = namedtuple("Run", params.keys())
        return [Run(*values) for values in product(*params.values())]


class RunManager:
    """Per-run and per-epoch bookkeeping: clock, loss, accuracy, a results row per epoch, TensorBoard logs.

    Notebook 04 builds this class by hand and checks that it gives the same rows. Per run:
    begin_run(run, network, loader) -> per epoch: begin_epoch(), track(loss, preds, labels) per
    batch, end_epoch() -> end_run(). Then results() is the table of all epochs of all runs.
    """

    def __init__(self, log_dir: str | Path = "runs") -> None:
        self.log_dir = Path(log_dir)
        self.rows: list[dict] = []  # one dict per epoch of every run
        self.run_count = 0

    def begin_run(self, run, network: nn.Module, loader, name: str | None = None) -> None:
        """Start a run: reset the epoch count, start its clock, open its TensorBoard writer."""
        from torch.utils.tensorboard import SummaryWriter

        self.run, self.network = run, network
        self.run_count += 1
        self.epoch_count = 0
        self.run_start = time.perf_counter()
        label = ",".join(f"{key}={value}" for key, value in run._asdict().items())
        self.writer = SummaryWriter(log_dir=str(self.log_dir / f"run{self.run_count}-{label}"))
        if name:  # the first images of a batch, to check what the network sees
            images, _ = next(iter(loader))
            self.writer.add_image("images", image_grid(images[:32], name))

    def begin_epoch(self) -> None:
        """Start the epoch's clock and reset its sums."""
        self.epoch_count += 1
        self.epoch_start = time.perf_counter()
        self.epoch_loss, self.epoch_correct, self.epoch_seen = 0.0, 0, 0

    def track(self, loss: torch.Tensor, preds: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: its mean loss times its size, and its correct predictions."""
        self.epoch_loss += loss.item() * len(labels)
        self.epoch_correct += (preds.argmax(dim=1) == labels).sum().item()
        self.epoch_seen += len(labels)

    def end_epoch(self) -> dict:
        """Log the epoch to TensorBoard (loss, accuracy, weight and gradient histograms); return its row."""
        loss, accuracy = self.epoch_loss / self.epoch_seen, self.epoch_correct / self.epoch_seen
        self.writer.add_scalar("loss", loss, self.epoch_count)
        self.writer.add_scalar("accuracy", accuracy, self.epoch_count)
        for name, param in self.network.named_parameters():
            self.writer.add_histogram(name, param.detach().cpu(), self.epoch_count)
            if param.grad is not None:
                self.writer.add_histogram(f"{name}.grad", param.grad.detach().cpu(), self.epoch_count)
        row = {"run": self.run_count, "epoch": self.epoch_count, "loss": loss, "accuracy": accuracy,
               "epoch_seconds": time.perf_counter() - self.epoch_start,
               "run_seconds": time.perf_counter() - self.run_start, **self.run._asdict()}
        self.rows.append(row)
        return row

    def end_run(self) -> None:
        """Close the run's TensorBoard writer (that writes everything to disk)."""
        self.writer.close()

    def results(self):
        """All epochs of all runs as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


# ==================== 11. speed: loader settings and timing an epoch (notebook 05)

def loader_kwargs(device: torch.device, num_workers: int | None = None) -> dict:
    """DataLoader keyword arguments that suit the device.

    pin_memory only helps host->GPU copies, so it is on for CUDA only. On a CPU-only machine the
    worker processes compete with the training threads for the same cores: measured on a 2-core
    machine, a Fashion-MNIST epoch took longer with 2 workers than with 0 (benchmarks/README.md), so
    the default is 0 workers on CPU and up to 4 on an accelerator, where the CPU is otherwise idle.
    """
    if num_workers is None:
        num_workers = 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)
    # No persistent_workers: workers restarted every epoch take their random seeds from the
    # epoch's reseeded generator, so a resumed run draws the same augmentation as an unbroken one.
    return {"num_workers": num_workers, "pin_memory": device.type == "cuda"}


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast precision for train.py --amp on this device, or None where it would not help.

    CUDA: bfloat16 on GPUs with native bf16 (compute capability 8.0 and newer: A100, H100, RTX 30xx
    on), else float16 with gradient scaling (a T4, as on Colab: `torch.cuda.is_bf16_supported()`
    says True there too, because it counts emulation). CPU: bfloat16 only on processors with native
    bf16 instructions (AVX512-BF16, AMX); elsewhere bf16 is emulated and slower. Apple MPS: None.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, amp: torch.dtype | None):
    """torch.autocast in `amp` precision, or a context that changes nothing when amp is None."""
    return torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock around it measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_training_epoch(net: nn.Module, loader, device: torch.device, lr: float = 0.01) -> float:
    """Seconds for one training epoch of `net` (a logits model; SGD with momentum), moving every batch to `device`."""
    net = net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    synchronize(device)
    start = time.perf_counter()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


# ==================== 12. several processes: what the loops need under torchrun (notebook 05, train.py)

# Added to a seed per process rank, so that ranks draw different dropout and augmentation.
RANK_SEED_STRIDE = 1_000_003


def distributed() -> bool:
    """True inside a torch.distributed process group with more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes files."""
    import torch.distributed as dist

    return not distributed() or dist.get_rank() == 0


def process_rank() -> int:
    """This process's rank in a distributed run (0 outside one)."""
    import torch.distributed as dist

    return dist.get_rank() if distributed() else 0


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sum each value over all processes (a no-op outside distributed runs)."""
    if not distributed():
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP keeps the parameters equal, but each rank updates its BatchNorm statistics from its own
    batches; without this, ranks would evaluate different models, none of them the saved one.
    """
    if distributed():
        import torch.distributed as dist

        for buffer in unwrap(model).buffers():
            dist.broadcast(buffer, src=0)


def shard(ds: Dataset, rank: int, world_size: int) -> Dataset:
    """Every world_size-th sample starting at rank: disjoint evaluation shards that cover the set."""
    return ds if world_size == 1 else Subset(ds, range(rank, len(ds), world_size))


# ==================== 13. data files: find, download (with mirrors) and check the raw files

RAW_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)


def raw_folder(name: str, root: Path | None = None) -> Path:
    """Where torchvision keeps the uncompressed IDX files of a data set."""
    root = Path(root) if root is not None else data_root()
    return root / dataset_info(name)["cls"].__name__ / "raw"


def ensure_downloaded(name: str, root: Path | None = None) -> Path:
    """Make sure the four IDX files exist and are whole; download them if missing."""
    root = Path(root) if root is not None else data_root()
    raw = raw_folder(name, root)
    if not all((raw / f).exists() for f in RAW_FILES):
        created = [folder for folder in (raw, *raw.parents) if not folder.exists()]  # deepest first
        try:
            download(name, raw)
        except (RuntimeError, OSError) as err:
            for folder in created:  # leave no empty folders behind
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise DataNotFoundError(
                f"{name} data not found in {raw}, and downloading it failed (no internet? {err}).\n"
                f"Expected files: {', '.join(RAW_FILES)}.\n"
                f"Copy them there, or set DATA_DIR to a data root that holds "
                f"{dataset_info(name)['cls'].__name__}/raw/ with those files "
                f"(DATA_DIR is {os.environ.get('DATA_DIR') or 'not set'})."
            ) from None
    for f in RAW_FILES:
        check_idx_file(raw / f)
    return root


def download(name: str, raw: Path) -> None:
    """Fetch and unpack a data set's files with torchvision, trying each of its mirrors in turn.

    Every file is checked against its MD5 sum. torchvision 0.27 and newer also move on to the next
    mirror when a file fails that check, older releases stop at the first bad copy; the loop is
    written here so the course behaves the same on every torchvision it supports.
    Raises RuntimeError naming the file and what each mirror answered.
    """
    cls = dataset_info(name)["cls"]
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in cls.resources:
        if (raw / filename.removesuffix(".gz")).exists():
            continue
        failures = []
        for mirror in cls.mirrors:
            try:
                download_and_extract_archive(f"{mirror}{filename}", str(raw), filename=filename, md5=md5)
                break
            except (URLError, RuntimeError, OSError) as err:
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]
                failures.append(f"{mirror}{filename}: {lines[-1] if lines else type(err).__name__}")
        else:
            raise RuntimeError("; ".join(failures))


def check_idx_file(path: Path) -> None:
    """Raise CorruptDataError unless `path` is a complete IDX file (header and all its bytes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00" or not 1 <= header[3] <= 4:
            raise CorruptDataError(f"{path} is not an IDX data file (bad header); delete it and download again")
        ndim = header[3]
        dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise CorruptDataError(f"{path} is truncated (incomplete header); delete it and download again")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if size != expected:
        raise CorruptDataError(
            f"{path} has {size} bytes but its header promises {expected}: the file is truncated or "
            "corrupted; delete it and download again"
        )


# ==================== 14. smoke mode: tiny runs for the course's tests

def smoke_mode() -> bool:
    """True when COURSE_SMOKE=1: tests shrink data and epochs but still use real data."""
    return os.environ.get("COURSE_SMOKE", "").strip() not in ("", "0", "false", "False")


def epochs(full: int, smoke: int = 1) -> int:
    """The epoch count to use: `full` normally, `smoke` in smoke mode."""
    return smoke if smoke_mode() else full


def data_limit(full: int | None = None, smoke: int = 2000) -> int | None:
    """How many training samples to use: `full` (None = all) normally, `smoke` in smoke mode."""
    return smoke if smoke_mode() else full
