"""Start, supervise, stop and inspect the embedded data lake.

The lake's parts are one table, :data:`PARTS`: each :class:`Component` says how to start
it (argv, or a function for the XRootD servers, whose sockets are bound here and handed
over), which ports it listens on (keys saved in ``run/ports.json``) and how to tell
that it is ready. ``EmbeddedLake.up`` chooses the ports (the last ones used while free),
writes ``rucio.cfg`` and starts, once, a supervising process (``python -m
escape_portal.embedded.supervisor run DATA_DIR``) that starts every part, each in its own
process group and bound to 127.0.0.1, builds and seeds the catalogue on first start (see
:mod:`escape_portal.embedded.bootstrap`), and then restarts any part that dies, on the
same port, with backoff (``logs/supervisor.log``). ``up`` is idempotent and returns when
the lake answers; ``down`` stops the supervisor, which stops the parts by process group.
Logs go to ``DATA_DIR/logs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import requests

from escape_portal.embedded import broker, database, xrootd
from escape_portal.embedded.feeds import write_feeds
from escape_portal.embedded.layout import (
    LakePaths,
    default_data_dir,
    read_state,
    write_rucio_config,
)
from escape_portal.embedded.pki import ensure_pki
from escape_portal.embedded.sites import DEFAULT_COMPUTE_SITE, site_by_name
from escape_portal.embedded.tokens import issuer_url

# The processes this Python process started (the supervisor), reaped when stopped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
SERVER_START_TIMEOUT = 90.0
#: How long ``up`` waits for a first start (seeding 110,000 files takes minutes).
UP_TIMEOUT = 3600.0
#: Seconds between two looks at the parts.
WATCH_INTERVAL = 0.5
#: Restart backoff: first delay, doubled per quick death, up to the maximum; a part that
#: stayed up ``STABLE_AFTER`` seconds starts again from the first delay.
RESTART_DELAY, RESTART_DELAY_MAX, STABLE_AFTER = 0.5, 30.0, 60.0

log = logging.getLogger("escape_portal.embedded.supervisor")


class EmbeddedLakeError(RuntimeError):
    """A part of the embedded lake failed; the message names the log to read."""


@dataclass(frozen=True)
class Run:
    """What a part's start sees: the lake's layout and its ports."""

    paths: LakePaths
    ports: dict[str, int]

    def url(self, key: str, path: str = "") -> str:
        """``http://127.0.0.1:PORT`` of port ``key``, plus ``path``."""
        return f"http://127.0.0.1:{self.ports[key]}{path}"

    @property
    def ca(self) -> Path:
        """The lake CA's certificate (the idp's and the XRootD servers' TLS)."""
        return self.paths.pki / "ca.pem"

    @property
    def idp_issuer(self) -> str:
        """The identity provider's issuer URL (https, the lake CA)."""
        return issuer_url(self.ports["idp_port"])

    def xrootd_endpoint(self, rse: str) -> xrootd.XRootDEndpoint:
        """Where ``rse``'s XRootD server listens."""
        return xrootd.XRootDEndpoint(rse, *(self.ports[key] for key in xrootd.port_keys(rse)))


@dataclass(frozen=True)
class Component:
    """One part of the lake: how to start it and tell it is ready.

    Parameters
    ----------
    name
        Its name (pid file ``run/NAME.pid``, log ``logs/NAME.log``).
    argv
        The command that runs it in the foreground, from the lake's layout and ports.
    ports
        Keys of the ports it listens on (saved in ``run/ports.json`` and ``state.json``).
    ready
        Whether it serves (default: as soon as it runs).
    needs_catalogue
        Started once the catalogue exists (on first start: once built and seeded).
    after_bootstrap
        Started only after this start's check of the catalogue (its storage protocols).
    starting
        What ``up`` says while starting it.
    ready_timeout
        Seconds it may take to become ready.
    env
        Extra environment variables.
    start
        Starts it instead of running ``argv`` (given the log to write to), for a part
        that needs more than a command (the XRootD servers get their sockets handed over).
    """

    name: str
    argv: Callable[[Run], list[str]]
    ports: tuple[str, ...] = ()
    ready: Callable[[Run], bool] = lambda run: True
    needs_catalogue: bool = False
    after_bootstrap: bool = False
    starting: str = ""
    ready_timeout: float = 30.0
    env: Callable[[Run], dict[str, str]] = field(default=lambda run: {})
    start: Callable[[Run, IO[bytes]], subprocess.Popen[bytes]] | None = None


