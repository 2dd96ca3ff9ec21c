"""Rucio's daemons for the embedded lake, in two processes.

Runs Rucio's own judge (evaluator, injector, repairer, cleaner), conveyor (submitter,
poller, finisher), reaper, undertaker, abacus (collection replicas, account and storage
usage) and, when a broker is configured, hermes (notifications) loops as threads, and
registers the transfertools with the conveyor: ``gfal`` (davs between the XRootD storage
elements, :mod:`escape_portal.embedded.grid_transfertool`, with its own poller) and
``posix`` (``file://``). The conveyor's submitter and pollers run in a process of their
own (``--group conveyor``), the rest, the finisher included, in another (``--group
core``): one Python process uses one core at most, and during a large make-available the
submitter, the pollers (and the posix copies) and the finisher each need a good part of
one, while the judge, abacus and hermes are nearly idle.

An idle lake should cost almost nothing, yet a rule should go REPLICATING -> OK within
seconds of a request. So the daemons a researcher waits for sleep ``IDLE`` seconds
between loops, and one thread per process asks the catalogue every ``WATCH`` seconds
whether its daemons have work (the conveyor's: a request; the core's: a request to
finish, a DID event, a rule to inject, a notification, a counter to update; one indexed
``LIMIT 1`` query per table); while there is, it wakes them at once
(their stop events are replaced by :class:`WakeableStop`, which Rucio's loop waits on;
both pollers, posix and gfal, share the poller module's event).
The judge-cleaner and the reaper (expired rules, deletion) sleep ``EXPIRY`` seconds,
other housekeeping daemons ``SLOW``.
The submitter and the pollers write each job in one transaction
(:mod:`escape_portal.embedded.conveyor_batches`). While transfers are queued, abacus's
collection-replica counters are brought up to date every ``COUNTERS_WHILE_BUSY`` seconds
rather than at every wake: each pass rewrites the dataset's counters, which are read
only once the copies end.
Started by the supervisor as ``python -m escape_portal.embedded.daemons --group GROUP``
with ``RUCIO_CONFIG`` set; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Seconds between loops of the daemons a researcher waits for, while they have no work.
IDLE = 60
#: Seconds between two questions "is there work?" to the catalogue.
WATCH = 1.0
#: Seconds between loops of housekeeping daemons (repair, DID expiry, storage usage).
SLOW = 120
#: Seconds between loops of the judge-cleaner and the reaper: an expired rule is gone,
#: and its replicas deleted, within a minute or so.
EXPIRY = 30
#: Seconds between two passes of abacus's collection-replica counters while woken.
COUNTERS_WHILE_BUSY = 10.0
#: The daemons of the conveyor's own process; every other daemon is in ``core``.
CONVEYOR = ("conveyor-submitter", "conveyor-poller", "conveyor-poller-gfal")
GROUPS = ("all", "core", "conveyor")
#: The states of a request that Rucio's finisher handles (its ``_fetch_requests``).
TO_FINISH = (
    *("DONE", "FAILED", "LOST", "SUBMISSION_FAILED"),
    *("NO_SOURCES", "ONLY_TAPE_SOURCES", "MISMATCH_SCHEME"),
)


class WakeableStop(threading.Event):
    """A daemon's stop event whose timed waits also end when work arrives (:meth:`wake`).

    ``is_set`` stays true only once the daemon is asked to stop, so Rucio's loop runs one
    more iteration when woken, and ends when stopped.
    """

    _work = threading.Condition()
    _generation = 0

    def set(self) -> None:
        """Ask the daemon to stop (wakes it)."""
        super().set()
        with WakeableStop._work:
            WakeableStop._work.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stopped, woken by :meth:`wake`, or ``timeout`` passed; whether stopped."""
        with WakeableStop._work:
            seen = WakeableStop._generation
            WakeableStop._work.wait_for(
                lambda: self.is_set() or WakeableStop._generation != seen, timeout
            )
        return self.is_set()

    @classmethod
    def wake(cls) -> None:
        """End the current wait of every daemon that sleeps on a :class:`WakeableStop`."""
        with cls._work:
            cls._generation += 1
            cls._work.notify_all()


