"""Benchmark: bytes read from a same-site replica, with and without site-aware placement.

A simulated two-site cluster on this machine: a LocalCluster of two one-thread workers
tagged ``site-PIC`` and ``site-DESY`` (escape_portal.analysis.local_cluster), in this
process, or with ``--processes`` in two worker processes (nannies, TCP on loopback).
``--files`` new FITS files of ``--kib`` KiB are registered, alternately at PIC-DISK and
DESY-DISK only. Researcher alice (OIDC, nothing mounted) reads every file on the cluster
three ways: site-aware strict (the default), site-aware loose (work stealing allowed), and
plain ``client.map`` (no placement). Printed per way: the time, and the fraction of files
and bytes read from a replica at the reading worker's own site (``file://``; the others
go over ``davs``/``root`` with storage tokens).

    .venv/bin/python bench/dask_locality.py [--data-dir DIR] [--files 60] [--kib 256] [--processes]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from running_lake import running_lake

from escape_portal import analysis
from escape_portal.embedded.instance import researcher_instance
from escape_portal.lake import DID, Lake

SITES = {"PIC": "PIC-DISK", "DESY": "DESY-DISK"}


def _image(value: int, kib: int) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.full((kib, 256), value, dtype=np.float32)).writeto(buffer)
    return buffer.getvalue()


def _register(lake: Lake, files: int, kib: int) -> DID:
    """A new dataset of ``files`` images, each at one of the two sites' storage only."""
    stamp = time.time_ns()
    dataset = DID("user.escape", f"dask-locality-{stamp}")
    lake.client.add_dataset(dataset.scope, dataset.name)
    rses = list(SITES.values())
    contents: dict[str, bytes] = {}
    for i in range(files):
        did = DID(dataset.scope, f"{dataset.name}.{i:04d}.fits")
        data = contents[did.name] = _image(i, kib)
        row = {
            "scope": did.scope,
            "name": did.name,
            "bytes": len(data),
            "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        }
        lake.client.add_replicas(rses[i % len(rses)], [row])
    dids = [DID(dataset.scope, name) for name in contents]
    for rep in lake.file_replicas(dids):
        for rse in rep.states:
            path = rep.local_path(rse)
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(contents[rep.name])
    lake.client.attach_dids(dataset.scope, dataset.name, [d.as_rucio() for d in dids])
    return dataset


def _read(file: analysis.LakeFile) -> dict[str, Any]:
    with file.open() as handle:
        size = len(handle.read())
    source = file.source()
    return {"bytes": size, "site": analysis.worker_site(), "read_at": source["site"]}


def _line(way: str, rows: list[dict[str, Any]], seconds: float) -> str:
    local = [r for r in rows if r["read_at"] == r["site"]]
    files = len(local) / len(rows)
    nbytes = sum(r["bytes"] for r in local) / sum(r["bytes"] for r in rows)
    return f"{way:<24} {seconds:7.2f} {files:9.0%} {nbytes:9.0%}"


def main() -> int:
    """Run the benchmark and print one line per way of placing the tasks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--kib", type=int, default=256)
    parser.add_argument(
        "--processes", action="store_true", help="workers in their own processes (nannies)"
    )
    args = parser.parse_args()
    embedded, operator = running_lake(args.data_dir)
    dataset = _register(operator, args.files, args.kib)
    config = researcher_instance({"ESCAPE_PORTAL_LAKE_DIR": str(embedded.paths.root)})
    assert config is not None
    alice = Lake(dataclasses.replace(config, mounted_rse=None, mount_path=None))

    from distributed import Client

    cluster = analysis.local_cluster(tuple(SITES), processes=args.processes)
    client = Client(cluster)
    try:
        client.wait_for_workers(len(SITES))
        kind = "worker processes" if args.processes else "in-process workers"
        print(
            f"{args.files} files of {args.kib} KiB, alternately at {', '.join(SITES.values())}; "
            f"{kind}"
        )
        print(f"{'way':<24} {'seconds':>7} {'files':>9} {'bytes':>9}   (read at own site)")
        files = analysis.lake_files(alice, dataset)
        with analysis.Session(alice, client) as strict:
            _ = strict.to_dask(files[:2], _read).compute()  # warm: tokens, topology
            started = time.perf_counter()
            rows = strict.to_dask(files, _read).compute()
            print(_line("site-aware (strict)", rows, time.perf_counter() - started))
        with analysis.Session(alice, client, strict=False) as loose:
            started = time.perf_counter()
            rows = loose.to_dask(files, _read).compute()
            print(_line("site-aware (loose)", rows, time.perf_counter() - started))
            started = time.perf_counter()
            rows = client.gather(client.map(_read, files, pure=False))
            print(_line("no placement", rows, time.perf_counter() - started))
    finally:
        client.close()
        cluster.close()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
