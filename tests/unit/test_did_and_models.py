import pytest

from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, InvalidDID
from escape_portal.lake.models import decode_cursor, encode_cursor, parse_filters


@pytest.mark.parametrize(
    ("text", "scope", "name"),
    [
        ("cta:crab-2024.dl3", "cta", "crab-2024.dl3"),
        ("user.escape:a/b/c.fits", "user.escape", "a/b/c.fits"),
        ("scale:x:y", None, None),
    ],
)
def test_parse_valid_and_colons_in_name(text: str, scope: str | None, name: str | None) -> None:
    if scope is None:
        with pytest.raises(InvalidDID):
            DID.parse(text)
        return
    did = DID.parse(text)
    assert (did.scope, did.name) == (scope, name)
    assert str(did) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("no-colon", "scope:name"),
        (":name", "valid scope"),
        ("scope-that-is-much-too-long-for-rucio:n", "1 to 25"),
        ("cta:", "valid name"),
        ("cta: spaced", "valid name"),
        ("cta:bad*name", "valid name"),
    ],
)
def test_parse_invalid_says_what_and_how(text: str, fragment: str) -> None:
    with pytest.raises(InvalidDID) as err:
        DID.parse(text)
    assert fragment in str(err.value)
    assert err.value.exit_code == 2 and err.value.http_status == 400


def test_cursor_round_trip_and_rejects_garbage() -> None:
    assert decode_cursor(None) == 0
    assert decode_cursor(encode_cursor(12345)) == 12345
    for bad in ("not-a-cursor", encode_cursor(0)[:-2] + "!!"):
        with pytest.raises(InvalidRequest):
            decode_cursor(bad)


def test_parse_filters_operators_and_numbers() -> None:
    assert parse_filters(["ra>=80.5", "dec<0", "target=Crab", "calib_level!=1", "run>3"]) == {
        "ra.gte": 80.5,
        "dec.lt": 0,
        "target": "Crab",
        "calib_level.ne": 1,
        "run.gt": 3,
    }
    assert parse_filters({"ra.gt": 1}) == {"ra.gt": 1}
    with pytest.raises(InvalidRequest, match="not a filter"):
        parse_filters(["nonsense"])
    with pytest.raises(InvalidRequest, match="metadata key"):
        parse_filters(["bad key=1"])


def test_sizes_and_counts_from_rucio_are_ints() -> None:
    from escape_portal.lake.client import _did_info

    # Rucio on PostgreSQL answers a dataset's bytes as a float (450000.0).
    info = _did_info({"scope": "s", "name": "d", "did_type": "DATASET", "bytes": 450000.0})
    assert info.bytes == 450000 and isinstance(info.bytes, int)
    assert info.length is None
