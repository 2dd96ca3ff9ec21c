"""Tokens that last: a session renews its tokens at the lake's real provider and Rucio.

The provider's client ``escape-portal-brief`` issues access tokens that live
:data:`~escape_portal.embedded.layout.BRIEF_LIFETIME` seconds (8), so a test sees a
session's first token expire; Rucio validates every token it is handed, and the XRootD
storage checks the exchanged ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from escape_portal.config import LakeConfig
from escape_portal.embedded.layout import (
    BRIEF_LIFETIME,
    DEMO_CLIENTS,
    DEMO_RESEARCHERS,
    RESEARCHER_SCOPE,
    read_state,
)
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.embedded.tokens import storage_audience
from escape_portal.errors import TokenExpired
from escape_portal.lake import Lake
from escape_portal.lake.tokens import claims, jwt_expiry

pytestmark = pytest.mark.lake

BRIEF = "escape-portal-brief"


@pytest.fixture()
def state(embedded_lake: EmbeddedLake) -> dict[str, Any]:
    found = read_state(embedded_lake.paths)
    assert found is not None
    return found


@pytest.fixture()
def brief_config(alice_config: LakeConfig) -> LakeConfig:
    """The instance embedded-alice (alice over OIDC), through the brief-lived client."""
    return dataclasses.replace(
        alice_config,
        name="embedded-brief",
        oidc_client_id=BRIEF,
        oidc_client_secret=DEMO_CLIENTS[BRIEF],
    )


def _login(state: dict[str, Any], client_id: str = BRIEF) -> dict[str, Any]:
    answer = requests.post(
        f"{state['idp_url']}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": DEMO_RESEARCHERS["alice"],
            "scope": RESEARCHER_SCOPE,
        },
        auth=(client_id, DEMO_CLIENTS[client_id]),
        verify=state["ca_cert"],
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_researcher_instance_is_alice_over_oidc(alice_config: LakeConfig) -> None:
    lake = Lake(alice_config)
    who = lake.identity()
    assert (who.account, who.auth_type, who.token_renewable) == ("alice", "oidc", True)
    assert who.token_valid_for is not None and who.token_valid_for.total_seconds() > 60
    assert who.expiry_notice() is None
    assert lake.tokens is not None and lake.tokens.source == "password"


def test_the_operator_stays_available(operator_lake: Lake) -> None:
    who = operator_lake.identity()
    assert (who.account, who.auth_type, who.instance) == ("root", "userpass", "embedded")


def test_a_session_keeps_calling_rucio_past_the_first_expiry(
    brief_config: LakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lake = Lake(brief_config)
    assert lake.identity().account == "alice"
    first = lake.client.auth_token
    expiry = jwt_expiry(first)
    assert expiry is not None and claims(first)["aud"] == "rucio"
    seen = {first}
    calls = 0
    # Call the lake, with no action of the user, until well past the first token's expiry.
    while time.time() < expiry.timestamp() + BRIEF_LIFETIME:
        assert "cta" in lake.scopes()
        assert lake.client.whoami()["account"] == "alice"
        seen.add(lake.client.auth_token)
        calls += 2
        time.sleep(0.5)
    assert lake.tokens is not None
    assert lake.tokens.renewals >= 2, "the first token was never renewed"
    assert len(seen) >= 2 and calls >= 20
    assert lake.identity().token_valid_for.total_seconds() > 0  # type: ignore[union-attr]
    for token in seen:
        assert token not in caplog.text


def test_a_refused_token_is_renewed_once_and_the_call_sent_again(
    state: dict[str, Any], alice_config: LakeConfig
) -> None:
    """Rucio refuses a token with the storage's audience (401); the keeper renews it."""
    login = _login(state, "escape-portal")
    exchanged = requests.post(
        f"{state['idp_url']}/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": login["access_token"],
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "audience": storage_audience("DESY-DISK"),
            "scope": "storage.read:/",
        },
        auth=("escape-portal", DEMO_CLIENTS["escape-portal"]),
        verify=state["ca_cert"],
        timeout=30,
    )
    assert exchanged.status_code == 200, exchanged.text
    wrong = exchanged.json()["access_token"]
    config = dataclasses.replace(
        alice_config,
        name="embedded-refresh",
        token=wrong,
        oidc_refresh_token=login["refresh_token"],
        token_source="refresh",
        username=None,
        password=None,
    )
    lake = Lake(config)
    assert lake.client.whoami()["account"] == "alice"
    assert lake.tokens is not None and lake.tokens.renewals == 1
    assert lake.client.auth_token != wrong and claims(lake.client.auth_token)["aud"] == "rucio"


