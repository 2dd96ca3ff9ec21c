"""Widget state and events with the lake faked at its boundary (no browser, no lake)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from escape_portal.config import LakeConfig
from escape_portal.errors import NotFound
from escape_portal.events import ProgressEvent
from escape_portal.lake import DatasetReplica, DIDInfo, FileInfo, Rule, RuleProgress
from escape_portal.lake.models import as_did
from escape_portal.widgets import LakeBrowser, ProgressModel, ProgressWidget
from escape_portal.widgets.background import Background


class FakeLake:
    """The lake library's surface the browser uses, with a 100,000-file dataset."""

    def __init__(self) -> None:
        self.config = LakeConfig(
            name="fake", rucio_host="http://rucio.example", compute_site="CERN"
        )
        self.files_read = 0

    def scopes(self) -> list[str]:
        return ["cta", "scale"]

    def dids(self, scope: str, pattern: str = "*", **kw: Any) -> Iterator[DIDInfo]:
        if scope not in self.scopes():
            raise NotFound(f"There is no scope {scope!r} on fake.", "Known scopes: cta, scale.")
        yield DIDInfo(scope, "big", "dataset", 4_400_000, 100_000)

    def info(self, did: Any) -> DIDInfo:
        d = as_did(did)
        if d.name == "big":
            return DIDInfo(d.scope, d.name, "dataset", 4_400_000, 100_000)
        return DIDInfo(d.scope, d.name, "file", 44, None)

    def files(self, did: Any, limit: int | None = None) -> Iterator[FileInfo]:
        d = as_did(did)
        for i in range(100_000):
            self.files_read += 1
            yield FileInfo(d.scope, f"big.{i:06d}.dat", 44, "00000001")

    def metadata(self, did: Any) -> dict[str, Any]:
        return {"target": "Crab <script>"}

    def dataset_replicas(self, did: Any) -> list[DatasetReplica]:
        d = as_did(did)
        return [
            DatasetReplica(d.scope, d.name, "CERN-DISK", "CERN", 10, 10, 440, 440, "AVAILABLE"),
            DatasetReplica(d.scope, d.name, "DESY-DISK", "DESY", 5, 10, 220, 440, "INCOMPLETE"),
        ]

    def rules(self, did: Any) -> list[Rule]:
        return [_rule("REPLICATING", 1, 3)]

    def rule_progress(self, rule_id: str) -> RuleProgress:
        return RuleProgress(_rule("REPLICATING", 1, 3), 1, 3, 100, 300)


def _rule(state: str, ok: int, total: int) -> Rule:
    return Rule(
        "abcdef0123",
        "cta",
        "big",
        "root",
        "CERN-DISK",
        1,
        state,
        ok,
        total - ok,
        0,
        None,
        dt.datetime.now(dt.UTC),
    )


class FakeNear:
    compute_site = "CERN"
    topology = SimpleNamespace(warnings=["feed missing"])

    def km(self, site: str | None) -> float | None:
        return {"CERN": 0.0, "DESY": 861.0}.get(site or "")


@pytest.fixture()
def browser() -> LakeBrowser:
    widget = LakeBrowser(FakeLake(), inline=True, start=False)  # type: ignore[arg-type]
    widget.model.near = FakeNear()  # type: ignore[assignment]
    return widget


def test_browser_has_stable_css_classes(browser: LakeBrowser) -> None:
    assert "escape-portal-lake-browser" in browser._dom_classes
    assert "escape-portal-next-page" in browser.next_button._dom_classes
    assert "escape-portal-make-available" in browser.make_available_button._dom_classes


def test_scopes_then_a_scope_then_the_first_page_of_a_big_dataset(browser: LakeBrowser) -> None:
    browser.go(None)
    assert [e.did for e in browser.entries] == ["cta", "scale"]
    assert browser.make_available_button.disabled and browser.browse_button.disabled
    browser.select("cta")
    assert not browser.browse_button.disabled and browser.make_available_button.disabled
    browser.browse_into()
    assert [e.did for e in browser.entries] == ["cta:big"]
    browser.select(0)
    assert not browser.make_available_button.disabled
    browser.browse_into()
    lake = browser.lake
    assert len(browser.items.options) == 100 and lake.files_read == 101  # type: ignore[attr-defined]
    assert not browser.next_button.disabled and browser.previous_button.disabled
    assert "more on the next page" in browser.page_label.value
    assert [b.description for b in browser.breadcrumb.children] == ["Scopes", "cta", "cta:big"]
    browser.next_button.click()
    assert browser.entries[0].name == "big.000100.dat"
    assert lake.files_read == 201  # type: ignore[attr-defined]
    assert not browser.previous_button.disabled
    browser.breadcrumb.children[1].click()
    assert browser.model.location == ["cta"]


