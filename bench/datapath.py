"""Benchmark: the rucio:// data path over root:// and davs://, as a researcher with a token.

Against the embedded lake, as researcher alice (an OIDC token from the lake's provider,
exchanged for storage-audience tokens), nothing mounted, compute at INFN-NA (whose storage
holds none of the data). A fresh 512 MiB FITS image is written at DESY-DISK; then:

- **header**: ``astropy.io.fits`` reads the primary header through ``rucio://`` (ranged
  reads), cold (first open: topology, token exchange, TLS) and warm (a new open of the
  DID: its two Rucio requests, counted in the server's access log, and the storage's);
- **download**: the whole file into the cache, adler32-verified on the way, atomic —
  over root:// and over davs://, MB/s side by side; into a cache on this disk (what a
  session gets here, fsync'd) and, where ``/dev/shm`` exists, into a cache in memory
  (tmpfs), which takes the disk's write speed out and leaves the storage, the protocol
  and the checksum; there, over root://, against XRootD's own ``xrdcp --cksum`` of the
  same file with the same token (the peer);
- **many small files**: a dataset of small files downloaded one at a time and with a
  thread pool.

Run with the lake up (quiet; a minute or two)::

    .venv/bin/python bench/datapath.py [--data-dir DIR] [--size-mib 512] [--small 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse

from fits_header import _write_fits
from running_lake import running_lake

from escape_portal import storage
from escape_portal.access import Access, Cache
from escape_portal.config import LakeConfig
from escape_portal.embedded.instance import researcher_instance
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import DID, Lake
from escape_portal.rucio_fs import RucioFileSystem

COMPUTE = "INFN-NA"
RSE = "DESY-DISK"


def _alice(embedded: EmbeddedLake) -> LakeConfig:
    """The lake's researcher instance (alice over OIDC, tokens renewed), nothing mounted."""
    config = researcher_instance({"ESCAPE_PORTAL_LAKE_DIR": str(embedded.paths.root)})
    assert config is not None, "the embedded lake has no researcher instance"
    return dataclasses.replace(config, mounted_rse=None, mount_path=None, compute_site=COMPUTE)


def _requests(log: Path) -> int:
    """Requests the Rucio server answered so far (lines of its access log)."""
    with log.open("rb") as handle:
        return sum(1 for _ in handle)


def _header(fs: RucioFileSystem, url: str) -> float:
    from astropy.io import fits

    t0 = time.perf_counter()
    with fs.open(url, block_size=64 * 1024) as handle, fits.open(handle) as hdul:
        assert hdul[0].header["OBJECT"] == "bench: large image"
    return time.perf_counter() - t0


