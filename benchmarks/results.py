"""Train named configurations for several seeds; write results.json and the results table of benchmarks/README.md.

    python benchmarks/results.py                          # every configuration (about 30 minutes on a 2-core CPU)
    python benchmarks/results.py --only compact fashion_best
    python benchmarks/results.py --only mlp --seeds 1 --epochs 1 --json /tmp/r.json --readme /tmp/R.md
    python benchmarks/results.py --table-only             # rebuild the README table from results.json
    python benchmarks/results.py --ablation               # variants of compact / fashion_best, on validation

Each run is `train.py` itself (`train.run` on the same command-line options), so a row can be
reproduced with the `command` stored beside it in the JSON. Every configuration holds out 10,000
training images as a validation split (`--val-size 10000`: a random split seeded by --seed, so each
seed holds out its own 10,000; 50,000 are left to train on) and reports two figures after the final
epoch: validation accuracy, the one that design decisions (notebook 09's ablation and design
history) are made on, and test accuracy, evaluated once at the end of each run and chosen by
nothing. The table gives median, min and max over seeds. New results are merged into the existing
JSON by configuration name, so `--only` updates some rows and keeps the others.
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
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
import model as models  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

# name -> train.py options and seeds. The small nets get their full recipe and 3 seeds. The earlier
# notebooks' models get fewer epochs/seeds where a CPU cannot afford their recipe (s5: ~100-200 s per
# epoch on a CPU; deep: 6.4M parameters); the table says how many epochs each row had.
VAL_SIZE = 10_000  # every row: 50,000 images to train on, 10,000 to validate on (smoke mode: 500 of 2,000)
CONFIGS: dict[str, dict] = {
    "compact": {"args": ["--model", "compact", "--dataset", "mnist", "--epochs", "30"], "seeds": [1, 2, 3]},
    "quick": {"args": ["--model", "quick", "--dataset", "mnist", "--epochs", "10"], "seeds": [1, 2, 3]},
    "fashion_best": {"args": ["--model", "fashion_best", "--dataset", "fashion_mnist", "--epochs", "15"],
                     "seeds": [1, 2, 3]},
    "mlp": {"args": ["--model", "mlp", "--dataset", "mnist", "--epochs", "5"], "seeds": [1, 2, 3]},
    "lenet": {"args": ["--model", "lenet", "--dataset", "mnist", "--epochs", "5"], "seeds": [1, 2, 3]},
    "fashion": {"args": ["--model", "fashion", "--dataset", "fashion_mnist", "--epochs", "10"], "seeds": [1, 2, 3]},
    "s5": {"args": ["--model", "s5", "--dataset", "mnist", "--epochs", "2", "--batch-size", "128",
                    "--step-size", "1"], "seeds": [1]},
}


def pooled_net(widths: tuple[int, ...] = (8, 10, 10, 12, 12, 14), padded: bool = True,
               dropout: float = 0.05) -> nn.Module:
    """Notebook 09's earlier budget networks: two convs, a max-pool, the other convs (the first padded or not)."""
    def block(c_in: int, c_out: int, padding: int = 0) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()] + (
            [nn.Dropout(dropout)] if dropout else [])
    layers = block(1, widths[0]) + block(widths[0], widths[1]) + [nn.MaxPool2d(2)]
    for i, (c_in, c_out) in enumerate(zip(widths[1:], widths[2:])):
        layers += block(c_in, c_out, padding=1 if padded and i == 0 else 0)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(widths[-1], 10, 1), nn.Flatten())


def separable_net(width: int = 24, depth: int = 5) -> nn.Module:
    """compact with depthwise-separable convolutions (4,954 parameters): each 3x3 conv filters every channel on its
    own (groups=width: 9 weights per channel), then a 1x1 conv mixes the channels (width * width weights)."""
    def separable(padding: int = 0) -> list[nn.Module]:
        return [nn.Conv2d(width, width, 3, padding=padding, groups=width, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(), nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    layers = [nn.Conv2d(1, width, 3, stride=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(), *separable(padding=1)]
    for _ in range(depth - 1):
        layers += separable()
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, 10, 1), nn.Flatten())


def first_fashion() -> nn.Module:
    """Notebook 09's first Fashion-MNIST net (66,170 parameters): FashionBestNet with one conv at 14x14."""
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
                         *block(64, 64), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 3 * 3, 10))


