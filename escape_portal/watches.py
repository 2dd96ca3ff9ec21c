"""Processing driven by the lake's events: run a function or a notebook on every new file.

A *watch* says "for every new file that appears in this dataset (or container, or scope,
or among a scope's files matching metadata filters), run this": a Python function of a
:class:`~escape_portal.analysis.LakeFile`, or a notebook executed with papermill with the
file as its parameter. It runs the work on the Dask cluster of
:mod:`escape_portal.analysis` (a ``LocalCluster`` by default, or the client you pass),
next to the replicas::

    from escape_portal import watches

    def spectrum(file):
        with file.fits() as hdus:
            return np.histogram(hdus["EVENTS"].data["ENERGY"], bins=edges)[0]

    watch = watches.watch(lake, "user.alice:crab-nightly", spectrum, name="spectra")
    watches.list_watches()        # or: escape-portal watch list
    watch.stop()                  # or: escape-portal watch stop spectra

**How new files are noticed.** Rucio's hermes publishes its events on the instance's
message broker. A watch follows them (:class:`~escape_portal.notifications.Subscription`)
and treats every event that concerns its target as a hint: a transfer into or out of the
watched dataset (the judge makes them when files are attached to a dataset that has
rules), a dataset created in a watched scope, a dataset attached to a watched container,
a rule on the target becoming OK. On a hint it lists the target's files from Rucio and
takes the ones it has not seen. Rucio does not announce every attachment (a file attached
to a dataset without rules elsewhere moves nothing), so a watch also lists the target
every ``fallback_interval`` seconds while the broker is connected, and every
``poll_interval`` seconds without one: notifications make it quick, polling makes it
complete.

**Each file once.** What a watch has seen and done is kept in a SQLite file
(:func:`default_store`; ``$ESCAPE_PORTAL_WATCHES``), with the watch's definition and its
function (pickled with cloudpickle). A file is marked *running* before its task is
submitted and *done* when its result came back; a failed task is retried with backoff
up to ``max_attempts`` times, then marked *failed* with its error and reported. When a
watch starts again under the same name — in a new notebook kernel, with
``escape-portal watch run NAME``, after a crash — it goes on where it stopped: done files
are not run again; a file whose task was running when the process died is run again
(there is no way to know whether it finished). Only one process runs a given watch at a
time (a lock file beside the store).

Files that were already in the target when the watch was created are recorded as
*existing* and not processed, unless ``include_existing=True``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from escape_portal.errors import InvalidRequest, LakeError, LakeUnavailable, NotFound
from escape_portal.lake import DID, FileInfo, Lake
from escape_portal.notifications import Notification, Subscription, follow

log = logging.getLogger(__name__)

#: States of a file in a watch.
STATES = ("existing", "new", "running", "retry", "done", "failed")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS watches (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    function BLOB NOT NULL,
    created REAL NOT NULL,
    stopped REAL
);
CREATE TABLE IF NOT EXISTS files (
    watch TEXT NOT NULL,
    did TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    seen REAL NOT NULL,
    finished REAL,
    next_try REAL,
    result TEXT,
    error TEXT,
    PRIMARY KEY (watch, did)
);
CREATE INDEX IF NOT EXISTS files_state ON files (watch, state);
"""


def default_store() -> Path:
    """``$ESCAPE_PORTAL_WATCHES``, else ``$XDG_STATE_HOME/escape-portal/watches.sqlite``."""
    if os.environ.get("ESCAPE_PORTAL_WATCHES"):
        return Path(os.environ["ESCAPE_PORTAL_WATCHES"]).expanduser()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "escape-portal" / "watches.sqlite"


