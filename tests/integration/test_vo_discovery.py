"""Discovery through the lake's registry and VO services, linked back to the lake."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from astropy.table import Table

from escape_portal.access import Cache
from escape_portal.config import LakeConfig
from escape_portal.discovery import (
    LinkRule,
    Query,
    Service,
    link_to_lake,
    registry_search,
    search,
    unique_records,
)
from escape_portal.embedded.sites import SITES
from escape_portal.errors import LakeError
from escape_portal.lake import DID, Lake
from escape_portal.vo_ids import publisher_did
from tests.vo_services import FakeVOService

pytestmark = pytest.mark.lake

CRAB = (83.6331, 22.0145)
EVENTS = DID("cta", "crab-2024.dl3.0001.fits")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "escape_portal.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_registry_then_fan_out_with_a_broken_service_beside_the_lake(
    lake_config: LakeConfig, lake: Lake
) -> None:
    assert lake_config.vo_url
    services = registry_search(registry_url=f"{lake_config.vo_url}/tap")
    assert {s.kind for s in services} >= {"tap", "sia2", "scs"}
    with FakeVOService("hang") as hanging, FakeVOService("error-votable") as broken:
        started = time.monotonic()
        result = search(
            [*services, Service("hangs", "tap", hanging.url), Service("broken", "tap", broken.url)],
            Query(pos=CRAB, radius=1.0, dataproduct_type="event"),
            timeout=4.0,
        )
        took = time.monotonic() - started
    assert took < 10, "a hanging service held the search"
    states = {s.service.name: s.state for s in result.statuses}
    assert states["hangs"] == "timeout" and states["broken"] == "error"
    assert all(states[s.name] == "ok" for s in services)
    rows = link_to_lake(unique_records(result.table), lake)
    assert len(rows) == 4  # the four Crab event lists, once each although three services had them
    assert set(rows["dataproduct_type"]) == {"event"}
    assert all(rows["lake_link"] == "publisher DID")
    first = rows[list(rows["lake_did"]).index(str(EVENTS))]
    assert set(str(first["lake_rses"]).split(",")) >= {"DESY-DISK"}


def test_rows_link_by_publisher_did_replica_url_datalink_and_rule(
    lake_config: LakeConfig, lake: Lake
) -> None:
    [rep] = list(lake.file_replicas([EVENTS]))
    # The davs replica as web clients spell it (https), as a mirror would publish it.
    https = next(url for rse in rep.pfns if (url := rep.url(rse)))
    assert https.startswith("https://")
    datalink = f"{lake_config.vo_url}/datalink/links?ID={publisher_did(EVENTS.scope, EVENTS.name)}"
    rows = Table(
        {
            "obs_publisher_did": [
                publisher_did(EVENTS.scope, EVENTS.name),  # the lake's own record
                "ivo://mirror.example/obs?42",  # a mirror whose access URL is a replica
                "ivo://mirror.example/obs?43",  # a mirror pointing at the lake's DataLink
                "ivo://archive.example/obs?44",  # mapped by a configured rule
                publisher_did("cta", "no-such-file.fits"),  # claims the lake; Rucio disagrees
                "ivo://elsewhere.example/obs?1",  # nothing to do with the lake
            ],
            "access_url": [
                "",
                https,
                datalink,
                "https://archive.example/files/cta/crab-2024.dl3.0002.fits",
                "",
                "https://elsewhere.example/data/1.fits",
            ],
            "access_format": [
                "application/fits",
                "application/fits",
                "application/x-votable+xml;content=datalink",
                "application/fits",
                "application/fits",
                "application/fits",
            ],
        }
    )
    rule = LinkRule(r"archive\.example/files/(?P<scope>[\w.]+)/(?P<name>[^/?]+)$")
    linked = link_to_lake(rows, lake, rules=[rule])
    assert list(linked["lake_link"]) == [
        "publisher DID",
        "replica URL",
        "DataLink replica",
        "rule",
        "",
        "",
    ]
    assert list(linked["lake_did"])[:4] == [str(EVENTS)] * 3 + ["cta:crab-2024.dl3.0002.fits"]
    assert all(linked["lake_rses"][:4])


def test_an_unlinked_row_downloads_into_the_cache_atomically(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    with FakeVOService("good") as web:  # a file on the web, not in the lake
        url = f"{web.base}/data/x.vot"
        path = cache.fetch_url(url)
        assert path.read_bytes() == requests.get(url, timeout=10).content
        assert cache.fetch_url(url) == path  # reused
        assert web.requests.count("/data/x.vot") == 2  # once by the cache, once to compare
    with (
        FakeVOService("hang") as hanging,  # a download that never completes
        pytest.raises(LakeError, match="failed"),
    ):
        cache.fetch_url(f"{hanging.base}/data/x.fits", timeout=1.0)
    assert [p.name for p in cache.entries()] == [path.name]  # nothing half-written remains


def test_cli_vo_search_marks_lake_rows_and_makes_them_available(
    lake_env: dict[str, str], lake: Lake
) -> None:
    registry = _cli(lake_env, "vo", "registry", "--type", "sia2", "--json")
    assert registry.returncode == 0, registry.stderr
    assert [s["kind"] for s in json.loads(registry.stdout)] == ["sia2"]

    bad = _cli(lake_env, "vo", "search", "--pos", "83.6 95", "--radius", "1")
    assert bad.returncode == 2 and "dec" in bad.stderr.lower()  # refused before any request

    text = _cli(lake_env, "vo", "search", "--name", "Crab", "--radius", "1", "--product", "image")
    assert text.returncode == 0, text.stderr
    assert "2 rows, 2 of them lake files" in text.stdout

    # Bring the Crab sky images to the compute of a site whose storage lacks them.
    sky = [f.did for f in lake.files("cta:crab-2024.sky")]
    held = {
        rse for r in lake.file_replicas(sky) for rse, st in r.states.items() if st == "AVAILABLE"
    }
    site = next((s for s in SITES if s.rse not in held), None)
    if site is None:
        pytest.skip("the sky images are on every storage element already")
    done = _cli(
        lake_env,
        *("vo", "search", "--pos", "83.6331 22.0145", "--radius", "1", "--product", "image"),
        *("--make-available", "--site", site.name, "--wait", "--lifetime", "1h", "--json"),
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert len(out["rows"]) == 2 and all(r["lake_did"] for r in out["rows"])
    assert {r["state"] for r in out["requests"]} == {"available"}
    for request in out["requests"]:
        assert request["rule"]["rse_expression"] == site.rse
        states = lake.dataset_replicas(request["did"])
        assert any(r.rse == site.rse and r.state == "AVAILABLE" for r in states)
