"""The embedded lake's OpenID Connect provider: a stand-in for ESCAPE's INDIGO IAM.

Run as ``python -m escape_portal.embedded.idp DATA_DIR PORT [--lifetime SECONDS]``; it
serves HTTPS on 127.0.0.1 only, with the lake's host certificate (:mod:`.pki`):

- ``/.well-known/openid-configuration``: discovery, as Rucio's pyoidc client reads it;
- ``/jwks``: the signing key (:meth:`.tokens.SigningKey.jwks`);
- ``/token``: the token endpoint, with the grants IAM offers to command-line and service
  clients: ``client_credentials`` (services: Rucio's daemons and transfertool),
  ``password`` (the demo researchers: the lake has no browser login), ``refresh_token``
  (with ``offline_access``; rotated on use) and token exchange (RFC 8693), which turns
  a token into one for another audience with the same or narrower scopes.

Every access token is a WLCG-profile JWT minted by :func:`.tokens.mint`; it lives
``--lifetime`` seconds, or its client's own lifetime (see below). The requested
``audience`` must be Rucio's (:data:`.tokens.RUCIO_AUDIENCE`, the default) or a storage
element's (:func:`.tokens.storage_audience`).

The protocol is authlib's (``AuthorizationServer`` and its grant classes: client
authentication, grant dispatch, the error responses of RFC 6749); this module supplies
only the lake's clients, users, scopes and the JWT format. authlib (pinned 1.9.10) was
chosen because it is maintained, small, implements the three RFC 6749 grants used here and
takes a grant class of our own for RFC 8693, which it does not ship as a server grant.
pyop covers only the browser flows (authorization code, implicit) and refresh; idpyoidc
ships token exchange too, but asks for a far larger configuration (session manager, key
jars, per-endpoint grant helpers) and its own JOSE stack for the same four grants.

Access tokens live ``--lifetime`` seconds, except those issued to two clients that let a
test or a demo watch tokens expire and be renewed without shortening every token:
``escape-portal-brief`` (:data:`.layout.BRIEF_LIFETIME`, a few seconds) and ``jupyterhub``,
a hub's login (:data:`HUB_ACCESS_LIFETIME`, a minute).

Refresh tokens are opaque and kept in this process's memory: a restart of the provider
ends them (access tokens, being self-contained, stay valid). The access log records the
method, path and status of each request, never a query string or a body, so no token or
password reaches it.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from flask import Flask, jsonify
from werkzeug.serving import WSGIRequestHandler, make_server

from escape_portal.embedded import tokens
from escape_portal.embedded.layout import (
    BRIEF_LIFETIME,
    DEMO_CLIENTS,
    DEMO_RESEARCHERS,
    LakePaths,
)
from escape_portal.embedded.pki import ensure_pki
from escape_portal.embedded.sites import SITES

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
#: Seconds an access token lives unless ``--lifetime`` or ``$ESCAPE_PORTAL_IDP_LIFETIME``.
DEFAULT_ACCESS_LIFETIME = 1200
#: Seconds the access tokens of the ``jupyterhub`` client live, whatever the lake-wide
#: lifetime: a hub in front of the embedded lake renews them (its ``refresh_user``) while
#: its sessions run, as it must with ESCAPE's IAM, only sooner.
HUB_ACCESS_LIFETIME = 60
REFRESH_LIFETIME = 24 * 3600
STORAGE_SCOPES = tuple(
    f"{name}:/" for name in (tokens.STORAGE_READ, tokens.STORAGE_MODIFY, tokens.STORAGE_CREATE)
)
RESEARCHER_SCOPES = ("openid", "profile", "offline_access", *STORAGE_SCOPES)
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

log = logging.getLogger("escape_portal.idp")


def audiences() -> tuple[str, ...]:
    """The audiences a token may be requested for: Rucio's and each storage element's."""
    return (tokens.RUCIO_AUDIENCE, *(tokens.storage_audience(site.rse) for site in SITES))


@dataclass(frozen=True)
class Researcher:
    """A demo researcher: ``sub`` is the username (Rucio maps ``SUB=name, ISS=...``)."""

    username: str
    password: str
    scopes: tuple[str, ...] = RESEARCHER_SCOPES

    @property
    def subject(self) -> str:  # noqa: D102
        return self.username

    def claims(self) -> dict[str, Any]:
        """Claims beyond the profile's core, as IAM adds them."""
        return {"preferred_username": self.username, "wlcg.groups": ["/escape"]}


