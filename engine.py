"""The training engine behind train.py and the benchmarks: what they need beyond the notebooks' code.

utils.py is the library the notebooks write by hand. This module adds what a command-line run
needs on top of it, and imports utils for everything the notebooks already got right:

1. errors: the course's own exceptions, whose messages say what went wrong and what to do
2. smoke mode: tiny runs for the tests (COURSE_SMOKE=1)
3. data files: find, download (with mirrors) and check the raw MNIST files
4. several processes under torchrun: ranks, sums over ranks, sharded loaders
5. loaders for train.py: utils' loaders, sharded across processes where there are several
6. mixed precision: autocast in bf16, or fp16 with gradient scaling
7. checkpoints: resumable training state, safe loading, atomic writes
8. the training loop: utils' train_epoch and evaluate, with train.py's step (mixed precision, an
   early stop on divergence), sums over ranks, and resumable epochs
9. around a run: joining the processes, resuming, checking output paths, printing on rank 0
10. train.py's command line: option types that state their rule
"""

import argparse
import contextlib
import json
import math
import os
import pickle
import re
import struct
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TextIO
from urllib.error import URLError

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.datasets.utils import download_and_extract_archive
from tqdm import tqdm

import utils

# ==================== 1. errors


class CourseError(Exception):
    """An error of this course's own: its message says what went wrong and what to do."""


class DataNotFoundError(CourseError):
    """The data set is not on disk and could not be downloaded."""


class CorruptDataError(CourseError):
    """A data file on disk is truncated or not an IDX file."""


class NonFiniteLossError(CourseError):
    """The loss became NaN or infinite: the learning rate is probably too high."""


class CheckpointError(CourseError):
    """A checkpoint file is missing, unreadable, or not a PyTorch checkpoint."""


class CheckpointMismatchError(CourseError):
    """A checkpoint's weights do not fit the model it is loaded into."""


# ==================== 2. smoke mode: tiny runs for the course's tests


def smoke_mode() -> bool:
    """True when COURSE_SMOKE is set to anything but 0 (as the notebooks' sizes cells read it): tiny runs, real data."""
    return os.environ.get("COURSE_SMOKE", "0") not in ("", "0")


def epochs(full: int, smoke: int = 1) -> int:
    """The epoch count to use: `full` normally, `smoke` in smoke mode."""
    return smoke if smoke_mode() else full


def data_limit(full: int | None = None, smoke: int = 2000) -> int | None:
    """How many training samples to use: `full` (None = all) normally, `smoke` in smoke mode."""
    return smoke if smoke_mode() else full


# ==================== 3. data files: find, download (with mirrors) and check the raw files

RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def raw_folder(name: str, root: Path | None = None) -> Path:
    """Where torchvision keeps the uncompressed IDX files of a data set."""
    root = Path(root) if root is not None else utils.data_root()
    return root / utils.dataset_info(name)["cls"].__name__ / "raw"


def ensure_downloaded(name: str, root: Path | None = None) -> Path:
    """Make sure the four IDX files exist and are whole, downloading them if missing; return the data root."""
    root = Path(root) if root is not None else utils.data_root()
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
                f"{utils.dataset_info(name)['cls'].__name__}/raw/ with those files "
                f"(DATA_DIR is {os.environ.get('DATA_DIR') or 'not set'})."
            ) from None
    for f in RAW_FILES:
        check_idx_file(raw / f)
    return root


def download(name: str, raw: Path) -> None:
    """Fetch and unpack a data set's files with torchvision, trying each of its mirrors in turn.

    Every file is checked against its MD5 sum. Older torchvision releases stop at the first mirror
    whose copy fails that check; this loop moves on to the next one on every release.
    Raises RuntimeError naming the file and what each mirror answered.
    """
    cls = utils.dataset_info(name)["cls"]
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
    expected = 4 + 4 * ndim + int(np.prod(struct.unpack(f">{ndim}I", dims_bytes)))
    if size != expected:
        raise CorruptDataError(f"{path} has {size} bytes but its header promises {expected}: the file is truncated "
                               "or corrupted; delete it and download again")


# ==================== 4. several processes: what the loops need under torchrun

# Added to a seed per process rank, so that ranks draw different dropout and augmentation.
RANK_SEED_STRIDE = 1_000_003


def distributed() -> bool:
    """True inside a torch.distributed process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes files."""
    return not distributed() or dist.get_rank() == 0


