from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from escape_portal.discovery import OBSCORE_COLUMNS, Query, Service, search
from escape_portal.errors import InvalidRequest
from tests.vo_services import ERROR_MESSAGE, FakeFleet, FakeVOService

QUERY = Query(pos=(83.63, 22.01), radius=0.5, maxrec=5)


@pytest.fixture()
def fleet() -> Iterator[FakeFleet]:
    with FakeFleet() as f:
        yield f


def _service(fleet: FakeFleet, behaviour: str, kind: str = "tap", **kw: object) -> Service:
    fake: FakeVOService = fleet.add(behaviour, kind=kind, **kw)  # type: ignore[arg-type]
    return Service(f"{behaviour}-{kind}", kind, fake.url)  # type: ignore[arg-type]


def test_mixed_fleet_partial_results_and_states(fleet: FakeFleet) -> None:
    services = [
        _service(fleet, "good", "tap"),
        _service(fleet, "good", "sia2"),
        _service(fleet, "good", "scs"),
        _service(fleet, "good", "ssa"),
        _service(fleet, "good", "tap", latency=0.3, rows=2),
        _service(fleet, "overflow", "tap"),
        _service(fleet, "html", "tap"),
        _service(fleet, "error-votable", "tap"),
        _service(fleet, "error-plain", "sia2"),
        _service(fleet, "malformed", "tap"),
        _service(fleet, "ratelimit", "tap"),
        _service(fleet, "hang", "tap"),
        _service(fleet, "trickle", "scs"),
    ]
    result = search(services, QUERY, timeout=2.0)
    by = {s.service.name: s for s in result.statuses}

    assert [s.service.name for s in result.statuses][:4] == [
        "good-tap/tap",
        "good-sia2",
        "good-scs",
        "good-ssa",
    ]
    assert by["good-tap/tap"].state == "ok" and by["good-tap/tap"].rows == 3
    assert by["good-tap/tap#2"].rows == 2
    assert by["good-sia2"].state == by["good-scs"].state == by["good-ssa"].state == "ok"
    assert by["overflow-tap"].state == "overflow"
    assert by["overflow-tap"].message == "truncated at 5 rows"
    assert by["html-tap"].message == "answered HTML instead of a VOTable"
    assert by["error-votable-tap"].message == f"HTTP 500: {ERROR_MESSAGE}"
    assert by["error-plain-sia2"].message.startswith("HTTP 500 Internal Server Error")
    assert "database connection lost" in by["error-plain-sia2"].message
    assert by["malformed-tap"].message.startswith("malformed VOTable: ")
    assert by["ratelimit-tap"].message == "rate-limited (HTTP 429), retry after 7 s"
    assert by["ratelimit-tap"].retry_after == 7
    assert by["hang-tap"].state == "timeout"
    assert by["trickle-scs"].state == "timeout"
    assert not result.ok
    assert {s.service.name for s in result.failed} >= {"hang-tap", "html-tap"}
    # a hanging and a trickling service do not hold the result beyond the deadline
    assert result.seconds < 2.0 + 1.5

    table = result.table
    assert len(table) == 3 + 3 + 3 + 3 + 2 + 5
    assert list(table.colnames[: len(OBSCORE_COLUMNS)]) == list(OBSCORE_COLUMNS)
    assert table.colnames[-2:] == ["service", "query"]
    assert set(table["service"]) == {
        "good-tap/tap",
        "good-tap/tap#2",
        "good-sia2",
        "good-scs",
        "good-ssa",
        "overflow-tap",
    }
    tap_rows = table[table["service"] == "good-tap/tap"]
    assert tap_rows["obs_publisher_did"][0].startswith("ivo://escape.eu/lake?cta:")
    assert tap_rows["access_url"][0].endswith("/0.fits")
    assert tap_rows["query"][0].startswith("SELECT TOP 5 * FROM ivoa.obscore WHERE 1=CONTAINS")
    # cone search mapped by UCD, SSA by utype (nm converted to metres)
    scs_rows = table[table["service"] == "good-scs"]
    assert scs_rows["obs_id"][0] == "star-0"
    assert scs_rows["s_ra"][0] == pytest.approx(83.6)
    assert "mag" in table.colnames and np.ma.is_masked(tap_rows["mag"][0])
    assert "POS=" in scs_rows["query"][0] or "RA=" in scs_rows["query"][0]
    ssa_rows = table[table["service"] == "good-ssa"]
    assert ssa_rows["dataproduct_type"][0] == "spectrum"
    assert ssa_rows["em_min"][0] == pytest.approx(400e-9)
    assert ssa_rows["s_dec"][0] == pytest.approx(22.0)
    assert np.ma.is_masked(ssa_rows["obs_publisher_did"][0])
    assert "zenith_angle" in table.colnames
    text = str(result)
    assert "19 rows from 7 of 13 services" in text or "rows from" in text
    assert "hang-tap (tap" in text and "timeout" in text


