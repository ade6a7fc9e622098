"""The beginner's path: core lessons the size of a d2l section, machinery in optional notebooks."""

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_utils  # noqa: E402
import lesson_size  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ROWS = {p.stem: lesson_size.measure(p) for p in NOTEBOOKS}
OPTIONAL = [name for name, row in ROWS.items() if row["optional"]]


def cells(name: str) -> list[dict]:
    return json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]


def code_of(name: str) -> str:
    return "\n".join("".join(c["source"]) for c in cells(name) if c["cell_type"] == "code")


def test_the_course_has_core_lessons_and_optional_notebooks():
    assert OPTIONAL == ["04b_under_the_hood_layer_table", "05b_under_the_hood_fast_loader"]
    assert len(ROWS) - len(OPTIONAL) == 9


@pytest.mark.parametrize("name", [n for n in ROWS if n not in OPTIONAL])
def test_every_core_lesson_is_the_size_of_a_d2l_section(name):
    assert lesson_size.too_big(ROWS[name]) == [], "move machinery to an optional notebook, or split the lesson"


@pytest.mark.parametrize("name", OPTIONAL)
def test_an_optional_notebook_says_so_in_its_title_and_first_paragraph(name):
    opening = "".join(cells(name)[0]["source"])
    assert "Under the hood (optional)" in opening.splitlines()[0]
    assert "**Optional.**" in opening


@pytest.mark.parametrize("name", list(ROWS))
def test_every_opening_says_how_to_switch_colab_to_a_gpu_and_what_the_notebook_takes(name):
    opening = "".join("".join(c["source"]) for c in cells(name)[:2] if c["cell_type"] == "markdown")
    assert "Runtime → Change runtime type → T4 GPU" in opening.replace("\n", " ")
    assert "**Runs on**" in opening and "CPU" in opening and "GPU" in opening


def test_the_first_network_teaches_the_standard_pipeline_only():
    code = code_of("02_first_network")
    for term in ("pin_memory", "num_workers", "affine_grid", "TorchFunctionMode", "TensorLoader"):
        assert term not in code, term


def test_a_core_lesson_that_calls_an_optional_helper_links_to_the_notebook_that_writes_it():
    written_in = {}
    for notebook in OPTIONAL:
        for _, _, source in build_utils.saved_cells([ROOT / "notebooks" / f"{notebook}.ipynb"]):
            for node in ast.parse(source).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                    written_in[node.name] = notebook[:3]
    assert {"layer_table", "TensorLoader", "get_loaders", "batch_augmentation"} <= set(written_in)
    for name in ROWS:
        if name in OPTIONAL:
            continue
        prose = " ".join("".join(c["source"]) for c in cells(name) if c["cell_type"] == "markdown")
        for helper in set(re.findall(r"utils\.(\w+)", code_of(name))) & set(written_in):
            assert f"notebook {written_in[helper]}" in prose.replace("\n", " "), (name, helper)


def test_the_instructor_kit_quotes_the_measured_sizes():
    kit = (ROOT / "instructors" / "README.md").read_text()
    for name, row in ROWS.items():
        number = name.split("_")[0]
        line = next(line for line in kit.splitlines() if line.startswith(f"| {number} "))
        assert f"| {row['words']:,} words | {row['code_cells']} cells, {row['code_lines']} lines " in line, line
