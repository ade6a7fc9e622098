"""tools/student_edition.py: notebooks without outputs and solutions, checks kept, runnable on their own."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import student_edition  # noqa: E402


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edition") / "student"
    student_edition.main(["--out", str(out)])
    return out


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_every_notebook_comes_without_outputs_and_solutions(edition):
    originals = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.name for p in sorted((edition / "notebooks").glob("*.ipynb"))] == [p.name for p in originals]
    for original in originals:
        student = cells(edition / "notebooks" / original.name)
        code = [c for c in student if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), original.name
        text = "".join("".join(c["source"]) for c in student)
        assert "<summary>Solution" not in text and "NBVAL_CHECK_OUTPUT" not in text, original.name
        assert "stored outputs come from" not in text and "open the solution" not in text, original.name
        calls = re.findall(r"exercises\.check_\w+\(", "".join("".join(c["source"]) for c in cells(original)))
        assert sorted(re.findall(r"exercises\.check_\w+\(", text)) == sorted(calls), original.name  # checks kept


def test_a_stretch_exercise_keeps_its_question_and_loses_its_answer(edition):
    text = "".join("".join(c["source"]) for c in cells(edition / "notebooks" / "06_sequential.ipynb"))
    assert "**3. Without a check.**" in text and "In `eval()` mode dropout is the identity" not in text


def test_the_edition_runs_on_its_own_in_smoke_mode(edition, data_root):
    # The course modules and photos travel with it; nbval runs one notebook there as an instructor would.
    assert all((edition / name).is_file() for name in student_edition.MODULES)
    assert len(list((edition / "images" / "digits").glob("*/*.png"))) == 10
    assert (edition / "benchmarks" / "results.json").is_file()  # notebook 07 reads the measured results
    env = {**os.environ, "COURSE_SMOKE": "1", "DATA_DIR": str(data_root), "MPLBACKEND": "Agg"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             "--nbval-current-env", "notebooks/01_tensors.ipynb"],
                            cwd=edition, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_an_existing_folder_that_is_not_an_edition_is_never_replaced(tmp_path):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("my notes")
    with pytest.raises(SystemExit, match="is not a student edition"):
        student_edition.main(["--out", str(keep)])
    assert (keep / "notes.txt").read_text() == "my notes"
