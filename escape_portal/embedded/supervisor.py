"""Start, stop and inspect the embedded data lake.

``up`` starts, each in its own process group and all bound to 127.0.0.1: a memcached
(Rucio's cache), an HTTP server for the storage elements, a STOMP message broker for
Rucio's notifications (ActiveMQ, see :mod:`escape_portal.embedded.broker`), the Rucio
REST server under gunicorn, Rucio's daemons (see :mod:`escape_portal.embedded.daemons`)
and the lake's Virtual Observatory endpoint (see :mod:`escape_portal.embedded.vo_server`);
before the daemons it builds the catalogue and seeds the sample data once (see
:mod:`escape_portal.embedded.bootstrap`). It is idempotent: parts already running are
left alone. ``down`` stops what ``up`` started, by process id. Logs go to
``DATA_DIR/logs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from escape_portal.embedded import broker, database
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

COMPONENTS = ("memcached", "storage", "broker", "idp", "server", "daemons", "vo")
# The processes this Python process started, so that they are reaped when stopped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
SERVER_START_TIMEOUT = 90.0


class EmbeddedLakeError(RuntimeError):
    """A part of the embedded lake failed; the message names the log to read."""


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
        # As servers bind (Java, gunicorn, memcached): connections of a part that died,
        # left in TIME_WAIT, must not move it to another port.
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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


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
        own, see :mod:`escape_portal.embedded.database`); ``None``: the data directory's
        last choice, else PostgreSQL if installed and usable here, else SQLite.
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

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RUCIO_CONFIG"] = str(self.paths.rucio_cfg)
        env.pop("RUCIO_HOME", None)
        # Rucio's server discovers the lake's identity provider over https (pyoidc, requests).
        env["REQUESTS_CA_BUNDLE"] = str(self.paths.pki / "ca.pem")
        return env

    def _ports(self) -> dict[str, int]:
        """Ports of the listening parts: the last ones used while free, else new ones."""
        saved = json.loads(self._ports_file().read_text()) if self._ports_file().exists() else {}
        ports = {}
        for component, key, wanted in (
            ("server", "server_port", self.port),
            ("memcached", "memcached_port", None),
            ("storage", "storage_port", None),
            ("broker", "broker_port", None),
            ("vo", "vo_port", None),
            ("idp", "idp_port", None),
        ):
            port = int(wanted or saved.get(key) or 0)
            if port and (
                (_alive(self._pid(component)) and port == saved.get(key)) or _port_free(port)
            ):
                ports[key] = port
            elif wanted:
                raise EmbeddedLakeError(f"Port {wanted} on 127.0.0.1 is already in use.")
            else:
                ports[key] = _free_port()
        self._ports_file().write_text(json.dumps(ports))
        return ports

    def _ports_file(self) -> Path:
        return self.paths.run / "ports.json"

    @property
    def mount_path(self) -> Path:
        """The folder of the storage element mounted into the compute site."""
        return self.paths.rse_dir(self.compute_site.rse)

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, component: str, argv: list[str]) -> int:
        log = self._log(component).open("ab")
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(),
            cwd=self.paths.root,
            start_new_session=True,
        )
        log.close()
        _CHILDREN[process.pid] = process
        self._pid_file(component).write_text(str(process.pid))
        return process.pid

    def _start_memcached(self, port: int) -> None:
        if _alive(self._pid("memcached")):
            return
        binary = shutil.which("memcached") or (
            "/usr/bin/memcached" if Path("/usr/bin/memcached").exists() else None
        )
        if binary is None:
            raise EmbeddedLakeError(
                "memcached is not installed; the Rucio server caches through it. "
                "Install it (Debian: apt-get install memcached) or run scripts/setup.sh."
            )
        argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256"]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self._spawn("memcached", argv)

    def _start_server(self, port: int) -> None:
        if _alive(self._pid("server")):
            return
        self._spawn(
            "server",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "8",
                "--timeout",
                "600",
                "--graceful-timeout",
                "5",
                "--no-control-socket",  # nothing of the lake outside its data directory
                "--access-logfile",
                str(self._log("access")),
                "escape_portal.embedded.wsgi:application",
            ],
        )

    def _wait_for_server(self, url: str) -> str:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if not _alive(self._pid("server")):
                raise EmbeddedLakeError(
                    f"The Rucio server exited at start; see {self._log('server')}:\n"
                    + _tail(self._log("server"))
                )
            version = _ping(url)
            if version:
                return version
            time.sleep(0.2)
        raise EmbeddedLakeError(
            f"The Rucio server did not answer on {url} within {SERVER_START_TIMEOUT:.0f} s; "
            f"see {self._log('server')}"
        )

    def _wait_for_http(
        self, component: str, url: str, timeout: float = 30.0, verify: str | bool = True
    ) -> None:
        """Wait until a component answers ``url`` (so that ``up`` returns when it is ready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(self._pid(component)):
                raise EmbeddedLakeError(
                    f"The {component} process exited at start; see {self._log(component)}:\n"
                    + _tail(self._log(component))
                )
            try:
                if requests.get(url, timeout=2, verify=verify).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise EmbeddedLakeError(
            f"The {component} process did not answer on {url} within {timeout:.0f} s; "
            f"see {self._log(component)}"
        )

    def _wait_for_broker(self, port: int) -> None:
        """Wait until the broker accepts a STOMP CONNECT with the lake's credentials."""
        try:
            broker.wait_until_ready(
                port, broker.credentials(self.paths.root), lambda: _alive(self._pid("broker"))
            )
        except broker.BrokerError as exc:
            raise EmbeddedLakeError(
                f"{exc} See {self._log('broker')}:\n{_tail(self._log('broker'))}"
            ) from exc

    def _bootstrap(self, seed: bool, storage_port: int, idp_issuer: str) -> dict[str, Any]:
        argv = [
            sys.executable,
            "-m",
            "escape_portal.embedded.bootstrap",
            str(self.paths.root),
            "--storage-port",
            str(storage_port),
            "--idp-issuer",
            idp_issuer,
        ]
        if seed:
            argv.append("--seed")
        log = self._log("bootstrap")
        with log.open("ab") as handle:
            result = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=handle, env=self._env(), check=False
            )
        if result.returncode != 0:
            raise EmbeddedLakeError(f"Building the catalogue failed; see {log}:\n{_tail(log)}")
        report: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
        return report

    def _start_database(self, progress: Callable[[str], None]) -> str | None:
        """Start the lake's PostgreSQL if this data directory uses it; its URL (else None)."""
        if self.database_url:
            return self.database_url
        try:
            if database.choose(self.paths, self.database, progress) != database.POSTGRESQL:
                return None
            log = self._log("database")
            if not _alive(self._pid("database")):
                progress("starting the catalogue's database (PostgreSQL)")
                database.ensure_cluster(self.paths, log)
                self._spawn("database", database.command(self.paths))
            database.wait_until_ready(self.paths, lambda: _alive(self._pid("database")), log)
        except database.DatabaseError as exc:
            raise EmbeddedLakeError(f"{exc}\n{_tail(self._log('database'))}") from exc
        return database.url(self.paths)

    def _components(self) -> tuple[str, ...]:
        """The parts of this lake: the database (first) only if it is the lake's own."""
        if self.database_url or database.remembered(self.paths) != database.POSTGRESQL:
            return COMPONENTS
        return ("database", *COMPONENTS)

    # -- public ----------------------------------------------------------------------------

    def up(
        self, *, seed: bool = True, progress: Callable[[str], None] = lambda _: None
    ) -> LakeStatus:
        """Start whatever is not running; build and seed the catalogue on first start.

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
        ports = self._ports()
        server_port, storage_port = ports["server_port"], ports["storage_port"]
        pki = ensure_pki(self.paths.pki)
        idp_url = issuer_url(ports["idp_port"])
        database_url = self._start_database(progress)
        write_rucio_config(
            self.paths,
            server_port=server_port,
            memcached_port=ports["memcached_port"],
            broker_port=ports["broker_port"],
            database_url=database_url,
            idp_issuer=idp_url,
        )
        url = f"http://127.0.0.1:{server_port}"
        progress("starting memcached")
        self._start_memcached(ports["memcached_port"])
        if not _alive(self._pid("broker")):
            progress("starting the message broker (ActiveMQ) for Rucio's notifications")
            try:
                self._spawn("broker", broker.command(self.paths.root, ports["broker_port"]))
            except broker.BrokerError as exc:
                raise EmbeddedLakeError(str(exc)) from exc
        if not _alive(self._pid("storage")):
            progress("serving the storage elements over HTTP")
            self._spawn(
                "storage",
                [
                    sys.executable,
                    "-m",
                    "escape_portal.embedded.storage_http",
                    str(self.paths.rse_root),
                    str(storage_port),
                ],
            )
        if not _alive(self._pid("idp")):
            progress("starting the OpenID Connect provider")
            self._spawn(
                "idp",
                [
                    sys.executable,
                    "-m",
                    "escape_portal.embedded.idp",
                    str(self.paths.root),
                    str(ports["idp_port"]),
                ],
            )
        self._wait_for_http(
            "idp", f"{idp_url}/.well-known/openid-configuration", verify=str(pki.ca_cert)
        )
        first_start = not self.paths.seed_marker.exists()
        if not first_start:  # the catalogue exists: check it while the server starts
            progress("starting the Rucio server")
            self._start_server(server_port)
        if not _alive(self._pid("daemons")):
            progress("building the catalogue" + (" and seeding sample data" if seed else ""))
            report = self._bootstrap(seed, storage_port, idp_url)
            if report.get("seed") and not report["seed"].get("skipped"):
                progress(f"seeded in {report['seed']['total_s']} s")
        if first_start:
            progress("starting the Rucio server")
            self._start_server(server_port)
        version = self._wait_for_server(url)
        progress(f"Rucio {version} answers on {url}")
        self._wait_for_broker(ports["broker_port"])
        if not _alive(self._pid("daemons")):
            progress("starting Rucio's daemons")
            self._spawn("daemons", [sys.executable, "-m", "escape_portal.embedded.daemons"])
        if not _alive(self._pid("vo")):
            progress("publishing the lake in the Virtual Observatory (TAP, SIA2, SCS, DataLink)")
            self._spawn(
                "vo",
                [
                    sys.executable,
                    "-m",
                    "escape_portal.embedded.vo_server",
                    str(self.paths.root),
                    str(ports["vo_port"]),
                ],
            )
        self._wait_for_http("vo", f"http://127.0.0.1:{ports['vo_port']}/tap/availability")
        cric, perfsonar = write_feeds(self.paths, self.compute_site)
        state = {
            "data_dir": str(self.paths.root),
            "cric_feed": str(cric),
            "perfsonar_feed": str(perfsonar),
            "rucio_host": url,
            **ports,
            "broker": f"stomp://127.0.0.1:{ports['broker_port']}",
            "broker_destination": broker.DESTINATION,
            "broker_vhost": broker.VIRTUAL_HOST,
            "vo_url": f"http://127.0.0.1:{ports['vo_port']}",
            "idp_url": idp_url,
            "ca_cert": str(pki.ca_cert),
            "compute_site": self.compute_site.name,
            "mounted_rse": self.compute_site.rse,
            "mount_path": str(self.mount_path),
            "pids": {c: self._pid(c) for c in self._components()},
            "started_at": time.time(),
        }
        tmp = self.paths.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.paths.state_file)
        return self.status()

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stop every process ``up`` started (SIGTERM, then SIGKILL); return their names."""
        stopped = []
        for component in reversed(("database", *COMPONENTS)):
            pid = self._pid(component)
            if _alive(pid):
                assert pid is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                stopped.append(component)
            if pid in _CHILDREN:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    _CHILDREN.pop(pid).wait(timeout=5)
            self._pid_file(component).unlink(missing_ok=True)
        self.paths.state_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> LakeStatus:
        """What runs where, and whether the server answers."""
        state = read_state(self.paths) or {}
        url = state.get("rucio_host")
        components = [
            ComponentStatus(c, self._pid(c), _alive(self._pid(c)), str(self._log(c)))
            for c in self._components()
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


def _ping(url: str) -> str | None:
    try:
        response = requests.get(f"{url}/ping", timeout=2)
        if response.ok:
            return str(response.json()["version"])
    except (requests.RequestException, ValueError, KeyError):
        return None
    return None
