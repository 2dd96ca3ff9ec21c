"""Benchmark: make a 10,000-file dataset available near compute on the embedded lake.

Measures the time to the rule (placement + rule created), the time until every file is
available at the destination (real copies by Rucio's conveyor and our POSIX
transfertool), and how many requests the portal sent to Rucio meanwhile — to show that
following progress costs a few requests per poll, not one per file.

The compute site is one whose storage does not yet hold the dataset, so each run copies.
Run with the embedded lake up::

    .venv/bin/python bench/make_available.py [--data-dir DIR] [--dataset scale:files-10k]
        [--follow notifications|polling] [--files N --offset K]

``--follow`` chooses how progress is followed: Rucio's notifications from the lake's
broker (default when the instance has one) or polling alone, to compare the requests
each costs. ``--files N`` makes a dataset of N files of ``--dataset`` (from its K-th file,
``--offset``) and makes that available, to iterate on a smaller size.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from running_lake import running_lake

from escape_portal.embedded.sites import SITES
from escape_portal.events import ProgressEvent, wait_for
from escape_portal.lake import Lake
from escape_portal.lake.auth import PortalClient
from escape_portal.placement import make_available
from escape_portal.topology import lake_topology


def main() -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--dataset", default="scale:files-10k")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--follow", choices=("notifications", "polling"), default="notifications")
    parser.add_argument("--files", type=int, help="a dataset of this many of its files instead")
    parser.add_argument("--offset", type=int, default=0, help="first file of --files")
    parser.add_argument("--site", help="the compute site (default: the first not holding it)")
    args = parser.parse_args()

    _, lake = running_lake(args.data_dir)
    if args.files:
        args.dataset = _subset(lake, args.dataset, args.files, args.offset)
    held = {r.rse for r in lake.dataset_replicas(args.dataset) if r.available_files}
    site = next((s for s in SITES if s.rse not in held and args.site in (None, s.name)), None)
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
        topology = lake_topology(lake, site.name)
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


def _subset(lake: Lake, dataset: str, files: int, offset: int) -> str:
    """A dataset of ``files`` files of ``dataset`` from its ``offset``-th (made once)."""
    scope, name = dataset.split(":", 1)
    subset = f"{name}-part-{offset}-{files}"
    known = {d.name for d in lake.dids(scope, subset, type="dataset")}
    if subset not in known:
        chosen = list(itertools.islice(lake.files(dataset), offset, offset + files))
        lake.client.add_dataset(scope, subset)
        for start in range(0, len(chosen), 1000):
            lake.client.attach_dids(
                scope,
                subset,
                [{"scope": f.scope, "name": f.name} for f in chosen[start : start + 1000]],
            )
    return f"{scope}:{subset}"


if __name__ == "__main__":
    raise SystemExit(main())
