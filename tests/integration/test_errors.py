"""Bad input and a lake that is down, slow or answers garbage: clear errors, no hangs."""

import datetime as dt
import getpass
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from escape_portal.config import LakeConfig
from escape_portal.errors import InvalidRequest
from escape_portal.lake import (
    AuthenticationFailed,
    InvalidDID,
    Lake,
    LakeUnavailable,
    NotFound,
    QuotaExceeded,
    TokenExpired,
)
from tests.unit.test_auth import _jwt

pytestmark = pytest.mark.lake


def test_malformed_did_fails_before_any_request(lake: Lake) -> None:
    broken = Lake(replace(lake.config, rucio_host="http://127.0.0.1:9"))  # nothing listens
    with pytest.raises(InvalidDID, match="scope:name"):
        broken.info("no-colon-here")
    with pytest.raises(InvalidDID):
        list(broken.files("cta:bad name"))


def test_unknown_scope_and_did(lake: Lake) -> None:
    with pytest.raises(NotFound, match="scope"):
        list(lake.dids("nosuchscope"))
    with pytest.raises(NotFound, match="cta:does-not-exist"):
        lake.info("cta:does-not-exist")
    with pytest.raises(NotFound):
        list(lake.files("cta:does-not-exist"))


def test_bad_type_and_rse_expression(lake: Lake) -> None:
    with pytest.raises(InvalidRequest, match="Unknown type"):
        list(lake.dids("cta", type="folder"))
    with pytest.raises(InvalidRequest, match="storage element"):
        lake.add_rule("cta:crab-2024.sky", "NO-SUCH-RSE")


def test_wrong_password(lake_config: LakeConfig, alice_config: LakeConfig) -> None:
    lake = Lake(replace(lake_config, password="wrong"))  # userpass at Rucio
    with pytest.raises(AuthenticationFailed, match="did not accept"):
        lake.scopes()
    # The researcher's demo password, at the lake's identity provider.
    with pytest.raises(AuthenticationFailed, match="refused renewing your OIDC token") as err:
        Lake(replace(alice_config, password="wrong")).scopes()
    assert "wrong" not in str(err.value) and "password" in err.value.hint


def test_expired_oidc_token_is_reported_without_a_request(lake_config: LakeConfig) -> None:
    expired = _jwt(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    lake = Lake(replace(lake_config, auth_type="oidc", token=expired, password=None))
    with pytest.raises(TokenExpired, match="expired"):
        lake.scopes()


def test_a_token_without_an_account_acts_as_the_tokens_account(
    lake_config: LakeConfig,
) -> None:
    # As a JupyterHub session gets it: a token and no RUCIO_ACCOUNT, no rucio.cfg.
    token = Lake(lake_config).client.auth_token
    lake = Lake(replace(lake_config, auth_type="oidc", token=token, account=None, password=None))
    assert lake.identity().account == lake_config.account
    refused = Lake(
        replace(lake_config, auth_type="oidc", token="not-a-token", account=None, password=None)
    )
    with pytest.raises(AuthenticationFailed, match="refused your OIDC token"):
        refused.identity()


def test_stopped_server_is_unavailable_at_once(lake_config: LakeConfig) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    lake = Lake(replace(lake_config, rucio_host=f"http://127.0.0.1:{port}", timeout=5))
    started = time.monotonic()
    with pytest.raises(LakeUnavailable, match="Cannot reach") as err:
        lake.scopes()
    assert time.monotonic() - started < 5
    assert err.value.url.endswith(str(port))
    assert "lake up" in err.value.hint


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    sock.close()


def test_hanging_server_times_out(lake_config: LakeConfig, silent_server: int) -> None:
    lake = Lake(replace(lake_config, rucio_host=f"http://127.0.0.1:{silent_server}", timeout=1))
    started = time.monotonic()
    with pytest.raises(LakeUnavailable, match="did not answer within 1 s") as err:
        lake.scopes()
    assert time.monotonic() - started < 15
    assert err.value.timeout == 1


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Gateway says hello</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("X-Rucio-Auth-Token", "garbage")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_garbage_answer_is_an_error_not_a_crash(lake_config: LakeConfig) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        lake = Lake(
            replace(lake_config, rucio_host=f"http://127.0.0.1:{server.server_port}", timeout=3)
        )
        with pytest.raises((LakeUnavailable, AuthenticationFailed)) as err:
            lake.scopes()
        assert str(server.server_port) in str(err.value) or err.value.hint
    finally:
        server.shutdown()
        server.server_close()


def test_no_token_is_written_to_disk(lake_config: LakeConfig) -> None:
    token_dir = Path("/tmp") / getpass.getuser() / f".rucio_{lake_config.account}"
    before = set(token_dir.glob("*")) if token_dir.exists() else set()
    lake = Lake(lake_config)
    lake.scopes()
    after = set(token_dir.glob("*")) if token_dir.exists() else set()
    assert after == before, f"Rucio token files appeared: {after - before}"
    assert lake.client.auth_token  # authenticated, in memory


def test_quota_exceeded_is_reported(lake: Lake, operator_lake: Lake) -> None:
    client = operator_lake.client  # quotas are the operator's to set
    account = lake.identity().account
    client.set_local_account_limit(account, "DESY-DISK", 1)  # one byte
    try:
        with pytest.raises(QuotaExceeded, match="quota") as err:
            lake.add_rule("lofar:lotss-dr2.hetdex", "DESY-DISK", lifetime=600)
        assert "Free space" in err.value.hint
    finally:
        client.set_local_account_limit(account, "DESY-DISK", 50 * 2**30)
