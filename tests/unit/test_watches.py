"""Watches without a lake: what is watched, which events are hints, the store's memory."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from escape_portal import watches
from escape_portal.errors import InvalidDID, InvalidRequest, NotFound
from escape_portal.lake import DID
from escape_portal.notifications import Notification


def test_targets_parse_datasets_scopes_and_filters() -> None:
    assert watches.Target.parse("cta:crab") == watches.Target("cta", "crab")
    assert watches.Target.parse(DID("cta", "crab")) == watches.Target("cta", "crab")
    scoped = watches.Target.parse("cta", ["run>100", "target=Crab"])
    assert scoped == watches.Target("cta", None, ("run>100", "target=Crab"))
    assert str(scoped) == "cta [run>100] [target=Crab]"
    with pytest.raises(InvalidRequest, match="filters select files of a scope"):
        watches.Target.parse("cta:crab", ["run>100"])
    with pytest.raises(InvalidDID):
        watches.Target.parse("not a scope")


def _event(kind: str, **payload: str) -> Notification:
    return Notification(kind, payload)


def test_which_rucio_events_are_hints() -> None:
    dataset = watches.Target("user.alice", "nightly")
    transfer = _event(
        "transfer-queued",
        scope="user.alice",
        name="f.fits",
        datasetScope="user.alice",
        dataset="nightly",
    )
    assert dataset.concerns(transfer, frozenset())
    assert dataset.concerns(_event("rule_ok", scope="user.alice", name="nightly"), frozenset())
    assert not dataset.concerns(
        _event("transfer-queued", scope="user.alice", datasetScope="user.alice", dataset="other"),
        frozenset(),
    )
    container = watches.Target("cta", "all-nights")
    inside = _event("transfer-done", datasetScope="cta", dataset="night-3")
    assert container.concerns(inside, frozenset({"cta:night-3"}))
    assert not container.concerns(inside, frozenset({"cta:night-1"}))
    assert container.concerns(_event("register_cnt", scope="cta", name="all-nights"), frozenset())
    scope = watches.Target("cta")
    assert scope.concerns(_event("create_dts", scope="cta", name="night-4"), frozenset())
    assert scope.concerns(_event("transfer-done", scope="lofar", datasetScope="cta"), frozenset())
    assert not scope.concerns(_event("create_dts", scope="lofar", name="x"), frozenset())


@pytest.fixture()
def store(tmp_path: Path) -> watches.Store:
    s = watches.Store(tmp_path / "state" / "watches.sqlite")
    s.define("w", {"instance": "i", "target_text": "s:d", "function": "m.f"}, b"pickled")
    return s


def test_the_store_is_private_and_each_file_is_recorded_once(store: watches.Store) -> None:
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.add("w", ["s:a", "s:b"], "existing") == 2
    assert store.add("w", ["s:a", "s:b", "s:c"], "new") == 1  # a and b were seen already
    assert store.counts("w") == {"existing": 2, "new": 1}
    assert store.due("w", 10) == ["s:c"]
    assert store.due("w", 10) == []  # running now: not handed out twice
    store.finish("w", "s:c", "42")
    assert store.counts("w") == {"existing": 2, "done": 1}
    assert store.add("w", ["s:c"], "new") == 0  # done stays done


def test_failures_are_retried_with_backoff_then_reported(store: watches.Store) -> None:
    store.add("w", ["s:x"], "new")
    assert store.due("w", 10) == ["s:x"]
    assert store.fail("w", "s:x", "boom", max_attempts=2, backoff=60) == "retry"
    assert store.due("w", 10) == []  # not due before its backoff
    retry_at = store.next_retry("w")
    assert retry_at is not None and retry_at > time.time() + 50
    store._db.execute("UPDATE files SET next_try = 0")  # the backoff has passed
    assert store.due("w", 10) == ["s:x"]
    assert store.fail("w", "s:x", "boom again", max_attempts=2, backoff=60) == "failed"
    [record] = store.records("w", "failed")
    assert record.attempts == 2 and record.error == "boom again"
    assert store.last_error("w") == "s:x: boom again"


def test_a_run_interrupted_by_a_crash_runs_again(store: watches.Store) -> None:
    store.add("w", ["s:a", "s:b"], "new")
    assert store.due("w", 1) == ["s:a"]
    store.finish("w", "s:a", None)
    assert store.due("w", 1) == ["s:b"]  # the process dies here
    reopened = watches.Store(store.path)
    assert reopened.interrupted("w") == 1
    assert reopened.due("w", 10) == ["s:b"]
    assert reopened.counts("w") == {"done": 1, "running": 1}


def test_a_file_handed_back_unrun_keeps_its_attempts(store: watches.Store) -> None:
    store.add("w", ["s:a", "s:b"], "new")
    assert store.due("w", 10) == ["s:a", "s:b"]
    store.requeue("w", "s:a")  # its task was cancelled: only that file goes back
    assert store.counts("w") == {"new": 1, "running": 1}
    assert store.due("w", 10) == ["s:a"]
    [a] = [r for r in store.records("w") if r.did == "s:a"]
    assert a.attempts == 1


def test_stop_remove_and_unknown_watches(store: watches.Store) -> None:
    assert store.info("w").state == "idle"
    assert watches.stop("w", store).state == "stopped"
    assert store.stop_requested("w")
    store.define("w", {"instance": "i", "target_text": "s:d", "function": "m.f"}, b"p")
    assert not store.stop_requested("w")  # starting it again clears the stop
    with pytest.raises(NotFound, match="no watch named 'nope'"):
        watches.stop("nope", store)
    store.add("w", ["s:a"], "new")
    watches.remove("w", store)
    assert store.names() == [] and store.counts("w") == {}


def test_a_watch_needs_one_thing_to_run_and_a_usable_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="either a function or a notebook"):
        watches.watch(None, "s:d", store=tmp_path / "w.sqlite")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no notebook"):
        watches.watch(None, "s:d", notebook=tmp_path / "none.ipynb", store=tmp_path / "w.sqlite")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="cannot name a watch"):
        watches.watch(None, "s:d", print, name="no spaces", store=tmp_path / "w.sqlite")  # type: ignore[arg-type]


def test_notebook_runs_are_saved_beside_the_notebook(tmp_path: Path) -> None:
    notebook = tmp_path / "spectrum.ipynb"
    notebook.write_text("{}")
    task = watches.Notebook.of(notebook, bins=10)
    assert task.parameters == (("bins", 10),)
    assert (
        task.output_for(DID("cta", "run 1/x.fits"))
        == tmp_path / "spectrum-runs" / "spectrum-run_1_x.fits.ipynb"
    )
    elsewhere = watches.Notebook.of(notebook, tmp_path / "out")
    assert elsewhere.output_for(DID("cta", "a.fits")).parent == tmp_path / "out"
