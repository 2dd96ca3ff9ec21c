from __future__ import annotations

import math

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord
from astropy.time import Time

from escape_portal.discovery import Query, adql_string, check_adql
from escape_portal.errors import InvalidRequest


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"pos": (10, 95), "radius": 1}, "Declination 95"),
        ({"pos": (10, -90.5), "radius": 1}, "off the sky"),
        ({"pos": (math.nan, 10), "radius": 1}, "not a number"),
        ({"pos": ("a", "b"), "radius": 1}, "not a pair of numbers"),
        ({"pos": (10, 10)}, "needs a search radius"),
        ({"radius": 1}, "without a position"),
        ({"pos": (10, 10), "radius": -1}, "positive angle"),
        ({"pos": (10, 10), "radius": 0}, "positive angle"),
        ({"pos": (10, 10), "radius": 3600}, "larger than the whole sky"),
        ({"pos": (10, 10), "radius": 5 * u.kg}, "not an angle"),
        ({"time": (60010, 60000)}, "ends (MJD 60000) before it starts"),
        ({"time": (Time("2024-02-01"), Time("2024-01-01"))}, "before it starts"),
        ({"time": ("yesterday", 60000)}, "neither an MJD"),
        ({"band": (700e-9, 400e-9)}, "ends"),
        ({"band": (-1, 1)}, "positive wavelength"),
        ({"band": (1 * u.kg, 2 * u.kg)}, "not a wavelength"),
        ({"dataproduct_type": "picture"}, "Unknown data product type 'picture'"),
        ({"calib_level": 7}, "Calibration level 7"),
        ({"maxrec": 0}, "maxrec"),
        ({"collection": ""}, "collection must be a name"),
        ({"collection": "CTA\nDROP"}, "control characters"),
    ],
)
def test_invalid_queries_are_refused_in_the_users_words(kwargs: dict, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Query(**kwargs).to_adql()
    assert words in str(info.value)
    assert info.value.hint or info.value.message


def test_positions_radius_time_band_are_normalised() -> None:
    q = Query(
        pos=SkyCoord(83.63, 22.01, unit="deg"),
        radius=30 * u.arcmin,
        time=(Time("2024-01-01T00:00:00", scale="utc"), 60400.0),
        band=(1 * u.TeV, 10 * u.TeV),
    )
    assert q.ra == pytest.approx(83.63)
    assert q.radius_deg == pytest.approx(0.5)
    assert q.time_mjd == (pytest.approx(60310.0), 60400.0)
    assert q.band_m is not None
    lo, hi = q.band_m
    assert lo < hi  # energies become wavelengths, in increasing order
    assert hi == pytest.approx((1 * u.TeV).to_value(u.m, equivalencies=u.spectral()))
    assert Query(pos=(-10, 0), radius=1).ra == 350.0
    assert Query(band=(1.4 * u.GHz, 1.5 * u.GHz)).band_m is not None


def test_adql_from_a_query() -> None:
    q = Query(
        pos=(83.63, 22.01),
        radius=0.5,
        time=(60000, 60010),
        band=(1e-18, 1e-16),
        collection="CTA-DL3",
        dataproduct_type=["event", "image"],
        calib_level=2,
        facility="CTAO-North",
        maxrec=50,
    )
    assert q.to_adql() == (
        "SELECT TOP 50 * FROM ivoa.obscore WHERE "
        "1=CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 83.63, 22.01, 0.5)) "
        "AND t_max >= 60000.0 AND t_min <= 60010.0 "
        "AND em_max >= 1e-18 AND em_min <= 1e-16 "
        "AND obs_collection = 'CTA-DL3' "
        "AND dataproduct_type IN ('event', 'image') "
        "AND facility_name = 'CTAO-North' "
        "AND calib_level = 2"
    )
    check_adql(q.to_adql())
    assert Query().to_adql() == "SELECT TOP 1000 * FROM ivoa.obscore"


def test_user_text_is_escaped_never_concatenated() -> None:
    evil = "x' OR 1=1 --"
    q = Query(collection=evil, instrument="O'Brien's camera")
    adql = q.to_adql()
    assert "obs_collection = 'x'' OR 1=1 --'" in adql
    assert "instrument_name = 'O''Brien''s camera'" in adql
    check_adql(adql)  # still one well-formed SELECT
    assert adql_string("it's") == "'it''s'"


@pytest.mark.parametrize(
    ("adql", "words"),
    [
        ("", "empty"),
        ("SELEC * FORM ivoa.obscore", "does not parse"),
        ("hello world", "not a SELECT"),
        ("SELECT * FROM ivoa.obscore WHERE", "does not parse"),
        ("SELECT * FROM t WHERE a = 'open", "does not parse"),
        ("DROP TABLE ivoa.obscore", "not a SELECT"),
        ("SELECT a FROM t; SELECT b FROM u", "2 statements"),
    ],
)
def test_raw_adql_garbage_is_caught_before_sending(adql: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        Query(adql=adql)
    assert words in str(info.value)


def test_raw_adql_is_sent_as_given() -> None:
    text = (
        "SELECT TOP 5 obs_id FROM ivoa.obscore "
        "WHERE 1=CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 1, 2, 3))"
    )
    assert Query(adql=text).to_adql() == text
