"""The notebooks away from the course folder: Colab's fetch path, copied cells, stored outputs, repository URL."""

import functools
import http.server
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import run_notebooks  # noqa: E402
import set_course_repo  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SIZES_CELL = 'import os\n\nSMOKE = os.environ.get("COURSE_SMOKE", "0") not in ("", "0")'


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.fixture(scope="module")
def course_server():
    """The repository served over HTTP on 127.0.0.1, like raw.githubusercontent.com serves it to Colab."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(ROOT)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- Colab: a notebook alone


def test_notebook_alone_in_an_empty_folder_fetches_the_course_and_runs(data_root, course_server, tmp_path):
    # One notebook is enough: every setup cell is the same (test_every_setup_cell_and_badge_names_the_same_
    # repository), and nbval runs all of them in the course folder; the files notebooks 05 and 09 fetch
    # go through utils.course_file, tested below. So each notebook executes once per pytest.
    notebook = NOTEBOOKS[0]
    folder = tmp_path / "content"  # like Colab's /content: the notebook and nothing else
    folder.mkdir()
    copy = folder / notebook.name
    shutil.copy(notebook, copy)
    set_course_repo.rewrite_notebook(copy, course_server)
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    assert (folder / "utils.py").read_text() == (ROOT / "utils.py").read_text()  # fetched, byte for byte
    assert (folder / "model.py").read_text() == (ROOT / "model.py").read_text()
    assert (folder / "exercises.py").read_text() == (ROOT / "exercises.py").read_text()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []


def test_course_file_fetches_what_the_notebook_alone_lacks_once_and_whole(course_server, tmp_path):
    # Notebooks 05 (the digit photos) and 09 (stored results) read course files this way on Colab.
    shutil.copy(ROOT / "utils.py", tmp_path / "utils.py")
    script = ("import sys, utils\n"
              "for relative in sys.argv[2:]:\n"
              "    try:\n"
              "        print(utils.course_file(relative, sys.argv[1]).relative_to(utils.course_folder()).as_posix())\n"
              "    except OSError as err:\n"
              "        print('failed:', relative, err)\n")
    wanted = ["images/digits/7/7.png", "benchmarks/results.json", "benchmarks/no-such-file.json"]
    proc = subprocess.run([sys.executable, "-c", script, course_server, *wanted], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == wanted[:2] and "failed: benchmarks/no-such-file.json" in proc.stdout
    for relative in wanted[:2]:
        assert (tmp_path / relative).read_bytes() == (ROOT / relative).read_bytes()
    assert not (tmp_path / wanted[2]).exists()  # an error page is never saved
    (tmp_path / wanted[1]).write_text("{}")  # a local copy wins: nothing is fetched again
    proc = subprocess.run([sys.executable, "-c", script, "http://127.0.0.1:9", wanted[1]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == wanted[1] and (tmp_path / wanted[1]).read_text() == "{}"


def test_a_failed_fetch_prints_what_to_do_instead_of_a_traceback(course_server, tmp_path):
    setup = next(s for s in code_cells(NOTEBOOKS[0]) if "COURSE_REPO = " in s)
    setup = set_course_repo.SETUP_LINE.sub(f'COURSE_REPO = "{course_server}/no-such-folder"', setup)
    proc = subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert "Could not get utils.py" in proc.stdout and "HTTP Error 404" in proc.stdout
    assert "Upload utils.py, model.py and exercises.py with the file browser" in proc.stdout
    assert not (tmp_path / "utils.py").exists()  # an error page is never saved as a module


def test_importable_course_is_used_and_never_overwritten(tmp_path):
    setup = next(s for s in code_cells(NOTEBOOKS[0]) if "COURSE_REPO = " in s)
    setup = set_course_repo.SETUP_LINE.sub('COURSE_REPO = "http://127.0.0.1:9/unreachable"', setup)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the course on PYTHONPATH, the cell run elsewhere
    proc = subprocess.run([sys.executable, "-c", setup + "\nprint(utils.__file__)"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(ROOT / "utils.py") and list(tmp_path.iterdir()) == []


def test_a_module_that_shadows_the_courses_is_named_and_never_overwritten(tmp_path):
    setup = next(s for s in code_cells(NOTEBOOKS[0]) if "COURSE_REPO = " in s)
    setup = set_course_repo.SETUP_LINE.sub('COURSE_REPO = "http://127.0.0.1:9/unreachable"', setup)
    mine = tmp_path / "utils.py"
    mine.write_text("# a student's own helpers\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the course importable, but this folder's utils.py comes first
    proc = subprocess.run([sys.executable, "-c", setup], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and f"{mine} shadows the course's utils.py" in proc.stderr, proc.stderr[-2000:]
    assert "rename or remove it" in proc.stderr
    assert mine.read_text() == "# a student's own helpers\n" and [p.name for p in tmp_path.iterdir()] == ["utils.py"]


# --------------------------------------------------------------------------- copied into a script


def test_run_manager_cells_work_as_a_script_with_spawned_workers(data_root, tmp_path):
    cells = code_cells(ROOT / "notebooks" / "06_fashion_mnist.ipynb")
    script = tmp_path / "runs.py"
    markers = ["COURSE_REPO = ", "RUN_IMAGES = ", "def get_runs", "runs = get_runs(params)", "def image_grid",
               "class RunManager", "def add_to_class", "def train_runs"]
    script.write_text("\n\n".join(next(s for s in cells if marker in s) for marker in markers) + "\n")
    # macOS and Windows start DataLoader workers with "spawn": each worker imports the script again.
    start = "import multiprocessing, runpy, sys; multiprocessing.set_start_method('spawn'); " \
            "runpy.run_path(sys.argv[1], run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", start, str(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 runs x 1 epochs on cpu" in proc.stdout and "bootstrapping phase" not in proc.stderr
    assert multiprocessing.get_start_method() == "fork"  # the spawn method stayed in the child process


# --------------------------------------------------------------------------- teaching cells


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_the_sizes_cell_knows_about_smoke_mode(notebook):
    knowing = [c for c in code_cells(notebook) if re.search(r"smoke_mode|data_limit|\.epochs\(|COURSE_SMOKE", c)]
    assert len(knowing) <= 1, "smoke plumbing in a teaching cell"
    if knowing:
        assert knowing[0].startswith(SIZES_CELL)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_sizes_are_the_same_on_every_device(notebook, monkeypatch):
    # A floor checked in smoke mode must hold wherever nbval runs: the same steps on a CPU and a GPU.
    sizes = [c for c in code_cells(notebook) if c.startswith(SIZES_CELL)]
    monkeypatch.setenv("COURSE_SMOKE", "1")
    import model
    import utils

    for cell in sizes:
        names = {"utils": utils, "model": model}
        exec(cell, names)
        for name in [n for n in names if n.endswith("_ON_GPU")]:
            assert names[name] == names[name.replace("_ON_GPU", "_ON_CPU")], f"{name} differs from the CPU's"
    for cell in code_cells(notebook):  # a size chosen by device anywhere else would escape the check above
        if cell.startswith("#@save"):  # library code (loader_kwargs picks workers by device), not a size of a run
            continue
        for line in re.findall(r".*if device\.type == .*else.*", cell):
            assert "_ON_GPU" in line and "_ON_CPU" in line, f"a size chosen by device outside the sizes cell: {line}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_float_tensor_from_a_device_is_compared_bit_exactly_with_the_cpu(notebook):
    # GPUs round differently (notebooks 02 and 05b): across devices only integers may be equal bit for bit.
    for cell in code_cells(notebook):
        for args in re.findall(r"torch\.equal\(([^()]*(?:\([^()]*\)[^()]*)*)\)", cell):
            if ".cpu()" in args:
                assert all("label" in a for a in args.split(",")), f"torch.equal({args}) across devices"


def test_the_own_digit_photos_are_committed_one_per_digit():
    # Notebook 05, section 6 reads them offline (Colab fetches the same files from the repository).
    from PIL import Image

    folder = ROOT / "images" / "digits"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.png")) == [
        f"{d}/{d}.png" for d in range(10)]
    for path in folder.glob("*/*.png"):
        with Image.open(path) as photo:
            assert photo.mode == "RGB" and photo.size == (160, 160)  # a colour photo, larger than 28x28


def test_the_tensorboard_cell_is_skipped_by_nbval_and_nbclient():
    cells = json.loads((ROOT / "notebooks" / "06_fashion_mnist.ipynb").read_text())["cells"]
    tensorboard = [c for c in cells if "%tensorboard" in "".join(c["source"])]
    assert len(tensorboard) == 1 and {"nbval-skip", "skip-execution"} <= set(tensorboard[0]["metadata"]["tags"])


# --------------------------------------------------------------------------- stored outputs


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_small_calm_and_anonymous(notebook):
    nb = nbformat.read(notebook, as_version=4)
    assert run_notebooks.problems(nb) == []  # no error output, no stderr stream, no path of a machine
    for i, cell in enumerate(nb.cells):
        streams = [o for o in cell.get("outputs", []) if o["output_type"] == "stream"]
        assert len(streams) <= 2, f"cell {i} stores {len(streams)} stream outputs"
        assert not any("\r" in o["text"] for o in streams), f"cell {i} stores progress-bar frames"
        assert "raises-exception" not in cell.metadata.get("tags", []), f"cell {i}: Run all would stop here"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_code_cell_is_stored_executed(notebook):
    nb = nbformat.read(notebook, as_version=4)
    never = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.execution_count is None]
    assert never == [], f"code cells never executed: {never}"


def test_notebooks_ask_colab_for_a_gpu_runtime():
    for notebook in NOTEBOOKS:
        meta = json.loads(notebook.read_text())["metadata"]
        assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType") == "T4", notebook.name


def test_taught_bars_go_to_stdout_and_the_engines_to_stderr_outside_jupyter(monkeypatch, capsys):
    # A notebook frames stderr as an error; `python train.py > log.txt` should keep bars out of the log.
    import types

    import torch
    import torch.nn.functional as F

    import engine
    import utils

    net, batches = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)), [(torch.ones(3, 1, 2, 2),
                                                                                    torch.zeros(3, dtype=torch.long))]
    utils.train_epoch(net, batches, F.cross_entropy, torch.optim.SGD(net.parameters(), lr=0.1), torch.device("cpu"))
    out, err = capsys.readouterr()
    assert "train: " in out and err == ""  # the taught loop's bar, on stdout
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert engine.progress_stream() is sys.stderr
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert engine.progress_stream() is sys.stdout


def test_progress_bars_are_reduced_to_their_final_frame():
    frames = "epoch 1/2:   0%|  | 0/3\repoch 1/2:  67%|# | 2/3\repoch 1/2: 100%|##| 3/3\nepoch 1: loss 0.5\n"
    assert run_notebooks.final_frames(frames) == "epoch 1/2: 100%|##| 3/3\nepoch 1: loss 0.5\n"


@pytest.mark.parametrize("verbose", [True, False])
def test_fit_shows_one_line_per_epoch_or_nothing(data_root, capsys, verbose):
    import torch
    import torch.nn.functional as F

    import model
    import utils

    loaders = utils.get_loaders("mnist", 100, torch.device("cpu"), limit=300, val_size=100, loader="fast")
    net = model.MLP()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    utils.fit(net, loaders.train, loaders.val, F.nll_loss, optimizer, 2, torch.device("cpu"), verbose=verbose)
    captured = capsys.readouterr()
    shown = run_notebooks.final_frames(captured.out + captured.err)  # what a notebook stores, bars included
    lines = [line for line in shown.splitlines() if line.strip()]
    assert [line.split(":")[0] for line in lines] == (["epoch  1", "epoch  2"] if verbose else [])


# --------------------------------------------------------------------------- the repository URL


def test_every_setup_cell_and_badge_names_the_same_repository():
    found = set_course_repo.settings(ROOT)
    setups = {value for _, kind, value in found if kind == "setup"}
    badges = {value for _, kind, value in found if kind == "badge"}
    readme = {value for _, kind, value in found if kind == "readme"}
    assert len(setups) == len(badges) == len(readme) == 1, found
    owner, name, branch = re.match(r"`https://github\.com/([^/]+)/([^`]+)` \(branch `([^`]+)`\)", readme.pop()).groups()
    expected = set_course_repo.urls(owner, name, branch)
    assert setups == {f'COURSE_REPO = "{expected["raw"]}"'} and badges == {expected["badge"]}
    assert sum(kind == "setup" for _, kind, _ in found) == len(NOTEBOOKS)
    for notebook in NOTEBOOKS:  # each notebook's badge opens that notebook
        assert f"{expected['badge']}{notebook.name})" in notebook.read_text()


def test_set_course_repo_rewrites_every_place_and_nothing_else(tmp_path):
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    assert set_course_repo.main(["https://github.com/someone/my-course", "--branch", "dev", "--root",
                                 str(tmp_path)]) == 0
    values = {value for _, _, value in set_course_repo.settings(tmp_path)}
    assert values == {'COURSE_REPO = "https://raw.githubusercontent.com/someone/my-course/dev"',
                      "https://colab.research.google.com/github/someone/my-course/blob/dev/notebooks/",
                      "`https://github.com/someone/my-course` (branch `dev`)"}
    for path in [*sorted((tmp_path / "notebooks").glob("*.ipynb")), tmp_path / "README.md"]:
        original = (ROOT / path.relative_to(tmp_path)).read_text()
        changed = path.read_text().replace("someone/my-course/blob/dev", "pytorch-course/pytorch-course/blob/main")
        changed = changed.replace("someone/my-course/dev", "pytorch-course/pytorch-course/main")
        changed = changed.replace("`https://github.com/someone/my-course` (branch `dev`)",
                                  "`https://github.com/pytorch-course/pytorch-course` (branch `main`)")
        assert changed == original, path.name


def test_set_course_repo_rejects_a_url_that_is_not_a_github_repository(capsys):
    with pytest.raises(SystemExit):
        set_course_repo.main(["https://gitlab.com/a/b"])
    assert "expected a GitHub repository URL like https://github.com/OWNER/REPO" in capsys.readouterr().err