class ThrottledStop(WakeableStop):
    """A :class:`WakeableStop` that a wake ends at most once every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        super().__init__()
        self.every = every
        self._woken = 0.0

    def wait(self, timeout: float | None = None) -> bool:  # noqa: D102
        def done() -> bool:
            if self.is_set():
                return True
            due = WakeableStop._generation != seen and time.monotonic() - self._woken >= self.every
            return due

        with WakeableStop._work:
            seen = WakeableStop._generation
            WakeableStop._work.wait_for(done, timeout)
        self._woken = time.monotonic()
        return self.is_set()


def _urgent(module: Any, attribute: str = "graceful_stop", every: float = 0.0) -> Any:
    """Make ``module``'s daemon wakeable (before its thread starts); return the module."""
    setattr(module, attribute, ThrottledStop(every) if every else WakeableStop())
    return module


def work_pending(group: str = "all") -> bool:
    """Whether the daemons of ``group`` that a researcher waits for have something to do.

    The conveyor's work is a request; the others' a request the copy of which ended (for
    the finisher), a DID event, a rule to inject, a notification or a counter to update.
    Each process asks only for its own, so that the core's daemons are not woken every
    second while transfers queue or are being copied.
    """
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import RequestState, RequestType, RuleState
    from rucio.db.sqla.session import get_session
    from sqlalchemy import select

    conveyor = [select(models.Request.id).limit(1)]
    core = [
        select(models.Request.id)  # in REQUESTS_TYP_STA_UPD_IDX (request_type, state, ...)
        .where(models.Request.request_type.in_(list(RequestType)))
        .where(models.Request.state.in_([RequestState[state] for state in TO_FINISH]))
        .limit(1),
        select(models.UpdatedDID.id).limit(1),
        select(models.ReplicationRule.id)
        .where(models.ReplicationRule.state == RuleState.INJECT)
        .limit(1),
        select(models.Message.id).limit(1),
        select(models.UpdatedCollectionReplica.id).limit(1),
        select(models.UpdatedAccountCounter.id).limit(1),
    ]
    queries = {"conveyor": conveyor, "core": core}.get(group, conveyor + core)
    session = get_session()
    try:
        return any(session.execute(query).first() is not None for query in queries)
    finally:
        session.remove()


def _waker(stopping: threading.Event, group: str = "all") -> None:
    """Wake the urgent daemons while ``group`` has work; one cheap question per ``WATCH`` s."""
    while not stopping.wait(WATCH):
        try:
            if work_pending(group):
                WakeableStop.wake()
        except Exception:  # a locked database, a restart: ask again next time
            logging.debug("escape-portal: asking for pending work failed", exc_info=True)


