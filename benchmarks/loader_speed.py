"""One training epoch, four ways, same model and seed: where does the time go?

    python benchmarks/loader_speed.py --model fashion --dataset fashion_mnist --batch-size 100
    python benchmarks/loader_speed.py --model s5 --limit 10000 --json s5.json

Methods, alternated within each repeat so that machine noise hits all of them alike:
  dataloader_w0  torchvision Dataset + DataLoader, num_workers=0
  dataloader_w2  the same with num_workers=2
  fast           utils.TensorLoader: the whole set as one tensor on the device
  compute        forward + backward + step on batches prepared beforehand (the floor)
Prints a table of median epoch seconds and writes the figures as JSON with --json.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine  # noqa: E402
import model as models  # noqa: E402
import utils  # noqa: E402

METHODS = ("dataloader_w0", "dataloader_w2", "fast", "compute")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion", choices=sorted(models.MODELS))
    p.add_argument("--dataset", default="fashion_mnist", choices=sorted(utils.DATASETS))
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="first N training samples (default: all)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--json", metavar="PATH")
    return p.parse_args()


def make_loader(method: str, args, device: torch.device):
    """The training batches for one method (no augmentation: we time the pipeline, not the policy)."""
    if method.startswith("dataloader"):
        workers = int(method[-1])
        return engine.get_loaders(args.dataset, args.batch_size, device, limit=args.limit, augment=False,
                                  num_workers=workers).train
    loaders = engine.get_loaders(args.dataset, args.batch_size, device, limit=args.limit, augment=False,
                                 loader="fast")
    if method == "fast":
        return loaders.train
    return [(x.clone(), y.clone()) for x, y in loaders.train]  # compute: batches ready on the device


def time_epoch(method: str, args, device: torch.device) -> float:
    """Seconds for one training epoch of a fresh model (same seed for every method)."""
    loader = make_loader(method, args, device)
    utils.set_seed(0)
    return utils.time_training_epoch(models.build(args.model), loader, device)


def main() -> None:
    """Run the alternating repeats, print the table, write JSON."""
    args = parse_args()
    device = utils.get_device(args.device)
    times = {m: [] for m in METHODS}
    time_epoch("compute", args, device)  # warm-up: first-call allocations and kernel selection
    for r in range(args.repeats):
        for method in METHODS:
            times[method].append(time_epoch(method, args, device))
            print(f"repeat {r + 1}/{args.repeats} {method:<14} {times[method][-1]:7.2f} s", flush=True)
    median = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "model": args.model, "dataset": args.dataset, "batch_size": args.batch_size, "device": str(device),
        "limit": args.limit, "repeats": args.repeats, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dataloader_epoch_s": median["dataloader_w0"], "dataloader_w2_epoch_s": median["dataloader_w2"],
        "fast_epoch_s": median["fast"], "compute_epoch_s": median["compute"],
        "speedup": median["dataloader_w0"] / median["fast"],
        "speedup_vs_w2": median["dataloader_w2"] / median["fast"],
        "overhead": median["fast"] / median["compute"] - 1,
        "all_times_s": times,
    }
    print(f"\n{args.model} on {args.dataset}, batch {args.batch_size}, device {device}, "
          f"median of {args.repeats} epochs")
    labels = (("DataLoader, 0 workers", "dataloader_epoch_s"), ("DataLoader, 2 workers", "dataloader_w2_epoch_s"),
              ("fast loader", "fast_epoch_s"), ("compute only", "compute_epoch_s"))
    for label, key in labels:
        print(f"  {label:<22} {result[key]:7.2f} s")
    print(f"  speedup (DataLoader w0 / fast) {result['speedup']:.2f}x, overhead (fast / compute - 1) "
          f"{100 * result['overhead']:.1f}%")
    if args.json:
        engine.write_json(args.json, result)


if __name__ == "__main__":
    main()
