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


def issuer_url(port: int) -> str:
    """The issuer (``iss``) of the embedded provider listening on ``port``.

    ``localhost``, not ``127.0.0.1``: the host certificate names both, and this is the
    string every verifier compares (Rucio's ``[oidc]`` configuration, the storage's
    SciTokens configuration and its key cache).
    """
    return f"https://localhost:{port}"


def storage_audience(rse: str) -> str:
    """The audience (``aud``) that storage element ``rse`` accepts, e.g. ``https://localhost/cern-disk``.

    One value per storage element, independent of ports (a restart on other ports keeps
    tokens valid): a URL naming the host of the certificate and the storage element.
    Rucio's own ``determine_audience_for_rse`` would use the ``davs`` hostname, which is
    ``localhost`` for every embedded storage element and so would not tell them apart.
    """
    return f"https://localhost/{rse.lower()}"


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
