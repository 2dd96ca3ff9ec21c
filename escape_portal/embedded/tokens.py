"""The embedded identity provider's signing key and the WLCG-profile tokens it signs.

The production ESCAPE lake's identity provider (INDIGO IAM) issues JSON Web Tokens of
the WLCG Common JWT Profile: ``iss``, ``sub``, ``aud`` (the service the token is for),
``scope`` (``storage.read:/path``, ``storage.modify:/path``, ...), ``exp``, ``iat``,
``nbf``, ``jti`` and ``wlcg.ver``, signed RS256 with a key published at the provider's
JWKS URL. This module holds the embedded provider's key (``DATA_DIR/idp/signing.key``,
mode 0600, made once) and signs such tokens; the provider's HTTP endpoints, Rucio and the
storage all rely on the key published from here.

Every token the lake issues goes through :func:`mint`, so there is one place that knows
the claims.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

WLCG_VERSION = "1.0"
DEFAULT_LIFETIME = 3600

#: ``aud`` of tokens for the lake's Rucio server (``[oidc] expected_audience``). ESCAPE's
#: IAM issues Rucio tokens with audience ``rucio``, which is also Rucio's default.
RUCIO_AUDIENCE = "rucio"

#: ``scope`` items Rucio requires in a token (``[oidc] expected_scope``, space-separated).
RUCIO_SCOPES = ("openid", "profile")

#: Storage scopes of the WLCG profile (``storage.read:/path`` ...).
STORAGE_READ = "storage.read"
STORAGE_MODIFY = "storage.modify"
STORAGE_CREATE = "storage.create"


def storage_audience(rse: str) -> str:
    """``aud`` of tokens for storage element ``rse``'s storage (root:// and davs://).

    The WLCG profile recommends the storage's URL (``https://host:port``); the embedded
    lake's storage ports change between starts, so that value would invalidate every
    token and verifier configuration on a restart. One stable URL per storage element,
    ``https://localhost/rse/<RSE>``, keeps tokens and configurations valid and gives each
    storage element its own audience, as distinct sites have in production.
    """
    return f"https://localhost/rse/{rse}"


def issuer_url(port: int) -> str:
    """The issuer (``iss``) of the embedded provider listening on ``port``.

    ``localhost``, not ``127.0.0.1``: the host certificate names both, and this is the
    string every verifier compares (Rucio's ``[oidc]`` configuration, the storage's
    SciTokens configuration and its key cache).
    """
    return f"https://localhost:{port}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@dataclass(frozen=True)
class SigningKey:
    """The provider's RSA key and its key id."""

    key: rsa.RSAPrivateKey

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 7517), with ``kid`` its RFC 7638 thumbprint."""
        numbers = self.key.public_key().public_numbers()
        jwk = {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
        thumbprint = hashlib.sha256(
            json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
        ).digest()
        return {**jwk, "kid": _b64(thumbprint)[:16], "alg": "RS256", "use": "sig"}

    @property
    def kid(self) -> str:  # noqa: D102
        return self.public_jwk["kid"]

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set the provider publishes."""
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS (RS256) of ``claims``."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64(signature)


def key_path(data_dir: Path) -> Path:
    """Where the provider's signing key of a lake lives."""
    return data_dir / "idp" / "signing.key"


def signing_key(data_dir: Path) -> SigningKey:
    """The provider's key of the lake in ``data_dir``, made (mode 0600) on first use."""
    path = key_path(data_dir)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return SigningKey(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    try:
        os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's key
    except FileExistsError:
        return signing_key(data_dir)
    finally:
        tmp.unlink(missing_ok=True)
    return SigningKey(key)


def mint(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    audience: str | Iterable[str],
    scopes: Iterable[str] = (),
    lifetime: float = DEFAULT_LIFETIME,
    extra: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """A signed WLCG-profile access token.

    Parameters
    ----------
    key
        The provider's signing key (:func:`signing_key`).
    issuer
        ``iss`` (:func:`issuer_url`).
    subject
        ``sub``: the identity (a researcher's or a service's).
    audience
        ``aud``: the service(s) that may accept it (Rucio's, a storage's).
    scopes
        ``scope`` items, e.g. ``storage.read:/``, ``storage.modify:/user``, ``openid``.
    lifetime
        Seconds until ``exp``; negative makes an already expired token (for tests).
    extra
        Further claims (``client_id``, ``preferred_username``, ``act`` ...).
    now
        The issue time (default: now).

    """
    issued = int(time.time() if now is None else now)
    aud: str | list[str] = audience if isinstance(audience, str) else list(audience)
    claims: dict[str, Any] = {
        "wlcg.ver": WLCG_VERSION,
        "iss": issuer,
        "sub": subject,
        "aud": aud,
        "scope": " ".join(scopes),
        "iat": issued,
        "nbf": issued - 1,
        "exp": int(issued + lifetime),
        "jti": str(uuid.uuid4()),
        **(extra or {}),
    }
    return key.sign(claims)


class InvalidToken(ValueError):
    """A token this provider did not sign, or no longer valid."""


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a compact JWS, **not verified** (for messages and tests)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("not a JSON Web Token")
    try:
        claims = json.loads(_unb64(parts[1]))
    except ValueError as exc:
        raise InvalidToken("not a JSON Web Token") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("not a JSON Web Token")
    return claims


def verify(key: SigningKey, token: str, *, issuer: str, now: float | None = None) -> dict[str, Any]:
    """The claims of ``token`` if ``key`` signed it for ``issuer`` and it has not expired.

    Raises
    ------
    InvalidToken
        Another signer or issuer, a malformed token, or an expired one.

    """
    from cryptography.exceptions import InvalidSignature

    claims = claims_of(token)
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = json.loads(_unb64(header_b64))
        key.key.public_key().verify(
            _unb64(signature_b64),
            f"{header_b64}.{payload_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (ValueError, InvalidSignature) as exc:
        raise InvalidToken("the signature is not this provider's") from exc
    if header.get("alg") != "RS256":
        raise InvalidToken("the signature is not this provider's")
    if claims.get("iss") != issuer:
        raise InvalidToken(f"issued by {claims.get('iss')!r}, not {issuer!r}")
    if float(claims.get("exp", 0)) <= (time.time() if now is None else now):
        raise InvalidToken("expired")
    return claims


def scope_covers(granted: str, wanted: str) -> bool:
    """Whether scope item ``granted`` allows ``wanted`` (the same, or a narrower path).

    ``storage.read:/`` covers ``storage.read:/cta/data``; ``storage.read:/cta`` does not
    cover ``storage.read:/ctab`` nor ``storage.modify:/cta``.
    """
    if granted == wanted:
        return True
    g_name, g_sep, g_path = granted.partition(":")
    w_name, w_sep, w_path = wanted.partition(":")
    if not (g_sep and w_sep) or g_name != w_name:
        return False
    g_path = g_path.rstrip("/") + "/"
    return (w_path.rstrip("/") + "/").startswith(g_path)
