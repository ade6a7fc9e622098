"""Notebook 09, exercise 3 (stretch goal): compact under 5,000 parameters, judged on validation.

    python instructors/smaller_compact.py                        # the separable candidate, seeds 1-3
    python instructors/smaller_compact.py --candidate width10 --seeds 1

Trains a candidate of instructors/README.md as `python train.py --model compact --val-size 10000
--seed N` trains compact (train.py's own recipe, optimiser and schedule: 50,000 images, 10,000 held
out, 30 epochs, SGD with OneCycleLR to 0.1, batch 128, augmentation) and prints each seed's validation
accuracy after the last epoch, next to compact's from benchmarks/results.json. Candidates:
"separable" (4,954 parameters: compact's layout with depthwise-separable convolutions of width 24,
benchmarks/results.py's `separable_net`; 5.3 minutes per seed on a 2-core CPU) and "width10"
(4,820 parameters: compact at width 10; about 3 minutes per seed).
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
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import model  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402
from results import separable_net  # noqa: E402

# compact is model.QuickNet(width=11): 5,796 parameters.
CANDIDATES = {"separable": separable_net, "width10": functools.partial(model.QuickNet, width=10)}


def validation_accuracy(build, seed: int) -> float:
    """One run of compact's recipe with the candidate; its validation accuracy after the last epoch."""
    args = train.parse_args(["--model", "compact", "--val-size", "10000", "--seed", str(seed)])  # the recipe
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its log and bars
        result = train.run(args, build)  # only the network differs
    return result["history"][-1]["val_accuracy"]


def main() -> int:
    """Train the candidate for each seed and print it beside compact."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", choices=sorted(CANDIDATES), default="separable")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = p.parse_args()
    device, build = utils.get_device(), CANDIDATES[args.candidate]
    stored = json.loads((ROOT / "benchmarks" / "results.json").read_text())["rows"]["compact"]["runs"]
    compact = {run["seed"]: run["val_accuracy"] for run in stored}
    print(f"candidate: {args.candidate}, {model.count_parameters(build()):,} parameters, on {device}")
    mine = {}
    for seed in args.seeds:
        mine[seed] = validation_accuracy(build, seed)
        reference = f"{100 * compact[seed]:.2f}%" if seed in compact else "not stored"
        print(f"seed {seed}: validation {100 * mine[seed]:.2f}% (compact: {reference})", flush=True)
    print(f"median: {100 * statistics.median(mine.values()):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
