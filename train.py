"""Train a course model on MNIST or Fashion-MNIST from the command line.

    python train.py                                  # quick net on MNIST, its recipe (model.RECIPES)
    python train.py --model compact                  # notebook 09's 5,862-parameter net, its 15-epoch recipe
    python train.py --val-size 10000                 # judge every epoch on 10,000 held-out training images
    python train.py --save ck.pt                     # interrupted? python train.py --resume ck.pt
    python train.py --model s5 --help                # the options, with S5's recipe as their defaults
    torchrun --standalone --nproc_per_node=2 train.py --model fashion --dataset fashion_mnist

The defaults are the chosen model's recipe; with --resume, the checkpoint's options, of which only
--epochs (to extend a StepLR or constant-rate run), --device, --test-every-epoch and the output paths
may change. Every epoch is judged on the validation split (--val-size); the test set is evaluated
once, at the end (--test-every-epoch: after every epoch, for benchmarks; choose nothing by it).
Data comes from $DATA_DIR (default: data/ beside this file); COURSE_SMOKE=1 makes a run tiny (tests).
The machinery (several processes, mixed precision, checkpoints) is in engine.py.
"""

import argparse
import functools
import sys
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
# What a recipe may leave out, and what every run starts from.
FALLBACKS = {"loss": "cross_entropy", "dataset": "mnist", "scheduler": "step", "weight_decay": 0.0, "gamma": 0.1,
             "seed": 1, "val_size": 0, "loader": "fast", "device": "auto", "amp": False, "test_every_epoch": False}
# Options that may differ when resuming: output paths, where to run, and --epochs (checked apart).
MAY_DIFFER_ON_RESUME = {"json", "save", "resume", "device", "epochs", "test_every_epoch"}


def build_parser(defaults: dict | None = None) -> argparse.ArgumentParser:
    """The options, with `defaults` (the recipe's or the checkpoint's) shown in --help; without, only what was typed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                add_help=defaults is not None, allow_abbrev=False,
                                argument_default=None if defaults is not None else argparse.SUPPRESS,
                                usage="%(prog)s [options]   (--help lists them)")
    def option(*names: str, help: str, group=p, **settings) -> None:
        """An option whose help ends with its default, where it has one."""
        value = (defaults or {}).get(names[0].lstrip("-").replace("-", "_"))
        group.add_argument(*names, help=help + (f" (default: {value})" if value not in (None, False) else ""),
                           **settings)

    option("--model", choices=sorted(models.MODELS), help="network")
    option("--dataset", choices=sorted(utils.DATASETS), help="data set")
    option("--epochs", type=engine.positive_int, help="total epochs")
    option("--batch-size", type=engine.positive_int, help="training batch size")
    option("--optimizer", choices=["sgd", "adam"], help="optimiser")
    option("--lr", type=engine.positive_float, help="learning rate (the peak with onecycle)")
    option("--momentum", type=engine.fraction, help="SGD momentum")
    option("--weight-decay", type=engine.non_negative_float, help="weight decay")
    option("--scheduler", choices=["step", "onecycle", "none"], help="StepLR, or OneCycleLR over the run")
    option("--step-size", type=engine.positive_int, help="StepLR period in epochs")
    option("--gamma", type=engine.positive_float, help="StepLR factor")
    option("--seed", type=engine.non_negative_int, help="random seed")
    option("--limit", type=engine.positive_int, help="use only the first N training samples (default: all)")
    option("--val-size", type=int, help="training samples held out to judge every epoch by")
    augment = p.add_mutually_exclusive_group()
    option("--augment", group=augment, choices=["default", *utils.AUGMENTATIONS],
           help="training augmentation (by default the data set's; mnist: rotate)")
    augment.add_argument("--no-augment", dest="augment", action="store_const", const="none", help="--augment none")
    option("--loader", choices=["fast", "torchvision"], help="fast: the data set as one tensor on the device")
    option("--num-workers", type=engine.non_negative_int, help="DataLoader workers (default: by device)")
    option("--device", choices=["auto", "cpu", "cuda", "mps"], help="auto: CUDA, MPS, CPU")
    option("--amp", action="store_true", help="mixed precision: bf16 autocast, or fp16 with gradient scaling "
           "before Ampere; float32 (with a warning) where neither is native")
    option("--test-every-epoch", action="store_true", help="test after every epoch too, for benchmarks")
    option("--json", metavar="PATH", help="write the results and per-epoch history here")
    option("--save", metavar="PATH", help="checkpoint after every epoch (best-by-validation beside it)")
    option("--resume", metavar="PATH", help="continue this checkpoint's run, with its options")
    if defaults is not None:
        p.set_defaults(**defaults)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check every option before any work starts; the defaults are the recipe's or the checkpoint's."""
    argv = sys.argv[1:] if argv is None else argv
    typed = build_parser()
    given = vars(typed.parse_known_args(argv)[0])  # only what was typed
    try:
        saved, done = engine.checkpoint_options(given["resume"]) if given.get("resume") else ({}, 0)
    except engine.CheckpointError as err:
        typed.error(str(err))
    name = saved.get("model", given.get("model", "quick"))
    if name not in models.MODELS:  # a checkpoint can name a model this train.py does not have
        typed.error(f"{given['resume']} was trained with model {name!r}, which is not one of "
                    f"{', '.join(models.MODELS)}")
    recipe = {**FALLBACKS, **models.RECIPES[name]}
    defaults = {**recipe, "model": name, "epochs": engine.epochs(recipe["epochs"]), "limit": engine.data_limit()}
    defaults |= {key: value for key, value in saved.items() if key not in ("json", "save", "resume")}
    p = build_parser(defaults)
    args = p.parse_args(argv)
    differ = sorted(k for k in set(given) - MAY_DIFFER_ON_RESUME if k in saved and getattr(args, k) != saved[k])
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
        if path and (problem := engine.unwritable(path)):
            p.error(f"--{option} {path}: {problem}")
    warn_unused(args, set(given))
    return args


