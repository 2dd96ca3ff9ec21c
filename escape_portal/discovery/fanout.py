"""Search many VO services at once and put what they found in one ObsCore table.

Every service is asked in its own thread with its own :class:`VOSession` (a timeout on
every request, a byte cap). The search waits until all have answered or its deadline
has passed; a service still busy then is marked ``timeout`` and its session is closed,
so a service that hangs or trickles bytes never holds the others.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from astropy.table import Table

from escape_portal.discovery.normalise import empty_obscore, merge, to_obscore
from escape_portal.discovery.query import Query
from escape_portal.discovery.services import Service
from escape_portal.discovery.session import (
    DEFAULT_MAX_BYTES,
    VOSession,
    describe_failure,
    retry_after,
)
from escape_portal.errors import InvalidRequest

State = Literal["ok", "overflow", "error", "timeout"]


@dataclass(frozen=True)
class ServiceStatus:
    """How one service answered a search.

    Attributes
    ----------
    service
        The service asked.
    state
        ``"ok"``; ``"overflow"`` (the answer was cut at ``rows`` rows: the service said
        so, or sent exactly ``maxrec``); ``"error"`` (``message`` says what went wrong,
        in the service's own words where it gave some); ``"timeout"`` (no complete
        answer before the deadline).
    rows
        Rows received (0 unless ``ok`` or ``overflow``).
    seconds
        Time the service took, or the time waited for it.
    message
        What happened, for anything but a plain ``ok``.
    query
        What was sent: the ADQL, or the protocol's parameters.
    retry_after
        Seconds a rate-limiting service asked to wait, if it did.

    """

    service: Service
    state: State
    rows: int = 0
    seconds: float = 0.0
    message: str = ""
    query: str = ""
    retry_after: float | None = None

    @property
    def answered(self) -> bool:
        """True when the service returned rows we kept (``ok`` or ``overflow``)."""
        return self.state in ("ok", "overflow")

    def __str__(self) -> str:
        head = f"{self.service.name} ({self.service.kind}, {self.seconds:.2f} s): {self.state}"
        if self.state == "ok":
            return f"{head}, {self.rows} rows"
        return f"{head}: {self.message}"


@dataclass(frozen=True)
class DiscoveryResult:
    """What a search found, and how each service answered.

    Attributes
    ----------
    table
        One ObsCore-shaped astropy Table (see :mod:`escape_portal.discovery.normalise`),
        rows of every service that answered, with ``service`` and ``query`` columns.
    statuses
        One :class:`ServiceStatus` per service, in the order the services were given.
    warnings
        Warnings raised while reading answers (odd VOTables, ...), each once.
    query
        The query searched for.
    seconds
        Wall time of the whole search.

    """

    table: Table
    statuses: list[ServiceStatus]
    warnings: list[str] = field(default_factory=list)
    query: Query | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every service answered (overflowing answers count as answers)."""
        return all(s.answered for s in self.statuses)

    @property
    def failed(self) -> list[ServiceStatus]:
        """Statuses of the services that gave no rows (``error`` or ``timeout``)."""
        return [s for s in self.statuses if not s.answered]

    def summary(self) -> str:
        """A few lines: rows found, from how many services, and each service's status."""
        answered = sum(s.answered for s in self.statuses)
        lines = [
            f"{len(self.table)} rows from {answered} of {len(self.statuses)} services "
            f"in {self.seconds:.1f} s"
        ]
        lines += [f"  {s}" for s in self.statuses]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass
class _Outcome:
    table: Table | None = None
    state: State = "error"
    rows: int = 0
    message: str = ""
    sent: str = ""
    retry_after: float | None = None
    seconds: float = 0.0


def _time_range(query: Query) -> Any:
    from astropy.time import Time

    if not query.time_mjd:
        return None
    start, end = query.time_mjd
    return (Time(start, format="mjd"), Time(end, format="mjd"))


