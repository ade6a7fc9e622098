"""Train named configurations for several seeds; write results.json and the README's results table.

    python benchmarks/results.py                          # every configuration (hours on a CPU)
    python benchmarks/results.py --only compact fashion_best
    python benchmarks/results.py --only mlp --seeds 1 --epochs 1 --json /tmp/r.json --readme /tmp/R.md
    python benchmarks/results.py --table-only             # rebuild the README table from results.json
    python benchmarks/results.py --ablation               # compact with one ingredient removed at a time

Each run is `train.py` itself (`train.run` on the same command-line options), so a row can be
reproduced with the `command` stored beside it in the JSON. Accuracy is the test accuracy after the
final epoch (no model selection on the test set); the table gives median, min and max over seeds.
New results are merged into the existing JSON by configuration name, so `--only` updates some rows
and keeps the others.
"""

import argparse
import contextlib
import functools
import io
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import model as models  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

# name -> train.py options and seeds. The small nets get their full 15-epoch recipe and 3 seeds.
# The earlier notebooks' models get fewer epochs/seeds where a CPU cannot afford their recipe
# (s5: ~200 s per epoch here; deep: 6.4M parameters); the table says how many epochs each row had.
CONFIGS: dict[str, dict] = {
    "compact": {"args": ["--model", "compact", "--dataset", "mnist", "--epochs", "15"], "seeds": [1, 2, 3]},
    "fashion_best": {"args": ["--model", "fashion_best", "--dataset", "fashion_mnist", "--epochs", "15"],
                     "seeds": [1, 2, 3]},
    "mlp": {"args": ["--model", "mlp", "--dataset", "mnist", "--epochs", "5"], "seeds": [1, 2, 3]},
    "lenet": {"args": ["--model", "lenet", "--dataset", "mnist", "--epochs", "5"], "seeds": [1, 2, 3]},
    "fashion": {"args": ["--model", "fashion", "--dataset", "fashion_mnist", "--epochs", "10"], "seeds": [1, 2, 3]},
    "s5": {"args": ["--model", "s5", "--dataset", "mnist", "--epochs", "2", "--batch-size", "128",
                    "--step-size", "1"], "seeds": [1]},
    "deep": {"args": ["--model", "deep", "--dataset", "mnist", "--epochs", "1"], "seeds": [1]},
}
# What each ingredient of the compact recipe adds: the recipe with one thing removed or swapped,
# seed 1 (the reference is the `compact` row's seed-1 run). "model" entries are CompactNet options.
ABLATIONS: dict[str, dict] = {
    "no_augmentation": {"args": ["--augment", "none"], "change": "no rotation/zoom augmentation"},
    "no_batchnorm": {"model": {"batchnorm": False}, "change": "no BatchNorm (convs get biases)"},
    "no_dropout": {"model": {"dropout": 0.0}, "change": "dropout 0 instead of 0.05"},
    "step_lr": {"args": ["--scheduler", "step", "--step-size", "5"],
                "change": "StepLR(5, 0.1) at lr 0.1 instead of OneCycleLR"},
}
RESULTS_JSON, ABLATION_JSON = ROOT / "benchmarks" / "results.json", ROOT / "benchmarks" / "ablation.json"
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"configurations to run (of: {', '.join(CONFIGS)}; with --ablation: {', '.join(ABLATIONS)})")
    p.add_argument("--seeds", nargs="+", type=int, help="override every configuration's seeds")
    p.add_argument("--epochs", type=int, help="override every configuration's epochs (for quick checks)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--ablation", action="store_true", help="run the ablations of compact (ABLATIONS) instead")
    p.add_argument("--json", help="results file, merged (default: benchmarks/results.json or ablation.json)")
    p.add_argument("--readme", default=str(ROOT / "README.md"), help="README whose results table is replaced")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from the JSON")
    args = p.parse_args(argv)
    known = ABLATIONS if args.ablation else CONFIGS
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        p.error(f"unknown configuration {', '.join(unknown)}; expected some of {', '.join(known)}")
    return args


def run_seeds(name: str, options: list[str], seeds: list[int]) -> dict:
    """Train with train.py's options once per seed; return the summary row (median, min, max)."""
    runs = []
    for seed in seeds:
        argv = options + ["--seed", str(seed)]
        print(f"== {name}, seed {seed}: python train.py {' '.join(argv)}", flush=True)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # per-batch progress bars: not wanted in a log
                result = train.run(train.parse_args(argv))
        except utils.NonFiniteLossError as err:  # a result too (e.g. an ablation at the recipe's learning rate)
            print(f"   diverged: {err}", flush=True)
            runs.append({"seed": seed, "test_accuracy": None, "diverged": str(err)})
            continue
        runs.append({
            "seed": seed, "test_accuracy": result["test_accuracy"], "wall_seconds": result["wall_seconds"],
            "seconds_per_epoch": statistics.median(row["seconds"] for row in result["history"]),
            "history": result["history"],
        })
        print(f"   test accuracy {result['test_accuracy']:.4f}, {runs[-1]['seconds_per_epoch']:.1f} s/epoch",
              flush=True)
    args = train.parse_args(options)
    finished = [r for r in runs if r["test_accuracy"] is not None]
    accuracies = [r["test_accuracy"] for r in finished] or [None]
    return {
        "name": name, "model": args.model, "dataset": args.dataset,
        "params": models.count_parameters(models.build(args.model)), "epochs": args.epochs,
        "batch_size": args.batch_size, "device": str(utils.get_device(args.device)),
        "command": "python train.py " + " ".join(options) + " --seed N", "seeds": seeds,
        "median_accuracy": statistics.median(accuracies) if finished else None,
        "min_accuracy": min(accuracies) if finished else None, "max_accuracy": max(accuracies) if finished else None,
        "diverged": len(runs) - len(finished),
        "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in finished) if finished else None,
        "wall_seconds": sum(r["wall_seconds"] for r in finished), "smoke": utils.smoke_mode(), "runs": runs,
    }