def main() -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--small", type=int, default=100, help="files in the small dataset")
    args = parser.parse_args()

    embedded, operator = running_lake(args.data_dir)
    alice = _alice(embedded)
    did = DID("user.escape", f"bench-datapath-{time.time_ns()}.fits")
    pfn = operator.client.lfns2pfns(RSE, [str(did)], operation="write", scheme="file")
    path = Path(urlparse(pfn[str(did)]).path)
    size, adler = _write_fits(path, args.size_mib)
    operator.client.add_replicas(
        RSE, [{"scope": did.scope, "name": did.name, "bytes": size, "adler32": adler}]
    )
    small = _small_dataset(operator, args.small)
    access_log = embedded.paths.logs / "access.log"
    url = RucioFileSystem.url_of(did)
    lines = [f"file: {did}, {size / 2**20:.0f} MiB at {RSE}; compute at {COMPUTE}, alice (OIDC)"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for protocol in ("root", "davs"):
                access = Access(
                    Lake(alice),
                    Cache(Path(tmp) / protocol, limit_bytes=2 * size),
                    compute_site=COMPUTE,
                    protocols=[protocol],
                )
                fs = RucioFileSystem(access=access, skip_instance_cache=True)
                cold = _header(fs, url)
                warm, counts, again = [], [], []
                for _ in range(5):
                    fs._meta.clear()  # a new open of the DID: its Rucio requests again
                    before = _requests(access_log)
                    warm.append(_header(fs, url))
                    time.sleep(0.05)
                    counts.append(_requests(access_log) - before)
                    again.append(_header(fs, url))  # within 30 s: no Rucio request
                t0 = time.perf_counter()
                local = access.path(did)
                download = time.perf_counter() - t0
                assert local.stat().st_size == size
                local.unlink()
                in_memory = _download_in_memory(alice, did, protocol, size)
                header = statistics.median(warm)
                repeat = statistics.median(again)
                lines += [
                    f"[{protocol}] header: cold {cold * 1000:7.1f} ms; warm, new open "
                    f"{header * 1000:6.1f} ms ({max(counts)} Rucio requests); warm, DID known "
                    f"{repeat * 1000:5.1f} ms (0 requests); medians of 5",
                    f"[{protocol}] verified download {download:6.2f} s = "
                    f"{size / download / 1e6:6.0f} MB/s (adler32 on the way, fsync, rename)",
                    f"[{protocol}] ratio download / header: {download / header:5.0f}x (new open), "
                    f"{download / repeat:5.0f}x (DID known)",
                ]
                if in_memory is not None:
                    whole, copy = in_memory
                    lines.append(
                        f"[{protocol}] verified download into a tmpfs cache {copy:6.2f} s = "
                        f"{size / copy / 1e6:6.0f} MB/s; {whole:6.2f} s with a new session's "
                        f"look-ups and token; ratio to the header {whole / header:5.0f}x "
                        "(new open); medians of 3"
                    )
                peer = _xrdcp(alice, did) if protocol == "root" and in_memory else None
                if peer is not None and in_memory is not None:
                    lines.append(
                        f"[root] xrdcp --cksum adler32 into tmpfs (the peer) {peer:6.2f} s = "
                        f"{size / peer / 1e6:6.0f} MB/s; the portal's copy is "
                        f"{peer / in_memory[1]:4.2f}x as fast; median of 3"
                    )
            lines += _many_small(alice, small, Path(tmp))
    finally:  # tombstones: Rucio's reaper deletes the big file shortly
        operator.client.set_tombstone([{"rse": RSE, **did.as_rucio()}])
    load = Path("/proc/loadavg").read_text().split()[:3]
    lines.append(f"load average at the end: {' '.join(load)} (2 cores, shared)")
    print("\n".join(lines))
    return 0


def _download_in_memory(
    alice: LakeConfig, did: DID, protocol: str, size: int, runs: int = 3
) -> tuple[float, float] | None:
    """Medians of ``runs`` downloads of ``did`` into a new cache on tmpfs each.

    ``None`` without /dev/shm; else (seconds with the session's look-ups, seconds of the
    verified copy alone). Each run is a new session (new cache, new instance), so each
    pays its Rucio look-ups, its storage token and its open, as a first download does.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return None
    whole, copy = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(dir=shm) as tmp:
            access = Access(
                Lake(alice),
                Cache(Path(tmp), limit_bytes=2 * size),
                compute_site=COMPUTE,
                protocols=[protocol],
            )
            t0 = time.perf_counter()
            choice = access.choices(did)[0]
            t1 = time.perf_counter()
            local = access.fetch(choice)
            t2 = time.perf_counter()
            whole.append(t2 - t0)
            copy.append(t2 - t1)
            assert local.stat().st_size == size
    return statistics.median(whole), statistics.median(copy)


def _xrdcp(alice: LakeConfig, did: DID, runs: int = 3) -> float | None:
    """Median seconds of XRootD's own ``xrdcp --cksum adler32:…`` of ``did`` into tmpfs.

    The peer of the verified root:// download: the same file, storage, token and TLS,
    copied and checked by XRootD's C++ client. ``None`` without xrdcp or /dev/shm.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir() or shutil.which("xrdcp") is None:
        return None
    lake = Lake(alice)
    access = Access(lake, compute_site=COMPUTE, protocols=["root"])
    choice = access.choices(did)[0]
    source = choice.sources[0]
    token = lake.storage_token(
        str(source.rse), source.storage_path, write=False, did_scope=did.scope
    )
    storage.x509_cert_dir(lake.config.ca_cert)  # the lake's CA, as the portal's reads use
    env = {**os.environ, "BEARER_TOKEN": token or ""}
    times = []
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        for _ in range(runs):
            target = Path(tmp) / "copy"
            t0 = time.perf_counter()
            command = ["xrdcp", "-f", "-s", "--cksum", f"adler32:{choice.file.adler32}"]
            subprocess.run(
                [*command, source.url, str(target)],
                env=env,
                check=True,
                timeout=300,
            )
            times.append(time.perf_counter() - t0)
            target.unlink()
    return statistics.median(times)


def _small_dataset(lake: Lake, count: int) -> DID:
    """A dataset of ``count`` 64 KiB files at PIC-DISK, bytes in place."""
    stamp = time.time_ns()
    dataset = DID("user.escape", f"bench-small-{stamp}")
    files = []
    for i in range(count):
        data = f"{stamp}-{i}".encode() * (65536 // 24)
        files.append((DID(dataset.scope, f"bench-small-{stamp}.{i:04d}.dat"), data))
    lake.client.add_dataset(dataset.scope, dataset.name)
    lake.client.attach_dids(
        dataset.scope,
        dataset.name,
        [
            {**d.as_rucio(), "bytes": len(b), "adler32": f"{zlib.adler32(b) & 0xFFFFFFFF:08x}"}
            for d, b in files
        ],
        rse="PIC-DISK",
    )
    content = dict(files)
    for rep in lake.file_replicas(d for d, _ in files):
        local = rep.local_path("PIC-DISK")
        assert local is not None
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(content[DID(rep.scope, rep.name)])
    return dataset


def _many_small(alice: LakeConfig, dataset: DID, tmp: Path) -> list[str]:
    lines = []
    for protocol in ("root", "davs"):
        rates = {}
        for workers in (1, 8):
            access = Access(
                Lake(alice),
                Cache(tmp / f"small-{protocol}-{workers}"),
                compute_site=COMPUTE,
                protocols=[protocol],
                workers=workers,
            )
            choices = access.choices(dataset)
            t0 = time.perf_counter()
            paths = access.fetch_all(choices)
            rates[workers] = len(paths) / (time.perf_counter() - t0)
        lines.append(
            f"[{protocol}] {len(paths)} small files: {rates[1]:5.0f} files/s one at a time, "
            f"{rates[8]:5.0f} files/s with 8 threads ({rates[8] / rates[1]:.1f}x)"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
