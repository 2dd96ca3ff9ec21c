"""Copies through the storage's own protocols with gfal2 (the engine inside FTS).

gfal2 (Debian ``python3-gfal2``, run by the system Python) does a davs→davs third-party
copy (the destination pulls from the source over HTTPS) or root→root, and checks the
catalogue's adler32 at both ends. As FTS does (``fts-url-copy``), each end gets its own
WLCG bearer token, set as gfal2's credential for that URL: the source's token (read) is
passed on by the destination to the source (``TransferHeaderAuthorization``), the
destination's (modify) is the one the destination checks. A failure carries the storage's
own reason. Tokens travel to the copying process in its environment, never its command
line. Nothing here imports Rucio, so tests and tools use it without Rucio's server
configuration; :mod:`escape_portal.embedded.grid_transfertool` hands Rucio's transfers to
it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

COPY_TIMEOUT = 300
#: The system Python, which has gfal2's bindings (``python3-gfal2``).
SYSTEM_PYTHON = "/usr/bin/python3"

#: Run by :data:`SYSTEM_PYTHON`: URLs and checksum in argv, tokens in the environment.
_COPY_SCRIPT = """
import os, sys
try:
    import gfal2
except ImportError:
    sys.exit("gfal2 error: gfal2's Python bindings are not installed (python3-gfal2)")
source, destination, adler32, timeout = sys.argv[1:5]
ctx = gfal2.creat_context()
# Third-party pull only, as gfal-copy --copy-mode pull: no push, no streaming fallback.
ctx.set_opt_boolean("HTTP PLUGIN", "ENABLE_REMOTE_COPY", True)
ctx.set_opt_boolean("HTTP PLUGIN", "ENABLE_FALLBACK_TPC_COPY", False)
ctx.set_opt_string("HTTP PLUGIN", "DEFAULT_COPY_MODE", "3rd pull")
for url, variable in ((source, "SOURCE_TOKEN"), (destination, "DESTINATION_TOKEN")):
    if os.environ.get(variable):
        ctx.cred_set(url, gfal2.cred_new("BEARER", os.environ[variable]))
try:
    ctx.stat(source)  # as fts-url-copy and gfal-copy: a missing source says so
except gfal2.GError as exc:
    sys.exit("gfal2 error: could not stat the source: " + " ".join(str(exc.message).split()))
params = ctx.transfer_parameters()
params.create_parent = True
params.timeout = int(timeout)
if adler32:
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", adler32)
try:
    ctx.filecopy(params, source, destination)
except gfal2.GError as exc:
    sys.exit("gfal2 error: " + " ".join(str(exc.message).split()))
"""


class GridCopyError(RuntimeError):
    """A copy failed; the message is the storage's (or gfal2's) reason."""


def rse_of(url: str) -> str:
    """The storage element of a lake URL: the first component of its path (the base path)."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    if not parts:
        raise ValueError(f"{url} names no storage element")
    return parts[0]


def _reason(stderr: str) -> str:
    """gfal2's last error line, without its prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line.split("gfal2 error:", 1)[-1].strip()
    return lines[-1] if lines else "gfal2 failed without a message"


def copy(
    source: str,
    destination: str,
    *,
    source_token: str | None,
    destination_token: str | None,
    adler32: str | None,
    cert_dir: Path,
    timeout: float = COPY_TIMEOUT,
) -> None:
    """Copy ``source`` to ``destination`` (third-party, pull), a bearer token per end.

    Parameters
    ----------
    source, destination
        ``davs://`` (or ``root://``) URLs of the lake's storage.
    source_token, destination_token
        WLCG tokens for the source's storage (read) and the destination's (modify);
        ``None`` sends none for that end.
    adler32
        The catalogue's checksum, checked at the source and the destination.
    cert_dir
        Certificate authorities to trust (the lake's).
    timeout
        Seconds the copy may take.

    Raises
    ------
    GridCopyError
        With the storage's reason, if the copy or its checksum check failed.
    """
    if not Path(SYSTEM_PYTHON).exists():
        raise GridCopyError(
            "gfal2 is not installed (Debian: apt-get install python3-gfal2 "
            "gfal2-plugin-http gfal2-plugin-xrootd)"
        )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "X509_CERT_DIR": str(cert_dir),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LC_ALL": "C",
    }
    if source_token:
        env["SOURCE_TOKEN"] = source_token
    if destination_token:
        env["DESTINATION_TOKEN"] = destination_token
    argv = [SYSTEM_PYTHON, "-I", "-c", _COPY_SCRIPT, source, destination, adler32 or ""]
    try:
        result = subprocess.run(
            [*argv, str(int(timeout))],
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
        if "CHECKSUM MISMATCH" in reason.upper():
            reason = f"checksum mismatch: {reason}"
        raise GridCopyError(reason)
