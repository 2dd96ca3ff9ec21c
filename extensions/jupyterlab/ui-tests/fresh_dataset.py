"""Register a new dataset of three small FITS files at PIC-DISK only, and print its DID.

The UI tests make it available near compute (CERN) on every run, so they always watch a
real transfer even though the test lake is kept between runs. Run with the project's
Python and ``ESCAPE_PORTAL_LAKE_DIR`` pointing at the embedded lake.
"""

from __future__ import annotations

import io
import sys
import time
import zlib

import numpy as np
from astropy.io import fits

from escape_portal.lake import DID, Lake


def main() -> None:
    lake = Lake.from_instance()
    client = lake.client
    stamp = f"{int(time.time() * 1000)}"
    dataset = DID("user.escape", f"ui-{stamp}")
    files = []
    for i in range(3):
        buffer = io.BytesIO()
        hdu = fits.PrimaryHDU(np.full((16, 16), i, dtype=np.float32))
        hdu.header["OBJECT"] = f"ui test {i}"
        hdu.writeto(buffer)
        files.append((f"ui-{stamp}.{i}.fits", buffer.getvalue()))
    client.add_dataset(dataset.scope, dataset.name)
    client.attach_dids(
        dataset.scope,
        dataset.name,
        [
            {
                "scope": dataset.scope,
                "name": name,
                "bytes": len(data),
                "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
            }
            for name, data in files
        ],
        rse="PIC-DISK",
    )
    client.add_replication_rule([dataset.as_rucio()], 1, "PIC-DISK")
    by_name = dict(files)
    for rep in lake.file_replicas(DID(dataset.scope, name) for name, _ in files):
        path = rep.local_path("PIC-DISK")
        if path is None:
            raise SystemExit(f"{rep.scope}:{rep.name} has no local path at PIC-DISK")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = by_name[rep.name]
        if "--corrupt" in sys.argv and rep.name.endswith(".0.fits"):
            data = data[:-16] + b"CORRUPTED BYTES!"  # same size, other content
        path.write_bytes(data)
    print(dataset)


if __name__ == "__main__":
    main()
