"""Opening lake files: mounted path, verified cache downloads, astropy readers."""

import os
import time
from pathlib import Path

import pytest

from escape_portal.access import Access, Cache, NotAvailableHere
from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.errors import LakeError
from escape_portal.integrity import adler32_of
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake


@pytest.fixture()
def access(alice_config: LakeConfig, tmp_path: Path) -> Access:
    """As researcher alice: storage tokens for the replicas not on the mounted storage."""
    return Access(Lake(alice_config), Cache(tmp_path / "cache", limit_bytes=10 * 2**20))


def test_mounted_replica_is_read_in_place(access: Access, embedded_lake: EmbeddedLake) -> None:
    located = access.locate("ska:sdc2.continuum")
    assert {item.way for item in located} == {"mounted"}
    paths = access.paths("ska:sdc2.continuum")
    assert all(p.is_relative_to(embedded_lake.mount_path) for p in paths)
    assert access.cache.usage() == (0, 0)


def test_download_is_verified_cached_and_reused(access: Access, lake: Lake) -> None:
    did = DID("cta", "crab-2024.sky.0001.fits")  # home: LAPP-DISK, not mounted
    [item] = access.locate(did)
    assert item.way in ("download", "mounted")
    if item.way == "mounted":
        pytest.skip("an earlier test already brought it to the mounted storage")
    path = access.path(did)
    assert path.is_relative_to(access.cache.root)
    assert adler32_of(path) == next(iter(lake.files(did))).adler32
    mtime = path.stat().st_mtime_ns
    assert access.locate(did)[0].way == "cache"
    assert access.path(did) == path and path.stat().st_mtime_ns >= mtime
    with access.fits(did) as hdul:
        assert hdul[0].header["CTYPE1"] == "RA---TAN" and hdul[0].data.shape == (128, 128)


def test_corrupt_source_leaves_nothing_that_looks_complete(access: Access, lake: Lake) -> None:
    did = DID("km3net", "arca21-2023.events.0002.fits")
    reps = next(iter(lake.file_replicas([did])))
    sources = [p for p in (reps.local_path(rse) for rse in reps.states) if p and p.is_file()]
    originals = {p: p.read_bytes() for p in sources}
    try:
        for path, data in originals.items():
            path.write_bytes(data[:-10] + b"0123456789")  # same size, wrong bytes
        if access.locate(did)[0].way != "download":
            pytest.skip("already on the mounted storage, brought by an earlier test")
        with pytest.raises(LakeError, match="checksum mismatch") as err:
            access.path(did)
        assert "Nothing incomplete was kept" in err.value.hint
        assert not [p for p in access.cache.root.rglob("*") if p.is_file()]
    finally:
        for path, data in originals.items():
            path.write_bytes(data)
    table = access.table(did, hdu="EVENTS")
    assert len(table) == 2000 and "ENERGY" in table.colnames


def test_half_written_copy_is_never_served(access: Access, lake: Lake) -> None:
    did = DID("cta", "pks2155-2023.dl3.0001.fits")
    [file] = list(lake.files(did))
    final = access.cache.path_for(file)
    final.parent.mkdir(parents=True)
    (final.parent / f".{final.name}.deadbeef.part").write_bytes(b"half")
    final.write_bytes(b"truncated")  # wrong size: not complete
    assert access.cache.get(file) is None
    assert access.cache.usage()[0] == 1  # the .part file is not counted


def test_cache_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    cache = Cache(tmp_path, limit_bytes=100)
    old, new = tmp_path / "s" / "old", tmp_path / "s" / "new"
    old.parent.mkdir()
    old.write_bytes(b"x" * 60)
    new.write_bytes(b"y" * 30)
    os.utime(old, (1, 1))
    assert cache.make_room(40) == 60 and not old.exists() and new.exists()
    with pytest.raises(LakeError, match="larger than the download cache"):
        cache.make_room(101)


def test_lost_replica_fails_clearly_and_keeps_nothing(access: Access, operator_lake: Lake) -> None:
    """Registered at DESY-DISK by the operator, but the bytes are not there: it says so."""
    name = f"lost-{time.time_ns()}.dat"
    operator_lake.client.add_replicas(
        "DESY-DISK", [{"scope": "user.escape", "name": name, "bytes": 4, "adler32": "0275010b"}]
    )
    with pytest.raises(LakeError, match=r"Downloading user\.escape:lost-") as err:
        access.path(f"user.escape:{name}")
    assert "404" in err.value.message and "Nothing incomplete was kept" in err.value.hint
    assert not [p for p in access.cache.root.rglob("*") if p.is_file()]


def test_no_readable_protocol_says_make_available(access: Access) -> None:
    from escape_portal.lake import FileInfo, FileReplicas

    file = FileInfo("user.escape", "far-away.dat", 4, "0275010b")
    remote = FileReplicas(
        "user.escape",
        "far-away.dat",
        4,
        "0275010b",
        states={"FAR-TAPE": "AVAILABLE"},
        pfns={"FAR-TAPE": ["root://tape.example.org//far-away.dat"]},
    )
    with pytest.raises(NotAvailableHere, match="FAR-TAPE") as err:
        access._locate(file, remote)
    assert "make-available user.escape:far-away.dat" in err.value.hint


def test_a_mount_without_file_urls_is_read_in_place(
    lake: Lake, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    """A hub mounts the storage (EOS, CephFS) that Rucio reaches only over http/root."""
    from escape_portal.lake import FileReplicas

    file = DID("cta", "crab-2024.dl3.0001.fits")
    [rep] = list(lake.file_replicas([file]))
    rse = next(r for r, state in rep.states.items() if state == "AVAILABLE")
    remote_only = FileReplicas(
        rep.scope,
        rep.name,
        rep.bytes,
        rep.adler32,
        {rse: "AVAILABLE"},
        {rse: [p for p in rep.pfns[rse] if not p.startswith("file:")]},
    )
    assert remote_only.local_path(rse) is None
    mount = embedded_lake.paths.rse_dir(rse)  # where a hub would mount that storage
    access = Access(lake, Cache(tmp_path), mounted_rse=rse, mount_path=mount)
    located = access._locate(next(iter(lake.files(file))), remote_only)
    assert located.way == "mounted" and located.path is not None
    assert located.path.is_relative_to(mount) and located.path.stat().st_size == rep.bytes
    elsewhere = Access(lake, Cache(tmp_path), mounted_rse=rse, mount_path=tmp_path / "empty")
    assert elsewhere._locate(next(iter(lake.files(file))), remote_only).way == "download"


def test_without_a_storage_token_no_remote_replica_is_read(
    lake: Lake, fresh_dataset: DID, tmp_path: Path
) -> None:
    """The operator's userpass session has no storage token; the storage lets nothing out."""
    access = Access(lake, Cache(tmp_path / "cache"))
    first = next(iter(lake.files(fresh_dataset)))
    with pytest.raises(LakeError) as err:
        access.path(DID(first.scope, first.name))
    assert "403" in str(err.value) or "401" in str(err.value) or "token" in str(err.value).lower()
    assert not [p for p in access.cache.root.rglob("*") if p.is_file()]
