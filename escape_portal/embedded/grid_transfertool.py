"""A Rucio transfertool that copies through the storage's own protocols, as FTS does.

FTS copies with gfal2; so does this transfertool, through gfal2's ``gfal-copy`` command
(Debian ``gfal2-util-scripts``): a davs→davs third-party copy (the destination pulls
from the source over HTTPS) or root→root, with WLCG bearer tokens, and the adler32 of
the catalogue checked at the source and the destination by gfal2
(``-K ADLER32:value``). Failures end with the storage's own reason (``HTTP 403 :
Permission refused``, ``HTTP 404``, ``Connection refused``...).

Tokens: the conveyor of a production lake asks its identity provider for them
(``rucio.core.oidc.request_token``, when both storage elements have ``oidc_support``);
the embedded conveyor is a service of the lake itself and signs one per copy with the
lake's issuer key (:mod:`escape_portal.embedded.tokens`), for the audiences of both
storage elements and the scopes ``storage.read:/ storage.modify:/``, valid ten minutes.

Registered under the name ``gfal`` (:func:`register`), beside ``posix``; job state is
kept the same way as :mod:`escape_portal.embedded.transfertool`'s.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rucio.transfertool.transfertool import TransferToolBuilder

from escape_portal.embedded import transfertool as posix
from escape_portal.embedded.layout import LakePaths
from escape_portal.embedded.tokens import issuer_url, mint, signing_key, storage_audience

EXTERNAL_NAME = "gfal"
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


def _lake_paths() -> LakePaths:
    return LakePaths(posix.transfer_dir().parent)


def run_job(job_id: str, items: list[dict[str, Any]]) -> None:
    """Copy each item in turn; append its outcome to the job's JSON-lines file."""
    paths = _lake_paths()
    log_path = posix.transfer_dir() / f"{job_id}.jsonl"
    try:
        for item in items:
            started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            outcome: dict[str, Any] = {"request_id": item["request_id"], "ok": True, "error": None}
            try:
                copy(
                    item["source"],
                    item["destination"],
                    token=copy_token(paths, item["source"], item["destination"]),
                    adler32=item["adler32"],
                    cert_dir=paths.pki / "certificates",
                )
            except (GridCopyError, OSError, ValueError, KeyError) as exc:
                outcome.update(ok=False, error=str(exc))
            outcome["started_at"] = started.isoformat()
            outcome["finished_at"] = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
            with log_path.open("a") as handle:
                handle.write(json.dumps(outcome) + "\n")
    finally:
        with posix._ACTIVE_LOCK:
            posix._ACTIVE.discard(job_id)


class GridTransfertool(posix.PosixTransfertool):
    """Copies davs:// (or root://) replicas between the lake's XRootD storage elements."""

    external_name = EXTERNAL_NAME
    supported_schemes = {"davs", "root"}

    @classmethod
    def submission_builder_for_path(
        cls, transfer_path: list[Any], logger: Any = None
    ) -> tuple[list[Any], TransferToolBuilder | None]:
        """Take a path's first hop when both ends are davs or root (else leave it to posix)."""
        hop = transfer_path[0]
        if any(end.scheme not in cls.supported_schemes for end in (*hop.sources, hop.dst)):
            return [], None
        return transfer_path[:1], TransferToolBuilder(cls, external_host=EXTERNAL_NAME)

    def submit(
        self, transfers: Iterable[Any], job_params: dict[str, str], timeout: int | None = None
    ) -> str:
        """Queue the copies of ``transfers`` and return the job id."""
        job_id = uuid.uuid4().hex
        items = [
            {
                "request_id": t.rws.request_id,
                "source": t.source_url(t.src),
                "destination": t.dest_url,
                "bytes": t.rws.byte_count,
                "adler32": t.rws.adler32,
            }
            for t in transfers
        ]
        (posix.transfer_dir() / f"{job_id}.json").write_text(json.dumps(items))
        with posix._ACTIVE_LOCK:
            posix._ACTIVE.add(job_id)
        posix._WORKERS.submit(run_job, job_id, items)
        return job_id


def register() -> None:
    """Make Rucio's conveyor know this transfertool by its name ``gfal``."""
    from rucio.core import transfer

    transfer.TRANSFERTOOL_CLASSES_BY_NAME[EXTERNAL_NAME] = GridTransfertool