def _python(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def _memcached(run: Run) -> list[str]:
    binary = shutil.which("memcached") or (
        "/usr/bin/memcached" if Path("/usr/bin/memcached").exists() else None
    )
    if binary is None:
        raise EmbeddedLakeError(
            "memcached is not installed; the Rucio server caches through it. "
            "Install it (Debian: apt-get install memcached) or run scripts/setup.sh."
        )
    argv = [binary, "-l", "127.0.0.1", "-p", str(run.ports["memcached_port"]), "-U", "0"]
    argv += ["-m", "256"]
    return argv + (["-u", "root"] if os.geteuid() == 0 else [])


def _gunicorn(run: Run) -> list[str]:
    return [
        *_python("gunicorn", "--bind", f"127.0.0.1:{run.ports['server_port']}"),
        *("--workers", "2", "--worker-class", "gthread", "--threads", "8"),
        *("--timeout", "600", "--graceful-timeout", "5"),
        "--no-control-socket",  # nothing of the lake outside its data directory
        # Rucio's application is imported once, before the workers fork: a (re)start
        # costs one import (seconds of CPU), not one per worker.
        "--preload",
        *("--access-logfile", str(run.paths.logs / "access.log")),
        "escape_portal.embedded.wsgi:application",
    ]


def _listening(key: str) -> Callable[[Run], bool]:
    def ready(run: Run) -> bool:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", run.ports[key]), timeout=1).close()
            return True
        return False

    return ready


def _answers(key: str, path: str) -> Callable[[Run], bool]:
    def ready(run: Run) -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(run.url(key, path), timeout=2).status_code < 500
        return False

    return ready


def _broker(run: Run) -> list[str]:
    try:
        return broker.command(run.paths.root, run.ports["broker_port"])
    except broker.BrokerError as exc:
        raise EmbeddedLakeError(str(exc)) from exc


def _broker_ready(run: Run) -> bool:
    creds = broker.credentials(run.paths.root)
    answer = broker.stomp_connect(run.ports["broker_port"], creds)
    if answer == "ERROR":
        raise EmbeddedLakeError("The message broker refused the lake's credentials.")
    return answer == "CONNECTED"


def _idp_ready(run: Run) -> bool:
    with contextlib.suppress(requests.RequestException):
        url = f"{run.idp_issuer}/.well-known/openid-configuration"
        return requests.get(url, timeout=2, verify=str(run.ca)).status_code < 500
    return False


def _xrootd(rse: str) -> Component:
    def start(run: Run, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
        try:
            return xrootd.start(run.paths, run.xrootd_endpoint(rse), run.idp_issuer, log_file)
        except xrootd.XRootDError as exc:
            raise EmbeddedLakeError(str(exc)) from exc

    return Component(
        xrootd.component(rse),
        lambda run: [],  # started by ``start``
        xrootd.port_keys(rse),
        lambda run: xrootd.ready(run.xrootd_endpoint(rse), run.ca),
        starting=f"serving {rse} over root:// and davs:// (XRootD, tokens)",
        ready_timeout=xrootd.START_TIMEOUT,
        start=start,
    )


#: The lake's parts, in start order (stopped in reverse).
PARTS: tuple[Component, ...] = (
    Component(
        "memcached",
        _memcached,
        ("memcached_port",),
        _listening("memcached_port"),
        starting="starting memcached",
    ),
    Component(
        "broker",
        _broker,
        ("broker_port",),
        _broker_ready,
        starting="starting the message broker (ActiveMQ) for Rucio's notifications",
        ready_timeout=broker.START_TIMEOUT,
    ),
    # Before the server and the bootstrap: Rucio's server discovers the provider at
    # start, and the bootstrap registers the XRootD storage elements.
    Component(
        "idp",
        lambda run: _python("escape_portal.embedded.idp", run.paths.root, run.ports["idp_port"]),
        ("idp_port",),
        _idp_ready,
        starting="starting the OpenID Connect provider",
    ),
    *(_xrootd(rse) for rse in xrootd.XROOTD_RSES),
    Component(
        "server",
        _gunicorn,
        ("server_port",),
        lambda run: _ping(run.url("server_port")) is not None,
        needs_catalogue=True,
        starting="starting the Rucio server",
        ready_timeout=SERVER_START_TIMEOUT,
    ),
    Component(
        "daemons",
        lambda run: _python("escape_portal.embedded.daemons", "--group", "core"),
        needs_catalogue=True,
        after_bootstrap=True,
        starting="starting Rucio's daemons",
    ),
    # The conveyor in a process of its own: a large make-available keeps it and the
    # judge, abacus and hermes busy at once, and one Python process uses one core.
    Component(
        "conveyor",
        lambda run: _python("escape_portal.embedded.daemons", "--group", "conveyor"),
        needs_catalogue=True,
        after_bootstrap=True,
        starting="starting Rucio's conveyor (transfers)",
    ),
    Component(
        "vo",
        lambda run: _python(
            "escape_portal.vo_publish",
            *("--instance", "embedded", "--port", run.ports["vo_port"]),
            *("--state-dir", run.paths.root / "vo"),
        ),
        ("vo_port",),
        _answers("vo_port", "/tap/availability"),
        needs_catalogue=True,
        starting="publishing the lake in the Virtual Observatory (TAP, SIA2, SCS, DataLink)",
    ),
)
COMPONENTS = tuple(part.name for part in PARTS)
#: Parts that earlier versions of the lake ran (``storage``: anonymous HTTP read access
#: to the storage folders, gone since every storage element is served by XRootD with
#: tokens): ``down`` still stops what an older version left running.
RETIRED_COMPONENTS = ("storage",)
#: The catalogue's own PostgreSQL, first of the parts of a lake that uses it.
DATABASE_PART = Component(
    "database",
    lambda run: database.command(run.paths),
    ready=lambda run: database.ready(run.paths),
    starting="starting the catalogue's database (PostgreSQL)",
    ready_timeout=database.READY_TIMEOUT,
)


def parts_of(paths: LakePaths) -> tuple[Component, ...]:
    """The parts of the lake in ``paths``: :data:`PARTS`, after its database if it has one."""
    if database.remembered(paths) == database.POSTGRESQL:
        return (DATABASE_PART, *PARTS)
    return PARTS


SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class ComponentStatus:
    """One process of the embedded lake."""

    name: str
    pid: int | None
    running: bool
    log: str
    detail: str = ""


@dataclass(frozen=True)
class LakeStatus:
    """What runs where."""

    data_dir: str
    rucio_host: str | None
    server_version: str | None
    compute_site: str
    mounted_rse: str
    mount_path: str
    components: list[ComponentStatus]
    seeded: dict[str, Any] | None

    @property
    def running(self) -> bool:
        """All processes alive and the server answering."""
        return self.server_version is not None and all(c.running for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        data = asdict(self)
        data["running"] = self.running
        return data


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    with contextlib.suppress(FileNotFoundError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(pid: int, timeout: float, reap: Callable[[], None] = lambda: None) -> None:
    """SIGTERM the process group ``pid`` leads, SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (_alive(pid) or _group_alive(pid)) and time.monotonic() < deadline:
        reap()
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    reap()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


class EmbeddedLake:
    """The embedded data lake of one data directory.

    Parameters
    ----------
    data_dir
        Where state lives (default: ``$ESCAPE_PORTAL_LAKE_DIR`` or ``~/.escape-portal/lake``).
    port
        Port of the Rucio server on 127.0.0.1 (default: the last one used, else a free one).
    database_url
        SQLAlchemy URL of the catalogue (default: SQLite in the data directory), e.g.
        ``postgresql+psycopg://rucio:secret@127.0.0.1/rucio``.
    database
        Without ``database_url``: ``sqlite`` or ``postgresql`` (a cluster of the lake's
        own, see :mod:`escape_portal.embedded.database`), remembered per data directory;
        ``None``: the data directory's choice, else SQLite.
    compute_site
        The site whose storage is mounted into the notebook's compute.

    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        database_url: str | None = None,
        database: str | None = None,
        compute_site: str = DEFAULT_COMPUTE_SITE,
    ) -> None:
        self.paths = LakePaths(Path(data_dir).resolve() if data_dir else default_data_dir())
        self.port = port
        self.database_url = database_url
        self.database = database
        self.compute_site = site_by_name(compute_site)

    @property
    def parts(self) -> tuple[Component, ...]:
        """The parts of this lake, in start order."""
        return parts_of(self.paths)

    @property
    def components(self) -> tuple[str, ...]:
        """Their names."""
        return tuple(part.name for part in self.parts)

    def _catalogue(self, progress: Callable[[str], None]) -> None:
        """Check (and remember on first start) the database of this lake's catalogue.

        Raises
        ------
        EmbeddedLakeError
            If this data directory's catalogue lives in the other database.
        """
        if self.database_url:
            return
        try:
            database.choose(self.paths, self.database, progress)
        except database.DatabaseError as exc:
            raise EmbeddedLakeError(str(exc)) from exc

    def _catalogue_url(self) -> str | None:
        """The catalogue's URL: given, the lake's own PostgreSQL (made once), or SQLite's."""
        if self.database_url or database.remembered(self.paths) != database.POSTGRESQL:
            return self.database_url
        try:
            database.ensure_cluster(self.paths, self._log("database"))
            return database.url(self.paths)
        except database.DatabaseError as exc:
            raise EmbeddedLakeError(f"{exc}\n{_tail(self._log('database'))}") from exc

    # -- state -----------------------------------------------------------------------------

    def _pid_file(self, component: str) -> Path:
        return self.paths.run / f"{component}.pid"

    def _pid(self, component: str) -> int | None:
        try:
            return int(self._pid_file(component).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _log(self, component: str) -> Path:
        return self.paths.logs / f"{component}.log"

    def _supervisor_file(self) -> Path:
        return self.paths.run / "supervisor.json"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RUCIO_CONFIG"] = str(self.paths.rucio_cfg)
        env["ESCAPE_PORTAL_LAKE_DIR"] = str(self.paths.root)  # the instance 'embedded' is this
        env.pop("RUCIO_HOME", None)
        # Rucio's server discovers the lake's identity provider over https (pyoidc, requests).
        env["REQUESTS_CA_BUNDLE"] = str(self.paths.pki / "ca.pem")
        return env

    def _ports_file(self) -> Path:
        return self.paths.run / "ports.json"

    def saved_ports(self) -> dict[str, int]:
        """The ports of the last start (``run/ports.json``), empty if never started."""
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return {k: int(v) for k, v in json.loads(self._ports_file().read_text()).items()}
        return {}

    def _ports(self) -> dict[str, int]:
        """Ports of the listening parts: the last ones used while free, else new ones."""
        saved = self.saved_ports()
        ports = {}
        for part in self.parts:
            for key in part.ports:
                wanted = self.port if key == "server_port" else None
                port = int(wanted or saved.get(key) or 0)
                if port and (
                    (_alive(self._pid(part.name)) and port == saved.get(key)) or _port_free(port)
                ):
                    ports[key] = port
                elif wanted:
                    raise EmbeddedLakeError(f"Port {wanted} on 127.0.0.1 is already in use.")
                else:
                    ports[key] = _free_port()
        _write_json(self._ports_file(), ports)
        return ports

    def storage_bytes_read(self, rse: str) -> int:
        """Bytes the XRootD server of ``rse`` has served from its files, by its own log.

        Over root:// and davs:// alike (:func:`escape_portal.embedded.xrootd.bytes_read`);
        compare two readings.

        Raises
        ------
        EmbeddedLakeError
            If ``rse`` is not a storage element of this lake.
        """
        if rse not in xrootd.XROOTD_RSES:
            raise EmbeddedLakeError(f"{rse} is not a storage element of this lake.")
        return xrootd.bytes_read(self.paths, rse)

    @property
    def mount_path(self) -> Path:
        """The folder of the storage element mounted into the compute site."""
        return self.paths.rse_dir(self.compute_site.rse)

    # -- public ----------------------------------------------------------------------------

    def up(
        self, *, seed: bool = True, progress: Callable[[str], None] = lambda _: None
    ) -> LakeStatus:
        """Start whatever is not running; build and seed the catalogue on first start.

        Starts the supervisor unless it runs, and returns when every part is ready.

        Parameters
        ----------
        seed
            Write and register the sample data (once; later starts skip it quickly).
        progress
            Called with a short message at each step.

        Raises
        ------
        EmbeddedLakeError
            If a part does not start; the message names its log file.

        """
        self.paths.make()
        self._catalogue(progress)
        supervisor_log = self._log(SUPERVISOR)
        offset = supervisor_log.stat().st_size if supervisor_log.exists() else 0
        pid = self._pid(SUPERVISOR)
        if not _alive(pid):
            ports = self._ports()
            ensure_pki(self.paths.pki)
            write_rucio_config(
                self.paths,
                server_port=ports["server_port"],
                memcached_port=ports["memcached_port"],
                broker_port=ports["broker_port"],
                database_url=self._catalogue_url(),
                idp_issuer=issuer_url(ports["idp_port"]),
            )
            self._supervisor_file().unlink(missing_ok=True)
            argv = _python(__name__, "run", self.paths.root, "--site", self.compute_site.name)
            if not seed:
                argv.append("--no-seed")
            with supervisor_log.open("ab") as handle:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    cwd=self.paths.root,
                    start_new_session=True,
                )
            _CHILDREN[process.pid] = process
            pid = process.pid
            self._pid_file(SUPERVISOR).write_text(str(pid))
        deadline = time.monotonic() + UP_TIMEOUT
        while True:
            offset = self._relay_progress(supervisor_log, offset, progress)
            state = _read_json(self._supervisor_file())
            if state.get("state") == "ready":
                break
            if state.get("state") == "failed":
                raise EmbeddedLakeError(str(state.get("error")))
            if not _alive(pid):
                raise EmbeddedLakeError(
                    f"The lake's supervisor exited; see {supervisor_log}:\n" + _tail(supervisor_log)
                )
            if time.monotonic() > deadline:
                raise EmbeddedLakeError(
                    f"The lake did not start within {UP_TIMEOUT:.0f} s; see {supervisor_log}"
                )
            time.sleep(0.2)
        self._relay_progress(supervisor_log, offset, progress)
        return self.status()

    @staticmethod
    def _relay_progress(log_file: Path, offset: int, progress: Callable[[str], None]) -> int:
        """Pass the supervisor's ``progress:`` lines written since ``offset`` on."""
        try:
            with log_file.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return offset
        complete = data[: data.rfind(b"\n") + 1]
        for line in complete.decode(errors="replace").splitlines():
            if " progress: " in line:
                progress(line.split(" progress: ", 1)[1])
        return offset + len(complete)

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stop the supervisor and every part (SIGTERM, then SIGKILL); return their names."""
        components = self.components
        running = [c for c in components if _alive(self._pid(c))]
        pid = self._pid(SUPERVISOR)
        if _alive(pid):
            assert pid is not None
            child = _CHILDREN.get(pid)

            def reap() -> None:
                if child is not None:
                    child.poll()

            # The supervisor stops the parts within ``timeout`` each.
            _stop_group(pid, timeout * (len(components) + 1), reap)
            running.append(SUPERVISOR)
        _CHILDREN.pop(pid or 0, None)
        # What a dead supervisor (or an older version of the lake) left.
        for component in (*reversed(components), *RETIRED_COMPONENTS):
            part_pid = self._pid(component)
            if part_pid and (_alive(part_pid) or _group_alive(part_pid)):
                _stop_group(part_pid, timeout)
            self._pid_file(component).unlink(missing_ok=True)
        self._pid_file(SUPERVISOR).unlink(missing_ok=True)
        self._supervisor_file().unlink(missing_ok=True)
        self.paths.state_file.unlink(missing_ok=True)
        return running

    def status(self) -> LakeStatus:
        """What runs where, and whether the server answers."""
        state = read_state(self.paths) or {}
        url = state.get("rucio_host")
        components = [
            ComponentStatus(c, self._pid(c), _alive(self._pid(c)), str(self._log(c)))
            for c in (*self.components, SUPERVISOR)
        ]
        seeded = None
        if self.paths.seed_marker.exists():
            seeded = json.loads(self.paths.seed_marker.read_text())
        return LakeStatus(
            data_dir=str(self.paths.root),
            rucio_host=url,
            server_version=_ping(url) if url else None,
            compute_site=self.compute_site.name,
            mounted_rse=self.compute_site.rse,
            mount_path=str(self.mount_path),
            components=components,
            seeded=seeded,
        )


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    return {}


def _ping(url: str) -> str | None:
    try:
        response = requests.get(f"{url}/ping", timeout=2)
        if response.ok:
            return str(response.json()["version"])
    except (requests.RequestException, ValueError, KeyError):
        return None
    return None


# -- the supervising process --------------------------------------------------------------


@dataclass
class _Child:
    part: Component
    pid: int
    process: subprocess.Popen[bytes] | None  # None: adopted from an earlier supervisor
    started: float
    restarts: int = 0
    delay: float = RESTART_DELAY

    def dead(self) -> bool:
        if self.process is not None:
            return self.process.poll() is not None
        return not _alive(self.pid)


class Supervisor:
    """Owns the parts of one lake: starts them, restarts any that dies, stops them all.

    Parameters
    ----------
    lake
        The lake (its ports are those ``up`` saved).
    seed
        Seed the sample data on first start.
    """

    def __init__(self, lake: EmbeddedLake, *, seed: bool = True) -> None:
        self.lake = lake
        self.paths = lake.paths
        self.seed = seed
        self.run = Run(self.paths, lake.saved_ports())
        self.children: dict[str, _Child] = {}
        self.stopping = False

    def _spawn(self, part: Component) -> _Child:
        log_file = self.lake._log(part.name).open("ab")
        env = self.lake._env() | part.env(self.run)
        try:
            if part.start is not None:
                process = part.start(self.run, log_file)
            else:
                process = subprocess.Popen(
                    part.argv(self.run),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.paths.root,
                    start_new_session=True,
                )
        finally:
            log_file.close()
        self.lake._pid_file(part.name).write_text(str(process.pid))
        child = _Child(part, process.pid, process, time.monotonic())
        self.children[part.name] = child
        return child

    def _wait_ready(self, child: _Child) -> None:
        deadline = time.monotonic() + child.part.ready_timeout
        while not self.stopping:
            if child.dead():
                raise EmbeddedLakeError(
                    f"The {child.part.name} process exited at start; see "
                    f"{self.lake._log(child.part.name)}:\n" + _tail(self.lake._log(child.part.name))
                )
            if child.part.ready(self.run):
                return
            if time.monotonic() > deadline:
                raise EmbeddedLakeError(
                    f"The {child.part.name} process was not ready within "
                    f"{child.part.ready_timeout:.0f} s; see {self.lake._log(child.part.name)}"
                )
            time.sleep(0.1)

    def _spawn_all(self, parts: list[Component]) -> list[_Child]:
        """Start (or adopt, if already running) ``parts``; return those started."""
        started = []
        for part in parts:
            pid = self.lake._pid(part.name)
            if part.name in self.children or self.stopping:
                continue
            if _alive(pid):
                assert pid is not None
                self.children[part.name] = _Child(part, pid, None, time.monotonic())
                continue
            if part.starting:
                log.info("progress: %s", part.starting)
            started.append(self._spawn(part))
        return started

    def _bootstrap(self) -> None:
        argv = _python(
            "escape_portal.embedded.bootstrap",
            self.paths.root,
            "--xrootd-ports",
            json.dumps(
                {
                    rse: [self.run.ports[key] for key in xrootd.port_keys(rse)]
                    for rse in xrootd.XROOTD_RSES
                }
            ),
            "--idp-issuer",
            self.run.idp_issuer,
        )
        if self.seed:
            argv.append("--seed")
        log.info("progress: building the catalogue%s", " and seeding sample data" * self.seed)
        bootstrap_log = self.lake._log("bootstrap")
        with bootstrap_log.open("ab") as handle:
            result = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=handle, env=self.lake._env(), check=False
            )
        if result.returncode != 0:
            raise EmbeddedLakeError(
                f"Building the catalogue failed; see {bootstrap_log}:\n{_tail(bootstrap_log)}"
            )
        report = json.loads(result.stdout.decode().strip().splitlines()[-1])
        if report.get("seed") and not report["seed"].get("skipped"):
            log.info("progress: seeded in %s s", report["seed"]["total_s"])

    def _write_state(self) -> None:
        ports = self.run.ports
        cric, perfsonar = write_feeds(self.paths, self.lake.compute_site)
        url = self.run.url("server_port")
        state = {
            "data_dir": str(self.paths.root),
            "cric_feed": str(cric),
            "perfsonar_feed": str(perfsonar),
            "rucio_host": url,
            **ports,
            "broker": f"stomp://127.0.0.1:{ports['broker_port']}",
            "broker_destination": broker.DESTINATION,
            "broker_vhost": broker.VIRTUAL_HOST,
            "vo_url": self.run.url("vo_port"),
            "idp_url": self.run.idp_issuer,
            "ca_cert": str(self.run.ca),
            "storage_ca": str(self.run.ca),
            "xrootd": {
                rse: {
                    "root": (endpoint := self.run.xrootd_endpoint(rse)).root_url,
                    "davs": "davs" + endpoint.https_url[len("https") :],
                }
                for rse in xrootd.XROOTD_RSES
            },
            "compute_site": self.lake.compute_site.name,
            "mounted_rse": self.lake.compute_site.rse,
            "mount_path": str(self.lake.mount_path),
            "pids": {c: self.lake._pid(c) for c in self.lake.components},
            "supervisor_pid": os.getpid(),
            "started_at": time.time(),
        }
        _write_json(self.paths.state_file, state)

    def start(self) -> None:
        """Start every part; the catalogue is built (and seeded) first where needed.

        On a first start the parts that need the catalogue wait for it; later, the ones
        that only read it (``needs_catalogue``) start while it is checked, and the
        daemons (``after_bootstrap``) after.
        """
        parts = self.lake.parts
        for retired in RETIRED_COMPONENTS:  # left running by an older version of the lake
            pid = self.lake._pid(retired)
            if pid and (_alive(pid) or _group_alive(pid)):
                log.info("progress: stopping %s, a part this version no longer runs", retired)
                _stop_group(pid, 15.0)
            self.lake._pid_file(retired).unlink(missing_ok=True)
        started = self._spawn_all([p for p in parts if not p.needs_catalogue])
        for child in started:
            self._wait_ready(child)
        first_start = not self.paths.seed_marker.exists()
        if not first_start:
            started = self._spawn_all([p for p in parts if not p.after_bootstrap])
        if not _alive(self.lake._pid("daemons")):
            self._bootstrap()
        started += self._spawn_all(list(parts))
        for child in started:
            self._wait_ready(child)
        log.info(
            "progress: Rucio %s answers on %s",
            _ping(self.run.url("server_port")),
            self.run.url("server_port"),
        )
        self._write_state()

    def _restart(self, child: _Child) -> None:
        name = child.part.name
        lived = time.monotonic() - child.started
        code = child.process.returncode if child.process is not None else None
        log.warning(
            "%s (pid %d) died after %.0f s (exit %s); restarting it in %.1f s",
            name,
            child.pid,
            lived,
            code,
            child.delay if lived < STABLE_AFTER else RESTART_DELAY,
        )
        # What it left behind in its process group (gunicorn's workers) holds its port.
        _stop_group(child.pid, 2.0)
        delay = child.delay if lived < STABLE_AFTER else RESTART_DELAY
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.stopping:
            return
        began = time.monotonic()
        new = self._spawn(child.part)
        new.restarts = child.restarts + 1
        new.delay = min(RESTART_DELAY_MAX, delay * 2)
        try:
            self._wait_ready(new)
        except EmbeddedLakeError as exc:
            log.error("%s did not come back: %s", name, str(exc).splitlines()[0])
            return
        log.info(
            "%s restarted as pid %d on %s, ready %.1f s after its restart",
            name,
            new.pid,
            ", ".join(f"{k} {self.run.ports[k]}" for k in child.part.ports) or "no port",
            time.monotonic() - began,
        )
        self._write_state()

    def watch(self) -> None:
        """Restart any part that dies, until asked to stop."""
        while not self.stopping:
            for child in list(self.children.values()):
                if not self.stopping and child.dead():
                    self._restart(child)
            time.sleep(WATCH_INTERVAL)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every part by process group: all asked at once, SIGKILL after ``timeout``."""
        children = [
            self.children.pop(n) for n in reversed(self.lake.components) if n in self.children
        ]
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in children:
            while (not child.dead() or _group_alive(child.pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.dead()  # reaps it
            self.lake._pid_file(child.part.name).unlink(missing_ok=True)
            log.info("stopped %s (pid %d)", child.part.name, child.pid)


def run(data_dir: Path, *, seed: bool, compute_site: str) -> int:
    """The supervising process: start the lake, keep it up until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s supervisor %(message)s"
    )
    lake = EmbeddedLake(data_dir, compute_site=compute_site)
    supervisor = Supervisor(lake, seed=seed)

    def stop(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = lake._supervisor_file()
    try:
        supervisor.start()
    except EmbeddedLakeError as exc:
        log.error("%s", exc)
        _write_json(status, {"state": "failed", "error": str(exc)})
        supervisor.stop()
        return 1
    if not supervisor.stopping:
        _write_json(status, {"state": "ready", "pid": os.getpid()})
        log.info("lake ready; watching %d parts", len(supervisor.children))
        supervisor.watch()
    supervisor.stop()
    status.unlink(missing_ok=True)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m escape_portal.embedded.supervisor run DATA_DIR [--no-seed] [--site S]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "run":
        print(
            "usage: python -m escape_portal.embedded.supervisor run DATA_DIR "
            "[--no-seed] [--site SITE]",
            file=sys.stderr,
        )
        return 2
    site = args[args.index("--site") + 1] if "--site" in args else DEFAULT_COMPUTE_SITE
    return run(Path(args[1]), seed="--no-seed" not in args, compute_site=site)


if __name__ == "__main__":
    raise SystemExit(main())