def _daemons() -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    from rucio.core.topology import ExpiringObjectCache, Topology
    from rucio.daemons.abacus import account, collection_replica, rse
    from rucio.daemons.conveyor import finisher, poller, submitter
    from rucio.daemons.judge import cleaner, evaluator, injector, repairer
    from rucio.daemons.reaper import reaper
    from rucio.daemons.undertaker import undertaker

    from escape_portal.embedded import grid_transfertool
    from escape_portal.embedded.transfertool import EXTERNAL_NAME, register

    register()
    # davs between XRootD storage elements goes through gfal2 (as FTS); file:// stays posix.
    grid_transfertool.register()
    for module in (evaluator, injector, account):
        _urgent(module)
    _urgent(collection_replica, every=COUNTERS_WHILE_BUSY)
    # One event per module: the posix and the gfal pollers both wake on it.
    for module in (submitter, poller, finisher):
        _urgent(module, "GRACEFUL_STOP")

    def topology() -> Any:
        return ExpiringObjectCache(ttl=30, new_obj_fnc=lambda: Topology())

    pause_one_cycle(reaper.REGION)

    return [
        *_hermes(),
        (
            "judge-evaluator",
            lambda: evaluator.re_evaluator(sleep_time=IDLE, did_limit=1000),
            evaluator.stop,
        ),
        ("judge-injector", lambda: injector.rule_injector(sleep_time=IDLE), injector.stop),
        ("judge-repairer", lambda: repairer.rule_repairer(sleep_time=SLOW), repairer.stop),
        ("judge-cleaner", lambda: cleaner.rule_cleaner(sleep_time=EXPIRY), cleaner.stop),
        (
            "conveyor-submitter",
            lambda: submitter.submitter(
                sleep_time=IDLE,
                partition_wait_time=0,
                bulk=1000,
                transfertools=[grid_transfertool.EXTERNAL_NAME, EXTERNAL_NAME],
                cached_topology=topology(),
            ),
            submitter.stop,
        ),
        (
            "conveyor-poller",
            lambda: poller.poller(
                sleep_time=IDLE,
                older_than=0,
                partition_wait_time=0,
                transfertool=EXTERNAL_NAME,
                db_bulk=1000,
                fts_bulk=1000,
                cached_topology=topology(),
            ),
            poller.stop,
        ),
        (
            "conveyor-poller-gfal",
            lambda: poller.poller(
                sleep_time=IDLE,
                older_than=0,
                partition_wait_time=0,
                transfertool=grid_transfertool.EXTERNAL_NAME,
                filter_transfertool=grid_transfertool.EXTERNAL_NAME,
                db_bulk=1000,
                fts_bulk=1000,
                cached_topology=topology(),
            ),
            poller.stop,
        ),
        (
            "conveyor-finisher",
            lambda: finisher.finisher(
                sleep_time=IDLE,
                partition_wait_time=0,
                db_bulk=1000,
                # One thread: the finisher counts a rule's locks under SELECT ... FOR
                # UPDATE NOWAIT. Two threads on one rule: on PostgreSQL the second fails
                # and its requests wait Rucio's ten minutes; on SQLite, which ignores
                # FOR UPDATE, counts are lost (the rule stays REPLICATING, every lock OK).
                total_threads=1,
                cached_topology=topology(),
            ),
            finisher.stop,
        ),
        (
            "reaper",
            lambda: reaper.reaper(
                rses=[], include_rses=None, exclude_rses=None, greedy=True, sleep_time=EXPIRY
            ),
            reaper.stop,
        ),
        ("undertaker", lambda: undertaker.undertaker(sleep_time=SLOW), undertaker.stop),
        # Counters: dataset replica summaries, account usage (quotas) and storage usage.
        (
            "abacus-collection-replica",
            lambda: collection_replica.collection_replica_update(sleep_time=IDLE, limit=1000),
            collection_replica.stop,
        ),
        ("abacus-account", lambda: account.account_update(sleep_time=IDLE), account.stop),
        ("abacus-rse", lambda: rse.rse_update(sleep_time=SLOW), rse.stop),
    ]


def pause_one_cycle(region: Any, cycle: float = EXPIRY) -> None:
    """Make the reaper's pause of a storage element with nothing to delete last one cycle.

    Rucio's reaper skips, "until next cycle", a storage element where it found nothing to
    delete, by a cached mark it reads back with a 120 s expiry, tuned for production's
    reaper cycles. With the lake's ``EXPIRY`` cycle the mark outlived four cycles, and
    the replicas of a rule that expired just after an empty pass stayed for 2.5 min.
    """
    get = region.get

    def get_pause(key: str, expiration_time: float | None = None, **kwargs: Any) -> Any:
        if str(key).startswith("pause_deletion_") and expiration_time:
            expiration_time = min(expiration_time, max(1, int(cycle) - 1))
        return get(key, expiration_time=expiration_time, **kwargs)

    region.get = get_pause


