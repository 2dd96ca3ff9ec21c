"""What the embedded lake changes in Rucio so that it works on SQLite at 100,000 files.

Rucio supports PostgreSQL, Oracle and MySQL in production; SQLite is for its tests. Two
of its habits break on SQLite at the embedded lake's scale, and are adapted here, only
when the catalogue is SQLite, in the embedded lake's own processes:

- **OR-chains of 1,000 terms** (``rucio.core.request.queue_requests`` looks up existing
  requests 1,000 files at a time): SQLite refuses expressions deeper than 1,000
  ("Expression tree is too large"), so a rule needing more than ~250 transfers failed.
  Rucio's ``chunks`` helper, as that module uses it, is capped at 200 items. Hermes
  deletes the notifications it delivered the same way (``rucio.core.message.
  delete_messages``, one OR-chain per bulk of 1,000): that failed on every cycle, so the
  same 1,000 notifications were delivered again every second; it is called 200 at a time.
- **Read-then-write transactions** (server only): in WAL mode a write transaction that
  began by reading fails at once with "database is locked" when another connection
  commits meanwhile; the busy timeout does not apply. The server's writing sessions
  (``db_session(DatabaseOperationType.WRITE)``) start with ``BEGIN IMMEDIATE`` instead,
  so they queue for the lock. Reading sessions are untouched (WAL readers never wait).
- **Replica look-ups that scan every replica**: ``list_replicas`` joins the DIDs asked
  for (a temporary table) to a sub-query of *all* replicas joined with their storage
  elements. SQLite cannot flatten a join sub-query on the right of a ``LEFT JOIN``, so it
  materialises it: every replica of the lake, for each call (1.5 s for 4 files among
  110,000). The server narrows that sub-query to the DIDs of the temporary table
  (:func:`narrow_replica_lookups`), so SQLite reads them through the replicas' primary
  key (11 ms for 100 files). The answer is the same: the outer join keeps only those
  DIDs anyway.
- **Temporary tables the planner knows nothing about**: Rucio puts the DIDs (or ids) a
  request names in a temporary table and joins it to the catalogue (``FROM
  "TEMPORARY_SCOPE_NAME_0" JOIN dids ON ...``). Temporary tables have no statistics, so
  SQLite guesses them a million rows long and, to join them, builds a Bloom filter over
  the whole ``dids`` table (110,000 rows, 12-50 ms) for a request about one file.
  :func:`temporary_table_statistics` gives each of Rucio's temporary tables, when it is
  created on a connection, the statistics of a short table (``temp.sqlite_stat1``): the
  planner then walks the temporary table and searches the catalogue by primary key
  (< 0.1 ms). The rows are the same.

- **No planner statistics**: without ``sqlite_stat1`` SQLite guesses that every index is
  selective. The conveyor-submitter's look-up of the source replicas of 1,000 queued
  requests (``rucio.core.request.list_and_mark_transfer_requests_and_source_replicas``)
  then walked ``REPLICAS_STATE_IDX`` (state = available: nearly every one of the
  110,000 replicas) once per request instead of the primary key (scope, name): 186-267 s
  per 1,000 requests, the bottleneck of a 10,000-file make-available. :func:`analyze`
  (``ANALYZE``, under a second) gives the planner the figures; the bootstrap runs it at
  every start, after seeding. PostgreSQL keeps its own statistics (autovacuum).

- **A disk flush per commit**: SQLite's default ``synchronous = FULL`` flushes the WAL at
  every commit, and Rucio commits once per request at each step (submitter, poller,
  finisher), all behind one write lock. :func:`normal_sync` sets ``synchronous =
  NORMAL`` on every connection of the server and the daemons: in WAL mode a crash then
  loses the last commits at most, never the catalogue's consistency, the same trade as
  the PostgreSQL cluster's ``synchronous_commit = off``.

Nothing here runs against other databases, nor in the portal's client.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

SQLITE_CHUNK = 200


def is_sqlite() -> bool:
    """Whether Rucio's catalogue (``[database] default`` of ``rucio.cfg``) is SQLite."""
    from rucio.common.config import config_get

    return str(config_get("database", "default", check_config_table=False)).startswith("sqlite")


