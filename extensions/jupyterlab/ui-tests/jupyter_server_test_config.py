"""The Jupyter server of the UI tests: Galata's test settings (no token, no XSRF check,
port 8888, a temporary root), run as root on these machines, with the embedded lake."""

import os
from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821
c.ServerApp.allow_root = True  # noqa: F821
# The lake the server extension (and the notebooks' kernels) use.
os.environ.setdefault(
    "ESCAPE_PORTAL_LAKE_DIR",
    str(Path(__file__).resolve().parents[3] / ".cache" / "test-lake"),
)
# The watches the kernels start and the panel lists: a store of this test run only.
os.environ.setdefault(
    "ESCAPE_PORTAL_WATCHES",
    str(Path(__import__("tempfile").mkdtemp(prefix="escape-portal-ui-")) / "watches.sqlite"),
)
