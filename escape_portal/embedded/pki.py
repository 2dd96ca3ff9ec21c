"""The embedded lake's own certificate authority and host certificate.

Production grid storage and identity providers speak TLS with certificates from a grid
CA (IGTF); the embedded lake makes a CA of its own in ``DATA_DIR/pki`` on first start
and a host certificate for ``localhost`` / ``127.0.0.1`` signed by it, which every TLS
listener of the lake (storage over https/davs and root+TLS, the OpenID Connect provider)
presents. Clients trust the lake through:

- ``ca.pem``: a CA bundle (``REQUESTS_CA_BUNDLE``, ``ca_cert`` of an instance, fsspec's
  ``ssl`` context);
- ``certificates/``: the same CA as an OpenSSL hashed directory (``X509_CERT_DIR``,
  which XRootD's client and server and gfal2 read).

Private keys are written with mode 0600 and never leave the data directory; they are
keys of a loopback demo CA, not credentials of a user.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
HOST_DAYS = 825
HOST_NAMES = ("localhost",)
HOST_ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class LakePKI:
    """Where the lake's CA and host certificate are (see the module's docstring)."""

    folder: Path

    @property
    def ca_cert(self) -> Path:  # noqa: D102
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:  # noqa: D102
        return self.folder / "ca.key"

    @property
    def host_cert(self) -> Path:  # noqa: D102
        return self.folder / "host.pem"

    @property
    def host_key(self) -> Path:  # noqa: D102
        return self.folder / "host.key"

    @property
    def certdir(self) -> Path:
        """The CA as an OpenSSL hashed directory (``X509_CERT_DIR``)."""
        return self.folder / "certificates"

    @property
    def complete(self) -> bool:
        """All files present."""
        return all(
            p.exists() for p in (self.ca_cert, self.ca_key, self.host_cert, self.host_key)
        ) and any(self.certdir.glob("*.0"))


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    tmp.replace(path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def _subject_hash_link(certdir: Path, ca_cert: Path) -> None:
    """``certdir/<hash>.0`` -> ca.pem, as ``openssl rehash`` makes it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError(
            "openssl is not installed; the lake needs it to lay out its CA directory "
            "(Debian: apt-get install openssl)"
        )
    digest = subprocess.run(
        [openssl, "x509", "-subject_hash", "-noout", "-in", str(ca_cert)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    certdir.mkdir(parents=True, exist_ok=True)
    copy = certdir / "escape-portal-lake-ca.pem"
    shutil.copyfile(ca_cert, copy)
    link = certdir / f"{digest}.0"
    link.unlink(missing_ok=True)
    link.symlink_to(copy.name)


def ensure_pki(folder: Path) -> LakePKI:
    """Make the CA and host certificate in ``folder`` unless they exist; return them.

    Idempotent: an existing, complete PKI is kept (so clients that trust it keep working
    across restarts); a host certificate that expires within 30 days is renewed.
    """
    pki = LakePKI(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    now = dt.datetime.now(dt.UTC)
    if pki.complete:
        host = x509.load_pem_x509_certificate(pki.host_cert.read_bytes())
        if host.not_valid_after_utc - now > dt.timedelta(days=30):
            return pki
    if pki.ca_cert.exists() and pki.ca_key.exists():
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, rsa.RSAPrivateKey)
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    else:
        ca_key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ESCAPE Portal embedded lake"),
                x509.NameAttribute(NameOID.COMMON_NAME, "ESCAPE Portal embedded lake CA"),
            ]
        )
        ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_key(pki.ca_key, ca_key)
        _write_cert(pki.ca_cert, ca)
    host_key = _new_key()
    host = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ESCAPE Portal embedded lake"),
                    x509.NameAttribute(NameOID.COMMON_NAME, HOST_NAMES[0]),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(host_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=HOST_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in HOST_NAMES]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in HOST_ADDRESSES]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.host_key, host_key)
    _write_cert(pki.host_cert, host)
    _subject_hash_link(pki.certdir, pki.ca_cert)
    return pki