def cap_or_chains() -> None:
    """Cap the size of Rucio's OR-chained look-ups and deletes (see the module's docstring).

    Must run before hermes is imported: it imports ``delete_messages`` by name.
    """
    if not is_sqlite():
        return
    from rucio.core import request

    rucio_chunks = request.chunks

    def small_chunks(items: Iterable[Any], n: int) -> Iterator[Any]:
        return iter(rucio_chunks(items, min(n, SQLITE_CHUNK)))

    request.chunks = small_chunks

    from rucio.core import message

    rucio_delete_messages = message.delete_messages

    def delete_messages(messages: list[Any], *args: Any, **kwargs: Any) -> None:
        for start in range(0, len(messages), SQLITE_CHUNK):
            rucio_delete_messages(messages[start : start + SQLITE_CHUNK], *args, **kwargs)

    message.delete_messages = delete_messages


def immediate_write_sessions() -> None:
    """Make the server's writing sessions take the write lock first (see the docstring).

    Must run before Rucio's REST handlers are imported: they import ``db_session`` by name.
    """
    if not is_sqlite():
        return
    from rucio.db.sqla import session as rucio_session
    from rucio.db.sqla.constants import DatabaseOperationType

    rucio_db_session = rucio_session.db_session

    @contextlib.contextmanager
    def db_session(operation: DatabaseOperationType) -> Iterator[Any]:
        with rucio_db_session(operation) as session:
            if operation is DatabaseOperationType.WRITE:
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    rucio_session.db_session = db_session


def immediate_reaper_marking() -> None:
    """Make the reaper's marking of replicas take the write lock first.

    ``rucio.core.replica.list_and_mark_unlocked_replicas`` reads the replicas to delete,
    then marks them, in one transaction; while other daemons write, that upgrade fails
    with "database is locked" on every cycle and nothing expired is ever deleted. Only
    this function is changed (making every transaction immediate deadlocks on Rucio's
    nested sessions). Must run before the reaper is imported: it imports the function by
    name.
    """
    if not is_sqlite():
        return
    from rucio.core import replica
    from rucio.db.sqla.session import transactional_session

    rucio_function = replica.list_and_mark_unlocked_replicas
    raw = rucio_function.__wrapped__

    def begin_immediately(*args: Any, session: Any, **kwargs: Any) -> Any:
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        return raw(*args, session=session, **kwargs)

    immediate = transactional_session(begin_immediately)

    def list_and_mark_unlocked_replicas(*args: Any, session: Any = None, **kwargs: Any) -> Any:
        if session is not None:
            return rucio_function(*args, session=session, **kwargs)
        return immediate(*args, **kwargs)

    replica.list_and_mark_unlocked_replicas = list_and_mark_unlocked_replicas


#: Rucio's sub-query of all replicas joined to the DIDs of a temporary table
#: (``rucio.core.replica.list_replicas``), as SQLAlchemy renders it for SQLite.
_REPLICAS_SUBQUERY = re.compile(
    r"JOIN \((?P<select>SELECT replicas\.scope AS scope, replicas\.name AS name, [^()]*?"
    r"FROM replicas JOIN rses ON replicas\.rse_id = rses\.id AND rses\.deleted = 0)"
    r"(?P<where>\s+WHERE [^()]*?)?\) AS (?P<alias>anon_\d+) "
    r"ON (?P=alias)\.scope = (?P<table>\"TEMPORARY_SCOPE_NAME_\d+\")\.scope "
    r"AND (?P=alias)\.name = (?P=table)\.name"
)