def test_huge_answer_is_capped(fleet: FakeFleet) -> None:
    huge = _service(fleet, "huge", "tap", huge_mb=6)
    good = _service(fleet, "good", "tap")
    result = search([huge, good], QUERY, timeout=5.0, max_bytes=1024 * 1024)
    status = result.statuses[0]
    assert status.state == "error"
    assert status.message.startswith("answer larger than 1 MB")
    assert result.statuses[1].state == "ok"
    assert len(result.table) == 3


def test_overflow_when_rows_reach_maxrec(fleet: FakeFleet) -> None:
    svc = _service(fleet, "good", "tap", rows=5)
    result = search(svc, QUERY, timeout=5.0)
    assert result.statuses[0].state == "overflow"
    assert "truncated at 5 rows" in result.warnings[-1]


def test_raw_adql_goes_to_tap_only_and_cone_search_needs_a_position(fleet: FakeFleet) -> None:
    tap = _service(fleet, "good", "tap")
    sia2 = _service(fleet, "good", "sia2")
    result = search([tap, sia2], Query(adql="SELECT TOP 3 * FROM ivoa.obscore"), timeout=5.0)
    assert result.statuses[0].state == "ok"
    assert result.statuses[0].query == "SELECT TOP 3 * FROM ivoa.obscore"
    assert result.statuses[1].state == "error"
    assert result.statuses[1].message.startswith("skipped: raw ADQL")
    scs = _service(fleet, "good", "scs")
    result = search([scs, sia2], Query(collection="CTA-DL3"), timeout=5.0)
    assert "needs a position" in result.statuses[0].message
    assert result.statuses[1].state == "ok"


def test_unreachable_service_and_empty_result(fleet: FakeFleet) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = search(Service("gone", "tap", f"http://127.0.0.1:{port}/tap"), QUERY, timeout=3.0)
    assert result.statuses[0].state == "error"
    assert result.statuses[0].message.startswith("could not connect")
    assert len(result.table) == 0
    assert "obs_publisher_did" in result.table.colnames


def test_bad_arguments() -> None:
    with pytest.raises(InvalidRequest, match="No services"):
        search([], QUERY)
    with pytest.raises(InvalidRequest, match="not a Service"):
        search(["http://x"], QUERY)  # type: ignore[list-item]
    with pytest.raises(InvalidRequest, match="unknown kind"):
        Service("x", "soap", "http://x")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="timeout"):
        search(Service("x", "tap", "http://127.0.0.1:9/tap"), QUERY, timeout=0)


def test_few_workers_still_meet_the_deadline(fleet: FakeFleet) -> None:
    services = [_service(fleet, "hang", "tap"), _service(fleet, "good", "tap")]
    result = search(services, QUERY, timeout=1.0, max_workers=1)
    assert [s.state for s in result.statuses] == ["timeout", "timeout"]
    assert result.seconds < 2.5
