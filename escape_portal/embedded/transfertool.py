"""A Rucio transfertool that copies between POSIX storage elements.

Production Rucio hands transfers to FTS; the embedded lake has no FTS, so Rucio's
conveyor hands them to this transfertool instead (registered under the name ``posix`` in
``rucio.core.transfer.TRANSFERTOOL_CLASSES_BY_NAME`` by the daemon supervisor). Each
submitted job is copied by a worker thread: the bytes are streamed into a ``.part`` file
beside the destination while their adler32 is computed, compared with the catalogue's
checksum and size, and only then renamed into place, so a half-copied or corrupted
replica never appears complete. Outcomes are appended to a JSON-lines file per job, which
the poller reads back (``bulk_query``); a job whose worker is gone (daemon restarted) is
reported lost, and Rucio retries it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rucio.db.sqla.constants import RequestState
from rucio.transfertool.transfertool import (
    TransferStatusReport,
    Transfertool,
    TransferToolBuilder,
)

from escape_portal.integrity import copy_verified

EXTERNAL_NAME = "posix"
_WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="posix-transfer")
#: Jobs being copied, and the event their worker sets when the job is done.
_ACTIVE: dict[str, threading.Event] = {}
_ACTIVE_LOCK = threading.Lock()
#: Seconds a poll may wait, in all, for running jobs to finish (see ``bulk_query``).
POLL_WAIT = 60.0


def transfer_dir() -> Path:
    """Folder where job files live (``[escape_portal] transfer_dir`` of ``rucio.cfg``)."""
    from rucio.common.config import config_get

    folder = Path(config_get("escape_portal", "transfer_dir"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _path_of(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ValueError(f"the POSIX transfertool copies local file:// URLs only, got {url}")
    return Path(parsed.path)


class PosixTransferStatusReport(TransferStatusReport):  # type: ignore[misc]
    """Terminal state of one request, as recorded by the copy worker."""

    supported_db_fields = ["state", "external_id", "err_msg", "started_at", "transferred_at"]

    def __init__(self, request_id: str, external_id: str, outcome: Mapping[str, Any]) -> None:
        super().__init__(request_id)
        self.external_id = external_id
        self.state = RequestState.DONE if outcome["ok"] else RequestState.FAILED
        self.err_msg = None if outcome["ok"] else outcome["error"]
        self.started_at = dt.datetime.fromisoformat(outcome["started_at"])
        self.transferred_at = dt.datetime.fromisoformat(outcome["finished_at"])

    def initialize(self, session: Any, logger: Any = logging.log) -> None:  # noqa: D102
        pass

    def get_monitor_msg_fields(self, session: Any, logger: Any = logging.log) -> dict[str, Any]:  # noqa: D102
        return {"protocol": "file", "reason": self.err_msg or ""}


#: Copies one job item; returns ``None`` on success, else the reason of the failure.
CopyOne = Callable[[Mapping[str, Any]], str | None]


def run_job(job_id: str, items: Sequence[Mapping[str, Any]], copy_one: CopyOne) -> None:
    """Copy each item in turn with ``copy_one``; append its outcome to the job's JSON lines.

    The poller reads the outcomes back (:meth:`PosixTransfertool.bulk_query`); the job is
    marked finished (no longer active) whatever happens, so that requests it did not reach
    are reported interrupted rather than waited for.
    """
    log_path = transfer_dir() / f"{job_id}.jsonl"
    try:
        for item in items:
            started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            error = copy_one(item)
            outcome = {
                "request_id": item["request_id"],
                "ok": error is None,
                "error": error,
                "started_at": started.isoformat(),
                "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(),
            }
            with log_path.open("a") as handle:
                handle.write(json.dumps(outcome) + "\n")
    finally:
        with _ACTIVE_LOCK:
            done = _ACTIVE.pop(job_id, None)
        if done is not None:
            done.set()


def queue_job(items: list[dict[str, Any]], copy_one: CopyOne) -> str:
    """Write a job's items, hand them to a copy worker, and return the new job's id."""
    job_id = uuid.uuid4().hex
    (transfer_dir() / f"{job_id}.json").write_text(json.dumps(items))
    with _ACTIVE_LOCK:
        _ACTIVE[job_id] = threading.Event()
    _WORKERS.submit(run_job, job_id, items, copy_one)
    return job_id


def _copy_posix(item: Mapping[str, Any]) -> str | None:
    """Copy one item between mounted folders, checking size and adler32."""
    try:
        copy_verified(
            Path(item["source"]),
            Path(item["destination"]),
            expected_bytes=item["bytes"],
            expected_adler32=item["adler32"],
        )
    except FileNotFoundError as exc:
        return f"source file missing: {exc.filename}"
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


def _read_outcomes(job_id: str) -> dict[str, dict[str, Any]] | None:
    path = transfer_dir() / f"{job_id}.jsonl"
    if not path.exists():
        return None
    outcomes = {}
    with path.open() as handle:
        for line in handle:
            if line.endswith("\n"):  # a line being written is read next time
                record = json.loads(line)
                outcomes[record["request_id"]] = record
    return outcomes


class PosixTransfertool(Transfertool):  # type: ignore[misc]
    """Copies file:// replicas between storage elements mounted on this machine."""

    external_name = EXTERNAL_NAME
    required_rse_attrs = ()
    supported_schemes = {"file"}

    def __init__(self, external_host: str = EXTERNAL_NAME, logger: Any = logging.log) -> None:
        super().__init__(external_host, logger)

    @classmethod
    def submission_builder_for_path(
        cls, transfer_path: list[Any], logger: Any = logging.log
    ) -> tuple[list[Any], TransferToolBuilder]:
        """Submit direct (single-hop) transfers; multi-hop paths are cut to their first hop."""
        return transfer_path[:1], TransferToolBuilder(cls, external_host=EXTERNAL_NAME)

    def group_into_submit_jobs(self, transfer_paths: Iterable[list[Any]]) -> list[dict[str, Any]]:
        """One job per submission batch."""
        transfers = [hop for path in transfer_paths for hop in path]
        return [{"transfers": transfers, "job_params": {}}] if transfers else []

    def submit(
        self, transfers: Iterable[Any], job_params: dict[str, str], timeout: int | None = None
    ) -> str:
        """Queue the copies of ``transfers`` and return the job id."""
        items = []
        for transfer in transfers:
            rws = transfer.rws
            items.append(
                {
                    "request_id": rws.request_id,
                    "source": str(_path_of(transfer.source_url(transfer.src))),
                    "destination": str(_path_of(transfer.dest_url)),
                    "bytes": rws.byte_count,
                    "adler32": rws.adler32,
                }
            )
        return queue_job(items, _copy_posix)

    def bulk_query(
        self, requests_by_eid: Mapping[str, Mapping[str, Any]], timeout: int | None = None
    ) -> dict[str, dict[str, PosixTransferStatusReport] | None]:
        """Report the finished requests of each job; a job nobody runs any more is lost.

        A job still being copied is waited for (:data:`POLL_WAIT` seconds in all, or
        ``timeout``) before it is answered: Rucio's poller marks the requests it polled and
        does not poll them again for ten minutes (``get_and_mark_next``'s
        ``processed_at_delay``), so a job answered half-done would leave its other half
        waiting that long, although the copies take seconds.
        """
        deadline = time.monotonic() + (POLL_WAIT if timeout is None else min(timeout, POLL_WAIT))
        for job_id in requests_by_eid:
            with _ACTIVE_LOCK:
                done = _ACTIVE.get(job_id)
            if done is not None:
                done.wait(max(0.0, deadline - time.monotonic()))
        response: dict[str, dict[str, PosixTransferStatusReport] | None] = {}
        for job_id, requests in requests_by_eid.items():
            outcomes = _read_outcomes(job_id)
            with _ACTIVE_LOCK:
                running = job_id in _ACTIVE
            if outcomes is None and not running:
                response[job_id] = None  # unknown job: Rucio marks it lost and retries
                continue
            outcomes = outcomes or {}
            if not running:
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
                for request_id in requests:
                    outcomes.setdefault(
                        request_id,
                        {
                            "ok": False,
                            "started_at": now,
                            "finished_at": now,
                            "error": "copy interrupted: the transfer daemon stopped during the job",
                        },
                    )
            response[job_id] = {
                request_id: PosixTransferStatusReport(request_id, job_id, outcomes[request_id])
                for request_id in requests
                if request_id in outcomes
            }
        return response

    def cancel(self, transfer_ids: Sequence[str], timeout: int | None = None) -> bool:
        """Copies are short and atomic; a cancelled request's copy simply finishes unused."""
        return True

    def update_priority(self, transfer_id: str, priority: int, timeout: int | None = None) -> bool:
        """Priorities do not apply to local copies."""
        return True


def register() -> None:
    """Make Rucio's conveyor know this transfertool by its name ``posix``."""
    from rucio.core import transfer

    transfer.TRANSFERTOOL_CLASSES_BY_NAME[EXTERNAL_NAME] = PosixTransfertool
