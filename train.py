"""Train a course model on MNIST or Fashion-MNIST from the command line.

    python train.py                                  # quick net on MNIST, its recipe (model.RECIPES)
    python train.py --model compact                  # notebook 07's 5,862-parameter net, its 15-epoch recipe
    python train.py --model fashion_best             # its recipe includes --dataset fashion_mnist
    python train.py --model fashion --dataset fashion_mnist --optimizer adam --lr 0.001
    python train.py --val-size 10000                 # judge every epoch on 10,000 held-out training images
    python train.py --save ck.pt                     # interrupted? python train.py --resume ck.pt
    python train.py --scheduler step --epochs 2 --save ck.pt   # then: ... --resume ck.pt --epochs 3
    python train.py --model s5 --help                # the options, with S5's recipe as their defaults
    torchrun --standalone --nproc_per_node=2 train.py --model fashion --dataset fashion_mnist

The defaults below are the chosen model's recipe (model.RECIPES); with --resume, the checkpoint's
options, of which only --epochs (to extend a StepLR or constant-rate run; OneCycleLR spans the
whole run), --device, --test-every-epoch and the output paths may change. After every epoch the
model is evaluated on the validation split (--val-size, if any, which also picks the best
checkpoint); the test set is evaluated once, after the last epoch (--test-every-epoch: after every
epoch too, for benchmarks of the time to reach an accuracy; choose nothing by it). --amp pays where
the arithmetic dominates, such as on a CPU with native bf16; a small model on a big GPU waits on
kernel launches instead. Data comes from $DATA_DIR (default: data/ beside this file). With
COURSE_SMOKE=1 the default epochs and data sizes shrink so the whole run takes seconds (tests use
this). The machinery (several processes, mixed precision, checkpoints) is in engine.py.
"""

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import engine
import model as models
import utils

# The loss for what a model returns (model.RECIPES names it): log-probabilities -> NLL, logits -> cross-entropy.
LOSSES = {"nll": F.nll_loss, "cross_entropy": F.cross_entropy}
# Settings a recipe (model.RECIPES) may leave out.
FALLBACKS = {"loss": "cross_entropy", "dataset": "mnist", "scheduler": "step", "weight_decay": 0.0,
             "augment": "default"}
# Options that may differ when resuming: output paths, where to run, and --epochs (checked apart).
MAY_DIFFER_ON_RESUME = {"json", "save", "resume", "device", "epochs", "test_every_epoch"}


