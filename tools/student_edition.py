"""Build the student edition: the course with empty notebooks to work through, the checks kept.

    python tools/student_edition.py                                         # writes student/ (git-ignored)
    python tools/student_edition.py --out DIR                               # somewhere else
    python tools/student_edition.py --repo https://github.com/OWNER/REPO    # where you will publish it

Every notebook is copied with its outputs and execution counts removed and every worked solution
(the "<details><summary>Solution" blocks) taken out; the exercise cells and their
`exercises.check_...` calls stay, so a student's answers are still checked. `# NBVAL_CHECK_OUTPUT`
markers go too (there is no stored output left to compare), and so do the sentences that promise
stored outputs or a solution to open. utils.py, model.py, exercises.py, engine.py, train.py, requirements.txt,
README.md, images/ and benchmarks/ (the measured results notebook 09 reads, and their README) are
copied beside the notebooks, so the edition runs on its own, offline as the course does, and passes
`pytest --nbval-lax` in smoke mode. In the edition's exercises.py every check that compares one
number is sealed: its answer and known mistakes are stored as hashes and its explanations encrypted
with the number they explain (exercises.check_sealed), so a student who opens the file does not read
the answers there. The checks that judge an answer by computing from the student's own objects (a
tensor, a function, a network, a confusion matrix) or by its options (a set of values or letters)
keep their code: the method is the check.

The edition gets a README of its own (the course's README describes solutions, instructors/, tools/
and tests/, which the edition does not have), and its Colab badges and downloads must not lead to
the full course, solutions and outputs included. With `--repo URL [--branch B]`, the repository
where you will publish the edition, every badge and every setup cell's COURSE_REPO point there.
Without it the badges are left out (the setup cells keep the course repository, from which Colab
fetches utils.py, model.py and exercises.py, the same files). Links into the copied documents that
would lead outside the edition are turned into plain text.
"""

import argparse
import ast
import contextlib
import importlib.util
import inspect
import io
import pprint
import re
import shutil
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import set_course_repo  # noqa: E402  (the repository addresses of notebooks and badges)

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("utils.py", "model.py", "exercises.py", "engine.py", "train.py", "requirements.txt", "README.md")
SOLUTION = re.compile(r"<details><summary>Solution</summary>.*?</details>\s*", re.DOTALL)
CHECK_MARKER = re.compile(r"^# NBVAL_CHECK_OUTPUT\n", re.MULTILINE)
# Sentences of the course that are not true of the edition, and what the edition says instead.
STORED_OUTPUTS = re.compile(r"The stored outputs come from[^.]*\.\)?")
NO_OUTPUTS = "This edition comes without outputs: run the cells from the top to see them."
OPEN_THE_SOLUTION = re.compile(r"Try first,\s+then\s+open\s+the\s+solution\.")
INSTRUCTOR_HAS_IT = "Try first; your instructor has the worked solutions."
BADGE_LINE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\n*", re.MULTILINE)
LINK = re.compile(r"\[([^\]]+)\]\(((?!https?://|#)[^)#\s]+)(#[^)\s]*)?\)")  # a relative Markdown link


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, execution counts and worked solutions."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = SOLUTION.sub("", cell.source).rstrip()
            cell.source = OPEN_THE_SOLUTION.sub(INSTRUCTOR_HAS_IT, STORED_OUTPUTS.sub(NO_OUTPUTS, cell.source))
            if not cell.source:
                continue  # a cell that held only a solution
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.source = CHECK_MARKER.sub("", cell.source)
        cells.append(cell)
    nb.cells = cells
    return nb


def edition_readme(notebooks: list[Path], badge: str | None) -> str:
    """The edition's README: what it is, how to run it, and its notebooks (with Colab badges where published)."""
    rows = []
    for path in notebooks:
        title = "".join(nbformat.read(path, as_version=4).cells[0].source).splitlines()[0].lstrip("# ")
        link = f" [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({badge}{path.name})"
        rows.append(f"| [{title}](notebooks/{path.name}) |{link if badge else ''} |")
    return "\n".join([
        "# PyTorch course: student edition", "",
        "Numbered Jupyter notebooks to work through top to bottom. Each one explains a step, then lets you",
        "run it; it ends with exercises whose cells check your answer: replace `...` with your answer and",
        "run the cell. Your instructor has the worked solutions. The notebooks marked *Under the hood",
        "(optional)* show how two of the course's helpers are built: skip them on a first pass.", "",
        "## Running it", "",
        "```bash", "python -m venv .venv && source .venv/bin/activate", "pip install -r requirements.txt",
        "jupyter lab", "```", "",
        "Python 3.10 or newer. The notebooks find `utils.py`, `model.py` and `exercises.py` in this folder.",
        "MNIST and Fashion-MNIST are downloaded into `data/` on first use; offline, set `DATA_DIR` to a",
        "folder that holds them (`MNIST/raw/` and `FashionMNIST/raw/` with the original files).",
        "Everything runs on a laptop CPU; each notebook's opening says what it takes on a CPU and on a GPU,",
        "and how to switch Colab to a GPU. `python train.py` trains the course's default network from the",
        "command line (`python train.py --help`).", "",
        "## Notebooks", "", "| notebook | open |", "|---|---|", *rows, "",
    ])


