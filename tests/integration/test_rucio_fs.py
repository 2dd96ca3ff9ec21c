"""rucio:// through the real lake: alice, nothing mounted, compute at a site without the data.

Files are registered at PIC-DISK and DESY-DISK (real bytes in place at both, true
checksums); the session's compute is at INFN-NA, whose storage holds none of them, so
every read goes over the WAN to XRootD with storage-audience tokens that alice's token is
exchanged for at the lake's identity provider.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import time
import tomllib
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

from escape_portal.access import Access, Cache
from escape_portal.config import LakeConfig
from escape_portal.embedded.fresh import place_file
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.errors import LakeError
from escape_portal.lake import DID, Lake
from escape_portal.rucio_fs import RucioFile, RucioFileSystem
from escape_portal.storage import StorageError

pytestmark = pytest.mark.lake

RSES = ("PIC-DISK", "DESY-DISK")
COMPUTE = "INFN-NA"  # its storage (INFN-NA-DISK) holds none of these files
ROOT = Path(__file__).resolve().parents[2]

fsspec.register_implementation("rucio", RucioFileSystem, clobber=True)


def _fits(size_mib: int) -> bytes:
    from astropy.io import fits

    buffer = io.BytesIO()
    hdu = fits.PrimaryHDU(np.arange(size_mib * 256 * 1024, dtype=">f4").reshape(-1, 1024))
    hdu.header["OBJECT"] = "rucio-fs test"
    hdu.writeto(buffer)
    return buffer.getvalue()


def _netcdf() -> bytes:
    import xarray as xr

    ds = xr.Dataset({"flux": (("t",), np.linspace(0.0, 1.0, 50))}, coords={"t": np.arange(50)})
    return bytes(ds.to_netcdf(engine="h5netcdf"))


@dataclasses.dataclass
class Sample:
    dataset: DID
    files: dict[str, tuple[DID, bytes, dict[str, Path]]]

    def url(self, key: str) -> str:
        did = self.files[key][0]
        return f"rucio://{did.scope}/{did.name}"

    def data(self, key: str) -> bytes:
        return self.files[key][1]

    def paths(self, key: str) -> dict[str, Path]:
        return self.files[key][2]


@pytest.fixture(scope="module")
def sample(lake_config: LakeConfig) -> Sample:
    lake = Lake(lake_config)
    stamp = time.time_ns()
    dataset = DID("user.escape", f"rucio-fs-{stamp}")
    contents = {
        "fits": (f"rucio-fs-{stamp}.image.fits", _fits(6)),
        "csv": (
            f"rucio-fs-{stamp}.table.csv",
            ("id,flux\n" + "".join(f"{i},{i * 0.5}\n" for i in range(100))).encode(),
        ),
        "nc": (f"rucio-fs-{stamp}.cube.nc", _netcdf()),
    }
    lake.client.add_dataset(dataset.scope, dataset.name)
    files = {}
    for key, (name, data) in contents.items():
        did = DID(dataset.scope, name)
        files[key] = (did, data, place_file(lake, did, data, RSES))
    lake.client.attach_dids(dataset.scope, dataset.name, [files[k][0].as_rucio() for k in files])
    return Sample(dataset, files)


@pytest.fixture()
def alice(researcher_config: LakeConfig) -> LakeConfig:
    return dataclasses.replace(researcher_config, compute_site=COMPUTE)


def _fs(config: LakeConfig, tmp_path: Path, **options: Any) -> RucioFileSystem:
    return RucioFileSystem(
        config=config, compute_site=COMPUTE, cache_dir=str(tmp_path / "cache"), **options
    )


@pytest.fixture()
def through_xrootd(embedded_lake: EmbeddedLake) -> Iterator[None]:
    """Asserts the bytes were read from the storage elements' XRootD servers meanwhile.

    By the servers' own accounting (their summary statistics): with nothing mounted and
    no ``file://`` path usable at INFN-NA, a read that did not go through them is a bug.
    """
    before = {rse: embedded_lake.storage_bytes_read(rse) for rse in RSES}
    yield
    after = {rse: embedded_lake.storage_bytes_read(rse) for rse in RSES}
    sent = sum(after[rse] - before[rse] for rse in RSES)
    assert sent > 64 * 1024, f"only {sent} bytes left the XRootD servers of {RSES}"


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["fsspec.specs"]["rucio"]
    assert target == "escape_portal.rucio_fs:RucioFileSystem"
    assert fsspec.get_filesystem_class("rucio") is RucioFileSystem


def test_ls_info_and_where(alice: LakeConfig, sample: Sample, tmp_path: Path) -> None:
    fs = _fs(alice, tmp_path)
    assert "user.escape" in fs.ls("rucio://", detail=False)
    listed = {e["name"]: e for e in fs.ls(f"rucio://{sample.dataset.scope}/{sample.dataset.name}")}
    assert {f"{d.scope}/{d.name}" for d, _, _ in sample.files.values()} == set(listed)
    info = fs.info(sample.url("fits"))
    data = sample.data("fits")
    assert info["type"] == "file" and info["size"] == len(data)
    assert info["adler32"] == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert fs.info(f"rucio://{sample.dataset.scope}/{sample.dataset.name}")["type"] == "directory"

    [where] = fs.where(sample.url("fits"))
    assert where["way"] == "download" and where["compute_site"] == COMPUTE
    sources = where["sources"]
    assert {s["rse"] for s in sources} == set(RSES)
    assert sources[0]["scheme"] == "davs"  # across the WAN: davs first, then root
    first = [s["scheme"] for s in sources if s["rse"] == sources[0]["rse"]]
    assert first.index("davs") < first.index("root") and "http" not in first  # no anonymous http
    assert all("WAN" in s["reason"] for s in sources)
    assert any("file://" in s["reason"] for s in where["skipped"])
    assert sources[0]["rse"] in where["explanation"]
    assert (
        Access(Lake(alice), compute_site=COMPUTE)
        .where(sample.files["fits"][0])[0]
        .to_dict()["sources"]
        == sources
    )


@pytest.mark.parametrize("protocol", ["root", "davs"])
def test_open_stream_and_download(
    alice: LakeConfig, sample: Sample, tmp_path: Path, protocol: str, through_xrootd: None
) -> None:
    from astropy.io import fits

    fs = _fs(alice, tmp_path, protocols=[protocol])
    data = sample.data("fits")
    with fs.open(sample.url("fits"), block_size=64 * 1024) as handle:
        assert isinstance(handle, RucioFile) and handle.source.scheme == protocol
        handle.seek(len(data) - 5000)
        assert handle.read(1000) == data[-5000:-4000]
        handle.seek(0)
        with fits.open(handle, lazy_load_hdus=True) as hdul:
            assert hdul[0].header["OBJECT"] == "rucio-fs test"
        assert not handle.choice.failures
    assert fs.cat_file(sample.url("fits"), start=100, end=200) == data[100:200]
    assert fs.cat_file(sample.url("fits")) == data  # whole, verified

    target = tmp_path / "out"
    target.mkdir()
    fs.get_file(sample.url("fits"), str(target))
    got = target / sample.files["fits"][0].name
    assert got.read_bytes() == data
    assert [p.name for p in target.iterdir()] == [got.name]  # nothing half-written
    assert fs.access.cache.usage()[0] == 1  # through the bounded cache


def test_libraries_take_rucio_urls(
    alice: LakeConfig, sample: Sample, tmp_path: Path, through_xrootd: None
) -> None:
    import dask.dataframe as dd
    import pandas as pd
    import xarray as xr
    from astropy.io import fits
    from astropy.table import Table

    options = {"config": alice, "compute_site": COMPUTE, "cache_dir": str(tmp_path / "c")}
    with fits.open(sample.url("fits"), use_fsspec=True, fsspec_kwargs=options) as hdul:
        assert hdul[0].header["OBJECT"] == "rucio-fs test"
        assert hdul[0].header["NAXIS2"] == 6 * 256

    frame = pd.read_csv(sample.url("csv"), storage_options=options)
    assert list(frame.columns) == ["id", "flux"] and len(frame) == 100
    with fsspec.open(sample.url("csv"), **options) as handle:
        table = Table.read(handle.read().decode(), format="ascii.csv")
    assert len(table) == 100 and table["flux"][10] == 5.0

    with fsspec.open(sample.url("nc"), **options) as handle:
        cube = xr.open_dataset(handle, engine="h5netcdf").load()
    assert cube["flux"].shape == (50,) and float(cube["flux"][-1]) == 1.0

    lazy = dd.read_csv(sample.url("csv"), storage_options=options)
    assert int(lazy["id"].sum().compute()) == sum(range(100))


def _token_requests(embedded_lake: EmbeddedLake) -> int:
    """Token requests (grants and exchanges) the lake's identity provider answered so far."""
    log = embedded_lake.paths.logs / "idp.log"
    return sum(1 for line in log.read_text().splitlines() if '"POST /token"' in line)


