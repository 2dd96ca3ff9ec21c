"""Rucio's conveyor writes a job's request updates in one transaction, not one per file.

Rucio's submitter marks each request of a job SUBMITTING in a transaction of its own
(``mark_submitting``), and its poller records each finished request's state in one more
(``update_transfer_state``), then touches the job (``touch_transfer``): 20,000 write
transactions for a 10,000-file make-available. On SQLite each one queues for the one
write lock, behind the finisher's and the judge's (a waiting writer sleeps in steps of up
to 100 ms); on PostgreSQL each is a round trip and a commit. (Production spreads this
work over many conveyor instances on a database made for concurrent writers.)

:func:`batch_conveyor_writes` makes both loops write a job in one transaction: while a
batch is open in a thread, those Rucio functions join its session instead of opening
their own. Nothing else changes:

- if any write of the batch fails (Rucio logs it and goes on to the next file, which on
  PostgreSQL would then fail too, the transaction being aborted), an update logs an
  error, or the commit fails, the batch is rolled back and the job is handled again
  Rucio's own way, one transaction per file, as if the batch had not been tried: the
  transfertool's job outcomes are on disk and a re-poll reads them again; a submission
  is marked again from QUEUED.
- the submitter marks the job's requests in one batch, then runs Rucio's own
  ``submit_transfer``, which skips the marking already done and submits the job.

Applied in the conveyor's process, before its threads start.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

_THREAD = threading.local()


class BatchFailed(Exception):
    """A write of an open batch failed, although Rucio only logged it."""


def _batch_session() -> Any:
    """The session of the batch open in this thread, or None."""
    return getattr(_THREAD, "session", None)


def _already_marked() -> set[str]:
    marked: set[str] | None = getattr(_THREAD, "marked", None)
    return marked if marked is not None else set()


@contextlib.contextmanager
def batch() -> Iterator[None]:
    """One transaction for the conveyor's writes made in this thread inside the block.

    Commits at the end; rolls back and raises :class:`BatchFailed` if a write failed
    (even one that Rucio caught and logged, see :func:`failed`) or the commit did; rolls
    back and re-raises any other exception.
    """
    from rucio.db.sqla.session import get_session

    if _batch_session() is not None:  # nested: the outer batch decides
        yield
        return
    scoped = get_session()
    session = scoped()
    session.begin()
    _THREAD.session = session
    _THREAD.failed = False
    try:
        try:
            yield
        finally:
            _THREAD.session = None
        if _THREAD.failed:
            raise BatchFailed("a write of the batch failed")
        try:
            session.commit()
        except Exception as error:
            raise BatchFailed(f"the batch's commit failed: {error}") from error
    except BaseException:
        with contextlib.suppress(Exception):
            session.rollback()
        raise
    finally:
        scoped.remove()


def failed() -> None:
    """Record that a write of the batch open in this thread failed."""
    if _batch_session() is not None:
        _THREAD.failed = True


def _joining(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a Rucio ``@transactional_session`` one) in this thread's open batch.

    A failure inside a batch marks it failed; the exception goes on as before.
    """

    @functools.wraps(function)
    def joined(*args: Any, session: Any = None, **kwargs: Any) -> Any:
        batched = _batch_session()
        if session is not None or batched is None:
            return function(*args, session=session, **kwargs)
        try:
            return function(*args, session=batched, **kwargs)
        except BaseException:
            failed()
            raise

    joined._escape_portal_joins_batches = True  # type: ignore[attr-defined]
    return joined


def _flagging(logger: Callable[..., Any]) -> Callable[..., Any]:
    """A Rucio logger function that also marks the open batch failed on an error it logs.

    ``update_transfer_state`` catches every exception and logs it (CRITICAL): in a batch
    that means a statement may have failed, or half a request's updates were made, in
    the shared transaction. (A failed ``touch_transfer`` or ``mark_transfer_lost``
    raises, which :func:`_joining` sees.)
    """

    def log(level: int, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if level >= logging.ERROR:
            failed()
        return logger(level, msg, *args, **kwargs)

    return log


def _update_transfer_state(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def update(*args: Any, logger: Callable[..., Any] = logging.log, **kwargs: Any) -> Any:
        if _batch_session() is not None:
            logger = _flagging(logger)
        return function(*args, logger=logger, **kwargs)

    return update


def _poll_in_one_transaction(poll: Callable[..., Any]) -> Callable[..., Any]:
    """Rucio's ``_poll_transfers``, its updates in one batch; Rucio's own way on failure."""

    @functools.wraps(poll)
    def batched(
        transfertool_obj: Any,
        transfers_by_eid: Any,
        transfer_stats_manager: Any,
        timeout: int | None = None,
        logger: Callable[..., Any] = logging.log,
    ) -> None:
        try:
            with batch():
                poll(transfertool_obj, transfers_by_eid, transfer_stats_manager, timeout, logger)
        except BatchFailed as error:
            logger(logging.WARNING, "Updating the polled requests one by one (%s)", error)
            poll(transfertool_obj, transfers_by_eid, transfer_stats_manager, timeout, logger)

    return batched


def _submit_marking_in_one_transaction(
    submit: Callable[..., Any], transfer_core: Any
) -> Callable[..., Any]:
    """Rucio's ``submit_transfer``, the job's requests marked SUBMITTING in one batch.

    ``transfer_core`` is ``rucio.core.transfer``, whose ``mark_submitting`` both use.
    """

    @functools.wraps(submit)
    def batched(
        transfertool_obj: Any,
        transfers: Any,
        job_params: dict[str, str],
        timeout: int | None = None,
        logger: Callable[..., Any] = logging.log,
    ) -> None:
        marked: set[str] = set()
        if len(transfers) > 1:
            try:
                with batch():
                    for transfer in transfers:
                        transfer_core.mark_submitting(
                            transfer, external_host=transfertool_obj.external_host, logger=logger
                        )
                marked = {transfer.rws.request_id for transfer in transfers}
            except Exception as error:  # rolled back: Rucio marks them one by one
                logger(logging.WARNING, "Marking the job's requests one by one (%s)", error)
        _THREAD.marked = marked
        try:
            submit(transfertool_obj, transfers, job_params, timeout, logger)
        finally:
            _THREAD.marked = None

    return batched


def _mark_submitting(function: Callable[..., Any]) -> Callable[..., Any]:
    """Rucio's ``mark_submitting``, skipping a request this thread's batch already marked."""

    @functools.wraps(function)
    def mark(transfer: Any, *args: Any, **kwargs: Any) -> Any:
        if transfer.rws.request_id in _already_marked():
            return None
        return function(transfer, *args, **kwargs)

    return mark


def batch_conveyor_writes() -> None:
    """Make Rucio's submitter and pollers write each job in one transaction (idempotent)."""
    from rucio.core import transfer as transfer_core
    from rucio.daemons.conveyor import poller, submitter

    if getattr(transfer_core.touch_transfer, "_escape_portal_joins_batches", False):
        return
    for name in ("touch_transfer", "mark_transfer_lost"):
        setattr(transfer_core, name, _joining(getattr(transfer_core, name)))
    transfer_core.update_transfer_state = _update_transfer_state(
        _joining(transfer_core.update_transfer_state)
    )
    transfer_core.mark_submitting = _mark_submitting(_joining(transfer_core.mark_submitting))
    poller._poll_transfers = _poll_in_one_transaction(poller._poll_transfers)
    # The submitter imported submit_transfer by name from the conveyor's common module.
    submitter.submit_transfer = _submit_marking_in_one_transaction(
        submitter.submit_transfer, transfer_core
    )
