"""Train a course model on MNIST or Fashion-MNIST from the command line.

    python train.py                                  # quick net on MNIST, its recipe (model.RECIPES)
    python train.py --model compact                  # notebook 07's 5,862-parameter net, its 15-epoch recipe
    python train.py --model fashion_best             # its recipe includes --dataset fashion_mnist
    python train.py --model fashion --dataset fashion_mnist --optimizer adam --lr 0.001
    python train.py --val-size 10000                 # judge every epoch on 10,000 held-out training images
    python train.py --save ck.pt                     # interrupted? python train.py --resume ck.pt
    python train.py --scheduler step --epochs 2 --save ck.pt   # then: ... --resume ck.pt --epochs 3
    python train.py --help
    torchrun --standalone --nproc_per_node=2 train.py --model fashion --dataset fashion_mnist

After every epoch the model is evaluated on the validation split (--val-size, if any); the test set
is evaluated once, after the last epoch. Data comes from $DATA_DIR (default: data/ beside this file).
With COURSE_SMOKE=1 the default epochs and data sizes shrink so the whole run takes seconds (tests
use this).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import model as models
import utils

# The loss for what a model returns (model.RECIPES names it): log-probabilities -> NLL, logits -> cross-entropy.
LOSSES = {"nll": F.nll_loss, "cross_entropy": F.cross_entropy}
# Settings a recipe (model.RECIPES) may leave out.
FALLBACKS = {"loss": "cross_entropy", "dataset": "mnist", "scheduler": "step", "weight_decay": 0.0,
             "augment": "default"}
# Defaults of options that no recipe sets.
DEFAULTS = {"gamma": 0.1, "seed": 1, "val_size": 0, "loader": "fast", "device": "auto", "amp": False,
            "test_every_epoch": False}
# Options that may differ when resuming: output paths, where to run, and --epochs (checked apart).
MAY_DIFFER_ON_RESUME = {"json", "save", "resume", "device", "epochs", "test_every_epoch"}


def build_parser() -> argparse.ArgumentParser:
    """The command-line options. Defaults are None here, so that parse_args can tell what was given."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="%(prog)s [options]   (--help lists them)")  # errors stay short
    p.add_argument("--model", choices=sorted(models.MODELS), help="network (default: quick)")
    p.add_argument("--dataset", choices=sorted(utils.DATASETS), help="data set (default: the recipe's, else mnist)")
    p.add_argument("--epochs", type=int, help="total epochs (default: the model's recipe; 1 in smoke mode)")
    p.add_argument("--batch-size", type=int, help="default: the model's recipe (model.RECIPES)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="default: the model's recipe")
    p.add_argument("--lr", type=float, help="learning rate (peak rate with onecycle); default: recipe")
    p.add_argument("--momentum", type=float, help="SGD momentum; default: recipe")
    p.add_argument("--weight-decay", type=float, help="default: the recipe's, else 0")
    p.add_argument("--scheduler", choices=["step", "onecycle", "none"],
                   help="step: StepLR every --step-size epochs (resumable to more epochs); "
                        "onecycle: OneCycleLR over the whole run (default: the recipe's, else step)")
    p.add_argument("--step-size", type=int, help="StepLR period in epochs; default: recipe")
    p.add_argument("--gamma", type=float, help="StepLR factor (default: 0.1)")
    p.add_argument("--seed", type=int, help="random seed (default: 1)")
    p.add_argument("--limit", type=int, help="use only the first N training samples")
    p.add_argument("--val-size", type=int,
                   help="hold out N training samples, evaluated after every epoch, for choosing settings and the "
                        "best checkpoint; the test set is evaluated once, at the end (default: 0)")
    p.add_argument("--augment", choices=["default", *utils.AUGMENTATIONS],
                   help="training augmentation (utils.AUGMENTATIONS); default: the recipe's, else the "
                        "data set's (mnist: rotate, fashion_mnist: none)")
    p.add_argument("--no-augment", action="store_true", help="same as --augment none")
    p.add_argument("--loader", choices=["fast", "torchvision"],
                   help="fast: whole data set as one tensor on the device (default); "
                        "torchvision: Dataset + DataLoader")
    p.add_argument("--num-workers", type=int, help="DataLoader workers, torchvision loader only (default: by device)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: auto (CUDA, MPS, CPU)")
    p.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision: bf16 autocast (fp16 + gradient scaling on GPUs older than Ampere, such "
                        "as a T4). It pays where the arithmetic dominates: on a CPU with native bf16 instructions it "
                        "measured faster (without them, and on Apple MPS, it warns and trains in float32). On an "
                        "H200 it measured slower for the small default model, whose many short kernels wait on "
                        "launches, not on arithmetic (README, On a GPU)")
    p.add_argument("--test-every-epoch", action="store_true", default=None,
                   help="also evaluate the test set after every epoch, for benchmarks of the time to reach a test "
                        "accuracy; choose nothing by it (default: the test set once, after training)")
    p.add_argument("--json", metavar="PATH", help="write the results and per-epoch history here")
    p.add_argument("--save", metavar="PATH", help="checkpoint after every epoch (best-by-validation beside it)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue training from this checkpoint, with its options; only --epochs (StepLR or no "
                        "schedule), --device and the output paths may be changed")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every option before any work starts; fill the rest from the recipe or the checkpoint."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.no_augment:
        if args.augment not in (None, "none"):
            p.error(f"--no-augment contradicts --augment {args.augment}")
        args.augment = "none"
    del args.no_augment
    given = {key for key, value in vars(args).items() if value is not None}
    if args.resume:
        fill_from_checkpoint(p, args, given)
    elif "limit" not in given:
        args.limit = utils.data_limit()
    args.model = args.model or "quick"
    if args.model not in models.MODELS:  # a checkpoint can name a model this train.py does not have
        p.error(f"{args.resume} was trained with model {args.model!r}, which is not one of "
                f"{', '.join(sorted(models.MODELS))}")
    for key, value in {**FALLBACKS, **models.RECIPES[args.model], **DEFAULTS}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, utils.epochs(value, smoke=1) if key == "epochs" else value)
    check_values(p, args)
    warn_unused(args, given)
    return args


