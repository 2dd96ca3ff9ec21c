"""The session's token keeper against a tiny local provider (the boundary faked: HTTP).

The provider here speaks the token endpoint's protocol (discovery, password, refresh
with rotation, token exchange) over real HTTP on loopback and counts what it is asked;
JupyterHub's ``GET /user`` and ``GET /users/{name}`` likewise. The keeper under test is the
real one.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from escape_portal.config import LakeConfig, _from_mapping, instance_from_env
from escape_portal.errors import AuthenticationFailed, InvalidRequest, TokenExpired
from escape_portal.lake import Lake
from escape_portal.lake.client import Identity
from escape_portal.lake.tokens import (
    StorageAccess,
    TokenKeeper,
    choose_source,
    expiry_notice,
    jwt_expiry,
    renew_margin,
)

SECRET = "client-secret-xyz"


def _jwt(exp: dt.datetime | float, **extra: Any) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    when = exp.timestamp() if isinstance(exp, dt.datetime) else exp
    body = {"sub": "alice", "exp": int(when), "jti": secrets.token_hex(8), **extra}
    return f"{part({'alg': 'RS256'})}.{part(body)}.sig"


@dataclass
class FakeProvider:
    """What the provider was asked, and how it answers."""

    url: str = ""
    lifetime: float = 60.0
    grants: list[str] = field(default_factory=list)
    refresh_tokens: set[str] = field(default_factory=set)
    issued: list[str] = field(default_factory=list)
    refuse_refresh: bool = False
    hub_token: str = ""
    hub_asks: int = 0
    slow: float = 0.0


@pytest.fixture()
def provider() -> Iterator[FakeProvider]:
    state = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._answer(200, {"issuer": state.url, "token_endpoint": state.url + "/token"})
            elif self.path == "/hub/api/user":  # as JupyterHub 6: never the auth state here
                self._answer(200, {"name": "alice", "auth_state": None})
            elif self.path == "/hub/api/users/alice":
                state.hub_asks += 1
                self._answer(
                    200, {"name": "alice", "auth_state": {"access_token": state.hub_token}}
                )
            else:
                self._answer(404, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            auth = base64.b64decode(self.headers["Authorization"].split()[1]).decode()
            if auth != f"escape-portal:{SECRET}":
                self._answer(401, {"error": "invalid_client"})
                return
            grant = form["grant_type"]
            state.grants.append(grant)
            time.sleep(state.slow)
            if grant == "refresh_token":
                if state.refuse_refresh or form["refresh_token"] not in state.refresh_tokens:
                    # Echo the spent token back, as a careless provider might.
                    self._answer(
                        400,
                        {
                            "error": "invalid_grant",
                            "error_description": f"refresh token {form['refresh_token']} spent",
                        },
                    )
                    return
                state.refresh_tokens.discard(form["refresh_token"])  # rotated: spent on use
            elif grant == "password" and form.get("password") != "alice-demo":
                self._answer(400, {"error": "invalid_grant"})
                return
            access = _jwt(time.time() + state.lifetime, iat=int(time.time()), iss=state.url)
            state.issued.append(access)
            body: dict[str, Any] = {"access_token": access, "expires_in": state.lifetime}
            if grant in ("password", "refresh_token"):
                refresh = secrets.token_urlsafe(16)
                state.refresh_tokens.add(refresh)
                body["refresh_token"] = refresh
            self._answer(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _config(provider: FakeProvider, **values: Any) -> LakeConfig:
    base: dict[str, Any] = {
        "name": "test",
        "rucio_host": "http://127.0.0.1:9",
        "auth_type": "oidc",
        "account": "alice",
        "oidc_issuer": provider.url,
        "oidc_client_id": "escape-portal",
        "oidc_client_secret": SECRET,
        "timeout": 5.0,
    }
    return LakeConfig(**{**base, **values})


def test_jwt_expiry_read_without_verification() -> None:
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert jwt_expiry(_jwt(when)) == when
    assert jwt_expiry("not-a-jwt") is None


def test_the_margin_is_a_fifth_of_the_lifetime_or_a_minute() -> None:
    assert renew_margin(3600) == 60
    assert renew_margin(10) == 2
    assert renew_margin(None) == 60


def test_sources_are_tried_in_the_documented_order(provider: FakeProvider) -> None:
    hub = {"JUPYTERHUB_API_URL": "http://hub", "JUPYTERHUB_API_TOKEN": "x"}
    static = _jwt(time.time() + 600)
    assert choose_source(_config(provider, token_file="/t", token=static), hub) == "file"
    assert choose_source(_config(provider, oidc_refresh_token="r", token=static), hub) == "refresh"
    assert choose_source(_config(provider, token=static), hub) == "token"
    assert choose_source(_config(provider, username="alice", password="p"), hub) == "hub"
    assert choose_source(_config(provider, username="alice", password="p"), {}) == "password"
    with pytest.raises(AuthenticationFailed, match="No OIDC token"):
        choose_source(_config(provider), {})
    with pytest.raises(AuthenticationFailed, match="takes its token from 'hub'"):
        choose_source(_config(provider, token_source="hub", token=static), {})


def test_an_expired_static_token_is_refused_in_one_line(provider: FakeProvider) -> None:
    token = _jwt(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    keeper = TokenKeeper(_config(provider, token=token), env={})
    assert not keeper.renewable
    with pytest.raises(TokenExpired, match="expired at") as err:
        keeper.current()
    assert "Log in again" in err.value.hint
    assert "\n" not in str(err.value) and token not in str(err.value)
    with pytest.raises(TokenExpired):
        keeper.renew(token)
    assert provider.grants == []


def test_token_file_is_reread_each_time(tmp_path: Path, provider: FakeProvider) -> None:
    path = tmp_path / "token"
    first = _jwt(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    second = _jwt(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    keeper = TokenKeeper(_config(provider, token_file=str(path)), env={})
    path.write_text(first + "\n")
    assert keeper.current() == first
    path.write_text(second)
    assert keeper.current() == second
    assert keeper.renew(first) == second


def test_missing_token_file_says_what_to_do(tmp_path: Path, provider: FakeProvider) -> None:
    keeper = TokenKeeper(_config(provider, token_file=str(tmp_path / "absent")), env={})
    with pytest.raises(AuthenticationFailed, match="Cannot read"):
        keeper.current()


def test_a_refresh_token_renews_before_expiry_and_rotates(
    provider: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider.lifetime = 5.0  # renewed when less than 1 s is left
    provider.refresh_tokens.add("first-refresh")
    keeper = TokenKeeper(_config(provider, oidc_refresh_token="first-refresh"), env={})
    assert keeper.source == "refresh" and keeper.renewable
    first = keeper.current()
    assert provider.grants == ["refresh_token"]
    assert keeper.current() == first  # fresh: no request
    time.sleep(4.2)
    second = keeper.current()
    assert second != first
    # The second refresh used the rotated token (the first was spent and is refused).
    assert provider.grants == ["refresh_token", "refresh_token"]
    assert keeper.renewals == 2
    for token in (first, second, "first-refresh", *provider.refresh_tokens):
        assert token not in caplog.text


def test_threads_sharing_a_session_refresh_once(provider: FakeProvider) -> None:
    provider.refresh_tokens.add("r0")
    provider.slow = 0.3
    keeper = TokenKeeper(_config(provider, oidc_refresh_token="r0"), env={})
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(keeper.current())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert provider.grants == ["refresh_token"]
    assert len(set(seen)) == 1


def test_a_refused_refresh_token_says_so_without_the_token(provider: FakeProvider) -> None:
    keeper = TokenKeeper(_config(provider, oidc_refresh_token="stale-refresh-123"), env={})
    with pytest.raises(AuthenticationFailed) as err:
        keeper.current()
    message = str(err.value)
    assert "refused renewing your OIDC token" in message
    assert "stale-refresh-123" not in message and "[hidden]" in message
    assert "ESCAPE_PORTAL_OIDC_REFRESH_TOKEN" in err.value.hint


def test_the_demo_password_logs_in_then_refreshes(provider: FakeProvider) -> None:
    provider.lifetime = 5.0
    config = _config(provider, username="alice", password="alice-demo", token_source="password")
    keeper = TokenKeeper(config, env={"JUPYTERHUB_API_URL": "x", "JUPYTERHUB_API_TOKEN": "y"})
    first = keeper.current()
    time.sleep(4.2)
    keeper.current()
    assert provider.grants == ["password", "refresh_token"]
    # A refresh token the provider forgot (it restarted): log in again with the password.
    provider.refuse_refresh = True
    time.sleep(4.2)
    assert keeper.current() not in (first,)
    assert provider.grants == ["password", "refresh_token", "refresh_token", "password"]


def test_the_hub_is_asked_again_when_its_token_is_near_expiry(provider: FakeProvider) -> None:
    env = {"JUPYTERHUB_API_URL": provider.url + "/hub/api", "JUPYTERHUB_API_TOKEN": "hub-api"}
    provider.hub_token = _jwt(time.time() + 3600, iat=int(time.time()))
    keeper = TokenKeeper(_config(provider), env=env)
    assert keeper.source == "hub" and keeper.renewable
    assert keeper.current() == provider.hub_token
    assert keeper.current() == provider.hub_token
    assert provider.hub_asks == 1
    # The hub refreshed the user's token: a 401 makes the keeper ask again at once.
    provider.hub_token = _jwt(time.time() + 3600, iat=int(time.time()))
    assert keeper.renew(keeper.current()) == provider.hub_token
    assert provider.hub_asks == 2


def test_storage_tokens_are_cached_then_exchanged_again(provider: FakeProvider) -> None:
    provider.lifetime = 3.0
    provider.refresh_tokens.add("r0")
    keeper = TokenKeeper(_config(provider, oidc_refresh_token="r0"), env={})
    access = StorageAccess("xrootd.cern.example")
    first = keeper.storage_token(access, "storage.read:/a")
    assert keeper.storage_token(access, "storage.read:/a") == first
    time.sleep(2.6)
    assert keeper.storage_token(access, "storage.read:/a") != first
    assert provider.grants.count("urn:ietf:params:oauth:grant-type:token-exchange") == 2


def test_the_expiry_notice_only_for_tokens_nobody_renews() -> None:
    now = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    soon = now + dt.timedelta(minutes=4)
    notice = expiry_notice(soon, False, now=now)
    assert notice is not None and "expires in 4 minutes (at 12:04:00 UTC)" in notice
    assert "cannot renew" in notice and "\n" not in notice
    assert expiry_notice(soon, True, now=now) is None
    assert expiry_notice(now + dt.timedelta(hours=1), False, now=now) is None
    assert "expired at" in str(expiry_notice(now - dt.timedelta(seconds=1), False, now=now))
    who = Identity("i", "http://h", "alice", "oidc", soon, token_renewable=False)
    assert who.expiry_notice(within=dt.timedelta(days=365 * 10)) is not None


def test_lake_gives_a_notice_without_asking_the_lake(provider: FakeProvider) -> None:
    token = _jwt(time.time() + 120)
    assert "expires in 2 minutes" in str(Lake(_config(provider, token=token)).token_notice())
    assert Lake(_config(provider, token=_jwt(time.time() + 7200))).token_notice() is None
    assert Lake(_config(provider)).token_notice() is None  # no token at all: no notice
    # An expired one: no notice, the first request reports it as an error.
    assert Lake(_config(provider, token=_jwt(time.time() - 5))).token_notice() is None


def test_refresh_token_and_secret_come_from_the_environment_only() -> None:
    for secret in ("oidc_refresh_token", "oidc_client_secret"):
        with pytest.raises(InvalidRequest, match="in plain text"):
            _from_mapping("x", {"rucio_host": "https://r", secret: "s"}, "instances.toml")
    config = instance_from_env(
        {
            "RUCIO_BASE_URL": "https://rucio.example",
            "ESCAPE_PORTAL_OIDC_REFRESH_TOKEN": "r-1\n",
            "ESCAPE_PORTAL_OIDC_CLIENT_ID": "portal",
            "ESCAPE_PORTAL_OIDC_CLIENT_SECRET": "s-1",
            "ESCAPE_PORTAL_OIDC_ISSUER": "https://iam.example/",
        }
    )
    assert config is not None and config.auth_type == "oidc"
    assert (config.oidc_refresh_token, config.oidc_client_secret) == ("r-1", "s-1")
    assert config.oidc_client_id == "portal" and config.oidc_issuer == "https://iam.example/"
    public = config.public()
    assert "oidc_refresh_token" not in public and "oidc_client_secret" not in public
    assert "r-1" not in repr(config) and "s-1" not in repr(config)


def test_read_tokens_cover_the_rucio_scope_area_and_writes_the_path_alone() -> None:
    access = StorageAccess("xrootd.desy.example", "/data")
    assert access.scope("/data/cta/01/9c/f.fits", did_scope="cta") == "storage.read:/cta"
    assert (
        access.scope("/data/user/alice/ab/cd/r.fits", did_scope="user.alice")
        == "storage.read:/user/alice"
    )
    # A path that does not show the scope (another path function) is named alone.
    assert access.scope("/data/x/f.fits", did_scope="cta") == "storage.read:/x/f.fits"
    assert access.scope("/data/cta/01/f.fits") == "storage.read:/cta/01/f.fits"
    assert access.scope("/data/cta/01/f.fits", write=True, did_scope="cta") == (
        "storage.read:/cta/01/f.fits storage.modify:/cta/01/f.fits"
    )
