"""Benchmark: make a 10,000-file dataset available near compute on the embedded lake.

Measures the time to the rule (placement + rule created), the time until every file is
available at the destination (real copies by Rucio's conveyor and our POSIX
transfertool), and how many requests the portal sent to Rucio meanwhile — to show that
following progress costs a few requests per poll, not one per file.

The compute site is one whose storage does not yet hold the dataset, so each run copies.
Run with the embedded lake up::

    .venv/bin/python bench/make_available.py [--data-dir DIR] [--dataset scale:files-10k]
        [--follow notifications|polling]

``--follow`` chooses how progress is followed: Rucio's notifications from the lake's
broker (default when the instance has one) or polling alone, to compare the requests
each costs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from running_lake import running_lake

from escape_portal.embedded.sites import SITES
from escape_portal.events import ProgressEvent, wait_for
from escape_portal.lake.auth import PortalClient
from escape_portal.placement import make_available
from escape_portal.topology import load_topology


def main() -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--dataset", default="scale:files-10k")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--follow", choices=("notifications", "polling"), default="notifications")
    args = parser.parse_args()

    _, lake = running_lake(args.data_dir)
    held = {r.rse for r in lake.dataset_replicas(args.dataset) if r.available_files}
    site = next((s for s in SITES if s.rse not in held), None)
    if site is None:
        print(f"{args.dataset} is already everywhere; delete some rules first.")
        return 1

    calls = 0
    original = PortalClient._send_request

    def counting(self: PortalClient, *a: Any, **k: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *a, **k)

    PortalClient._send_request = counting  # type: ignore[method-assign]
    try:
        topology = load_topology(
            lake,
            compute_site=site.name,
            cric=lake.config.cric_feed,
            perfsonar=lake.config.network_feed,
        )
        started = time.perf_counter()
        [request] = make_available(lake, topology, [args.dataset], site.name, lifetime=3600)
        to_rule = time.perf_counter() - started
        calls_to_rule = calls
        assert request.rule is not None
        polls = 0

        def count(_: ProgressEvent) -> None:
            nonlocal polls
            polls += 1

        progress = wait_for(
            lake,
            request.rule.id,
            timeout=args.timeout,
            on_progress=count,
            max_interval=5,
            notifications=None if args.follow == "notifications" else False,
        )
        total = time.perf_counter() - started
    finally:
        PortalClient._send_request = original  # type: ignore[method-assign]
    files = progress.files_total
    print(f"dataset {args.dataset}: {files} files, {progress.bytes_total} bytes -> {site.rse}")
    print(f"time to rule (placement + rule):  {to_rule:7.1f} s   ({calls_to_rule} Rucio requests)")
    print(f"time to all available:            {total:7.1f} s   state {progress.state}")
    print(
        f"Rucio requests while following:   {calls - calls_to_rule} ({polls} progress events, "
        f"{args.follow})"
    )
    print(f"requests per file:                {calls / max(1, files):.4f}")
    lake.delete_rule(request.rule.id)
    return 0 if progress.state == "available" else 1


if __name__ == "__main__":
    raise SystemExit(main())
