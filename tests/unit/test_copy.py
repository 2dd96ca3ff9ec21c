import zlib
from pathlib import Path

import pytest

from escape_portal.integrity import copy_verified


def _adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_copy_verified_copies_and_leaves_no_partial(tmp_path: Path) -> None:
    data = b"x" * 10_000_000
    src = tmp_path / "src.fits"
    src.write_bytes(data)
    dst = tmp_path / "rse" / "a" / "b" / "dst.fits"
    copy_verified(src, dst, expected_bytes=len(data), expected_adler32=_adler(data))
    assert dst.read_bytes() == data
    assert [p.name for p in dst.parent.iterdir()] == ["dst.fits"]


def test_checksum_mismatch_leaves_nothing_at_destination(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"corrupted bytes")
    dst = tmp_path / "out" / "dst"
    with pytest.raises(ValueError, match="checksum mismatch"):
        copy_verified(src, dst, expected_bytes=15, expected_adler32=_adler(b"original bytes!"))
    assert list(dst.parent.iterdir()) == []


def test_size_mismatch_and_missing_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    with pytest.raises(ValueError, match="size mismatch"):
        copy_verified(src, tmp_path / "d1", expected_bytes=4, expected_adler32=None)
    with pytest.raises(FileNotFoundError):
        copy_verified(
            tmp_path / "absent", tmp_path / "d2", expected_bytes=None, expected_adler32=None
        )
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()
