"""Rucio's daemons for the embedded lake, in one process.

Runs Rucio's own judge (evaluator, injector, repairer, cleaner), conveyor (submitter,
poller, finisher), reaper, undertaker, abacus (collection replicas, account and storage
usage) and, when a broker is configured, hermes (notifications) loops as threads, with
short sleeps so that a rule goes REPLICATING -> OK within seconds, and registers the
transfertools with the conveyor: ``gfal`` (davs between the XRootD storage elements,
:mod:`escape_portal.embedded.grid_transfertool`) and ``posix`` (``file://``).
Started by the supervisor as ``python -m escape_portal.embedded.daemons`` with
``RUCIO_CONFIG`` set; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

#: Seconds between loops of the daemons a researcher waits for.
FAST = 1
#: Seconds between loops of housekeeping daemons (expiry, repair, deletion).
SLOW = 10


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

    def topology() -> Any:
        return ExpiringObjectCache(ttl=30, new_obj_fnc=lambda: Topology())

    return [
        *_hermes(),
        (
            "judge-evaluator",
            lambda: evaluator.re_evaluator(sleep_time=FAST, did_limit=1000),
            evaluator.stop,
        ),
        ("judge-injector", lambda: injector.rule_injector(sleep_time=FAST), injector.stop),
        ("judge-repairer", lambda: repairer.rule_repairer(sleep_time=SLOW), repairer.stop),
        ("judge-cleaner", lambda: cleaner.rule_cleaner(sleep_time=SLOW), cleaner.stop),
        (
            "conveyor-submitter",
            lambda: submitter.submitter(
                sleep_time=FAST,
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
                sleep_time=FAST,
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
                sleep_time=FAST,
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
                sleep_time=FAST, partition_wait_time=0, db_bulk=1000, cached_topology=topology()
            ),
            finisher.stop,
        ),
        (
            "reaper",
            lambda: reaper.reaper(
                rses=[], include_rses=None, exclude_rses=None, greedy=True, sleep_time=SLOW
            ),
            reaper.stop,
        ),
        ("undertaker", lambda: undertaker.undertaker(sleep_time=SLOW), undertaker.stop),
        # Counters: dataset replica summaries, account usage (quotas) and storage usage.
        (
            "abacus-collection-replica",
            lambda: collection_replica.collection_replica_update(sleep_time=FAST, limit=1000),
            collection_replica.stop,
        ),
        ("abacus-account", lambda: account.account_update(sleep_time=FAST * 2), account.stop),
        ("abacus-rse", lambda: rse.rse_update(sleep_time=SLOW), rse.stop),
    ]


def _hermes() -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """Hermes, delivering Rucio's notifications to the broker, if ``rucio.cfg`` names one."""
    from rucio.common.config import config_get_list

    if "activemq" not in config_get_list(
        "hermes", "services_list", raise_exception=False, default=[], check_config_table=False
    ):
        return []
    from rucio.daemons.hermes import hermes

    return [("hermes", lambda: hermes.hermes(bulk=1000, sleep_time=FAST), hermes.stop)]


def main() -> int:
    """Run all daemons until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(threadName)s %(message)s"
    )
    from escape_portal.embedded.sqlite_compat import cap_or_chains, immediate_reaper_marking

    immediate_reaper_marking()  # before the reaper imports it
    cap_or_chains()
    daemons = _daemons()
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threads = []
    for name, target, _ in daemons:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        threads.append(thread)
    logging.info("escape-portal: %d Rucio daemons running", len(threads))
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
