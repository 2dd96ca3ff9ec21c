"""The lake's OpenID Connect provider and Rucio validating its tokens, both for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from escape_portal.embedded import tokens
from escape_portal.embedded.idp import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from escape_portal.embedded.layout import DEMO_CLIENTS, DEMO_RESEARCHERS, read_state
from escape_portal.embedded.supervisor import EmbeddedLake

pytestmark = pytest.mark.lake


@pytest.fixture(scope="module")
def state(embedded_lake: EmbeddedLake) -> dict[str, Any]:
    found = read_state(embedded_lake.paths)
    assert found is not None
    return found


def _token(state: dict[str, Any], client_id: str, **form: str) -> requests.Response:
    return requests.post(
        f"{state['idp_url']}/token",
        data=form,
        auth=(client_id, DEMO_CLIENTS[client_id]),
        verify=state["ca_cert"],
        timeout=30,
    )


def _alice(state: dict[str, Any], scope: str = "openid profile", **form: str) -> dict[str, Any]:
    answer = _token(
        state,
        "escape-portal",
        grant_type="password",
        username="alice",
        password=DEMO_RESEARCHERS["alice"],
        scope=scope,
        **form,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _rucio_whoami(state: dict[str, Any], token: str) -> requests.Response:
    return requests.get(
        f"{state['rucio_host']}/accounts/whoami",
        headers={"X-Rucio-Auth-Token": token},
        allow_redirects=False,
        timeout=60,
    )


def _whoami_cli(lake_env: dict[str, str], state: dict[str, Any], token_file: Path) -> Any:
    # As JupyterHub sets a session up: the lake's URL, a token file, the CA; no account.
    env = {
        **lake_env,
        "RUCIO_BASE_URL": state["rucio_host"],
        "BEARER_TOKEN_FILE": str(token_file),
        "RUCIO_CA_CERT": state["ca_cert"],
    }
    return subprocess.run(
        [sys.executable, "-m", "escape_portal.cli", "whoami", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_error(stderr: str) -> tuple[str, str]:
    """The CLI's error line (what happened) and hint line (what to do), nothing else."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: "), stderr
    assert lines[1].startswith("hint: "), stderr
    return lines[0], lines[1]