@dataclass(frozen=True)
class ExchangedSubject:
    """The subject of a token handed in for exchange; its scopes are the ceiling."""

    subject: str
    scopes: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def claims(self) -> dict[str, Any]:  # noqa: D102
        return dict(self.extra)


@dataclass(frozen=True)
class ServiceClient:
    """An OAuth client of the provider (authlib's ``ClientMixin``)."""

    client_id: str
    client_secret: str
    grant_types: tuple[str, ...]
    #: What this client may ask for: the ceiling of ``client_credentials`` tokens and a
    #: filter on researchers' tokens it obtains.
    scopes: tuple[str, ...]
    #: Seconds its access tokens live (``None``: the provider's lifetime).
    lifetime: float | None = None

    def get_client_id(self) -> str:  # noqa: D102
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:  # noqa: D102
        return None

    def get_allowed_scope(self, scope: str) -> str:  # noqa: D102
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:  # noqa: D102
        return False

    def check_client_secret(self, client_secret: str) -> bool:  # noqa: D102
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:  # noqa: D102
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:  # noqa: D102
        return False

    def check_grant_type(self, grant_type: str) -> bool:  # noqa: D102
        return grant_type in self.grant_types


def demo_clients() -> dict[str, ServiceClient]:
    """The provider's clients (secrets: :data:`.layout.DEMO_CLIENTS`)."""
    rucio_scopes = ("openid", "profile", "offline_access", *STORAGE_SCOPES)
    return {
        "escape-portal": ServiceClient(
            "escape-portal",
            DEMO_CLIENTS["escape-portal"],
            ("password", "refresh_token", TOKEN_EXCHANGE),
            RESEARCHER_SCOPES,
        ),
        "escape-portal-brief": ServiceClient(
            "escape-portal-brief",
            DEMO_CLIENTS["escape-portal-brief"],
            ("password", "refresh_token", TOKEN_EXCHANGE),
            RESEARCHER_SCOPES,
            lifetime=BRIEF_LIFETIME,
        ),
        "jupyterhub": ServiceClient(
            "jupyterhub",
            DEMO_CLIENTS["jupyterhub"],
            ("password", "refresh_token"),
            RESEARCHER_SCOPES,
            lifetime=HUB_ACCESS_LIFETIME,
        ),
        "rucio": ServiceClient(
            "rucio",
            DEMO_CLIENTS["rucio"],
            ("client_credentials", "refresh_token", TOKEN_EXCHANGE),
            rucio_scopes,
        ),
        "rucio-transfers": ServiceClient(
            "rucio-transfers",
            DEMO_CLIENTS["rucio-transfers"],
            ("client_credentials", TOKEN_EXCHANGE),
            ("openid", "profile", *STORAGE_SCOPES),
        ),
    }


@dataclass
class RefreshToken:
    """An issued refresh token (authlib's ``TokenMixin`` for the refresh grant)."""

    value: str
    client_id: str
    user: Researcher
    scope: str
    audience: str
    expires_at: float

    def check_client(self, client: ServiceClient) -> bool:  # noqa: D102
        return client.client_id == self.client_id

    def get_scope(self) -> str:  # noqa: D102
        return self.scope

    def get_expires_in(self) -> int:  # noqa: D102
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:  # noqa: D102
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:  # noqa: D102
        return False


class Provider:
    """The provider's state: key, issuer, identities, refresh tokens, lifetimes."""

    def __init__(self, data_dir: Path, port: int, lifetime: float) -> None:
        self.key = tokens.signing_key(data_dir)
        self.issuer = tokens.issuer_url(port)
        self.lifetime = lifetime
        self.clients = demo_clients()
        self.researchers = {
            name: Researcher(name, password) for name, password in DEMO_RESEARCHERS.items()
        }
        self._refresh: dict[str, RefreshToken] = {}
        self._lock = threading.Lock()

    def store_refresh(self, token: RefreshToken) -> None:  # noqa: D102
        with self._lock:
            now = time.time()
            for stale in [k for k, v in self._refresh.items() if v.expires_at <= now]:
                del self._refresh[stale]
            self._refresh[token.value] = token

    def find_refresh(self, value: str) -> RefreshToken | None:  # noqa: D102
        with self._lock:
            token = self._refresh.get(value)
        return token if token and not token.is_expired() else None

    def drop_refresh(self, value: str) -> None:  # noqa: D102
        with self._lock:
            self._refresh.pop(value, None)


