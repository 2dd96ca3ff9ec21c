"""UWS 1.1 jobs for the asynchronous TAP of the lake's VO publication (``/tap/async``).

The jobs live in memory: at most :data:`MAX_JOBS` of them, each destroyed at its
destruction time (:data:`DESTRUCTION_SECONDS` after creation unless the client moves it,
never later than :data:`MAX_LIFETIME` seconds), and the results kept add up to at most
:data:`MAX_RESULT_BYTES` (the oldest finished jobs go first). :data:`WORKERS` threads run
the queued jobs; a job's run is bounded by its execution duration (the runner is given it),
an abort is answered at once and the runner's late answer is dropped. Every wait is
bounded: ``WAIT`` on a job blocks at most :data:`MAX_WAIT` seconds.

The routes under ``/tap/async`` (relative to the job list)::

    GET    /                       the job list (PHASE, AFTER, LAST filters)
    POST   /                       create a job (303 to it; PHASE=RUN starts it)
    GET    /{id}                   the job (WAIT=n blocks while QUEUED or EXECUTING)
    POST   /{id}                   ACTION=DELETE, or new parameters while PENDING
    DELETE /{id}                   delete the job (303 to the list)
    GET    /{id}/phase             PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED
    POST   /{id}/phase             PHASE=RUN or PHASE=ABORT
    GET    /{id}/results/result    the VOTable of a COMPLETED job
    GET    /{id}/error             the VOTable error document of a job in ERROR
    GET|POST /{id}/executionduration, /{id}/destruction, /{id}/parameters
    GET    /{id}/results, /{id}/quote, /{id}/owner
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from escape_portal.vo_publish.votable import VOTABLE_MIME, error_document

log = logging.getLogger("escape_portal.vo.uws")

#: Jobs kept at once; creating one more drops the oldest job that is not queued or running.
MAX_JOBS = 100
#: Seconds from creation to a job's default destruction time.
DESTRUCTION_SECONDS = 3600.0
#: The latest destruction time a client may ask for, in seconds from now.
MAX_LIFETIME = 24 * 3600.0
#: The bytes of results kept over all jobs.
MAX_RESULT_BYTES = 256 << 20
#: Threads running jobs.
WORKERS = 2
#: The longest a ``WAIT`` request blocks, in seconds (also what ``WAIT=-1`` means).
MAX_WAIT = 60.0

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
_NS = (
    f'xmlns:uws="{UWS_NS}" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)
ACTIVE = frozenset({"QUEUED", "EXECUTING"})
FINAL = frozenset({"COMPLETED", "ERROR", "ABORTED"})
PHASES = frozenset({"PENDING", "HELD", "SUSPENDED", "ARCHIVED", "UNKNOWN"} | ACTIVE | FINAL)
_TEXT = "text/plain; charset=utf-8"
_XML = "text/xml; charset=utf-8"
#: Parameters that steer the job rather than being job parameters.
_CONTROL = frozenset({"PHASE", "RUNID", "ACTION", "WAIT", "NAME"})

#: Runs a job: its parameters (as parsed from a form) and its execution duration in
#: seconds; returns the result VOTable.
Runner = Callable[[dict[str, list[str]], float], str]


class UWSError(Exception):
    """A UWS request that cannot be served (``status``: the HTTP status to answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type, body and, for 303, where to go."""

    status: int
    content_type: str
    body: str
    location: str | None = None


@dataclass
class Job:
    """One UWS job (times are seconds since the epoch)."""

    job_id: str
    parameters: dict[str, str]
    created: float
    destruction: float
    execution_duration: int
    run_id: str | None = None
    phase: str = "PENDING"
    started: float | None = None
    ended: float | None = None
    result: str | None = field(default=None, repr=False)
    error: str | None = None


def _iso(moment: float) -> str:
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> float:
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UWSError(400, f"{text!r} is not an ISO 8601 time (YYYY-MM-DDThh:mm:ssZ).") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _nillable(tag: str, value: str | None) -> str:
    if value is None:
        return f'<uws:{tag} xsi:nil="true"/>'
    return f"<uws:{tag}>{escape(value)}</uws:{tag}>"


class JobManager:
    """The UWS job list of the asynchronous TAP endpoint.

    Parameters
    ----------
    runner
        Runs a job's query: ``runner(parameters, seconds)`` returns the result VOTable.
    user_errors
        Exceptions of the runner that are the client's fault: their message is the job's
        error as it is; any other exception is logged and reported as an internal error.
    max_duration
        The longest execution duration in seconds (also the default).
    max_jobs
        Jobs kept at once.
    workers
        Threads running jobs.
    destruction_seconds
        Seconds from creation to the default destruction time.
    max_result_bytes
        The bytes of results kept over all jobs.

    """

    def __init__(
        self,
        runner: Runner,
        *,
        user_errors: tuple[type[Exception], ...] = (),
        max_duration: float = 20.0,
        max_jobs: int = MAX_JOBS,
        workers: int = WORKERS,
        destruction_seconds: float = DESTRUCTION_SECONDS,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self._runner = runner
        self._user_errors = user_errors
        self._max_duration = max(1, int(max_duration))
        self._max_jobs = max_jobs
        self._workers = workers
        self._destruction_seconds = destruction_seconds
        self._max_result_bytes = max_result_bytes
        self._jobs: dict[str, Job] = {}
        self._changed = threading.Condition()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []

    # -- the jobs ---------------------------------------------------------------------

    def create(self, params: dict[str, list[str]]) -> Job:
        """A new job with ``params`` (started if ``PHASE=RUN``); a copy of it.

        Raises
        ------
        UWSError
            503 when :data:`MAX_JOBS` jobs are queued or running; 400 for a bad PHASE.

        """
        phase = (_one(params, "PHASE") or "").upper()
        if phase not in ("", "RUN"):
            raise UWSError(400, f"PHASE={phase} cannot be given to a new job; use PHASE=RUN.")
        now = time.time()
        job = Job(
            job_id=uuid.uuid4().hex[:16],
            parameters=self._job_parameters(params),
            created=now,
            destruction=now + self._destruction_seconds,
            execution_duration=self._max_duration,
            run_id=_one(params, "RUNID"),
        )
        with self._changed:
            self._purge(now)
            if len(self._jobs) >= self._max_jobs:
                finished = [j for j in self._jobs.values() if j.phase not in ACTIVE]
                if not finished:
                    raise UWSError(
                        503, f"{len(self._jobs)} jobs are queued or running; retry later."
                    )
                oldest = min(finished, key=lambda j: j.created)
                del self._jobs[oldest.job_id]
            self._jobs[job.job_id] = job
            if phase == "RUN":
                self._start(job)
            return replace(job)

    def get(self, job_id: str, wait: float | None = None) -> Job:
        """A copy of the job; with ``wait``, first block while it is QUEUED or EXECUTING.

        ``wait`` is capped at :data:`MAX_WAIT` seconds; a negative ``wait`` means that cap.

        Raises
        ------
        UWSError
            404 if there is no such job.

        """
        with self._changed:
            job = self._job(job_id)
            if wait is not None and wait != 0 and job.phase in ACTIVE:
                seconds = MAX_WAIT if wait < 0 else min(wait, MAX_WAIT)
                deadline = time.monotonic() + seconds
                phase = job.phase
                while job.phase == phase and job_id in self._jobs:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                job = self._job(job_id)
            return replace(job)

    def jobs(
        self, phases: set[str] | None = None, after: float | None = None, last: int | None = None
    ) -> list[Job]:
        """Copies of the jobs, oldest first (UWS 1.1 ``PHASE``, ``AFTER``, ``LAST`` filters)."""
        with self._changed:
            self._purge(time.time())
            found = [
                replace(j)
                for j in self._jobs.values()
                if (phases is None or j.phase in phases) and (after is None or j.created > after)
            ]
        found.sort(key=lambda j: j.created)
        if last is not None:
            found = found[-last:] if last > 0 else []
        return found

    def delete(self, job_id: str) -> None:
        """Abort the job if it runs, and forget it.

        Raises
        ------
        UWSError
            404 if there is no such job.

        """
        with self._changed:
            self._job(job_id)
            del self._jobs[job_id]
            self._changed.notify_all()

    def set_phase(self, job_id: str, phase: str) -> None:
        """``RUN`` queues a PENDING job; ``ABORT`` aborts one not yet finished.

        Raises
        ------
        UWSError
            404 if there is no such job, 400 for another phase.

        """
        wanted = phase.strip().upper()
        with self._changed:
            job = self._job(job_id)
            if wanted == "RUN":
                if job.phase == "PENDING":
                    self._start(job)
            elif wanted == "ABORT":
                if job.phase not in FINAL:
                    job.phase = "ABORTED"
                    job.ended = time.time()
                    self._changed.notify_all()
            else:
                raise UWSError(400, f"PHASE={phase} is not supported; use PHASE=RUN or ABORT.")

    def set_parameters(self, job_id: str, params: dict[str, list[str]]) -> None:
        """Add or replace parameters of a PENDING job.

        Raises
        ------
        UWSError
            404 if there is no such job, 409 if it is no longer PENDING.

        """
        new = self._job_parameters(params)
        with self._changed:
            job = self._job(job_id)
            if "RUNID" in params:
                job.run_id = _one(params, "RUNID")  # a label; it may change at any time
            if not new:
                return
            if job.phase != "PENDING":
                raise UWSError(409, f"The job is {job.phase}; parameters change only when PENDING.")
            job.parameters.update(new)

    def set_execution_duration(self, job_id: str, text: str) -> None:
        """Set the execution duration (seconds; 0 or more than the limit: the limit).

        Raises
        ------
        UWSError
            404 if there is no such job, 400 for a value that is not a whole number,
            409 once the job has started.

        """
        try:
            seconds = int(float(text.strip()))
        except ValueError as exc:
            raise UWSError(400, f"EXECUTIONDURATION={text} is not a number of seconds.") from exc
        with self._changed:
            job = self._job(job_id)
            if job.phase != "PENDING":
                raise UWSError(409, f"The job is {job.phase}; its duration is fixed.")
            limit = self._max_duration
            job.execution_duration = limit if seconds <= 0 else min(seconds, limit)

    def set_destruction(self, job_id: str, text: str) -> None:
        """Move the destruction time (no later than :data:`MAX_LIFETIME` from now).

        Raises
        ------
        UWSError
            404 if there is no such job, 400 for a value that is not an ISO 8601 time.

        """
        moment = _parse_time(text)
        with self._changed:
            job = self._job(job_id)
            job.destruction = min(moment, time.time() + MAX_LIFETIME)

    def close(self) -> None:
        """Stop the worker threads (after the jobs they are running)."""
        with self._changed:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)

    # -- internals --------------------------------------------------------------------

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.destruction <= time.time():
            raise UWSError(404, f"No job {job_id} (it may have been deleted or destroyed).")
        return job

    @staticmethod
    def _job_parameters(params: dict[str, list[str]]) -> dict[str, str]:
        return {k: v[-1] for k, v in params.items() if v and k.upper() not in _CONTROL}

    def _purge(self, now: float) -> None:
        for job_id in [k for k, j in self._jobs.items() if j.destruction <= now]:
            del self._jobs[job_id]

    def _start(self, job: Job) -> None:
        """Queue ``job`` (the lock is held)."""
        job.phase = "QUEUED"
        while len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._work, name=f"uws-worker-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._queue.put(job.job_id)
        self._changed.notify_all()

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._changed:
                job = self._jobs.get(job_id)
                if job is None or job.phase != "QUEUED":
                    continue
                job.phase, job.started = "EXECUTING", time.time()
                params = {k: [v] for k, v in job.parameters.items()}
                duration = float(job.execution_duration)
                self._changed.notify_all()
            result: str | None = None
            error: str | None = None
            try:
                result = self._runner(params, duration)
            except self._user_errors as exc:
                error = str(exc)
            except Exception as exc:
                log.exception("async job %s failed", job_id)
                error = f"Internal error: {exc}"
            with self._changed:
                job = self._jobs.get(job_id)
                if job is None or job.phase != "EXECUTING":
                    continue  # deleted or aborted meanwhile
                job.ended = time.time()
                if error is None and result is not None:
                    job.phase, job.result = "COMPLETED", result
                    self._trim_results(job_id)
                else:
                    job.phase, job.error = "ERROR", error or "The job gave no result."
                self._changed.notify_all()

    def _trim_results(self, keep: str) -> None:
        """Forget the oldest finished jobs while the results exceed the byte budget."""
        total = sum(len(j.result) for j in self._jobs.values() if j.result)
        for job in sorted(self._jobs.values(), key=lambda j: j.created):
            if total <= self._max_result_bytes:
                return
            if job.job_id != keep and job.result:
                total -= len(job.result)
                del self._jobs[job.job_id]

    # -- HTTP -------------------------------------------------------------------------

    def handle(self, method: str, rest: str, params: dict[str, list[str]], base: str) -> Reply:
        """Answer a request to the job list ``base`` (``rest``: the path below it).

        Parameters
        ----------
        method
            ``GET``, ``POST``, ``DELETE`` or ``HEAD``.
        rest
            The path below the job list, without leading or trailing slashes.
        params
            The query and form parameters, names in upper case.
        base
            The job list's URL (``http://.../tap/async``).

        """
        try:
            return self._route(method, [p for p in rest.split("/") if p], params, base)
        except UWSError as exc:
            return Reply(exc.status, _TEXT, f"{exc}\n")

    def _route(
        self, method: str, parts: list[str], params: dict[str, list[str]], base: str
    ) -> Reply:
        post = method == "POST"
        if method not in ("GET", "HEAD", "POST", "DELETE"):
            raise UWSError(405, f"{method} is not supported here.")
        if not parts:
            if post:
                job = self.create(params)
                return _see(f"{base}/{job.job_id}")
            if method == "DELETE":
                raise UWSError(405, "DELETE a job, not the job list.")
            return Reply(200, _XML, self._list(params, base))
        job_id, url = parts[0], f"{base}/{parts[0]}"
        item = "/".join(parts[1:])
        if method == "DELETE":
            if item:
                raise UWSError(405, f"DELETE the job {url}, not {item}.")
            self.delete(job_id)
            return _see(base)
        if not item:
            if post:
                if (_one(params, "ACTION") or "").upper() == "DELETE":
                    self.delete(job_id)
                    return _see(base)
                if _one(params, "ACTION") is not None:
                    raise UWSError(400, "ACTION must be DELETE.")
                self.set_parameters(job_id, params)
                if _one(params, "PHASE"):
                    self.set_phase(job_id, _one(params, "PHASE") or "")
                return _see(url)
            return Reply(200, _XML, job_document(self.get(job_id, _wait(params)), url))
        if post:
            return self._post_item(job_id, item, params, url)
        job = self.get(job_id)
        if item == "phase":
            return Reply(200, _TEXT, job.phase)
        if item == "executionduration":
            return Reply(200, _TEXT, str(job.execution_duration))
        if item == "destruction":
            return Reply(200, _TEXT, _iso(job.destruction))
        if item == "quote":
            return Reply(200, _TEXT, _iso(job.created + job.execution_duration))
        if item == "owner":
            return Reply(200, _TEXT, "")
        if item == "parameters":
            return Reply(200, _XML, _xml_doc(_parameters(job, root=True)))
        if item == "results":
            return Reply(200, _XML, _xml_doc(_results(job, url, root=True)))
        if item == "results/result":
            if job.phase != "COMPLETED" or job.result is None:
                raise UWSError(404, f"The job is {job.phase}; it has no result.")
            return Reply(200, f"{VOTABLE_MIME}; charset=utf-8", job.result)
        if item == "error":
            if job.phase != "ERROR" or job.error is None:
                raise UWSError(404, f"The job is {job.phase}; it has no error.")
            return Reply(200, f"{VOTABLE_MIME}; charset=utf-8", error_document(job.error))
        raise UWSError(404, f"No {item} in a job.")

    def _post_item(self, job_id: str, item: str, params: dict[str, list[str]], url: str) -> Reply:
        if item == "phase":
            self.set_phase(job_id, _one(params, "PHASE") or "")
        elif item == "executionduration":
            self.set_execution_duration(job_id, _one(params, "EXECUTIONDURATION") or "")
        elif item == "destruction":
            self.set_destruction(job_id, _one(params, "DESTRUCTION") or "")
        elif item == "parameters":
            self.set_parameters(job_id, params)
        else:
            raise UWSError(405 if item in ("results", "error", "quote", "owner") else 404,
                           f"Cannot POST to {item} of a job.")  # fmt: skip
        return _see(url)

    def _list(self, params: dict[str, list[str]], base: str) -> str:
        phases = {p.strip().upper() for p in params.get("PHASE", []) if p.strip()} or None
        if phases and not phases <= PHASES:
            raise UWSError(400, f"PHASE must be among {', '.join(sorted(PHASES))}.")
        after_text = _one(params, "AFTER")
        last_text = _one(params, "LAST")
        try:
            last = int(last_text) if last_text else None
        except ValueError as exc:
            raise UWSError(400, f"LAST={last_text} is not a whole number.") from exc
        if last is not None and last < 0:
            raise UWSError(400, "LAST must not be negative.")
        after = _parse_time(after_text) if after_text else None
        refs = "".join(
            f"<uws:jobref id={quoteattr(j.job_id)} xlink:href={quoteattr(f'{base}/{j.job_id}')}>"
            f"<uws:phase>{j.phase}</uws:phase>"
            + (f"<uws:runId>{escape(j.run_id)}</uws:runId>" if j.run_id is not None else "")
            + '<uws:ownerId xsi:nil="true"/>'
            f"<uws:creationTime>{_iso(j.created)}</uws:creationTime></uws:jobref>\n"
            for j in self.jobs(phases, after, last)
        )
        return _xml_doc(f'<uws:jobs {_NS} version="1.1">\n{refs}</uws:jobs>')


def _see(url: str) -> Reply:
    return Reply(303, _TEXT, f"See {url}\n", location=url)


def _wait(params: dict[str, list[str]]) -> float | None:
    text = _one(params, "WAIT")
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise UWSError(400, f"WAIT={text} is not a number of seconds.") from exc


def _xml_doc(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _parameters(job: Job, root: bool = False) -> str:
    ns = f" {_NS}" if root else ""
    inner = "".join(
        f"<uws:parameter id={quoteattr(k.lower())}>{escape(v)}</uws:parameter>"
        for k, v in job.parameters.items()
    )
    return f"<uws:parameters{ns}>{inner}</uws:parameters>"


def _results(job: Job, url: str, root: bool = False) -> str:
    ns = f" {_NS}" if root else ""
    inner = ""
    if job.phase == "COMPLETED" and job.result is not None:
        inner = (
            f'<uws:result id="result" xlink:type="simple" '
            f"xlink:href={quoteattr(f'{url}/results/result')} "
            f'mime-type="{VOTABLE_MIME}" size="{len(job.result.encode("utf-8"))}"/>'
        )
    return f"<uws:results{ns}>{inner}</uws:results>"


def job_document(job: Job, url: str) -> str:
    """The UWS 1.1 job document of ``job``, reached at ``url``."""
    error = ""
    if job.phase == "ERROR" and job.error is not None:
        error = (
            '<uws:errorSummary type="fatal" hasDetail="true">'
            f"<uws:message>{escape(job.error)}</uws:message></uws:errorSummary>"
        )
    elif job.phase == "ABORTED":
        error = (
            '<uws:errorSummary type="transient" hasDetail="false">'
            "<uws:message>The job was aborted.</uws:message></uws:errorSummary>"
        )
    return _xml_doc(
        f'<uws:job {_NS} version="1.1">\n'
        f"<uws:jobId>{escape(job.job_id)}</uws:jobId>\n"
        + (f"<uws:runId>{escape(job.run_id)}</uws:runId>\n" if job.run_id is not None else "")
        + '<uws:ownerId xsi:nil="true"/>\n'
        f"<uws:phase>{job.phase}</uws:phase>\n"
        f"<uws:quote>{_iso(job.created + job.execution_duration)}</uws:quote>\n"
        f"<uws:creationTime>{_iso(job.created)}</uws:creationTime>\n"
        + _nillable("startTime", _iso(job.started) if job.started is not None else None)
        + "\n"
        + _nillable("endTime", _iso(job.ended) if job.ended is not None else None)
        + "\n"
        f"<uws:executionDuration>{job.execution_duration}</uws:executionDuration>\n"
        f"<uws:destruction>{_iso(job.destruction)}</uws:destruction>\n"
        f"{_parameters(job)}\n{_results(job, url)}\n{error}"
        "</uws:job>"
    )
