"""Verified, atomic writes of files: what the transfertool and the download cache share.

Bytes are streamed into a hidden ``.part`` file beside the destination while their
adler32 (Rucio's checksum) is computed; size and checksum are compared with what the
catalogue says, and only then is the file renamed into place. An interrupted or corrupt
copy therefore never appears at the destination.

The bytes are on disk (``fdatasync``) before the rename. For large files the flushing
runs in a background thread while the next blocks arrive (every :data:`FLUSH_EVERY`
bytes), so a download costs about the slower of the network and the disk, not their sum.

A source that can be read by ranges (XRootD, a file) goes through
:func:`write_ranges_verified`: several ranges are read, checksummed and written at their
offsets at once, in threads (the reads, ``zlib.adler32`` and ``os.pwrite`` all release
the GIL), and the ranges' checksums are combined in order (:func:`adler32_combine`), so
the checksum costs no extra pass and no single thread carries the whole file.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

_BUFFER = 4 * 2**20
#: Bytes written between two background flushes of a large file.
FLUSH_EVERY = 64 * 2**20
#: adler32's modulus.
_ADLER_BASE = 65521


class _Flusher:
    """``fdatasync`` of a file in a background thread, at most one at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def _sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            self._error = exc

    def start(self) -> None:
        """Start a flush unless one is still running."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._sync, name="escape-flush", daemon=True)
            self._thread.start()

    def finish(self) -> None:
        """Wait for the running flush, then flush what is left; raise what failed."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        os.fdatasync(self.fd)


