"""The embedded lake's catalogue database: SQLite (a file) or a private PostgreSQL cluster.

The choice is made by ``escape-portal lake up --database sqlite|postgresql`` and remembered
in ``DATA_DIR/db/database.json``, so later starts of the same data directory keep it. A
new data directory gets :data:`DEFAULT` (SQLite: see its comment); a data directory
seeded before the choice existed stays SQLite.

PostgreSQL runs as one part of the lake (process ``database``), from the Debian
binaries (``/usr/lib/postgresql/<version>/bin``):

- the cluster is made by ``initdb`` in ``DATA_DIR/db/postgres``, owned by the user it
  runs as: PostgreSQL refuses to run as root, so when the lake runs as root the cluster
  belongs to the unprivileged ``postgres`` system user (Debian's package creates it) and
  ``python -m escape_portal.embedded.database serve DATA_DIR`` drops to that user before
  it becomes ``postgres``. That user must be able to traverse every folder above the data
  directory; :func:`check_reachable` says which folder to open if not.
- it listens on no TCP port at all (``listen_addresses = ''``), only on a Unix socket in
  its own folder (mode 0700, so only its owner and root reach it);
- passwords (SCRAM) for its superuser ``postgres`` and Rucio's role ``rucio`` (owner of
  database ``rucio``) are generated once into ``DATA_DIR/db/postgres-secrets.json``
  (mode 0600); Rucio's URL, with the password, goes to ``rucio.cfg`` (mode 0600);
- it is tuned for a small demo machine: see :data:`SETTINGS`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from escape_portal.embedded.layout import LakePaths

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
CHOICES = (SQLITE, POSTGRESQL)
#: The catalogue of a new data directory. PostgreSQL ran the 10,000-file make-available
#: several times faster and runs Rucio unpatched, but seeded the 110,000 sample files
#: 2.7 times slower (docs/embedded-lake.md, "Catalogue database"), and every demo, Binder
#: session and CI run pays the seeding: SQLite stays the default until the seeding on
#: PostgreSQL is tuned and both are measured on a quiet machine.
DEFAULT = SQLITE
#: Debian's unprivileged PostgreSQL user; the cluster's owner when the lake runs as root.
SYSTEM_USER = "postgres"
ROLE = "rucio"
DATABASE = "rucio"
#: The socket's name is ``.s.PGSQL.<port>``; no TCP port is opened.
SOCKET_PORT = 5432
READY_TIMEOUT = 60.0

#: Server settings for a small demo machine (2 cores, a few GB), given on the command line.
SETTINGS = {
    "listen_addresses": "",  # no TCP at all: the Unix socket in the cluster's folder only
    "port": str(SOCKET_PORT),
    # The default; the operating system's page cache holds the rest of a demo catalogue.
    "shared_buffers": "128MB",
    "work_mem": "8MB",
    "maintenance_work_mem": "64MB",
    # Rucio's server (2 workers x pool 30) and daemons (pool 30) and the bootstrap.
    "max_connections": "150",
    # A commit returns before its WAL reaches the disk: a crash loses the last fraction of
    # a second of demo work, never the cluster's consistency (unlike fsync = off).
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    # JIT compiling costs more than it saves on a catalogue of this size.
    "jit": "off",
    "log_min_messages": "warning",
    "log_min_duration_statement": "-1",
}


class DatabaseError(RuntimeError):
    """The catalogue's database cannot be made or started; the message says what to do."""


