"""Benchmark: one analysis over 1,000 event lists, a plain loop against Dask with 2 workers.

The same analysis — an energy histogram summed over every file of a dataset of
``--files`` small event lists (FITS, an ``EVENTS`` table with ``--rows`` rows of
``ENERGY``) — run as researcher alice (OIDC; nothing mounted; compute at INFN-NA, whose
storage holds none of the data, so every read goes to DESY-DISK over root:// or davs://
with storage tokens):

- **loop, fsspec**: what a notebook without Dask does: ``fs.ls`` of the dataset, then each
  file opened through ``rucio://`` in this process (two Rucio requests per file on a new
  open, the file read whole, verified), once with ``protocols=["root"]`` and once with
  ``["davs"]``;
- **loop, listed**: the same loop over :func:`escape_portal.analysis.lake_files` (the bulk
  listing the Dask session uses; no Rucio request per file), root:// and davs://;
- **Dask**: :meth:`escape_portal.analysis.Session.to_dask` with one task per file on a
  ``local_cluster`` of 2 one-thread workers at INFN-NA, in this process (the default
  cluster) and in 2 worker processes (``processes=True``), each over root:// and over
  davs:// (the workers' replica choice set to that protocol by a task on each worker;
  which one it ranks first on its own is printed).

Each way is timed from the dataset's name to the summed histogram (listing included),
warm: the storage tokens and topology are fetched by a read of two files first, and a
cluster's start is timed apart. Printed per way: the median (and least) seconds of
``--repeat`` runs, files/s, MB read, the protocol, the load average after it; then the
ratios loop / Dask per protocol.
Every way's histogram is checked against the one computed from the generated events.

The dataset is registered once (``user.escape:bench-dask-loop-<files>x<rows>``, at
DESY-DISK only) and reused by later runs::

    .venv/bin/python bench/dask_loop.py [--data-dir DIR] [--files 1000] [--rows 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import os
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from running_lake import running_lake

from escape_portal import analysis
from escape_portal.embedded.instance import researcher_instance
from escape_portal.errors import NotFound
from escape_portal.lake import DID, FileInfo, Lake
from escape_portal.rucio_fs import RucioFileSystem

SCOPE = "user.escape"
RSE = "DESY-DISK"  # not the lake's mounted storage (CERN-DISK), not at the compute site
COMPUTE = "INFN-NA"
EDGES = np.geomspace(0.1, 100.0, 41)  # TeV
CHUNK = 500  # files per add_replicas / attach_dids request


def _energies(index: int, rows: int) -> np.ndarray:
    """File ``index``'s events: a power law above 0.1 TeV (photon index 2.5), seeded."""
    rng = np.random.default_rng(index)
    return np.asarray(0.1 * (1.0 + rng.pareto(1.5, rows)), dtype=">f8")


def _event_list(index: int, rows: int) -> bytes:
    energy = _energies(index, rows)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="EVENT_ID", format="K", array=np.arange(rows, dtype=">i8")),
            fits.Column(name="ENERGY", format="D", unit="TeV", array=energy),
        ],
        name="EVENTS",
    )
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    return buffer.getvalue()


