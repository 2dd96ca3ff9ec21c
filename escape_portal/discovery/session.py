"""One HTTP session per VO service: a timeout on every request, a deadline, a byte cap.

pyvo takes a ``requests.Session`` and has no timeout of its own. :class:`VOSession` gives
every request a timeout that never runs past the service's deadline, counts the bytes
read from every answer (an answer larger than the cap stops with :class:`AnswerTooLarge`
instead of filling the memory), and can be cancelled from another thread: the sockets
of its open answers are shut, so a service that trickles bytes forever lets go.

:func:`describe_failure` turns whatever a pyvo call raised into a state and a message in
the user's words, using what the session saw (HTTP status, the first bytes of the body).
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from typing import Any

import requests

#: Bytes of an answer kept for error messages.
HEAD_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
USER_AGENT = "escape-portal (IVOA-science) requests"


class Cancelled(Exception):
    """The service's deadline passed, or the search gave up on it."""


class AnswerTooLarge(Exception):
    """The answer was larger than the byte cap."""


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} kB"
    return f"{n} bytes"


class VOSession(requests.Session):
    """A ``requests.Session`` for one service: timeouts, a deadline, a byte cap.

    Parameters
    ----------
    timeout
        Seconds any single request may wait for the server (connect and each read).
    deadline
        ``time.monotonic()`` instant after which no request starts and reads stop
        (``None``: ``timeout`` from now on every request).
    max_bytes
        Largest answer read, summed over the session's requests.

    """

    def __init__(
        self, timeout: float, *, deadline: float | None = None, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        super().__init__()
        self.headers["User-Agent"] = USER_AGENT
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.bytes_read = 0
        self.too_large = False
        self.timed_out = False
        self.cancelled = threading.Event()
        #: Last answer's status, reason, headers and first bytes, for error messages.
        self.last_status: int | None = None
        self.last_reason = ""
        self.last_headers: dict[str, str] = {}
        self.last_url = ""
        self.first_bytes = bytearray()
        self._open: list[requests.Response] = []
        self._lock = threading.Lock()
        self.hooks["response"].append(self._on_response)

    def _remaining(self) -> float:
        if self.cancelled.is_set():
            raise Cancelled("cancelled")
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise Cancelled("deadline passed")
        return min(self.timeout, left)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send a request with a timeout that ends at the deadline at the latest."""
        left = self._remaining()
        given = kwargs.get("timeout")
        if isinstance(given, (int, float)):
            left = min(left, float(given))
        kwargs["timeout"] = (left, left)
        return super().request(method, url, *args, **kwargs)

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.last_status = response.status_code
        self.last_reason = response.reason or ""
        self.last_headers = dict(response.headers)
        self.last_url = response.url
        self.first_bytes = bytearray()
        with self._lock:
            self._open.append(response)
        raw = response.raw
        read = raw.read

        def capped_read(amt: int | None = None, *a: Any, **kw: Any) -> bytes:
            if amt is None:  # read it all, but in pieces, so that the cap applies
                chunks = []
                while chunk := capped_read(256 * 1024, *a, **kw):
                    chunks.append(chunk)
                return b"".join(chunks)
            self._remaining()
            data: bytes = read(amt, *a, **kw)
            self.bytes_read += len(data)
            if len(self.first_bytes) < HEAD_BYTES:
                self.first_bytes += data[: HEAD_BYTES - len(self.first_bytes)]
            if self.bytes_read > self.max_bytes:
                self.too_large = True
                raise AnswerTooLarge(f"more than {_size(self.max_bytes)}")
            return data

        raw.read = capped_read

    def cancel(self) -> None:
        """Stop every request of this session now, from any thread, and close it."""
        self.cancelled.set()
        with self._lock:
            responses, self._open = self._open, []
        for response in responses:
            sock = _socket_of(response)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                response.close()
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        """Close every answer still open (pyvo leaves some on errors) and the pools."""
        with self._lock:
            responses, self._open = self._open, []
        for response in responses:
            with contextlib.suppress(Exception):
                response.close()
        super().close()

    def text_head(self) -> str:
        """The first bytes of the last answer, as text."""
        return bytes(self.first_bytes).decode("utf-8", "replace")


def _socket_of(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(response.raw, "_fp", None)  # http.client.HTTPResponse
    raw = getattr(getattr(fp, "fp", None), "raw", None)
    sock = getattr(raw, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def votable_error(body: bytes) -> str | None:
    """The service's own message from a VOTable error document, if ``body`` is one."""
    if b"VOTABLE" not in body[:4096].upper():
        return None
    try:
        import warnings

        from astropy.io.votable import parse
        from astropy.io.votable.exceptions import VOWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VOWarning)
            votable = parse(io.BytesIO(body), verify="ignore")
    except Exception:
        match = re.search(
            rb"<INFO[^>]*name=\"QUERY_STATUS\"[^>]*value=\"ERROR\"[^>]*>(.*?)</INFO>",
            body,
            re.S | re.I,
        )
        return match.group(1).decode("utf-8", "replace").strip() if match else None
    infos = list(votable.infos)
    for resource in votable.resources:
        infos += list(resource.infos)
    for info in infos:
        if info.name.upper() == "QUERY_STATUS" and str(info.value).upper() == "ERROR":
            return str(info.content or "").strip() or "the service reported an error"
    return None