def process_rank() -> int:
    """This process's rank in a distributed run (0 outside one)."""
    return dist.get_rank() if distributed() else 0


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sum each value over all processes (a no-op outside distributed runs)."""
    if not distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather(value) -> list:
    """The value from every process, in rank order ([value] outside distributed runs)."""
    if not distributed():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP keeps the parameters equal, but each rank updates its BatchNorm statistics from its own
    batches; without this, ranks would evaluate different models, none of them the saved one.
    """
    if distributed():
        for buffer in unwrap(model).buffers():
            dist.broadcast(buffer, src=0)


def shard(ds: Dataset, rank: int, world_size: int) -> Dataset:
    """Every world_size-th sample starting at rank: disjoint evaluation shards that cover the set."""
    return ds if world_size == 1 else Subset(ds, range(rank, len(ds), world_size))


def shard_size(n: int, world_size: int) -> int:
    """Samples per process and epoch when n are split over world_size (padded by wrapping to be equal)."""
    return -(-n // world_size)


class ShardedTensorLoader(utils.TensorLoader):
    """A TensorLoader serving one process's part of every epoch, like a DistributedSampler.

    Every rank draws the same permutation from a generator of its own (`order_generator`, seeded
    alike on every rank, with or without `set_epoch`), pads it by wrapping so it splits evenly, and
    takes every world_size-th index from its rank on. The augmentation draws from `generator`,
    seeded per rank, so each rank augments its images differently.
    """

    def __init__(self, *args, rank: int, world_size: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rank, self.world_size = rank, world_size
        self.order_generator = torch.Generator().manual_seed(self.seed)
        self.generator.manual_seed(self.seed + RANK_SEED_STRIDE * (rank + 1))

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shared order and this rank's augmentation for this epoch."""
        self.order_generator.manual_seed(utils.epoch_seed(self.seed, epoch))
        self.generator.manual_seed(utils.epoch_seed(self.seed, epoch) + RANK_SEED_STRIDE * (self.rank + 1))

    def order(self) -> torch.Tensor:
        """This process's sample indices for the epoch."""
        n = len(self.labels)
        order = torch.randperm(n, generator=self.order_generator) if self.shuffle else torch.arange(n)
        padded = shard_size(n, self.world_size) * self.world_size
        return torch.cat([order, order[: padded - n]])[self.rank :: self.world_size].to(self.device)

    def __len__(self) -> int:
        """Batches per epoch for this process (the last one may be smaller)."""
        return -(-shard_size(len(self.labels), self.world_size) // self.batch_size)


# ==================== 5. loaders for train.py

# The augmentation each data set trains with by default: digits rotate, clothes (left-right symmetric,
# never upside down) are left alone unless a recipe says otherwise.
DEFAULT_AUGMENTATION = {"mnist": "rotate", "fashion_mnist": "none"}


def augmentation_name(dataset: str, augment: bool | str) -> str:
    """The augmentation to use: True = the data set's default, False = none, or a name from utils.AUGMENTATIONS."""
    if augment is True:
        return DEFAULT_AUGMENTATION.get(dataset, "none")
    if augment is False or augment is None:
        return "none"
    if augment not in utils.AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; expected one of {', '.join(utils.AUGMENTATIONS)}")
    return augment


def get_loaders(name: str, batch_size: int, device: torch.device, limit: int | None = None,
                test_limit: int | None = None, val_size: int = 0, augment: bool | str = True, seed: int = 0,
                loader: str = "torchvision", num_workers: int | None = None, rank: int = 0,
                world_size: int = 1) -> utils.Loaders:
    """utils.get_loaders with a named augmentation, after checking the data files; under torchrun, this rank's part.

    `augment`: True = the data set's default augmentation, False = none, or a name from
    utils.AUGMENTATIONS. The torchvision loader's workers and pinned memory suit the device
    (utils.loader_kwargs). With world_size > 1 each process trains on its own part of every epoch
    (DistributedSampler, or ShardedTensorLoader for the fast loader) and evaluates its shard.
    """
    ensure_downloaded(name)
    augmentation = augmentation_name(name, augment)
    fast = loader == "fast"
    workers = utils.loader_kwargs(device, num_workers)
    transform = None if fast else utils.train_transform(name, augmentation)
    if world_size == 1:
        return utils.get_loaders(name, batch_size, device, limit=limit, test_limit=test_limit, val_size=val_size,
                                 seed=seed, loader=loader, train_transform=transform,
                                 augment=utils.batch_augmentation(augmentation) if fast else None, **workers)
    train_set, val_set, test_set = utils.get_datasets(name, limit, test_limit, val_size, seed, transform)
    eval_batch = utils.eval_batch_size(batch_size)
    if fast:
        train = ShardedTensorLoader(train_set, name, device, batch_size, shuffle=True, seed=seed, rank=rank,
                                    world_size=world_size, augment=utils.batch_augmentation(augmentation))

        def evaluation(ds: Dataset) -> utils.TensorLoader:
            return utils.TensorLoader(shard(ds, rank, world_size), name, device, eval_batch)
    else:
        sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        train = DataLoader(train_set, batch_size, sampler=sampler, **workers)

        def evaluation(ds: Dataset) -> DataLoader:
            return DataLoader(shard(ds, rank, world_size), eval_batch, **workers)
    return utils.Loaders(train, evaluation(val_set) if val_set is not None else None, evaluation(test_set))


def reseed_loader(loader, seed: int, epoch: int) -> None:
    """Make the loader's order for `epoch` a function of (seed, epoch) only: the same on every rank and on resume."""
    if isinstance(loader, utils.TensorLoader):
        loader.set_epoch(epoch)
    elif isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    elif loader.generator is not None:  # a shuffling DataLoader; its workers' seeds come from it too
        loader.generator.manual_seed(utils.epoch_seed(seed, epoch))


# ==================== 6. mixed precision


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast precision for train.py --amp on this device, or None where it would not help.

    CUDA: bfloat16 on GPUs with native bf16 (compute capability 8.0 and newer), else float16 with
    gradient scaling (a T4: `torch.cuda.is_bf16_supported()` says True there too, because it counts
    emulation). CPU: bfloat16 only on processors with native bf16 instructions (AVX512-BF16, AMX);
    elsewhere bf16 is emulated and slower. Apple MPS: None.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def bf16_in_cpu_flags(cpuinfo: str) -> bool:
    """Whether the flags of a /proc/cpuinfo text include native bfloat16 instructions (AVX512-BF16 or AMX-BF16)."""
    return re.search(r"^flags\s*:.*\b(avx512_bf16|amx_bf16)\b", cpuinfo, re.MULTILINE) is not None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively, from the CPU flags that the operating system reports.

    PyTorch's public API names only the instruction family it uses (torch.backends.cpu.get_cpu_capability()
    says "AVX512", not whether bf16 is native); its own bf16 check is private, and a timing probe would
    decide differently from run to run on a busy machine. Linux lists the flags in /proc/cpuinfo;
    elsewhere the answer is False, so --amp trains in float32, which is never slower than emulated bf16.
    """
    try:
        return bf16_in_cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


# ==================== 7. checkpoints


def best_path(path: str | Path) -> Path:
    """Where the best-by-validation checkpoint of `path` lives: ck.pt -> ck.best.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.best{path.suffix}")


def training_state(model: nn.Module, optimizer, scheduler, history: list[dict], extra: dict | None = None) -> dict:
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


def save_training_state(path, model: nn.Module, optimizer, scheduler, history: list[dict],
                        extra: dict | None = None) -> None:
    """Save the last state to `path`, and to `best_path(path)` when the validation loss improved."""
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
            "loads only such plain checkpoints (weights_only=True), as written by train.py and utils") from None
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first})") from None


