"""The session's tokens: where its own token comes from, kept fresh; storage tokens by exchange.

:class:`TokenKeeper` is the one place that knows where a session's OIDC token comes from
and renews it while the session runs. The sources, in the order they are tried when the
instance's ``token_source`` is ``auto`` (see ``docs/configuration.md``):

1. ``file``: a token file (``token_file``, ``$BEARER_TOKEN_FILE``), re-read on every
   use: whoever writes it (a hub, a sidecar, ``oidc-agent``) keeps it fresh;
2. ``refresh``: a refresh token (``$ESCAPE_PORTAL_OIDC_REFRESH_TOKEN``, memory only) at
   the provider's token endpoint (from the issuer's discovery document), with the
   instance's OAuth client; a rotated refresh token replaces the spent one;
3. ``token``: a token given as such (``$RUCIO_ACCESS_TOKEN``, ``$BEARER_TOKEN``), used
   until it expires;
4. ``hub``: JupyterHub's API (``$JUPYTERHUB_API_URL`` and ``$JUPYTERHUB_API_TOKEN``),
   asked again when the token it gave is near expiry (:func:`.hub.fetch_hub_token`);
5. ``password``: a username and password at the provider (password grant, then refresh):
   only the embedded lake's demo researchers, whose passwords are published.

A token the portal can renew itself (``refresh``, ``hub``, ``password``) is renewed when
less than :func:`renew_margin` of its lifetime is left, under a lock, so that threads
sharing a session never spend a rotating refresh token twice. Tokens are held in memory
only and never logged; errors name the source, never a token.

Storage tokens: Rucio's own download client hands storage the Rucio token (rucio#6128);
storage that checks its audience refuses it. The portal asks the session's identity
provider for a token with the storage's audience and a scope limited to the path (RFC 8693
token exchange, as ESCAPE's IAM offers it), and keeps it in memory until shortly before it
expires. Which audience a storage element expects: its RSE attribute ``oidc_audience``
when the operator set one, else what Rucio's conveyor derives for FTS (the host names of
its ``davs`` protocols, ``rucio.core.rse.determine_audience_for_rse``). Scopes are relative
to the RSE attribute ``oidc_base_path``, as Rucio's ``determine_scope_for_rse`` makes them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from escape_portal.config import TOKEN_SOURCES, LakeConfig
from escape_portal.errors import AuthenticationFailed, TokenExpired

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
STORAGE_READ = "storage.read"
STORAGE_MODIFY = "storage.modify"
STORAGE_CREATE = "storage.create"
#: A token is renewed when less than this many seconds (or :data:`RENEW_FRACTION` of its
#: lifetime, whichever is less) are left.
RENEW_MARGIN = 60.0
RENEW_FRACTION = 0.2
#: An expiry notice is given when a token that cannot be renewed has less than this left.
NOTICE_BEFORE = dt.timedelta(minutes=10)
#: Sources the portal renews by itself.
RENEWABLE = frozenset({"refresh", "hub", "password"})
HUB_URL, HUB_TOKEN = "JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN"
#: Seconds between two requests to the hub for a token that is still near expiry.
HUB_PAUSE = 5.0

log = logging.getLogger(__name__)


def claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, not verified (the server verifies); ``{}`` if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def jwt_expiry(token: str) -> dt.datetime | None:
    """The ``exp`` claim of a JWT (not verified: the server verifies), or ``None``."""
    try:
        return dt.datetime.fromtimestamp(int(claims(token)["exp"]), tz=dt.UTC)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def renew_margin(lifetime: float | None) -> float:
    """Seconds before expiry at which a token of ``lifetime`` seconds is renewed."""
    if not lifetime or lifetime <= 0:
        return RENEW_MARGIN
    return min(RENEW_MARGIN, RENEW_FRACTION * lifetime)


def _in_words(left: dt.timedelta) -> str:
    seconds = int(left.total_seconds())
    if seconds < 90:
        return f"{max(seconds, 0)} seconds"
    return f"{round(seconds / 60)} minutes"


def expiry_notice(
    expires_at: dt.datetime | None,
    renewable: bool,
    *,
    within: dt.timedelta = NOTICE_BEFORE,
    now: dt.datetime | None = None,
) -> str | None:
    """What to tell the user about a token that will expire and cannot be renewed.

    ``None`` when the token is renewed by the portal, has no known expiry, or has more
    than ``within`` left.
    """
    if renewable or expires_at is None:
        return None
    left = expires_at - (now or dt.datetime.now(dt.UTC))
    if left > within:
        return None
    if left.total_seconds() <= 0:
        return (
            f"Your OIDC token expired at {expires_at:%H:%M:%S} UTC and the portal cannot renew "
            "it: log in again (on JupyterHub: restart your server) to get a fresh one."
        )
    return (
        f"Your OIDC token expires in {_in_words(left)} (at {expires_at:%H:%M:%S} UTC) and the "
        "portal cannot renew it: save your work and log in again before then "
        "(on JupyterHub: restart your server)."
    )


@dataclass(frozen=True)
class StorageAccess:
    """What a storage element's tokens must carry: its audience and its scope base."""

    audience: str
    base_path: str = ""

    def scope(self, path: str, *, write: bool = False, did_scope: str | None = None) -> str:
        """The WLCG scope for ``path`` (a replica's path on the storage) below the base.

        With ``did_scope`` (the file's Rucio scope) a read scope covers that Rucio scope's
        area on the storage (``/cta`` for ``/cta/01/9c/f.fits``, ``/user/alice`` for
        ``user.alice``, as Rucio's deterministic paths lay them out), so one token serves
        every file of the scope; when the path does not show the scope, only ``path``.
        Write scopes always name ``path`` alone.
        """
        relative = path
        if self.base_path and relative.startswith(self.base_path.rstrip("/") + "/"):
            relative = relative[len(self.base_path.rstrip("/")) :]
        relative = "/" + relative.lstrip("/")
        if write:
            return f"{STORAGE_READ}:{relative} {STORAGE_MODIFY}:{relative}"
        if did_scope:
            relative = scope_area(relative, did_scope)
        return f"{STORAGE_READ}:{relative}"