def _looks_html(session: VOSession) -> bool:
    ctype = session.last_headers.get("Content-Type", "").lower()
    start = session.text_head().lstrip()[:200].lower()
    return "html" in ctype or start.startswith(("<!doctype html", "<html"))


def _first_line(text: str, limit: int = 160) -> str:
    text = re.sub(r"<[^>]+>", " ", text)
    line = " ".join(text.split())
    return line[:limit] + ("..." if len(line) > limit else "")


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (seconds or an HTTP date)."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        nxt = getattr(current, "cause", None)
        current = (
            nxt if isinstance(nxt, BaseException) else (current.__cause__ or current.__context__)
        )
    return seen


def describe_failure(session: VOSession, exc: BaseException) -> tuple[str, str]:
    """State (``"error"`` or ``"timeout"``) and message for a failed call to a service.

    Parameters
    ----------
    session
        The session the call used: what it saw says more than pyvo's exception.
    exc
        What the call raised.

    Returns
    -------
    tuple of str
        ``(state, message)``.

    """
    chain = _chain(exc)
    if session.too_large or any(isinstance(e, AnswerTooLarge) for e in chain):
        return "error", (
            f"answer larger than {_size(session.max_bytes)}; stopped reading "
            "(narrow the search or lower maxrec)"
        )
    if (
        session.timed_out
        or session.cancelled.is_set()
        or any(isinstance(e, (Cancelled, requests.Timeout, TimeoutError)) for e in chain)
    ):
        return "timeout", "no complete answer before the deadline"
    for e in chain:
        if isinstance(e, requests.ConnectionError):
            return "error", f"could not connect ({_first_line(str(e), 120)})"
    status = session.last_status
    if status == 429:
        wait = retry_after(session.last_headers)
        after = f", retry after {wait:.0f} s" if wait is not None else ", retry later"
        return "error", f"rate-limited (HTTP 429){after}"
    if status is not None and status >= 400:
        message = votable_error(bytes(session.first_bytes))
        if message:
            return "error", f"HTTP {status}: {message}"
        if _looks_html(session):
            return "error", f"HTTP {status} {session.last_reason}: answered an HTML page".strip()
        body = _first_line(session.text_head())
        detail = f": {body}" if body else ""
        return "error", f"HTTP {status} {session.last_reason}{detail}".replace("  ", " ")
    from pyvo.dal.exceptions import DALFormatError, DALQueryError

    if isinstance(exc, DALQueryError):
        return "error", str(exc.reason or exc).strip() or "the service reported an error"
    if status is not None and _looks_html(session):
        return "error", "answered HTML instead of a VOTable"
    if isinstance(exc, DALFormatError) or any(
        type(e).__module__.startswith(("astropy.io.votable", "xml")) for e in chain
    ):
        cause = chain[-1] if len(chain) > 1 else exc
        return "error", f"malformed VOTable: {_first_line(str(cause), 200)}"
    return "error", f"{type(exc).__name__}: {_first_line(str(exc), 200)}"
