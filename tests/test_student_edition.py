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
    text = "".join("".join(c["source"]) for c in cells(edition / "notebooks" / "08_sequential.ipynb"))
    assert "**3. Without a check.**" in text and "In `eval()` mode dropout is the identity" not in text


def test_the_edition_runs_on_its_own_in_smoke_mode(edition, data_root):
    # The course modules and photos travel with it; nbval runs one notebook there as an instructor would.
    assert all((edition / name).is_file() for name in student_edition.MODULES)
    assert len(list((edition / "images" / "digits").glob("*/*.png"))) == 10
    assert (edition / "benchmarks" / "results.json").is_file()  # notebook 09 reads the measured results
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


def every_link(folder: Path) -> list[str]:
    """Every link target in the edition's notebooks and Markdown files."""
    texts = [p.read_text() for p in folder.rglob("*.md")]
    texts += ["".join(c["source"]) for p in folder.rglob("*.ipynb") for c in cells(p) if c["cell_type"] == "markdown"]
    return [target for text in texts for target in re.findall(r"\]\(([^)\s]+)\)", text)]


def test_without_a_repository_nothing_leads_back_to_the_full_course(edition):
    links = every_link(edition)
    assert not [t for t in links if "colab.research.google.com/github" in t or "github.com" in t]
    readme = (edition / "README.md").read_text()
    assert "folded" not in readme and "Solution" not in readme
    for target in links:
        if not target.startswith(("http://", "https://", "#")):  # relative: must be in the edition
            path = target.split("#")[0]
            bases = (edition, edition / "benchmarks", edition / "notebooks")
            assert any((base / path).exists() for base in bases), target


def test_with_a_repository_every_badge_and_download_points_to_the_edition(tmp_path):
    out = tmp_path / "student"
    student_edition.main(["--out", str(out), "--repo", "https://github.com/teacher/spring-class", "--branch", "b2"])
    badges = [t for t in every_link(out) if "colab.research.google.com/github" in t]
    assert badges and all(t.startswith("https://colab.research.google.com/github/teacher/spring-class/blob/b2/")
                          for t in badges)
    assert len([t for t in badges if t.endswith("09_small_models.ipynb")]) == 2  # the notebook and the README
    for notebook in (out / "notebooks").glob("*.ipynb"):
        setup = "".join(cells(notebook)[2]["source"])
        assert 'COURSE_REPO = "https://raw.githubusercontent.com/teacher/spring-class/b2"' in setup, notebook.name


def test_a_repository_that_is_not_on_github_is_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(SystemExit):
        student_edition.main(["--out", str(tmp_path / "student"), "--repo", "spring-class"])
    assert "--repo must look like https://github.com/OWNER/REPO" in capsys.readouterr().err
    assert not (tmp_path / "student").exists()


def load_module(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ANSWERS = {  # check: answers to try (right, known mistakes, others, not numbers)
    "check_accuracy": [0.6, 0.24, 60, 3, 0.5], "check_gradient": [14, 28.0, 12, 1, "14"],
    "check_batches_per_epoch": [176, 175, 45_000 / 256, 1], "check_schedule_steps": [5_865, 15, 391, 2],
    "check_output_size": [13, 12, 14, 24, 3], "check_receptive_field": [14, 9, 10, 12, 1],
    "check_normalised_pixel": [1.1986, 1.2, 0.37, 1.62, 0.28, 0.11, 2], "check_run_count": [12, 7, 3],
    "check_sequential_params": [109_386, 109_184, 100_480, 2], "check_classifier_params": [2_760, 2_750, 120, 1],
    "check_stride_one": [13, 23, 12, 11, 1],
}


def test_the_editions_number_checks_are_sealed_and_judge_exactly_as_the_course(edition):
    import contextlib
    import io

    import exercises as course

    sealed = load_module(edition / "exercises.py", "edition_exercises")
    assert set(sealed.SEALED) == set(ANSWERS)
    text = (edition / "exercises.py").read_text()
    for plain in ("ceil(45,000 / 256) = 176", "15 epochs x 391", "= 13.", "109,386", "= 2,760", "9, 11, 13"):
        assert plain not in text, plain
    for check, answers in ANSWERS.items():
        for answer in [*answers, ...]:
            said = []
            for module in (course, sealed):
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    getattr(module, check)(answer)
                said.append(out.getvalue())
            assert said[0] == said[1], (check, answer, said)
