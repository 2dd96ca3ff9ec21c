"""Topology and placement against the embedded lake, with its CRIC and perfSONAR feeds."""

import zlib
from dataclasses import replace

import pytest

from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.events import wait_for
from escape_portal.lake import DID, Lake
from escape_portal.placement import make_available, plan
from escape_portal.topology import Topology, load_topology

pytestmark = pytest.mark.lake


def _topology(lake: Lake, site: str, **feeds: str | None) -> Topology:
    cric = feeds.get("cric", lake.config.cric_feed)
    network = feeds.get("perfsonar", lake.config.network_feed)
    return load_topology(lake, compute_site=site, cric=cric, perfsonar=network)


def test_topology_merges_rucio_and_feeds(lake: Lake) -> None:
    topo = _topology(lake, "CERN")
    assert topo.warnings == []
    assert set(topo.sites) == {"CERN", "DESY", "INFN-NA", "PIC", "IN2P3-LAPP"}
    assert topo.storage["CERN-DISK"].mount_path
    assert topo.storage["DESY-DISK"].quota_bytes == 50 * 2**30
    link = topo.link("INFN-NA", "CERN")
    assert link is not None and link.packet_loss and link.throughput_mbps
    assert link.distance is not None  # Rucio's distance rank


@pytest.mark.parametrize(
    ("site", "expected"),
    [("CERN", "CERN-DISK"), ("DESY", "DESY-DISK"), ("IN2P3-LAPP", "LAPP-DISK")],
)
def test_destination_is_the_storage_at_the_compute_site(
    lake: Lake, site: str, expected: str, fresh_dataset: DID
) -> None:
    placement = plan(lake, _topology(lake, site), fresh_dataset, site)  # at PIC only
    assert placement.needs_transfer and placement.destination == expected
    assert placement.destinations[0].rse == expected
    assert "at the compute site" in placement.destinations[0].reasons[0]
    assert [c.rse for c in placement.sources] == ["PIC-DISK"]


def test_data_already_at_compute_is_not_moved(lake: Lake) -> None:
    placement = plan(lake, _topology(lake, "CERN"), "ska:sdc2.continuum", "CERN")
    assert placement.needs_transfer is False and placement.read_from == "CERN-DISK"
    assert "already at CERN-DISK" in placement.summary


def test_best_source_avoids_the_lossy_slow_link(lake: Lake) -> None:
    """km3net data at INFN-NA (lossy link to CERN) and, if present, elsewhere."""
    placement = plan(lake, _topology(lake, "CERN"), "km3net:arca21-2023.events", "CERN")
    infn = next(c for c in placement.sources if c.rse == "INFN-NA-DISK")
    assert any("packet loss" in r for r in infn.reasons)
    if len(placement.sources) > 1 and placement.needs_transfer:
        assert placement.sources[0].rse != "INFN-NA-DISK"


def test_missing_and_garbage_feeds_degrade_with_warnings(lake: Lake, tmp_path) -> None:  # type: ignore[no-untyped-def]
    garbage = tmp_path / "perfsonar.json"
    garbage.write_text('{"measurements": 42}')
    topo = _topology(lake, "CERN", cric=str(tmp_path / "missing.json"), perfsonar=str(garbage))
    assert len(topo.warnings) == 2
    assert any("missing.json" in w for w in topo.warnings)
    placement = plan(lake, topo, "lofar:lotss-dr2.hetdex", "CERN")
    assert placement.warnings[:2] == topo.warnings
    unknown = plan(lake, _topology(lake, "NOWHERE"), "lofar:lotss-dr2.hetdex", "NOWHERE")
    assert any("not a site of this lake" in w for w in unknown.warnings)


def test_make_available_brings_data_that_opens_from_the_mount(
    lake: Lake, embedded_lake: EmbeddedLake, fresh_dataset: DID
) -> None:
    did = fresh_dataset  # at PIC only
    [request] = make_available(lake, _topology(lake, "CERN"), [did], "CERN", lifetime=3600)
    assert request.created and request.rule is not None
    assert request.placement.destination == "CERN-DISK"
    assert wait_for(lake, request.rule.id, timeout=120).state == "available"
    again = make_available(lake, _topology(lake, "CERN"), [did], "CERN")[0]
    # Nothing more to do: no rule, or (while Rucio's dataset summary catches up) the same
    # rule reused, not a second one.
    assert again.rule is None or (not again.created and again.rule.id == request.rule.id)
    from astropy.io import fits

    files = {f.name: f for f in lake.files(did)}
    for rep in lake.file_replicas(f.did for f in files.values()):
        path = rep.local_path("CERN-DISK")
        assert path is not None and path.is_relative_to(embedded_lake.mount_path)
        assert f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}" == files[rep.name].adler32
        with fits.open(path) as hdul:
            assert hdul[0].header["OBJECT"].startswith("fresh")


def test_no_quota_anywhere_is_a_clear_error(lake_config: LakeConfig) -> None:
    from escape_portal.embedded.sites import SITES
    from escape_portal.errors import QuotaExceeded

    lake = Lake(lake_config)
    did = "lofar:lotss-dr2.hetdex"
    holders = {r.rse for r in lake.dataset_replicas(did) if r.available_files}
    # A compute site whose storage lacks the data (other tests and the tour copy it around).
    site = next((s.name for s in SITES if s.rse not in holders), None)
    if site is None:
        pytest.skip(f"{did} is on every storage element just now")
    topo = _topology(lake, site)
    squeezed = Topology(
        topo.sites,
        {
            k: replace(v, quota_bytes=1, used_bytes=1, writable=k not in holders)
            for k, v in topo.storage.items()
        },
        topo.links,
    )
    with pytest.raises(QuotaExceeded, match="quota"):
        make_available(lake, squeezed, [did], site)