def _scope_list(scope: str | None) -> list[str]:
    return [s for s in (scope or "").split() if s]


class InvalidTargetError(OAuth2Error):
    """RFC 8693's ``invalid_target``: an audience this provider issues no tokens for."""

    error = "invalid_target"


class _LakeGrant:
    """Token issuance shared by the grants: audience and scope rules, then :func:`mint`."""

    request: Any
    server: Any
    GRANT_TYPE: str | None

    @property
    def provider(self) -> Provider:
        return self.server.provider  # type: ignore[no-any-return]

    def default_audience(self) -> str:
        return tokens.RUCIO_AUDIENCE

    def generate_token(
        self,
        user: Researcher | ExchangedSubject | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        provider = self.provider
        client: ServiceClient = self.request.client
        audience = self.request.form.get("audience") or self.default_audience()
        if audience not in audiences():
            raise InvalidTargetError(
                f"unknown audience {audience!r}; known: {', '.join(audiences())}"
            )
        ceiling = (
            list(client.scopes)
            if user is None
            else [s for s in user.scopes if any(tokens.scope_covers(c, s) for c in client.scopes)]
        )
        wanted = _scope_list(scope) or [s for s in ceiling if s != "offline_access"]
        refused = [w for w in wanted if not any(tokens.scope_covers(c, w) for c in ceiling)]
        if refused:
            raise InvalidScopeError(f"scope not allowed: {' '.join(refused)}")
        lifetime = int(expires_in or client.lifetime or provider.lifetime)
        subject = client.client_id if user is None else user.subject
        extra: dict[str, Any] = {"client_id": client.client_id}
        if user is not None:
            extra.update(user.claims())
        if isinstance(user, ExchangedSubject):
            extra["act"] = {"sub": client.client_id}
        access = tokens.mint(
            provider.key,
            issuer=provider.issuer,
            subject=subject,
            audience=audience,
            scopes=[w for w in wanted if w != "offline_access"],
            lifetime=lifetime,
            extra=extra,
        )
        # What was issued to whom, never the token: the audit trail of the access log.
        log.info(
            "issued %s token: client %s, subject %s, audience %s, scope %r, %d s",
            self.GRANT_TYPE,
            client.client_id,
            subject,
            audience,
            " ".join(wanted),
            lifetime,
        )
        result: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": " ".join(wanted),
        }
        if include_refresh_token and isinstance(user, Researcher) and "offline_access" in wanted:
            refresh = RefreshToken(
                secrets.token_urlsafe(48),
                client.client_id,
                user,
                " ".join(wanted),
                audience,
                time.time() + REFRESH_LIFETIME,
            )
            provider.store_refresh(refresh)
            result["refresh_token"] = refresh.value
        return result


class ClientCredentialsGrant(_LakeGrant, grants.ClientCredentialsGrant):
    """A service's own token (``sub`` = its client id)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS


class PasswordGrant(_LakeGrant, grants.ResourceOwnerPasswordCredentialsGrant):
    """A researcher's token for username and password."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_user(self, username: str, password: str) -> Researcher | None:  # noqa: D102 - authlib's hook
        user = self.provider.researchers.get(username)
        if user and secrets.compare_digest(password, user.password):
            return user
        return None


