import zlib
from collections.abc import Callable
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


def test_adler32_combine_matches_zlib_over_the_whole() -> None:
    from escape_portal.integrity import adler32_combine

    pieces = [b"", b"a", bytes(range(256)) * 300, b"\xff" * 65521, b"\xff" * 65522, b"z" * 7]
    for first in pieces:
        for second in pieces:
            combined = adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
            assert combined == zlib.adler32(first + second)


def _ranges_of(data: bytes, calls: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    def read_range(start: int, end: int) -> bytes:
        calls.append((start, end))
        return data[start:end]

    return read_range


def test_write_ranges_verified_writes_in_parallel_and_checks(tmp_path: Path) -> None:
    from escape_portal.integrity import write_ranges_verified

    data = bytes(range(251)) * 40_000 + b"tail"  # not a multiple of the block
    calls: list[tuple[int, int]] = []
    seen: list[int] = []
    dst = tmp_path / "cache" / "f.fits"
    write_ranges_verified(
        _ranges_of(data, calls),
        len(data),
        dst,
        expected_bytes=len(data),
        expected_adler32=_adler(data),
        on_bytes=seen.append,
        block=1_000_000,
        in_flight=4,
    )
    assert dst.read_bytes() == data
    assert sum(seen) == len(data)
    assert sorted(calls)[-1][1] == len(data) and len(calls) == 11
    assert [p.name for p in dst.parent.iterdir()] == ["f.fits"]


def test_write_ranges_verified_refuses_corrupt_and_short_sources(tmp_path: Path) -> None:
    from escape_portal.integrity import write_ranges_verified

    data = b"0123456789" * 100_000
    corrupt = data[:500_000] + b"X" + data[500_001:]
    dst = tmp_path / "out" / "f"
    with pytest.raises(ValueError, match="checksum mismatch"):
        write_ranges_verified(
            _ranges_of(corrupt, []),
            len(data),
            dst,
            expected_bytes=len(data),
            expected_adler32=_adler(data),
            block=300_000,
        )
    short = data[:-10]  # the source ends before the size it gave
    with pytest.raises(ValueError, match="size mismatch"):
        write_ranges_verified(
            _ranges_of(short, []),
            len(data),
            dst,
            expected_bytes=len(data),
            expected_adler32=_adler(data),
            block=300_000,
        )
    with pytest.raises(ValueError, match="size mismatch"):  # the catalogue's size differs
        write_ranges_verified(
            _ranges_of(data, []),
            len(data),
            dst,
            expected_bytes=len(data) + 1,
            expected_adler32=None,
        )

    def broken(start: int, end: int) -> bytes:
        if start > 0:
            raise OSError("storage went away")
        return data[start:end]

    with pytest.raises(OSError, match="went away"):
        write_ranges_verified(
            broken, len(data), dst, expected_bytes=len(data), expected_adler32=None, block=300_000
        )
    assert list(dst.parent.iterdir()) == []
