"""Settings of the server extension: traitlets beat the environment; open listings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from escape_portal.errors import InvalidRequest
from escape_portal.lake import Lake
from escape_portal.lake.listings import OpenListings
from escape_portal.server import EscapePortal
from escape_portal.server.service import ServerSettings


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """A JupyterHub-like environment and nothing else (no file, no embedded lake)."""
    return {
        "ESCAPE_PORTAL_CONFIG": str(tmp_path / "none.toml"),
        "ESCAPE_PORTAL_LAKE_DIR": str(tmp_path / "no-lake"),
        "RUCIO_CONFIG": str(tmp_path / "no-rucio.cfg"),
        "RUCIO_BASE_URL": "https://rucio.hub.example",
        "RUCIO_AUTH_TYPE": "oidc",
        "RUCIO_ACCESS_TOKEN": "from-env",
        "ESCAPE_COMPUTE_SITE": "DESY",
        "ESCAPE_MOUNTED_RSE": "DESY-DISK",
    }


def test_environment_alone_as_jupyterhub_sets_it(env: dict[str, str]) -> None:
    config = ServerSettings().resolve(env)
    assert config.rucio_host == "https://rucio.hub.example"
    assert config.auth_type == "oidc" and config.token == "from-env"
    assert (config.compute_site, config.mounted_rse) == ("DESY", "DESY-DISK")


def test_settings_beat_the_environment(env: dict[str, str]) -> None:
    settings = ServerSettings(
        rucio_host="https://rucio.other.example",
        token_file="/run/secrets/token",
        compute_site="CERN",
        mount_path="/eos/lake",
        request_timeout=5,
        vo_url="http://vo.example",
    )
    config = settings.resolve(env)
    assert config.rucio_host == "https://rucio.other.example"
    assert config.token is None and config.token_file == "/run/secrets/token"
    assert config.compute_site == "CERN" and config.mounted_rse == "DESY-DISK"
    assert config.mount_path == "/eos/lake" and config.timeout == 5.0
    assert config.vo_url == "http://vo.example"


def test_unknown_instance_says_which_exist(env: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest, match="No Rucio instance named 'nope'") as caught:
        ServerSettings(instance="nope").resolve(env)
    assert "env" in caught.value.hint


def test_traits_map_onto_settings() -> None:
    app = EscapePortal(instance_name="embedded", compute_site="CERN", max_workers=2)
    settings = app.server_settings()
    assert settings.instance == "embedded"
    assert settings.compute_site == "CERN" and settings.max_workers == 2
    assert settings.rucio_host is None


def _counting(n: int, reads: list[int]) -> Iterator[int]:
    for i in range(n):
        reads.append(i)
        yield i


def test_open_listing_continues_where_the_previous_page_stopped() -> None:
    listings = OpenListings(max_open=2)
    reads: list[int] = []
    pages = []
    cursor = None
    while True:
        page = listings.page("k", lambda: _counting(25, reads), size=10, cursor=cursor)
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    assert reads == list(range(25))  # every item read once
    assert len(listings) == 0


def test_pages_are_the_same_without_open_listings() -> None:
    kept, fresh = OpenListings(max_open=2), OpenListings(max_open=0)
    for listings in (kept, fresh):
        first = listings.page("k", lambda: iter(range(15)), size=10, cursor=None)
        again = Lake.page(iter(range(15)), size=10)
        assert first == again
        second = listings.page("k", lambda: iter(range(15)), size=10, cursor=first.next_cursor)
        assert second.items == list(range(10, 15)) and second.next_cursor is None


def test_open_listings_are_bounded_and_checked() -> None:
    listings = OpenListings(max_open=2)
    for key in "abc":
        listings.page(key, lambda: iter(range(100)), size=5, cursor=None)
    assert len(listings) == 2
    with pytest.raises(InvalidRequest, match="page cursor"):
        listings.page("a", lambda: iter(range(100)), size=5, cursor="garbage!")
    with pytest.raises(InvalidRequest, match="out of range"):
        listings.page("a", lambda: iter(range(100)), size=0, cursor=None)
    listings.close()
    assert len(listings) == 0
