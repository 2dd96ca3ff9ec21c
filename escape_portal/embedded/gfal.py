"""Copies through the storage's own protocols with gfal2 (the engine inside FTS).

``gfal-copy`` (Debian ``gfal2-util-scripts``) does a davs→davs third-party copy (the
destination pulls from the source over HTTPS) or root→root, with a WLCG bearer token,
and checks the catalogue's adler32 at both ends (``-K ADLER32:value``); a failure carries
the storage's own reason. Nothing here imports Rucio, so tests and tools use it without
Rucio's server configuration; :mod:`escape_portal.embedded.grid_transfertool` hands
Rucio's transfers to it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from escape_portal.embedded.layout import LakePaths
from escape_portal.embedded.tokens import issuer_url, mint, signing_key, storage_audience

COPY_TIMEOUT = 300
TOKEN_LIFETIME = 600


class GridCopyError(RuntimeError):
    """A copy failed; the message is the storage's (or gfal2's) reason."""


def rse_of(url: str) -> str:
    """The storage element of a lake URL: the first component of its path (the base path)."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    if not parts:
        raise ValueError(f"{url} names no storage element")
    return parts[0]


def _gfal_copy() -> str:
    binary = shutil.which("gfal-copy")
    if binary is None:
        raise GridCopyError(
            "gfal-copy is not installed (Debian: apt-get install gfal2-util-scripts "
            "gfal2-plugin-http gfal2-plugin-xrootd)"
        )
    return binary


def _reason(stderr: str) -> str:
    """gfal-copy's last error line, without its prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line.split("gfal-copy error:", 1)[-1].strip()
    return lines[-1] if lines else "gfal-copy failed without a message"


def copy(
    source: str,
    destination: str,
    *,
    token: str,
    adler32: str | None,
    cert_dir: Path,
    timeout: float = COPY_TIMEOUT,
) -> None:
    """Copy ``source`` to ``destination`` (third-party, pull) with ``token``.

    Raises
    ------
    GridCopyError
        With the storage's reason, if the copy or its checksum check failed.
    """
    argv = [_gfal_copy(), "--parent", "--copy-mode", "pull", "-t", str(int(timeout))]
    if adler32:
        argv += ["-K", f"ADLER32:{adler32}"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # gfal-copy is a Python script for the system Python (python3-gfal2).
        "GFAL_PYTHONBIN": "/usr/bin/python3",
        "BEARER_TOKEN": token,
        "X509_CERT_DIR": str(cert_dir),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LC_ALL": "C",
    }
    try:
        result = subprocess.run(
            [*argv, source, destination],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GridCopyError(f"the copy did not finish within {timeout:.0f} s") from exc
    if result.returncode != 0:
        reason = _reason(result.stderr)
        if "CHECKSUM MISMATCH" in reason:
            reason = f"checksum mismatch: {reason}"
        raise GridCopyError(reason)


def copy_token(paths: LakePaths, source: str, destination: str) -> str:
    """A token for one copy: both storage elements' audiences, read and modify."""
    ports = json.loads((paths.run / "ports.json").read_text())
    return mint(
        signing_key(paths.root),
        issuer=issuer_url(int(ports["idp_port"])),
        subject="rucio-conveyor",
        audience=sorted({storage_audience(rse_of(source)), storage_audience(rse_of(destination))}),
        scopes=("storage.read:/", "storage.modify:/"),
        lifetime=TOKEN_LIFETIME,
    )
