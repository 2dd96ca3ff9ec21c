"""The SQLite adaptation that narrows Rucio's replica look-ups returns the same rows."""

from __future__ import annotations

import sqlite3

from escape_portal.embedded.sqlite_compat import narrow_sql

#: ``rucio.core.replica.list_replicas`` for two file DIDs, as Rucio 41.5.1 renders it for
#: SQLite (logged by SQLAlchemy; bound parameters inlined).
FILES_QUERY = """SELECT "TEMPORARY_SCOPE_NAME_0".scope AS scope, "TEMPORARY_SCOPE_NAME_0".name AS name, NULL AS archive_scope, NULL AS archive_name, dids.bytes, dids.md5, dids.adler32, anon_1.path, anon_1.state, anon_1.rse_id, anon_1.rse_name, anon_1.rse_type, anon_1.volatile 
FROM "TEMPORARY_SCOPE_NAME_0" JOIN dids ON dids.scope = "TEMPORARY_SCOPE_NAME_0".scope AND dids.name = "TEMPORARY_SCOPE_NAME_0".name AND dids.did_type = 'F' LEFT OUTER JOIN (SELECT replicas.scope AS scope, replicas.name AS name, replicas.path AS path, replicas.state AS state, replicas.bytes AS bytes, replicas.md5 AS md5, replicas.adler32 AS adler32, rses.id AS rse_id, rses.rse AS rse_name, rses.rse_type AS rse_type, rses.volatile AS volatile 
FROM replicas JOIN rses ON replicas.rse_id = rses.id AND rses.deleted = 0) AS anon_1 ON anon_1.scope = "TEMPORARY_SCOPE_NAME_0".scope AND anon_1.name = "TEMPORARY_SCOPE_NAME_0".name ORDER BY scope, name"""  # noqa: E501, W291


#: The same for available replicas only (``all_states=False``, what a read asks): Rucio
#: puts the state's condition on a line of its own.
AVAILABLE_QUERY = FILES_QUERY.replace(
    "AND rses.deleted = 0) AS anon_1",
    "AND rses.deleted = 0 \nWHERE replicas.state = 'A') AS anon_1",
)


def _catalogue() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(
        """
        CREATE TABLE dids (scope, name, bytes, md5, adler32, did_type, PRIMARY KEY (scope, name));
        CREATE TABLE rses (id, rse, rse_type, volatile, deleted);
        CREATE TABLE replicas (scope, name, rse_id, path, state, bytes, md5, adler32,
                               PRIMARY KEY (scope, name, rse_id));
        CREATE TEMP TABLE "TEMPORARY_SCOPE_NAME_0" (scope, name, PRIMARY KEY (scope, name));
        INSERT INTO rses VALUES ('r1', 'A-DISK', 'DISK', 0, 0), ('r2', 'B-DISK', 'DISK', 0, 0),
                                ('r3', 'GONE', 'DISK', 0, 1);
        """
    )
    for i in range(50):
        db.execute("INSERT INTO dids VALUES ('s', ?, 10, NULL, 'x', 'F')", (f"f{i}",))
        for rse in ("r1", "r2", "r3")[: 1 + i % 3]:
            db.execute(
                "INSERT INTO replicas VALUES ('s', ?, ?, NULL, 'A', 10, NULL, 'x')", (f"f{i}", rse)
            )
    db.execute("INSERT INTO dids VALUES ('s', 'no-replica', 1, NULL, 'x', 'F')")
    db.executemany(
        'INSERT INTO "TEMPORARY_SCOPE_NAME_0" VALUES (?, ?)',
        [("s", "f1"), ("s", "f2"), ("s", "f30"), ("s", "no-replica")],
    )
    return db


def test_the_file_lookup_is_narrowed_to_the_dids_asked_for() -> None:
    narrowed = narrow_sql(FILES_QUERY)
    assert narrowed != FILES_QUERY
    table = '"TEMPORARY_SCOPE_NAME_0"'
    narrowing = f"WHERE (replicas.scope, replicas.name) IN (SELECT scope, name FROM {table}))"
    assert narrowing in narrowed


def test_the_lookup_of_available_replicas_is_narrowed_too() -> None:
    narrowed = narrow_sql(AVAILABLE_QUERY)
    table = '"TEMPORARY_SCOPE_NAME_0"'
    narrowing = (
        f"WHERE replicas.state = 'A' AND (replicas.scope, replicas.name) IN "
        f"(SELECT scope, name FROM {table}))"
    )
    assert narrowing in narrowed
    db = _catalogue()
    assert db.execute(narrowed).fetchall() == db.execute(AVAILABLE_QUERY).fetchall()


def test_the_narrowed_lookup_answers_the_same_rows() -> None:
    db = _catalogue()
    plain = db.execute(FILES_QUERY).fetchall()
    narrowed = db.execute(narrow_sql(FILES_QUERY)).fetchall()
    assert narrowed == plain
    assert ("s", "no-replica") in {(row[0], row[1]) for row in narrowed}  # kept by the outer join
    assert len(plain) == 2 + 2 + 1 + 1  # f1 at 2 RSEs, f2 at 2 (its third deleted), f30, none


def test_other_statements_are_left_alone() -> None:
    statement = "SELECT replicas.scope FROM replicas JOIN rses ON replicas.rse_id = rses.id"
    assert narrow_sql(statement) == statement
