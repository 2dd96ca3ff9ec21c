"""New data in the embedded lake, for tests and demos that must move something each run.

The test lake is kept between runs, so its sample data is already near compute after the
first one; a fresh dataset is only at one far storage and a transfer really happens.
"""

from __future__ import annotations

import io
import time
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from escape_portal.lake import DID, Lake


def fresh_dataset(
    lake: Lake,
    *,
    prefix: str = "fresh",
    rse: str = "PIC-DISK",
    files: int = 3,
    corrupt_first: bool = False,
) -> DID:
    """Register a new ``user.escape`` dataset of small FITS files at ``rse`` only.

    Real bytes with true checksums are written where the storage serves them, and a rule
    keeps them there (as an upload makes). With ``corrupt_first`` the first file's bytes
    on disk differ from its checksum (same size), so a transfer of it fails as in
    production.

    Returns
    -------
    DID
        The dataset, ``user.escape:<prefix>-<milliseconds>``.
    """
    client = lake.client
    stamp = f"{int(time.time() * 1000)}"
    dataset = DID("user.escape", f"{prefix}-{stamp}")
    contents = []
    for i in range(files):
        buffer = io.BytesIO()
        hdu = fits.PrimaryHDU(np.full((16, 16), i, dtype=np.float32))
        hdu.header["OBJECT"] = f"{prefix} {i}"
        hdu.writeto(buffer)
        contents.append((f"{prefix}-{stamp}.{i}.fits", buffer.getvalue()))
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
            for name, data in contents
        ],
        rse=rse,
    )
    client.add_replication_rule([dataset.as_rucio()], 1, rse)
    by_name = dict(contents)
    first = contents[0][0]
    for rep in lake.file_replicas(DID(dataset.scope, name) for name, _ in contents):
        path = rep.local_path(rse)
        if path is None:
            raise RuntimeError(f"{rep.scope}:{rep.name} has no local path at {rse}")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = by_name[rep.name]
        if corrupt_first and rep.name == first:
            data = data[:-16] + b"CORRUPTED BYTES!"  # same size, other content
        path.write_bytes(data)
    return dataset


def place_file(lake: Lake, did: DID, data: bytes, rses: tuple[str, ...]) -> dict[str, Path]:
    """Register file ``did`` at each of ``rses`` and write its bytes there in place.

    As an upload leaves a file: replicas with its true size and adler32, the bytes at each
    storage element's path for it. Returns those paths, by storage element.
    """
    row = {
        "scope": did.scope,
        "name": did.name,
        "bytes": len(data),
        "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
    }
    for rse in rses:
        lake.client.add_replicas(rse, [row])
    rep = next(iter(lake.file_replicas([did])))
    paths = {}
    for rse in rses:
        path = rep.local_path(rse)
        if path is None:
            raise RuntimeError(f"{rse} gives {did} no local path")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths[rse] = path
    return paths