def test_one_storage_token_serves_every_file_of_a_scope_at_a_storage(
    alice: LakeConfig, sample: Sample, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    fs = _fs(alice, tmp_path, protocols=["davs"])
    first = fs.choice(sample.url("fits")).sources[0].rse
    assert fs.cat_file(sample.url("fits"), 0, 80).startswith(b"SIMPLE")
    before = _token_requests(embedded_lake)
    assert fs.cat_file(sample.url("csv")) == sample.data("csv")  # same scope, same storage
    assert fs.cat_file(sample.url("nc"), 0, 4) == sample.data("nc")[:4]
    assert fs.choice(sample.url("csv")).sources[0].rse == first
    time.sleep(0.2)
    assert _token_requests(embedded_lake) == before, "a new exchange for a file of the scope"


def test_failover_when_a_storage_is_stopped(
    alice: LakeConfig, sample: Sample, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    quick = dataclasses.replace(alice, timeout=4.0)
    fs = _fs(quick, tmp_path, protocols=["davs", "root"])  # XRootD's, not the demo http
    first = fs.choice(sample.url("fits")).sources[0].rse
    pid = embedded_lake._pid(f"xrootd-{first}")
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the storage stops answering (its socket still accepts)
    try:
        with fs.open(sample.url("fits")) as handle:
            assert handle.source.rse != first
            assert handle.read() == sample.data("fits")
            reasons = [why for source, why in handle.choice.failures if source.rse == first]
        assert reasons and all("does not answer" in why for why in reasons)
        fs.get_file(sample.url("fits"), str(tmp_path / "copy.fits"))
        assert (tmp_path / "copy.fits").read_bytes() == sample.data("fits")
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_corrupt_replica_is_never_served(
    alice: LakeConfig, sample: Sample, tmp_path: Path
) -> None:
    import pandas as pd

    fs = _fs(alice, tmp_path)
    originals: dict[Path, bytes] = {}
    try:
        for key in ("fits", "csv"):
            first = fs.choice(sample.url(key)).sources[0].rse
            path = sample.paths(key)[str(first)]
            originals[path] = path.read_bytes()
            path.write_bytes(originals[path][:-16] + b"CORRUPTED BYTES!")  # same size

        # Whole reads and downloads check adler32 and move on to the good replica.
        assert fs.cat_file(sample.url("fits")) == sample.data("fits")
        frame = pd.read_csv(fs.open(sample.url("csv")))
        assert frame["flux"].iloc[-1] == 49.5
        # A ranged read to the end finds out, says so, and the next open reads elsewhere.
        fresh = _fs(alice, tmp_path / "fresh", skip_instance_cache=True)
        with fresh.open(sample.url("fits")) as handle:
            bad = handle.source.rse
            with pytest.raises(StorageError, match="checksum mismatch"):
                handle.read()
        with fresh.open(sample.url("fits")) as handle:
            assert handle.source.rse != bad and handle.read() == sample.data("fits")

        access = Access(Lake(alice), Cache(tmp_path / "access"), compute_site=COMPUTE)
        assert access.path(sample.files["fits"][0]).read_bytes() == sample.data("fits")

        # Every replica corrupt: the download fails, and nothing looks complete.
        for path in sample.paths("csv").values():
            if path not in originals:
                originals[path] = path.read_bytes()
                path.write_bytes(originals[path][:-16] + b"CORRUPTED BYTES!")
        out = tmp_path / "out"
        out.mkdir()
        with pytest.raises(LakeError, match="checksum mismatch") as err:
            fs.get_file(sample.url("csv"), str(out))
        assert "Nothing incomplete was kept" in err.value.hint
        assert list(out.iterdir()) == []
        cached = fs.access.cache.path_for(fs.choice(sample.url("csv")).file)
        assert not cached.exists()
    finally:
        for path, data in originals.items():
            path.write_bytes(data)


def test_a_wrong_audience_token_is_refused_in_plain_words(
    alice: LakeConfig, sample: Sample, lake: Lake, tmp_path: Path
) -> None:
    from escape_portal.embedded.tokens import storage_audience

    before = {rse: lake.client.list_rse_attributes(rse).get("oidc_audience") for rse in RSES}
    try:
        for rse in RSES:  # the operator names another storage's audience for these
            lake.client.add_rse_attribute(rse, "oidc_audience", storage_audience("LAPP-DISK"))
        fs = _fs(alice, tmp_path, protocols=["davs", "root"])
        with pytest.raises(LakeError) as err:
            fs.cat_file(sample.url("csv"))
        message = str(err.value)
        assert "refused your storage token" in err.value.message
        assert "another storage" in err.value.hint
        keeper = fs.lake.tokens
        assert keeper is not None
        session_token = keeper.current()
        assert session_token and session_token not in message and "eyJ" not in message
    finally:
        for rse, value in before.items():
            if value:
                lake.client.add_rse_attribute(rse, "oidc_audience", value)
            else:
                lake.client.delete_rse_attribute(rse, "oidc_audience")


def test_access_downloads_a_dataset_in_parallel(
    alice: LakeConfig, sample: Sample, tmp_path: Path, through_xrootd: None
) -> None:
    access = Access(Lake(alice), Cache(tmp_path / "cache"), compute_site=COMPUTE, workers=3)
    located = access.locate(sample.dataset)
    assert {item.way for item in located} == {"download"}
    assert all(COMPUTE in item.reason or "WAN" in item.reason for item in located)
    paths = access.paths(sample.dataset)
    by_name = {p.name: p for p in paths}
    for did, data, _ in sample.files.values():
        assert by_name[did.name].read_bytes() == data
    assert {item.way for item in access.locate(sample.dataset)} == {"cache"}
