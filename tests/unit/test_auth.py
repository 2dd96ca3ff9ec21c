import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from escape_portal.errors import AuthenticationFailed, TokenExpired
from escape_portal.lake.auth import TokenSource, jwt_expiry


def _jwt(exp: dt.datetime) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'sub': 'alice', 'exp': int(exp.timestamp())})}.sig"


def test_jwt_expiry_read_without_verification() -> None:
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert jwt_expiry(_jwt(when)) == when
    assert jwt_expiry("not-a-jwt") is None


def test_expired_token_is_refused_before_any_request() -> None:
    token = _jwt(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    with pytest.raises(TokenExpired, match="expired at") as err:
        TokenSource(token=token).read()
    assert "Log in again" in err.value.hint


def test_token_file_is_reread_each_time(tmp_path: Path) -> None:
    path = tmp_path / "token"
    first = _jwt(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    second = _jwt(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    source = TokenSource(token_file=str(path))
    path.write_text(first + "\n")
    assert source.read() == first
    path.write_text(second)
    assert source.read() == second


def test_missing_token_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationFailed, match="Cannot read"):
        TokenSource(token_file=str(tmp_path / "absent")).read()
    with pytest.raises(AuthenticationFailed, match="No OIDC token"):
        TokenSource().read()
