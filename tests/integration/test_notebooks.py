"""The notebooks in notebooks/ run top to bottom against the embedded lake, committed clean.

Each notebook is executed with nbclient in a kernel of this test's Python (a kernel spec
written into a temporary ``JUPYTER_PATH``), with ``MPLBACKEND=Agg``, the environment
pointing at the test lake and a temporary download cache. A cell error fails the test.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.lake

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {
    "00-tour.ipynb",
    "01-image-analysis.ipynb",
    "02-event-list-analysis.ipynb",
    "03-vo-workflow.ipynb",
    "04-widgets.ipynb",
    "05-dask-analysis.ipynb",
}
KERNEL_NAME = "escape-portal-test-python"
#: Seconds any one cell may take (the transfers of the sample data take a few seconds).
CELL_TIMEOUT = 120
#: Seconds a whole notebook may take, kernel start included.
NOTEBOOK_TIMEOUT = 180


def test_every_notebook_is_here() -> None:
    assert {p.name for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["nbformat"] == 4
    nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=4))
    for index, cell in enumerate(raw["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name}: cell {index} has outputs"
        assert cell.get("execution_count") is None, f"{path.name}: cell {index} has a count"
        assert "execution" not in cell.get("metadata", {}), f"{path.name}: cell {index} timings"


@pytest.fixture()
def kernel_env(
    lake_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A kernel spec running this Python, and the kernel's environment (the test lake)."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "ESCAPE Portal tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    env = dict(lake_env)
    env.update(
        MPLBACKEND="Agg",
        ESCAPE_PORTAL_CACHE=str(tmp_path / "cache"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    for key in ("IVOA_REGISTRY", "JUPYTER_PATH"):
        env.pop(key, None)
    return env


def _run(path: Path, env: dict[str, str]) -> Any:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute(env=env)
    return notebook


def _text(notebook: Any) -> str:
    """Everything the code cells printed."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path: Path, kernel_env: dict[str, str]) -> None:
    started = time.monotonic()
    notebook = _run(path, kernel_env)
    print(f"{path.name}: {time.monotonic() - started:.1f} s")
    text = _text(notebook)
    assert "Traceback" not in text
    if path.name == "00-tour.ipynb":
        # The make-available step moved data, or said plainly why nothing needed copying.
        assert re.search(r"rule \w+ (created|reused) -> \S+", text) or (
            "nothing needs copying" in text
        ), text
    if path.name == "04-widgets.ipynb":
        # The widgets were displayed (as widget views) and the request reached available.
        views = [
            output
            for cell in notebook.cells
            if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
        ]
        assert len(views) == 3, views
        assert text.strip().endswith("available"), text