def choose(
    paths: LakePaths, requested: str | None, note: Callable[[str], None] = lambda _: None
) -> str:
    """The catalogue database of this data directory; remember a new choice.

    Parameters
    ----------
    paths
        The lake's layout.
    requested
        ``sqlite``, ``postgresql`` or ``None`` (keep the remembered one, else
        :data:`DEFAULT` if it is usable here, else SQLite).
    note
        Told why a new data directory falls back to SQLite.

    Raises
    ------
    DatabaseError
        If the data directory's catalogue already lives in the other database.

    """
    remembered = _remembered(paths)
    if requested is not None and requested not in CHOICES:
        raise DatabaseError(f"Unknown catalogue database {requested!r}; choose one of {CHOICES}.")
    if remembered is None and paths.seed_marker.exists():
        remembered = SQLITE  # made before the choice existed
    if requested and remembered and requested != remembered:
        raise DatabaseError(
            f"The catalogue of {paths.root} is in {remembered}; to use {requested}, "
            "choose another data directory (--data-dir) or delete this one."
        )
    chosen = requested or remembered or DEFAULT
    if chosen == POSTGRESQL and not requested and not remembered:
        reason = unusable_reason(paths)
        if reason:
            note(f"catalogue in SQLite: {reason}")
            chosen = SQLITE
    if chosen != remembered:
        paths.db.parent.mkdir(parents=True, exist_ok=True)
        _choice_file(paths).write_text(json.dumps({"database": chosen}) + "\n")
    return chosen


def remembered(paths: LakePaths) -> str | None:
    """The data directory's catalogue database (``None`` if none was chosen yet)."""
    return _remembered(paths)


def unusable_reason(paths: LakePaths) -> str | None:
    """Why PostgreSQL cannot hold this data directory's catalogue here (``None``: it can)."""
    try:
        bin_dir()
        check_reachable(paths)
    except DatabaseError as exc:
        return str(exc)
    return None


def _remembered(paths: LakePaths) -> str | None:
    try:
        value = json.loads(_choice_file(paths).read_text()).get("database")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return str(value) if value in CHOICES else None


def _choice_file(paths: LakePaths) -> Path:
    return paths.db.parent / "database.json"


# -- the PostgreSQL cluster -----------------------------------------------------------------


def cluster_dir(paths: LakePaths) -> Path:
    """The PostgreSQL cluster's folder (its data and its socket)."""
    return paths.db.parent / "postgres"


def _secrets_file(paths: LakePaths) -> Path:
    return paths.db.parent / "postgres-secrets.json"


def bin_dir() -> Path:
    """Folder of the newest installed Debian PostgreSQL server binaries."""
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise DatabaseError(
            "PostgreSQL is not installed; install it (Debian: apt-get install postgresql) "
            "or run scripts/setup.sh, or start the lake with --database sqlite."
        )
    return candidates[-1]


def _owner() -> pwd.struct_passwd:
    """The user the cluster belongs to and runs as: ours, or ``postgres`` if we are root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise DatabaseError(
            "PostgreSQL refuses to run as root and the 'postgres' user does not exist; "
            "install Debian's postgresql package or run the lake as another user."
        ) from exc


def check_reachable(paths: LakePaths) -> None:
    """Check that the cluster's owner can traverse every folder down to the data directory.

    Raises
    ------
    DatabaseError
        Naming the first folder it cannot enter and the ``chmod`` that fixes it.

    """
    owner = _owner()
    if owner.pw_uid == os.geteuid():
        return
    paths.db.parent.mkdir(parents=True, exist_ok=True)
    groups = {owner.pw_gid} | set(os.getgrouplist(owner.pw_name, owner.pw_gid))
    folder = paths.db.parent
    for candidate in [folder, *folder.parents]:
        info = candidate.stat()
        if info.st_uid == owner.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid in groups:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            raise DatabaseError(
                f"PostgreSQL runs as user '{owner.pw_name}', who cannot enter {candidate}; "
                f"allow it (chmod o+x {candidate}) or choose a data directory it can reach."
            )


def _passwords(paths: LakePaths) -> dict[str, str]:
    """The superuser's and Rucio's passwords, generated once (file mode 0600)."""
    path = _secrets_file(paths)
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        saved: dict[str, str] = json.loads(path.read_text())
        if {"postgres", ROLE} <= saved.keys():
            return saved
    passwords = {"postgres": secrets.token_urlsafe(24), ROLE: secrets.token_urlsafe(24)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(passwords, handle)
    return passwords


def _run_as_owner(argv: list[str], log: Path) -> None:
    owner = _owner()
    drop: dict[str, object] = {}
    if owner.pw_uid != os.geteuid():
        drop = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    with log.open("ab") as handle:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd="/",
            check=False,
            timeout=300,
            **drop,  # type: ignore[call-overload]
        )
    if result.returncode != 0:
        raise DatabaseError(f"{Path(argv[0]).name} failed; see {log}.")


def ensure_cluster(paths: LakePaths, log: Path) -> None:
    """Make the cluster with ``initdb`` unless it exists (idempotent)."""
    folder = cluster_dir(paths)
    if (folder / "PG_VERSION").exists():
        return
    socket = folder / f".s.PGSQL.{SOCKET_PORT}"
    if len(str(socket)) > 100:  # the kernel's limit for a Unix socket's path is 107 bytes
        raise DatabaseError(
            f"The data directory's path is too long for PostgreSQL's socket ({socket}); "
            "choose a shorter --data-dir."
        )
    check_reachable(paths)
    owner = _owner()
    passwords = _passwords(paths)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    pwfile = paths.db.parent / f".initdb-{os.getpid()}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(passwords["postgres"] + "\n")
    os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    try:
        _run_as_owner(
            [
                str(bin_dir() / "initdb"),
                "--pgdata",
                str(folder),
                "--username",
                "postgres",
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-instructions",
            ],
            log,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def command(paths: LakePaths) -> list[str]:
    """The argv of the ``database`` part: drops to the cluster's owner, then ``postgres``."""
    return [sys.executable, "-m", "escape_portal.embedded.database", "serve", str(paths.root)]


