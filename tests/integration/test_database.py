"""The embedded lake on its own PostgreSQL cluster (``lake up --database postgresql``).

See docs/embedded-lake.md, "Catalogue database". A lake of its own in a temporary folder,
unseeded, browsed and replicated through the real Rucio server and daemons, then stopped
by pid. (The shared test lake keeps whatever its data directory was made with.)
"""

from __future__ import annotations

import configparser
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from escape_portal.embedded import database
from escape_portal.embedded.fresh import fresh_dataset
from escape_portal.embedded.instance import operator_instance
from escape_portal.embedded.supervisor import EmbeddedLake, EmbeddedLakeError
from escape_portal.events import wait_for
from escape_portal.lake import Lake

pytestmark = [
    pytest.mark.lake,
    pytest.mark.skipif(
        not Path("/usr/lib/postgresql").is_dir(), reason="PostgreSQL is not installed"
    ),
]


@pytest.fixture(scope="module")
def pg_lake() -> Iterator[EmbeddedLake]:
    # Not pytest's tmp_path: its parents are mode 0700, which the ``postgres`` user that
    # the cluster runs as (when tests run as root) cannot traverse.
    folder = Path(tempfile.mkdtemp(prefix="pglake-", dir="/tmp"))
    folder.chmod(0o755)
    lake = EmbeddedLake(folder, database="postgresql")
    try:
        lake.up(seed=False)
        yield lake
    finally:
        lake.down()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def pg(pg_lake: EmbeddedLake) -> Lake:
    # The operator: the test registers a fresh dataset (replicas are root's to add).
    config = operator_instance({"ESCAPE_PORTAL_LAKE_DIR": str(pg_lake.paths.root)})
    assert config is not None
    return Lake(config)


def test_catalogue_is_postgresql_on_a_socket_only(pg_lake: EmbeddedLake) -> None:
    status = pg_lake.status()
    assert status.running
    assert status.components[0].name == "database"
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(pg_lake.paths.rucio_cfg)
    assert cfg["database"]["default"].startswith("postgresql+psycopg://rucio:")
    assert "metadata" not in cfg  # Rucio's own JSON metadata plugin, unpatched
    assert oct(pg_lake.paths.rucio_cfg.stat().st_mode & 0o777) == "0o600"
    import psycopg

    secrets = database._passwords(pg_lake.paths)
    with psycopg.connect(
        host=str(database.cluster_dir(pg_lake.paths)),
        port=database.SOCKET_PORT,
        user="rucio",
        password=secrets["rucio"],
        dbname="rucio",
        connect_timeout=5,
    ) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'dids'")
        assert tables.fetchone() == (1,)
    postmaster = Path(f"/proc/{pg_lake._pid('database')}/status").read_text()
    uid = int(next(line for line in postmaster.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid != 0  # PostgreSQL refuses root; it runs as the cluster's owner


def test_browse_and_rule_reaches_ok(pg: Lake) -> None:
    did = fresh_dataset(pg)  # three files at PIC-DISK, real bytes
    assert "user.escape" in pg.scopes()
    assert len(list(pg.files(did))) == 3
    pg.client.set_metadata(did.scope, did.name, "target", "M31")  # JSON plugin on PostgreSQL
    assert pg.metadata(did)["target"] == "M31"
    rule, _ = pg.add_rule(did, "CERN-DISK", lifetime=600)
    progress = wait_for(pg, rule.id, timeout=180)
    assert progress.state == "available", progress
    assert progress.files_done == progress.files_total == 3


def test_choice_is_remembered(pg_lake: EmbeddedLake) -> None:
    again = EmbeddedLake(pg_lake.paths.root)  # no --database: the remembered one
    assert again.components[0] == "database"
    with pytest.raises(EmbeddedLakeError, match="is in postgresql"):
        EmbeddedLake(pg_lake.paths.root, database="sqlite").up(seed=False)
    assert os.stat(database._secrets_file(pg_lake.paths)).st_mode & 0o077 == 0