class RefreshTokenGrant(_LakeGrant, grants.RefreshTokenGrant):
    """A fresh access token (and a new refresh token: the old one is spent)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def default_audience(self) -> str:  # noqa: D102 - authlib's hook
        return str(self.request.refresh_token.audience)

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:  # noqa: D102 - authlib's hook
        return self.provider.find_refresh(refresh_token)

    def authenticate_user(self, refresh_token: RefreshToken) -> Researcher:  # noqa: D102 - authlib's hook
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:  # noqa: D102 - authlib's hook
        self.provider.drop_refresh(refresh_token.value)


class TokenExchangeGrant(_LakeGrant, grants.BaseGrant, grants.TokenEndpointMixin):
    """RFC 8693: a token of this provider for another audience, same or narrower scopes."""

    GRANT_TYPE = TOKEN_EXCHANGE
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:  # noqa: D102 - authlib's hook
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'"
            )
        form = self.request.form
        subject_token = form.get("subject_token")
        if not subject_token:
            raise InvalidRequestError("Missing 'subject_token' in request.")
        if form.get("subject_token_type") not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
            raise InvalidRequestError(
                f"'subject_token_type' must be {ACCESS_TOKEN_TYPE} or {JWT_TOKEN_TYPE}."
            )
        try:
            claims = tokens.verify(self.provider.key, subject_token, issuer=self.provider.issuer)
        except tokens.InvalidToken as exc:
            raise InvalidGrantError(f"subject_token refused: {exc}") from exc
        keep = ("preferred_username", "wlcg.groups")
        self.request.client = client
        self.request.user = ExchangedSubject(
            str(claims["sub"]),
            tuple(_scope_list(claims.get("scope"))),
            {k: claims[k] for k in keep if k in claims},
        )

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:  # noqa: D102 - authlib's hook
        token = self.generate_token(
            user=self.request.user, scope=self.request.payload.scope, include_refresh_token=False
        )
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        return 200, token, self.TOKEN_RESPONSE_HEADER


def discovery(issuer: str) -> dict[str, Any]:
    """The discovery document (OpenID Connect Discovery 1.0, RFC 8414)."""
    return {
        "issuer": issuer,
        # Required by the specification and by pyoidc; the lake has no browser login, so
        # it answers every authorization request with an error that says to use /token.
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "grant_types_supported": [
            "client_credentials",
            "password",
            "refresh_token",
            TOKEN_EXCHANGE,
        ],
        "response_types_supported": ["none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": [
            "openid",
            "profile",
            "offline_access",
            "wlcg.groups",
            *STORAGE_SCOPES,
        ],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "scope",
            "wlcg.ver",
            "wlcg.groups",
            "preferred_username",
            "client_id",
            "act",
        ],
    }


def make_app(provider: Provider) -> Flask:
    """The provider's WSGI application."""
    app = Flask("escape_portal.embedded.idp")
    server = AuthorizationServer(app, query_client=provider.clients.get, save_token=_no_store)
    server.provider = provider
    for grant in (ClientCredentialsGrant, PasswordGrant, RefreshTokenGrant, TokenExchangeGrant):
        server.register_grant(grant)
    document = discovery(provider.issuer)
    jwks = provider.key.jwks()

    @app.get("/.well-known/openid-configuration")
    def _discovery() -> Any:
        return jsonify(document)

    @app.get("/jwks")
    def _jwks() -> Any:
        return jsonify(jwks)

    @app.post("/token")
    def _token() -> Any:
        response = server.create_token_response()
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.route("/authorize", methods=["GET", "POST"])
    def _authorize() -> Any:
        return jsonify(
            error="unsupported_response_type",
            error_description="The embedded lake has no browser login; "
            "get tokens from the token endpoint (password grant).",
        ), 400

    return app


def _no_store(token: dict[str, Any], request: Any) -> None:
    """Access tokens are self-contained; refresh tokens are kept by the grants."""


class _AccessLog(WSGIRequestHandler):
    """Method, path (no query string) and status: never a token or password."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path
        self.log("info", '"%s %s" %s %s', self.command, path, getattr(code, "value", code), size)


def serve(data_dir: Path, port: int, lifetime: float) -> None:
    """Serve the provider of the lake in ``data_dir`` on https://127.0.0.1:``port``."""
    pki = ensure_pki(LakePaths(data_dir).pki)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(pki.host_cert), str(pki.host_key))
    provider = Provider(data_dir, port, lifetime)
    httpd = make_server(
        "127.0.0.1",
        port,
        make_app(provider),
        threaded=True,
        request_handler=_AccessLog,
        ssl_context=context,
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    log.info("OpenID Connect provider %s on 127.0.0.1:%d", provider.issuer, port)
    httpd.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m escape_portal.embedded.idp DATA_DIR PORT [--lifetime S]``."""
    parser = argparse.ArgumentParser(prog="python -m escape_portal.embedded.idp")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument(
        "--lifetime",
        type=float,
        default=float(os.environ.get("ESCAPE_PORTAL_IDP_LIFETIME") or DEFAULT_ACCESS_LIFETIME),
        help="seconds an access token lives (default: $ESCAPE_PORTAL_IDP_LIFETIME or "
        f"{DEFAULT_ACCESS_LIFETIME})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    serve(args.data_dir.resolve(), args.port, args.lifetime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
