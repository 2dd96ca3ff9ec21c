"""Credentials for Rucio, held in memory only.

Rucio's own client caches every token it gets in a plaintext file under ``/tmp``; the
portal's client keeps tokens in memory instead. An OIDC session's token comes from its
:class:`~escape_portal.lake.tokens.TokenKeeper`, asked before every request, so a
renewed token is used at once; a 401 makes the keeper renew once and the request is
sent again.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from rucio.client import Client
from rucio.client.baseclient import BaseClient
from rucio.common.exception import ServerConnectionException

from escape_portal.config import LakeConfig
from escape_portal.errors import AuthenticationFailed, LakeUnavailable, TokenExpired
from escape_portal.lake.tokens import TokenKeeper, jwt_expiry

__all__ = ["PortalClient", "jwt_expiry", "make_client", "refused_token", "token_account"]

#: The audience a Rucio server expects in a token unless configured otherwise (Rucio's
#: ``[oidc] expected_audience`` default, and ESCAPE's).
RUCIO_AUDIENCE = "rucio"


def _b64json(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _issuer_keys(issuer: str, config: LakeConfig) -> list[dict[str, Any]] | None:
    """The issuer's published keys (discovery, then JWKS), or ``None`` if unreachable."""
    verify: str | bool = config.ca_cert or True
    try:
        document = requests.get(
            issuer.rstrip("/") + "/.well-known/openid-configuration",
            timeout=config.timeout,
            verify=verify,
        ).json()
        keys = requests.get(document["jwks_uri"], timeout=config.timeout, verify=verify).json()
        return list(keys["keys"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


def _signed_by(token: str, keys: list[dict[str, Any]]) -> bool | None:
    """Whether one of ``keys`` signed ``token`` (RS256); ``None`` if that cannot be told."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    kid = _b64json(header_b64).get("kid")
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    if not candidates:
        return False
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        return None
    signature = base64.urlsafe_b64decode(signature_b64 + "=" * (-len(signature_b64) % 4))
    for jwk in candidates:
        if jwk.get("kty") != "RSA":
            return None
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(base64.urlsafe_b64decode(jwk["e"] + "=" * (-len(jwk["e"]) % 4))),
            int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4))),
        )
        try:
            numbers.public_key().verify(
                signature,
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            return True
        except InvalidSignature:
            continue
    return False


def refused_token(config: LakeConfig, token: str) -> AuthenticationFailed:
    """Why the lake refused ``token``, in one line, and what to do.

    Rucio answers every refused token with the same 401; the portal looks at the token
    itself (its claims, and its issuer's published keys) to say which problem it has.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return AuthenticationFailed(
            "The lake refused your OIDC token: it is not a JSON Web Token.",
            "Give the access token your provider issued (a JWT), not a refresh token.",
        )
    try:
        claims = _b64json(parts[1])
    except ValueError:
        claims = {}
    expiry = jwt_expiry(token)
    if expiry and expiry <= dt.datetime.now(dt.UTC):
        return TokenExpired(
            f"Your OIDC token expired at {expiry:%Y-%m-%d %H:%M:%S} UTC.",
            "Log in again (on JupyterHub: restart your server from the hub's control "
            "panel) to get a fresh token.",
        )
    issuer = str(claims.get("iss", ""))
    keys = _issuer_keys(issuer, config) if issuer.startswith("https://") else None
    if keys is not None and _signed_by(token, keys) is False:
        return AuthenticationFailed(
            f"The lake refused your OIDC token: its signature is not from {issuer}'s keys.",
            f"The token was not issued by {issuer} (or its key changed); get a new one there.",
        )
    audience = claims.get("aud", [])
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if RUCIO_AUDIENCE not in audiences:
        return AuthenticationFailed(
            f"The lake refused your OIDC token: it is meant for {', '.join(audiences) or 'no '}"
            f"audience, not for Rucio ({RUCIO_AUDIENCE!r}).",
            f"Ask your provider for a token with audience {RUCIO_AUDIENCE!r}.",
        )
    return AuthenticationFailed(
        f"The lake refused your OIDC token for {claims.get('sub')!r} from {issuer}.",
        f"Ask the lake's administrators to map identity 'SUB={claims.get('sub')}, "
        f"ISS={issuer}' to your Rucio account, or check the token's scopes.",
    )


_LOCKED_RETRIES = 6
#: Rucio's client logs every refused connection as a raw ``ERROR ConnectionError: ...``
#: line; the portal says what happened in its own words instead (see :class:`Unavailable`).
_RUCIO_CLIENT_LOG = logging.getLogger("escape_portal.lake.rucio_client")
_RUCIO_CLIENT_LOG.addHandler(logging.NullHandler())
_RUCIO_CLIENT_LOG.propagate = False
#: Lakes (``rucio_host``) that answered in this process: a call that meets one of them
#: dead waits for it to come back; one never reached fails at once (a wrong URL, a lake
#: never started).
_ANSWERED: set[str] = set()
_ANSWERED_LOCK = threading.Lock()
#: First and longest pause between two attempts to reach a lake that went away.
RETRY_FIRST, RETRY_MAX = 0.25, 4.0


def waiting_message(rucio_host: str) -> str:
    """What a user reads while the lake at ``rucio_host`` does not answer."""
    return f"The lake at {rucio_host} does not answer; waiting for it to come back\u2026"


def _gone(exc: BaseException) -> bool:
    """Whether ``exc`` says nothing listens there (refused) or the server went (reset)."""
    if isinstance(exc, ServerConnectionException):  # Rucio's, once its own retries ran out
        return True
    return isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout)


def lake_answered(rucio_host: str) -> None:
    """Note that the lake at ``rucio_host`` answered: calls then wait for it if it goes."""
    with _ANSWERED_LOCK:
        _ANSWERED.add(rucio_host)


def _refused_credentials(result: Any) -> bool:
    """Whether Rucio's answer is a 401 for the credentials (not an ``AccessDenied``)."""
    if result is None or getattr(result, "status_code", None) != 401:
        return False
    return str(result.headers.get("ExceptionClass", "CannotAuthenticate")) != "AccessDenied"


class PortalClient(Client):  # type: ignore[misc]
    """Rucio's client with tokens kept in memory, never in ``/tmp`` files.

    Rucio's ``BaseClient`` reads and writes its token through the private methods
    ``__read_token``/``__write_token``; overriding their mangled names is the narrowest
    change that keeps everything else (retries, 401 handling, streaming) Rucio's own.
    With a ``keeper`` (OIDC), every request carries the keeper's current token, and a
    401 (the token expired or was revoked) renews it once and sends the request again.
    """

    def __init__(
        self,
        *,
        keeper: TokenKeeper | None,
        portal_config: LakeConfig,
        retry_for: float = 30.0,
        on_waiting: Callable[[str | None], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self._keeper = keeper
        self._portal_config = portal_config
        self._memory_token: str | None = None
        #: Seconds a call keeps trying a lake that answered before and went away.
        self.retry_for = retry_for
        #: Called with :func:`waiting_message` when a call starts waiting for the lake,
        #: and with ``None`` when it answers again.
        self.on_waiting = on_waiting
        super().__init__(logger=_RUCIO_CLIENT_LOG, **kwargs)

    def _send_request(self, url: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Rucio's request with the keeper's current token; renewed once if Rucio refuses it.

        Rucio answers 401 both for a token it does not accept (``CannotAuthenticate``)
        and for an action the account may not do (``AccessDenied``); only the first
        renews the token, once, and sends the request again. A token still refused then
        is explained by :func:`refused_token`; an ``AccessDenied`` stays Rucio's.
        """
        if self._keeper is None:
            return self._send_waiting(url, method, *args, **kwargs)
        self._use(self._keeper.current())  # renewed here when near expiry
        kwargs["get_token"] = True  # a 401 is handled here, not by Rucio's re-login
        result = self._send_waiting(url, method, *args, **kwargs)
        if not _refused_credentials(result):
            return result
        refused = self.auth_token
        token = self._keeper.renew(refused)
        if token == refused:
            raise refused_token(self._portal_config, refused)
        self._use(token)
        result = self._send_waiting(url, method, *args, **kwargs)
        if _refused_credentials(result):
            raise refused_token(self._portal_config, token)
        return result

    def _use(self, token: str) -> None:
        self.auth_token = token
        self.headers["X-Rucio-Auth-Token"] = token

    def _send_waiting(self, url: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Rucio's request, sent again while a lake that answered before is away.

        Connection refused or reset by a lake that answered in this process (its server
        is being restarted on the same port) is retried with backoff for ``retry_for``
        seconds; a lake never reached fails at once.
        """
        deadline = time.monotonic() + self.retry_for
        pause = RETRY_FIRST
        waiting = False
        while True:
            try:
                # The body is not read here: listings stream (a first page of 100,000
                # files must not wait for the rest); one cut off mid-answer is reported
                # by the lake's facade as the lake gone away.
                result = self._send_unlocked(url, method, *args, **kwargs)
            except (requests.RequestException, ServerConnectionException) as exc:
                with _ANSWERED_LOCK:
                    known = self.host in _ANSWERED
                if not (_gone(exc) and known) or time.monotonic() + pause > deadline:
                    raise
                if not waiting and self.on_waiting is not None:
                    self.on_waiting(waiting_message(self.host))
                waiting = True
                time.sleep(pause)
                pause = min(RETRY_MAX, pause * 2)
                continue
            lake_answered(self.host)
            if waiting and self.on_waiting is not None:
                self.on_waiting(None)
            return result

    def _send_unlocked(self, url: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Rucio's request, retried while a SQLite-backed server answers "database is locked".

        Rucio on SQLite (the embedded lake) fails a transaction at once, rolled back, when
        a concurrent writer committed first; the request is safe to send again.
        """
        for attempt in range(_LOCKED_RETRIES + 1):
            result = super()._send_request(url, method, *args, **kwargs)
            if (
                attempt == _LOCKED_RETRIES
                or result is None
                or result.status_code != 500
                or "database is locked" not in result.text
            ):
                return result
            time.sleep(0.05 * 2**attempt)
        return result

    def _BaseClient__read_token(self) -> bool:  # noqa: N802 - overrides a mangled name
        token = self._keeper.current() if self._keeper else self._memory_token
        if not token:
            return False
        self.auth_token = token
        self.headers["X-Rucio-Auth-Token"] = token
        return True

    def _BaseClient__write_token(self) -> None:  # noqa: N802
        self._memory_token = self.auth_token

    def _BaseClient__get_token(self) -> None:  # noqa: N802
        if self._keeper is not None:  # not reached by requests (see _send_request)
            self._use(self._keeper.renew(self.auth_token))
            return
        getter: Callable[[BaseClient], None] = BaseClient._BaseClient__get_token
        getter(self)


def token_account(config: LakeConfig, token: str) -> str:
    """The Rucio account a token acts as, asked of the server (``GET /accounts/whoami``).

    For a session given only a token (a JupyterHub's), as Rucio itself maps the token's
    identity to the identity's default account.
    """
    url = config.rucio_host.rstrip("/") + "/accounts/whoami"
    try:
        answer = requests.get(
            url,
            headers={"X-Rucio-Auth-Token": token, "User-Agent": "escape-portal"},
            allow_redirects=False,
            timeout=config.timeout,
            verify=config.ca_cert or True,
        )
    except requests.RequestException as exc:
        raise LakeUnavailable(
            f"The lake at {config.rucio_host} could not be reached to find your account: {exc}",
            "Check the instance's URL and your network, or set RUCIO_ACCOUNT.",
        ) from exc
    if answer.status_code == 401:
        raise refused_token(config, token)
    # Rucio answers 303 to the account's own URL (relative: just its name).
    location = answer.headers.get("Location", "").split("?", 1)[0].rstrip("/")
    if answer.status_code in (301, 302, 303, 307) and location:
        return location.rsplit("/", 1)[-1]
    if answer.ok:
        try:
            name = answer.json().get("account")
        except ValueError:
            name = None
        if isinstance(name, str) and name:
            return name
    raise AuthenticationFailed(
        f"The lake did not say which account your token acts as (HTTP {answer.status_code}).",
        "Set RUCIO_ACCOUNT to the Rucio account to use.",
    )


def make_client(
    config: LakeConfig,
    on_waiting: Callable[[str | None], None] | None = None,
    keeper: TokenKeeper | None = None,
) -> PortalClient:
    """A Rucio client for ``config``; authenticates at once (errors are Rucio's).

    An OIDC instance's tokens come from ``keeper`` (a new :class:`TokenKeeper` if
    ``None``): the same keeper gives the data path its storage tokens.

    ``on_waiting`` is called with a message in the user's words when a call starts
    waiting for a lake that went away (see :class:`PortalClient`), and with ``None`` when
    it answers again.
    """
    creds: dict[str, Any] = {}
    account = config.account
    if config.auth_type == "userpass":
        if not config.username or not config.password:
            raise AuthenticationFailed(
                f"Instance {config.name!r} uses userpass but has no "
                f"{'username' if not config.username else 'password'}.",
                "Set RUCIO_USERNAME and RUCIO_PASSWORD in the environment.",
            )
        creds = {"username": config.username, "password": config.password}
    elif config.auth_type == "oidc":
        if keeper is None:
            keeper = TokenKeeper(config)
        token = keeper.current()  # fail early, in the user's words, on a missing/expired token
        if not account:
            # Rucio's client would look for the account in a rucio.cfg a hub session lacks.
            account = token_account(config, token)
    elif config.auth_type == "x509":
        creds = {"client_cert": config.client_cert, "client_key": config.client_key}
    elif config.auth_type == "x509_proxy":
        creds = {"client_proxy": config.x509_proxy}
    if config.auth_type != "oidc":
        keeper = None
    return PortalClient(
        keeper=keeper,
        portal_config=config,
        retry_for=config.timeout,
        on_waiting=on_waiting,
        rucio_host=config.rucio_host,
        auth_host=config.auth_host,
        account=account,
        ca_cert=config.ca_cert,
        auth_type=config.auth_type,
        creds=creds,
        timeout=config.timeout,
        user_agent="escape-portal",
        vo=config.vo,
    )
