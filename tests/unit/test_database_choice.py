"""Which catalogue database a data directory gets, and that the choice sticks."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from escape_portal.embedded import database
from escape_portal.embedded.layout import LakePaths


def test_new_directory_gets_the_default() -> None:
    assert database.DEFAULT == database.SQLITE  # see its comment: seeding on PostgreSQL


def test_postgresql_when_asked_and_kept() -> None:
    # Not tmp_path: its parents are 0700, which the 'postgres' user cannot traverse.
    folder = Path(tempfile.mkdtemp(prefix="lake-choice-", dir="/tmp"))
    folder.chmod(0o755)
    paths = LakePaths(folder / "lake")
    if database.unusable_reason(paths):
        pytest.skip("PostgreSQL is not usable here")
    assert database.choose(paths, "postgresql") == database.POSTGRESQL
    assert database.choose(paths, None) == database.POSTGRESQL
    with pytest.raises(database.DatabaseError, match="is in postgresql"):
        database.choose(paths, "sqlite")
    shutil.rmtree(folder)


def test_explicit_sqlite_is_remembered(tmp_path: Path) -> None:
    paths = LakePaths(tmp_path / "lake")
    assert database.choose(paths, "sqlite") == database.SQLITE
    assert database.choose(paths, None) == database.SQLITE
    assert database.remembered(paths) == database.SQLITE


def test_directory_seeded_before_the_choice_stays_sqlite(tmp_path: Path) -> None:
    paths = LakePaths(tmp_path / "lake")
    paths.make()
    paths.seed_marker.write_text("{}")
    assert database.choose(paths, None) == database.SQLITE


@pytest.mark.skipif(os.geteuid() != 0, reason="the cluster runs as 'postgres' only for root")
def test_unreachable_directory_is_explained(tmp_path: Path) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    paths = LakePaths(hidden / "lake")
    reason = database.unusable_reason(paths)
    assert reason and "chmod o+x" in reason
    with pytest.raises(database.DatabaseError, match="cannot enter"):
        database.check_reachable(paths)