def fill_from_checkpoint(p: argparse.ArgumentParser, args: argparse.Namespace, given: set[str]) -> None:
    """Take every option not given from the checkpoint; refuse given ones that would change the run."""
    try:
        state = utils.load_checkpoint(args.resume)
    except utils.CheckpointError as err:
        p.error(str(err))
    saved = state.get("extra", {}).get("args") if isinstance(state, dict) else None
    if not isinstance(saved, dict) or "model" not in state or "optimizer" not in state:
        p.error(f"{args.resume} is a PyTorch file but not a checkpoint written by train.py --save")
    differ = [key for key in sorted(given - MAY_DIFFER_ON_RESUME)
              if key in saved and getattr(args, key) != saved[key]]
    if differ:
        changes = ", ".join(f"--{k.replace('_', '-')} {getattr(args, k)} (checkpoint: {saved[k]})" for k in differ)
        p.error(f"cannot resume {args.resume} with different options, which would change the run: {changes}. "
                "Leave them out to continue the run as it was, or start a new run without --resume.")
    for key, value in saved.items():
        if key not in given and key in vars(args) and key not in ("json", "save", "resume"):
            setattr(args, key, value)
    if args.scheduler == "onecycle" and args.epochs != saved["epochs"]:
        p.error(f"a onecycle schedule spans the whole run: resume {args.resume} with its --epochs "
                f"({saved['epochs']}), or train a new run with --scheduler step")
    if args.epochs < state.get("epoch", 0):
        p.error(f"{args.resume} already holds {state['epoch']} epochs; --epochs {args.epochs} is fewer")