def _write_token(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "access_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return path


def test_discovery_and_keys_over_https_with_the_lake_ca(
    state: dict[str, Any], embedded_lake: EmbeddedLake
) -> None:
    issuer = state["idp_url"]
    assert issuer == tokens.issuer_url(state["idp_port"])
    document = requests.get(
        f"{issuer}/.well-known/openid-configuration", verify=state["ca_cert"], timeout=30
    ).json()
    assert document["issuer"] == issuer
    assert TOKEN_EXCHANGE in document["grant_types_supported"]
    keys = requests.get(document["jwks_uri"], verify=state["ca_cert"], timeout=30).json()
    assert keys == tokens.signing_key(embedded_lake.paths.root).jwks()
    with pytest.raises(requests.exceptions.SSLError):  # not trusted without the lake's CA
        requests.get(f"{issuer}/jwks", timeout=30)


def test_provider_listens_on_loopback_only(state: dict[str, Any]) -> None:
    port = f"{state['idp_port']:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state_code = line.split()[1], line.split()[3]
            if local.endswith(f":{port}") and state_code == "0A":
                listening.append(local)
    assert listening == [f"0100007F:{port}"]


def test_password_and_refresh_grants(state: dict[str, Any]) -> None:
    first = _alice(state, "openid profile offline_access")
    claims = tokens.claims_of(first["access_token"])
    assert (claims["sub"], claims["aud"], claims["iss"]) == ("alice", "rucio", state["idp_url"])
    assert claims["scope"] == "openid profile"
    renewed = _token(
        state, "escape-portal", grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert renewed.status_code == 200, renewed.text
    assert tokens.claims_of(renewed.json()["access_token"])["sub"] == "alice"
    assert renewed.json()["refresh_token"] != first["refresh_token"]
    spent = _token(
        state, "escape-portal", grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (spent.status_code, spent.json()["error"]) == (400, "invalid_grant")
    wrong = _token(
        state, "escape-portal", grant_type="password", username="alice", password="guess"
    )
    assert wrong.status_code == 400


def test_client_credentials_for_a_storage_element(state: dict[str, Any]) -> None:
    audience = tokens.storage_audience("CERN-DISK")
    answer = _token(
        state,
        "rucio-transfers",
        grant_type="client_credentials",
        audience=audience,
        scope="storage.read:/ storage.modify:/",
    )
    assert answer.status_code == 200, answer.text
    claims = tokens.claims_of(answer.json()["access_token"])
    assert (claims["sub"], claims["aud"]) == ("rucio-transfers", audience)
    assert claims["scope"] == "storage.read:/ storage.modify:/"
    assert "refresh_token" not in answer.json()


def test_exchange_for_a_storage_audience_with_narrower_scopes(state: dict[str, Any]) -> None:
    alice = _alice(state, "openid profile storage.read:/ storage.create:/")["access_token"]
    audience = tokens.storage_audience("PIC-DISK")
    answer = _token(
        state,
        "escape-portal",
        grant_type=TOKEN_EXCHANGE,
        subject_token=alice,
        subject_token_type=ACCESS_TOKEN_TYPE,
        audience=audience,
        scope="storage.read:/user/alice storage.create:/user/alice",
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["issued_token_type"] == ACCESS_TOKEN_TYPE
    claims = tokens.claims_of(answer.json()["access_token"])
    assert (claims["sub"], claims["aud"]) == ("alice", audience)
    assert claims["scope"] == "storage.read:/user/alice storage.create:/user/alice"
    wider = _token(
        state,
        "escape-portal",
        grant_type=TOKEN_EXCHANGE,
        subject_token=alice,
        subject_token_type=ACCESS_TOKEN_TYPE,
        audience=audience,
        scope="storage.modify:/",
    )
    assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")


def test_rucio_maps_alices_token_to_her_account(
    state: dict[str, Any], lake_env: dict[str, str], tmp_path: Path
) -> None:
    token_file = _write_token(tmp_path, _alice(state)["access_token"])
    result = _whoami_cli(lake_env, state, token_file)
    assert result.returncode == 0, result.stderr
    who = json.loads(result.stdout)
    assert (who["account"], who["auth_type"]) == ("alice", "oidc")


def test_rucio_refuses_another_signers_token(
    state: dict[str, Any], lake_env: dict[str, str], tmp_path: Path
) -> None:
    stranger = tokens.signing_key(tmp_path / "elsewhere")
    forged = tokens.mint(
        stranger,
        issuer=state["idp_url"],
        subject="alice",
        audience=tokens.RUCIO_AUDIENCE,
        scopes=tokens.RUCIO_SCOPES,
    )
    assert _rucio_whoami(state, forged).status_code == 401
    result = _whoami_cli(lake_env, state, _write_token(tmp_path, forged))
    assert result.returncode == 4
    error, hint = _one_error(result.stderr)
    assert "signature is not from" in error and "get a new one" in hint


def test_rucio_refuses_an_expired_token(
    state: dict[str, Any], lake_env: dict[str, str], tmp_path: Path, embedded_lake: EmbeddedLake
) -> None:
    expired = tokens.mint(
        tokens.signing_key(embedded_lake.paths.root),
        issuer=state["idp_url"],
        subject="alice",
        audience=tokens.RUCIO_AUDIENCE,
        scopes=tokens.RUCIO_SCOPES,
        lifetime=-60,
    )
    assert _rucio_whoami(state, expired).status_code == 401
    result = _whoami_cli(lake_env, state, _write_token(tmp_path, expired))
    assert result.returncode == 4
    error, hint = _one_error(result.stderr)
    assert "expired" in error and "Log in again" in hint


def test_rucio_refuses_a_token_for_another_audience(
    state: dict[str, Any], lake_env: dict[str, str], tmp_path: Path
) -> None:
    audience = tokens.storage_audience("CERN-DISK")
    token = _alice(state, audience=audience)["access_token"]
    assert _rucio_whoami(state, token).status_code == 401
    result = _whoami_cli(lake_env, state, _write_token(tmp_path, token))
    assert result.returncode == 4
    error, hint = _one_error(result.stderr)
    assert f"meant for {audience}" in error and "audience 'rucio'" in hint