# -- what is watched ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """What a watch follows: a dataset or container, or a scope's files (with filters).

    Attributes
    ----------
    scope
        The scope.
    name
        The dataset or container (``None``: every file of the scope).
    filters
        Metadata filters on the scope's files (``['run>100', 'target=Crab']``); only
        without ``name``.
    """

    scope: str
    name: str | None = None
    filters: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | DID, filters: Any = None) -> Target:
        """``scope:name`` (a dataset or container) or ``scope`` (its files), with filters."""
        wanted = tuple(str(f) for f in (filters or ()))
        if isinstance(text, DID):
            did = text
        elif ":" in str(text):
            did = DID.parse(str(text))
        else:
            DID.parse(f"{text}:x")  # validates the scope's spelling
            return cls(str(text), None, wanted)
        if wanted:
            raise InvalidRequest(
                f"Metadata filters select files of a scope, not of {did}.",
                f"Watch the scope ({did.scope}) with the filters, or the collection alone.",
            )
        return cls(did.scope, did.name, ())

    def __str__(self) -> str:
        text = self.scope if self.name is None else f"{self.scope}:{self.name}"
        return text + "".join(f" [{f}]" for f in self.filters)

    def files(self, lake: Lake) -> Iterator[FileInfo]:
        """The target's files now, from Rucio (one stream)."""
        if self.name is not None:
            info = lake.info(DID(self.scope, self.name))
            if info.type == "file":
                raise InvalidRequest(
                    f"{self} is a file; a watch follows a dataset, a container or a scope.",
                    "Name the dataset the files are attached to.",
                )
            return lake.files(DID(self.scope, self.name))
        found = lake.dids(self.scope, type="file", filters=list(self.filters) or None)
        return (FileInfo(d.scope, d.name, int(d.bytes or 0), None) for d in found)

    def concerns(self, notification: Notification, datasets: frozenset[str]) -> bool:
        """Whether a Rucio event may mean new files in the target.

        ``datasets`` are the ``scope:name`` of the datasets the target holds (for a
        container), from the last listing.
        """
        p = notification.payload
        pairs = {
            (p.get("scope"), p.get("name")),
            (p.get("datasetScope"), p.get("dataset")),
        }
        scopes = {p.get("scope"), p.get("datasetScope"), p.get("childscope")}
        if self.name is None:
            return self.scope in scopes
        me = (self.scope, self.name)
        return me in pairs or any(f"{s}:{n}" in datasets for s, n in pairs if s and n)


def _describe(function: Any) -> str:
    if isinstance(function, Notebook):
        return f"notebook {function.path}"
    module = getattr(function, "__module__", None) or "?"
    name = getattr(function, "__qualname__", None) or type(function).__name__
    return f"{module}.{name}"


@dataclasses.dataclass(frozen=True)
class Notebook:
    """Run a notebook for each file with papermill, parameterised with the file.

    The notebook's cell tagged ``parameters`` (papermill's convention) gets ``did``
    (``scope:name``), ``url`` (``rucio://scope/name``), ``instance`` and whatever
    ``parameters`` holds. Each run is saved as ``OUTPUT_DIR/<stem>-<file name>.ipynb`` when it
    has run to the end (a failed run as ``...failed.ipynb``).

    Parameters
    ----------
    path
        The notebook.
    output_dir
        Where executed copies go (default: ``<notebook folder>/<stem>-runs``).
    parameters
        More parameters, the same for every file.
    kernel
        The kernel to run it with (default: the notebook's own).
    timeout
        Seconds a cell may run.
    """

    path: str
    output_dir: str | None = None
    parameters: tuple[tuple[str, Any], ...] = ()
    kernel: str | None = None
    timeout: float = 600.0

    @classmethod
    def of(
        cls, path: str | Path, output_dir: str | Path | None = None, **parameters: Any
    ) -> Notebook:
        """A :class:`Notebook` task for ``path`` (absolute), with constant ``parameters``."""
        notebook = Path(path).expanduser().resolve()
        if not notebook.is_file():
            raise NotFound(f"There is no notebook {notebook}.", "Give the path of an .ipynb file.")
        out = Path(output_dir).expanduser().resolve() if output_dir else None
        return cls(str(notebook), str(out) if out else None, tuple(sorted(parameters.items())))

    def output_for(self, did: DID) -> Path:
        """Where the executed copy for ``did`` is saved."""
        notebook = Path(self.path)
        folder = (
            Path(self.output_dir)
            if self.output_dir
            else notebook.with_name(f"{notebook.stem}-runs")
        )
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", did.name)
        return folder / f"{notebook.stem}-{safe}.ipynb"

    def __call__(self, file: Any) -> str:
        """Execute the notebook for ``file`` (a ``LakeFile``); the saved copy's path."""
        import papermill

        out = self.output_for(file.did)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}.part.ipynb")
        parameters = {"did": str(file.did), "url": file.url, "instance": file.instance}
        parameters.update(dict(self.parameters))
        with open(self.path, encoding="utf-8") as handle:
            metadata = json.load(handle).get("metadata", {})
        spec = metadata.get("kernelspec") or {}
        # The notebook's own kernel and language, else the default Python kernel.
        kernel = self.kernel or spec.get("name") or "python3"
        language = spec.get("language") or (metadata.get("language_info") or {}).get("name")
        try:
            papermill.execute_notebook(
                self.path,
                str(partial),
                parameters=parameters,
                kernel_name=kernel,
                language=language or "python",
                progress_bar=False,
                log_output=False,
                execution_timeout=self.timeout,
                cwd=str(Path(self.path).parent),
            )
        except Exception:
            # A half-run notebook never looks complete; the failed run stays to be read.
            with contextlib.suppress(OSError):
                partial.replace(out.with_name(f"{out.stem}.failed.ipynb"))
            raise
        partial.replace(out)
        return str(out)


