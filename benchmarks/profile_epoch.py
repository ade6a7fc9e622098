"""Where does a training epoch's time go? torch.profiler over the first batches of train.py's recipe.

    python benchmarks/profile_epoch.py                       # notebook 09's compact and its recipe
    python benchmarks/profile_epoch.py --model quick --batches 150    # train.py's default network
    python benchmarks/profile_epoch.py --variant separable_compact    # a network of results.py's ABLATIONS

Each training step is split into four labelled phases (record_function): "batch" (the loader:
gather, normalise, augment), "forward", "backward" and "step" (optimizer). The script prints
the share of each phase, then the operators that took the most CPU time.
"""

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import engine  # noqa: E402
import model as models  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402
from results import ABLATIONS  # noqa: E402

VARIANTS = sorted(name for name, variant in ABLATIONS.items() if "model" in variant)  # those with their own network

PHASES = ("batch", "forward", "backward", "step")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="compact", choices=sorted(models.MODELS))
    p.add_argument("--variant", choices=VARIANTS, help="profile this network of benchmarks/results.py instead, "
                   "with its configuration's recipe")
    p.add_argument("--batches", type=int, default=100, help="training steps to profile (after 10 warm-up steps)")
    p.add_argument("--batch-size", type=int, help="default: the model's recipe")
    p.add_argument("--augment", help="default: the recipe's (see train.py --augment)")
    p.add_argument("--rows", type=int, default=15, help="operators to list")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Profile the steps and print the phase shares and the top operators."""
    args = parse_args(argv)
    variant = ABLATIONS[args.variant] if args.variant else None
    model_name = variant["base"] if variant else args.model  # a variant trains with its configuration's recipe
    options = ["--model", model_name, "--device", "cpu"]
    options += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    options += ["--augment", args.augment] if args.augment else []
    run_args = train.parse_args(options)
    device = torch.device("cpu")
    utils.set_seed(1)
    loader = engine.get_loaders(run_args.dataset, run_args.batch_size, device, augment=train.augment_setting(run_args),
                                loader="fast", seed=1).train
    net = (variant["model"]() if variant else models.build(model_name)).train()
    optimizer = train.make_optimizer(run_args, net)
    loss_fn = train.LOSSES[run_args.loss]
    batches = iter(loader)

    def step() -> None:
        with record_function("batch"):
            images, labels = next(batches)
        with record_function("forward"):
            loss = loss_fn(net(images), labels)
        with record_function("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("step"):
            optimizer.step()

    for _ in range(10):  # warm-up: first-call allocations
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.batches):
            step()
    events = {e.key: e for e in prof.key_averages()}
    total = sum(events[p].cpu_time_total for p in PHASES)
    augmentation = engine.augmentation_name(run_args.dataset, train.augment_setting(run_args))
    print(f"{args.variant or args.model}, batch {run_args.batch_size}, augmentation {augmentation}, {args.batches} steps, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for phase in PHASES:
        ms = events[phase].cpu_time_total / 1000 / args.batches
        print(f"  {phase:<9} {ms:7.2f} ms per step  {100 * events[phase].cpu_time_total / total:5.1f}%")
    print(f"  {'total':<9} {total / 1000 / args.batches:7.2f} ms per step -> "
          f"{total / 1e6 / args.batches * len(loader):.1f} s per epoch of {len(loader)} steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
