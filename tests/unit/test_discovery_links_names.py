from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from astropy.coordinates.name_resolve import sesame_url
from astropy.table import Table

from escape_portal.discovery import Link, datalinks, resolve_name
from escape_portal.errors import InvalidRequest, NotFound, ServiceUnavailable
from tests.vo_services import FakeVOService


@pytest.fixture()
def fake() -> Iterator[FakeVOService]:
    with FakeVOService("good") as f:
        yield f


@pytest.fixture()
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def no_sesame(closed_port: int) -> Iterator[None]:
    """Sesame pointed at a closed local port: fails at once, never reaches the internet."""
    with sesame_url.set([f"http://127.0.0.1:{closed_port}/nph-sesame/"]):
        yield


def test_datalinks_of_a_url(fake: FakeVOService) -> None:
    links = datalinks(f"{fake.base}/datalink/links?ID=ivo://escape.eu/lake?cta:x", timeout=5)
    assert [link.semantics for link in links] == ["#this", "#preview", "#cutout", "#calibration"]
    this = links[0]
    assert this.url.endswith("/data/ivo://escape.eu/lake?cta:x.fits")
    assert this.content_type == "application/fits"
    assert this.content_length == 123456
    assert links[2].service_def == "soda-sync"
    assert links[3].error.startswith("NotFoundFault")


def test_datalinks_of_a_row(fake: FakeVOService) -> None:
    table = Table(
        {
            "access_url": [f"{fake.base}/datalink/links?ID=abc", "http://x/file.fits"],
            "access_format": ["application/x-votable+xml;content=datalink", "application/fits"],
            "access_estsize": [10, 2],
        }
    )
    assert datalinks(table[0], timeout=5)[0].url.endswith("/data/abc.fits")
    # a row that is not a DataLink pointer is its own #this link, without a request
    assert datalinks(table[1]) == [
        Link(
            url="http://x/file.fits",
            semantics="#this",
            content_type="application/fits",
            content_length=2048,
        )
    ]
    with pytest.raises(InvalidRequest, match="no access_url"):
        datalinks(Table({"x": [1]})[0])


def test_datalink_service_down(closed_port: int) -> None:
    with pytest.raises(ServiceUnavailable) as info:
        datalinks(f"http://127.0.0.1:{closed_port}/datalink/links?ID=x", timeout=2)
    assert "could not connect" in str(info.value)
    assert info.value.url.startswith("http://127.0.0.1")


def test_datalink_html_answer() -> None:
    with FakeVOService("html") as f, pytest.raises(ServiceUnavailable, match="HTML"):
        datalinks(f"{f.base}/tap/sync", timeout=5)


def test_resolve_with_the_local_resolver(fake: FakeVOService, no_sesame: None) -> None:
    crab = resolve_name("Crab", resolver_url=f"{fake.base}/resolve")
    assert crab.ra.deg == pytest.approx(83.6331)
    assert crab.dec.deg == pytest.approx(22.0145)


def test_unknown_name(fake: FakeVOService, no_sesame: None) -> None:
    with pytest.raises(NotFound, match="No resolver knows the name 'Nowhere'"):
        resolve_name("Nowhere", resolver_url=f"{fake.base}/resolve")


def test_no_resolver_reachable(closed_port: int, no_sesame: None) -> None:
    with pytest.raises(ServiceUnavailable) as info:
        resolve_name("Crab", resolver_url=f"http://127.0.0.1:{closed_port}/resolve", timeout=2)
    text = str(info.value)
    assert text.startswith("No name resolver could be reached (tried ")
    assert f"127.0.0.1:{closed_port}/resolve" in text and "Sesame" in text
    assert "give coordinates instead" in text.lower()


def test_empty_name() -> None:
    with pytest.raises(InvalidRequest):
        resolve_name("  ")