def check_values(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One clear error for a value that would fail later (bad numbers, unwritable paths, missing device)."""
    for name in ("epochs", "batch_size", "limit", "step_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    train_size = min(args.limit or utils.TRAIN_SIZE, utils.TRAIN_SIZE)
    if not 0 <= args.val_size < train_size:
        p.error(f"--val-size must be between 0 and {train_size - 1} (the training samples), got {args.val_size}")
    if args.num_workers is not None and args.num_workers < 0:
        p.error(f"--num-workers must be 0 or more, got {args.num_workers}")
    if not args.lr > 0 or not args.gamma > 0:
        p.error(f"--lr and --gamma must be positive, got --lr {args.lr} --gamma {args.gamma}")
    if not 0 <= args.momentum < 1 or args.weight_decay < 0:
        p.error(f"--momentum must be in [0, 1) and --weight-decay 0 or more, "
                f"got --momentum {args.momentum} --weight-decay {args.weight_decay}")
    for option in ("json", "save"):
        problem = unwritable(getattr(args, option))
        if problem:
            p.error(f"--{option} {getattr(args, option)}: {problem}")
    try:
        device = utils.get_device(args.device)
    except ValueError as err:
        p.error(f"--device {args.device}: {err}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device.type == "mps":
        p.error("DistributedDataParallel does not support Apple MPS; run with --device cpu")


def unwritable(path: str | None) -> str | None:
    """Why a file cannot be written at `path` (None if it can, or if no path was given)."""
    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        return "is a directory, expected a file path"
    folder = target.parent
    while not folder.exists():  # atomic_write creates missing folders
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return "permission denied"
    return None


def warn_unused(args: argparse.Namespace, given: set[str]) -> None:
    """Warn about options that do nothing in the chosen setting."""
    unused = []
    if "momentum" in given and args.optimizer != "sgd":
        unused.append("--momentum (only SGD has momentum)")
    if "num_workers" in given and args.loader == "fast":
        unused.append("--num-workers (the fast loader has no workers; use --loader torchvision)")
    if args.amp and utils.amp_dtype(utils.get_device(args.device)) is None:
        unused.append(f"--amp (no faster lower precision on {utils.get_device(args.device)}: this CPU has no native "
                      "bf16, or this is Apple MPS)")
    if {"step_size", "gamma"} & given and args.scheduler != "step":
        unused.append("--step-size/--gamma (only --scheduler step uses them)")
    for text in unused:
        print(f"warning: {text} has no effect here", file=sys.stderr)


def augment_setting(args: argparse.Namespace) -> bool | str:
    """The --augment option as utils.get_loaders takes it: True for the data set's default, else its name."""
    return True if args.augment == "default" else args.augment


def describe_recipe(args: argparse.Namespace) -> str:
    """The resolved training recipe in one line."""
    optimizer = f"{args.optimizer} lr {args.lr:g}"
    if args.optimizer == "sgd":
        optimizer += f" momentum {args.momentum:g}"
    schedule = {"step": f"StepLR every {args.step_size} epochs x {args.gamma:g}", "onecycle": "OneCycleLR",
                "none": "constant lr"}[args.scheduler]
    augment = utils.augmentation_name(args.dataset, augment_setting(args))
    amp = utils.amp_dtype(utils.get_device(args.device)) if args.amp else None
    precision = f", {str(amp).removeprefix('torch.')} autocast" if amp else ""
    return (f"recipe: {args.loss} loss{precision}, {optimizer}, weight decay {args.weight_decay:g}, {schedule}, "
            f"batch {args.batch_size}, {args.epochs} epochs, augmentation {augment}, {args.loader} loader, "
            f"seed {args.seed}")


def make_optimizer(args: argparse.Namespace, net: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum or Adam, from the command-line options."""
    if args.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def make_scheduler(args: argparse.Namespace, optimizer, steps_per_epoch: int):
    """The learning-rate schedule named by --scheduler (None for 'none')."""
    if args.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma)
    if args.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
        )
    return None


def resume(path: str, net, optimizer, scheduler, device) -> list[dict]:
    """Restore weights, optimiser and scheduler (parse_args checked the options); return the history."""
    state = utils.load_checkpoint(path, map_location=device)
    utils.load_weights(net, state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    log(f"resumed from {path} after epoch {state['epoch']}")
    history = state["history"]
    if isinstance(history, dict):  # checkpoints written before histories were lists of rows
        history = [dict(zip(history, values)) for values in zip(*history.values())]
    return history


def start_distributed(args: argparse.Namespace) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun with N > 1."""
    device = utils.get_device(args.device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device
    if device.type == "cuda":  # one GPU per process, NCCL between them
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def gather(value) -> list:
    """The value from every process, in rank order ([value] outside distributed runs)."""
    if not utils.distributed():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def samples_per_epoch(loader) -> int:
    """How many training samples this process sees per epoch (its shard under DDP)."""
    if isinstance(loader, utils.TensorLoader):
        return loader.samples_per_epoch()
    return len(loader.sampler)


def log(message: str) -> None:
    """Print from rank 0 only."""
    if utils.is_main_process():
        print(message, flush=True)


def weight_checksums(net: torch.nn.Module) -> list[float]:
    """Each rank's sum of all weights and buffers, on the CPU in float64 (MPS has no float64)."""
    state = utils.unwrap(net).state_dict().values()
    return gather(sum(t.detach().cpu().double().sum().item() for t in state if t.is_floating_point()))


def run(args: argparse.Namespace) -> dict:
    """Train and evaluate as the options say; return the results written to --json."""
    rank, world_size, device = start_distributed(args)
    if utils.smoke_mode():
        log("=" * 78 + "\nSMOKE MODE (COURSE_SMOKE is set): a small subset and few epochs, for tests only.\n"
            "Unset COURSE_SMOKE for a real run.\n" + "=" * 78)
    log(describe_recipe(args))
    utils.set_seed(args.seed)  # same seed on every rank: identical initial weights
    loaders = utils.get_loaders(
        args.dataset, args.batch_size, device, limit=args.limit, test_limit=utils.data_limit(smoke=2000),
        val_size=args.val_size, augment=augment_setting(args), seed=args.seed,
        num_workers=args.num_workers, loader=args.loader, rank=rank, world_size=world_size,
    )
    net = models.build(args.model).to(device)
    if world_size > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(args, net)
    scheduler = make_scheduler(args, optimizer, len(loaders.train))
    history = resume(args.resume, net, optimizer, scheduler, device) if args.resume else None
    params = models.count_parameters(net)
    test_total = int(utils.all_reduce_sums([len(loaders.test.dataset)], device)[0])
    log(f"{args.model} ({params:,} parameters) on {args.dataset}, device {device}"
        f"{f' x {world_size} processes' if world_size > 1 else ''}, "
        f"{len(utils.base_and_indices(loaders.train.dataset)[1]):,} training samples, {args.epochs} epochs")

    tic = time.perf_counter()
    loss_fn = LOSSES[args.loss]
    amp = utils.amp_dtype(device) if args.amp else None
    history = utils.fit(
        net, loaders.train, loaders.val, loss_fn, optimizer, args.epochs, device, scheduler,
        history=history, seed=args.seed, checkpoint=args.save or args.resume, extra={"args": vars(args)},
        amp=amp, test_loader=loaders.test if args.test_every_epoch else None,
    )
    test_loss, test_acc = utils.evaluate(net, loaders.test, loss_fn, device, amp)
    correct = round(test_acc * test_total)
    log(f"test accuracy {100 * test_acc:.2f}% ({correct}/{test_total})")
    checksums = weight_checksums(net) if world_size > 1 else None  # are the ranks' models identical?
    return {
        "model": args.model, "dataset": args.dataset, "device": str(device), "params": params,
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "world_size": world_size,
        "effective_batch_size": args.batch_size * world_size,
        "train_samples": len(utils.base_and_indices(loaders.train.dataset)[1]),
        "train_samples_per_rank": gather(samples_per_epoch(loaders.train)),
        "weight_checksums": checksums, "weights_in_sync": checksums is None or len(set(checksums)) == 1,
        "test_accuracy": test_acc, "test_loss": test_loss, "test_correct": correct, "test_total": test_total,
        "wall_seconds": time.perf_counter() - tic, "amp": str(amp) if amp else None,
        "torch": torch.__version__, "smoke": utils.smoke_mode(),
        "history": history, "args": vars(args),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit status 0 on success, 1 with one clear message on a known failure."""
    args = parse_args(argv)
    try:
        results = run(args)
        if args.json and utils.is_main_process():
            utils.write_json(args.json, results)
            print(f"results written to {args.json}")
    except utils.CourseError as err:  # the course's own errors carry a message for the user; others are bugs
        checkpoint = args.save or args.resume
        if isinstance(err, utils.NonFiniteLossError) and checkpoint and Path(checkpoint).exists():
            err = f"{err}\nThe last good checkpoint is still in {checkpoint}."
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
