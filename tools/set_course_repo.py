"""Point every notebook's setup cell and every Colab badge at a course repository (after a fork).

    python tools/set_course_repo.py https://github.com/OWNER/REPO                 # branch main
    python tools/set_course_repo.py https://github.com/OWNER/REPO --branch dev
    python tools/set_course_repo.py --show                                        # what is set now

Rewrites, and nothing else: the `COURSE_REPO = "..."` line of each notebook's setup cell (where
Colab downloads utils.py and model.py from), the "Open In Colab" badge links in the notebooks and
in README.md, and the README's "Course repository" line. tests/test_course_repo.py checks that
they all agree.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")
SETUP_LINE = re.compile(r'COURSE_REPO = "[^"]*"')
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/")
README_REPO = re.compile(r"`https://github\.com/[^`]+` \(branch `[^`]+`\)")


def urls(owner: str, name: str, branch: str) -> dict:
    """The three forms of the repository address that the course uses."""
    return {
        "raw": f"https://raw.githubusercontent.com/{owner}/{name}/{branch}",
        "badge": f"https://colab.research.google.com/github/{owner}/{name}/blob/{branch}/notebooks/",
        "readme": f"`https://github.com/{owner}/{name}` (branch `{branch}`)",
    }


def rewrite_notebook(path: Path, raw: str, badge: str | None = None) -> None:
    """Set the setup cell's COURSE_REPO to `raw` and (if given) the badge prefix, in place."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        new = SETUP_LINE.sub(f'COURSE_REPO = "{raw}"', text) if cell["cell_type"] == "code" else text
        new = BADGE.sub(badge, new) if badge else new
        if new != text:
            cell["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def settings(root: Path) -> list[tuple[str, str, str]]:
    """(file, kind, value) for every place that names the repository."""
    found = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        text = "".join("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"])
        found += [(path.name, "setup", m.group(0)) for m in SETUP_LINE.finditer(text)]
        found += [(path.name, "badge", m.group(0)) for m in BADGE.finditer(text)]
    readme = (root / "README.md").read_text(encoding="utf-8")
    found += [("README.md", "badge", m.group(0)) for m in BADGE.finditer(readme)]
    found += [("README.md", "readme", m.group(0)) for m in README_REPO.finditer(readme)]
    return found


def main(argv: list[str] | None = None) -> int:
    """Rewrite the repository address everywhere, or show where it is set."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", nargs="?", help="the repository on GitHub, https://github.com/OWNER/REPO")
    p.add_argument("--branch", default="main")
    p.add_argument("--show", action="store_true", help="print every place that names the repository")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # for the tests
    args = p.parse_args(argv)
    if args.show:
        for file, kind, value in settings(args.root):
            print(f"{file:<28} {kind:<7} {value}")
        return 0
    match = GITHUB.match(args.url or "")
    if not match:
        p.error(f"expected a GitHub repository URL like https://github.com/OWNER/REPO, got {args.url!r}")
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", args.branch):
        p.error(f"--branch {args.branch!r} is not a branch name")
    new = urls(*match.groups(), args.branch)
    for path in sorted((args.root / "notebooks").glob("*.ipynb")):
        rewrite_notebook(path, new["raw"], new["badge"])
    readme = args.root / "README.md"
    text = readme.read_text(encoding="utf-8")
    readme.write_text(README_REPO.sub(new["readme"], BADGE.sub(new["badge"], text)), encoding="utf-8")
    print(f"course repository: {args.url} (branch {args.branch}); files fetched from {new['raw']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
