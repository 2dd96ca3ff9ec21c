"""Streaming reads over davs:// (XRootD, storage tokens): one FITS header, not the whole file."""

import io
import time
import zlib

import numpy as np
import pytest

from escape_portal.access import Access, Cache
from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake

SIZE_MB = 24


@pytest.fixture()
def large_fits(operator_lake: Lake) -> DID:
    """A fresh 24 MiB FITS image at DESY-DISK only (real bytes, true checksum)."""
    from astropy.io import fits

    buffer = io.BytesIO()
    hdu = fits.PrimaryHDU(np.zeros((SIZE_MB * 256, 1024), dtype=np.float32))
    hdu.header["OBJECT"] = "large streaming test"
    fits.HDUList([hdu, fits.ImageHDU(np.ones((8, 8)), name="SMALL")]).writeto(buffer)
    data = buffer.getvalue()
    did = DID("user.escape", f"large-{time.time_ns()}.fits")
    operator_lake.client.add_replicas(
        "DESY-DISK",
        [
            {
                "scope": did.scope,
                "name": did.name,
                "bytes": len(data),
                "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
            }
        ],
    )
    path = next(iter(operator_lake.file_replicas([did]))).local_path("DESY-DISK")
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return did


def test_replicas_offer_https_not_http(lake: Lake, large_fits: DID) -> None:
    rep = next(iter(lake.file_replicas([large_fits])))
    url = rep.url("DESY-DISK")  # the davs replica, spelled https as web clients want it
    assert url and url.startswith("https://localhost:") and "/DESY-DISK/" in url
    assert not any(p.startswith("http://") for p in rep.pfns["DESY-DISK"])


def test_header_streamed_reads_a_small_part(
    researcher_config: LakeConfig, embedded_lake: EmbeddedLake, large_fits: DID, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # alice (OIDC, storage tokens), computing at CERN: DESY-DISK is read across the WAN.
    access = Access(Lake(researcher_config), Cache(tmp_path / "cache"))
    before = embedded_lake.storage_bytes_read("DESY-DISK")
    with access.fits(large_fits, stream=True) as hdul:
        assert hdul[0].header["OBJECT"] == "large streaming test"
        assert hdul[0].header["NAXIS2"] == SIZE_MB * 256
    streamed = embedded_lake.storage_bytes_read("DESY-DISK") - before
    assert 2880 < streamed < 2 * 2**20, f"{streamed} bytes read for one header"
    assert access.cache.usage() == (0, 0)  # nothing was downloaded

    with access.open(large_fits, stream=True) as handle:
        handle.seek(-2880, 2)  # the last block, by a range request
        assert len(handle.read()) == 2880
    before = embedded_lake.storage_bytes_read("DESY-DISK")
    downloaded = access.path(large_fits)  # the whole file, verified
    assert downloaded.stat().st_size > SIZE_MB * 2**20
    assert embedded_lake.storage_bytes_read("DESY-DISK") - before >= SIZE_MB * 2**20