def scope_area(path: str, did_scope: str) -> str:
    """The part of ``path`` that holds Rucio scope ``did_scope``'s files, else ``path``.

    Rucio's deterministic path functions put a file below its scope's folder; ``user.*``
    and ``group.*`` scopes become two levels (``user/alice``).
    """
    folders = [did_scope]
    if did_scope.startswith(("user.", "group.")):
        folders.insert(0, did_scope.replace(".", "/"))
    for folder in folders:
        at = path.find(f"/{folder}/")
        if at >= 0:
            return path[: at + len(folder) + 1]
    return path


def storage_access(attributes: dict[str, Any], protocols: list[dict[str, Any]]) -> StorageAccess:
    """A storage element's :class:`StorageAccess` from its RSE attributes and protocols."""
    audience = attributes.get("oidc_audience")
    if not audience:
        hosts = sorted({str(p.get("hostname")) for p in protocols if p.get("scheme") == "davs"})
        audience = " ".join(hosts)
    return StorageAccess(str(audience), str(attributes.get("oidc_base_path") or ""))


def choose_source(config: LakeConfig, env: Mapping[str, str]) -> str:
    """Where ``config``'s session token comes from (see the module's docstring for the order).

    Raises
    ------
    AuthenticationFailed
        If ``token_source`` names a source that is not configured, or none is.
    """
    wanted = config.token_source
    available = {
        "file": bool(config.token_file),
        "refresh": bool(config.oidc_refresh_token),
        "token": bool(config.token),
        "hub": bool(env.get(HUB_URL) and env.get(HUB_TOKEN)),
        "password": bool(config.username and config.password),
    }
    if wanted != "auto":
        if wanted not in available:
            raise AuthenticationFailed(
                f"Instance {config.name!r}: unknown token_source {wanted!r}.",
                f"Use one of {', '.join(TOKEN_SOURCES)}.",
            )
        if not available[wanted]:
            raise AuthenticationFailed(
                f"Instance {config.name!r} takes its token from {wanted!r}, which is not set.",
                _MISSING_HINT[wanted],
            )
        return wanted
    for source in ("file", "refresh", "token", "hub", "password"):
        if available[source]:
            return source
    raise AuthenticationFailed(
        "No OIDC token was given.",
        "Set RUCIO_ACCESS_TOKEN or BEARER_TOKEN_FILE (or token_file in the instance), or "
        "ESCAPE_PORTAL_OIDC_REFRESH_TOKEN with the instance's OAuth client.",
    )