def _chunks(items: list[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dataset(operator: Lake, files: int, rows: int) -> tuple[DID, bool]:
    """The benchmark's dataset: the one of an earlier run if complete, else a new one."""
    dataset = DID(SCOPE, f"bench-dask-loop-{files}x{rows}")
    try:
        operator.info(dataset)
    except NotFound:
        return _register(operator, dataset, files, rows), False
    found = sum(1 for _ in operator.files(dataset))
    if found == files:
        return dataset, True
    print(f"{dataset} holds {found} of {files} files (an interrupted run): a new dataset")
    return _register(operator, DID(SCOPE, f"{dataset.name}-{time.time_ns()}"), files, rows), False


def _register(operator: Lake, dataset: DID, files: int, rows: int) -> DID:
    """``files`` event lists at :data:`RSE` only, written in place, then the dataset."""
    stamp = time.time_ns()
    contents: dict[DID, bytes] = {}
    for i in range(files):
        contents[DID(SCOPE, f"{dataset.name}.{stamp}.{i:05d}.fits")] = _event_list(i, rows)
    dids = list(contents)
    for chunk in _chunks(dids):
        replicas = []
        for did in chunk:
            data = contents[did]
            adler32 = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
            replicas.append(
                {"scope": did.scope, "name": did.name, "bytes": len(data), "adler32": adler32}
            )
        operator.client.add_replicas(RSE, replicas)
    for rep in operator.file_replicas(dids):
        path = rep.local_path(RSE)
        assert path is not None, f"{RSE} gives {rep.name} no local path"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[DID(rep.scope, rep.name)])
    # The dataset last: once it exists with all its files, later runs reuse it.
    operator.client.add_dataset(dataset.scope, dataset.name)
    for chunk in _chunks(dids):
        operator.client.attach_dids(dataset.scope, dataset.name, [d.as_rucio() for d in chunk])
    return dataset


def _histogram(data: bytes) -> np.ndarray:
    with fits.open(io.BytesIO(data)) as hdus:
        counts, _ = np.histogram(hdus["EVENTS"].data["ENERGY"], bins=EDGES)
    return np.asarray(counts, dtype=np.int64)


def _task(file: analysis.LakeFile) -> tuple[np.ndarray, int]:
    """What a Dask task does with one file: its histogram and the bytes it read."""
    with file.open() as handle:
        data = handle.read()
    return _histogram(data), len(data)


def _scheme(file: analysis.LakeFile) -> str:
    return str(file.source()["scheme"])


def _prefer(file: analysis.LakeFile, protocol: str | None) -> str:
    """On a worker: read remote replicas over ``protocol`` only (``None``: as ranked)."""
    file.filesystem().access.chooser.protocols = (protocol,) if protocol else None
    return _scheme(file)


def _force(client: Any, file: analysis.LakeFile, protocol: str | None) -> str:
    """The protocol every worker of ``client`` reads ``file`` with, after :func:`_prefer`."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    futures = [
        client.submit(_prefer, file, protocol, workers=[address], pure=False) for address in workers
    ]
    schemes = set(client.gather(futures))
    assert len(schemes) == 1, schemes
    return str(schemes.pop())


@dataclasses.dataclass
class Way:
    """One way of running the analysis."""

    name: str
    run: Callable[[], tuple[np.ndarray, int, int]]  # histogram, bytes read, files
    warm: Callable[[], object]  # a read of two files: tokens, topology
    protocol: str


def _filesystem(alice: Lake, protocol: str) -> RucioFileSystem:
    return RucioFileSystem(
        lake=alice, compute_site=COMPUTE, protocols=[protocol], skip_instance_cache=True
    )


def _loop_fsspec(alice: Lake, dataset: DID, protocol: str) -> tuple[np.ndarray, int, int]:
    """The notebook's loop: list the dataset, open every file through ``rucio://``."""
    fs = _filesystem(alice, protocol)  # new: no metadata remembered from an earlier run
    total = np.zeros(len(EDGES) - 1, dtype=np.int64)
    nbytes = files = 0
    for name in fs.ls(f"{dataset.scope}/{dataset.name}", detail=False):
        with fs.open(name, "rb") as handle:
            data = handle.read()
        total += _histogram(data)
        nbytes += len(data)
        files += 1
    return total, nbytes, files


def _loop_listed(alice: Lake, dataset: DID, protocol: str) -> tuple[np.ndarray, int, int]:
    """The same loop over the bulk listing (``lake_files``), no Rucio request per file."""
    fs = _filesystem(alice, protocol)
    total = np.zeros(len(EDGES) - 1, dtype=np.int64)
    nbytes = files = 0
    for file in analysis.lake_files(alice, dataset):
        assert file.replicas is not None
        fs.remember(
            FileInfo(file.did.scope, file.did.name, file.bytes, file.adler32), file.replicas
        )
        with fs.open(file.url, "rb") as handle:
            data = handle.read()
        total += _histogram(data)
        nbytes += len(data)
        files += 1
    return total, nbytes, files


def _dask(session: analysis.Session, dataset: DID) -> tuple[np.ndarray, int, int]:
    rows = session.to_dask(analysis.lake_files(session.lake, dataset), _task).compute()
    total = np.asarray(np.sum([counts for counts, _ in rows], axis=0), dtype=np.int64)
    return total, sum(n for _, n in rows), len(rows)


def _dask_warm(session: analysis.Session, files: list[analysis.LakeFile]) -> None:
    session.to_dask(files[:2], _task).compute()


def _loop_warm(alice: Lake, files: list[analysis.LakeFile], protocol: str) -> None:
    fs = _filesystem(alice, protocol)
    for file in files[:2]:
        with fs.open(file.url, "rb") as handle:
            handle.read()


def _measure(way: Way, repeat: int, expected: np.ndarray) -> float:
    """Run ``way`` ``repeat`` times (warm), check its histogram, print its line; the median."""
    way.warm()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        histogram, nbytes, count = way.run()
        times.append(time.perf_counter() - t0)
        assert np.array_equal(histogram, expected), f"{way.name}: the histograms differ"
    median = statistics.median(times)
    print(
        f"{way.name:<34} {median:8.2f} {min(times):7.2f} {count / median:8.0f} "
        f"{nbytes / 1e6:8.1f} {way.protocol:>5}  {_load()}",
        flush=True,
    )
    return median


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    """Register the dataset if needed, run every way, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="events per file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    embedded, operator = running_lake(args.data_dir)
    started = time.perf_counter()
    dataset, reused = _dataset(operator, args.files, args.rows)
    how = "reused" if reused else f"registered in {time.perf_counter() - started:.1f} s"
    expected = np.zeros(len(EDGES) - 1, dtype=np.int64)
    for i in range(args.files):
        expected += np.histogram(_energies(i, args.rows), bins=EDGES)[0]
    config = researcher_instance({"ESCAPE_PORTAL_LAKE_DIR": str(embedded.paths.root)})
    assert config is not None, "the embedded lake has no researcher instance"
    alice = Lake(
        dataclasses.replace(config, mounted_rse=None, mount_path=None, compute_site=COMPUTE)
    )
    files = analysis.lake_files(alice, dataset)
    size = sum(f.bytes for f in files)
    print(
        f"{dataset}: {len(files)} event lists of {args.rows} events, {size / 1e6:.1f} MB at "
        f"{RSE} ({how}); alice (OIDC), compute at {COMPUTE}, nothing mounted; "
        f"median of {args.repeat}"
    )

    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # also the worker processes
    from distributed import Client

    print(
        f"{'way':<34} {'seconds':>8} {'min':>7} {'files/s':>8} "
        f"{'MB read':>8} {'proto':>5}  load average (after the way)"
    )
    medians: dict[str, float] = {}
    for processes in (False, True):
        kind = "processes" if processes else "in-process"
        t0 = time.perf_counter()
        cluster = analysis.local_cluster((COMPUTE, COMPUTE), processes=processes)
        client = Client(cluster)
        try:
            client.wait_for_workers(2)
            with analysis.Session(alice, client) as session:
                start = time.perf_counter() - t0
                ranked = _force(client, files[0], None)
                print(
                    f"Dask {kind}: cluster up, credentials on the workers: {start:.2f} s; "
                    f"the workers' replica choice reads over {ranked}"
                )
                for protocol in ("root", "davs"):
                    way = Way(
                        f"Dask, 2 workers, {kind}, {protocol}",
                        functools.partial(_dask, session, dataset),
                        functools.partial(_dask_warm, session, files),
                        _force(client, files[0], protocol),
                    )
                    medians[way.name] = _measure(way, args.repeat, expected)
        finally:
            client.close()
            cluster.close()
    for protocol in ("root", "davs"):
        warm = functools.partial(_loop_warm, alice, files, protocol)
        for name, loop in (("fsspec", _loop_fsspec), ("listed", _loop_listed)):
            run = functools.partial(loop, alice, dataset, protocol)
            way = Way(f"loop, {name}, {protocol}", run, warm, protocol)
            medians[way.name] = _measure(way, args.repeat, expected)
    print("ratios loop / Dask (medians, same protocol):")
    for protocol in ("root", "davs"):
        for kind in ("in-process", "processes"):
            dask = medians[f"Dask, 2 workers, {kind}, {protocol}"]
            ratios = ", ".join(
                f"{name} {medians[f'loop, {name}, {protocol}'] / dask:.2f}"
                for name in ("fsspec", "listed")
            )
            print(f"  {protocol}, Dask {kind}: {ratios}")
    print(f"histograms: equal ({int(expected.sum())} events in {len(EDGES) - 1} bins, every way)")
    print(f"load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
