"""Train a course model on MNIST or Fashion-MNIST from the command line.

    python train.py                                  # compact net on MNIST, its recipe (model.RECIPES)
    python train.py --model fashion_best             # its recipe includes --dataset fashion_mnist
    python train.py --model fashion --dataset fashion_mnist --optimizer adam --lr 0.001
    python train.py --save ck.pt                     # interrupted? python train.py --resume ck.pt
    python train.py --scheduler step --epochs 2 --save ck.pt   # then: ... --resume ck.pt --epochs 3
    python train.py --help
    torchrun --standalone --nproc_per_node=2 train.py --model fashion --dataset fashion_mnist

Data comes from $DATA_DIR (default: data/ beside this file). With COURSE_SMOKE=1 the default
epochs and data sizes shrink so the whole run takes seconds (tests use this).
"""

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import model as models
import utils

# Settings a recipe (model.RECIPES) may leave out.
FALLBACKS = {"dataset": "mnist", "scheduler": "step", "weight_decay": 0.0, "augment": "default"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; unknown model or dataset names list the valid choices."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="compact", choices=sorted(models.MODELS), help="network (default: compact)")
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
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="use only the first N training samples")
    p.add_argument("--val-size", type=int, default=0,
                   help="hold out N training samples for validation and best-model selection")
    p.add_argument("--augment", choices=["default", *utils.AUGMENTATIONS],
                   help="training augmentation (utils.AUGMENTATIONS); default: the recipe's, else the "
                        "data set's (mnist: rotate, fashion_mnist: none)")
    p.add_argument("--no-augment", action="store_true", help="same as --augment none")
    p.add_argument("--loader", choices=["fast", "torchvision"], default="fast",
                   help="fast: whole data set as one tensor on the device (default); "
                        "torchvision: Dataset + DataLoader")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: by device)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    p.add_argument("--json", metavar="PATH", help="write the results and per-epoch history here")
    p.add_argument("--save", metavar="PATH", help="checkpoint after every epoch (best-by-validation beside it)")
    p.add_argument("--resume", metavar="PATH", help="continue training from this checkpoint")
    args = p.parse_args(argv)
    if args.no_augment:
        args.augment = "none"
    for key, value in {**FALLBACKS, **models.RECIPES[args.model]}.items():
        if getattr(args, key) is None:
            setattr(args, key, utils.epochs(value, smoke=1) if key == "epochs" else value)
    if args.limit is None:
        args.limit = utils.data_limit()
    for name in ("epochs", "batch_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    return args


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


def resume(path: str, args, net, optimizer, scheduler, device) -> dict:
    """Restore weights, optimiser, scheduler and history from a checkpoint; return the history."""
    state = utils.load_checkpoint(path, map_location=device)
    saved = state.get("extra", {}).get("args", {})
    for key in ("model", "dataset", "scheduler"):
        if key in saved and saved[key] != getattr(args, key):
            raise ValueError(f"checkpoint {path} was trained with --{key} {saved[key]}, not {getattr(args, key)}")
    if args.scheduler == "onecycle" and saved.get("epochs") != args.epochs:
        raise ValueError("a onecycle schedule spans the whole run: resume it with the same --epochs "
                         f"({saved.get('epochs')}), or train with --scheduler step")
    utils.load_weights(net, state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    log(f"resumed from {path} after epoch {state['epoch']}")
    return state["history"]


def start_distributed(args: argparse.Namespace) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun with N > 1."""
    device = utils.get_device(args.device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device
    if device.type == "mps":
        raise ValueError("DistributedDataParallel does not support Apple MPS; run with --device cpu")
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


def log(message: str) -> None:
    """Print from rank 0 only."""
    if utils.is_main_process():
        print(message, flush=True)


def run(args: argparse.Namespace) -> dict:
    """Train and evaluate as the options say; return the results written to --json."""
    rank, world_size, device = start_distributed(args)
    utils.set_seed(args.seed)  # same seed on every rank: identical initial weights
    loaders = utils.get_loaders(
        args.dataset, args.batch_size, device, limit=args.limit, test_limit=utils.data_limit(smoke=2000),
        val_size=args.val_size, augment=True if args.augment == "default" else args.augment, seed=args.seed,
        num_workers=args.num_workers, loader=args.loader, rank=rank, world_size=world_size,
    )
    net = models.build(args.model).to(device)
    if world_size > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(args, net)
    scheduler = make_scheduler(args, optimizer, len(loaders.train))
    history = resume(args.resume, args, net, optimizer, scheduler, device) if args.resume else None
    params = models.count_parameters(net)
    test_total = int(utils.all_reduce_sums([len(loaders.test.dataset)], device)[0])
    log(f"{args.model} ({params:,} parameters) on {args.dataset}, device {device}"
        f"{f' x {world_size} processes' if world_size > 1 else ''}, "
        f"{len(utils.base_and_indices(loaders.train.dataset)[1]):,} training samples, {args.epochs} epochs")

    tic = time.perf_counter()
    history = utils.fit(
        net, loaders.train, loaders.test, optimizer, args.epochs, device, scheduler,
        val_loader=loaders.val, history=history, seed=args.seed,
        checkpoint=args.save or args.resume, extra={"args": vars(args)},
    )
    test_loss, test_acc = utils.evaluate(net, loaders.test, device)
    correct = round(test_acc * test_total)
    log(f"test accuracy {100 * test_acc:.2f}% ({correct}/{test_total})")
    checksums = gather(sum(p.detach().double().sum().item() for p in utils.unwrap(net).parameters()))
    return {
        "model": args.model, "dataset": args.dataset, "device": str(device), "params": params,
        "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "world_size": world_size,
        "effective_batch_size": args.batch_size * world_size,
        "train_samples": len(utils.base_and_indices(loaders.train.dataset)[1]),
        "train_samples_per_rank": gather(utils.samples_per_epoch(loaders.train)),
        "weight_checksums": checksums, "weights_in_sync": len(set(checksums)) == 1,
        "test_accuracy": test_acc, "test_loss": test_loss, "test_correct": correct, "test_total": test_total,
        "wall_seconds": time.perf_counter() - tic, "torch": torch.__version__, "smoke": utils.smoke_mode(),
        "history": utils.history_rows(history), "args": vars(args),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit status 0 on success, 1 with one clear message on a known failure."""
    args = parse_args(argv)
    try:
        results = run(args)
        if args.json and utils.is_main_process():
            utils.write_json(args.json, results)
            print(f"results written to {args.json}")
    except (utils.DataNotFoundError, utils.CorruptDataError, utils.NonFiniteLossError,
            utils.CheckpointMismatchError, FileNotFoundError, ValueError) as err:
        if isinstance(err, utils.NonFiniteLossError) and (args.save or args.resume):
            err = f"{err}\nThe last good checkpoint is still in {args.save or args.resume}."
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