def load_weights(model: nn.Module, state_dict: dict) -> None:
    """load_state_dict, but first one clear error naming every mismatched key and shape."""
    own = unwrap(model).state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
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


# ==================== 8. the training loop


def progress_stream() -> TextIO:
    """Where progress bars go: stdout in Jupyter, which frames stderr as an error; stderr elsewhere,
    so that `python train.py > log.txt` keeps the bars on the screen and the log clean."""
    return sys.stdout if "ipykernel" in sys.modules else sys.stderr


def check_finite(loss: float, steps: int, device: torch.device) -> None:
    """Raise NonFiniteLossError if a loss is NaN or infinite (on any process)."""
    bad = not math.isfinite(loss)
    if distributed():  # every process must stop together, or the others wait forever
        bad = all_reduce_sums([float(bad)], device)[0] > 0
    if bad:
        raise NonFiniteLossError(
            f"the loss became {loss} by training step {steps}: training diverged. Lower the learning rate (or "
            "check the data normalisation).")


class EngineStep:
    """utils.train_step as train.py runs it: in mixed precision if asked, and stopping a diverged epoch early.

    Every `check_every` steps it reads the batch's loss back from the device, which makes the CPU wait
    for the GPU (once per batch, that would leave the GPU idle), and raises NonFiniteLossError if it is
    not finite. With `amp`, the forward pass and the loss run under autocast (the backward pass outside
    it, as PyTorch advises); float16 gradients are scaled by a GradScaler so that small ones do not
    round to zero. One instance serves a whole run, so the scaler keeps its calibrated scale.
    """

    def __init__(self, device: torch.device, amp: torch.dtype | None = None, check_every: int = 50) -> None:
        self.device, self.amp, self.check_every = device, amp, check_every
        self.scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
        self.steps = 0

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn,
                 optimizer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
        if self.amp is None:
            loss, output = utils.train_step(model, images, labels, loss_fn, optimizer)
        else:
            with torch.autocast(self.device.type, dtype=self.amp):
                output = model(images)
                loss = loss_fn(output, labels)
            optimizer.zero_grad()
            if self.scaler is None:
                loss.backward()
                optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()
        self.steps += 1
        if self.steps % self.check_every == 0:
            check_finite(loss.item(), self.steps, self.device)
        return loss, output