def _hermes() -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """Hermes, delivering Rucio's notifications to the broker, if ``rucio.cfg`` names one."""
    from rucio.common.config import config_get_list

    if "activemq" not in config_get_list(
        "hermes", "services_list", raise_exception=False, default=[], check_config_table=False
    ):
        return []
    from rucio.daemons.hermes import hermes

    _urgent(hermes)
    return [("hermes", lambda: hermes.hermes(bulk=1000, sleep_time=IDLE), hermes.stop)]


def _named(name: str, target: Callable[[], None]) -> Callable[[], None]:
    """``target``, run in a thread that the OS (``top -H``, ``/proc``) shows as ``name``."""

    def run() -> None:
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None)
            libc.prctl(15, name[:15].encode(), 0, 0, 0)  # PR_SET_NAME: 15 bytes at most
        target()

    return run


def forget_interrupted_polls() -> None:
    """Let the pollers poll again at once what a killed daemons process was polling.

    Rucio's poller marks the requests it polls (``last_processed_by``, its executable's
    name, and the time) and skips them for ten minutes (``get_and_mark_next``'s
    ``processed_at_delay``). A daemons process killed during a poll (which waits for its
    running job) left its requests marked: after the restart, under the same name, the
    new poller skipped them and the rule finished ten minutes late. No poll can be in
    progress when this process starts (the pollers are its own), so the marks go.
    """
    from rucio.db.sqla import models
    from rucio.db.sqla.constants import RequestState
    from rucio.db.sqla.session import get_session
    from sqlalchemy import update

    session = get_session()
    try:
        session.execute(
            update(models.Request)
            .where(models.Request.state == RequestState.SUBMITTED)
            .values(last_processed_by=None, last_processed_at=None)
        )
        session.commit()
    finally:
        session.remove()


def in_group(name: str, group: str) -> bool:
    """Whether the daemon ``name`` runs in the process of ``group``."""
    return group == "all" or (name in CONVEYOR) == (group == "conveyor")


def main(argv: list[str] | None = None) -> int:
    """Run the daemons of one group until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m escape_portal.embedded.daemons")
    parser.add_argument("--group", choices=GROUPS, default="all")
    group = parser.parse_args(argv).group
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(threadName)s %(message)s"
    )
    from escape_portal.embedded.conveyor_batches import batch_conveyor_writes
    from escape_portal.embedded.rucio_cache import reconnect_to_memcached, remember_rse_columns
    from escape_portal.embedded.sqlite_compat import (
        cap_or_chains,
        immediate_reaper_marking,
        narrow_replica_lookups,
        normal_sync,
        temporary_table_statistics,
    )

    reconnect_to_memcached()  # before Rucio's modules make their cache regions
    remember_rse_columns()
    batch_conveyor_writes()
    immediate_reaper_marking()  # before the reaper imports it
    cap_or_chains()
    normal_sync()  # before the first connection
    narrow_replica_lookups()
    temporary_table_statistics()
    daemons = [daemon for daemon in _daemons() if in_group(daemon[0], group)]
    if any(name.startswith("conveyor-poller") for name, _, _ in daemons):
        forget_interrupted_polls()  # before the pollers start
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = []
    for name, target, _ in daemons:
        thread = threading.Thread(target=_named(name, target), name=name, daemon=True)
        thread.start()
        threads.append(thread)
    waker = threading.Thread(
        target=_named("waker", lambda: _waker(stopping, group)), name="waker", daemon=True
    )
    waker.start()
    logging.info("escape-portal: %d Rucio daemons running (%s)", len(threads), group)
    while not stopping.wait(1.0):
        dead = [t.name for t in threads if not t.is_alive()]
        if dead:
            logging.error("escape-portal: daemon(s) stopped unexpectedly: %s", ", ".join(dead))
            stopping.set()
    for _, _, stopper in daemons:
        stopper()
    for thread in threads:
        thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