def test_details_show_replicas_by_site_distance_and_rules(browser: LakeBrowser) -> None:
    browser.search("cta:b*", type="dataset", filters="target=Crab")
    assert "target=Crab" in browser.title.value
    browser.select("cta:big")
    html = browser.details.value
    assert "100000 files" in html and "CERN-DISK" in html and "here" in html
    assert "861 km" in html and "5/10" in html and "replicating" in html and "33%" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "feed missing" in html


def test_errors_are_shown_with_message_and_hint(browser: LakeBrowser) -> None:
    browser.search("nope:*")
    assert "There is no scope" in browser.error and "Known scopes" in browser.error
    browser.search("cta:*", filters="ra~5")
    assert "is not a filter" in browser.error
    browser.open_data()
    assert "No DID is selected" in browser.error


def test_typing_in_the_search_box_searches(browser: LakeBrowser) -> None:
    browser.query.value = "cta:*"
    assert [e.did for e in browser.entries] == ["cta:big"]


def test_progress_widget_updates_from_many_threads() -> None:
    widget = ProgressWidget(None, "r1", label="cta:big", start=False)
    assert "escape-portal-progress" in widget._dom_classes and widget.state == "starting"

    def event(ok: int) -> ProgressEvent:
        rule = _rule("OK" if ok == 3 else "REPLICATING", ok, 3)
        return ProgressEvent("r1", RuleProgress(rule, ok, 3, ok * 100, 300), None)

    threads = [threading.Thread(target=widget.update, args=(event(i % 3),)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    widget.update(event(3))
    assert widget.wait(1) and widget.state == "available"
    assert widget.bar.value == 1.0 and widget.bar.bar_style == "success"
    assert "3/3 files" in widget.status.value


def test_progress_widget_follows_a_watch_on_a_fake_lake() -> None:
    lake = FakeLake()
    states = iter(["REPLICATING", "OK"])

    def rule_progress(rule_id: str) -> RuleProgress:
        state = next(states, "OK")
        ok = 3 if state == "OK" else 1
        return RuleProgress(_rule(state, ok, 3), ok, 3, ok * 100, 300)

    lake.rule_progress = rule_progress  # type: ignore[method-assign]
    widget = ProgressWidget(lake, "r1", label="cta:big", first_interval=0.01)  # type: ignore[arg-type]
    assert widget.wait(10)
    assert widget.state == "available"
    widget.stop()


def test_progress_widget_when_nothing_moves() -> None:
    model = ProgressModel.already_available("cta:big", "CERN-DISK")
    widget = ProgressWidget(None, None, model=model)
    assert widget.wait(0) and widget.bar.value == 1.0
    assert "nothing to copy" in widget.status.value


def test_background_reports_errors_in_the_users_words() -> None:
    seen: list[str] = []
    work = Background()
    work.submit(lambda: 1 / 0, lambda _: None, lambda exc: seen.append(exc.message))
    work.submit(lambda: 2, lambda v: seen.append(f"got {v}"), lambda exc: None)
    assert work.wait(5)
    assert seen[0].startswith("Something unexpected went wrong: ZeroDivisionError")
    assert seen[1] == "got 2"
    work.close()


def test_no_widget_method_hides_one_of_ipywidgets() -> None:
    # A method named like one of ipywidgets.Widget's replaces it: an ``open`` of our own
    # once kept the widgets from opening their comm, so no front end could show them.
    import ipywidgets as widgets

    from escape_portal.widgets import VOSearch

    allowed = {"close"}  # ours call super().close()
    for cls in (LakeBrowser, VOSearch, ProgressWidget):
        hidden = {
            name
            for name, value in vars(cls).items()
            if callable(value) and not name.startswith("_") and hasattr(widgets.VBox, name)
        }
        assert hidden <= allowed, f"{cls.__name__} hides ipywidgets' {sorted(hidden - allowed)}"