# -- the store ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WatchInfo:
    """What :func:`list_watches` says of one watch."""

    name: str
    instance: str
    target: str
    function: str
    #: ``running`` (a process runs it now), ``stopped`` (asked to stop) or ``idle``.
    state: str
    counts: dict[str, int]
    created: dt.datetime
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:  # noqa: D102
        data = dataclasses.asdict(self)
        data["created"] = self.created.isoformat()
        return data


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """One file a watch has seen."""

    did: str
    state: str
    attempts: int
    result: str | None
    error: str | None
    finished: float | None


class Store:
    """The SQLite file where watches keep their definition and what they processed.

    Parameters
    ----------
    path
        The file (default: :func:`default_store`); made with its folder, mode 0600.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        fresh = not self.path.exists()
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        if fresh:
            os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:  # noqa: D102
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def definition(self, name: str) -> tuple[dict[str, Any], bytes] | None:
        """The definition and pickled function of watch ``name`` (``None``: no such watch)."""
        rows = self._query("SELECT definition, function FROM watches WHERE name = ?", name)
        return (json.loads(rows[0][0]), bytes(rows[0][1])) if rows else None

    def define(self, name: str, definition: dict[str, Any], function: bytes) -> bool:
        """Create or update watch ``name`` (clears a stop); whether it is new."""
        with self._tx() as db:
            row = db.execute("SELECT 1 FROM watches WHERE name = ?", (name,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO watches VALUES (?, ?, ?, ?, NULL)",
                    (name, json.dumps(definition), function, time.time()),
                )
            else:
                db.execute(
                    "UPDATE watches SET definition = ?, function = ?, stopped = NULL "
                    "WHERE name = ?",
                    (json.dumps(definition), function, name),
                )
        return row is None

    def request_stop(self, name: str) -> bool:
        """Ask watch ``name`` to stop (its runner ends soon); whether it exists."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE watches SET stopped = ? WHERE name = ?", (time.time(), name)
            )
            return cursor.rowcount > 0

    def stop_requested(self, name: str) -> bool:  # noqa: D102
        rows = self._query("SELECT stopped FROM watches WHERE name = ?", name)
        return not rows or rows[0][0] is not None

    def remove(self, name: str) -> bool:
        """Forget watch ``name`` and what it processed; whether it existed."""
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE watch = ?", (name,))
            return db.execute("DELETE FROM watches WHERE name = ?", (name,)).rowcount > 0

    def names(self) -> list[str]:  # noqa: D102
        return [r[0] for r in self._query("SELECT name FROM watches ORDER BY name")]

    def counts(self, name: str) -> dict[str, int]:
        """Files per state."""
        rows = self._query("SELECT state, COUNT(*) FROM files WHERE watch = ? GROUP BY state", name)
        return {state: int(n) for state, n in rows}

    def last_error(self, name: str) -> str | None:  # noqa: D102
        rows = self._query(
            "SELECT did, error FROM files WHERE watch = ? AND error IS NOT NULL "
            "ORDER BY COALESCE(finished, seen) DESC LIMIT 1",
            name,
        )
        return f"{rows[0][0]}: {rows[0][1]}" if rows else None

    def seen(self, name: str) -> set[str]:  # noqa: D102
        return {r[0] for r in self._query("SELECT did FROM files WHERE watch = ?", name)}

    def add(self, name: str, dids: list[str], state: str) -> int:
        """Record ``dids`` not seen before in ``state``; how many were new."""
        now = time.time()
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO files (watch, did, state, seen) VALUES (?, ?, ?, ?)",
                [(name, did, state, now) for did in dids],
            )
            return db.total_changes - before

    def due(self, name: str, limit: int) -> list[str]:
        """Files to run now (new, or failed earlier and due for a retry), marked running."""
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT did FROM files WHERE watch = ? AND (state = 'new' OR "
                "(state = 'retry' AND next_try <= ?)) ORDER BY seen, did LIMIT ?",
                (name, now, limit),
            ).fetchall()
            dids = [r[0] for r in rows]
            db.executemany(
                "UPDATE files SET state = 'running', attempts = attempts + 1 "
                "WHERE watch = ? AND did = ?",
                [(name, did) for did in dids],
            )
        return dids

    def next_retry(self, name: str) -> float | None:  # noqa: D102
        rows = self._query(
            "SELECT MIN(next_try) FROM files WHERE watch = ? AND state = 'retry'", name
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def interrupted(self, name: str) -> int:
        """Files left running by a process that ended: run them again; how many."""
        with self._tx() as db:
            return db.execute(
                "UPDATE files SET state = 'new' WHERE watch = ? AND state = 'running'", (name,)
            ).rowcount

    def requeue(self, name: str, did: str) -> None:
        """Hand a running file out again, its attempt not counted (it did not run)."""
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state = 'new', attempts = MAX(attempts - 1, 0) "
                "WHERE watch = ? AND did = ? AND state = 'running'",
                (name, did),
            )

    def finish(self, name: str, did: str, result: str | None) -> None:  # noqa: D102
        with self._tx() as db:
            db.execute(
                "UPDATE files SET state = 'done', finished = ?, result = ?, error = NULL, "
                "next_try = NULL WHERE watch = ? AND did = ?",
                (time.time(), result, name, did),
            )

    def fail(self, name: str, did: str, error: str, max_attempts: int, backoff: float) -> str:
        """Record a failed run; ``retry`` (due again after a backoff) or ``failed``."""
        with self._tx() as db:
            row = db.execute(
                "SELECT attempts FROM files WHERE watch = ? AND did = ?", (name, did)
            ).fetchone()
            attempts = int(row[0]) if row else max_attempts
            state = "retry" if attempts < max_attempts else "failed"
            next_try = time.time() + backoff * 2 ** (attempts - 1) if state == "retry" else None
            db.execute(
                "UPDATE files SET state = ?, error = ?, finished = ?, next_try = ? "
                "WHERE watch = ? AND did = ?",
                (state, error, time.time(), next_try, name, did),
            )
        return state

    def records(self, name: str, state: str | None = None) -> list[FileRecord]:
        """The files of watch ``name`` (in ``state`` only, if given), oldest first."""
        sql = "SELECT did, state, attempts, result, error, finished FROM files WHERE watch = ?"
        args: list[Any] = [name]
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        return [FileRecord(*row) for row in self._query(sql + " ORDER BY seen, did", *args)]

    def lock_path(self, name: str) -> Path:  # noqa: D102
        return self.path.with_name(f"{self.path.name}.{name}.lock")

    def running(self, name: str) -> bool:
        """Whether some process runs watch ``name`` now (holds its lock)."""
        path = self.lock_path(name)
        if not path.exists():
            return False
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def info(self, name: str) -> WatchInfo:
        """What watch ``name`` is and has done."""
        rows = self._query("SELECT definition, created, stopped FROM watches WHERE name = ?", name)
        if not rows:
            raise NotFound(f"There is no watch named {name!r}.", "See escape-portal watch list.")
        definition = json.loads(rows[0][0])
        state = "running" if self.running(name) else ("stopped" if rows[0][2] else "idle")
        return WatchInfo(
            name=name,
            instance=definition["instance"],
            target=definition["target_text"],
            function=definition["function"],
            state=state,
            counts=self.counts(name),
            created=dt.datetime.fromtimestamp(rows[0][1], dt.UTC),
            last_error=self.last_error(name),
        )


