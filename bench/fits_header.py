"""Benchmark: read one FITS header of a 512 MiB file by streaming vs downloading it whole.

A fresh 512 MiB FITS image is written on DESY-DISK of the embedded lake and registered
with its true checksum. Then, each in the same process:

- **stream**: ``Access.fits(did, stream=True)`` reads the header over the storage's
  davs:// (XRootD, with researcher alice's storage token) by byte ranges (fsspec);
- **download**: ``Access.path(did)`` copies the whole file into the cache, verified,
  then the header is read locally;

and the times, bytes read from storage (by DESY-DISK's XRootD server's own count) and
their ratio are printed. Run with the lake up::

    .venv/bin/python bench/fits_header.py [--data-dir DIR] [--size-mib 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from running_lake import running_lake

from escape_portal.access import Access, Cache
from escape_portal.embedded.instance import researcher_instance
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import DID, Lake


def _write_fits(path: Path, size_mib: int) -> tuple[int, str]:
    """Write a FITS image of ``size_mib`` MiB at ``path``; return its size and adler32."""
    from astropy.io import fits

    rows = size_mib * 256  # 1024 float32 per row: 4 KiB
    header = fits.PrimaryHDU(np.zeros((1, 1), dtype=np.float32)).header
    header["NAXIS1"], header["NAXIS2"] = 1024, rows
    header["OBJECT"] = "bench: large image"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = np.arange(1024, dtype=">f4").tobytes()
    checksum = 1
    with path.open("wb") as out:
        head = header.tostring().encode()
        out.write(head)
        checksum = zlib.adler32(head, checksum)
        block = row * 1024  # 4 MiB
        for _ in range(rows // 1024):
            out.write(block)
            checksum = zlib.adler32(block, checksum)
        pad = (-out.tell()) % 2880
        out.write(b"\0" * pad)
        checksum = zlib.adler32(b"\0" * pad, checksum)
        size = out.tell()
    return size, f"{checksum & 0xFFFFFFFF:08x}"


def main() -> int:
    """Run once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--size-mib", type=int, default=512)
    args = parser.parse_args()

    embedded, lake = running_lake(args.data_dir)
    did = DID("user.escape", f"bench-large-{time.time_ns()}.fits")
    pfn = lake.client.lfns2pfns("DESY-DISK", [str(did)], operation="write", scheme="file")
    path = Path(urlparse(pfn[str(did)]).path)
    size, adler = _write_fits(path, args.size_mib)
    lake.client.add_replicas(
        "DESY-DISK", [{"scope": did.scope, "name": did.name, "bytes": size, "adler32": adler}]
    )
    alice = researcher_instance({"ESCAPE_PORTAL_LAKE_DIR": str(embedded.paths.root)})
    assert alice is not None, "the embedded lake did not record its state"
    try:
        stream_s, stream_bytes, download_s, download_bytes = _measure(
            Lake(alice), embedded, did, size
        )
    finally:  # a tombstone: Rucio's reaper deletes the file shortly
        lake.client.set_tombstone([{"rse": "DESY-DISK", **did.as_rucio()}])
    print(f"file: {did}, {size / 2**20:.0f} MiB")
    print(f"stream header:    {stream_s:8.3f} s   {stream_bytes / 2**10:10.0f} KiB read")
    print(f"download + read:  {download_s:8.3f} s   {download_bytes / 2**10:10.0f} KiB read")
    print(
        f"ratio (download / stream): time {download_s / stream_s:.0f}x, "
        f"bytes {download_bytes / max(1, stream_bytes):.0f}x"
    )
    return 0


def _measure(
    lake: Lake, embedded: EmbeddedLake, did: DID, size: int
) -> tuple[float, int, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        # alice computes at CERN, nothing mounted there holds the file: DESY-DISK over WAN.
        access = Access(lake, Cache(Path(tmp), limit_bytes=4 * size), mounted_rse="CERN-DISK")
        served = embedded.storage_bytes_read("DESY-DISK")
        t0 = time.perf_counter()
        with access.fits(did, stream=True) as hdul:
            assert hdul[0].header["OBJECT"] == "bench: large image"
        stream_s = time.perf_counter() - t0
        stream_bytes = embedded.storage_bytes_read("DESY-DISK") - served

        served = embedded.storage_bytes_read("DESY-DISK")
        t0 = time.perf_counter()
        access.path(did)
        with access.fits(did) as hdul:
            assert hdul[0].header["OBJECT"] == "bench: large image"
        download_s = time.perf_counter() - t0
        download_bytes = embedded.storage_bytes_read("DESY-DISK") - served
    return stream_s, stream_bytes, download_s, download_bytes


if __name__ == "__main__":
    raise SystemExit(main())