def adler32_of(path: Path) -> str:
    """Rucio-style adler32 (8 lower-case hex digits) of a file."""
    checksum = 1
    with path.open("rb") as handle:
        while block := handle.read(_BUFFER):
            checksum = zlib.adler32(block, checksum)
    return f"{checksum & 0xFFFFFFFF:08x}"


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The adler32 of ``A + B`` from the adler32 of ``A``, that of ``B`` and ``B``'s length.

    zlib's ``adler32_combine``, which Python's :mod:`zlib` does not expose.

    Parameters
    ----------
    first, second
        ``zlib.adler32`` of ``A`` and of ``B`` (each started at 1, zlib's default).
    second_length
        ``len(B)``.

    Returns
    -------
    int
        ``zlib.adler32(A + B)``.
    """
    base = _ADLER_BASE
    remainder = second_length % base
    sum1 = first & 0xFFFF
    sum2 = (remainder * sum1) % base
    sum1 += (second & 0xFFFF) + base - 1
    sum2 += ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + base - remainder
    sum1 %= base
    sum2 %= base
    return sum1 | (sum2 << 16)


def _compare(
    label: str, size: int, expected_bytes: int | None, checksum: int, expected: str | None
) -> None:
    """Raise ``ValueError`` if ``size`` or ``checksum`` differ from the catalogue's."""
    adler = f"{checksum & 0xFFFFFFFF:08x}"
    if expected_bytes is not None and size != expected_bytes:
        raise ValueError(
            f"size mismatch copying {label}: {size} bytes read, catalogue says {expected_bytes}"
        )
    if expected and adler != expected.lower().zfill(8):
        raise ValueError(
            f"checksum mismatch copying {label}: adler32 {adler}, catalogue says {expected}"
        )


def _partial(destination: Path) -> Path:
    """A hidden, unique ``.part`` path beside ``destination`` (its folder created)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    return destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")


def write_verified(
    stream: BinaryIO,
    destination: Path,
    *,
    expected_bytes: int | None,
    expected_adler32: str | None,
    label: str = "",
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Write ``stream`` to ``destination`` atomically, verifying size and adler32.

    Parameters
    ----------
    stream
        Where the bytes come from (read until it ends).
    destination
        Final path; its folder is created.
    expected_bytes, expected_adler32
        What the catalogue says (``None``: not checked).
    label
        What is copied, for error messages (default: the destination).
    on_bytes
        Called with the number of bytes of each block written (progress).

    Raises
    ------
    ValueError
        If size or checksum differ; nothing is left at ``destination``.
    """
    write_blocks_verified(
        iter(lambda: stream.read(_BUFFER), b""),
        destination,
        expected_bytes=expected_bytes,
        expected_adler32=expected_adler32,
        label=label,
        on_bytes=on_bytes,
    )


def write_blocks_verified(
    blocks: Iterable[bytes],
    destination: Path,
    *,
    expected_bytes: int | None,
    expected_adler32: str | None,
    label: str = "",
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """:func:`write_verified` for bytes that come as blocks (no copy into a buffer).

    Raises
    ------
    ValueError
        If size or checksum differ; nothing is left at ``destination``.
    """
    label = label or str(destination)
    partial = _partial(destination)
    checksum = 1
    size = 0
    try:
        with partial.open("wb") as out:
            flusher = _Flusher(out.fileno())
            unflushed = 0
            for block in blocks:
                checksum = zlib.adler32(block, checksum)
                size += len(block)
                out.write(block)
                unflushed += len(block)
                if unflushed >= FLUSH_EVERY:
                    out.flush()
                    flusher.start()
                    unflushed = 0
                if on_bytes:
                    on_bytes(len(block))
            out.flush()
            flusher.finish()
        _compare(label, size, expected_bytes, checksum, expected_adler32)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def write_ranges_verified(
    read_range: Callable[[int, int], bytes],
    size: int,
    destination: Path,
    *,
    expected_bytes: int | None,
    expected_adler32: str | None,
    label: str = "",
    on_bytes: Callable[[int], None] | None = None,
    block: int = 8 * 2**20,
    in_flight: int = 6,
) -> None:
    """:func:`write_verified` for a source read by ranges, several ranges at once.

    Each range is read, checksummed and written at its offset in a worker thread; at
    most ``in_flight`` ranges (``in_flight * block`` bytes) are held at a time. Errors
    of ``read_range`` propagate (nothing is left at ``destination``).

    Parameters
    ----------
    read_range
        ``read_range(start, end)``: the bytes ``start`` to ``end`` (exclusive).
    size
        The source's size (what it says of itself; compared with ``expected_bytes``).
    destination, expected_bytes, expected_adler32, label, on_bytes
        As for :func:`write_verified`.
    block
        Bytes per range.
    in_flight
        Ranges read at once (threads).

    Raises
    ------
    ValueError
        If size or checksum differ; nothing is left at ``destination``.
    """
    label = label or str(destination)
    partial = _partial(destination)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            flusher = _Flusher(fd)

            def fetch(start: int, end: int) -> tuple[int, int]:
                data = memoryview(read_range(start, end))
                if len(data) != end - start:
                    raise ValueError(
                        f"size mismatch copying {label}: {len(data)} bytes at offset {start}, "
                        f"{end - start} expected (the source's size is {size})"
                    )
                checksum = zlib.adler32(data)
                written = 0
                while written < len(data):
                    written += os.pwrite(fd, data[written:], start + written)
                return checksum, len(data)

            checksum, copied, unflushed = 1, 0, 0
            starts = iter(range(0, size, block))
            with ThreadPoolExecutor(in_flight, thread_name_prefix="escape-read") as pool:
                pending: deque[Future[tuple[int, int]]] = deque(
                    pool.submit(fetch, start, min(size, start + block))
                    for start in itertools.islice(starts, in_flight)
                )
                try:
                    while pending:
                        part, length = pending.popleft().result()
                        following = next(starts, None)
                        if following is not None:
                            end = min(size, following + block)
                            pending.append(pool.submit(fetch, following, end))
                        checksum = adler32_combine(checksum, part, length)
                        copied += length
                        unflushed += length
                        if unflushed >= FLUSH_EVERY:
                            flusher.start()
                            unflushed = 0
                        if on_bytes:
                            on_bytes(length)
                finally:
                    for future in pending:
                        future.cancel()
            flusher.finish()
        finally:
            os.close(fd)
        _compare(label, copied, expected_bytes, checksum, expected_adler32)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def copy_verified(
    source: Path, destination: Path, *, expected_bytes: int | None, expected_adler32: str | None
) -> None:
    """Copy the file ``source`` to ``destination`` with :func:`write_verified`.

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    ValueError
        If size or checksum differ; nothing is left at ``destination``.
    """
    with source.open("rb") as stream:
        write_verified(
            stream,
            destination,
            expected_bytes=expected_bytes,
            expected_adler32=expected_adler32,
            label=str(source),
        )
