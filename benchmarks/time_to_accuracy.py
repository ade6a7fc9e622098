"""Time to accuracy: `python train.py` against the recipe of PyTorch's own MNIST example, on one machine.

    python benchmarks/time_to_accuracy.py                        # everything, about 15 minutes on a 2-core CPU
    python benchmarks/time_to_accuracy.py --seeds 1 --json /tmp/t.json --readme ""

The reference recipe, written here from its published description (PyTorch's examples/mnist):
conv 1->32 3x3, ReLU, conv 32->64 3x3, ReLU, max-pool 2, dropout 0.25, fc 9216->128, ReLU,
dropout 0.5, fc 128->10, log-softmax; Adadelta lr 1.0, StepLR(step 1, gamma 0.7), batch 64,
14 epochs; ToTensor + Normalize(0.1307, 0.3081) through a torchvision DataLoader; seed 1.
The default recipe is what `python train.py` runs (train.py's default model and its model.RECIPES
entry), once per --seeds, and once more with --amp where this device has a faster lower precision.

All runs advance together, one epoch at a time, in turn (reference epoch 1, default seed 1 epoch 1,
seed 2 epoch 1, ..., reference epoch 2, ...), so that machine noise hits every recipe alike; each
run is still exactly the run it stands for (every epoch reseeds from its seed and number). After
every epoch the test accuracy is recorded, only to report when 99.0% and 99.4% are first reached:
nothing is chosen by it (train.py's recipe was chosen on a validation split). Wall time = the
epochs' training plus their test evaluation, data loading excluded, for every recipe alike;
seconds per epoch = the median over a recipe's epochs.
Writes JSON (--json) and the README table between its markers (--readme). With COURSE_SMOKE=1
(the tests) both recipes run on 2,000 images for a couple of epochs.
"""

import argparse
import platform
import statistics
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import device_label  # noqa: E402  (benchmarks/results.py)

import model as models  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

REFERENCE_EPOCHS = 14
THRESHOLDS = (0.990, 0.994)
TABLE_START, TABLE_END = "<!-- time-to-accuracy:start -->", "<!-- time-to-accuracy:end -->"


class ReferenceNet(nn.Module):
    """The network of PyTorch's MNIST example (1,199,882 parameters); returns log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of the default recipe")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "time_to_accuracy.json"))
    p.add_argument("--readme", default=str(ROOT / "README.md"), help="README whose table to replace ('' = none)")
    args = p.parse_args(argv)
    if any(seed < 0 for seed in args.seeds):
        p.error(f"seeds must be 0 or more, got {' '.join(map(str, args.seeds))}")
    if args.readme and not has_markers(Path(args.readme)):
        p.error(f"--readme {args.readme}: expected a file with the lines {TABLE_START} and {TABLE_END}")
    return args


def reference_run(device: torch.device, seed: int = 1) -> dict:
    """Everything the reference recipe trains with, as a run that `advance` moves one epoch on."""
    utils.set_seed(seed)
    loaders = utils.get_loaders("mnist", 64, device, limit=utils.data_limit(), test_limit=utils.data_limit(smoke=2000),
                                augment=False, loader="torchvision", seed=seed)
    net = ReferenceNet().to(device)
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    return {"recipe": "reference", "label": "PyTorch MNIST example", "seed": seed, "net": net, "loaders": loaders,
            "optimizer": optimizer, "scheduler": scheduler, "loss_fn": F.nll_loss, "amp": None,
            "epochs": utils.epochs(REFERENCE_EPOCHS, smoke=2), "history": []}


def default_run(device: torch.device, seed: int, amp: bool = False, more: tuple[str, ...] = ()) -> dict:
    """`python train.py --seed SEED [--amp] [MORE]`: the same calls, in the same order, as train.run makes them."""
    options = ["--seed", str(seed)] + (["--amp"] if amp else []) + list(more)
    args = train.parse_args(options + ["--device", device.type])
    utils.set_seed(args.seed)
    loaders = utils.get_loaders(args.dataset, args.batch_size, device, limit=args.limit,
                                test_limit=utils.data_limit(smoke=2000), val_size=args.val_size,
                                augment=True if args.augment == "default" else args.augment, seed=args.seed,
                                loader=args.loader)
    net = models.build(args.model).to(device)
    optimizer = train.make_optimizer(args, net)
    return {"recipe": "default --amp" if amp else "default", "label": "python train.py " + " ".join(options),
            "seed": seed, "net": net, "loaders": loaders, "optimizer": optimizer,
            "scheduler": train.make_scheduler(args, optimizer, len(loaders.train)), "loss_fn": train.LOSSES[args.loss],
            "amp": utils.amp_dtype(device) if amp else None, "epochs": args.epochs, "history": [], "model": args.model}


def advance(run: dict, device: torch.device) -> None:
    """Train `run` for its next epoch (utils.fit continues after the last epoch of its history)."""
    epoch = len(run["history"]) + 1
    run["history"] = utils.fit(run["net"], run["loaders"].train, run["loaders"].test, run["loss_fn"], run["optimizer"],
                               epoch, device, run["scheduler"], history=run["history"], seed=run["seed"],
                               verbose=False, amp=run["amp"])
    row = run["history"][-1]
    print(f"{run['label']:<32} epoch {epoch:>2}/{run['epochs']}: test accuracy {100 * row['test_accuracy']:.2f}%, "
          f"{row['seconds']:.1f} s", flush=True)


def first_reaching(history: list[dict], threshold: float) -> dict | None:
    """Epoch and cumulative seconds at which test accuracy first reaches `threshold` (None: never)."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["test_accuracy"] >= threshold:
            return {"epoch": row["epoch"], "seconds": elapsed}
    return None