def list_watches(store: Store | str | Path | None = None) -> list[WatchInfo]:
    """Every watch kept in ``store`` (default: :func:`default_store`), by name."""
    if not isinstance(store, Store) and not Path(store or default_store()).exists():
        return []  # nobody made a watch here yet: nothing to create
    with _opened(store) as s:
        return [s.info(name) for name in s.names()]


def stop(name: str, store: Store | str | Path | None = None) -> WatchInfo:
    """Stop watch ``name``, in this process or any other (within ``control_interval``).

    Its memory stays: starting it again under the same name goes on where it stopped.

    Raises
    ------
    NotFound
        If there is no such watch.
    """
    if not isinstance(store, Store) and not Path(store or default_store()).exists():
        raise NotFound(f"There is no watch named {name!r}.", "See escape-portal watch list.")
    with _opened(store) as s:
        if not s.request_stop(name):
            raise NotFound(f"There is no watch named {name!r}.", "See escape-portal watch list.")
        for watcher in list(_running.values()):
            if watcher.name == name and watcher.store.path == s.path:
                watcher.stop()
        return s.info(name)


def remove(name: str, store: Store | str | Path | None = None) -> None:
    """Stop watch ``name`` and forget it and what it processed."""
    with _opened(store) as s:
        if s.running(name):
            raise InvalidRequest(
                f"Watch {name!r} is running.", f"Stop it first: escape-portal watch stop {name}"
            )
        if not s.remove(name):
            raise NotFound(f"There is no watch named {name!r}.", "See escape-portal watch list.")


