"""Browsing and searching the embedded lake through the lake library."""

import itertools
import tracemalloc

import pytest

from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake


def test_scopes_and_collections(lake: Lake) -> None:
    assert {"cta", "lofar", "km3net", "ska", "scale"} <= set(lake.scopes())
    collections = {str(d.did): d.type for d in lake.dids("cta", type="collection")}
    assert collections["cta:crab-2024"] == "container"
    assert collections["cta:crab-2024.dl3"] == "dataset"
    assert all(t in ("container", "dataset") for t in collections.values())


def test_name_pattern_and_type(lake: Lake) -> None:
    found = [str(d.did) for d in lake.dids("cta", "crab-2024.dl3.*", type="file")]
    assert found == [f"cta:crab-2024.dl3.{i:04d}.fits" for i in range(1, 5)]


def test_contents_info_metadata_parents(lake: Lake) -> None:
    children = sorted(str(c.did) for c in lake.contents("cta:crab-2024"))
    assert children == ["cta:crab-2024.dl3", "cta:crab-2024.sky"]
    info = lake.info("cta:crab-2024.dl3")
    assert (info.type, info.length) == ("dataset", 4)
    assert info.bytes and info.bytes > 4 * 2880
    meta = lake.metadata("cta:crab-2024.dl3.0001.fits")
    assert meta["target"] == "Crab" and meta["facility"] == "CTAO"
    assert meta["dataproduct_type"] == "event" and abs(meta["ra"] - 83.6331) < 1e-6
    assert [str(p.did) for p in lake.parents("cta:crab-2024.dl3")] == ["cta:crab-2024"]


def test_metadata_search_with_operators(lake: Lake) -> None:
    crab = {str(d.did) for d in lake.dids("cta", type="dataset", filters=["target=Crab"])}
    assert crab == {"cta:crab-2024.dl3", "cta:crab-2024.sky"}
    south = {str(d.did) for d in lake.dids("cta", type="file", filters=["dec<0"])}
    assert south == {f"cta:pks2155-2023.dl3.{i:04d}.fits" for i in range(1, 4)}
    events = list(
        lake.dids("cta", type="file", filters={"dataproduct_type": "event", "ra.gt": 84.0})
    )
    assert {d.type for d in events} == {"file"}
    assert {str(d.did) for d in events} >= {
        "cta:crab-2024.dl3.0003.fits",
        "cta:pks2155-2023.dl3.0001.fits",
    }
    assert list(lake.dids("lofar", filters=["target=Nothing-Like-This"])) == []


def test_files_have_size_and_checksum(lake: Lake) -> None:
    files = list(lake.files("lofar:lotss-dr2"))  # a container: files of all its datasets
    assert len(files) == 4
    assert all(f.bytes > 0 and f.adler32 and len(f.adler32) == 8 for f in files)


def test_first_page_of_100k_dataset_without_reading_it_whole(lake: Lake) -> None:
    tracemalloc.start()
    try:
        stream = lake.files("scale:files-100k")
        page = Lake.page(stream, size=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(page.items) == 100 and page.next_cursor
    assert page.items[0].name == "files-100k.000000.dat"
    # 100,000 records would take tens of MB; one page and a streaming buffer take little.
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB: the listing was not streamed"


def test_cursor_pages_follow_each_other(lake: Lake) -> None:
    did = DID("scale", "files-10k")
    first = Lake.page(lake.files(did), size=250)
    second = Lake.page(lake.files(did), size=250, cursor=first.next_cursor)
    expected = [f.name for f in itertools.islice(lake.files(did), 250, 500)]
    assert [f.name for f in second.items] == expected
    last = Lake.page(lake.files(did), size=250, cursor=_cursor_at(9_900))
    assert len(last.items) == 100 and last.next_cursor is None


def _cursor_at(offset: int) -> str:
    from escape_portal.lake.models import encode_cursor

    return encode_cursor(offset)


def test_dataset_replica_summary_per_site(lake: Lake) -> None:
    summary = lake.dataset_replicas("scale:files-100k")
    by_rse = {r.rse: r for r in summary}
    assert by_rse["INFN-NA-DISK"].site == "INFN-NA"
    assert by_rse["INFN-NA-DISK"].total_files == 100_000
    container = {r.rse: r for r in lake.dataset_replicas("cta:crab-2024")}
    assert {"DESY-DISK", "LAPP-DISK"} <= set(container)
    assert container["DESY-DISK"].available_files == 4
    assert container["DESY-DISK"].total_files == 6  # the container has 6 files in all


def test_a_new_datasets_replica_status_is_exact_at_once(lake: Lake, fresh_dataset: DID) -> None:
    """Counted from the files' replicas, not from Rucio's background summaries."""
    by_rse = {r.rse: r for r in lake.dataset_replicas(fresh_dataset)}
    assert set(by_rse) == {"PIC-DISK"}
    assert by_rse["PIC-DISK"].available_files == by_rse["PIC-DISK"].total_files == 3
    assert by_rse["PIC-DISK"].state == "AVAILABLE"
    rule, _ = lake.add_rule(fresh_dataset, "LAPP-DISK", lifetime=600)
    try:
        # A rule still copying shows its storage (at 0 of 3 until the copies arrive).
        copying = {r.rse: r for r in lake.dataset_replicas(fresh_dataset)}
        assert "LAPP-DISK" in copying and copying["LAPP-DISK"].total_files == 3
        assert copying["PIC-DISK"].available_files == 3
    finally:
        lake.delete_rule(rule.id)


def test_per_file_replicas_for_shown_rows(lake: Lake) -> None:
    files = [f.did for f in lake.files("ska:sdc2.continuum")]
    replicas = list(lake.file_replicas(files))
    assert len(replicas) == 2
    for rep in replicas:
        assert rep.states.get("CERN-DISK") == "AVAILABLE"
        path = rep.local_path("CERN-DISK")
        assert path is not None and path.is_file()