def test_a_storage_token_is_exchanged_again_after_expiry(
    brief_config: LakeConfig, state: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lake = Lake(brief_config)
    rse = "DESY-DISK"
    first = lake.storage_token(rse, "/some/file.fits")
    assert first is not None and lake.storage_token(rse, "/some/file.fits") == first
    expiry = jwt_expiry(first)
    assert expiry is not None
    wanted = claims(first)
    assert wanted["aud"] != "rucio" and wanted["sub"] == "alice"
    time.sleep(max(0.0, expiry.timestamp() - time.time()) + 0.5)
    second = lake.storage_token(rse, "/some/file.fits")
    assert second is not None and second != first
    assert jwt_expiry(second) > dt.datetime.now(dt.UTC)  # type: ignore[operator]
    assert claims(second)["aud"] == wanted["aud"] and claims(second)["scope"] == wanted["scope"]
    # The storage takes the new one: a davs request for a path the scope covers is not a 401/403.
    davs = [p for p in lake.rse_protocols()[rse] if p.get("scheme") == "davs"]
    if davs:
        p = davs[0]
        url = f"https://{p['hostname']}:{p['port']}{p['prefix'].rstrip('/')}/some/file.fits"
        answer = requests.head(
            url,
            headers={"Authorization": f"Bearer {second}"},
            verify=state["ca_cert"],
            timeout=30,
        )
        assert answer.status_code not in (401, 403), answer.status_code
    for token in (first, second):
        assert token not in caplog.text


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "escape_portal.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_token_nobody_renews_is_announced_then_refused_in_one_line(
    state: dict[str, Any], lake_env: dict[str, str], tmp_path: Path
) -> None:
    token = _login(state)["access_token"]  # 8 s, no refresh token handed to the portal
    env = {
        **lake_env,
        "RUCIO_BASE_URL": state["rucio_host"],
        "RUCIO_ACCESS_TOKEN": token,
        "RUCIO_ACCOUNT": "alice",
        "ESCAPE_PORTAL_INSTANCE": "env",
    }
    before = _cli(env, "whoami")
    assert before.returncode == 0, before.stderr
    warning = [line for line in before.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "cannot renew it" in warning[0], before.stderr
    assert "alice on env" in before.stdout
    expiry = jwt_expiry(token)
    assert expiry is not None
    time.sleep(max(0.0, expiry.timestamp() - time.time()) + 1)
    after = _cli(env, "whoami")
    assert after.returncode == TokenExpired.exit_code, after.stderr
    errors = [line for line in after.stderr.splitlines() if line.strip()]
    assert any("Your OIDC token expired at" in line for line in errors), after.stderr
    assert not any("Traceback" in line for line in errors), after.stderr
    for output in (before.stdout, before.stderr, after.stdout, after.stderr):
        assert token not in output
    # The same through the library: one line, the user's words, no token.
    config = LakeConfig(
        name="expired",
        rucio_host=state["rucio_host"],
        auth_type="oidc",
        account="alice",
        token=token,
    )
    with pytest.raises(TokenExpired) as err:
        Lake(config).identity()
    assert "\n" not in str(err.value) and token not in str(err.value)


def test_no_token_reaches_the_providers_log(
    embedded_lake: EmbeddedLake, brief_config: LakeConfig
) -> None:
    lake = Lake(brief_config)
    lake.identity()
    token = lake.client.auth_token
    logs = list(Path(embedded_lake.paths.root, "logs").glob("*.log"))
    assert logs
    for log in logs:
        assert token not in log.read_text(errors="replace")
    assert os.environ.get("RUCIO_ACCESS_TOKEN") != token
