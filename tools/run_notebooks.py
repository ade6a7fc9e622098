"""Execute notebooks top to bottom (a full run, not smoke mode) and store calm, small outputs.

    python tools/run_notebooks.py notebooks/02_first_network.ipynb     # one notebook
    python tools/run_notebooks.py                                      # all of them, in order

Each notebook runs in a fresh kernel in notebooks/, with COURSE_SMOKE unset. Then its outputs are
tidied the way a reader should see them: consecutive stream outputs of a cell are merged into one,
and a progress bar that redrew itself with carriage returns keeps only its final state (one line
per epoch). It refuses to save a notebook whose outputs contain an error, a stderr stream or a path
of this machine, naming the cell, so what is committed never shows any of them. A full run executes
every cell, also those the tests skip (notebook 06's %tensorboard cell, tagged skip-execution).
"""

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
# Paths that would reveal the machine that ran a notebook (a traceback into utils.py counts).
MACHINE_PATH = re.compile(r"(/home/|/Users/|/root/|/tmp/|/work/|/private/var/|[A-Za-z]:\\\\)")


def final_frames(text: str) -> str:
    """Keep what a terminal shows: on every line, only the text after its last carriage return."""
    lines = text.split("\n")
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines)


def tidy_outputs(cell) -> None:
    """Merge consecutive stream outputs of the same name and reduce progress bars to their last frame."""
    merged = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and merged and merged[-1]["output_type"] == "stream" \
                and merged[-1]["name"] == output["name"]:
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    for output in merged:
        if output["output_type"] == "stream":
            output["text"] = final_frames(output["text"])
    cell["outputs"] = merged


def problems(nb) -> list[str]:
    """What must not be stored: errors (also printed ones), stderr streams, paths of this machine."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                found.append(f"cell {i}: error {output['ename']}: {output['evalue'][:200]}")
            if output.get("name") == "stderr":
                found.append(f"cell {i}: stderr output {output['text'][:200]!r}")
            data = output.get("data", {})
            text = output.get("text", "") + " ".join(str(v) for k, v in data.items() if k.startswith("text/"))
            if MACHINE_PATH.search(text):
                found.append(f"cell {i}: a path of this machine: {MACHINE_PATH.search(text).group(0)!r}")
            if re.search(r"^ERROR: ", text, re.MULTILINE):  # shown as text, e.g. %tensorboard without tensorboard
                found.append(f"cell {i}: an error message in its output {text[:200]!r}")
    return found


def run(path: Path) -> float:
    """Execute one notebook in place; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    env_smoke = os.environ.pop("COURSE_SMOKE", None)  # a full run
    # The kernel's shell commands (notebook 06's %tensorboard) find this Python's scripts, as in an
    # activated virtual environment, even when this script was started as .venv/bin/python.
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    try:
        tic = time.perf_counter()
        NotebookClient(nb, timeout=None, kernel_name="python3", record_timing=False,
                       skip_cells_with_tag="",  # every cell, also those tagged skip-execution for the tests
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - tic
    finally:
        if env_smoke is not None:
            os.environ["COURSE_SMOKE"] = env_smoke
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: noise in every diff
        if cell.cell_type == "code":
            tidy_outputs(cell)
    found = problems(nb)
    if found:
        raise SystemExit(f"{path.name} not saved:\n  " + "\n  ".join(found))
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Run the given notebooks (default: all) and print each one's wall time."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        if not path.is_file() or path.suffix != ".ipynb":
            p.error(f"{path} is not a notebook file")
    for path in paths:
        seconds = run(path.resolve())
        print(f"{path.name}: {seconds / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