def _ask(service: Service, query: Query, session: VOSession, sync: bool) -> tuple[Any, str]:
    """Send the query to one service; the pyvo results and what was sent."""
    import astropy.units as u
    from pyvo.dal import SCSService, SIA2Service, SSAService, TAPService
    from pyvo.dal.sia2 import SIA2Query

    if query.adql is not None and service.kind != "tap":
        raise _Skipped("raw ADQL is only sent to TAP services; this one was not asked")
    if service.kind == "tap":
        adql = query.to_adql()
        tap = TAPService(service.url, session=session)
        if sync:
            return tap.run_sync(adql, maxrec=query.maxrec), adql
        left = max(0.1, (session.deadline or time.monotonic()) - time.monotonic())
        return tap.run_async(adql, maxrec=query.maxrec, timeout=left), adql
    has_pos = query.ra is not None and query.dec is not None and query.radius_deg is not None
    if service.kind == "sia2":
        sia2 = SIA2Service(service.url, session=session, check_baseurl=False)
        q = SIA2Query(
            sia2.query_ep,
            pos=(query.ra, query.dec, query.radius_deg) if has_pos else None,
            band=query.band_m,
            time=_time_range(query),
            collection=list(query.collections) or None,
            data_type=list(query.product_types) or None,
            calib_level=list(query.calib_levels) or None,
            facility=list(query.facilities) or None,
            instrument=list(query.instruments) or None,
            maxrec=query.maxrec,
            session=session,
        )
        return q.execute(), _params(q)
    if not has_pos:
        raise _Skipped(f"a {service.kind.upper()} service needs a position; none was given")
    if service.kind == "scs":
        scs = SCSService(service.url, session=session)
        q = scs.create_query(pos=(query.ra, query.dec), radius=query.radius_deg, verbosity=2)
        return q.execute(), _params(q)
    ssa = SSAService(service.url, session=session)
    q = ssa.create_query(
        pos=(query.ra, query.dec),
        diameter=2 * (query.radius_deg or 0) * u.deg,
        band=query.band_m,
        time=_time_range(query),
        maxrec=query.maxrec,
    )
    return q.execute(), _params(q)


class _Skipped(Exception):
    """The service cannot answer this kind of query and was not asked."""


def _params(q: Any) -> str:
    items = [
        (k, v if isinstance(v, str) else " ".join(map(str, v)) if isinstance(v, list) else str(v))
        for k, v in q.items()
    ]
    return f"{q.queryurl}?{urlencode(items)}"


def _run(service: Service, query: Query, session: VOSession, sync: bool) -> _Outcome:
    outcome = _Outcome()
    started = time.monotonic()
    try:
        results, outcome.sent = _ask(service, query, session, sync)
        table = results.to_table()
        outcome.rows = len(table)
        status = str(results._status[0] if hasattr(results, "_status") else "OK").lower()
        normalised = to_obscore(
            table, list(results.fielddescs), service.kind, service.name, outcome.sent
        )
        # Services that cannot filter on everything asked (a cone search knows only the
        # position) answer more than was asked for; their rows are checked here.
        keep = query.matches(normalised) if service.kind != "tap" else None
        outcome.table = normalised if keep is None or keep.all() else normalised[keep]
        dropped = 0 if keep is None else int((~keep).sum())
        if status == "overflow" or outcome.rows >= query.maxrec:
            outcome.state = "overflow"
            outcome.message = f"truncated at {outcome.rows} rows"
        else:
            outcome.state = "ok"
        if dropped:
            note = f"{dropped} of {outcome.rows} rows outside the query's constraints left out"
            outcome.message = f"{outcome.message}; {note}" if outcome.message else note
    except _Skipped as exc:
        outcome.state, outcome.message = "error", f"skipped: {exc}"
    except Exception as exc:
        outcome.state, outcome.message = describe_failure(session, exc)  # type: ignore[assignment]
        if session.last_status == 429:
            outcome.retry_after = retry_after(session.last_headers)
    outcome.seconds = time.monotonic() - started
    return outcome


def _labels(services: Sequence[Service]) -> list[Service]:
    """Services with names unique in this search (``name/kind``, then ``#n``, if needed)."""
    from dataclasses import replace

    counts: dict[str, int] = {}
    for s in services:
        counts[s.name] = counts.get(s.name, 0) + 1
    out: list[Service] = []
    used: set[str] = set()
    for s in services:
        name = s.name if counts[s.name] == 1 else f"{s.name}/{s.kind}"
        base, n = name, 2
        while name in used:
            name, n = f"{base}#{n}", n + 1
        used.add(name)
        out.append(s if name == s.name else replace(s, name=name))
    return out