def samples_in(loader) -> int:
    """How many samples one pass over `loader` serves on this process."""
    if isinstance(loader, ShardedTensorLoader):
        return shard_size(len(loader.labels), loader.world_size)
    sampler = getattr(loader, "sampler", None)
    return len(sampler) if isinstance(sampler, DistributedSampler) else len(loader.dataset)


def mean_over_processes(loss: float, accuracy: float, samples: int, device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy over every process, from each process's means over its own samples."""
    total_loss, correct, seen = all_reduce_sums([loss * samples, accuracy * samples, samples], device)
    return total_loss / seen, correct / seen


def train_epoch(model: nn.Module, loader, loss_fn, optimizer: torch.optim.Optimizer, device: torch.device,
                scheduler=None, desc: str = "train", progress: bool = True, *, amp: torch.dtype | None = None,
                step: EngineStep | None = None, leave: bool = True) -> tuple[float, float]:
    """utils.train_epoch with train.py's step (EngineStep), a bar on rank 0 (progress_stream) and means over ranks."""
    bar = tqdm(loader, desc=desc, mininterval=0.5, disable=not (progress and is_main_process()), leave=leave,
               file=progress_stream())  # utils' own bar writes to stdout, which `> log.txt` would fill
    loss, accuracy = utils.train_epoch(model, bar, loss_fn, optimizer, device, scheduler, desc, progress=False,
                                       step=step or EngineStep(device, amp))
    return mean_over_processes(loss, accuracy, samples_in(loader), device)


def evaluate(model: nn.Module, loader, loss_fn, device: torch.device) -> tuple[float, float]:
    """utils.evaluate on this process's shard, in float32, with the means taken over every process."""
    loss, accuracy = utils.evaluate(unwrap(model), loader, loss_fn, device)  # no DDP collectives: shards differ
    return mean_over_processes(loss, accuracy, samples_in(loader), device)


def seed_epoch(seed: int, epoch: int, loader) -> None:
    """Reseed the global RNG (dropout) and the loader's order for one epoch.

    Each epoch then depends only on (seed, epoch) and the weights, so a run resumed after epoch k
    continues exactly like the uninterrupted run (bit for bit on the same CPU; GPU kernels may sum
    in another order from run to run). Each rank draws its own dropout; the order is shared.
    """
    torch.manual_seed(utils.epoch_seed(seed, epoch) + RANK_SEED_STRIDE * process_rank())
    reseed_loader(loader, seed, epoch)


def fit(model: nn.Module, train_loader, val_loader, loss_fn, optimizer: torch.optim.Optimizer, epochs: int,
        device: torch.device, scheduler=None, *, history: list[dict] | None = None, seed: int = 0,
        checkpoint: str | Path | None = None, extra: dict | None = None, verbose: bool = True,
        amp: torch.dtype | None = None, test_loader=None) -> list[dict]:
    """Train up to epoch `epochs`, like utils.fit, and return the history: one dict of metrics per epoch.

    On top of utils.fit: mixed precision (`amp`), several processes, and resuming: it continues
    after the last epoch in `history`. With `checkpoint`, the whole training state is saved there
    after every epoch and, with a `val_loader`, the state with the lowest validation loss beside it
    (`best_path`). Raises NonFiniteLossError if the loss diverges; an epoch that ends with a
    non-finite loss is never saved, so the checkpoint on disk is the last good one. `test_loader`
    is only for benchmarks of the time to reach a test accuracy: nothing may be chosen by it.
    """
    history = list(history) if history is not None else []
    start = history[-1]["epoch"] + 1 if history else 1
    step = EngineStep(device, amp)  # one for the whole run: its gradient scale carries over
    per_batch = isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)  # steps every batch
    for epoch in range(start, epochs + 1):
        seed_epoch(seed, epoch, train_loader)
        tic = time.perf_counter()
        train_loss, train_acc = train_epoch(model, train_loader, loss_fn, optimizer, device,
                                            scheduler if per_batch else None, f"epoch {epoch}/{epochs}", verbose,
                                            step=step, leave=False)
        lr = optimizer.param_groups[0]["lr"]  # the rate after the epoch's last step
        if scheduler is not None and not per_batch:
            scheduler.step()  # StepLR and the like: once per epoch
        row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "lr": lr}
        broadcast_buffers(model)  # every rank evaluates the model that rank 0 saves
        if val_loader is not None:
            row["val_loss"], row["val_accuracy"] = evaluate(model, val_loader, loss_fn, device)
        if test_loader is not None:
            row["test_loss"], row["test_accuracy"] = evaluate(model, test_loader, loss_fn, device)
        row["seconds"] = time.perf_counter() - tic
        bad = [k for k in ("train_loss", "val_loss", "test_loss") if k in row and not math.isfinite(row[k])]
        if bad:  # e.g. the last step of the epoch broke the weights: do not save them
            raise NonFiniteLossError(
                f"epoch {epoch} ended with a non-finite {', '.join(bad)}: training diverged and this epoch was "
                "not saved. Lower the learning rate (or check the data normalisation).")
        history.append(row)
        if verbose and is_main_process():
            print(utils.format_epoch(row))
        if checkpoint is not None and is_main_process():
            save_training_state(checkpoint, model, optimizer, scheduler, history, extra)
    return history


