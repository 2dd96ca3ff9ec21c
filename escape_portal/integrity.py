"""Verified, atomic writes of files: what the transfertool and the download cache share.

Bytes are streamed into a hidden ``.part`` file beside the destination while their
adler32 (Rucio's checksum) is computed; size and checksum are compared with what the
catalogue says, and only then is the file renamed into place. An interrupted or corrupt
copy therefore never appears at the destination.

The bytes are on disk (``fdatasync``) before the rename. For large files the flushing
runs in a background thread while the next blocks arrive (every :data:`FLUSH_EVERY`
bytes), so a download costs about the slower of the network and the disk, not their sum.
"""

from __future__ import annotations

import os
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

_BUFFER = 4 * 2**20
#: Bytes written between two background flushes of a large file.
FLUSH_EVERY = 64 * 2**20


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
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")
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
        adler = f"{checksum & 0xFFFFFFFF:08x}"
        if expected_bytes is not None and size != expected_bytes:
            raise ValueError(
                f"size mismatch copying {label}: {size} bytes read, catalogue says {expected_bytes}"
            )
        if expected_adler32 and adler != expected_adler32.lower().zfill(8):
            raise ValueError(
                f"checksum mismatch copying {label}: adler32 {adler}, "
                f"catalogue says {expected_adler32}"
            )
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