def search(
    services: Sequence[Service] | Service,
    query: Query,
    *,
    timeout: float = 10.0,
    max_workers: int | None = None,
    sync: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DiscoveryResult:
    """Ask every service at once; return within ``timeout`` with what came back.

    Parameters
    ----------
    services
        The services to search (see :func:`registry_search`), or one.
    query
        What to look for; ObsCore TAP services get ``query.to_adql()``, SIA2, cone
        search and SSA services the equivalent parameters.
    timeout
        Seconds the whole search may take. Services that have not answered by then are
        marked ``timeout`` and their connections closed.
    max_workers
        Services asked at the same time (default: all).
    sync
        TAP services are queried synchronously (``True``) or as async UWS jobs.
    max_bytes
        Largest answer read from one service; beyond it the service is an ``error``.

    Returns
    -------
    DiscoveryResult
        The merged table, a status per service and warnings. Failing services do not
        raise: look at ``result.statuses`` (or ``result.ok``).

    Raises
    ------
    InvalidRequest
        For no services, a service that is not a :class:`Service`, or a bad timeout.

    """
    if isinstance(services, Service):
        services = [services]
    services = list(services)
    if not services:
        raise InvalidRequest(
            "No services to search.",
            "Give Service(name, kind, url) objects, or find some with registry_search().",
        )
    for s in services:
        if not isinstance(s, Service):
            raise InvalidRequest(
                f"{s!r} is not a Service.", "Make one with Service(name, kind, url)."
            )
    if not isinstance(query, Query):
        raise InvalidRequest(f"{query!r} is not a Query.", "Make one with Query(pos=..., ...).")
    if not timeout > 0:
        raise InvalidRequest(f"The timeout {timeout!r} must be a positive number of seconds.")
    if max_workers is not None and max_workers < 1:
        raise InvalidRequest(f"max_workers {max_workers!r} must be at least 1.")
    services = _labels(services)

    started = time.monotonic()
    deadline = started + timeout
    sessions = [VOSession(timeout, deadline=deadline, max_bytes=max_bytes) for _ in services]
    outcomes: dict[int, _Outcome] = {}
    pending = deque(range(len(services)))
    lock = threading.Condition()
    finished = False

    def work() -> None:
        while True:
            with lock:
                if finished or not pending:
                    return
                index = pending.popleft()
            if time.monotonic() >= deadline:
                outcome = _Outcome(state="timeout", message="not started before the deadline")
            else:
                outcome = _run(services[index], query, sessions[index], sync)
            with lock:
                if not finished:
                    outcomes[index] = outcome
                    lock.notify_all()

    workers = min(max_workers or len(services), len(services))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(workers):
            threading.Thread(target=work, name=f"vo-search-{i}", daemon=True).start()
        with lock:
            while len(outcomes) < len(services):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                lock.wait(left)
            finished = True
            done = dict(outcomes)
    for index, session in enumerate(sessions):
        if index in done:
            session.close()
        else:
            session.cancel()  # frees a thread stuck in a trickling read

    statuses: list[ServiceStatus] = []
    parts: list[tuple[str, Table]] = []
    for index, service in enumerate(services):
        outcome = done.get(index)
        if outcome is None:
            statuses.append(
                ServiceStatus(
                    service,
                    "timeout",
                    seconds=timeout,
                    message=f"no complete answer within {timeout:g} s; stopped waiting",
                    query=_sent(service, query),
                )
            )
            continue
        statuses.append(
            ServiceStatus(
                service,
                outcome.state,
                rows=outcome.rows if outcome.table is not None else 0,
                seconds=outcome.seconds,
                message=outcome.message,
                query=outcome.sent or _sent(service, query),
                retry_after=outcome.retry_after,
            )
        )
        if outcome.table is not None:
            parts.append((service.name, outcome.table))
    notes = _warning_texts(caught or [])
    notes += [f"{s.service.name}: {s.message}" for s in statuses if s.state == "overflow"]
    table = merge(parts) if parts else empty_obscore()
    return DiscoveryResult(
        table=table,
        statuses=statuses,
        warnings=notes,
        query=query,
        seconds=time.monotonic() - started,
    )


def _sent(service: Service, query: Query) -> str:
    return query.to_adql() if service.kind == "tap" else ""


def _warning_texts(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    from pyvo.dal.exceptions import DALOverflowWarning

    texts: list[str] = []
    for w in caught:
        if issubclass(w.category, DALOverflowWarning):
            continue  # said in the service's status
        text = f"{w.category.__name__}: {w.message}"
        if text not in texts:
            texts.append(text)
    return texts
