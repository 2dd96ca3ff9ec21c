"""Verified, atomic file copies (the POSIX transfertool's work, free of Rucio imports)."""

from __future__ import annotations

import os
import uuid
import zlib
from pathlib import Path

_BUFFER = 4 * 2**20


def copy_verified(
    source: Path, destination: Path, *, expected_bytes: int | None, expected_adler32: str | None
) -> None:
    """Copy ``source`` to ``destination`` atomically, verifying size and adler32.

    Raises
    ------
    OSError
        If the source cannot be read or the destination written, with the path in the text.
    ValueError
        If the copied bytes do not match the expected size or checksum; nothing is left at
        ``destination``.

    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.part")
    checksum = 1
    size = 0
    try:
        with source.open("rb") as src, partial.open("wb") as dst:
            while block := src.read(_BUFFER):
                checksum = zlib.adler32(block, checksum)
                size += len(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        adler = f"{checksum & 0xFFFFFFFF:08x}"
        if expected_bytes is not None and size != expected_bytes:
            raise ValueError(
                f"size mismatch copying {source}: {size} bytes read, "
                f"catalogue says {expected_bytes}"
            )
        if expected_adler32 and adler != expected_adler32.lower().zfill(8):
            raise ValueError(
                f"checksum mismatch copying {source}: adler32 {adler}, "
                f"catalogue says {expected_adler32}"
            )
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