# ==================== 9. around a run: processes, resuming, output paths, printing


def start_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process; joins the process group when torchrun started several."""
    try:
        device = utils.get_device(device_name)
    except ValueError as err:
        raise CourseError(f"--device {device_name}: {err}") from None
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device
    if device.type == "mps":
        raise CourseError("DistributedDataParallel does not support Apple MPS; run with --device cpu")
    if device.type == "cuda":  # one GPU per process, NCCL between them
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def checkpoint_options(path: str) -> tuple[dict, int]:
    """The options a train.py checkpoint was trained with, and how many epochs it holds."""
    state = load_checkpoint(path)
    saved = state.get("extra", {}).get("args") if isinstance(state, dict) else None
    if not isinstance(saved, dict) or "model" not in state or "optimizer" not in state:
        raise CheckpointError(f"{path} is a PyTorch file but not a checkpoint written by train.py --save")
    return saved, state.get("epoch", 0)


def resume(path: str, model: nn.Module, optimizer, scheduler, device: torch.device) -> list[dict]:
    """Restore weights, optimiser and scheduler from a train.py checkpoint; return its history."""
    state = load_checkpoint(path, map_location=device)
    load_weights(model, state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    log(f"resumed from {path} after epoch {state['epoch']}")
    return state["history"]


def unwritable(path: str) -> str | None:
    """Why no file can be written at `path` (None if one can), found by making one there (which goes again)."""
    folder = Path(path).parent
    if Path(path).is_dir():
        return "is a directory, expected a file path"
    made = [f for f in (folder, *folder.parents) if not f.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)  # exist_ok: under torchrun every rank checks at once
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        for f in made:  # a refused path leaves nothing behind
            with contextlib.suppress(OSError):  # another rank's file may be in it by now
                f.rmdir()
        return f"cannot write a file in {folder} ({err.strerror}); expected a path in a folder you can write to"
    return None


def weight_checksum(model: nn.Module) -> float:
    """The sum of all weights and buffers, on the CPU in float64 (MPS has no float64)."""
    state = unwrap(model).state_dict().values()
    return sum(t.detach().cpu().double().sum().item() for t in state if t.is_floating_point())


def log(message: str) -> None:
    """Print from rank 0 only."""
    if is_main_process():
        print(message, flush=True)


# ==================== 10. train.py's command line


def checked(convert, rule: str, test):
    """An argparse type: `convert` the text, then refuse a value that fails `test`, stating the `rule`."""
    def parse(text: str):
        value = convert(text)
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value
    parse.__name__ = convert.__name__  # text that is no number reads "invalid int value: 'x'"
    return parse


positive_int = checked(int, "a positive integer", lambda value: value > 0)
non_negative_int = checked(int, "0 or more", lambda value: value >= 0)
positive_float = checked(float, "positive", lambda value: value > 0)  # also refuses nan
non_negative_float = checked(float, "0 or more", lambda value: value >= 0)
fraction = checked(float, "in [0, 1)", lambda value: 0 <= value < 1)