@contextlib.contextmanager
def _opened(store: Store | str | Path | None) -> Iterator[Store]:
    if isinstance(store, Store):
        yield store
        return
    opened = Store(store)
    try:
        yield opened
    finally:
        opened.close()


# -- running a watch ----------------------------------------------------------------------------

#: Watchers running in this process, by (store, name).
_running: dict[tuple[str, str], Watcher] = {}


class Watcher:
    """Runs one watch in a background thread (see the module's description).

    Made and started by :func:`watch` or :func:`resume`; the parameters are theirs.
    """

    def __init__(
        self,
        lake: Lake,
        name: str,
        target: Target,
        function: Callable[[Any], Any],
        *,
        store: Store,
        client: Any = None,
        max_attempts: int = 3,
        retry_backoff: float = 5.0,
        poll_interval: float = 30.0,
        fallback_interval: float = 300.0,
        control_interval: float = 2.0,
        min_gap: float = 1.0,
        batch: int = 500,
        notifications: Subscription | bool | None = None,
        on_result: Callable[[str, Any], None] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.lake = lake
        self.name = name
        self.target = target
        self.function = function
        self.store = store
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.poll_interval = poll_interval
        self.fallback_interval = fallback_interval
        self.control_interval = control_interval
        self.min_gap = min_gap
        self.batch = batch
        self.on_result = on_result
        self.on_failure = on_failure
        self.warnings: list[str] = []
        #: Listings of the target, by what prompted them (``start``, ``notification``, ``poll``).
        self.scans: dict[str, int] = {"start": 0, "notification": 0, "poll": 0}
        #: Files taken by the listing that each prompt started.
        self.found: dict[str, int] = {"start": 0, "notification": 0, "poll": 0}
        self._client = client
        self._session: Any = None
        self._notifications = notifications
        self._subscription: Subscription | None = None
        self._owns_subscription = False
        self._datasets: frozenset[str] = frozenset()
        self._listed: dict[str, FileInfo] = {}
        self._hinted = False
        self._in_flight: dict[str, Any] = {}
        self._flight_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._lock_file: IO[str] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"escape-portal-watch-{name}", daemon=True
        )

    # -- life ------------------------------------------------------------------------------

    def start(self) -> Watcher:
        """Take the watch's lock and start following; returns ``self``.

        Raises
        ------
        InvalidRequest
            If another process (or watcher) runs this watch now.
        """
        path = self.store.lock_path(self.name)
        handle = open(path, "a+")  # noqa: SIM115 - held while the watch runs
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise _runs_elsewhere(self.name) from None
        self._lock_file = handle
        try:
            resumed = self.store.interrupted(self.name)
            if resumed:
                log.info(
                    "escape-portal: watch %s runs %d interrupted files again", self.name, resumed
                )
            from escape_portal import analysis

            self._session = analysis.connect(self.lake, self._client)
            self._subscribe()
        except BaseException:
            self._lock_file = None
            handle.close()  # releases the lock
            raise
        _running[(str(self.store.path), self.name)] = self
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the watch (tasks already on the cluster finish; their results are kept).

        It stays stopped, here and for ``escape-portal watch list``, until started again
        (:func:`resume`, or :func:`watch` with its name).
        """
        if not self._stop.is_set() and self.running:
            self.store.request_stop(self.name)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    @property
    def running(self) -> bool:  # noqa: D102
        return self._thread.is_alive()

    @property
    def following_notifications(self) -> bool:
        """Whether new files are noticed through the broker now (else by polling alone)."""
        return self._subscription is not None and self._subscription.connected

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the watch has ended (stopped here or elsewhere); whether it did."""
        return self._finished.wait(timeout)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no file is waiting or running (retries due later count as waiting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.store.counts(self.name)
            if not any(counts.get(s) for s in ("new", "running", "retry")):
                return True
            time.sleep(0.1)
        return False

    def info(self) -> WatchInfo:  # noqa: D102
        return self.store.info(self.name)

    def files(self, state: str | None = None) -> list[FileRecord]:
        """The files this watch has seen (in ``state`` only, if given)."""
        return self.store.records(self.name, state)

    def __repr__(self) -> str:
        state = "running" if self.running else "ended"
        return f"<Watcher {self.name!r} on {self.target} ({state}): {self.store.counts(self.name)}>"

    # -- notifications -----------------------------------------------------------------------

    def _subscribe(self) -> None:
        self._subscription, self._owns_subscription, error = follow(
            self.lake.config, self._notifications
        )
        if error is not None:
            self.warnings.append(
                f"{error} New files are found by polling every {self.poll_interval:g} s."
            )
            log.warning("escape-portal: watch %s: %s", self.name, error)
        if self._subscription is None:
            return
        self._subscription.add_listener(self._on_notification)

    def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        subscription.remove_listener(self._on_notification)
        if self._owns_subscription:
            subscription.close()

    def _on_notification(self, notification: Notification) -> None:
        if self.target.concerns(notification, self._datasets):
            self._hinted = True
            self._wake.set()

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        last_scan = 0.0
        trigger = "start"
        try:
            while not self._stop.is_set():
                if self.store.stop_requested(self.name):
                    break
                if trigger:
                    if self._scan(trigger):
                        last_scan = time.monotonic()
                    trigger = ""
                self._submit_due()
                interval = (
                    self.fallback_interval if self.following_notifications else self.poll_interval
                )
                wait = min(self.control_interval, max(0.0, last_scan + interval - time.monotonic()))
                retry = self.store.next_retry(self.name)
                if retry is not None:
                    wait = min(wait, max(0.0, retry - time.time()))
                if self._wake.wait(wait):
                    self._wake.clear()
                    if self._stop.is_set():
                        break
                    if self._hinted:
                        self._stop.wait(self.min_gap)  # one listing for a burst of events
                        self._hinted = False
                        trigger = "notification"
                elif time.monotonic() - last_scan >= interval:
                    trigger = "poll"
        except Exception:  # the thread must not die silently
            log.exception("escape-portal: watch %s ended on an error", self.name)
        finally:
            self._unsubscribe()
            _running.pop((str(self.store.path), self.name), None)
            if self._lock_file is not None:
                self._lock_file.close()  # releases the lock
                self._lock_file = None
            self._finished.set()

    def _scan(self, trigger: str) -> bool:
        """List the target and record the files not seen before; whether it could."""
        self.scans[trigger] += 1
        try:
            listed = {str(f.did): f for f in self.target.files(self.lake)}
            if self.target.name is not None:
                self._datasets = frozenset(
                    str(i.did)
                    for i in self.lake.contents(DID(self.target.scope, self.target.name))
                    if i.type == "dataset"
                )
        except LakeError as exc:
            self._warn(f"Could not list {self.target}: {exc}")
            return False
        self._listed = listed
        taken = self.store.add(self.name, list(listed), "new")
        self.found[trigger] += taken
        if taken:
            log.info("escape-portal: watch %s found %d new files (%s)", self.name, taken, trigger)
        return True

    def _warn(self, message: str) -> None:
        if not self.warnings or self.warnings[-1] != message:
            self.warnings.append(message)
            log.warning("escape-portal: watch %s: %s", self.name, message)

    def _submit_due(self) -> None:
        with self._flight_lock:
            room = self.batch - len(self._in_flight)
        if room <= 0:
            return
        dids = self.store.due(self.name, room)
        if not dids:
            return
        from escape_portal import analysis

        try:
            files = analysis.lake_files(
                self.lake, [self._listed.get(d) or DID.parse(d) for d in dids]
            )
        except LakeUnavailable as exc:  # not the files' fault: try again, uncounted
            self._warn(f"Could not find the replicas of {len(dids)} new files: {exc}")
            for did in dids:
                self.store.requeue(self.name, did)
            return
        except LakeError as exc:
            for did in dids:
                self._failed(did, f"could not find its replicas: {exc}")
            return
        by_did = {str(f.did): f for f in files}
        missing = [d for d in dids if d not in by_did]
        for did in missing:
            self._failed(did, "it is no longer in the lake")
        if not files:
            return
        futures = self._session.submit(files, self.function)
        for file, future in zip(files, futures, strict=True):
            did = str(file.did)
            with self._flight_lock:
                self._in_flight[did] = future
            future.add_done_callback(lambda f, did=did: self._done(did, f))

    def _done(self, did: str, future: Any) -> None:
        with self._flight_lock:
            self._in_flight.pop(did, None)
        try:
            if future.cancelled():  # the cluster went away: run it again later
                self.store.requeue(self.name, did)
                return
            error = future.exception()
        except Exception as exc:  # the client lost the future (cluster gone)
            error = exc
        if error is not None:
            self._failed(did, f"{type(error).__name__}: {error}")
        else:
            result = future.result()
            self.store.finish(self.name, did, _summary(result))
            if self.on_result is not None:
                try:
                    self.on_result(did, result)
                except Exception:
                    log.exception("escape-portal: watch %s: the result callback failed", self.name)
        self._wake.set()  # room for more

    def _failed(self, did: str, error: str) -> None:
        state = self.store.fail(self.name, did, error, self.max_attempts, self.retry_backoff)
        if state == "failed":
            log.warning("escape-portal: watch %s: %s failed: %s", self.name, did, error)
            if self.on_failure is not None:
                try:
                    self.on_failure(did, error)
                except Exception:
                    log.exception("escape-portal: watch %s: the failure callback failed", self.name)


def _runs_elsewhere(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"Watch {name!r} is already running (in this or another process).",
        f"Stop it there first (escape-portal watch stop {name}), or use another name.",
    )


def _summary(result: Any) -> str:
    text = repr(result)
    return text if len(text) <= 200 else text[:197] + "..."


# -- the public doors ------------------------------------------------------------------------------


def watch(
    lake: Lake,
    target: str | DID,
    function: Callable[[Any], Any] | None = None,
    *,
    notebook: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    name: str | None = None,
    filters: Any = None,
    include_existing: bool = False,
    store: Store | str | Path | None = None,
    **options: Any,
) -> Watcher:
    """Run ``function`` (or ``notebook``) on every new file of ``target``; the started watch.

    Parameters
    ----------
    lake
        The lake.
    target
        ``scope:name`` of a dataset or container, or a scope (its files).
    function
        Called on a Dask worker with each new file's
        :class:`~escape_portal.analysis.LakeFile`; its result is kept (in short) and
        passed to ``on_result``.
    notebook
        Instead of ``function``: a notebook executed with papermill for each file
        (see :class:`Notebook`); its executed copies go beside it, in ``<stem>-runs/``.
    parameters
        More parameters for the notebook, the same for every file.
    name
        The watch's name (default: from the target). Starting a watch under a name that
        exists goes on where it stopped (its function may change, its target may not).
    filters
        Metadata filters on a scope's files (``['run>100']``).
    include_existing
        Process the files already there when the watch is created, too.
    store
        Where watches are kept (default: :func:`default_store`).
    **options
        ``client`` (a ``distributed.Client``), ``max_attempts``, ``retry_backoff``,
        ``poll_interval``, ``fallback_interval``, ``control_interval``, ``min_gap``,
        ``batch``, ``notifications``, ``on_result``, ``on_failure``: see :class:`Watcher`.

    Raises
    ------
    InvalidRequest
        Neither or both of ``function`` and ``notebook``; a bad name; the name is taken by
        a watch of another target; the watch runs elsewhere.
    """
    import cloudpickle

    if (function is None) == (notebook is None):
        raise InvalidRequest(
            "A watch runs either a function or a notebook.", "Pass one of function= or notebook=."
        )
    task: Callable[[Any], Any]
    if notebook is not None:
        task = Notebook.of(notebook, **(parameters or {}))
    else:
        assert function is not None
        task = function
    goal = Target.parse(target, filters)
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", str(goal).replace(":", "-")).strip("-")[:64]
    if not _NAME.match(name):
        raise InvalidRequest(
            f"{name!r} cannot name a watch.", "Use letters, digits, '.', '_' and '-' (64 at most)."
        )
    s = store if isinstance(store, Store) else Store(store)
    existing = s.definition(name)
    definition = {
        "instance": lake.config.name,
        "scope": goal.scope,
        "name": goal.name,
        "filters": list(goal.filters),
        "target_text": str(goal),
        "function": _describe(task),
    }
    if existing is not None:
        old = existing[0]
        if (old["instance"], old["scope"], old["name"], old["filters"]) != (
            definition["instance"],
            definition["scope"],
            definition["name"],
            definition["filters"],
        ):
            raise InvalidRequest(
                f"Watch {name!r} already follows {old['target_text']} on {old['instance']}.",
                "Choose another name, or remove that watch first (escape-portal watch remove).",
            )
    if s.running(name):  # before touching its definition
        raise _runs_elsewhere(name)
    watcher = Watcher(lake, name, goal, task, store=s, **options)
    new = s.define(name, definition, cloudpickle.dumps(task))
    if new:
        if include_existing:
            pass  # the first listing takes them as new
        else:
            try:
                present = list(goal.files(lake))
            except LakeError:
                s.remove(name)
                raise
            s.add(name, [str(f.did) for f in present], "existing")
    return watcher.start()


def resume(
    name: str,
    *,
    lake: Lake | None = None,
    store: Store | str | Path | None = None,
    **options: Any,
) -> Watcher:
    """Start watch ``name`` again, with its own function, where it stopped.

    Parameters
    ----------
    name
        The watch.
    lake
        The lake (default: the watch's instance, as configured here).
    store
        Where watches are kept.
    **options
        As for :func:`watch`.

    Raises
    ------
    NotFound
        No such watch.
    InvalidRequest
        Its function cannot be loaded here, or it runs elsewhere.
    """
    import cloudpickle

    s = store if isinstance(store, Store) else Store(store)
    found = s.definition(name)
    if found is None:
        raise NotFound(f"There is no watch named {name!r}.", "See escape-portal watch list.")
    definition, pickled = found
    try:
        function = cloudpickle.loads(pickled)
    except Exception as exc:  # whatever the function needed is gone
        raise InvalidRequest(
            f"The function of watch {name!r} ({definition['function']}) cannot be loaded here: "
            f"{type(exc).__name__}: {exc}.",
            "Start it from Python with watches.watch(..., name=...) and the function again.",
        ) from exc
    if s.running(name):
        raise _runs_elsewhere(name)
    lake = lake or Lake.from_instance(definition["instance"])
    goal = Target(definition["scope"], definition["name"], tuple(definition["filters"]))
    watcher = Watcher(lake, name, goal, function, store=s, **options)
    s.define(name, definition, pickled)  # clears an earlier stop
    return watcher.start()
