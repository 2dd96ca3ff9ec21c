"""A real Dask Gateway beside the JupyterHub test's hub, authenticated through the hub.

``dask-gateway-server`` from this venv runs on loopback with its local-process backend
(``UnsafeLocalBackend``: schedulers and workers are processes of the test's own user,
running this venv's ``dask scheduler`` / ``dask worker``), next to a JupyterHub started as
``tests/integration/test_jupyterhub.py`` starts it (its configuration, the lake's OpenID
provider as the login, the session environment of docs/jupyterhub.md). The gateway is
registered as the hub service ``dask-gateway`` with its own API token and checks every
request's token with the hub (``JupyterHubAuthenticator``, with
``jupyterhub_service_name`` set, so a token needs ``access:services!service=dask-gateway``:
the ``user`` and ``server`` roles of docs/jupyterhub.md, section 7, read from that page).

In researcher alice's spawned single-user server, a kernel does what a researcher does:
``Gateway(auth="jupyterhub")`` (the address from ``DASK_GATEWAY__ADDRESS``, which the
hub's spawner sets, the token the server's own ``JUPYTERHUB_API_TOKEN``), a new cluster
scaled to two workers, ``escape_portal.analysis.connect(lake, client)``, and a
computation over the files of a sample dataset read on the workers through ``rucio://``
with her own token (carried by the portal's credentials plugin: the workers' environment
holds no token and no lake setting). The test compares what the workers read with what
the kernel reads itself and with the catalogue's checksums; checks that requests without
a hub token, with a wrong one, or with one of alice's tokens lacking the gateway's scope
are refused; and that neither her lake token nor her hub token is in the gateway's,
the scheduler's or the workers' logs. The gateway is stopped by process id at the end,
with the proxy, schedulers and workers it started; none may be left behind.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import secrets
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from escape_portal.config import LakeConfig
from escape_portal.embedded.layout import read_state
from escape_portal.embedded.supervisor import EmbeddedLake
from tests.integration.test_jupyterhub import (
    ACCOUNTS,
    GUIDE,
    HUB_START_TIMEOUT,
    PROXY,
    REQUEST_TIMEOUT,
    SPAWN_TIMEOUT,
    STOP_TIMEOUT,
    VENV_BIN,
    Hub,
    _answers,
    free_port,
    hub_config,
    stop_process_tree,
)

pytest.importorskip("dask_gateway_server")
pytest.importorskip("dask_gateway")

pytestmark = [pytest.mark.lake, pytest.mark.timeout(180)]

#: The hub service the gateway is registered as (and the name its authenticator checks).
GATEWAY_SERVICE = "dask-gateway"
#: The researcher whose session uses the gateway.
USER = "alice"
#: The sample dataset read on the workers: four FITS event lists (at DESY-DISK at first).
DATASET = "cta:crab-2024.dl3"
#: Workers the session's cluster is scaled to.
WORKERS = 2
#: Seconds the gateway may take to answer after starting.
GATEWAY_START_TIMEOUT = 30
#: Seconds a cluster may take to get its workers.
CLUSTER_TIMEOUT = 45
#: The heading of docs/jupyterhub.md's gateway section, whose roles the hub loads.
SECTION = "## 7. Dask Gateway beside the hub"


def documented_gateway_role_scopes(role: str) -> list[str]:
    """A role's scopes in the ``loadRoles`` of docs/jupyterhub.md, section 7, verbatim."""
    text = GUIDE.read_text(encoding="utf-8")
    assert SECTION in text, f"{GUIDE}: no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    roles = section.split("  loadRoles:\n", 1)[1].split("```", 1)[0]
    match = re.search(rf"^    {role}:\n\s+scopes: \[(.*?)\]", roles, re.MULTILINE | re.DOTALL)
    assert match, f"{GUIDE}, {SECTION}: no loadRoles.{role}.scopes"
    scopes = [" ".join(scope.split()) for scope in match[1].split(",")]
    assert f"access:services!service={GATEWAY_SERVICE}" in scopes, scopes
    return scopes


def gateway_hub_config(base: str, gateway_url: str) -> str:
    """The hub test's ``jupyterhub_config.py`` with the gateway registered beside it.

    The service ``dask-gateway`` with its API token (from the hub's environment, as a
    Kubernetes secret would give it), the roles of docs/jupyterhub.md section 7 (the
    section 2 roles plus access to the gateway), and the sessions told where the gateway
    is, as daskhub's chart does (``DASK_GATEWAY__ADDRESS``, ``DASK_GATEWAY__AUTH__TYPE``).
    """
    roles = {role: documented_gateway_role_scopes(role) for role in ("user", "server")}
    extra = f"""

        # -- Dask Gateway beside the hub (docs/jupyterhub.md, section 7) --
        c.JupyterHub.services.append(
            {{
                "name": {GATEWAY_SERVICE!r},
                "api_token": os.environ["ESCAPE_PORTAL_TEST_GATEWAY_TOKEN"],
            }}
        )
        for _role in c.JupyterHub.load_roles:
            if _role["name"] in {roles!r}:
                _role["scopes"] = {roles!r}[_role["name"]]
        c.Spawner.environment.update(
            {{
                "DASK_GATEWAY__ADDRESS": {gateway_url!r},
                "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
            }}
        )
    """
    return base + textwrap.dedent(extra)


def gateway_config(
    workdir: Path, *, api_port: int, proxy_port: int, hub_api_url: str, loglevel: str
) -> str:
    """The text of ``dask_gateway_config.py`` (no secret: the hub token is in the env)."""
    venv_dask = str(VENV_BIN / "dask")
    settings = f"""
        c = get_config()  # noqa: F821

        # Everything on loopback: the API server, and the proxy the clients connect to
        # (HTTP API and the schedulers' TLS, on one port).
        c.DaskGateway.address = "127.0.0.1:{api_port}"
        c.Proxy.address = "127.0.0.1:{proxy_port}"
        c.DaskGateway.log_level = {loglevel!r}

        # Users are the hub's: the gateway asks the hub who a token belongs to, and wants
        # access:services!service=dask-gateway in its scopes. The gateway's own hub token
        # comes from JUPYTERHUB_API_TOKEN in its environment.
        c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
        c.JupyterHubAuthenticator.jupyterhub_api_url = {hub_api_url!r}
        c.JupyterHubAuthenticator.jupyterhub_service_name = {GATEWAY_SERVICE!r}

        # Schedulers and workers: processes of this user, this venv's dask, their working
        # folders (and logs) below the test's folder. Only the whitelisted variables of the
        # gateway's environment reach them (PATH, VIRTUAL_ENV, LANG, ...): no lake setting.
        c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
        c.LocalBackend.clusters_directory = {str(workdir / "clusters")!r}
        c.ClusterConfig.scheduler_cmd = [{venv_dask!r}, "scheduler"]
        c.ClusterConfig.worker_cmd = [{venv_dask!r}, "worker"]
        c.ClusterConfig.worker_threads = 1
        # A download cache of their own (not this user's ~/.cache, which other tests fill),
        # so what the workers read comes from the lake.
        c.ClusterConfig.environment = {{"XDG_CACHE_HOME": {str(workdir / "cluster-cache")!r}}}
        c.ClusterConfig.cluster_max_workers = {WORKERS}
        c.ClusterConfig.cluster_start_timeout = {CLUSTER_TIMEOUT}
        c.ClusterConfig.worker_start_timeout = {CLUSTER_TIMEOUT}
    """
    return textwrap.dedent(settings)


@dataclass
class DaskGateway:
    """A running ``dask-gateway-server``: its process, the address clients use, its log."""

    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log: Path
    started: list[str] = field(default_factory=list)

    @property
    def clusters(self) -> Path:
        return self.workdir / "clusters"

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no gateway log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        """``GET`` the gateway's API through its proxy (never through an HTTP proxy)."""
        with requests.Session() as http:
            http.trust_env = False
            return http.get(f"{self.url}{path}", headers=headers or {}, timeout=REQUEST_TIMEOUT)


@dataclass
class Setup:
    """The hub with alice's server running, and the gateway beside it."""

    hub: Hub
    gateway: DaskGateway


def _gateway_answers(gateway: DaskGateway) -> bool:
    try:
        return gateway.get("/api/health").status_code == 200
    except requests.RequestException:
        return False


def _wait(
    what: str, check: Any, process: subprocess.Popen[bytes], timeout: float, log: Any
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}).\n{log()}")
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"Timed out after {timeout} s waiting for {what}.\n{log()}")


def _clean_environment() -> dict[str, str]:
    """This process's environment without lake, hub or token settings."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("RUCIO_", "ESCAPE_", "JUPYTER", "BEARER_TOKEN", "X509_", "DASK_GATEWAY")
        )
    }


@pytest.fixture(scope="module")
def setup(
    embedded_lake: EmbeddedLake,
    lake_config: LakeConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    """The hub (alice logged in, her server started) and the gateway registered with it."""
    if not PROXY.exists():
        pytest.fail(
            f"configurable-http-proxy is not installed ({PROXY} is missing): "
            "run bash scripts/setup.sh (it runs npm ci in tests/hub)."
        )
    state = read_state(embedded_lake.paths)
    assert state is not None, "the embedded lake wrote no state file"
    workdir = tmp_path_factory.mktemp("hub-gateway")
    names = ("hub_port", "public_port", "api_port", "gateway_port", "gateway_proxy_port")
    ports = dict.fromkeys(names, 0)
    while len(set(ports.values())) < len(ports):
        ports = {name: free_port() for name in names}
    gateway_url = f"http://127.0.0.1:{ports['gateway_proxy_port']}"
    hub_token, gateway_token = secrets.token_hex(32), secrets.token_hex(32)

    base = hub_config(
        workdir,
        hub_port=ports["hub_port"],
        public_port=ports["public_port"],
        api_port=ports["api_port"],
        lake=lake_config,
        token_url=f"{state['idp_url']}/token",
        ca_cert=str(state["ca_cert"]),
    )
    config = workdir / "jupyterhub_config.py"
    config.write_text(gateway_hub_config(base, gateway_url), encoding="utf-8")
    assert gateway_token not in config.read_text() and hub_token not in config.read_text()
    hub_env = _clean_environment()
    hub_env.update(
        JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
        ESCAPE_PORTAL_TEST_HUB_TOKEN=hub_token,
        ESCAPE_PORTAL_TEST_GATEWAY_TOKEN=gateway_token,
        PYTHONUNBUFFERED="1",
    )
    hub_log = workdir / "hub.log"
    with hub_log.open("wb") as log_file:
        hub_process = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config)],
            cwd=workdir,
            env=hub_env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    hub = Hub(
        process=hub_process,
        url=f"http://127.0.0.1:{ports['public_port']}",
        workdir=workdir,
        log=hub_log,
        admin_token=hub_token,
    )
    gateway: DaskGateway | None = None
    try:
        hub.wait_for("the hub's API through the proxy", lambda: _answers(hub), HUB_START_TIMEOUT)
        with hub.diagnosed():
            response = hub.login(USER, ACCOUNTS[USER])
            assert response.status_code == 302, response.status_code
            hub.spawn(USER)

            # The gateway, while the server starts.
            gateway_config_file = workdir / "dask_gateway_config.py"
            gateway_config_file.write_text(
                gateway_config(
                    workdir,
                    api_port=ports["gateway_port"],
                    proxy_port=ports["gateway_proxy_port"],
                    hub_api_url=f"http://127.0.0.1:{ports['hub_port']}/hub/api",
                    loglevel="DEBUG",
                ),
                encoding="utf-8",
            )
            gateway_env = _clean_environment()
            gateway_env.update(
                JUPYTERHUB_API_TOKEN=gateway_token,
                PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                VIRTUAL_ENV=str(VENV_BIN.parent),
                PYTHONUNBUFFERED="1",
            )
            gateway_log = workdir / "gateway.log"
            with gateway_log.open("wb") as log_file:
                gateway_process = subprocess.Popen(
                    [str(VENV_BIN / "dask-gateway-server"), "-f", str(gateway_config_file)],
                    cwd=workdir,
                    env=gateway_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            gateway = DaskGateway(gateway_process, gateway_url, workdir, gateway_log)
            _wait(
                "the gateway's API through its proxy",
                functools.partial(_gateway_answers, gateway),
                gateway_process,
                GATEWAY_START_TIMEOUT,
                gateway.log_tail,
            )
            hub.wait_for(
                f"the server of {USER}",
                functools.partial(hub.server_ready, USER),
                SPAWN_TIMEOUT,
            )
        yield Setup(hub, gateway)
    finally:
        problems = []
        if gateway is not None:
            started, orphans = stop_process_tree(gateway.process, STOP_TIMEOUT)
            gateway.started = started
            if orphans:
                problems.append(f"left running after the gateway stopped (killed): {orphans}")
            if not any("dask-gateway-proxy" in p for p in started):
                problems.append(f"the gateway's proxy was not among its processes: {started}")
            # Any process anywhere still working in a cluster's folder (the local backend
            # starts schedulers and workers there), even one no longer the gateway's child.
            leftover = [
                p.pid
                for p in psutil.process_iter(["cwd"])
                if (p.info["cwd"] or "").startswith(str(gateway.clusters))
            ]
            if leftover:
                problems.append(f"processes still running in the clusters' folder: {leftover}")
        hub_started, hub_orphans = stop_process_tree(hub_process, STOP_TIMEOUT)
        hub.http.close()
        if hub_orphans:
            problems.append(f"left running after JupyterHub stopped (killed): {hub_orphans}")
        if gateway is not None and sum("jupyterhub-singleuser" in p for p in hub_started) != 1:
            problems.append(f"not alice's server alone among the hub's processes: {hub_started}")
        assert not problems, "\n".join(problems)


# -- the tests -------------------------------------------------------------------------------


#: Run in alice's kernel: a cluster through the gateway with the session's hub token, the
#: portal connected to it, the dataset's files read on the workers and here. Prints one
#: JSON line (digests and sums, never a token).
KERNEL_GATEWAY = """
import hashlib, json, os, time, zlib
import fsspec
from dask_gateway import Gateway
from distributed import get_worker
from escape_portal import analysis
from escape_portal.lake import Lake

def read(file):
    source = file.source()  # the replica this worker reads, chosen before it reads it
    with file.open() as handle:
        data = handle.read()
    from astropy.io import fits
    import io
    with fits.open(io.BytesIO(data)) as hdus:
        energy = float(hdus["EVENTS"].data["ENERGY"].sum())
        rows = len(hdus["EVENTS"].data)
    return {
        "did": str(file.did), "adler32": "%08x" % zlib.adler32(data),
        "sha256": hashlib.sha256(data).hexdigest(), "energy": energy, "rows": rows,
        "rse": source["rse"], "scheme": source["scheme"], "rses": list(file.rses),
        "worker": get_worker().address,
        "pid": os.getpid(), "env": sorted(k for k in os.environ if k.startswith(
            ("RUCIO_", "ESCAPE_", "JUPYTERHUB", "BEARER_TOKEN"))),
    }

lake = Lake.from_instance()
gateway = Gateway(auth="jupyterhub")
began = time.monotonic()
cluster = gateway.new_cluster()
cluster.scale(WORKERS)
client = cluster.get_client()
client.wait_for_workers(WORKERS, timeout=CLUSTER_TIMEOUT)
ready = time.monotonic() - began
session = analysis.connect(lake, client)
files = session.files(DATASET)
catalogue = {str(f.did): f.adler32 for f in files}
began = time.monotonic()
remote = session.to_dask(files, read).compute()
computed = time.monotonic() - began
local = {}
for f in files:
    with fsspec.open(f.url, "rb") as handle:
        local[str(f.did)] = hashlib.sha256(handle.read()).hexdigest()
name = session.instance
held = client.run(lambda: hashlib.sha256(analysis._configs[name].token.encode()).hexdigest())
print(json.dumps({
    "cluster": cluster.name, "user": [c.name for c in gateway.list_clusters()],
    "scheduler": client.scheduler.address,
    "ready": ready, "computed": computed, "workers": sorted(held),
    "held": sorted(set(held.values())), "catalogue": catalogue, "local": local,
    "remote": remote,
}))
"""

#: Run in alice's kernel after the test read the logs: the session's hub token is in none
#: of them; the cluster is shut down. Prints one JSON line.
KERNEL_SHUTDOWN = """
import json, os, pathlib
hub_token = os.environ["JUPYTERHUB_API_TOKEN"]
found = [
    str(path) for path in map(pathlib.Path, LOGS)
    if hub_token in path.read_text(errors="replace")
]
session.close()
client.close()
cluster.shutdown()
print(json.dumps({"hub_token_in": found, "left": [c.name for c in gateway.list_clusters()]}))
"""


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_requests_without_a_good_hub_token_are_refused(setup: Setup) -> None:
    gateway, hub = setup.gateway, setup.hub
    with hub.diagnosed():
        assert gateway.get("/api/health").status_code == 200  # the gateway does answer
        assert gateway.get("/api/v1/clusters/").status_code == 401  # no token
        wrong = gateway.get(
            "/api/v1/clusters/", {"Authorization": f"jupyterhub {secrets.token_hex(32)}"}
        )
        # Refused, though not as 401: JupyterHub 6.1 answers an unknown token with 403,
        # which dask-gateway-server 2026.3 turns into its own 500 ("Permission failure").
        assert wrong.status_code in (401, 403) or (
            wrong.status_code == 500
            and wrong.json()
            == {"error": "Permission failure verifying user's JupyterHub API token"}
        ), (wrong.status_code, wrong.text[:300])
        # alice's own hub token, without the gateway's scope: the hub knows her, the
        # gateway refuses her.
        made = hub.api(
            "POST",
            f"users/{USER}/tokens",
            json={"note": "no gateway scope", "expires_in": 300, "scopes": ["read:users!user"]},
        )
        assert made.status_code == 201, made.text
        narrow = made.json()["token"]
        assert not any(s.startswith("access:services") for s in made.json()["scopes"])
        refused = gateway.get("/api/v1/clusters/", {"Authorization": f"jupyterhub {narrow}"})
        assert refused.status_code == 401, (refused.status_code, refused.text[:300])
        # And a token of hers with it (her role's scopes) is let in.
        full = gateway.get(
            "/api/v1/clusters/", {"Authorization": f"jupyterhub {hub.user_token(USER)}"}
        )
        assert full.status_code == 200, (full.status_code, full.text[:300])
        assert full.json() == {}
        log = gateway.log.read_text(errors="replace")
        assert narrow not in log and hub.user_token(USER) not in log


def test_a_session_computes_over_lake_files_on_a_gateway_cluster(setup: Setup) -> None:
    hub, gateway = setup.hub, setup.gateway
    with hub.diagnosed():
        lake_tokens = {hub.auth_state(USER)["access_token"]}
        kernel = hub.start_kernel(USER)
        code = KERNEL_GATEWAY.replace("WORKERS", str(WORKERS))
        code = code.replace("CLUSTER_TIMEOUT", str(CLUSTER_TIMEOUT))
        code = code.replace("DATASET", repr(DATASET))
        began = time.monotonic()
        answer = hub.run_in_kernel(USER, kernel, code)
        elapsed = time.monotonic() - began
        lake_tokens.add(hub.auth_state(USER)["access_token"])
        print(
            f"gateway cluster: {WORKERS} workers in {answer['ready']:.1f} s, "
            f"{len(answer['remote'])} files read in {answer['computed']:.2f} s, "
            f"kernel cell {elapsed:.1f} s; read from "
            f"{sorted({(r['rse'], r['scheme']) for r in answer['remote']})}"
        )

        # The cluster is alice's, on this gateway, its workers processes of their own.
        assert answer["user"] == [answer["cluster"]]
        assert answer["scheduler"].startswith("gateway://127.0.0.1:")
        assert len(answer["workers"]) == WORKERS
        assert all(w.startswith("tls://127.0.0.1:") for w in answer["workers"])
        gateway_log = gateway.log.read_text(errors="replace")
        assert re.search(rf"Created cluster {answer['cluster']} for user {USER}\b", gateway_log)

        # The workers hold her current lake token (from the portal's plugin), and nothing
        # of the lake or the hub is in their environment.
        assert answer["held"] and set(answer["held"]) <= {sha256(t) for t in lake_tokens}
        remote = {row["did"]: row for row in answer["remote"]}
        assert set(remote) == set(answer["catalogue"]) and len(remote) == 4
        assert {row["env"] == [] for row in remote.values()} == {True}
        assert {row["worker"] for row in remote.values()} <= set(answer["workers"])
        # ... processes the gateway started (its local backend), not the kernel's.
        spawned = {p.pid for p in psutil.Process(gateway.process.pid).children(recursive=True)}
        assert {row["pid"] for row in remote.values()} <= spawned

        # What the workers read is the catalogue's file and what the session reads itself.
        for did, row in remote.items():
            assert row["adler32"] == answer["catalogue"][did], row
            assert row["sha256"] == answer["local"][did], row
            assert row["rows"] > 0 and row["energy"] > 0, row
            # from a storage holding a replica (which ones depends on what earlier tests
            # made available), over its protocol: nothing is mounted on workers
            assert row["rse"] in row["rses"] and row["scheme"] in ("root", "davs"), row

        # Neither her lake token nor her hub token is in the gateway's, the scheduler's or
        # the workers' logs (read while the cluster runs: its folder goes when it stops).
        logs_dir = gateway.clusters / answer["cluster"] / "logs"
        logs = sorted(logs_dir.glob("*.log"))
        names = sorted(p.name for p in logs)
        assert "scheduler.log" in names, names
        assert sum(n.startswith("worker-") for n in names) == WORKERS, names
        scheduler_log = (logs_dir / "scheduler.log").read_text(errors="replace")
        assert "Register worker" in scheduler_log  # the logs are the cluster's real ones
        for path in [gateway.log, *logs]:
            text = path.read_text(errors="replace")
            for token in lake_tokens:
                assert token not in text, f"alice's lake token is in {path}"
            assert "eyJ" not in text, f"a JWT is in {path}"
        # Everything the gateway started but its proxy: the scheduler, the workers' nannies
        # and the workers.
        cluster_processes = [
            p
            for p in psutil.Process(gateway.process.pid).children(recursive=True)
            if "dask-gateway-proxy" not in " ".join(p.cmdline())
        ]
        assert len(cluster_processes) >= 1 + WORKERS, cluster_processes
        every = [str(gateway.log), *map(str, logs)]
        done = hub.run_in_kernel(USER, kernel, KERNEL_SHUTDOWN.replace("LOGS", repr(every)))
        assert done == {"hub_token_in": [], "left": []}
        # The gateway stops the cluster's processes, then removes its folder.
        deadline = time.monotonic() + STOP_TIMEOUT
        while (logs_dir.exists() or any(map(_alive, cluster_processes))) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert not [p.pid for p in cluster_processes if _alive(p)]
        assert not logs_dir.exists()
