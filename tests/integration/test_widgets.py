"""The widgets driven programmatically against the embedded lake (no browser)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from escape_portal.access import Access, Cache
from escape_portal.lake import DID, Lake
from escape_portal.widgets import LakeBrowser, ProgressWidget, VOSearch

pytestmark = pytest.mark.lake

FAST = {"first_interval": 0.5, "max_interval": 2.0, "timeout": 120.0}


@pytest.fixture()
def access(lake: Lake, tmp_path: Path) -> Access:
    return Access(lake, cache=Cache(tmp_path / "cache"))


def test_search_then_first_page_of_100k_files_with_next_page(lake: Lake, access: Access) -> None:
    browser = LakeBrowser(lake, access=access)
    assert browser.wait(30)
    assert "cta" in [e.did for e in browser.entries]

    browser.search("cta:crab*", type="dataset", filters="target=Crab")
    assert browser.wait(30)
    assert not browser.error
    assert {e.did for e in browser.entries} >= {"cta:crab-2024.dl3"}

    browser.search("scale:files-*", type="dataset")
    assert browser.wait(30)
    browser.select("scale:files-100k")
    assert browser.wait(30)
    assert "100000 files" in browser.details.value
    started = time.monotonic()
    browser.browse_into()
    assert browser.wait(30)
    assert time.monotonic() - started < 5.0  # one page, not 100,000 files
    assert len(browser.items.options) == 100
    assert browser.entries[0].did == "scale:files-100k.000000.dat"
    assert not browser.next_button.disabled
    assert browser.model.location == ["scale", "scale:files-100k"]

    browser.next_button.click()
    assert browser.wait(30)
    assert browser.entries[0].did == "scale:files-100k.000100.dat"
    assert "101 to 200" in browser.page_label.value
    browser.previous_button.click()
    assert browser.wait(30)
    assert browser.entries[0].did == "scale:files-100k.000000.dat"
    browser.close()


def test_make_available_through_the_button_reaches_available(
    lake: Lake, fresh_dataset: DID, access: Access
) -> None:
    browser = LakeBrowser(lake, access=access, start=False, watch_options=FAST)
    browser.search(f"{fresh_dataset.scope}:{fresh_dataset.name}")
    assert browser.wait(30)
    browser.select(str(fresh_dataset))
    assert browser.wait(30)
    assert "PIC-DISK" in browser.details.value
    browser.make_available_button.click()
    assert browser.wait(60), browser.status.value
    assert not browser.error, browser.error
    assert "will be copied" in browser.placement.value
    assert "CERN-DISK" in browser.placement.value  # where it goes, and why
    [progress] = browser.requests
    assert isinstance(progress, ProgressWidget)
    assert progress.wait(120), progress.model.describe()
    assert progress.state == "available"
    assert progress.bar.value == 1.0
    assert progress.bar.bar_style == "success"
    assert "available" in progress.status.value
    browser.close()


def test_vo_search_for_the_crab_links_rows_draws_them_and_opens_one(
    lake: Lake, access: Access
) -> None:
    vo = VOSearch(lake, access=access, timeout=30)
    assert vo.wait(30), vo.status.value
    assert len(vo.selected_services) >= 1
    vo.run(pos="83.6331 22.0145", radius=1.0)
    assert vo.wait(60), vo.status.value
    assert not vo.error, vo.error
    assert vo.status.value == ""  # no "Searching..." left once the results are shown
    results = vo.results
    assert results is not None and results.linked
    assert "ok" in vo.statuses.value
    assert "escape-portal-linked" in vo.table.value
    svg = vo.sky.value
    assert svg.startswith("<svg") and "escape-portal-sky-search" in svg
    for i in results.linked:
        assert f'data-row="{i}"' in svg
        assert f'data-lake-did="{results.rows[i]["lake_did"]}"' in svg
    first = results.linked[0]
    assert "(" in results.rows[first]["lake_sites"]  # storage element (site)

    vo.open_data(first)
    assert vo.wait(60), vo.status.value
    assert not vo.error, vo.error
    opened = vo.last_opened
    assert opened is not None and opened.paths and opened.paths[0].is_file()
    assert str(opened.did) == results.rows[first]["lake_did"]
    assert "FITS preview" in vo.opened.value
    vo.close()


def test_vo_search_by_name_resolves_with_the_lake_resolver(lake: Lake, access: Access) -> None:
    vo = VOSearch(lake, access=access, timeout=30)
    assert vo.wait(30)
    vo.run(name="Crab", radius=1.0, product="event")
    assert vo.wait(60)
    assert not vo.error, vo.error
    assert vo.results is not None and vo.results.centre is not None
    assert abs(vo.results.centre[0] - 83.63) < 0.01
    assert all(r["dataproduct_type"] == "event" for r in vo.results.rows)
    vo.close()


def test_errors_are_shown_in_the_users_words(lake: Lake, access: Access) -> None:
    browser = LakeBrowser(lake, access=access, start=False)
    browser.search("nosuchscope:*")
    assert browser.wait(30)
    assert "There is no scope" in browser.error and "Known scopes" in browser.error
    browser.search("cta:*", filters="not a filter")
    assert browser.wait(30)
    assert "is not a filter" in browser.error
    browser.close()
