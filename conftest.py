"""Settings for every pytest run (unit tests and notebooks): data on disk, smoke mode, headless plots, no internet.

At the start of the session both data sets are made present in the data root ($DATA_DIR, or data/
in the course folder), downloaded through torchvision if they are missing. Only then is the
internet closed: no test and no notebook kernel can reach it afterwards.
"""

import os

import pytest

os.environ.setdefault("COURSE_SMOKE", "1")  # notebook kernels started by nbval inherit this
if os.environ.get("DATA_DIR"):  # kernels run in notebooks/: a path relative to here must stay valid
    os.environ["DATA_DIR"] = os.path.abspath(os.path.expanduser(os.environ["DATA_DIR"]))
os.environ.setdefault("MPLBACKEND", "Agg")


def fetch_data() -> None:
    """Download whatever is missing of both data sets; stop the session with one message if that fails."""
    import engine
    import utils

    problems = []
    for name in utils.DATASETS:
        try:
            engine.ensure_downloaded(name)
        except (engine.DataNotFoundError, engine.CorruptDataError) as err:
            problems.append(str(err))
    if problems:
        raise pytest.UsageError("the tests need MNIST and Fashion-MNIST on disk.\n\n" + "\n\n".join(problems))


def close_the_internet() -> None:
    """Send every download to a closed loopback port (the download tests serve their own mirrors)."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ[var] = "http://127.0.0.1:9"
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"


def pytest_sessionstart(session) -> None:
    """Fetch the data with the real network, then close it for the tests."""
    import utils

    fetch_data()
    # Every notebook kernel and subprocess reads the same data root, wherever it runs (even in an
    # empty folder with a downloaded utils.py, whose default data/ would be empty).
    os.environ["DATA_DIR"] = str(utils.data_root())
    close_the_internet()
