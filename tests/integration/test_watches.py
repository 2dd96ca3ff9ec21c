"""Watches through the real lake: files attached to a watched dataset, noticed through
Rucio's notifications on ActiveMQ, processed on Dask exactly once, across a restart.

The watched dataset is a fresh one (three FITS images at PIC-DISK) with a second rule at
DESY-DISK, as a dataset kept at two sites is: when a file is attached, Rucio's judge
queues its copy to DESY and hermes announces it, naming the dataset. Polling is set to
ten minutes, so what the watch finds within the test it found through the broker.
"""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from escape_portal import watches
from escape_portal.config import LakeConfig
from escape_portal.embedded.fresh import place_file
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake

pytest.importorskip("distributed")

#: Seconds a file may take from its attachment to its result (judge, hermes, the run).
ARRIVAL = 90
#: No timer-driven listing within a test: what is found comes through the broker.
NO_POLLING = {"poll_interval": 600.0, "fallback_interval": 600.0}


def _image(value: float) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.full((8, 8), value, dtype=np.float32)).writeto(buffer)
    return buffer.getvalue()


def _attach(lake: Lake, dataset: DID, name: str, value: float) -> DID:
    """A new file at PIC-DISK attached to ``dataset``, as an upload leaves it."""
    did = DID(dataset.scope, name)
    place_file(lake, did, _image(value), ("PIC-DISK",))
    lake.client.attach_dids(dataset.scope, dataset.name, [did.as_rucio()])
    return did


class Recorder:
    """The watch's function: the image's mean, and a line in a log per run.

    Runs on the in-process Dask workers; the log is how the test counts runs across
    watchers (a file, so a restarted watch appends to the same record).
    """

    def __init__(self, log: Path) -> None:
        self.log = str(log)

    def __call__(self, file: Any) -> float:
        if "bad" in file.did.name:
            with open(self.log, "a", encoding="utf-8") as out:
                out.write(f"{file.did} failed\n")
            raise ValueError("this file cannot be analysed")
        with file.fits() as hdus:
            mean = float(hdus[0].data.mean())
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"{file.did} {mean}\n")
        return mean


