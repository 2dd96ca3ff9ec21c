"""The conveyor's one-transaction jobs: committed once, or rolled back and done Rucio's way.

The database is faked here (a session recording begin/commit/rollback); the batches run
for real in every lake test that copies files (the conveyor's process applies them).
"""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest

from escape_portal.embedded import conveyor_batches
from escape_portal.embedded.conveyor_batches import (
    BatchFailed,
    _joining,
    _mark_submitting,
    _poll_in_one_transaction,
    _submit_marking_in_one_transaction,
    _update_transfer_state,
    batch,
)


class FakeSession:
    def __init__(self, journal: list[str], fail_commit: bool = False) -> None:
        self.journal = journal
        self.fail_commit = fail_commit

    def begin(self) -> None:
        self.journal.append("begin")

    def commit(self) -> None:
        if self.fail_commit:
            raise RuntimeError("database is locked")
        self.journal.append("commit")

    def rollback(self) -> None:
        self.journal.append("rollback")


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    entries: list[str] = []
    state = {"fail_commit": False}

    class Scoped:
        def __call__(self) -> FakeSession:
            return FakeSession(entries, state["fail_commit"])

        def remove(self) -> None:
            entries.append("remove")

    import rucio.db.sqla.session

    monkeypatch.setattr(rucio.db.sqla.session, "get_session", Scoped)
    monkeypatch.setattr(conveyor_batches, "_FAIL_COMMIT", state, raising=False)
    return entries


def _write(name: str, journal: list[str]) -> Any:
    """A Rucio-like transactional function: records the session it ran in."""

    def write(key: str, *, session: Any = None, logger: Any = logging.log) -> int:
        journal.append(f"{name}({key}) in {'batch' if session is not None else 'own'}")
        if key == "bad":
            raise RuntimeError("constraint failed")
        return 1

    return _joining(write)


def test_writes_in_a_batch_share_its_transaction_and_commit_once(journal: list[str]) -> None:
    write = _write("touch", journal)
    with batch():
        write("a")
        write("b")
    write("c")
    assert journal == [
        *("begin", "touch(a) in batch", "touch(b) in batch", "commit", "remove"),
        "touch(c) in own",
    ]


def test_a_write_that_raises_rolls_the_batch_back(journal: list[str]) -> None:
    write = _write("touch", journal)
    with pytest.raises(RuntimeError), batch():
        write("a")
        write("bad")
    assert journal[-2:] == ["rollback", "remove"]
    assert "commit" not in journal


def test_an_error_rucio_only_logs_fails_the_batch(journal: list[str]) -> None:
    def update(key: str, *, session: Any = None, logger: Any = logging.log) -> int:
        logger(logging.CRITICAL, "Exception")  # what update_transfer_state does on any error
        return 0

    wrapped = _update_transfer_state(_joining(update))
    with pytest.raises(BatchFailed), batch():
        wrapped("a", logger=lambda *args, **kwargs: None)
    assert "commit" not in journal and "rollback" in journal


def test_a_failed_commit_fails_the_batch(journal: list[str]) -> None:
    conveyor_batches._FAIL_COMMIT["fail_commit"] = True  # type: ignore[attr-defined]
    with pytest.raises(BatchFailed, match="database is locked"), batch():
        pass
    assert journal == ["begin", "rollback", "remove"]


def test_a_failed_poll_batch_is_polled_again_rucios_way(journal: list[str]) -> None:
    update = _update_transfer_state(_joining(_fail_on_first_batch(journal)))
    polls: list[str] = []

    def poll(tool: Any, by_eid: Any, stats: Any, timeout: Any, logger: Any) -> None:
        polls.append("poll")
        for request in by_eid:
            update(request, logger=logger)

    logged: list[str] = []
    _poll_in_one_transaction(poll)(
        None, ["r1", "r2"], None, None, lambda lvl, msg, *a: logged.append(msg)
    )
    assert polls == ["poll", "poll"]
    assert journal[:3] == ["begin", "update(r1) in batch", "update(r2) in batch"]
    assert "rollback" in journal and "commit" not in journal
    assert journal[-2:] == ["update(r1) in own", "update(r2) in own"]
    assert any("one by one" in message for message in logged)


def _fail_on_first_batch(journal: list[str]) -> Any:
    def update(key: str, *, session: Any = None, logger: Any = logging.log) -> int:
        journal.append(f"update({key}) in {'batch' if session is not None else 'own'}")
        if session is not None and key == "r2":
            logger(logging.CRITICAL, "Exception")
        return 1

    return update


class Transfer:
    def __init__(self, request_id: str) -> None:
        self.rws = type("RWS", (), {"request_id": request_id})()


def test_a_jobs_requests_are_marked_in_one_batch_and_not_again(journal: list[str]) -> None:
    transfer_core = types.SimpleNamespace()  # rucio.core.transfer's mark_submitting

    def mark(transfer: Any, *, external_host: str, logger: Any, session: Any = None) -> None:
        journal.append(f"mark({transfer.rws.request_id}) in {'batch' if session else 'own'}")

    transfer_core.mark_submitting = _mark_submitting(_joining(mark))
    submitted: list[str] = []

    def submit(tool: Any, transfers: Any, params: Any, timeout: Any, logger: Any) -> None:
        for transfer in transfers:  # Rucio's own submit_transfer marks each first
            transfer_core.mark_submitting(transfer, external_host="posix", logger=logger)
        submitted.extend(t.rws.request_id for t in transfers)

    tool = type("Tool", (), {"external_host": "posix"})()
    jobs = [Transfer("q1"), Transfer("q2")]
    _submit_marking_in_one_transaction(submit, transfer_core)(tool, jobs, {}, None, logging.log)
    assert journal == ["begin", "mark(q1) in batch", "mark(q2) in batch", "commit", "remove"]
    assert submitted == ["q1", "q2"]
    # Outside a batch nothing is skipped.
    transfer_core.mark_submitting(Transfer("q1"), external_host="posix", logger=logging.log)
    assert journal[-1] == "mark(q1) in own"
