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
import configparser
import datetime as dt
import itertools
import time
from pathlib import Path
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

    embedded, lake = running_lake(args.data_dir)
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
        started_wall = dt.datetime.now(dt.UTC).replace(tzinfo=None)
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
    _print_stages(embedded.paths.rucio_cfg, request.rule.id, started_wall)
    return 0 if progress.state == "available" else 1


#: The conveyor's stages of a request, as Rucio's request history records them.
STAGES = (
    ("queued (rule)", "created_at"),
    ("submitted", "submitted_at"),
    ("copied", "transferred_at"),
    ("finished (archived)", "updated_at"),
)


def _print_stages(rucio_cfg: Path, rule_id: str, started: dt.datetime) -> None:
    """When the rule's requests passed each of the conveyor's stages (seconds from start).

    Read from Rucio's ``requests_history`` (the finisher archives a request there: its
    ``updated_at`` is the time the finisher handled it), so that a slow stage shows.
    """
    import sqlalchemy

    config = configparser.ConfigParser(interpolation=None)
    config.read(rucio_cfg)
    engine = sqlalchemy.create_engine(config["database"]["default"])
    columns = ", ".join(column for _, column in STAGES)
    with engine.connect() as connection:
        rows = connection.execute(
            sqlalchemy.text(f"SELECT {columns} FROM requests_history WHERE rule_id = :rule"),
            {"rule": rule_id.replace("-", "")},
        ).all()
    engine.dispose()
    if not rows:
        print("(no archived requests for the rule: stages not shown)")
        return
    print(f"stages of the {len(rows)} archived requests (s from the make-available call):")
    print(f"  {'stage':22} {'first':>7} {'10 %':>7} {'50 %':>7} {'90 %':>7} {'last':>7}")
    for label, index in zip((label for label, _ in STAGES), range(len(STAGES)), strict=True):
        times = sorted((_when(row[index]) - started).total_seconds() for row in rows if row[index])
        if not times:
            continue
        picks = [times[0], *(times[int(q * (len(times) - 1))] for q in (0.1, 0.5, 0.9)), times[-1]]
        print(f"  {label:22} " + " ".join(f"{t:7.1f}" for t in picks))


def _when(value: Any) -> dt.datetime:
    """A timestamp of the catalogue (a ``datetime``, or SQLite's text)."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


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