def _narrowed(match: re.Match[str]) -> str:
    table = match["table"]
    narrow = f"(replicas.scope, replicas.name) IN (SELECT scope, name FROM {table})"
    where = f"{match['where']} AND {narrow}" if match["where"] else f" WHERE {narrow}"
    return (
        f"JOIN ({match['select']}{where}) AS {match['alias']} "
        f"ON {match['alias']}.scope = {table}.scope AND {match['alias']}.name = {table}.name"
    )


def narrow_sql(statement: str) -> str:
    """``statement`` with Rucio's all-replicas sub-query narrowed (see the docstring)."""
    if "TEMPORARY_SCOPE_NAME_" not in statement or "FROM replicas JOIN rses" not in statement:
        return statement
    return _REPLICAS_SUBQUERY.sub(_narrowed, statement)


def narrow_replica_lookups() -> None:
    """Narrow ``list_replicas``' sub-query to the DIDs asked for (server, SQLite only)."""
    if not is_sqlite():
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def rewrite(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        return narrow_sql(statement), parameters

    event.listen(Engine, "before_cursor_execute", rewrite, retval=True)


#: The statistics given to Rucio's temporary tables: a short table, its primary key unique.
TEMPORARY_ROWS = 10


def temporary_table_statistics() -> None:
    """Give Rucio's temporary tables the statistics of short tables (server, daemons; SQLite)."""
    if not is_sqlite():
        return
    from rucio.db.sqla import util

    create = util._create_temp_table
    if getattr(create, "_escape_portal", False):
        return

    def _create_temp_table(name: str, *columns: Any, **kwargs: Any) -> Any:
        table = create(name, *columns, **kwargs)
        session = kwargs.get("session")
        if session is not None and session.bind.dialect.name == "sqlite":
            _describe_temporary(session, name, len(kwargs.get("primary_key") or columns[:1]))
        return table

    _create_temp_table._escape_portal = True  # type: ignore[attr-defined]
    util._create_temp_table = _create_temp_table


def _describe_temporary(session: Any, name: str, key_columns: int) -> None:
    """Statistics for temporary table ``name`` in this session's transaction.

    Asked at every creation: Rucio's reading sessions end with a rollback, which takes
    back the statistics' rows (and the table) with the rest of the transaction.
    """
    from sqlalchemy import text

    has_stats = session.execute(
        text("SELECT 1 FROM temp.sqlite_schema WHERE name = 'sqlite_stat1'")
    ).first()
    if (
        has_stats
        and session.execute(
            text("SELECT 1 FROM temp.sqlite_stat1 WHERE tbl = :t"), {"t": name}
        ).first()
    ):
        return
    if not has_stats:
        session.execute(text("ANALYZE temp"))  # creates temp.sqlite_stat1
    # "TEMPORARY_ROWS rows, one per key"; ANALYZE sqlite_schema makes the planner read it.
    stat = " ".join([str(TEMPORARY_ROWS)] + ["1"] * key_columns)
    session.execute(text("DELETE FROM temp.sqlite_stat1 WHERE tbl = :t"), {"t": name})
    session.execute(
        text("INSERT INTO temp.sqlite_stat1 (tbl, idx, stat) VALUES (:t, :i, :s)"),
        {"t": name, "i": f"sqlite_autoindex_{name}_1", "s": stat},
    )
    session.execute(text("ANALYZE temp.sqlite_schema"))


def normal_sync() -> None:
    """``PRAGMA synchronous = NORMAL`` on each new SQLite connection (see the docstring)."""
    if not is_sqlite():
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    if not event.contains(Engine, "connect", on_connect):
        event.listen(Engine, "connect", on_connect)


def analyze() -> bool:
    """Give SQLite's planner its statistics (``ANALYZE``); whether the catalogue is SQLite."""
    if not is_sqlite():
        return False
    from rucio.db.sqla.session import get_session
    from sqlalchemy import text

    session = get_session()
    try:
        session.execute(text("ANALYZE"))
        session.commit()
    finally:
        session.remove()
    return True