_MISSING_HINT = {
    "file": "Set token_file in the instance, or BEARER_TOKEN_FILE.",
    "refresh": "Set ESCAPE_PORTAL_OIDC_REFRESH_TOKEN in the environment.",
    "token": "Set RUCIO_ACCESS_TOKEN or BEARER_TOKEN in the environment.",
    "hub": "Run inside a JupyterHub single-user server (JUPYTERHUB_API_URL/_TOKEN).",
    "password": "Give the instance a username and password (demo researchers only).",
}


class TokenKeeper:
    """The session's tokens: its own (for Rucio), kept fresh, and storage ones by exchange.

    Parameters
    ----------
    config
        The instance: its token, token file, refresh token, username/password,
        ``oidc_issuer``, ``oidc_client_id``/``oidc_client_secret`` and ``oidc_scope``.
    env
        Where the hub's variables are read (default: the process's environment).

    Raises
    ------
    AuthenticationFailed
        If no token source is configured (see :func:`choose_source`).
    """

    def __init__(self, config: LakeConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._env = os.environ if env is None else env
        #: Which source the token comes from: ``file``, ``refresh``, ``token``, ``hub``
        #: or ``password``.
        self.source = choose_source(config, self._env)
        self._lock = threading.RLock()
        self._access: str | None = config.token if self.source in ("token", "refresh") else None
        self._lifetime: float | None = None
        self._refresh: str | None = config.oidc_refresh_token
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._cache_lock = threading.Lock()
        self._endpoints: dict[str, str] = {}
        self._asked = 0.0
        #: How many times the session's token was renewed (a measure for tests and logs).
        self.renewals = 0

    # -- the session's own token ----------------------------------------------------------

    @property
    def renewable(self) -> bool:
        """Whether the portal renews the token itself (refresh token, hub, demo password)."""
        return self.source in RENEWABLE

    def current(self) -> str:
        """The session's token, renewed first if it is near expiry.

        Raises
        ------
        TokenExpired
            If the token expired and cannot be renewed.
        AuthenticationFailed
            If its source cannot give one (file unreadable, provider refuses, ...).
        """
        if self.source == "file":
            return self._checked(self._read_file())
        with self._lock:
            token = self._access
            if self.renewable and (token is None or self._near_expiry(token)):
                try:
                    token = self._renew_locked()
                except AuthenticationFailed as exc:
                    if token is None or self._expired(token):
                        raise
                    # Still valid for a moment: use it, try again on the next call.
                    log.warning("could not renew the session's token yet: %s", exc.message)
            return self._checked(token or "")

    def renew(self, refused: str | None = None) -> str:
        """A new token after the lake refused ``refused`` (a 401): renewed once if possible.

        Returns the token to retry with; raises when there is none better than ``refused``
        (a static token, a file nobody rewrote), in the user's words.
        """
        if self.source == "file":
            return self._checked(self._read_file())
        with self._lock:
            if self._access is not None and self._access != refused:
                return self._checked(self._access)  # another thread renewed it meanwhile
            if not self.renewable:
                return self._checked(self._access or "")
            return self._checked(self._renew_locked(force=True))

    def expires_at(self) -> dt.datetime | None:
        """When the current token expires (``None`` if unknown or none can be had)."""
        try:
            return jwt_expiry(self.current())
        except AuthenticationFailed:
            return None

    def notice(self, within: dt.timedelta = NOTICE_BEFORE) -> str | None:
        """An expiry notice in the user's words, or ``None`` (see :func:`expiry_notice`).

        Asks nobody: it looks at the token held (or the token file) as it is.
        """
        return expiry_notice(self.notice_expiry(), self.renewable, within=within)

    def notice_expiry(self) -> dt.datetime | None:
        """When the token held now (or in the token file) expires, renewing nothing."""
        token = self._access
        if self.source == "file":
            try:
                token = self._read_file()
            except AuthenticationFailed:
                return None
        return jwt_expiry(token) if token else None

    def _near_expiry(self, token: str) -> bool:
        expiry = jwt_expiry(token)
        if expiry is None:
            return False
        lifetime = self._lifetime
        if lifetime is None:
            issued = claims(token).get("iat")
            lifetime = (
                expiry.timestamp() - float(issued) if isinstance(issued, int | float) else None
            )
        return expiry.timestamp() - time.time() < renew_margin(lifetime)

    @staticmethod
    def _expired(token: str) -> bool:
        expiry = jwt_expiry(token)
        return expiry is not None and expiry <= dt.datetime.now(dt.UTC)

    def _checked(self, token: str) -> str:
        if not token:
            raise AuthenticationFailed("No OIDC token was given.", _MISSING_HINT[self.source])
        expiry = jwt_expiry(token)
        if expiry and expiry <= dt.datetime.now(dt.UTC):
            raise TokenExpired(
                f"Your OIDC token expired at {expiry:%Y-%m-%d %H:%M:%S} UTC"
                + (" and could not be renewed." if self.renewable else "."),
                "Log in again (on JupyterHub: restart your server from the hub's control "
                "panel) to get a fresh token.",
            )
        return token

    def _read_file(self) -> str:
        path = str(self.config.token_file)
        try:
            return Path(path).expanduser().read_text().strip()
        except OSError as exc:
            raise AuthenticationFailed(
                f"Cannot read the OIDC token file {path}: {exc.strerror}.",
                "On JupyterHub, restart your server so the hub writes a fresh token.",
            ) from exc

    def _renew_locked(self, *, force: bool = False) -> str:
        """Renew from the source (the lock is held); returns the new access token."""
        old = self._access
        if self.source == "hub":
            from escape_portal.lake.hub import fetch_hub_token

            if not force and old is not None and time.monotonic() - self._asked < HUB_PAUSE:
                return old  # the hub renews on its own schedule: do not ask it on every call
            self._asked = time.monotonic()
            token = fetch_hub_token(
                self._env[HUB_URL],
                self._env[HUB_TOKEN],
                timeout=self.config.timeout,
                user=self._env.get("JUPYTERHUB_USER"),
            )
            self._access, self._lifetime = token, None
        elif self._refresh:
            try:
                self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
            except AuthenticationFailed:
                if self.source != "password":
                    raise
                self._refresh = None
                self._password_grant()
        elif self.source == "password":
            self._password_grant()
        else:
            raise AuthenticationFailed(
                "The provider gave no refresh token to renew your OIDC token with.",
                "Ask for scope offline_access (oidc_scope), or log in again.",
            )
        assert self._access is not None
        if self._access != old:
            self.renewals += 1
            log.info(
                "renewed the session's token for %s from its %s (valid until %s)",
                self.config.name,
                self.source,
                jwt_expiry(self._access),
            )
        return self._access

    def _password_grant(self) -> None:
        self._grant(
            {
                "grant_type": "password",
                "username": str(self.config.username),
                "password": str(self.config.password),
            }
        )

    def _issuer(self) -> str:
        issuer = self.config.oidc_issuer or str(claims(self._access or "").get("iss") or "")
        if not issuer:
            raise AuthenticationFailed(
                f"Instance {self.config.name!r} names no OpenID Connect provider to renew "
                "your token at.",
                "Set oidc_issuer in the instance (or ESCAPE_PORTAL_OIDC_ISSUER).",
            )
        return issuer

    def _grant(self, form: dict[str, str]) -> None:
        """A token request at the provider; keeps the access (and rotated refresh) token."""
        if self.config.oidc_scope:
            form = {**form, "scope": self.config.oidc_scope}
        body = self._token_request(self._issuer(), form, "renewing your OIDC token")
        self._access = str(body["access_token"])
        self._lifetime = float(body.get("expires_in") or 0) or None
        if body.get("refresh_token"):
            self._refresh = str(body["refresh_token"])

    # -- the provider ---------------------------------------------------------------------

    def _verify(self) -> str | bool:
        return self.config.ca_cert or True

    def _endpoint(self, issuer: str) -> str:
        if issuer not in self._endpoints:
            url = issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                response = requests.get(url, timeout=self.config.timeout, verify=self._verify())
                response.raise_for_status()
                self._endpoints[issuer] = str(response.json()["token_endpoint"])
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                raise AuthenticationFailed(
                    f"The identity provider {issuer} did not say where its token endpoint is.",
                    "Check that it is up and that oidc_issuer is its issuer URL.",
                ) from exc
        return self._endpoints[issuer]

    def _token_request(self, issuer: str, form: dict[str, str], what: str) -> dict[str, Any]:
        auth = None
        if self.config.oidc_client_id:
            auth = (self.config.oidc_client_id, self.config.oidc_client_secret or "")
        try:
            response = requests.post(
                self._endpoint(issuer),
                data=form,
                auth=auth,
                timeout=self.config.timeout,
                verify=self._verify(),
            )
        except requests.RequestException as exc:
            raise AuthenticationFailed(
                f"The identity provider {issuer} could not be reached while {what}.",
                "Check that it is up; try again in a moment.",
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
            reason = f"HTTP {response.status_code}"
            if isinstance(body, dict) and body.get("error"):
                reason = str(body.get("error_description") or body["error"])
            raise AuthenticationFailed(
                f"The identity provider {issuer} refused {what}: {self._scrub(reason)}.",
                _REFUSED_HINT.get(form["grant_type"], "Log in again to get a fresh token."),
            )
        return body

    def _scrub(self, text: str) -> str:
        """``text`` with any token or secret the keeper holds cut out."""
        for secret in (
            self._access,
            self._refresh,
            self.config.token,
            self.config.oidc_refresh_token,
            self.config.oidc_client_secret,
            self.config.password,
        ):
            if secret:
                text = text.replace(secret, "[hidden]")
        return text[:300]

    # -- storage tokens -------------------------------------------------------------------

    def storage_token(self, access: StorageAccess, scope: str) -> str:
        """A token for ``access.audience`` with ``scope``, exchanged for the session's own.

        Cached in memory until it is near expiry; then exchanged again (from the session's
        current, possibly renewed, token).

        Raises
        ------
        AuthenticationFailed
            If the provider refuses the exchange or cannot be reached.
        """
        key = (access.audience, scope)
        with self._cache_lock:
            cached = self._cache.get(key)
        if cached and cached[1] > time.time():
            return cached[0]
        subject = self.current()
        issuer = self.config.oidc_issuer or str(claims(subject).get("iss") or "")
        if not issuer:
            raise AuthenticationFailed(
                "The session's token names no issuer to ask for a storage token.",
                "Use a token from an OpenID Connect provider (a JWT).",
            )
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": access.audience,
            "scope": scope,
        }
        body = self._token_request(issuer, form, f"a token for storage {access.audience}")
        token = str(body["access_token"])
        lifetime = float(body.get("expires_in") or 300)
        with self._cache_lock:
            self._cache[key] = (token, time.time() + lifetime - renew_margin(lifetime))
        return token


_REFUSED_HINT = {
    TOKEN_EXCHANGE: "Your account may lack access to that storage; ask the lake's operators.",
    "refresh_token": "Your refresh token was refused (expired or revoked): log in again and "
    "set a new ESCAPE_PORTAL_OIDC_REFRESH_TOKEN.",
    "password": "Check the instance's username and password.",
}
