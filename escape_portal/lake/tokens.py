"""Tokens for storage: a storage-audience token per storage element, by exchange.

Rucio's own download client hands storage the Rucio token (rucio#6128); storage that
checks its audience refuses it. The portal asks the session's identity provider for a
token with the storage's audience and a scope limited to the path (RFC 8693 token
exchange, as ESCAPE's IAM offers it), and keeps it in memory until shortly before it
expires.

Which audience a storage element expects: its RSE attribute ``oidc_audience`` when the
operator set one, else what Rucio's conveyor derives for FTS (the host names of its
``davs`` protocols, ``rucio.core.rse.determine_audience_for_rse``). Scopes are relative
to the RSE attribute ``oidc_base_path``, as Rucio's ``determine_scope_for_rse`` makes them.

This is the first cut of the interface the data path uses (:meth:`TokenKeeper.storage_token`);
the session's token lifecycle (refresh, hub) grows here.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from escape_portal.config import LakeConfig
from escape_portal.errors import AuthenticationFailed
from escape_portal.lake.auth import TokenSource

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
STORAGE_READ = "storage.read"
STORAGE_MODIFY = "storage.modify"
STORAGE_CREATE = "storage.create"
#: A cached token is renewed this many seconds before it expires.
RENEW_MARGIN = 60.0


def _claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class StorageAccess:
    """What a storage element's tokens must carry: its audience and its scope base."""

    audience: str
    base_path: str = ""

    def scope(self, path: str, *, write: bool = False) -> str:
        """The WLCG scope for ``path`` (a replica's path on the storage) below the base."""
        relative = path
        if self.base_path and relative.startswith(self.base_path.rstrip("/") + "/"):
            relative = relative[len(self.base_path.rstrip("/")) :]
        relative = "/" + relative.lstrip("/")
        if write:
            return f"{STORAGE_READ}:{relative} {STORAGE_MODIFY}:{relative}"
        return f"{STORAGE_READ}:{relative}"


def storage_access(attributes: dict[str, Any], protocols: list[dict[str, Any]]) -> StorageAccess:
    """A storage element's :class:`StorageAccess` from its RSE attributes and protocols."""
    audience = attributes.get("oidc_audience")
    if not audience:
        hosts = sorted({str(p.get("hostname")) for p in protocols if p.get("scheme") == "davs"})
        audience = " ".join(hosts)
    return StorageAccess(str(audience), str(attributes.get("oidc_base_path") or ""))


class TokenKeeper:
    """The session's tokens: its own (for Rucio) and storage-audience ones by exchange.

    Parameters
    ----------
    config
        The instance; ``oidc_client_id``/``oidc_client_secret`` authenticate the exchange.
    source
        Where the session's own token comes from.
    """

    def __init__(self, config: LakeConfig, source: TokenSource) -> None:
        self.config = config
        self.source = source
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._token_endpoint: str | None = None

    def current(self) -> str:
        """The session's own token (fresh)."""
        return self.source.read()

    def _endpoint(self, issuer: str) -> str:
        if self._token_endpoint is None:
            url = issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = requests.get(url, timeout=self.config.timeout, verify=self._verify())
            response.raise_for_status()
            self._token_endpoint = str(response.json()["token_endpoint"])
        return self._token_endpoint

    def _verify(self) -> str | bool:
        return self.config.ca_cert or True

    def storage_token(self, access: StorageAccess, scope: str) -> str:
        """A token for ``access.audience`` with ``scope``, exchanged for the session's own.

        Raises
        ------
        AuthenticationFailed
            If the provider refuses the exchange or cannot be reached.
        """
        key = (access.audience, scope)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[1] - RENEW_MARGIN > time.time():
                return cached[0]
        subject = self.current()
        issuer = str(_claims(subject).get("iss") or "")
        if not issuer:
            raise AuthenticationFailed(
                "The session's token names no issuer to ask for a storage token.",
                "Use a token from an OpenID Connect provider (a JWT).",
            )
        data = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "audience": access.audience,
            "scope": scope,
        }
        auth = None
        if self.config.oidc_client_id:
            auth = (self.config.oidc_client_id, self.config.oidc_client_secret or "")
        try:
            response = requests.post(
                self._endpoint(issuer),
                data=data,
                auth=auth,
                timeout=self.config.timeout,
                verify=self._verify(),
            )
        except requests.RequestException as exc:
            raise AuthenticationFailed(
                f"The identity provider {issuer} could not be reached for a storage token.",
                "Check that it is up; try again in a moment.",
            ) from exc
        if response.status_code != 200:
            try:
                reason = str(response.json().get("error_description") or response.json()["error"])
            except (ValueError, KeyError, AttributeError):
                reason = f"HTTP {response.status_code}"
            raise AuthenticationFailed(
                f"The identity provider refused a token for storage {access.audience}: {reason}.",
                "Your account may lack access to that storage; ask the lake's operators.",
            )
        body = response.json()
        token = str(body["access_token"])
        expires = time.time() + float(body.get("expires_in") or 300)
        with self._lock:
            self._cache[key] = (token, expires)
        return token
