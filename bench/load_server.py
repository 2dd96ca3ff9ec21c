"""Benchmark: many researchers browsing at once through the server extension (locust).

Starts the embedded lake (if needed) and one Jupyter server with the portal's extension,
then runs `locust <https://locust.io>`_ headless (``bench/locustfile.py``: scopes,
datasets, first pages, replica status, details, searches, with 0.2 to 1 s think time) with
``--users`` concurrent researchers for ``--duration`` seconds, and prints, per request
kind and in all: requests, failures, p50/p95/p99 latency, and the server's CPU use
(the server process and the lake's Rucio server, % of one core). Goal: p99 < 1 s at 20
clients on 2 cores, no failures.

locust runs from its own venv (``.cache/load-venv``: ``python3 -m venv .cache/load-venv &&
.cache/load-venv/bin/pip install locust==2.47.0``), so the load generator shares nothing
with the server it measures; it still shares the machine's cores, which the figures say.

    .venv/bin/python bench/load_server.py [--data-dir DIR] [--users 20] [--duration 60]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from running_lake import running_lake
from server_api import TOKEN, Server

ROOT = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _rucio_server_pids(data_dir: Path) -> list[int]:
    """The lake's Rucio server processes (gunicorn master and workers)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "gunicorn" in cmd and "escape_portal.embedded.wsgi" in cmd:
            found.append(int(proc.name))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--locust", default=str(ROOT / ".cache" / "load-venv" / "bin" / "locust"))
    args = parser.parse_args()
    if not Path(args.locust).exists():
        print(f"locust not found at {args.locust}: see this script's docstring", file=sys.stderr)
        return 2
    embedded, _ = running_lake(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="escape-load-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "ESCAPE_"))}
        env.update(
            ESCAPE_PORTAL_LAKE_DIR=str(embedded.paths.root),
            ESCAPE_PORTAL_CONFIG=str(work / "no-instances.toml"),
            HOME=str(work),
        )
        config = (
            "c.ServerApp.jpserver_extensions = {'escape_portal': True}\n"
            "c.EscapePortal.instance_name = 'embedded'\n"
            f"c.EscapePortal.cache_dir = {str(work / 'cache')!r}\n"
        )
        server = Server(ROOT / ".venv" / "bin" / "jupyter-server", config, env, work)
        try:
            server.get("/escape-portal/api/scopes")  # warm: authenticated, topology read
            rucio = _rucio_server_pids(embedded.paths.root)
            before = {pid: _cpu_seconds(pid) for pid in [server.proc.pid, *rucio]}
            started = time.monotonic()
            subprocess.run(
                [
                    args.locust,
                    "-f",
                    str(ROOT / "bench" / "locustfile.py"),
                    "--headless",
                    "--users",
                    str(args.users),
                    "--spawn-rate",
                    str(args.users),
                    "--run-time",
                    f"{args.duration}s",
                    "--host",
                    server.base,
                    "--csv",
                    str(work / "load"),
                    "--only-summary",
                    "--loglevel",
                    "WARNING",
                ],
                env={**env, "ESCAPE_LOAD_TOKEN": TOKEN},
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=args.duration + 120,
            )
            wall = time.monotonic() - started
            cpu = {
                pid: _cpu_seconds(pid) - seconds
                for pid, seconds in before.items()
                if Path(f"/proc/{pid}").exists()
            }
        finally:
            server.stop()
        rows = list(csv.DictReader((work / "load_stats.csv").open()))
    load = os.getloadavg()[0]
    print(
        f"# .venv/bin/python bench/load_server.py --users {args.users} "
        f"--duration {args.duration}   (2 cores; load average at the end {load:.1f})"
    )
    print(f"{'request':<10} {'count':>7} {'fail':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(
            f"{row['Name']:<10} {row['Request Count']:>7} {row['Failure Count']:>5} "
            f"{row['50%']:>8} {row['95%']:>8} {row['99%']:>8}"
        )
    server_cpu = cpu.get(server.proc.pid, float("nan")) / wall * 100
    rucio_cpu = sum(v for pid, v in cpu.items() if pid != server.proc.pid) / wall * 100
    print(
        f"\nCPU over the run, % of one core: the Jupyter server {server_cpu:.0f} %, "
        f"the lake's Rucio server {rucio_cpu:.0f} % (2 cores in all, locust included)."
    )
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if total:
        p99 = float(total["99%"])
        print(f"goal p99 < 1000 ms at {args.users} clients: {'met' if p99 < 1000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