# Variants of a configuration, seed 1 unless --seeds says more, judged by validation accuracy against the
# configuration's own seed-1 run: the ablation (one ingredient of the recipe removed or changed) and
# notebook 09's design history (the networks tried before). "model" builds the network, which train.run
# trains in place of the configuration's own.
ABLATIONS: dict[str, dict] = {
    "ten_epochs": {"base": "compact", "args": ["--epochs", "10"], "change": "10 epochs instead of 30"},
    "twenty_epochs": {"base": "compact", "args": ["--epochs", "20"], "change": "20 epochs instead of 30"},
    "no_augmentation": {"base": "compact", "args": ["--augment", "none"], "change": "no rotation/zoom augmentation"},
    "step_lr": {"base": "compact", "args": ["--scheduler", "step", "--step-size", "10"],
                "change": "StepLR(10, 0.1) at lr 0.1 instead of OneCycleLR"},
    "first_compact": {"base": "compact", "args": ["--epochs", "15"],
                      "model": functools.partial(pooled_net, (8, 12, 12, 12, 16), padded=False),
                      "change": "design history: convs 8, 12 | pool | 12, 12, 16, dropout 0.05, 15 epochs"},
    "first_compact_no_dropout": {"base": "compact", "args": ["--epochs", "15"],
                                 "model": functools.partial(pooled_net, (8, 12, 12, 12, 16), padded=False,
                                                            dropout=0.0),
                                 "change": "design history: the first network without dropout, 15 epochs"},
    "pooled_compact": {"base": "compact", "args": ["--epochs", "15"], "model": pooled_net,
                       "change": "design history: convs 8, 10 | pool | 10 padded, 12, 12, 14, dropout 0.05, "
                                 "15 epochs (compact until issue 34)"},
    "pooled_compact_no_dropout": {"base": "compact", "args": ["--epochs", "15"],
                                  "model": functools.partial(pooled_net, dropout=0.0),
                                  "change": "design history: the same without dropout, 15 epochs"},
    "pooled_compact_30_epochs": {"base": "compact", "model": functools.partial(pooled_net, dropout=0.0),
                                 "change": "design history: the pooled network without dropout, 30 epochs"},
    "separable_compact": {"base": "compact", "model": separable_net,
                          "change": "stretch: depthwise-separable convolutions of width 24 (under 5,000 parameters)"},
    "first_fashion": {"base": "fashion_best", "model": first_fashion, "args": ["--augment", "flip_shift"],
                      "change": "design history: one conv at 14x14, mirror and shift augmentation"},
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
    p.add_argument("--ablation", action="store_true",
                   help="run the variants of compact and fashion_best (ABLATIONS: ablation, design history) instead")
    p.add_argument("--json", help="results file, merged (default: benchmarks/results.json or ablation.json)")
    p.add_argument("--readme", default=str(ROOT / "benchmarks" / "README.md"),
                   help="README whose results table is replaced")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from the JSON")
    args = p.parse_args(argv)
    known = ABLATIONS if args.ablation else CONFIGS
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        p.error(f"unknown configuration {', '.join(unknown)}; expected some of {', '.join(known)}")
    return args


def spread(values: list[float]) -> dict:
    """Median, min and max of a list of accuracies (all None when it is empty: every seed diverged)."""
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_seeds(name: str, options: list[str], seeds: list[int], build: Callable[[], nn.Module] | None = None) -> dict:
    """Train with train.py's options once per seed (`build()`'s network, if given); return the summary row."""
    runs = []
    for seed in seeds:
        argv = options + ["--seed", str(seed)]
        print(f"== {name}, seed {seed}: python train.py {' '.join(argv)}", flush=True)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # per-batch progress bars: not wanted in a log
                result = train.run(train.parse_args(argv), build)
        except engine.NonFiniteLossError as err:  # a result too (e.g. an ablation at the recipe's learning rate)
            print(f"   diverged: {err}", flush=True)
            runs.append({"seed": seed, "val_accuracy": None, "test_accuracy": None, "diverged": str(err)})
            continue
        runs.append({
            "seed": seed, "val_accuracy": result["history"][-1].get("val_accuracy"),
            "test_accuracy": result["test_accuracy"], "wall_seconds": result["wall_seconds"],
            "seconds_per_epoch": statistics.median(row["seconds"] for row in result["history"]),
            "history": result["history"],
        })
        print(f"   validation accuracy {percent(runs[-1]['val_accuracy'])}, test accuracy "
              f"{percent(result['test_accuracy'])}, {runs[-1]['seconds_per_epoch']:.1f} s/epoch", flush=True)
    args = train.parse_args(options)
    finished = [r for r in runs if r["test_accuracy"] is not None]
    val = spread([r["val_accuracy"] for r in finished if r["val_accuracy"] is not None])
    test = spread([r["test_accuracy"] for r in finished])
    return {
        "name": name, "model": name if build else args.model, "dataset": args.dataset,
        "params": models.count_parameters(build() if build else models.build(args.model)), "epochs": args.epochs,
        "batch_size": args.batch_size, "device": str(utils.get_device(args.device)),
        "command": "python train.py " + " ".join(options) + " --seed N", "seeds": seeds,
        "train_images": (args.limit or utils.TRAIN_SIZE) - args.val_size,
        "val_size": args.val_size,
        **{f"{k}_val_accuracy": v for k, v in val.items()}, **{f"{k}_test_accuracy": v for k, v in test.items()},
        "diverged": len(runs) - len(finished),
        "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in finished) if finished else None,
        "wall_seconds": sum(r["wall_seconds"] for r in finished), "smoke": engine.smoke_mode(), "runs": runs,
    }


def config_options(name: str, epochs: int | None, device: str) -> tuple[list[str], Callable[[], nn.Module] | None]:
    """train.py options for a configuration or a variant of one, and what builds the variant's own network (or None)."""
    variant = ABLATIONS.get(name, {}) if name not in CONFIGS else {}
    options = CONFIGS[variant.get("base", name)]["args"] + variant.get("args", [])
    options += ["--val-size", str(500 if engine.smoke_mode() else VAL_SIZE), "--device", device]
    options += ["--epochs", str(epochs)] if epochs is not None else []  # argparse: the last one wins
    return options, variant.get("model")


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
        "| configuration | model | dataset | parameters | epochs | seeds | validation acc. (median) "
        "| test acc. (median) | test min | test max | s / epoch | device |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in order:
        r = rows[name]
        smoke = " (smoke)" if r.get("smoke") else ""
        seconds = "" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.1f}"
        lines.append(
            f"| `{name}`{smoke} | `{r['model']}` | {r['dataset']} | {r['params']:,} | {r['epochs']} | "
            f"{len(r['seeds'])} | {percent(r['median_val_accuracy'])} | **{percent(r['median_test_accuracy'])}** | "
            f"{percent(r['min_test_accuracy'])} | {percent(r['max_test_accuracy'])} | {seconds} | "
            f"{r.get('hardware', r['device'])} |"
        )
    splits = sorted({(r["train_images"], r["val_size"]) for r in rows.values()})
    lines += ["", "Trained on " + " / ".join(f"{t:,} images, validated on {v:,}" for t, v in splits)
              + " held out of the training set; tested once on the test set after the final epoch."]
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
    engine.atomic_write(readme, lambda f: f.write(new), mode="w")


