"""Time to accuracy: `python train.py` against the recipe of PyTorch's own MNIST example, on one machine.

    python benchmarks/time_to_accuracy.py                        # everything, about 15 minutes on a 2-core CPU
    python benchmarks/time_to_accuracy.py --seeds 1 --json /tmp/t.json --readme ""

The reference recipe, written here from its published description (PyTorch's examples/mnist):
conv 1->32 3x3, ReLU, conv 32->64 3x3, ReLU, max-pool 2, dropout 0.25, fc 9216->128, ReLU,
dropout 0.5, fc 128->10, log-softmax; Adadelta lr 1.0, StepLR(step 1, gamma 0.7), batch 64,
14 epochs; ToTensor + Normalize(0.1307, 0.3081) through a torchvision DataLoader; seed 1.
The default recipe is `python train.py --seed N` itself (plus --test-every-epoch), run as a command
for each --seeds, and once more with --amp where this device has a faster lower precision.

Every run is a fresh process, so none inherits another's memory or caches, and the commands
alternate: default (first seed), reference, default (other seeds), default --amp. After every epoch
the test accuracy is recorded, only to report when 99.0% and 99.4% were first reached: nothing is
chosen by it (train.py's recipe was chosen on a validation split). Training time = the epochs'
training plus their test evaluation, for every run alike; the whole command's time (start-up and
data loading included) is reported beside it. Writes JSON (--json) and the README table between
its markers (--readme). With COURSE_SMOKE=1 (the tests) both recipes run on 2,000 images for a
couple of epochs.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import device_label, replace_table  # noqa: E402  (benchmarks/results.py)

import engine  # noqa: E402
import model as models  # noqa: E402
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
    p.add_argument("--readme", default=str(ROOT / "benchmarks" / "README.md"),
                   help="README whose table to replace ('' = none)")
    p.add_argument("--reference-run", metavar="PATH", help=argparse.SUPPRESS)  # one reference run, in its own process
    args = p.parse_args(argv)
    if any(seed < 0 for seed in args.seeds):
        p.error(f"seeds must be 0 or more, got {' '.join(map(str, args.seeds))}")
    if args.readme and not args.reference_run and not has_markers(Path(args.readme)):
        p.error(f"--readme {args.readme}: expected a file with the lines {TABLE_START} and {TABLE_END}")
    return args


def train_reference(device: torch.device, path: str, seed: int = 1) -> None:
    """The reference recipe's epochs, test accuracy after each; its history is written to `path`."""
    utils.set_seed(seed)
    loaders = engine.get_loaders("mnist", 64, device, limit=engine.data_limit(),
                                 test_limit=engine.data_limit(), augment=False, loader="torchvision",
                                 seed=seed)
    net = ReferenceNet().to(device)
    optimizer = torch.optim.Adadelta(net.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    epochs = engine.epochs(REFERENCE_EPOCHS, smoke=2)
    print(f"reference: PyTorch's MNIST example recipe, {models.count_parameters(net):,} parameters, "
          f"{epochs} epochs on {device}", flush=True)
    history = engine.fit(net, loaders.train, None, F.nll_loss, optimizer, epochs, device, scheduler, seed=seed,
                         test_loader=loaders.test)
    engine.write_json(path, {"params": models.count_parameters(net), "seed": seed, "history": history})


def run_command(label: str, command: list[str]) -> dict:
    """Run one training command in a fresh process; return its JSON and how long the whole command took."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run.json"
        print(f"\n$ {label}", flush=True)
        tic = time.perf_counter()
        proc = subprocess.run([*command, out.as_posix()], cwd=ROOT)
        seconds = time.perf_counter() - tic
        if proc.returncode != 0:
            raise SystemExit(f"{label} failed (exit status {proc.returncode})")
        return {**json.loads(out.read_text()), "label": label, "process_seconds": seconds}


def first_reaching(history: list[dict], threshold: float) -> dict | None:
    """Epoch and cumulative seconds at which test accuracy first reaches `threshold` (None: never)."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["test_accuracy"] >= threshold:
            return {"epoch": row["epoch"], "seconds": elapsed}
    return None


def summarise(recipe: str, run: dict) -> dict:
    """One run's figures: seconds per epoch, training time, time to each threshold, final accuracy."""
    history = run["history"]
    return {"recipe": recipe, "label": run["label"], "seed": run["seed"], "params": run["params"],
            "epochs": len(history), "amp": run.get("amp"), "process_seconds": run["process_seconds"],
            "seconds_per_epoch": statistics.median(row["seconds"] for row in history),
            "wall_seconds": sum(row["seconds"] for row in history),
            "final_test_accuracy": history[-1]["test_accuracy"],
            "reached": {f"{t:.3f}": first_reaching(history, t) for t in THRESHOLDS}, "history": history}


def cell(reached: dict | None) -> str:
    """A table cell for a threshold: seconds and epoch, or 'never'."""
    return "never" if reached is None else f"{reached['seconds']:.0f} s (epoch {reached['epoch']})"


def markdown_table(result: dict) -> str:
    """The side-by-side table: reference, then the default's seeds, then --amp."""
    runs = sorted(result["runs"], key=lambda r: (r["recipe"] != "reference", r["recipe"], r["seed"]))
    reference = runs[0]["wall_seconds"]
    lines = ["| command | parameters | epochs | s / epoch (median) | training time | share of reference "
             "| time to 99.0% | time to 99.4% | final test acc. | whole command |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        lines.append(
            f"| {run['label']} | {run['params']:,} | {run['epochs']} | {run['seconds_per_epoch']:.1f} s | "
            f"{run['wall_seconds']:.0f} s | {100 * run['wall_seconds'] / reference:.1f}% | "
            f"{cell(run['reached']['0.990'])} | {cell(run['reached']['0.994'])} | "
            f"{100 * run['final_test_accuracy']:.2f}% | {run['process_seconds']:.0f} s |")
    defaults = [r for r in runs if r["recipe"] == "default"]
    accuracy = statistics.median(r["final_test_accuracy"] for r in defaults)
    wall = statistics.median(r["wall_seconds"] for r in defaults)
    lines += ["", f"`python train.py`, median of {len(defaults)} seeds: test accuracy {100 * accuracy:.2f}%, training "
              f"time {wall:.0f} s = {100 * wall / reference:.1f}% of the reference's {runs[0]['epochs']} epochs "
              f"({reference:.0f} s); {result['machine']}, torch {result['torch']}."]
    return "\n".join(lines)


def has_markers(readme: Path) -> bool:
    """True if `readme` is a file holding both table markers."""
    return readme.is_file() and TABLE_START in readme.read_text() and TABLE_END in readme.read_text()


def main(argv: list[str] | None = None) -> int:
    """Run the commands in turn, write JSON and the table."""
    args = parse_args(argv)
    device = utils.get_device(args.device)
    if args.reference_run:
        train_reference(device, args.reference_run)
        return 0
    device_option = ["--device", device.type]

    def train_py(seed: int, *more: str) -> list[str]:
        """`python train.py --seed SEED [MORE]` on this device, test accuracy per epoch, --json (its path last)."""
        return [sys.executable, "train.py", "--seed", str(seed), *more, *device_option, "--test-every-epoch", "--json"]

    commands = [("default", f"python train.py --seed {seed}", train_py(seed)) for seed in args.seeds]
    commands.insert(1, ("reference", "PyTorch MNIST example (seed 1)",
                        [sys.executable, str(Path(__file__).resolve()), *device_option, "--reference-run"]))
    if engine.amp_dtype(device) is not None:
        seed = args.seeds[0]
        commands.append(("default --amp", f"python train.py --seed {seed} --amp", train_py(seed, "--amp")))
    runs = [summarise(recipe, run_command(label, command)) for recipe, label, command in commands]
    result = {"machine": device_label(str(device)), "torch": torch.__version__, "python": platform.python_version(),
              "runs": runs}
    engine.write_json(args.json, result)
    table = markdown_table(result)
    print(table)
    if args.readme:
        replace_table(Path(args.readme), table, (TABLE_START, TABLE_END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
