"""Benchmark: a dataset's replica status through the server extension, as the panel asks it.

Starts the embedded lake (if needed) and one Jupyter server with the portal's extension
(the lake's default instance: researcher alice over OIDC), then times
``GET /escape-portal/api/dids/{scope}/{name}/replicas`` for datasets of 4, 100 and 10,000
files and a container: the first request (token, topology) and the median of the next
``--repeat``. Goal: <= 50 ms for any dataset of up to 1,000 files.

    .venv/bin/python bench/replica_status.py [--data-dir DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from running_lake import running_lake
from server_api import Server

ROOT = Path(__file__).resolve().parent.parent
DIDS = ("cta:crab-2024.dl3", "scale:files-100", "scale:files-10k", "cta:crab-2024")


def main() -> int:
    """Run the benchmark and print one line per DID."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    embedded, lake = running_lake(args.data_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "ESCAPE_"))}
    env.update(
        ESCAPE_PORTAL_LAKE_DIR=str(embedded.paths.root),
        ESCAPE_PORTAL_CONFIG=str(work / "no-instances.toml"),
        HOME=str(work),
    )
    config = (
        "c.ServerApp.jpserver_extensions = {'escape_portal': True}\n"
        f"c.EscapePortal.cache_dir = {str(work / 'cache')!r}\n"
    )
    server = Server(ROOT / ".venv" / "bin" / "jupyter-server", config, env, work)
    try:
        print(f"{'did':<22} {'files':>7} {'first':>9} {'median':>9}   (ms; replica status)")
        for did in DIDS:
            files = lake.info(did).length
            scope, name = did.split(":")
            path = f"/escape-portal/api/dids/{scope}/{urllib.parse.quote(name, safe='')}/replicas"
            times = []
            for _ in range(args.repeat + 1):
                started = time.perf_counter()
                body = server.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert body["replicas"], body
            print(
                f"{did:<22} {files or 0:>7} {times[0]:>9.0f} {statistics.median(times[1:]):>9.0f}"
            )
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
