"""Measure every notebook as a lesson: prose words, code lines, the longest code cell, `#@save` lines.

    python tools/lesson_size.py            # a Markdown table of all notebooks; exit 1 if a core one is too big
    python tools/lesson_size.py --json     # the same figures as JSON

Words are runs of letters, digits and apostrophes in the markdown cells (solutions included); code
lines are the non-blank lines of the code cells. A notebook is *optional* when its title (the first
line of its first cell) says "(optional)"; every other notebook is a core lesson and must stay the
size of a d2l section: at most MAX_WORDS words, MAX_CODE_LINES code lines, MAX_CELL_LINES lines in
any code cell.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_WORDS, MAX_CODE_LINES, MAX_CELL_LINES = 3_000, 350, 40
WORD = re.compile(r"[A-Za-z0-9']+")


def cell_lines(source: str) -> int:
    """Non-blank lines of a cell."""
    return sum(1 for line in source.splitlines() if line.strip())


def measure(path: Path) -> dict:
    """The size figures of one notebook."""
    cells = json.loads(path.read_text())["cells"]
    sources = [("".join(c["source"]), c["cell_type"]) for c in cells]
    code = [s for s, kind in sources if kind == "code"]
    title = sources[0][0].splitlines()[0] if sources else ""
    return {
        "notebook": path.stem,
        "optional": "(optional)" in title.lower(),
        "words": sum(len(WORD.findall(s)) for s, kind in sources if kind == "markdown"),
        "code_cells": len(code),
        "code_lines": sum(cell_lines(s) for s in code),
        "longest_cell": max((cell_lines(s) for s in code), default=0),
        "save_lines": sum(cell_lines(s) for s in code if s.startswith("#@save")),
    }


def too_big(row: dict) -> list[str]:
    """What makes a core lesson too big (empty for an optional notebook)."""
    if row["optional"]:
        return []
    limits = [("words", MAX_WORDS), ("code_lines", MAX_CODE_LINES), ("longest_cell", MAX_CELL_LINES)]
    return [f"{key} {row[key]} > {limit}" for key, limit in limits if row[key] > limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    rows = [measure(p) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("| notebook | kind | prose words | code lines | longest code cell | `#@save` lines |")
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            kind = "optional" if r["optional"] else "core"
            print(f"| {r['notebook']} | {kind} | {r['words']:,} | {r['code_lines']} | {r['longest_cell']} "
                  f"| {r['save_lines']} |")
    problems = [f"{r['notebook']}: {', '.join(too_big(r))}" for r in rows if too_big(r)]
    for problem in problems:
        print("too big for a core lesson:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
