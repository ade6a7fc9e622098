"""utils.py is the taught library: the notebooks' #@save cells, word for word, in teaching order."""

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_utils  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
UTILS = (ROOT / "utils.py").read_text()
TREE = ast.parse(UTILS)


def defined_names(node: ast.stmt) -> set[str]:
    """The module-level names a statement of utils.py defines."""
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def test_utils_is_the_saved_cells_word_for_word():
    assert build_utils.build(NOTEBOOKS) == UTILS, "edit the notebook, not utils.py; then python tools/build_utils.py"


def test_the_build_tool_reports_a_hand_edit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(build_utils, "COURSE", tmp_path)
    (tmp_path / "notebooks").mkdir()
    for notebook in NOTEBOOKS:
        (tmp_path / "notebooks" / notebook.name).write_text(notebook.read_text())
    (tmp_path / "utils.py").write_text(UTILS.replace("return max(batch_size, 1000)", "return 1000"))
    assert build_utils.main(["--check"]) == 1
    assert "+    return max(batch_size, 1000)" in capsys.readouterr().out
    assert build_utils.main([]) == 0 and (tmp_path / "utils.py").read_text() == UTILS


def test_every_helper_names_its_notebook_and_section():
    lines = UTILS.splitlines()
    for node in TREE.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            headers = [line for line in lines[: node.lineno] if line.startswith("# ==================== ")]
            assert headers and re.fullmatch(r"# =+ \d\d\w*\.ipynb · .+", headers[-1]), node.name


def test_no_helper_uses_a_name_defined_further_down():
    top_level = set().union(*(defined_names(node) for node in TREE.body))
    defined: set[str] = set()
    for node in TREE.body:
        defined |= defined_names(node)  # a function may call itself
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        local = {a.arg for n in ast.walk(node) if isinstance(n, ast.arguments) for a in [*n.args, *n.kwonlyargs]}
        local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        later = (used & top_level) - defined - (local - defined_names(node))
        assert not later, f"{sorted(defined_names(node))} uses {sorted(later)}, defined further down"


def test_the_taught_library_knows_nothing_of_several_processes_or_mixed_precision():
    # Notebook 07 points at engine.py for those; the loops a student reads in notebooks 02 and 03 stay plain.
    words = r"DistributedDataParallel|DistributedSampler|GradScaler|autocast|all_reduce|world_size|\brank\b|\bamp\b"
    assert re.findall(words, UTILS) == []
    imported = {n.module for n in ast.walk(TREE) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(TREE) if isinstance(n, ast.Import) for a in n.names}
    assert "engine" not in imported and "train" not in imported


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_saved_cell_imports_from_utils_only_what_an_earlier_notebook_saved(notebook):
    earlier = set()
    for other in NOTEBOOKS:
        if other == notebook:
            break
        for _, _, source in build_utils.saved_cells([other]):
            earlier |= set().union(*(defined_names(node) for node in ast.parse(source).body))
    for _, _, source in build_utils.saved_cells([notebook]):
        for node in ast.parse(source).body:
            if isinstance(node, ast.ImportFrom) and node.module == "utils":
                assert {a.name for a in node.names} <= earlier, ast.unparse(node)


def test_the_first_notebook_explains_the_marker_before_its_first_saved_cell():
    cells = json.loads(NOTEBOOKS[0].read_text())["cells"]
    first = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith(build_utils.MARKER))
    assert any("`#@save`" in "".join(c["source"]) for c in cells[:first] if c["cell_type"] == "markdown")


# --------------------------------------------------------------------------- the engine runs the taught loop


@pytest.mark.parametrize("schedule", ["onecycle", "step"])
def test_the_engine_trains_exactly_like_the_taught_fit_on_one_cpu(data_root, schedule, capsys):
    # train.py's engine.fit adds resuming, ranks, mixed precision and checks around utils.fit's loop;
    # for one process in float32 it must compute the same: OneCycleLR per batch, StepLR per epoch,
    # the same reseeding per epoch (dropout masks and the fast loader's order and augmentation).
    import torch
    import torch.nn.functional as F

    import engine
    import model
    import utils

    cpu = torch.device("cpu")
    results = []
    for fit in (utils.fit, engine.fit):
        loaders = utils.get_loaders("mnist", 64, cpu, limit=1200, val_size=200, seed=3, loader="fast",
                                    augment=utils.batch_augmentation("rotate"))
        torch.manual_seed(0)
        net = model.build("fashion_best")  # dropout and BatchNorm: both depend on the seeds and the order
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, epochs=2, steps_per_epoch=len(loaders.train))
                     if schedule == "onecycle" else torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5))
        history = fit(net, loaders.train, loaders.val, F.cross_entropy, optimizer, 2, cpu, scheduler, seed=3,
                      verbose=False)
        results.append((net.state_dict(), [{k: v for k, v in row.items() if k != "seconds"} for row in history]))
    (taught, taught_history), (engine_state, engine_history) = results
    assert taught_history == engine_history
    assert all(torch.equal(taught[key], engine_state[key]) for key in taught)


def test_the_engine_has_no_batch_loop_of_its_own_and_runs_the_taught_one(data_root, monkeypatch):
    import torch
    import torch.nn.functional as F

    import engine
    import model
    import utils

    engine_tree = ast.parse((ROOT / "engine.py").read_text())
    loops = [ast.unparse(node.iter) for node in ast.walk(engine_tree) if isinstance(node, ast.For)]
    assert not [it for it in loops if re.search(r"loader|bar\b|batch", it)], loops
    calls = []
    for name in ("train_step", "train_epoch", "evaluate"):
        real = getattr(utils, name)
        monkeypatch.setattr(utils, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    cpu = torch.device("cpu")
    loaders = engine.get_loaders("mnist", 100, cpu, limit=300, val_size=100, loader="fast")
    net = model.build("mlp")
    engine.fit(net, loaders.train, loaders.val, F.nll_loss, torch.optim.SGD(net.parameters(), lr=0.01), 1, cpu,
               verbose=False)
    assert calls == ["train_epoch", "train_step", "train_step", "evaluate"]  # 200 images in batches of 100
