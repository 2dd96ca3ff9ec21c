"""The claims of the lake's tokens, and the provider's grant rules (in process, no server)."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from escape_portal.embedded import idp, tokens
from escape_portal.embedded.layout import DEMO_CLIENTS, DEMO_RESEARCHERS

ISSUER = tokens.issuer_url(8443)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="module")
def key(data_dir: Path) -> tokens.SigningKey:
    return tokens.signing_key(data_dir)


@pytest.fixture(scope="module")
def provider(data_dir: Path) -> FlaskClient:
    return idp.make_app(idp.Provider(data_dir, 8443, lifetime=60)).test_client()


def _token(client: FlaskClient, client_id: str, **form: str) -> dict[str, Any]:
    answer = client.post(
        "/token", data=form, auth=(client_id, DEMO_CLIENTS[client_id]), base_url=ISSUER
    )
    body: dict[str, Any] = answer.get_json()
    body["status"] = answer.status_code
    return body


def test_minted_token_has_the_wlcg_profile_claims(key: tokens.SigningKey) -> None:
    now = time.time()
    token = tokens.mint(
        key,
        issuer=ISSUER,
        subject="alice",
        audience=tokens.RUCIO_AUDIENCE,
        scopes=["openid", "storage.read:/"],
        lifetime=60,
        now=now,
    )
    claims = tokens.verify(key, token, issuer=ISSUER)
    assert claims["wlcg.ver"] == "1.0"
    assert (claims["iss"], claims["sub"], claims["aud"]) == (ISSUER, "alice", "rucio")
    assert claims["scope"] == "openid storage.read:/"
    assert claims["exp"] - claims["iat"] == 60
    assert claims["nbf"] <= claims["iat"] <= now + 1
    other = tokens.mint(key, issuer=ISSUER, subject="alice", audience="rucio")
    assert tokens.claims_of(other)["jti"] != claims["jti"]


def test_signing_key_is_private_and_kept(data_dir: Path, key: tokens.SigningKey) -> None:
    mode = stat.S_IMODE(tokens.key_path(data_dir).stat().st_mode)
    assert mode == 0o600
    assert tokens.signing_key(data_dir).kid == key.kid
    assert key.jwks()["keys"][0]["kid"] == key.kid


def test_verify_refuses_other_key_expired_and_other_issuer(
    key: tokens.SigningKey, tmp_path: Path
) -> None:
    stranger = tokens.signing_key(tmp_path)
    forged = tokens.mint(stranger, issuer=ISSUER, subject="alice", audience="rucio")
    with pytest.raises(tokens.InvalidToken, match="signature"):
        tokens.verify(key, forged, issuer=ISSUER)
    expired = tokens.mint(key, issuer=ISSUER, subject="alice", audience="rucio", lifetime=-60)
    with pytest.raises(tokens.InvalidToken, match="expired"):
        tokens.verify(key, expired, issuer=ISSUER)
    with pytest.raises(tokens.InvalidToken, match="issued by"):
        tokens.verify(key, expired, issuer="https://localhost:1")
    with pytest.raises(tokens.InvalidToken):
        tokens.claims_of("not-a-jwt")


def test_scope_paths_narrow_but_never_widen() -> None:
    assert tokens.scope_covers("storage.read:/", "storage.read:/cta/data")
    assert tokens.scope_covers("storage.read:/cta", "storage.read:/cta/")
    assert not tokens.scope_covers("storage.read:/cta", "storage.read:/ctab")
    assert not tokens.scope_covers("storage.read:/cta", "storage.read:/")
    assert not tokens.scope_covers("storage.read:/", "storage.modify:/")
    assert tokens.scope_covers("openid", "openid")
    assert not tokens.scope_covers("openid", "profile")


def test_storage_audience_is_per_storage_element_and_port_free() -> None:
    assert tokens.storage_audience("CERN-DISK") == "https://localhost/rse/CERN-DISK"
    assert tokens.storage_audience("CERN-DISK") != tokens.storage_audience("PIC-DISK")
    assert tokens.RUCIO_AUDIENCE not in {tokens.storage_audience("CERN-DISK")}


def test_password_grant_gives_a_researcher_token_for_rucio(
    provider: FlaskClient, key: tokens.SigningKey
) -> None:
    body = _token(
        provider,
        "escape-portal",
        grant_type="password",
        username="alice",
        password=DEMO_RESEARCHERS["alice"],
        scope="openid profile",
    )
    assert body["status"] == 200, body
    claims = tokens.verify(key, body["access_token"], issuer=ISSUER)
    assert (claims["sub"], claims["aud"], claims["scope"]) == ("alice", "rucio", "openid profile")
    assert claims["client_id"] == "escape-portal"
    assert claims["exp"] - claims["iat"] == 60
    assert "refresh_token" not in body  # only with offline_access


def test_wrong_password_unknown_audience_and_wider_scope_are_refused(
    provider: FlaskClient,
) -> None:
    wrong = _token(provider, "escape-portal", grant_type="password", username="bob", password="x")
    assert wrong["status"] == 400
    unknown = _token(
        provider,
        "rucio-transfers",
        grant_type="client_credentials",
        audience="https://elsewhere.example",
    )
    assert (unknown["status"], unknown["error"]) == (400, "invalid_target")
    wider = _token(provider, "rucio-transfers", grant_type="client_credentials", scope="admin")
    assert (wider["status"], wider["error"]) == (400, "invalid_scope")


def test_exchange_keeps_the_subject_and_narrows_scopes(
    provider: FlaskClient, key: tokens.SigningKey
) -> None:
    first = _token(
        provider,
        "escape-portal",
        grant_type="password",
        username="bob",
        password=DEMO_RESEARCHERS["bob"],
        scope="openid profile storage.read:/ storage.create:/",
    )
    audience = tokens.storage_audience("PIC-DISK")
    exchanged = _token(
        provider,
        "escape-portal",
        grant_type=idp.TOKEN_EXCHANGE,
        subject_token=first["access_token"],
        subject_token_type=idp.ACCESS_TOKEN_TYPE,
        audience=audience,
        scope="storage.read:/cta",
    )
    assert exchanged["status"] == 200, exchanged
    assert exchanged["issued_token_type"] == idp.ACCESS_TOKEN_TYPE
    claims = tokens.verify(key, exchanged["access_token"], issuer=ISSUER)
    assert (claims["sub"], claims["aud"], claims["scope"]) == ("bob", audience, "storage.read:/cta")
    assert claims["act"] == {"sub": "escape-portal"}
    widened = _token(
        provider,
        "escape-portal",
        grant_type=idp.TOKEN_EXCHANGE,
        subject_token=first["access_token"],
        subject_token_type=idp.ACCESS_TOKEN_TYPE,
        audience=audience,
        scope="storage.modify:/",
    )
    assert (widened["status"], widened["error"]) == (400, "invalid_scope")


def test_the_hub_client_gets_short_tokens_and_renews_them(
    data_dir: Path, key: tokens.SigningKey
) -> None:
    # The lake's other clients keep the lake-wide lifetime (here 1200 s).
    provider = idp.make_app(idp.Provider(data_dir, 8443, lifetime=1200)).test_client()
    login = {"username": "bob", "password": DEMO_RESEARCHERS["bob"]}
    scope = "openid profile offline_access"
    portal = _token(provider, "escape-portal", grant_type="password", scope=scope, **login)
    hub = _token(provider, "jupyterhub", grant_type="password", scope=scope, **login)
    assert portal["status"] == hub["status"] == 200, (portal, hub)
    assert portal["expires_in"] == 1200
    assert hub["expires_in"] == idp.HUB_ACCESS_LIFETIME == 60
    claims = tokens.verify(key, hub["access_token"], issuer=ISSUER)
    assert (claims["sub"], claims["aud"], claims["client_id"]) == ("bob", "rucio", "jupyterhub")
    assert claims["exp"] - claims["iat"] == 60
    renewed = _token(
        provider, "jupyterhub", grant_type="refresh_token", refresh_token=hub["refresh_token"]
    )
    assert renewed["status"] == 200, renewed
    assert renewed["expires_in"] == 60 and renewed["refresh_token"] != hub["refresh_token"]
    assert tokens.verify(key, renewed["access_token"], issuer=ISSUER)["sub"] == "bob"
    # The spent refresh token is refused, and no other client may use the hub's.
    spent = _token(
        provider, "jupyterhub", grant_type="refresh_token", refresh_token=hub["refresh_token"]
    )
    assert (spent["status"], spent["error"]) == (400, "invalid_grant")
    stolen = _token(
        provider,
        "escape-portal",
        grant_type="refresh_token",
        refresh_token=renewed["refresh_token"],
    )
    assert stolen["status"] == 400, stolen