def summarise(run: dict) -> dict:
    """One run's figures: seconds per epoch, wall time, time to each threshold, final accuracy."""
    history = run["history"]
    return {"recipe": run["recipe"], "label": run["label"], "seed": run["seed"],
            "params": models.count_parameters(run["net"]), "epochs": len(history),
            "amp": str(run["amp"]) if run["amp"] else None,
            "seconds_per_epoch": statistics.median(row["seconds"] for row in history),
            "wall_seconds": sum(row["seconds"] for row in history),
            "final_test_accuracy": history[-1]["test_accuracy"],
            "reached": {f"{t:.3f}": first_reaching(history, t) for t in THRESHOLDS}, "history": history}


def cell(reached: dict | None) -> str:
    """A table cell for a threshold: seconds and epoch, or 'never'."""
    return "never" if reached is None else f"{reached['seconds']:.0f} s (epoch {reached['epoch']})"


def markdown_table(result: dict) -> str:
    """The side-by-side table: reference, then the default's seeds, then --amp."""
    reference_wall = result["runs"][0]["wall_seconds"]
    lines = ["| recipe | seed | parameters | epochs | s / epoch (median) | wall time | share of reference "
             "| time to 99.0% | time to 99.4% | final test acc. |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        lines.append(
            f"| {run['label']} | {run['seed']} | {run['params']:,} | {run['epochs']} | "
            f"{run['seconds_per_epoch']:.1f} | {run['wall_seconds']:.0f} s | "
            f"{100 * run['wall_seconds'] / reference_wall:.1f}% | {cell(run['reached']['0.990'])} | "
            f"{cell(run['reached']['0.994'])} | {100 * run['final_test_accuracy']:.2f}% |")
    accuracy = statistics.median(r["final_test_accuracy"] for r in result["runs"] if r["recipe"] == "default")
    walls = [r["wall_seconds"] for r in result["runs"] if r["recipe"] == "default"]
    wall = statistics.median(walls)
    lines += ["", f"Default, median of {len(walls)} seeds: test accuracy {100 * accuracy:.2f}%, wall time {wall:.0f} s "
              f"= {100 * wall / reference_wall:.1f}% of the reference's {REFERENCE_EPOCHS} epochs "
              f"({reference_wall:.0f} s); {result['machine']}."]
    return "\n".join(lines)


def has_markers(readme: Path) -> bool:
    """True if `readme` is a file holding both table markers."""
    return readme.is_file() and TABLE_START in readme.read_text() and TABLE_END in readme.read_text()


def replace_table(readme: Path, table: str) -> None:
    """Put `table` between the README's markers."""
    text = readme.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    utils.atomic_write(readme, lambda f: f.write(text[:start] + "\n" + table + "\n" + text[end:]), mode="w")


def main(argv: list[str] | None = None) -> int:
    """Time the epochs alternately, run both recipes in full, write JSON and the table."""
    args = parse_args(argv)
    device = utils.get_device(args.device)
    runs = [reference_run(device)] + [default_run(device, seed) for seed in args.seeds]
    if utils.amp_dtype(device) is not None:
        runs.append(default_run(device, args.seeds[0], amp=True))
    for _ in range(max(run["epochs"] for run in runs)):
        for run in runs:
            if len(run["history"]) < run["epochs"]:
                advance(run, device)
    result = {"machine": device_label(str(device)), "torch": torch.__version__, "python": platform.python_version(),
              "runs": [summarise(run) for run in runs]}
    utils.write_json(args.json, result)
    table = markdown_table(result)
    print(table)
    if args.readme:
        replace_table(Path(args.readme), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
