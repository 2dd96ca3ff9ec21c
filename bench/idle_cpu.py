"""Benchmark: what an idle embedded lake costs, per part (CPU % of one core, memory).

Starts the lake of ``--data-dir`` (a fresh temporary one if not given: its first start
seeds 110,000 files), waits ``--settle`` seconds after ``lake up`` returned, then samples
the CPU time (utime + stime in ``/proc/PID/stat``) of every process of each part's
process group — gunicorn's workers, the daemons' threads — over ``--sample`` seconds.
Prints, per part, CPU % of one core and memory (RSS, and PSS, which counts a page shared
by several processes once in all, as a session's memory limit does); for the daemons'
processes (``daemons``, ``conveyor``), per Rucio daemon thread; and whether Rucio's
judge-evaluator still has seeding events to re-evaluate (``updated_dids``), which the
seeding is meant to leave empty. The goal is under 2 % of one core in total within 60 s
of ``lake up``, first start included::

    .venv/bin/python bench/idle_cpu.py [--data-dir DIR] [--settle 60] [--sample 60]

A lake this script starts is stopped at the end; one already running is left running.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from escape_portal.embedded.supervisor import SUPERVISOR, EmbeddedLake

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(path: Path) -> list[str] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    # Fields after the command name, which may hold spaces: state is field 3.
    return text.rsplit(")", 1)[1].split()


def group_members(pgid: int) -> list[int]:
    """Pids of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry / "stat")
            if fields and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


#: The parts whose processes run Rucio's daemons as named threads.
DAEMON_PARTS = ("daemons", "conveyor")


def cpu_seconds(stat: list[str]) -> float:
    """utime + stime of a ``/proc/.../stat`` (fields 14 and 15)."""
    return (int(stat[11]) + int(stat[12])) / TICK


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid``: pages shared with other processes count in part.

    What a memory limit such as Binder's charges once, where RSS would count the pages
    that gunicorn's preloaded workers share with their master once per process.
    """
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def sample_groups(pgids: dict[str, int]) -> dict[str, tuple[float, int, int, int]]:
    """Per part: CPU seconds so far, RSS bytes, the number of processes and PSS bytes."""
    result = {}
    for name, pgid in pgids.items():
        cpu, rss, count, pss = 0.0, 0, 0, 0
        for pid in group_members(pgid):
            fields = _stat(Path(f"/proc/{pid}/stat"))
            if fields:
                cpu += cpu_seconds(fields)
                rss += int(fields[21]) * PAGE
                pss += pss_bytes(pid)
                count += 1
        result[name] = (cpu, rss, count, pss)
    return result


def sample_threads(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of process ``pid`` (the daemons name their threads)."""
    result: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        fields = _stat(task / "stat")
        if fields:
            name = (task / "comm").read_text().strip()
            result[name] = result.get(name, 0.0) + cpu_seconds(fields)
    return result


def pending_rule_events(db: Path) -> int | None:
    """Rows of Rucio's ``updated_dids`` (what the judge-evaluator still has to do)."""
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM updated_dids").fetchone()[0])


def main() -> int:
    """Start (or find) the lake, wait, sample, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="default: a fresh temporary data directory")
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--sample", type=float, default=60.0)
    args = parser.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="idle-lake-")
    lake = EmbeddedLake(data_dir)
    already_running = lake.status().running
    first_start = not lake.paths.seed_marker.exists()
    started = time.monotonic()
    lake.up(progress=lambda m: print(f"  {m}"))
    print(
        f"lake {'already running' if already_running else 'up'} in "
        f"{time.monotonic() - started:.1f} s ({'first start' if first_start else 'restart'}); "
        f"data dir {lake.paths.root}"
    )
    try:
        pending_before = pending_rule_events(lake.paths.db)
        time.sleep(args.settle)
        pgids = {c.name: c.pid for c in lake.status().components if c.pid and c.running}
        threaded = {name: pgids[name] for name in DAEMON_PARTS if name in pgids}
        t0 = time.monotonic()
        before = sample_groups(pgids)
        threads0 = {name: sample_threads(pid) for name, pid in threaded.items()}
        time.sleep(args.sample)
        elapsed = time.monotonic() - t0
        after = sample_groups(pgids)
        threads1 = {name: sample_threads(pid) for name, pid in threaded.items()}
        pending_after = pending_rule_events(lake.paths.db)
    finally:
        if not already_running:
            lake.down()

    print(
        f"\nidle CPU over {elapsed:.0f} s, from {args.settle:.0f} s after 'lake up' (% of one core)"
    )
    print(f"{'part':<20}{'procs':>6}{'CPU %':>8}{'RSS MiB':>10}{'PSS MiB':>10}")
    total_cpu = total_rss = total_pss = 0.0
    for name in (*lake.components, SUPERVISOR):
        if name not in after or name not in before:
            print(f"{name:<20}{'-':>6}{'not running':>18}")
            continue
        cpu = 100 * (after[name][0] - before[name][0]) / elapsed
        rss, pss = after[name][1] / 2**20, after[name][3] / 2**20
        total_cpu += cpu
        total_rss += rss
        total_pss += pss
        print(f"{name:<20}{after[name][2]:>6}{cpu:>8.2f}{rss:>10.0f}{pss:>10.0f}")
    print(f"{'total':<20}{'':>6}{total_cpu:>8.2f}{total_rss:>10.0f}{total_pss:>10.0f}")
    for part, threads in threads1.items():
        print(f"\n{part} process, per thread (% of one core):")
        start = threads0.get(part, {})
        busiest = sorted(threads, key=lambda n: start.get(n, 0.0) - threads[n])
        for name in busiest:
            cpu = 100 * (threads[name] - start.get(name, 0.0)) / elapsed
            print(f"  {name:<16}{cpu:>8.2f}")
    print(
        f"\njudge-evaluator: {pending_before} pending DID events when up returned, "
        f"{pending_after} after the sample"
        + (" (idle)" if pending_after == 0 else " (still re-evaluating)")
    )
    print(f"goal < 2 % of one core in total: {'met' if total_cpu < 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
