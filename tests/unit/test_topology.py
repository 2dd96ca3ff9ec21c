import datetime as dt
import json
from pathlib import Path

import pytest

from escape_portal.topology import (
    Site,
    StorageElement,
    Topology,
    _from_cric,
    _from_perfsonar,
    detect_compute_site,
    read_feed,
)

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def _topology() -> Topology:
    t = Topology()
    t.sites["CERN"] = Site("CERN", "CH", 46.23, 6.05)
    t.sites["DESY"] = Site("DESY", "DE", 53.57, 9.88)
    t.storage["CERN-DISK"] = StorageElement("CERN-DISK", "CERN", ("file",))
    return t


def test_compute_site_configured_beats_detected() -> None:
    env = {"SITE_NAME": "DESY", "ESCAPE_COMPUTE_SITE": "CERN"}
    assert detect_compute_site("PIC", env) == "PIC"
    assert detect_compute_site(None, env) == "CERN"
    assert detect_compute_site(None, {"SITE_NAME": "DESY"}) == "DESY"
    assert detect_compute_site(None, {}) is None


def test_link_km_from_coordinates_either_direction() -> None:
    t = _topology()
    link = t.link("DESY", "CERN")
    assert link is not None and link.km is not None and 850 < link.km < 870
    assert t.link("CERN", "CERN") is not None and t.link("CERN", "CERN").km == 0.0  # type: ignore[union-attr]
    assert t.link("CERN", "NOWHERE") is None


def test_cric_adds_mounts_and_unknown_storage_as_read_only() -> None:
    t = _topology()
    feed = {
        "sites": {"PIC": {"country": "ES", "latitude": 41.5, "longitude": 2.1, "compute": ["hub"]}},
        "rses": {
            "CERN-DISK": {"site": "CERN", "protocols": [{"scheme": "file", "mount": "/eos/lake"}]},
            "PIC-TAPE": {"site": "PIC", "protocols": [{"scheme": "root"}]},
        },
    }
    _from_cric(feed, t, "cric.json")
    assert t.storage["CERN-DISK"].mount_path == "/eos/lake"
    assert t.storage["PIC-TAPE"].writable is False and t.storage["PIC-TAPE"].schemes == ("root",)
    assert t.sites["PIC"].compute == ("hub",)
    with pytest.raises(ValueError, match="CRIC-style"):
        _from_cric(["not", "an", "object"], t, "bad.json")


def test_perfsonar_merges_and_warns_when_stale() -> None:
    t = _topology()
    fresh = (NOW - dt.timedelta(hours=1)).isoformat()
    old = (NOW - dt.timedelta(days=3)).isoformat()
    feed = {
        "measurements": [
            {
                "source": "DESY",
                "destination": "CERN",
                "throughput_mbps": 900,
                "latency_ms": 9.5,
                "packet_loss": 0.001,
                "measured_at": fresh,
            },
            {"source": "PIC", "destination": "CERN", "throughput_mbps": 100, "measured_at": old},
            {"garbage": True},
        ]
    }
    _from_perfsonar(feed, t, "ps.json", NOW, dt.timedelta(hours=24))
    link = t.link("CERN", "DESY")
    assert link is not None and link.throughput_mbps == 900 and link.km is not None
    assert any("older than" in w and "1 network" in w for w in t.warnings)
    with pytest.raises(ValueError, match="perfSONAR-style"):
        _from_perfsonar({"rows": []}, t, "bad.json", NOW, dt.timedelta(hours=1))


def test_read_feed_errors_name_the_source(tmp_path: Path) -> None:
    bad = tmp_path / "feed.json"
    bad.write_text("<html>not json</html>")
    with pytest.raises(ValueError, match=str(bad)):
        read_feed(str(bad))
    good = tmp_path / "ok.json"
    good.write_text(json.dumps({"rses": {}}))
    assert read_feed(str(good)) == {"rses": {}}
    with pytest.raises(ValueError, match="cannot read feed"):
        read_feed("http://127.0.0.1:9/feed.json", timeout=2)