def _runs(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture()
def alice(researcher_config: LakeConfig) -> Lake:
    """Researcher alice (OIDC), nothing mounted: workers read with her storage tokens."""
    return Lake(researcher_config)


@pytest.fixture()
def watched(fresh_dataset: DID, operator_lake: Lake) -> DID:
    """The fresh dataset, also kept at DESY-DISK (attachments then make transfers)."""
    operator_lake.client.add_replication_rule([fresh_dataset.as_rucio()], 1, "DESY-DISK")
    return fresh_dataset


def test_new_files_are_processed_once_through_the_broker_and_across_a_restart(
    watched: DID, operator_lake: Lake, alice: Lake, tmp_path: Path
) -> None:
    store = tmp_path / "watches.sqlite"
    log = tmp_path / "runs.log"
    failures: list[tuple[str, str]] = []
    results: dict[str, float] = {}
    got_result = threading.Event()

    def on_result(did: str, value: float) -> None:
        results[did] = value
        got_result.set()

    watch = watches.watch(
        alice,
        watched,
        Recorder(log),
        name="means",
        store=store,
        max_attempts=2,
        retry_backoff=0.2,
        on_result=on_result,
        on_failure=lambda did, error: failures.append((did, error)),
        **NO_POLLING,
    )
    try:
        assert watch.following_notifications, watch.warnings
        counts = watch.store.counts("means")
        assert counts == {"existing": 3}, counts  # there before the watch: not processed
        stamp = watched.name.rsplit("-", 1)[1]
        first = [_attach(operator_lake, watched, f"w-{stamp}-{i}.fits", 10 + i) for i in (1, 2)]
        _wait_for(lambda: len(results) == 2, ARRIVAL, "the two new files' results")
        assert results == {str(first[0]): 11.0, str(first[1]): 12.0}
        assert watch.found["notification"] == 2, (watch.scans, watch.found)
        assert watch.scans["poll"] == 0
    finally:
        watch.stop()
    assert not watch.running
    [info] = watches.list_watches(store)
    assert info.state == "stopped" and info.counts == {"existing": 3, "done": 2}, info

    # While no watcher runs, two more files arrive, one of which the function rejects.
    later = [
        _attach(operator_lake, watched, f"w-{stamp}-3.fits", 13),
        _attach(operator_lake, watched, f"w-{stamp}-bad.fits", 0),
    ]
    resumed = watches.resume(
        "means",
        lake=alice,
        store=store,
        max_attempts=2,
        retry_backoff=0.2,
        on_failure=lambda did, error: failures.append((did, error)),
        **NO_POLLING,
    )
    try:
        _wait_for(lambda: resumed.found["start"] == 2, 30, "the files found on restart")
        assert resumed.wait_idle(ARRIVAL), resumed.store.counts("means")
    finally:
        resumed.stop()

    counts = resumed.store.counts("means")
    assert counts == {"existing": 3, "done": 3, "failed": 1}, counts
    runs = _runs(log)
    done = [line.split()[0] for line in runs if not line.endswith("failed")]
    assert sorted(done) == sorted(str(d) for d in [*first, later[0]]), runs  # each once
    assert runs.count(f"{later[1]} failed") == 2  # tried max_attempts times
    [(did, error)] = failures
    assert did == str(later[1]) and "cannot be analysed" in error
    [bad] = resumed.files("failed")
    assert bad.attempts == 2 and "ValueError" in (bad.error or "")


def test_one_watch_runs_in_one_process_and_the_cli_lists_and_stops_it(
    watched: DID, operator_lake: Lake, tmp_path: Path, lake_env: dict[str, str]
) -> None:
    store = tmp_path / "watches.sqlite"
    watch = watches.watch(
        operator_lake, watched, Recorder(tmp_path / "runs.log"), store=store, **NO_POLLING
    )
    try:
        with pytest.raises(InvalidRequest, match="already running"):
            watches.resume(watch.name, lake=operator_lake, store=store)
        other = DID(watched.scope, watched.name + "-other")
        with pytest.raises(InvalidRequest, match="already follows"):
            watches.watch(
                operator_lake, other, Recorder(tmp_path / "x"), name=watch.name, store=store
            )

        env = {**os.environ, **lake_env, "ESCAPE_PORTAL_WATCHES": str(store)}
        cli = [sys.executable, "-m", "escape_portal.cli"]
        listed = subprocess.run(
            [*cli, "--json", "watch", "list"], env=env, capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0, listed.stderr
        [row] = json.loads(listed.stdout)
        assert row["name"] == watch.name and row["state"] == "running"
        assert row["target"] == str(watched) and row["counts"] == {"existing": 3}

        stopped = subprocess.run(
            [*cli, "watch", "stop", watch.name], env=env, capture_output=True, text=True, timeout=60
        )
        assert stopped.returncode == 0, stopped.stderr
        assert watch.wait(10), "the watch did not stop when the CLI asked"
        missing = subprocess.run(
            [*cli, "watch", "stop", "no-such-watch"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode != 0
        assert "no watch named 'no-such-watch'" in missing.stderr
        assert "Traceback" not in missing.stderr
    finally:
        watch.stop()


def _notebook(path: Path) -> Path:
    """A notebook with papermill's ``parameters`` cell that writes a file's mean."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell('did = ""\nurl = ""\ninstance = None\nout = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import fsspec\n"
            "from astropy.io import fits\n"
            "with fsspec.open(url, 'rb', instance=instance) as f, fits.open(f) as hdus:\n"
            "    mean = float(hdus[0].data.mean())\n"
            "with open(out, 'a') as log:\n"
            "    log.write(f'{did} {mean}\\n')\n"
            "mean"
        ),
    ]
    nbformat.write(nb, path)
    return path


def test_a_notebook_runs_once_per_new_file_with_the_file_as_parameter(
    watched: DID,
    operator_lake: Lake,
    alice: Lake,
    tmp_path: Path,
    lake_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in lake_env.items():  # the notebooks' kernels find the test lake
        monkeypatch.setenv(key, value)
    log = tmp_path / "means.log"
    notebook = _notebook(tmp_path / "mean.ipynb")
    watch = watches.watch(
        alice,
        watched,
        notebook=notebook,
        parameters={"out": str(log)},
        store=tmp_path / "watches.sqlite",
        **NO_POLLING,
    )
    try:
        stamp = watched.name.rsplit("-", 1)[1]
        did = _attach(operator_lake, watched, f"nb-{stamp}.fits", 7)
        _wait_for(lambda: watch.store.counts(watch.name).get("done") == 1, ARRIVAL, "the run")
    finally:
        watch.stop()
    assert _runs(log) == [f"{did} 7.0"]
    [record] = watch.files("done")
    saved = Path(ast.literal_eval(record.result or "''"))
    assert saved == tmp_path / "mean-runs" / f"mean-{did.name}.ipynb" and saved.is_file()
    assert not list(saved.parent.glob("*.part.ipynb"))
