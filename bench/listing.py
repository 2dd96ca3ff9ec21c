"""Benchmark: listing the files of 100 / 10,000 / 100,000-file datasets, ours vs the Rucio CLI.

For each dataset it measures, each in a fresh process so that peak memory (max RSS) is
the work's own:

- ``escape_portal.lake``: time to the first page (100 files), time to a full listing;
- ``rucio list-files`` (Rucio's own CLI, its legacy command): time to the first row of
  its table and to the end;

and prints the ratios (Rucio CLI / ours: above 1 means we are faster). It also times
``lake down`` + ``lake up`` of an already seeded embedded lake.

Run against the running embedded lake (``escape-portal lake up``)::

    .venv/bin/python bench/listing.py [--data-dir DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATASETS = ("scale:files-100", "scale:files-10k", "scale:files-100k")

OURS = r"""
import json, resource, sys
from escape_portal.lake import Lake
lake = Lake.from_instance()
page = Lake.page(lake.files(sys.argv[1]), size=100)
print("first page", len(page.items), flush=True)
n = sum(1 for _ in lake.files(sys.argv[1]))  # the full listing, streamed
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"files": n, "rss_mib": rss}))
"""


def _timed(argv: list[str], env: dict[str, str], first_marker: str) -> dict[str, float]:
    """Run ``argv``; seconds from spawn to the first line starting with ``first_marker``
    and to the end, and the process's max RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    first = None
    for line in proc.stdout:
        if first is None and line.startswith(first_marker):
            first = time.perf_counter() - started
    _, status, usage = os.wait4(proc.pid, 0)
    total = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({status})")
    return {"first": first or total, "all": total, "rss_mib": usage.ru_maxrss / 1024}


def _ours(did: str, env: dict[str, str]) -> dict[str, float]:
    return _timed([sys.executable, "-c", OURS, did], env, "first page")


def _rucio_cli(did: str, env: dict[str, str]) -> dict[str, float]:
    """``rucio list-files DID`` (Rucio's legacy CLI command): first table row and end."""
    argv = [sys.executable, "-m", "rucio.cli.bin_legacy.rucio", "list-files", did]
    return _timed(argv, env, "| ")


def main() -> int:
    """Run the benchmark and print a table of times, memory and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="embedded lake data directory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-up", action="store_true", help="do not time lake down/up")
    args = parser.parse_args()

    from escape_portal.embedded.instance import operator_instance
    from escape_portal.embedded.layout import DEMO_PASSWORD, DEMO_USERNAME
    from escape_portal.embedded.supervisor import EmbeddedLake

    lake = EmbeddedLake(args.data_dir)
    if not args.skip_up:
        lake.down()
        t0 = time.perf_counter()
        lake.up()
        print(f"lake up (seeded, all processes stopped before): {time.perf_counter() - t0:.1f} s")
    elif not lake.status().running:
        lake.up()
    env = dict(os.environ, ESCAPE_PORTAL_LAKE_DIR=str(lake.paths.root))
    config = operator_instance(env)
    assert config is not None
    with tempfile.TemporaryDirectory() as tmp:
        # Rucio's CLI reads its connection from a rucio.cfg; the embedded lake's published
        # demo credentials go into a throw-away one.
        cfg = Path(tmp) / "rucio.cfg"
        cfg.write_text(
            "[client]\n"
            f"rucio_host = {config.rucio_host}\nauth_host = {config.rucio_host}\n"
            f"auth_type = userpass\naccount = {config.account}\n"
            f"username = {DEMO_USERNAME}\npassword = {DEMO_PASSWORD}\n"
            f"request_retries = 0\n"
        )
        cli_env = dict(env, RUCIO_CONFIG=str(cfg))
        header = (
            f"{'dataset':18} {'first page ours':>16} {'rucio CLI':>10} {'ratio':>6}   "
            f"{'full ours':>10} {'rucio CLI':>10} {'ratio':>6}   {'MiB ours':>9} {'CLI':>6}"
        )
        print(header)
        print("-" * len(header))
        for did in DATASETS:
            ours = [_ours(did, env) for _ in range(args.repeat)]
            peer = [_rucio_cli(did, cli_env) for _ in range(args.repeat)]

            def med(rows: list[dict[str, float]], key: str) -> float:
                return statistics.median(r[key] for r in rows)

            o1, oa, om = med(ours, "first"), med(ours, "all"), med(ours, "rss_mib")
            p1, pa, pm = med(peer, "first"), med(peer, "all"), med(peer, "rss_mib")
            print(
                f"{did:18} {o1:15.3f}s {p1:9.3f}s {p1 / o1:6.1f}   {oa:9.2f}s {pa:9.2f}s "
                f"{pa / oa:6.1f}   {om:9.0f} {pm:6.0f}"
            )
    print("ratio = Rucio CLI time / ours (above 1: ours is faster); both timed from process")
    print("spawn, so both include Python start-up and authentication.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
