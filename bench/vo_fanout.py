"""Benchmark: one search over 12 VO services (and one that hangs), ours vs a pyvo loop.

Starts 13 local ObsCore TAP services on 127.0.0.1 (``tests/vo_services.py``): 12 answer
20 rows each after latencies spread from 50 ms to 3 s, one accepts and never answers.
It times:

- ``escape_portal.discovery.search`` (all services at once, ``--timeout`` deadline);
- the plain way: a sequential loop of ``pyvo.dal.TAPService.run_sync`` over the same
  services, each with a ``requests`` session whose requests time out after
  ``--timeout`` seconds (without that, the hanging service would never let it end);

with and without the hanging service, and prints wall times, the ratio (loop / ours:
above 1 means ours is faster) and rows per second.

    .venv/bin/python bench/vo_fanout.py [--timeout 5] [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from escape_portal.discovery import Query, Service, search  # noqa: E402
from tests.vo_services import FakeFleet  # noqa: E402

ROWS = 20
QUERY = Query(pos=(83.63, 22.01), radius=1.0, maxrec=100)


def _pyvo_loop(services: list[Service], timeout: float) -> tuple[float, int, int]:
    """Sequential pyvo: seconds, rows, services that answered."""
    import requests
    from pyvo.dal import TAPService

    started = time.perf_counter()
    rows = answered = 0
    for service in services:
        session = requests.Session()
        session.request = partial(session.request, timeout=timeout)  # type: ignore[method-assign]
        try:
            result: Any = TAPService(service.url, session=session).run_sync(
                QUERY.to_adql(), maxrec=QUERY.maxrec
            )
            rows += len(result)
            answered += 1
        except Exception:  # the hanging one: a read timeout
            pass
        finally:
            session.close()
    return time.perf_counter() - started, rows, answered


def _ours(services: list[Service], timeout: float) -> tuple[float, int, int]:
    started = time.perf_counter()
    result = search(services, QUERY, timeout=timeout)
    seconds = time.perf_counter() - started
    return seconds, len(result.table), sum(s.answered for s in result.statuses)


def main() -> int:
    """Run the benchmark and print wall times, ratios and rows per second."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    latencies = [0.05 * (3.0 / 0.05) ** (i / 11) for i in range(12)]
    with FakeFleet() as fleet:
        good = [
            Service(f"svc{i:02d}", "tap", fleet.add("good", rows=ROWS, latency=lat).url)
            for i, lat in enumerate(latencies)
        ]
        hang = Service("hangs", "tap", fleet.add("hang").url)
        print(
            f"12 ObsCore TAP services on loopback, latencies {latencies[0] * 1000:.0f} ms .. "
            f"{latencies[-1]:.1f} s (sum {sum(latencies):.1f} s), {ROWS} rows each; "
            f"timeout {args.timeout:g} s"
        )
        header = (
            f"{'case':22} {'ours':>8} {'pyvo loop':>10} {'ratio':>6}   "
            f"{'rows/s ours':>12} {'loop':>8}   {'answered':>9}"
        )
        print(header)
        print("-" * len(header))
        for label, services in (("12 services", good), ("12 + 1 that hangs", [*good, hang])):
            ours = [_ours(services, args.timeout) for _ in range(args.repeat)]
            loop = [_pyvo_loop(services, args.timeout) for _ in range(args.repeat)]
            o = statistics.median(r[0] for r in ours)
            p = statistics.median(r[0] for r in loop)
            orows, prows = ours[0][1], loop[0][1]
            print(
                f"{label:22} {o:7.2f}s {p:9.2f}s {p / o:6.1f}   {orows / o:12.0f} "
                f"{prows / p:8.0f}   {ours[0][2]:>4}/{loop[0][2]:<4}"
            )
    print("ratio = pyvo loop time / ours (above 1: ours is faster); rows/s = rows found per")
    print("second of wall time; answered = services that answered, ours/loop.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
