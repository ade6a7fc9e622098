"""Notebook 09, exercise 3 (stretch goal): compact at width 10 (4,820 parameters), judged on validation.

    python instructors/smaller_compact.py              # seeds 1-3, about 2-4 minutes each on a 2-core CPU
    python instructors/smaller_compact.py --seeds 1

Trains the candidate of instructors/README.md as `python train.py --model compact --val-size 10000
--seed N` trains compact (train.py's own recipe, optimiser and schedule: 50,000 images, 10,000 held
out, 30 epochs, SGD with OneCycleLR to 0.1, batch 128, augmentation) and prints each seed's validation
accuracy after the last epoch, next to compact's from benchmarks/results.json.
"""

import argparse
import contextlib
import functools
import io
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import model  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

WIDTH = 10  # compact is model.QuickNet(width=11): 5,796 parameters


def validation_accuracy(seed: int) -> float:
    """One run of compact's recipe with the candidate; its validation accuracy after the last epoch."""
    args = train.parse_args(["--model", "compact", "--val-size", "10000", "--seed", str(seed)])  # the recipe
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its log and bars
        result = train.run(args, functools.partial(model.QuickNet, width=WIDTH))  # only the network differs
    return result["history"][-1]["val_accuracy"]


def main() -> int:
    """Train the candidate for each seed and print it beside compact."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = p.parse_args()
    device = utils.get_device()
    stored = json.loads((ROOT / "benchmarks" / "results.json").read_text())["rows"].get("compact", {}).get("runs", [])
    compact = {run["seed"]: run["val_accuracy"] for run in stored}
    print(f"candidate: QuickNet of width {WIDTH}, {model.count_parameters(model.QuickNet(width=WIDTH)):,} "
          f"parameters, on {device}")
    mine = {}
    for seed in args.seeds:
        mine[seed] = validation_accuracy(seed)
        reference = f"{100 * compact[seed]:.2f}%" if seed in compact else "not stored"
        print(f"seed {seed}: validation {100 * mine[seed]:.2f}% (compact: {reference})", flush=True)
    print(f"median: {100 * statistics.median(mine.values()):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
