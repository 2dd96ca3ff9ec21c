"""The replica choice on its own: ordering, protocol preference and reasons.

The lake is not asked anything here: the choice works on the replicas and topology it
is given (what Rucio and the feeds answered), so these are plain inputs, not fakes.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from escape_portal.lake import FileInfo, FileReplicas, Lake
from escape_portal.replicas import ReplicaChooser
from escape_portal.storage import scrub
from escape_portal.topology import Link, Site, StorageElement, Topology

FILE = FileInfo("cta", "a.fits", 10, "0000000a")


def _topology() -> Topology:
    sites = {n: Site(n) for n in ("HERE", "NEAR", "FAR")}
    storage = {
        "HERE-DISK": StorageElement("HERE-DISK", "HERE"),
        "NEAR-DISK": StorageElement("NEAR-DISK", "NEAR"),
        "FAR-DISK": StorageElement("FAR-DISK", "FAR"),
        "DOWN-DISK": StorageElement("DOWN-DISK", "NEAR", readable=False),
    }
    links = {
        ("NEAR", "HERE"): Link("NEAR", "HERE", throughput_mbps=9000, latency_ms=5),
        ("FAR", "HERE"): Link("FAR", "HERE", throughput_mbps=800, latency_ms=40),
    }
    return Topology(sites, storage, links)


def _replicas(states: dict[str, str]) -> FileReplicas:
    pfns = {
        rse: [
            f"http://{rse}/cta/a.fits",
            f"root://{rse}//cta/a.fits",
            f"davs://{rse}/cta/a.fits",
            f"file:///nowhere/{rse}/cta/a.fits",
        ]
        for rse in states
    }
    return FileReplicas("cta", "a.fits", 10, "0000000a", states, pfns)


def _chooser(**kwargs: object) -> ReplicaChooser:
    return ReplicaChooser(
        cast(Lake, None),
        compute_site="HERE",
        topology=_topology(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_nearest_first_then_wan_protocol_order() -> None:
    states = {"FAR-DISK": "AVAILABLE", "NEAR-DISK": "AVAILABLE", "DOWN-DISK": "AVAILABLE"}
    choice = _chooser().choose(FILE, _replicas(states))
    order = [(s.rse, s.scheme) for s in choice.sources]
    assert order == [
        ("NEAR-DISK", "davs"),
        ("NEAR-DISK", "root"),
        ("NEAR-DISK", "http"),
        ("FAR-DISK", "davs"),
        ("FAR-DISK", "root"),
        ("FAR-DISK", "http"),
    ]
    assert "9000 Mb/s" in choice.sources[0].reason and "WAN" in choice.sources[0].reason
    reasons = {(s.rse, s.reason) for s in choice.skipped}
    assert ("DOWN-DISK", "the storage is marked not readable") in reasons
    assert any("file:// is read only" in r for _, r in reasons)
    assert choice.explain().startswith("cta:a.fits: NEAR-DISK at NEAR")


def test_lan_prefers_root_and_skips_missing_local_files() -> None:
    choice = _chooser().choose(FILE, _replicas({"HERE-DISK": "AVAILABLE"}))
    assert [s.scheme for s in choice.sources] == ["root", "davs", "http"]
    assert any("not on this machine" in s.reason for s in choice.skipped)


def test_unavailable_and_unknown_replicas_are_left_out_with_why() -> None:
    states = {"NEAR-DISK": "COPYING", "ELSEWHERE": "AVAILABLE"}
    choice = _chooser().choose(FILE, _replicas(states))
    assert choice.sources == [] and choice.way is None
    assert {s.rse: s.reason for s in choice.skipped} == {
        "NEAR-DISK": "the replica is copying, not available",
        "ELSEWHERE": "not a storage element this lake lists",
    }
    assert "No replica of cta:a.fits can be read from here" in choice.explain()


def test_mounted_then_cache_come_first(tmp_path: Path) -> None:
    mounted = tmp_path / "m.fits"
    cached = tmp_path / "c.fits"
    chooser = _chooser(
        mounted=lambda replicas, rse: mounted,
        mounted_rse="FAR-DISK",
        cached=lambda file: cached,
    )
    choice = chooser.choose(FILE, _replicas({"FAR-DISK": "AVAILABLE"}))
    assert [s.kind for s in choice.sources[:2]] == ["mounted", "cache"]
    assert choice.way == "mounted" and choice.sources[0].path == mounted


def test_forced_protocols() -> None:
    choice = _chooser(protocols=["root"]).choose(FILE, _replicas({"NEAR-DISK": "AVAILABLE"}))
    assert [s.scheme for s in choice.sources] == ["root"]


def test_tokens_are_scrubbed_from_messages() -> None:
    token = "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"
    text = f"open root://h//f?authz=Bearer%20{token} failed; header Bearer {token}"
    clean = scrub(text, token)
    assert token not in clean and "authz=…" in clean
