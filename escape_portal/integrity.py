"""Verified, atomic writes of files: what the transfertool and the download cache share.

Bytes are streamed into a hidden ``.part`` file beside the destination while their
adler32 (Rucio's checksum) is computed; size and checksum are compared with what the
catalogue says, and only then is the file renamed into place. An interrupted or corrupt
copy therefore never appears at the destination.
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

_BUFFER = 4 * 2**20


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
            for block in blocks:
                checksum = zlib.adler32(block, checksum)
                size += len(block)
                out.write(block)
                if on_bytes:
                    on_bytes(len(block))
            out.flush()
            os.fsync(out.fileno())
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
