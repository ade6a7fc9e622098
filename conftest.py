"""Settings for every pytest run (unit tests and notebooks): smoke mode, headless plots, no internet."""

import os

os.environ.setdefault("COURSE_SMOKE", "1")  # notebook kernels started by nbval inherit this
if os.environ.get("DATA_DIR"):  # kernels run in notebooks/: a path relative to here must stay valid
    os.environ["DATA_DIR"] = os.path.abspath(os.path.expanduser(os.environ["DATA_DIR"]))
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never reach the internet: any download goes to a closed loopback port and fails at
# once (the download tests serve their own mirrors on 127.0.0.1, which bypasses the proxy).
for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
    os.environ[var] = "http://127.0.0.1:9"
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
