"""Widget models without widgets or a lake: paging, parsing, progress, sky view, VO form."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from escape_portal.config import LakeConfig
from escape_portal.errors import InvalidRequest, LakeUnavailable
from escape_portal.events import ProgressEvent
from escape_portal.lake import Rule, RuleProgress
from escape_portal.widgets import Listing, ProgressModel, SkyRow, VOForm, VOSearchModel, sky_svg
from escape_portal.widgets.browser import parse_filter_text, parse_search
from escape_portal.widgets.vo import VOResults, parse_position, parse_range


class Counted:
    """A listing stream that counts the items read and how often it was started."""

    def __init__(self, n: int, fail_after: int | None = None) -> None:
        self.n = n
        self.read = 0
        self.started = 0
        self.fail_after = fail_after

    def __call__(self) -> Iterator[int]:
        self.started += 1
        fail = self.fail_after if self.started == 1 else None
        for i in range(self.n):
            if fail is not None and i == fail:
                raise LakeUnavailable("The lake went away.", "Try again.")
            self.read += 1
            yield i


def test_listing_reads_one_page_then_continues_the_same_stream() -> None:
    stream = Counted(100_000)
    listing = Listing("files", stream, size=100)
    page = listing.first()
    assert page.items == list(range(100)) and page.next_cursor
    assert stream.read == 101  # one page and a look ahead, not 100,000
    page = listing.next()
    assert page.items == list(range(100, 200))
    assert stream.started == 1 and stream.read == 201
    assert listing.has_previous and listing.has_next
    assert listing.previous().items == list(range(100))
    assert listing.next().items == list(range(100, 200))  # kept, not read again
    assert stream.read == 201
    listing.close()


def test_listing_last_page_and_reading_again_after_a_broken_stream() -> None:
    stream = Counted(250, fail_after=150)
    listing = Listing("files", stream, size=100)
    listing.first()
    page = listing.next()  # the first stream breaks at 150: read again from the cursor
    assert page.items == list(range(100, 200))
    assert stream.started == 2
    last = listing.next()
    assert last.items == list(range(200, 250)) and last.next_cursor is None
    assert not listing.has_next
    with pytest.raises(InvalidRequest, match="last page"):
        listing.next()


def test_listing_checks_the_page_size_as_the_library_does() -> None:
    with pytest.raises(InvalidRequest, match="out of range"):
        Listing("x", lambda: [], size=0)


def test_search_text_and_filters() -> None:
    assert parse_search("cta:crab*") == ("cta", "crab*")
    assert parse_search("cta:") == ("cta", "*")
    assert parse_search(" crab* ") == (None, "crab*")
    with pytest.raises(InvalidRequest, match="names no scope"):
        parse_search(":x")
    assert parse_filter_text("target=Crab, ra>80;dec<=30\n") == ["target=Crab", "ra>80", "dec<=30"]


def _progress(state: str, ok: int, total: int, done: int, size: int, error: str | None = None):
    rule = Rule(
        "r1",
        "cta",
        "x",
        "root",
        "CERN-DISK",
        1,
        state,
        ok,
        total - ok,
        0,
        None,
        dt.datetime.now(dt.UTC),
        error=error,
    )
    return RuleProgress(rule, ok, total, done, size, stuck_reason=error)


def test_progress_model_follows_events() -> None:
    model = ProgressModel("cta:x", rule_id="r1")
    assert model.state == "starting" and model.fraction == 0.0
    model = model.updated(ProgressEvent("r1", _progress("REPLICATING", 1, 3, 100, 300), 12.0))
    assert model.state == "replicating" and model.fraction == pytest.approx(1 / 3)
    assert "1/3 files" in model.describe() and "about 12 s left" in model.describe()
    assert model.bar_style == "info" and not model.done
    model = model.updated(ProgressEvent("r1", _progress("OK", 3, 3, 300, 300), None))
    assert model.state == "available" and model.done and model.bar_style == "success"
    stuck = ProgressModel("cta:x").updated(
        ProgressEvent("r1", _progress("STUCK", 0, 3, 0, 300, "no source"), None)
    )
    assert stuck.state == "stuck" and stuck.bar_style == "danger"
    assert "Stuck: no source" in stuck.describe()


def test_progress_model_with_nothing_to_copy() -> None:
    model = ProgressModel.already_available("cta:x", "CERN-DISK")
    assert model.done and model.fraction == 1.0
    assert "nothing to copy" in model.describe()


def test_sky_view_draws_search_circle_rows_and_linked_rows() -> None:
    rows = [
        SkyRow(0, 83.63, 22.01, 5.0, "Crab", "cta:crab.fits"),
        SkyRow(1, 84.0, 22.5, None, "other <b>"),
        SkyRow(2, 263.63, -22.01, 1.0, "far side"),  # behind the centre: not drawn
    ]
    svg = sky_svg(rows, (83.6331, 22.0145), 1.0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'class="escape-portal-sky"' in svg and "escape-portal-sky-search" in svg
    assert svg.count('class="escape-portal-sky-row escape-portal-sky-linked"') == 1
    assert 'data-lake-did="cta:crab.fits"' in svg and 'data-row="1"' in svg
    assert 'data-row="2"' not in svg
    assert "other &lt;b&gt;" in svg  # escaped
    assert "2 shown" in svg


def test_sky_view_wraps_right_ascension_at_zero() -> None:
    svg = sky_svg([SkyRow(0, 359.9, 0.0), SkyRow(1, 0.1, 0.0)], (0.05, 0.0), 0.5)
    assert "2 shown" in svg


def _lake(vo_url: str | None = "http://vo.example") -> Any:
    config = LakeConfig(
        name="test", rucio_host="http://rucio.example", vo_url=vo_url, compute_site="CERN"
    )
    return SimpleNamespace(config=config)


def test_vo_model_defaults_to_the_lakes_registry_and_resolver(monkeypatch) -> None:
    monkeypatch.delenv("IVOA_REGISTRY", raising=False)
    model = VOSearchModel(_lake("http://vo.example/"))
    assert model.registry_url == "http://vo.example/tap"
    assert model.resolver_url == "http://vo.example/resolve"
    other = VOSearchModel(_lake(), registry_url="http://reg/tap", resolver_url="http://r")
    assert (other.registry_url, other.resolver_url) == ("http://reg/tap", "http://r")
    with pytest.raises(InvalidRequest, match="No VO registry"):
        VOSearchModel(None).find_services()


def test_vo_form_becomes_a_checked_query() -> None:
    model = VOSearchModel(None)
    query = model.query(
        VOForm(
            pos="83.6331, 22.0145",
            radius=1.0,
            time="60300..60310",
            product="event",
            collection="crab-2024",
        )
    )
    assert (query.ra, query.dec, query.radius_deg) == (83.6331, 22.0145, 1.0)
    assert query.time_mjd == (60300.0, 60310.0) and query.product_types == ("event",)
    with pytest.raises(InvalidRequest, match="not 'RA DEC'"):
        model.query(VOForm(pos="83.6"))
    with pytest.raises(InvalidRequest, match="off the sky"):
        model.query(VOForm(pos="83.6 95"))
    with pytest.raises(InvalidRequest, match="not a range"):
        model.query(VOForm(pos="1 2", time="soon"))
    with pytest.raises(InvalidRequest, match="Unknown product"):
        model.query(VOForm(pos="1 2", product="movie"))
    assert parse_position("1 2") == (1.0, 2.0)
    assert parse_range("5", "band", "e.g.") == (5.0, 5.0)
    assert parse_range("", "band", "e.g.") is None


def test_vo_results_linked_rows_and_sky() -> None:
    rows = [
        {"s_ra": 83.63, "s_dec": 22.01, "s_fov": 5.0, "lake_did": "cta:a.fits"},
        {"s_ra": None, "s_dec": 22.0, "lake_did": ""},
        {"s_ra": 83.7, "s_dec": 22.1, "s_fov": float("nan"), "lake_did": ""},
    ]
    results = VOResults(SimpleNamespace(), rows, (83.63, 22.01), 1.0)  # type: ignore[arg-type]
    assert results.linked == [0]
    assert [r.index for r in results.sky_rows()] == [0, 2]
    assert 'data-lake-did="cta:a.fits"' in results.sky()
    model = VOSearchModel(None)
    model.results = results
    with pytest.raises(InvalidRequest, match="not a file of the lake"):
        model.open(2)
    with pytest.raises(InvalidRequest, match="no row 7"):
        model.make_available(7)