def config_options(name: str, epochs: int | None, device: str) -> list[str]:
    """train.py options for a configuration (or an ablation of `compact`)."""
    if name in CONFIGS:
        options = list(CONFIGS[name]["args"])
    else:  # an ablation: compact's options, a variant model registered under its own name
        ablation, variant = ABLATIONS[name], f"compact_{name}"
        models.MODELS[variant] = functools.partial(models.CompactNet, **ablation.get("model", {}))
        models.RECIPES[variant] = models.RECIPES["compact"]
        options = [variant if o == "compact" else o for o in CONFIGS["compact"]["args"]] + ablation.get("args", [])
    options += ["--device", device]
    return options + ["--epochs", str(epochs)] if epochs is not None else options  # argparse: last one wins


def load_results(path: Path) -> dict:
    """The results file as {"rows": {name: row}, ...}, or an empty one if it does not exist yet."""
    if not path.exists():
        return {"rows": {}}
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: {path} is not valid JSON ({err}); expected the output of this script") from err
    if not isinstance(results.get("rows"), dict):
        raise SystemExit(f"error: {path} has no 'rows' object; expected the output of this script")
    return results


def device_label(device: str) -> str:
    """A short hardware description for the table: the GPU's name, else the CPU's and its core count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{device} ({cpu}, {torch.get_num_threads()} threads)"


def percent(accuracy: float | None) -> str:
    """An accuracy as a percentage with two decimals; None (every seed diverged) as 'diverged'."""
    return "diverged" if accuracy is None else f"{100 * accuracy:.2f}%"


def markdown_table(results: dict) -> str:
    """The results as a Markdown table, rows in CONFIGS order (then any others)."""
    rows = results["rows"]
    order = [n for n in CONFIGS if n in rows] + sorted(set(rows) - set(CONFIGS))
    lines = [
        "| configuration | model | dataset | parameters | epochs | seeds | median acc. | min | max | s / epoch "
        "| device |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in order:
        r = rows[name]
        smoke = " (smoke)" if r.get("smoke") else ""
        seconds = "" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.1f}"
        lines.append(
            f"| `{name}`{smoke} | `{r['model']}` | {r['dataset']} | {r['params']:,} | {r['epochs']} | "
            f"{len(r['seeds'])} | **{percent(r['median_accuracy'])}** | {percent(r['min_accuracy'])} | "
            f"{percent(r['max_accuracy'])} | {seconds} | {r.get('hardware', r['device'])} |"
        )
    return "\n".join(lines)


def replace_table(readme: Path, table: str, markers: tuple[str, str] = (TABLE_START, TABLE_END)) -> None:
    """Put `table` between the README's markers (atomically); clear error if they are missing."""
    start, end = markers
    name = start.removeprefix("<!-- ").split(":")[0].replace("-", " ")  # e.g. "results table"
    text = readme.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"error: {readme} has no {name} markers; expected a line {start} "
                         f"and a line {end} where the table goes")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    new = f"{head}{start}\n{table}\n{end}{tail}"
    utils.atomic_write(readme, lambda f: f.write(new), mode="w")


def ablation_table(results: dict, reference: dict) -> str:
    """The ablation rows against the reference run (compact, seed 1) as a Markdown table."""
    ref = next((r for r in reference.get("runs", []) if r["seed"] == 1), None)
    lines = ["| variant | what changed | parameters | test acc. (seed 1) | vs recipe |", "|---|---|---:|---:|---:|"]
    if ref:
        lines.append(f"| `recipe` | the full compact recipe | {reference['params']:,} | "
                     f"{percent(ref['test_accuracy'])} | |")
    for name, r in results["rows"].items():
        acc = r["median_accuracy"]
        delta = f"{100 * (acc - ref['test_accuracy']):+.2f} pt" if ref and acc is not None else ""
        lines.append(f"| `{name}` | {ABLATIONS.get(name, {}).get('change', '')} | {r['params']:,} | {percent(acc)} "
                     f"| {delta} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen configurations, merge them into the JSON, rebuild the README table."""
    args = parse_args(argv)
    path = Path(args.json or (ABLATION_JSON if args.ablation else RESULTS_JSON))
    results = load_results(path)
    if not args.table_only:
        device = str(utils.get_device(args.device))
        for name in args.only or (ABLATIONS if args.ablation else CONFIGS):
            tic = time.perf_counter()
            seeds = args.seeds or ([1] if args.ablation else CONFIGS[name]["seeds"])
            row = run_seeds(name, config_options(name, args.epochs, args.device), seeds)
            row["hardware"] = device_label(device)
            if args.ablation:  # the variant model exists only inside this script
                row["command"] = f"python benchmarks/results.py --ablation --only {name}"
            results["rows"][name] = row
            results.update(torch=torch.__version__, python=platform.python_version())
            utils.write_json(path, results)  # after every configuration: a crash keeps what is done
            print(f"== {name}: median {percent(row['median_accuracy'])} in {time.perf_counter() - tic:.0f} s\n")
    if args.ablation:
        reference = load_results(RESULTS_JSON)["rows"].get("compact", {})
        print(ablation_table(results, reference))
        return 0
    table = markdown_table(results)
    replace_table(Path(args.readme), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
