"""Build the student edition: the course with empty notebooks to work through, the checks kept.

    python tools/student_edition.py                 # writes student/ (git-ignored)
    python tools/student_edition.py --out DIR       # somewhere else

Every notebook is copied with its outputs and execution counts removed and every worked solution
(the "<details><summary>Solution" blocks) taken out; the exercise cells and their
`exercises.check_...` calls stay, so a student's answers are still checked. `# NBVAL_CHECK_OUTPUT`
markers go too (there is no stored output left to compare), and so do the sentences that promise
stored outputs or a solution to open. utils.py, model.py, exercises.py, engine.py, train.py, requirements.txt,
README.md, images/ and benchmarks/ (the measured results notebook 07 reads, and their README) are
copied beside the notebooks, so the edition runs on its own, offline as the course does, and passes
`pytest --nbval-lax` in smoke mode. exercises.py holds the expected answers in plain text: the
checks need them.
"""

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("utils.py", "model.py", "exercises.py", "engine.py", "train.py", "requirements.txt", "README.md")
SOLUTION = re.compile(r"<details><summary>Solution</summary>.*?</details>\s*", re.DOTALL)
CHECK_MARKER = re.compile(r"^# NBVAL_CHECK_OUTPUT\n", re.MULTILINE)
# Sentences of the course that are not true of the edition, and what the edition says instead.
STORED_OUTPUTS = re.compile(r"The stored outputs come from[^.]*\.\)?")
NO_OUTPUTS = "This edition comes without outputs: run the cells from the top to see them."
OPEN_THE_SOLUTION = ("Try first, then open the solution.", "Try first; your instructor has the worked solutions.")


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts and worked solutions."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = SOLUTION.sub("", cell.source).rstrip()
            cell.source = STORED_OUTPUTS.sub(NO_OUTPUTS, cell.source).replace(*OPEN_THE_SOLUTION)
            if not cell.source:
                continue  # a cell that held only a solution
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.source = CHECK_MARKER.sub("", cell.source)
        cells.append(cell)
    nb.cells = cells
    return nb


def build(out: Path) -> list[Path]:
    """Write the student edition to `out` (emptied first if it holds an earlier edition); return its notebooks."""
    if out.exists():
        if not (out / "notebooks").is_dir() or not (out / "exercises.py").is_file():
            raise SystemExit(f"error: {out} exists and is not a student edition; choose another --out")
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    for name in MODULES:
        shutil.copy2(ROOT / name, out / name)
    shutil.copytree(ROOT / "images", out / "images")
    (out / "benchmarks").mkdir()
    for results in [*sorted((ROOT / "benchmarks").glob("*.json")), ROOT / "benchmarks" / "README.md"]:
        shutil.copy2(results, out / "benchmarks" / results.name)
    written = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = out / "notebooks" / path.name
        nbformat.write(student_notebook(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Build the edition and say where it is."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "student", help="where to write it (default: student/)")
    args = p.parse_args(argv)
    if args.out.resolve() == ROOT:
        p.error("--out must not be the course folder itself")
    notebooks = build(args.out)
    print(f"student edition: {len(notebooks)} notebooks, without outputs and solutions, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