def plain_links(text: str, out: Path, folder: Path) -> str:
    """Turn relative Markdown links whose target is not in the edition into their plain text."""
    def keep_or_drop(match: re.Match) -> str:
        target = (folder / match.group(2)).resolve()
        found = target.is_relative_to(out.resolve()) and target.is_file()
        if found and match.group(3):  # an anchor: the heading must be there too
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)
            found = match.group(3)[1:] in {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                                           for h in headings}
        return match.group(0) if found else match.group(1)
    return LINK.sub(keep_or_drop, text)


def sealed_exercises(path: Path) -> str:
    """The text of exercises.py with every check that compares one number sealed (see exercises.SEALED)."""
    spec = importlib.util.spec_from_file_location("course_exercises", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    sealed, bodies = {}, []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.FunctionDef) and node.name.startswith("check_")) or node.name in (
                "check_number", "check_sealed"):
            continue
        if len(inspect.signature(getattr(module, node.name)).parameters) != 1:
            continue  # judged against the student's own objects (a confusion matrix): nothing stored to seal
        calls = []
        module.check_number = lambda answer, *args, **kwargs: calls.append((args, kwargs))  # noqa: B023
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            getattr(module, node.name)(0)  # any number: a check that compares one number passes it on
        if len(calls) == 1:
            sealed[node.name] = module.seal_number_check(*calls[0][0], **calls[0][1])
            first = node.body[1] if isinstance(node.body[0], ast.Expr) else node.body[0]  # after the docstring
            call = f"    return check_sealed({node.args.args[0].arg}, SEALED[{node.name!r}])\n"
            bodies.append((first.lineno - 1, node.end_lineno, call))
    for start, end, body in sorted(bodies, reverse=True):
        lines[start:end] = [body]
    text = "".join(lines)
    table = pprint.pformat(sealed, width=110, sort_dicts=True)
    return text.replace("SEALED: dict[str, dict] = {}", f"SEALED: dict[str, dict] = {table}", 1)


def build(out: Path, repo: str | None = None, branch: str = "main") -> list[Path]:
    """Write the student edition to `out` (emptied first if it holds an earlier edition); return its notebooks.

    `repo` (https://github.com/OWNER/REPO) is where the edition will be published: its badges and
    setup cells point there. Without it the edition has no Colab badges.
    """
    addresses = None
    if repo is not None:
        match = set_course_repo.GITHUB.match(repo)
        if not match:
            raise SystemExit(f"error: --repo must look like https://github.com/OWNER/REPO, got {repo!r}")
        addresses = set_course_repo.urls(match.group(1), match.group(2), branch)
    if out.exists():
        if not (out / "notebooks").is_dir() or not (out / "exercises.py").is_file():
            raise SystemExit(f"error: {out} exists and is not a student edition; choose another --out")
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    for name in MODULES:
        if name not in ("README.md", "exercises.py"):
            shutil.copy2(ROOT / name, out / name)
    (out / "exercises.py").write_text(sealed_exercises(ROOT / "exercises.py"))
    shutil.copytree(ROOT / "images", out / "images")
    (out / "benchmarks").mkdir()
    for results in [*sorted((ROOT / "benchmarks").glob("*.json")), ROOT / "benchmarks" / "README.md"]:
        shutil.copy2(results, out / "benchmarks" / results.name)
    written = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = out / "notebooks" / path.name
        nb = student_notebook(nbformat.read(path, as_version=4))
        if addresses is None:
            nb.cells[0].source = BADGE_LINE.sub("", nb.cells[0].source)
        nbformat.write(nb, target)
        if addresses is not None:
            set_course_repo.rewrite_notebook(target, addresses["raw"], addresses["badge"])
        written.append(target)
    (out / "README.md").write_text(edition_readme(written, addresses and addresses["badge"]))
    for doc in [out / "README.md", out / "benchmarks" / "README.md"]:
        doc.write_text(plain_links(doc.read_text(), out, doc.parent))
    return written


def main(argv: list[str] | None = None) -> int:
    """Build the edition and say where it is."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "student", help="where to write it (default: student/)")
    p.add_argument("--repo", help="https://github.com/OWNER/REPO where the edition will be published (Colab badges)")
    p.add_argument("--branch", default="main", help="its branch (default: main)")
    args = p.parse_args(argv)
    if args.out.resolve() == ROOT:
        p.error("--out must not be the course folder itself")
    if args.repo is not None and not set_course_repo.GITHUB.match(args.repo):
        p.error(f"--repo must look like https://github.com/OWNER/REPO, got {args.repo!r}")
    notebooks = build(args.out, args.repo, args.branch)
    print(f"student edition: {len(notebooks)} notebooks, without outputs and solutions, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