def seed_one(row: dict) -> dict | None:
    """A row's seed-1 run, or None."""
    return next((r for r in row.get("runs", []) if r["seed"] == 1), None)


def ablation_table(results: dict, references: dict) -> str:
    """Each variant's seed-1 validation accuracy against its configuration's seed-1 run, as a Markdown table."""
    lines = ["| variant | of | what changed | parameters | validation acc. (seed 1) | vs its recipe | median (seeds) |",
             "|---|---|---|---:|---:|---:|---:|"]

    def median(row: dict) -> str:
        return f"{percent(row['median_val_accuracy'])} ({len(row['seeds'])})" if len(row["seeds"]) > 1 else ""

    for base in sorted({ABLATIONS[n]["base"] for n in results["rows"] if n in ABLATIONS}):
        ref = seed_one(references.get(base, {}))
        if ref:
            lines.append(f"| `{base}` | | the full recipe | {references[base]['params']:,} | "
                         f"{percent(ref['val_accuracy'])} | | {median(references[base])} |")
        for name, r in results["rows"].items():
            if ABLATIONS.get(name, {}).get("base") != base:
                continue
            run = seed_one(r) or {}
            acc = run.get("val_accuracy")
            delta = f"{100 * (acc - ref['val_accuracy']):+.2f} pt" if ref and acc is not None else ""
            lines.append(f"| `{name}` | `{base}` | {ABLATIONS[name]['change']} | {r['params']:,} | {percent(acc)} "
                         f"| {delta} | {median(r)} |")
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
            options, build = config_options(name, args.epochs, args.device)
            row = run_seeds(name, options, seeds, build)
            row["hardware"] = device_label(device)
            if args.ablation:  # the variant model exists only inside this script
                row["command"] = f"python benchmarks/results.py --ablation --only {name}"
            results["rows"][name] = row
            results.update(torch=torch.__version__, python=platform.python_version())
            engine.write_json(path, results)  # after every configuration: a crash keeps what is done
            print(f"== {name}: median validation {percent(row['median_val_accuracy'])}, test "
                  f"{percent(row['median_test_accuracy'])} in {time.perf_counter() - tic:.0f} s\n")
    if args.ablation:
        print(ablation_table(results, load_results(RESULTS_JSON)["rows"]))
        return 0
    table = markdown_table(results)
    replace_table(Path(args.readme), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
