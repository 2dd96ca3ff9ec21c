"""Reading replicas over their storage's protocol: ``root://``, ``davs://``/``https://``, ``file://``.

A :class:`Reader` reads one replica by byte ranges (:meth:`Reader.read_range`) or whole
(:meth:`Reader.stream`). :func:`open_reader` opens the first of a
:class:`~escape_portal.replicas.Choice`'s sources that answers, recording why each one
before it did not; :func:`download` writes a file verified (size and adler32, on the way)
and atomically, moving on to the next source on any error — a corrupt replica is never
served, and an interrupted download never looks complete.

Tokens: each remote read carries a storage-audience token for that storage element and
path (:meth:`escape_portal.lake.Lake.storage_token`), in an ``Authorization`` header for
https, and in the ``authz`` CGI element of the ``root://`` URL the XRootD client opens.
Tokens never appear in an error message or a log line: every message is scrubbed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import os
import re
import shutil
import subprocess
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import quote

import requests

from escape_portal.errors import AuthenticationFailed, LakeError
from escape_portal.integrity import write_blocks_verified, write_ranges_verified
from escape_portal.lake import Lake
from escape_portal.replicas import Choice, NotAvailableHere, Source

#: Bytes asked for per request when a whole replica is streamed.
CHUNK = 8 * 2**20
#: Blocks asked for ahead over root:// while one is checked and written.
PREFETCH = 6
Failure = Literal["denied", "missing", "down", "corrupt", "error"]
T = TypeVar("T")


class StorageError(LakeError):
    """A replica could not be read from its storage (one source; the next may work).

    ``kind`` says what went wrong: ``denied`` (the storage refused the token), ``missing``
    (no such file there), ``down`` (the storage does not answer), ``corrupt`` (checksum
    or size differ from the catalogue's) or ``error``.
    """

    def __init__(self, kind: Failure, message: str, hint: str = "") -> None:
        super().__init__(message, hint)
        self.kind = kind


class ReplicaUnreadable(LakeError):
    """No source of a file could be read; the message lists why for each."""

    http_status = 502


_AUTHZ = re.compile(r"(authz=)[^&\s'\"]*", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer(?:%20|\s+))[A-Za-z0-9._\-]+", re.IGNORECASE)


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` without tokens (``authz=`` values, ``Bearer ...`` and the given secrets)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "…")
    return _BEARER.sub(r"\1…", _AUTHZ.sub(r"\1…", text))


class Reader:
    """One replica, opened for reading."""

    size: int | None = None
    #: Whether :meth:`read_range` may be called from several threads at once (a whole-file
    #: download then reads, checks and writes several ranges in parallel).
    parallel_ranges = False

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive)."""
        raise NotImplementedError

    def stream(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The whole replica, block by block."""
        offset = 0
        size = self.size
        while size is None or offset < size:
            block = self.read_range(
                offset, offset + chunk if size is None else min(size, offset + chunk)
            )
            if not block:
                return
            offset += len(block)
            yield block

    def close(self) -> None:
        """Release the connection or file."""

    def prefetched(self, chunk: int = CHUNK) -> Iterator[bytes]:
        """The whole replica by ranges, the next blocks asked for while one is used."""
        size = self.size or 0
        offsets = iter(range(0, size, chunk))
        with ThreadPoolExecutor(PREFETCH, thread_name_prefix="escape-read") as pool:
            pending: deque[Future[bytes]] = deque()
            for offset in itertools.islice(offsets, PREFETCH):
                pending.append(pool.submit(self.read_range, offset, min(size, offset + chunk)))
            while pending:
                block = pending.popleft().result()
                following = next(offsets, None)
                if following is not None:
                    end = min(size, following + chunk)
                    pending.append(pool.submit(self.read_range, following, end))
                yield block


class FileReader(Reader):
    """A local file (a mounted storage, the cache, a ``file://`` replica)."""

    def __init__(self, path: Path) -> None:
        try:
            self._handle: BinaryIO = path.open("rb")
        except FileNotFoundError as exc:
            raise StorageError("missing", f"{path} is not there") from exc
        except PermissionError as exc:
            raise StorageError("denied", f"{path} cannot be read here (permission denied)") from exc
        self.size = os.fstat(self._handle.fileno()).st_size
        self._lock = threading.Lock()

    def read_range(self, start: int, end: int) -> bytes:  # noqa: D102
        with self._lock:
            self._handle.seek(start)
            return self._handle.read(max(0, end - start))

    def stream(self, chunk: int = CHUNK) -> Iterator[bytes]:  # noqa: D102
        with self._lock:
            self._handle.seek(0)
            while block := self._handle.read(chunk):
                yield block

    def close(self) -> None:  # noqa: D102
        self._handle.close()


_sessions = threading.local()


def _session() -> requests.Session:
    """A keep-alive HTTP session of this thread (TLS handshakes are paid once)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = requests.Session()
        _sessions.session = session
    return session


class HTTPReader(Reader):
    """A replica over ``davs://``, ``https://`` or ``http://``, by range requests."""

    def __init__(
        self, url: str, token: str | None, verify: str | bool, timeout: float, label: str
    ) -> None:
        self.url = "https" + url[4:] if url.startswith("davs") else url
        self.label = label
        self.timeout = timeout
        self.verify = verify
        self._token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self._request("HEAD", {})
        length = response.headers.get("Content-Length")
        self.size = int(length) if length and length.isdigit() else None

    def _request(self, method: str, headers: dict[str, str], stream: bool = False) -> Any:
        try:
            response = _session().request(
                method,
                self.url,
                headers={**self.headers, **headers},
                verify=self.verify,
                timeout=self.timeout,
                stream=stream,
                allow_redirects=True,
            )
        except requests.RequestException as exc:
            raise StorageError(
                "down", f"{self.label} does not answer ({scrub(type(exc).__name__, self._token)})"
            ) from exc
        if response.status_code in (401, 403):
            response.close()
            what = "your storage token" if self._token else "access without a token"
            raise StorageError(
                "denied", f"{self.label} refused {what} (HTTP {response.status_code})"
            )
        if response.status_code == 404:
            response.close()
            raise StorageError("missing", f"{self.label} has no such file (HTTP 404)")
        if response.status_code >= 400:
            response.close()
            raise StorageError("error", f"{self.label} answered HTTP {response.status_code}")
        return response

    def read_range(self, start: int, end: int) -> bytes:  # noqa: D102
        if end <= start:
            return b""
        response = self._request("GET", {"Range": f"bytes={start}-{end - 1}"})
        data: bytes = response.content
        if response.status_code == 200:  # the server ignored the range
            data = data[start:end]
        return data

    def stream(self, chunk: int = CHUNK) -> Iterator[bytes]:  # noqa: D102
        response = self._request("GET", {}, stream=True)  # one GET beats parallel ranges here
        try:
            raw = response.raw
            raw.decode_content = True
            while True:
                try:
                    block = raw.read(chunk)
                except (OSError, requests.RequestException) as exc:
                    raise StorageError("down", f"{self.label} went away mid-file") from exc
                if not block:
                    return
                yield block
        finally:
            response.close()


_cert_lock = threading.Lock()


def x509_cert_dir(ca_cert: str | None) -> None:
    """Point XRootD's TLS at the instance's CA (``X509_CERT_DIR``) unless already set.

    XRootD reads a hashed certificate folder, not a bundle: a ``certificates`` folder
    beside the bundle is used when there is one, else one is made in the cache folder.
    """
    with _cert_lock:
        if os.environ.get("X509_CERT_DIR") or not ca_cert:
            return
        bundle = Path(ca_cert)
        beside = bundle.parent / "certificates"
        if beside.is_dir() and any(beside.glob("*.0")):
            os.environ["X509_CERT_DIR"] = str(beside)
            return
        digest = hashlib.sha256(bundle.read_bytes()).hexdigest()[:16]
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = base / "escape-portal" / f"certificates-{digest}"
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(bundle, folder / "ca.pem")
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["openssl", "rehash", str(folder)], check=True, capture_output=True, timeout=30
                )
        os.environ["X509_CERT_DIR"] = str(folder)


class RootReader(Reader):
    """A replica over ``root://`` with XRootD's client (token in the ``authz`` CGI)."""

    parallel_ranges = True

    def stream(self, chunk: int = CHUNK) -> Iterator[bytes]:  # noqa: D102
        return self.prefetched(chunk)

    def __init__(self, url: str, token: str | None, timeout: float, label: str) -> None:
        from XRootD.client.flags import OpenFlags

        client: Any = importlib.import_module("XRootD.client")  # untyped bindings

        self.label = label
        self._token = token
        self.timeout = max(1, int(timeout))
        if token:
            url += ("&" if "?" in url else "?") + "authz=" + quote(f"Bearer {token}", safe="")
        self._file: Any = client.File()
        status, _ = self._file.open(url, OpenFlags.READ, timeout=self.timeout)
        self._check(status)
        status, stat = self._file.stat(timeout=self.timeout)
        self._check(status)
        self.size = int(stat.size)

    def _check(self, status: Any) -> None:
        if status.ok:
            return
        errno = int(getattr(status, "errno", 0) or 0)
        if errno == 3010:
            what = "your storage token" if self._token else "access without a token"
            raise StorageError("denied", f"{self.label} refused {what} (permission denied)")
        if errno == 3011:
            raise StorageError("missing", f"{self.label} has no such file")
        if getattr(status, "fatal", False) or getattr(status, "code", 0) in (
            101,
            103,
            104,
            106,
            206,
        ):
            raise StorageError(
                "down", f"{self.label} does not answer ({scrub(status.message, self._token)})"
            )
        raise StorageError(
            "error", f"{self.label}: {scrub(str(status.message), self._token).strip()}"
        )

    def read_range(self, start: int, end: int) -> bytes:  # noqa: D102
        if end <= start:
            return b""
        status, data = self._file.read(start, end - start, timeout=self.timeout)
        self._check(status)
        return bytes(data)

    def close(self) -> None:  # noqa: D102
        with contextlib.suppress(Exception):  # closing a broken connection
            self._file.close(timeout=self.timeout)


def open_source(lake: Lake, source: Source, scope: str | None = None) -> Reader:
    """A reader of one source (mounted, cached or remote), with its storage token.

    ``scope`` is the file's Rucio scope: the storage token then covers that scope's area
    on the storage, so one exchange serves every file of the scope read there.

    Raises
    ------
    StorageError
        If the storage refuses, does not answer, or has no such file.
    """
    if source.kind != "remote" or source.scheme == "file":
        path = source.path or Path(source.storage_path)
        return FileReader(path)
    label = f"{source.rse} ({source.scheme})"
    try:
        token = lake.storage_token(
            str(source.rse), source.storage_path, write=False, did_scope=scope
        )
    except AuthenticationFailed as exc:
        raise StorageError("denied", exc.message, exc.hint) from exc
    timeout = lake.config.timeout
    if source.scheme == "root":
        x509_cert_dir(lake.config.ca_cert)
        return RootReader(source.url, token, timeout, label)
    if source.scheme in ("davs", "https", "http"):
        return HTTPReader(source.url, token, lake.config.ca_cert or True, timeout, label)
    raise StorageError("error", f"no reader for {source.scheme}://")


def open_reader(lake: Lake, choice: Choice) -> tuple[Source, Reader]:
    """The first source of ``choice`` that opens; failures are added to ``choice.failures``.

    Raises
    ------
    ReplicaUnreadable
        If none opens.
    """
    for source in choice.sources:
        if any(s == source for s, _ in choice.failures):
            continue
        try:
            return source, open_source(lake, source, choice.file.scope)
        except StorageError as exc:
            choice.failures.append((source, exc.message))
    raise unreadable(choice, "Reading")


def unreadable(choice: Choice, doing: str) -> LakeError:
    """The error when every source of ``choice`` failed, in the user's words."""
    if not choice.sources:
        left = "; ".join(f"{s.rse}: {s.reason}" for s in choice.skipped)
        states = f" (replicas at {', '.join(sorted({s.rse for s in choice.skipped}))}: {left})"
        return NotAvailableHere(
            f"No replica of {choice.file.did} can be read from this machine"
            + (states if choice.skipped else "")
            + ".",
            f"Bring it near your compute: escape-portal make-available {choice.file.did}",
        )
    reasons = "; ".join(why for _, why in choice.failures)
    if choice.failures and all("refused your storage token" in w for _, w in choice.failures):
        hint = (
            "Storage did not accept your token for this file: it may be meant for another "
            "storage or have expired. Log in again; if it persists, ask the lake's operators."
        )
    else:
        hint = "Nothing incomplete was kept; try again, or make the data available near compute."
    return ReplicaUnreadable(f"{doing} {choice.file.did} failed: {reasons}.", hint)


def _whole_from_first_good(
    lake: Lake, choice: Choice, doing: str, take: Callable[[Source, Reader], T]
) -> tuple[Source, T]:
    """``take`` applied to the first source of ``choice`` that gives the whole file right.

    The one failover loop of whole-file reads: sources in order; on a refused token, a
    storage that does not answer, a missing file or an I/O error, the next source, with
    the reason kept in ``choice.failures``. A replica whose bytes differ from the
    catalogue's (``take`` raises ``ValueError`` or a ``corrupt`` :class:`StorageError`)
    is skipped over every protocol: a corrupt replica is never served.
    """
    corrupt: set[str | None] = set()
    for source in choice.sources:
        if source.kind == "remote" and source.rse in corrupt:
            continue  # the same bytes over another protocol
        reader: Reader | None = None
        try:
            reader = open_source(lake, source, choice.file.scope)
            return source, take(source, reader)
        except StorageError as exc:
            choice.failures.append((source, exc.message))
            if exc.kind == "corrupt":
                corrupt.add(source.rse)
        except ValueError as exc:  # size or checksum differ: a corrupt replica
            choice.failures.append((source, scrub(str(exc))))
            corrupt.add(source.rse)
        except OSError as exc:
            choice.failures.append((source, scrub(f"{type(exc).__name__}: {exc}")))
        finally:
            if reader is not None:
                reader.close()
    raise unreadable(choice, doing)


def download(
    lake: Lake,
    choice: Choice,
    destination: Path,
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> Source:
    """Write the file of ``choice`` to ``destination``, verified and atomic; return its source.

    Sources are tried in order; on any failure (including a checksum mismatch) the next
    one, with the reason kept in ``choice.failures``. Progress reported for a failed
    attempt is not taken back.

    Raises
    ------
    ReplicaUnreadable
        If no source gives the right bytes; nothing is left at ``destination``.
    """
    file = choice.file
    for source in choice.sources:
        if source.kind == "cache" and source.path == destination:
            return source

    def write(source: Source, reader: Reader) -> None:
        label = f"{file.did} from {source.rse or 'the cache'}"
        if reader.parallel_ranges and reader.size is not None:
            write_ranges_verified(
                reader.read_range,
                reader.size,
                destination,
                expected_bytes=file.bytes,
                expected_adler32=file.adler32,
                label=label,
                on_bytes=on_bytes,
                block=CHUNK,
                in_flight=PREFETCH,
            )
            return
        write_blocks_verified(
            reader.stream(),
            destination,
            expected_bytes=file.bytes,
            expected_adler32=file.adler32,
            label=label,
            on_bytes=on_bytes,
        )

    return _whole_from_first_good(lake, choice, "Downloading", write)[0]


def read_verified(lake: Lake, choice: Choice) -> bytes:
    """The whole file of ``choice`` in memory, verified (size, adler32), with failover.

    Raises
    ------
    ReplicaUnreadable
        If no source gives the right bytes.
    """
    file = choice.file

    def read(source: Source, reader: Reader) -> bytes:
        parts = []
        checksum = 1
        for block in reader.stream():
            checksum = zlib.adler32(block, checksum)
            parts.append(block)
        data = b"".join(parts)
        adler = f"{checksum & 0xFFFFFFFF:08x}"
        if len(data) != file.bytes:
            raise StorageError(
                "corrupt",
                f"size mismatch reading {file.did} from {source.rse}: {len(data)} bytes",
            )
        if file.adler32 and adler != file.adler32.lower().zfill(8):
            raise StorageError(
                "corrupt",
                f"checksum mismatch reading {file.did} from {source.rse}: adler32 {adler}, "
                f"catalogue says {file.adler32}",
            )
        return data

    return _whole_from_first_good(lake, choice, "Reading", read)[1]
