"""benchmarks/results.py: runs train.py's code per seed, merges JSON, regenerates the README table."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import results  # noqa: E402

README = f"# Course\n\nintro\n\n{results.TABLE_START}\nold table\n{results.TABLE_END}\n\nafter the table\n"


def test_smoke_run_writes_json_rows_and_the_readme_table(data_root, tmp_path):
    out, readme = tmp_path / "results.json", tmp_path / "README.md"
    readme.write_text(README)
    argv = ["--only", "mlp", "--seeds", "1", "2", "--epochs", "1", "--device", "cpu",
            "--json", str(out), "--readme", str(readme)]
    assert results.main(argv) == 0
    row = json.loads(out.read_text())["rows"]["mlp"]
    accuracies = [run["test_accuracy"] for run in row["runs"]]
    assert [run["seed"] for run in row["runs"]] == [1, 2] and len(set(accuracies)) == 2  # seeds differ
    assert row["min_accuracy"] == min(accuracies) and row["max_accuracy"] == max(accuracies)
    assert row["median_accuracy"] == pytest.approx(sum(accuracies) / 2)
    assert row["params"] == 203_530 and row["epochs"] == 1 and row["smoke"] is True
    assert all(0.5 < a <= 1 for a in accuracies)  # one smoke epoch of the MLP on real MNIST
    text = readme.read_text()
    assert text.startswith("# Course\n\nintro\n") and text.endswith("after the table\n")
    assert "old table" not in text and "| `mlp` (smoke) | `mlp` | mnist | 203,530 | 1 | 2 |" in text


def test_rows_are_merged_by_name_and_table_only_rebuilds(tmp_path):
    out, readme = tmp_path / "results.json", tmp_path / "README.md"
    readme.write_text(README)
    row = {"model": "s5", "dataset": "mnist", "params": 593_200, "epochs": 2, "seeds": [1],
           "median_accuracy": 0.99, "min_accuracy": 0.99, "max_accuracy": 0.99, "seconds_per_epoch": 200.0,
           "device": "cpu", "hardware": "cpu (test)"}
    out.write_text(json.dumps({"rows": {"s5": row, "zz_extra": {**row, "model": "mlp"}}}))
    assert results.main(["--table-only", "--json", str(out), "--readme", str(readme)]) == 0
    table = readme.read_text().split(results.TABLE_START)[1].split(results.TABLE_END)[0]
    lines = table.strip().splitlines()
    assert lines[2].startswith("| `s5` | `s5` | mnist | 593,200 | 2 | 1 | **99.00%**")  # CONFIGS order first
    assert lines[3].startswith("| `zz_extra` |") and lines[2].endswith("| cpu (test) |")


def test_missing_markers_and_bad_json_give_one_clear_error(tmp_path):
    out, readme = tmp_path / "results.json", tmp_path / "README.md"
    out.write_text(json.dumps({"rows": {}}))
    readme.write_text("# no markers here\n")
    with pytest.raises(SystemExit, match="no results table markers"):
        results.main(["--table-only", "--json", str(out), "--readme", str(readme)])
    assert readme.read_text() == "# no markers here\n"  # untouched
    out.write_text("{not json")
    with pytest.raises(SystemExit, match="is not valid JSON"):
        results.main(["--table-only", "--json", str(out), "--readme", str(readme)])


def test_unknown_configuration_is_named(capsys):
    with pytest.raises(SystemExit):
        results.parse_args(["--only", "resnet"])
    assert "unknown configuration resnet" in capsys.readouterr().err


def test_readme_table_is_the_scripts_output_from_results_json():
    stored = results.load_results(ROOT / "benchmarks" / "results.json")
    readme = (ROOT / "README.md").read_text()
    assert f"{results.TABLE_START}\n{results.markdown_table(stored)}\n{results.TABLE_END}" in readme
    for name in ("compact", "fashion_best", "s5", "fashion", "mlp", "lenet"):
        assert name in stored["rows"] and stored["rows"][name]["smoke"] is False


def test_stored_results_meet_the_small_model_targets():
    rows = results.load_results(ROOT / "benchmarks" / "results.json")["rows"]
    compact, fashion = rows["compact"], rows["fashion_best"]
    assert compact["params"] <= 6000 and compact["epochs"] <= 15 and len(compact["seeds"]) == 3
    assert compact["median_accuracy"] >= 0.9940
    assert fashion["params"] < 100_000 and fashion["epochs"] <= 15 and len(fashion["seeds"]) == 3
    assert fashion["median_accuracy"] >= 0.930


def test_a_diverged_seed_is_recorded_not_fatal(data_root):
    row = results.run_seeds("explodes", ["--model", "mlp", "--epochs", "1", "--lr", "1e12", "--device", "cpu"], [1])
    assert row["diverged"] == 1 and row["median_accuracy"] is None and "diverged" in row["runs"][0]
    assert "| **diverged** |" in results.markdown_table({"rows": {"explodes": row}})
