"""ADQL translation and execution of the VO publication (no lake needed)."""

from __future__ import annotations

import threading

import pytest

from escape_portal.vo_ids import parse_publisher_did, publisher_did
from escape_portal.vo_publish import adql, vo_schema

ROWS = [
    {"obs_id": "crab", "s_ra": 83.6331, "s_dec": 22.0145, "calib_level": 2,
     "s_region": "Circle ICRS 83.6331 22.0145 0.64", "target_name": "Crab"},
    {"obs_id": "gc", "s_ra": 266.4168, "s_dec": -29.0078, "calib_level": 3,
     "s_region": "Circle ICRS 266.4168 -29.0078 2.5", "target_name": "Galactic Centre"},
    {"obs_id": "sdc2", "s_ra": 0.0, "s_dec": -30.0, "calib_level": 3,
     "s_region": "Circle ICRS 0 -30 0.64", "target_name": "SDC2 field"},
]  # fmt: skip


@pytest.fixture(scope="module")
def db() -> tuple[object, threading.Lock]:
    rows = {"ivoa.obscore": ROWS, **vo_schema.tap_schema_rows()}
    rows["rr.resource"] = [
        {"ivoid": "ivo://escape.eu/lake/tap", "res_title": "ESCAPE data lake TAP",
         "res_description": "Gamma-ray and radio data", "waveband": "gamma-ray#radio"}
    ]  # fmt: skip
    rows["rr.res_subject"] = [{"ivoid": "ivo://escape.eu/lake/tap", "res_subject": "data-lake"}]
    database = vo_schema.build_database(rows)
    adql.register_functions(database)
    return database, threading.Lock()


def run(db: tuple[object, threading.Lock], query: str, maxrec: int = 100) -> adql.QueryResult:
    return adql.run_query(db[0], db[1], query, maxrec)  # type: ignore[arg-type]


def test_select_with_top_translates_to_limit() -> None:
    translation = adql.translate("SELECT TOP 5 obs_id FROM ivoa.obscore")
    assert "LIMIT 5" in translation.sql
    assert [t.qualified for t in translation.tables] == ["ivoa.obscore"]


def test_contains_point_circle(db: tuple[object, threading.Lock]) -> None:
    result = run(
        db,
        "SELECT obs_id FROM ivoa.obscore WHERE "
        "CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 83.6, 22.0, 1)) = 1",
    )
    assert result.rows == [("crab",)]
    assert result.fields[0].ucd == "meta.id"


def test_intersects_region_and_polygon_and_box(db: tuple[object, threading.Lock]) -> None:
    found = run(db, "SELECT obs_id FROM ivoa.obscore WHERE "
                    "INTERSECTS(s_region, CIRCLE('ICRS', 268, -29, 1)) = 1").rows  # fmt: skip
    assert found == [("gc",)]
    found = run(db, "SELECT obs_id FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, "
                    "s_dec), POLYGON('ICRS', 80, 20, 86, 20, 86, 24, 80, 24))").rows  # fmt: skip
    assert found == [("crab",)]
    found = run(db, "SELECT obs_id FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, "
                    "s_dec), BOX('ICRS', 0.5, -30, 2, 2))").rows  # fmt: skip
    assert found == [("sdc2",)]


def test_distance_both_forms(db: tuple[object, threading.Lock]) -> None:
    result = run(db, "SELECT obs_id, DISTANCE(POINT('ICRS', s_ra, s_dec), "
                     "POINT('ICRS', 83.6331, 23.0145)) AS d, DISTANCE(s_ra, s_dec, 83.6331, "
                     "22.0145) AS e FROM ivoa.obscore ORDER BY d")  # fmt: skip
    assert result.rows[0][0] == "crab"
    assert result.rows[0][1] == pytest.approx(1.0)
    assert result.rows[0][2] == pytest.approx(0.0)
    assert result.fields[1].datatype == "double"


def test_maxrec_sets_overflow_but_top_does_not(db: tuple[object, threading.Lock]) -> None:
    result = run(db, "SELECT obs_id FROM ivoa.obscore", maxrec=2)
    assert len(result.rows) == 2 and result.overflow
    result = run(db, "SELECT TOP 2 obs_id FROM ivoa.obscore", maxrec=5)
    assert len(result.rows) == 2 and not result.overflow


def test_regtap_functions(db: tuple[object, threading.Lock]) -> None:
    query = (
        "SELECT ivoid, ivo_string_agg(COALESCE(res_subject, ''), ':::') AS subjects "
        "FROM rr.resource NATURAL LEFT OUTER JOIN rr.res_subject "
        "WHERE 1=ivo_hasword(res_description, 'gamma-ray') "
        "AND 1 = ivo_hashlist_has(rr.resource.waveband, 'radio') "
        "AND 1 = ivo_nocasematch(res_title, 'escape%') "
        "AND ivoid IN (SELECT ivoid FROM rr.res_subject WHERE res_subject ILIKE '%LAKE%') "
        "GROUP BY ivoid"
    )
    assert run(db, query).rows == [("ivo://escape.eu/lake/tap", "data-lake")]


def test_tap_schema_queries(db: tuple[object, threading.Lock]) -> None:
    result = run(db, "SELECT column_name, ucd, unit FROM tap_schema.columns "
                     "WHERE table_name = 'ivoa.obscore' AND column_name = 's_ra'")  # fmt: skip
    assert result.rows == [("s_ra", "pos.eq.ra", "deg")]


def test_like_is_case_sensitive(db: tuple[object, threading.Lock]) -> None:
    assert run(db, "SELECT obs_id FROM ivoa.obscore WHERE target_name LIKE 'crab'").rows == []
    assert len(run(db, "SELECT obs_id FROM ivoa.obscore WHERE target_name ILIKE 'crab'").rows) == 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "empty"),
        ("DROP TABLE ivoa.obscore", "Only SELECT"),
        ("DELETE FROM ivoa.obscore", "Only SELECT"),
        ("SELECT * FROM ivoa.obscore; DROP TABLE ivoa.obscore", "exactly one"),
        ("SELECT * FROM sqlite_master", "Unknown table"),
        ("SELECT * FROM obscore", "Unknown table"),
        ("SELECT load_extension('/tmp/x.so') FROM ivoa.obscore", "LOAD_EXTENSION"),
        ("SELECT * FROM pragma_table_info('obscore')", "not supported|Unknown table"),
        ("SELECT * FROM ivoa.obscore WHERE obs_id = 'x' UNION SELECT sql, 1 FROM sqlite_master",
         "Unknown table"),
        ("SELECT nope FROM ivoa.obscore", "no such column"),
        ("SELECT FROM WHERE", "parse"),
        ("SELECT 1", "reads no table"),
    ],
)  # fmt: skip
def test_rejected(db: tuple[object, threading.Lock], query: str, message: str) -> None:
    with pytest.raises(adql.AdqlError, match=message):
        run(db, query)


def test_publisher_did_round_trip() -> None:
    ivoid = publisher_did("cta", "crab-2024.dl3.0001.fits")
    assert ivoid == "ivo://escape.eu/lake?cta:crab-2024.dl3.0001.fits"
    did = parse_publisher_did(ivoid)
    assert did is not None and str(did) == "cta:crab-2024.dl3.0001.fits"
    assert parse_publisher_did("ivo://other.org/x?cta:a") is None
    assert parse_publisher_did("ivo://escape.eu/lake?not a did") is None