def warn_unused(args: argparse.Namespace, given: set[str]) -> None:
    """Warn about options given that do nothing in the chosen setting."""
    unused = {"--momentum (only SGD has momentum)": "momentum" in given and args.optimizer != "sgd",
              "--num-workers (the fast loader has no workers; use --loader torchvision)":
                  "num_workers" in given and args.loader == "fast",
              "--step-size/--gamma (only --scheduler step uses them)":
                  bool({"step_size", "gamma"} & given) and args.scheduler != "step"}
    for text in [text for text, useless in unused.items() if useless]:
        print(f"warning: {text} has no effect here", file=sys.stderr)


def augment_setting(args: argparse.Namespace) -> bool | str:
    """--augment as engine.get_loaders takes it: True for the data set's default, else its name."""
    return True if args.augment in (None, "default") else args.augment


def precision(args: argparse.Namespace, device: torch.device) -> torch.dtype | None:
    """The autocast precision of --amp on this device (None: float32); warns where --amp can do nothing."""
    amp = engine.amp_dtype(device) if args.amp else None
    if args.amp and amp is None:
        print(f"warning: --amp (no faster lower precision on {device}: this CPU has no native bf16, or this is "
              "Apple MPS) has no effect here", file=sys.stderr)
    return amp


def describe_recipe(args: argparse.Namespace, amp: torch.dtype | None) -> str:
    """The resolved training recipe in one line."""
    optimizer = f"{args.optimizer} lr {args.lr:g}" + (f" momentum {args.momentum:g}" if args.optimizer == "sgd" else "")
    schedule = {"step": f"StepLR every {args.step_size} epochs x {args.gamma:g}", "onecycle": "OneCycleLR",
                "none": "constant lr"}[args.scheduler]
    mixed = f", {str(amp).removeprefix('torch.')} autocast" if amp else ""
    return (f"recipe: {args.loss} loss{mixed}, {optimizer}, weight decay {args.weight_decay:g}, {schedule}, "
            f"batch {args.batch_size}, {args.epochs} epochs, augmentation "
            f"{engine.augmentation_name(args.dataset, augment_setting(args))}, {args.loader} loader, seed {args.seed}")


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
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                   steps_per_epoch=steps_per_epoch)
    return None


def run(args: argparse.Namespace, build=None) -> dict:
    """Train and test as the options say (`build()` makes the network instead: benchmarks); return the results."""
    rank, world_size, device = engine.start_distributed(args.device)
    amp = precision(args, device)
    if engine.smoke_mode():
        engine.log("SMOKE MODE (COURSE_SMOKE is set): a small subset and few epochs, for tests only.")
    engine.log(describe_recipe(args, amp))
    utils.set_seed(args.seed)  # same seed on every rank: identical initial weights
    loaders = engine.get_loaders(args.dataset, args.batch_size, device, limit=args.limit,
                                 test_limit=engine.data_limit(), val_size=args.val_size, augment=augment_setting(args),
                                 seed=args.seed, loader=args.loader, num_workers=args.num_workers, rank=rank,
                                 world_size=world_size)
    net = (build or functools.partial(models.build, args.model))().to(device)
    if world_size > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(args, net)
    scheduler = make_scheduler(args, optimizer, len(loaders.train))
    history = engine.resume(args.resume, net, optimizer, scheduler, device) if args.resume else None
    params, train_samples = models.count_parameters(net), len(loaders.train.dataset)  # all ranks' samples
    test_total = int(engine.all_reduce_sums([len(loaders.test.dataset)], device)[0])
    engine.log(f"{args.model} ({params:,} parameters) on {args.dataset}, device {device}"
               f"{f' x {world_size} processes' if world_size > 1 else ''}, {train_samples:,} training samples, "
               f"{args.epochs} epochs")

    tic, loss_fn = time.perf_counter(), LOSSES[args.loss]
    history = engine.fit(net, loaders.train, loaders.val, loss_fn, optimizer, args.epochs, device, scheduler,
                         history=history, seed=args.seed, checkpoint=args.save or args.resume,
                         extra={"args": vars(args)}, amp=amp,
                         test_loader=loaders.test if args.test_every_epoch else None)
    if args.test_every_epoch and "test_accuracy" in history[-1]:  # the last epoch was tested already
        test_loss, test_acc = history[-1]["test_loss"], history[-1]["test_accuracy"]
    else:
        test_loss, test_acc = engine.evaluate(net, loaders.test, loss_fn, device)
    correct = round(test_acc * test_total)
    engine.log(f"test accuracy {100 * test_acc:.2f}% ({correct}/{test_total})")
    results = {
        "model": args.model, "dataset": args.dataset, "device": str(device), "params": params,
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "world_size": world_size,
        "effective_batch_size": args.batch_size * world_size, "train_samples": train_samples,
        "test_accuracy": test_acc, "test_loss": test_loss, "test_correct": correct, "test_total": test_total,
        "wall_seconds": time.perf_counter() - tic, "amp": str(amp) if amp else None,
        "torch": torch.__version__, "smoke": engine.smoke_mode(), "history": history, "args": vars(args),
    }
    if world_size > 1:  # are the ranks' models equal, and did each rank train its share?
        checksums = engine.all_gather(engine.weight_checksum(net))
        results |= {"weight_checksums": checksums, "weights_in_sync": len(set(checksums)) == 1,
                    "train_samples_per_rank": [engine.shard_size(train_samples, world_size)] * world_size}
    return results


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