def _postgres_argv(paths: LakePaths) -> list[str]:
    settings = {**SETTINGS, "unix_socket_directories": str(cluster_dir(paths))}
    argv = [str(bin_dir() / "postgres"), "-D", str(cluster_dir(paths))]
    for name, value in settings.items():
        argv += ["-c", f"{name}={value}"]
    return argv


def serve(paths: LakePaths) -> None:
    """Become the cluster's owner and exec ``postgres`` (the supervisor's pid stays valid)."""
    owner = _owner()
    argv = _postgres_argv(paths)
    if owner.pw_uid != os.geteuid():
        os.setgroups([])
        os.setgid(owner.pw_gid)
        os.setuid(owner.pw_uid)
    os.environ["HOME"] = owner.pw_dir
    os.chdir(cluster_dir(paths))
    os.execv(argv[0], argv)


def url(paths: LakePaths, *, role: str = ROLE, database: str = DATABASE) -> str:
    """SQLAlchemy URL of the catalogue (psycopg 3, over the cluster's Unix socket).

    Nothing is %-escaped: Rucio reads ``rucio.cfg`` with interpolation, where ``%`` is
    special; the generated password is URL-safe and a path is valid in a query string.
    """
    password = _passwords(paths)[role]
    host = str(cluster_dir(paths))
    if "%" in host or "&" in host or "?" in host:
        raise DatabaseError(f"Choose a data directory without '%', '&' or '?': {paths.root}.")
    return f"postgresql+psycopg://{role}:{password}@/{database}?host={host}&port={SOCKET_PORT}"


def _connect(paths: LakePaths, role: str, database: str) -> object:
    import psycopg

    return psycopg.connect(
        host=str(cluster_dir(paths)),
        port=SOCKET_PORT,
        user=role,
        password=_passwords(paths)[role],
        dbname=database,
        connect_timeout=5,
        autocommit=True,
    )


def ready(paths: LakePaths) -> bool:
    """Whether the cluster accepts connections; makes Rucio's role and database if missing."""
    import psycopg
    from psycopg import sql

    try:
        connection = _connect(paths, "postgres", "postgres")
    except psycopg.OperationalError:
        return False
    with connection as conn:  # type: ignore[attr-defined]
        password = _passwords(paths)[ROLE]
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(password)
                )
            )
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(ROLE)
                )
            )
    return True


def main(argv: list[str] | None = None) -> int:
    """``serve DATA_DIR``: run the data directory's cluster (used by the supervisor)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "serve":
        print("usage: python -m escape_portal.embedded.database serve DATA_DIR", file=sys.stderr)
        return 2
    serve(LakePaths(Path(args[1]).resolve()))
    return 0  # not reached: serve execs postgres


if __name__ == "__main__":
    raise SystemExit(main())