# ==================== options


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


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help: the docstring as written, and each option's default (the recipe's, or the checkpoint's)."""


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The command-line options; parse_args sets the defaults that the model's recipe or a checkpoint gives."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, add_help=add_help,
                                usage="%(prog)s [options]   (--help lists them)")
    p.add_argument("--model", default="quick", choices=sorted(models.MODELS), help="network")
    p.add_argument("--dataset", choices=sorted(utils.DATASETS), help="data set")
    p.add_argument("--epochs", type=positive_int, help="total epochs")
    p.add_argument("--batch-size", type=positive_int, help="training batch size")
    p.add_argument("--optimizer", choices=["sgd", "adam"], help="optimiser")
    p.add_argument("--lr", type=positive_float, help="learning rate (the peak with onecycle)")
    p.add_argument("--momentum", type=fraction, help="SGD momentum")
    p.add_argument("--weight-decay", type=non_negative_float, help="weight decay")
    p.add_argument("--scheduler", choices=["step", "onecycle", "none"], help="StepLR, or OneCycleLR over the run")
    p.add_argument("--step-size", type=positive_int, help="StepLR period in epochs")
    p.add_argument("--gamma", type=positive_float, default=0.1, help="StepLR factor")
    p.add_argument("--seed", type=non_negative_int, default=1, help="random seed")
    p.add_argument("--limit", type=positive_int, help="use only the first N training samples (None: all)")
    p.add_argument("--val-size", type=int, default=0, help="training samples held out to judge every epoch by")
    augment = p.add_mutually_exclusive_group()
    augment.add_argument("--augment", choices=["default", *utils.AUGMENTATIONS],
                         help="default: the data set's (mnist: rotate)")
    augment.add_argument("--no-augment", dest="augment", action="store_const", const="none",
                         help="same as --augment none (instead of %(default)s)")
    p.add_argument("--loader", choices=["fast", "torchvision"], default="fast", help="fast: one tensor on the device")
    p.add_argument("--num-workers", type=non_negative_int, help="torchvision loader's workers (None: by device)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="auto: CUDA, MPS, CPU")
    p.add_argument("--amp", action="store_true", help="mixed precision: bf16 autocast, or fp16 with gradient "
                   "scaling before Ampere; float32 (with a warning) where neither is native (README: On a GPU)")
    p.add_argument("--test-every-epoch", action="store_true", help="test after every epoch too, for benchmarks")
    p.add_argument("--json", metavar="PATH", help="write the results and per-epoch history here")
    p.add_argument("--save", metavar="PATH", help="checkpoint after every epoch (best-by-validation beside it)")
    p.add_argument("--resume", metavar="PATH", help="continue this checkpoint's run, with its options")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every option before any work starts; the defaults are the recipe's or the checkpoint's."""
    p = build_parser()
    first = build_parser(add_help=False).parse_known_args(argv)[0]  # which model, which checkpoint
    saved, done = checkpoint_options(p, first.resume) if first.resume else ({}, 0)
    name = saved.get("model", first.model)
    if name not in models.MODELS:  # a checkpoint can name a model this train.py does not have
        p.error(f"{first.resume} was trained with model {name!r}, which is not one of "
                f"{', '.join(sorted(models.MODELS))}")
    recipe = {**FALLBACKS, **models.RECIPES[name]}
    p.set_defaults(**{**recipe, "model": name, "epochs": engine.epochs(recipe["epochs"]), "limit": engine.data_limit()})
    p.set_defaults(**{key: value for key, value in saved.items() if key not in ("json", "save", "resume")})
    args = p.parse_args(argv)
    changed = {key for key, value in vars(args).items() if value != p.get_default(key)}  # given, and not the default
    differ = sorted(key for key in changed - MAY_DIFFER_ON_RESUME if key in saved)
    if differ:
        changes = ", ".join(f"--{k.replace('_', '-')} {getattr(args, k)} (checkpoint: {saved[k]})" for k in differ)
        p.error(f"cannot resume {args.resume} with different options, which would change the run: {changes}. "
                "Leave them out to continue the run as it was, or start a new run without --resume.")
    if saved and args.scheduler == "onecycle" and args.epochs != saved["epochs"]:
        p.error(f"a onecycle schedule spans the whole run: resume {args.resume} with its --epochs "
                f"({saved['epochs']}), or train a new run with --scheduler step")
    if args.epochs < done:
        p.error(f"{args.resume} already holds {done} epochs; --epochs {args.epochs} is fewer")
    train_size = min(args.limit or utils.TRAIN_SIZE, utils.TRAIN_SIZE)
    if not 0 <= args.val_size < train_size:
        p.error(f"--val-size must be between 0 and {train_size - 1} (the training samples), got {args.val_size}")
    for option, path in (("json", args.json), ("save", args.save), ("resume", None if args.save else args.resume)):
        if path and (problem := unwritable(path)):
            p.error(f"--{option} {path}: {problem}")
    warn_unused(args, changed)
    return args


def checkpoint_options(p: argparse.ArgumentParser, path: str) -> tuple[dict, int]:
    """The options a train.py checkpoint was trained with, and how many epochs it holds."""
    try:
        state = engine.load_checkpoint(path)
    except engine.CheckpointError as err:
        p.error(str(err))
    saved = state.get("extra", {}).get("args") if isinstance(state, dict) else None
    if not isinstance(saved, dict) or "model" not in state or "optimizer" not in state:
        p.error(f"{path} is a PyTorch file but not a checkpoint written by train.py --save")
    return saved, state.get("epoch", 0)


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


def warn_unused(args: argparse.Namespace, changed: set[str]) -> None:
    """Warn about options set to something that does nothing in the chosen setting."""
    unused = []
    if "momentum" in changed and args.optimizer != "sgd":
        unused.append("--momentum (only SGD has momentum)")
    if "num_workers" in changed and args.loader == "fast":
        unused.append("--num-workers (the fast loader has no workers; use --loader torchvision)")
    if {"step_size", "gamma"} & changed and args.scheduler != "step":
        unused.append("--step-size/--gamma (only --scheduler step uses them)")
    for text in unused:
        print(f"warning: {text} has no effect here", file=sys.stderr)


def augment_setting(args: argparse.Namespace) -> bool | str:
    """--augment as engine.get_loaders takes it: True for the data set's default, else its name."""
    return True if args.augment == "default" else args.augment


# ==================== training


def start_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process; joins the process group when torchrun started several."""
    try:
        device = utils.get_device(device_name)
    except ValueError as err:
        raise engine.CourseError(f"--device {device_name}: {err}") from None
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device
    if device.type == "mps":
        raise engine.CourseError("DistributedDataParallel does not support Apple MPS; run with --device cpu")
    if device.type == "cuda":  # one GPU per process, NCCL between them
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def precision(args: argparse.Namespace, device: torch.device) -> torch.dtype | None:
    """The autocast precision of --amp on this device (None: float32); warns where --amp can do nothing."""
    amp = engine.amp_dtype(device) if args.amp else None
    if args.amp and amp is None:
        print(f"warning: --amp (no faster lower precision on {device}: this CPU has no native bf16, or this is "
              "Apple MPS) has no effect here", file=sys.stderr)
    return amp


def describe_recipe(args: argparse.Namespace, amp: torch.dtype | None) -> str:
    """The resolved training recipe in one line."""
    optimizer = f"{args.optimizer} lr {args.lr:g}"
    if args.optimizer == "sgd":
        optimizer += f" momentum {args.momentum:g}"
    schedule = {"step": f"StepLR every {args.step_size} epochs x {args.gamma:g}", "onecycle": "OneCycleLR",
                "none": "constant lr"}[args.scheduler]
    augment = engine.augmentation_name(args.dataset, augment_setting(args))
    mixed = f", {str(amp).removeprefix('torch.')} autocast" if amp else ""
    return (f"recipe: {args.loss} loss{mixed}, {optimizer}, weight decay {args.weight_decay:g}, {schedule}, "
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


def resume(path: str, net, optimizer, scheduler, device: torch.device) -> list[dict]:
    """Restore weights, optimiser and scheduler (parse_args checked the options); return the history."""
    state = engine.load_checkpoint(path, map_location=device)
    engine.load_weights(net, state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    log(f"resumed from {path} after epoch {state['epoch']}")
    return state["history"]


def log(message: str) -> None:
    """Print from rank 0 only."""
    if engine.is_main_process():
        print(message, flush=True)


def weight_checksum(net: torch.nn.Module) -> float:
    """The sum of all weights and buffers, on the CPU in float64 (MPS has no float64)."""
    state = engine.unwrap(net).state_dict().values()
    return sum(t.detach().cpu().double().sum().item() for t in state if t.is_floating_point())


def run(args: argparse.Namespace, build=None) -> dict:
    """Train and evaluate as the options say; return the results written to --json.

    `build()` makes the network instead of model.build(args.model) (benchmarks/results.py's variants).
    """
    rank, world_size, device = start_distributed(args.device)
    amp = precision(args, device)
    if engine.smoke_mode():
        log("=" * 78 + "\nSMOKE MODE (COURSE_SMOKE is set): a small subset and few epochs, for tests only.\n"
            "Unset COURSE_SMOKE for a real run.\n" + "=" * 78)
    log(describe_recipe(args, amp))
    utils.set_seed(args.seed)  # same seed on every rank: identical initial weights
    loaders = engine.get_loaders(
        args.dataset, args.batch_size, device, limit=args.limit, test_limit=engine.data_limit(),
        val_size=args.val_size, augment=augment_setting(args), seed=args.seed, loader=args.loader,
        num_workers=args.num_workers, rank=rank, world_size=world_size,
    )
    net = (build or functools.partial(models.build, args.model))().to(device)
    if world_size > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(args, net)
    scheduler = make_scheduler(args, optimizer, len(loaders.train))
    history = resume(args.resume, net, optimizer, scheduler, device) if args.resume else None
    params = models.count_parameters(net)
    train_samples = len(loaders.train.dataset)  # all ranks' samples: each rank's loader picks its own part
    test_total = int(engine.all_reduce_sums([len(loaders.test.dataset)], device)[0])
    log(f"{args.model} ({params:,} parameters) on {args.dataset}, device {device}"
        f"{f' x {world_size} processes' if world_size > 1 else ''}, {train_samples:,} training samples, "
        f"{args.epochs} epochs")

    tic = time.perf_counter()
    loss_fn = LOSSES[args.loss]
    history = engine.fit(
        net, loaders.train, loaders.val, loss_fn, optimizer, args.epochs, device, scheduler,
        history=history, seed=args.seed, checkpoint=args.save or args.resume, extra={"args": vars(args)},
        amp=amp, test_loader=loaders.test if args.test_every_epoch else None,
    )
    test_loss, test_acc = engine.evaluate(net, loaders.test, loss_fn, device, amp)
    correct = round(test_acc * test_total)
    log(f"test accuracy {100 * test_acc:.2f}% ({correct}/{test_total})")
    checksums = engine.all_gather(weight_checksum(net)) if world_size > 1 else None  # are the ranks' models equal?
    return {
        "model": args.model, "dataset": args.dataset, "device": str(device), "params": params,
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "world_size": world_size,
        "effective_batch_size": args.batch_size * world_size, "train_samples": train_samples,
        "train_samples_per_rank": [engine.shard_size(train_samples, world_size)] * world_size,
        "weight_checksums": checksums, "weights_in_sync": checksums is None or len(set(checksums)) == 1,
        "test_accuracy": test_acc, "test_loss": test_loss, "test_correct": correct, "test_total": test_total,
        "wall_seconds": time.perf_counter() - tic, "amp": str(amp) if amp else None,
        "torch": torch.__version__, "smoke": engine.smoke_mode(),
        "history": history, "args": vars(args),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit status 0 on success, 1 with one clear message on a known failure."""
    args = parse_args(argv)
    try:
        results = run(args)
        if args.json and engine.is_main_process():
            engine.write_json(args.json, results)
            print(f"results written to {args.json}")
    except engine.CourseError as err:  # the course's own errors carry a message for the user; others are bugs
        checkpoint = args.save or args.resume
        if isinstance(err, engine.NonFiniteLossError) and checkpoint and Path(checkpoint).exists():
            err = f"{err}\nThe last good checkpoint is still in {checkpoint}."
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
