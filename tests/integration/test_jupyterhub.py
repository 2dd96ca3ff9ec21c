"""A real JupyterHub on loopback spawns sessions that reach the lake as their own user.

The hub is PyPI's ``jupyterhub`` run from this venv, with configurable-http-proxy from
npm (``tests/hub``, installed by ``scripts/setup.sh``) and ``SimpleLocalProcessSpawner``
starting this venv's ``jupyterhub-singleuser``. Its login is the embedded lake's OpenID
provider, as ``GenericOAuthenticator`` logs users in at ESCAPE's IAM
(``tests/hub/lake_authenticator.py``): a password grant of the hub's client
(``jupyterhub``, whose access tokens live a minute), the access and refresh tokens kept
in the encrypted auth state, and ``refresh_user`` renewing them while the sessions run.
The sessions get no token at spawn: the hub's ``server`` role carries
``admin:auth_state!user`` (docs/jupyterhub.md, section 2), so each single-user server
reads its owner's current token from the hub's API with its own ``JUPYTERHUB_API_TOKEN``;
the instance and the compute site are the environment sections 3 and 4 of that document
tell operators to set.

The lake's researchers ``alice`` and ``bob`` log in through the hub's login form (Rucio
maps their provider identities to the accounts of the same names); a third hub user,
created by the admin API and never logged in, has no token. Through the proxy's public
URL, with a hub token of each user, the tests check that the single-user server serves
the JupyterLab extension and answers the REST API, that each session is the Rucio
account its user logged in as, and that the session without a token gets a clear JSON
error. Then the module waits, once, until the first access tokens have expired, and
checks that the same sessions (same processes, same kernel) keep browsing the lake with
the tokens the hub renewed. The hub, the proxy and the single-user servers are stopped
by process id at the end, and none may be left behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import html
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from escape_portal.config import LakeConfig
from escape_portal.embedded.idp import HUB_ACCESS_LIFETIME
from escape_portal.embedded.layout import DEMO_CLIENTS, DEMO_RESEARCHERS, read_state
from escape_portal.embedded.supervisor import EmbeddedLake

pytestmark = [pytest.mark.lake, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
HUB_DIR = ROOT / "tests" / "hub"
PROXY = HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
VENV_BIN = Path(sys.executable).parent
LABEXTENSION = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "escape-portal"
GUIDE = ROOT / "docs" / "jupyterhub.md"

#: Hub users that log in: the embedded lake's researchers (its provider's published demo
#: passwords, not secrets), each mapped by Rucio to the account of the same name.
ACCOUNTS = dict(DEMO_RESEARCHERS)
#: A hub user created by the admin API, never logged in: no auth state, no token.
NO_TOKEN_USER = "hub-nobody"
SERVICE = "escape-portal-test"

#: Seconds the hub (and its proxy) may take to answer after starting.
HUB_START_TIMEOUT = 30
#: Seconds a single-user server may take from the spawn request to ready.
SPAWN_TIMEOUT = 45
#: Seconds any one HTTP request may take.
REQUEST_TIMEOUT = 20
#: Seconds the hub may take to stop its servers and proxy and exit.
STOP_TIMEOUT = 30
#: The hub refreshes a user's auth state at most this often (``auth_refresh_age``) ...
AUTH_REFRESH_AGE = 10
#: ... and renews the access token when fewer seconds than this are left of it.
REFRESH_MARGIN = 30
#: Seconds a kernel may take to start and to run one cell.
KERNEL_TIMEOUT = 60


# -- the hub ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 8888, which Galata's test server uses)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 8888:
            return port


def documented_role_scopes(role: str) -> list[str]:
    """A role's scopes in the ``loadRoles`` of docs/jupyterhub.md (section 2), verbatim."""
    text = GUIDE.read_text(encoding="utf-8")
    roles = text.split("  loadRoles:\n", 1)[1].split("```", 1)[0]
    match = re.search(rf"^    {role}:\n\s+scopes: \[(.*?)\]", roles, re.MULTILINE)
    assert match, f"{GUIDE}: no loadRoles.{role}.scopes"
    scopes = [scope.strip() for scope in match[1].split(",")]
    assert "admin:auth_state!user" in scopes, scopes
    return scopes


def session_environment(lake: LakeConfig, ca_cert: str) -> dict[str, str]:
    """What docs/jupyterhub.md (sections 2 to 5) has operators set for every session.

    No token: the session reads it from the hub's API (``JUPYTERHUB_API_URL`` and
    ``JUPYTERHUB_API_TOKEN``, which the hub gives every server) through the portal's
    token keeper. The portal's own OAuth client (the lake's published demo ``escape-portal``
    client; a deployment's from a secret) exchanges that token for storage-audience
    tokens, and the CA bundle verifies the provider and the storage.
    """
    env = {
        "ESCAPE_PORTAL_OIDC_CLIENT_ID": "escape-portal",
        "ESCAPE_PORTAL_OIDC_CLIENT_SECRET": DEMO_CLIENTS["escape-portal"],
        "RUCIO_CA_CERT": ca_cert,
        "RUCIO_BASE_URL": lake.rucio_host,
        "RUCIO_AUTH_URL": lake.auth_host,
        "RUCIO_AUTH_TYPE": "oidc",
        "RUCIO_VO": lake.vo,
        "RUCIO_TIMEOUT": "30",
        "ESCAPE_PORTAL_INSTANCE": "env",
        "ESCAPE_COMPUTE_SITE": lake.compute_site,
        "ESCAPE_MOUNTED_RSE": lake.mounted_rse,
        "ESCAPE_MOUNT_PATH": lake.mount_path,
        "ESCAPE_CRIC_FEED": lake.cric_feed,
        "ESCAPE_NETWORK_FEED": lake.network_feed,
        "ESCAPE_BROKER_URL": lake.broker,
        "ESCAPE_BROKER_DESTINATION": lake.broker_destination,
        "ESCAPE_BROKER_VHOST": lake.broker_vhost,
        "ESCAPE_VO_URL": lake.vo_url,
    }
    return {key: value for key, value in env.items() if value}


def hub_config(
    workdir: Path,
    *,
    hub_port: int,
    public_port: int,
    api_port: int,
    lake: LakeConfig,
    token_url: str,
    ca_cert: str,
) -> str:
    """The text of the hub's ``jupyterhub_config.py`` (no secret in it)."""
    settings = f"""
        import os
        import sys

        sys.path.insert(0, {str(HUB_DIR)!r})
        from lake_authenticator import LakeOAuthenticator

        c = get_config()  # noqa: F821

        # Everything on loopback, on ports chosen by the test.
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {public_port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {hub_port}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
        c.ConfigurableHTTPProxy.command = [{str(PROXY)!r}]
        c.ConfigurableHTTPProxy.pid_file = {str(workdir / "proxy.pid")!r}
        c.JupyterHub.db_url = "sqlite:///" + {str(workdir / "jupyterhub.sqlite")!r}
        c.JupyterHub.cookie_secret_file = {str(workdir / "jupyterhub_cookie_secret")!r}
        c.JupyterHub.cleanup_servers = True
        c.JupyterHub.cleanup_proxy = True

        # The login: the lake's OpenID provider issues the tokens, the hub keeps and renews
        # them (docs/jupyterhub.md, section 2, with GenericOAuthenticator's settings).
        c.JupyterHub.authenticator_class = LakeOAuthenticator
        c.LakeOAuthenticator.token_url = {token_url!r}
        c.LakeOAuthenticator.client_id = "jupyterhub"
        c.LakeOAuthenticator.client_secret = {DEMO_CLIENTS["jupyterhub"]!r}
        c.LakeOAuthenticator.ca_cert = {ca_cert!r}
        c.LakeOAuthenticator.refresh_margin = {REFRESH_MARGIN}
        c.Authenticator.allow_all = True
        c.Authenticator.enable_auth_state = True  # JUPYTERHUB_CRYPT_KEY is in the environment
        c.Authenticator.refresh_pre_spawn = True
        c.Authenticator.auth_refresh_age = {AUTH_REFRESH_AGE}

        # The test drives the hub through its REST API as this service.
        c.JupyterHub.services = [
            {{"name": {SERVICE!r}, "api_token": os.environ["ESCAPE_PORTAL_TEST_HUB_TOKEN"]}}
        ]
        c.JupyterHub.load_roles = [
            {{
                "name": {SERVICE!r},
                "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
                "services": [{SERVICE!r}],
            }},
            # Each server may read its owner's auth state: the session's token source
            # (docs/jupyterhub.md, section 2, verbatim).
            {{"name": "user", "scopes": {documented_role_scopes("user")!r}}},
            {{"name": "server", "scopes": {documented_role_scopes("server")!r}}},
        ]

        # Sessions: this venv's jupyterhub-singleuser, homes below the test's folder.
        c.JupyterHub.spawner_class = "simple"
        c.SimpleLocalProcessSpawner.home_dir_template = {str(workdir / "home" / "{username}")!r}
        c.Spawner.cmd = [{str(VENV_BIN / "jupyterhub-singleuser")!r}]
        c.Spawner.args = {["--allow-root"] if os.geteuid() == 0 else []!r}
        c.Spawner.default_url = "/lab"
        c.Spawner.http_timeout = {SPAWN_TIMEOUT}
        c.Spawner.start_timeout = {SPAWN_TIMEOUT}
        # Spawn requests answer at once (202); the test waits for "ready" itself.
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}

        # The Rucio instance and the compute site, for every session (docs/jupyterhub.md 3-5).
        c.Spawner.environment = {session_environment(lake, ca_cert)!r}


        # The account may be named in the spawn hook (docs/jupyterhub.md, section 3): for
        # alice it is; bob's session acts as its token's default account.
        def escape_portal_account(spawner):
            if spawner.user.name == "alice":
                spawner.environment["RUCIO_ACCOUNT"] = spawner.user.name


        c.Spawner.pre_spawn_hook = escape_portal_account
    """
    return textwrap.dedent(settings)


@dataclass
class Hub:
    """A running JupyterHub: its process, URLs, admin token, and the users' hub tokens."""

    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log: Path
    admin_token: str = field(repr=False)
    http: requests.Session = field(default_factory=requests.Session, repr=False)
    user_tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the hub's log (hub, proxy and single-user servers)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no hub log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    @contextlib.contextmanager
    def diagnosed(self) -> Iterator[None]:
        """Print the hub's log tail when the block fails."""
        try:
            yield
        except BaseException:
            print(f"---- last lines of {self.log} ----\n{self.log_tail()}")
            raise

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check`` until true; fail with the hub's log tail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"JupyterHub exited ({self.process.returncode}) while waiting for {what}.\n"
                    f"{self.log_tail()}"
                )
            if check():
                return
            time.sleep(0.2)
        pytest.fail(f"Timed out after {timeout} s waiting for {what}.\n{self.log_tail()}")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to the hub's REST API (through the proxy) as the test's service."""
        return self.http.request(
            method,
            f"{self.url}/hub/api/{path}",
            headers={"Authorization": f"token {self.admin_token}"},
            timeout=REQUEST_TIMEOUT,
            **kwargs,
        )

    def login(self, username: str, password: str) -> requests.Response:
        """Submit the hub's login form, as a browser does (XSRF token included)."""
        browser = requests.Session()
        form = browser.get(f"{self.url}/hub/login", timeout=REQUEST_TIMEOUT)
        form.raise_for_status()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
        assert xsrf, "no _xsrf field in the hub's login form"
        return browser.post(
            f"{self.url}/hub/login",
            data={"username": username, "password": password, "_xsrf": html.unescape(xsrf[1])},
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )

    def spawn(self, username: str) -> None:
        """Ask the hub to start the user's server (the wait is :meth:`wait_ready`)."""
        response = self.api("POST", f"users/{username}/server")
        assert response.status_code in (201, 202), (response.status_code, response.text)

    def server_ready(self, username: str) -> bool:
        """Whether the user's default server is up and routed."""
        response = self.api("GET", f"users/{username}")
        response.raise_for_status()
        server = response.json().get("servers", {}).get("")
        return bool(server and server.get("ready"))

    def user_token(self, username: str) -> str:
        """A hub API token of ``username`` (the user's own scopes), made once."""
        if username not in self.user_tokens:
            response = self.api(
                "POST",
                f"users/{username}/tokens",
                json={"note": "escape-portal hub test", "expires_in": 600},
            )
            assert response.status_code == 201, (response.status_code, response.text)
            self.user_tokens[username] = response.json()["token"]
        return self.user_tokens[username]

    def session_get(self, username: str, path: str, **params: Any) -> requests.Response:
        """``GET /user/<username>/<path>`` through the proxy, with the user's token."""
        return self.http.get(
            f"{self.url}/user/{username}/{path}",
            params=params,
            headers={"Authorization": f"token {self.user_token(username)}"},
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )

    def auth_state(self, username: str) -> dict[str, Any]:
        """The user's auth state, read by the test's service (it does not refresh it)."""
        response = self.api("GET", f"users/{username}")
        response.raise_for_status()
        state: dict[str, Any] = response.json().get("auth_state") or {}
        return state

    def server_started(self, username: str) -> str:
        """When the user's default server started (the hub's ``started`` field)."""
        response = self.api("GET", f"users/{username}")
        response.raise_for_status()
        return str(response.json()["servers"][""]["started"])

    def start_kernel(self, username: str) -> str:
        """Start a kernel in the user's session; its id."""
        response = self.http.post(
            f"{self.url}/user/{username}/api/kernels",
            json={"name": "python3"},
            headers={"Authorization": f"token {self.user_token(username)}"},
            timeout=REQUEST_TIMEOUT,
        )
        assert response.status_code == 201, (response.status_code, response.text[:300])
        return str(response.json()["id"])

    def run_in_kernel(self, username: str, kernel: str, code: str) -> Any:
        """Run ``code`` in the kernel (websocket through the proxy); its last printed JSON."""
        return asyncio.run(self._execute(username, kernel, code))

    async def _execute(self, username: str, kernel: str, code: str) -> Any:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self.url.replace("http://", "ws://", 1)
        request = HTTPRequest(
            f"{url}/user/{username}/api/kernels/{kernel}/channels",
            headers={"Authorization": f"token {self.user_token(username)}"},
            request_timeout=REQUEST_TIMEOUT,
        )
        socket_ = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        socket_.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": username,
                        "session": uuid.uuid4().hex,
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "store_history": False},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out: list[str] = []
        deadline = time.monotonic() + KERNEL_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"the kernel did not finish in {KERNEL_TIMEOUT} s: {out}"
                raw = await asyncio.wait_for(socket_.read_message(), left)
                assert raw is not None, f"the kernel's websocket closed: {out}"
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["header"]["msg_type"], message["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind == "error":
                    pytest.fail(f"{content['ename']}: {content['evalue']}\n{''.join(out)}")
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            socket_.close()
            # Wait for the closing handshake, so the socket is closed before the loop ends.
            with contextlib.suppress(asyncio.TimeoutError):
                while await asyncio.wait_for(socket_.read_message(), REQUEST_TIMEOUT) is not None:
                    pass
        lines = [line for line in "".join(out).splitlines() if line.startswith("{")]
        assert lines, f"the kernel printed no JSON: {out}"
        return json.loads(lines[-1])

    def portal(self, username: str, path: str, **params: Any) -> tuple[int, Any]:
        """Status and JSON of the user's ``/escape-portal/api/<path>``."""
        response = self.session_get(username, f"escape-portal/api/{path}", **params)
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        return response.status_code, body


def stop_process_tree(
    process: subprocess.Popen[bytes], timeout: float
) -> tuple[list[str], list[str]]:
    """Stop the hub by its pid (SIGINT, its clean shutdown), then whatever outlived it.

    JupyterHub stops its proxy and the single-user servers when it shuts down
    (``cleanup_proxy``, ``cleanup_servers``); a process left behind is stopped here by
    its pid (SIGTERM, then SIGKILL), and named in the answer.

    Returns
    -------
    started, orphans
        ``command (pid)`` of every process the hub had started (seen just before it was
        stopped), and of those still running after it exited.

    """
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    started = [_describe(p) for p in descendants]
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def alive(proc: psutil.Process) -> bool:
        try:
            return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5
    left = [p for p in descendants if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    orphans = [_describe(p) for p in left]
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, still = psutil.wait_procs(left, timeout=5)
    for proc in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return started, orphans


def _describe(proc: psutil.Process) -> str:
    try:
        command = " ".join(Path(part).name for part in proc.cmdline()[:2])
    except psutil.Error:
        command = "?"
    return f"{command} ({proc.pid})"


@pytest.fixture(scope="module")
def hub(
    embedded_lake: EmbeddedLake,
    lake_config: LakeConfig,
    operator_config: LakeConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Hub]:
    """A JupyterHub with three users' servers started: two logged in, one without token."""
    if not PROXY.exists():
        pytest.fail(
            f"configurable-http-proxy is not installed ({PROXY} is missing): "
            "run bash scripts/setup.sh (it runs npm ci in tests/hub)."
        )
    if not (LABEXTENSION / "package.json").is_file() or not list(
        (LABEXTENSION / "static").glob("remoteEntry.*.js")
    ):
        pytest.fail(
            f"The JupyterLab extension is not built ({LABEXTENSION} has no package.json and "
            "static/remoteEntry.*.js): run bash scripts/build-extension.sh "
            "(scripts/test.sh does before pytest)."
        )
    state = read_state(embedded_lake.paths)
    assert state is not None, "the embedded lake wrote no state file"

    workdir = tmp_path_factory.mktemp("hub")
    ports = {"hub_port": 0, "public_port": 0, "api_port": 0}
    while len(set(ports.values())) < len(ports):
        ports = {name: free_port() for name in ports}
    config = workdir / "jupyterhub_config.py"
    config.write_text(
        hub_config(
            workdir,
            lake=lake_config,
            token_url=f"{state['idp_url']}/token",
            ca_cert=str(state["ca_cert"]),
            **ports,
        ),
        encoding="utf-8",
    )

    admin_token = secrets.token_hex(32)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUCIO_", "ESCAPE_", "JUPYTER", "BEARER_TOKEN", "X509_"))
    }
    env.update(
        JUPYTERHUB_CRYPT_KEY=secrets.token_hex(32),
        ESCAPE_PORTAL_TEST_HUB_TOKEN=admin_token,
        PYTHONUNBUFFERED="1",
    )
    log = workdir / "hub.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(config)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = Hub(
        process=process,
        url=f"http://127.0.0.1:{ports['public_port']}",
        workdir=workdir,
        log=log,
        admin_token=admin_token,
    )
    spawned: list[str] = []
    try:
        running.wait_for(
            "the hub's API through the proxy", lambda: _answers(running), HUB_START_TIMEOUT
        )
        with running.diagnosed():
            for username, password in ACCOUNTS.items():
                response = running.login(username, password)
                assert response.status_code == 302, (username, response.status_code)
            created = running.api("POST", f"users/{NO_TOKEN_USER}")
            assert created.status_code in (201, 409), created.text
            users = [*ACCOUNTS, NO_TOKEN_USER]
            for username in users:  # all at once: the servers start side by side
                running.spawn(username)
                spawned.append(username)
            for username in users:
                running.wait_for(
                    f"the server of {username}",
                    functools.partial(running.server_ready, username),
                    SPAWN_TIMEOUT,
                )
        yield running
    finally:
        started, orphans = stop_process_tree(process, STOP_TIMEOUT)
        running.http.close()
        if spawned:  # the check below saw the processes it is about
            assert any("configurable-http-proxy" in p for p in started), started
            assert sum("jupyterhub-singleuser" in p for p in started) == len(spawned), started
        assert not orphans, (
            f"left running after JupyterHub stopped (now killed): {orphans}\n{running.log_tail()}"
        )


def _answers(hub: Hub) -> bool:
    try:
        return hub.api("GET", "").status_code == 200
    except requests.RequestException:
        return False


# -- the tests -------------------------------------------------------------------------------


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT (not verified: Rucio and the storage verify)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


#: Run in a session's kernel: the token the hub hands the server's own API token (through
#: escape_portal.lake.hub, the keeper's hub source), its claims and the Rucio account it
#: acts as. Prints one JSON line, never the token.
KERNEL_HUB_TOKEN = """
import base64, json, os
from escape_portal.config import instance_from_env
from escape_portal.lake.auth import token_account
from escape_portal.lake.hub import fetch_hub_token

token = fetch_hub_token(
    os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"], 10,
    user=os.environ["JUPYTERHUB_USER"],
)
part = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
config = instance_from_env()
print(json.dumps({
    "sub": claims["sub"], "client_id": claims["client_id"], "exp": claims["exp"],
    "jti": claims["jti"], "account": token_account(config, token),
}))
"""

#: A FITS file at LAPP-DISK, which the storage offers over HTTP: streamed, not downloaded.
STREAMED = "cta:crab-2024.sky.0001.fits"

#: Run in a session's kernel: browse the lake and stream a file's header as the library
#: does for a researcher (the session's own token source, no token given). Prints one
#: JSON line.
KERNEL_BROWSE = """
import json, pathlib, tempfile
from escape_portal.access import Access, Cache
from escape_portal.lake import Lake

lake = Lake.from_instance()
found = sorted(
    "{scope}:{name}".format(**d.to_dict())
    for d in lake.dids("cta", PATTERN, type="dataset", filters=["target=Crab"])
)
with tempfile.TemporaryDirectory() as tmp:
    access = Access(lake, Cache(pathlib.Path(tmp)))
    with access.fits(STREAMED, stream=True) as hdul:
        ctype = hdul[0].header["CTYPE1"]
    cached = len(list(access.cache.entries()))
    # Results back into the lake at a storage not mounted here (a storage token to write),
    # then read over its protocol through rucio:// (a storage token to read).
    import os, time, fsspec
    from escape_portal.upload import upload
    result = pathlib.Path(tmp) / f"hub-result-{time.time_ns()}.dat"
    result.write_bytes(os.urandom(4096))
    [uploaded] = upload(lake, [result], rse="DESY-DISK")
    with fsspec.open(f"rucio://{uploaded.did.scope}/{uploaded.did.name}", "rb") as f:
        read_back = f.read() == result.read_bytes()
print(json.dumps({
    "account": lake.identity().account, "found": found, "ctype": ctype, "cached": cached,
    "uploaded": [uploaded.state, uploaded.did.scope, uploaded.rse], "read_back": read_back,
}))
"""


def test_login_with_a_wrong_password_is_refused(hub: Hub) -> None:
    with hub.diagnosed():
        response = hub.login("alice", "not-the-password")
        assert response.status_code == 403
        assert "Invalid username or password" in response.text


def test_the_hub_keeps_the_providers_tokens_in_the_auth_state(hub: Hub) -> None:
    with hub.diagnosed():
        for user in ACCOUNTS:
            state = hub.auth_state(user)
            assert set(state) >= {"access_token", "refresh_token", "expires_at", "scope"}
            claims = jwt_claims(state["access_token"])
            assert (claims["sub"], claims["aud"], claims["client_id"]) == (
                user,
                "rucio",
                "jupyterhub",
            )
            assert claims["exp"] - claims["iat"] == HUB_ACCESS_LIFETIME
            assert "offline_access" in state["scope"]
        assert hub.auth_state(NO_TOKEN_USER) == {}
        log = hub.log.read_text()
        assert "The provider issued tokens for alice" in log
        assert "discarding scopes" not in log  # the servers' tokens have admin:auth_state
        for user in ACCOUNTS:  # no token, refresh token or password in the hub's log
            state = hub.auth_state(user)
            assert state["access_token"] not in log and state["refresh_token"] not in log
            assert ACCOUNTS[user] not in log


def test_the_session_serves_the_lab_extension(hub: Hub) -> None:
    user = "alice"
    with hub.diagnosed():
        page = hub.session_get(user, "lab")
        assert page.status_code == 200, page.status_code
        found = re.search(
            r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
            page.text,
            re.DOTALL,
        )
        assert found, "no page config in JupyterLab's page"
        page_config = json.loads(found[1])
        [extension] = [
            e for e in page_config["federated_extensions"] if e["name"] == "escape-portal"
        ]
        disabled = page_config.get("disabledExtensions", [])
        assert not any(d.startswith("escape-portal") for d in disabled), disabled
        entry = hub.session_get(user, f"lab/extensions/escape-portal/{extension['load']}")
        assert entry.status_code == 200, entry.status_code
        assert "escape-portal" in entry.text
        settings = hub.session_get(user, "lab/api/settings")
        assert settings.status_code == 200, settings.status_code
        plugin_ids = {s["id"] for s in settings.json()["settings"]}
        assert any(i.startswith("escape-portal:") for i in plugin_ids), sorted(plugin_ids)


def test_the_session_answers_the_portal_api_on_the_hubs_instance(
    hub: Hub, lake_config: LakeConfig
) -> None:
    with hub.diagnosed():
        status, body = hub.portal("alice", "instances")
        assert status == 200, body
        assert body["active"] == "env"
        [env] = [i for i in body["instances"] if i["name"] == "env"]
        assert env["rucio_host"] == lake_config.rucio_host
        assert env["auth_type"] == "oidc" and env["account"] == "alice"
        assert env["compute_site"] == lake_config.compute_site
        assert env["mounted_rse"] == lake_config.mounted_rse
        assert "token" not in env and "password" not in env
        assert [i["name"] for i in body["instances"]] == ["env"]  # nothing else leaked in


def check_the_session_browses_as(hub: Hub, user: str, pattern: str = "*") -> None:
    """Through the proxy: the session is ``user``'s account, lists scopes, finds datasets.

    The server extension keeps listings it has paged through; a ``pattern`` not asked
    before makes the search a new request to Rucio.
    """
    status, who = hub.portal(user, "whoami")
    assert status == 200, who
    # Rucio's answer for the token the hub handed over; for bob, without RUCIO_ACCOUNT,
    # the account is the one the token maps to.
    assert who["account"] == user
    assert who["auth_type"] == "oidc" and who["instance"] == "env"
    assert who["token_expired"] is False
    status, scopes = hub.portal(user, "scopes")
    assert status == 200, scopes
    assert {"cta", "scale"} <= set(scopes["scopes"])
    status, found = hub.portal(
        user, "dids", scope="cta", pattern=pattern, type="dataset", filter="target=Crab"
    )
    assert status == 200, found
    assert {f"{d['scope']}:{d['name']}" for d in found["items"]} == {
        "cta:crab-2024.dl3",
        "cta:crab-2024.sky",
    }


@pytest.mark.parametrize("user", list(ACCOUNTS))
def test_each_session_is_the_rucio_account_its_user_logged_in_as(hub: Hub, user: str) -> None:
    with hub.diagnosed():
        check_the_session_browses_as(hub, user)


def test_a_session_without_a_token_gets_a_clear_error(hub: Hub) -> None:
    with hub.diagnosed():
        status, body = hub.portal(NO_TOKEN_USER, "instances")
        assert status == 200, body  # the extension is there, configured by the hub
        status, body = hub.portal(NO_TOKEN_USER, "whoami")
        assert status == 401, body
        assert body["error"]["type"] == "AuthenticationFailed"
        # escape_portal.lake.hub's words: the hub answered, and keeps no token for the user.
        assert body["error"]["message"] == (
            "JupyterHub keeps no token for you (no access_token in your auth state)."
        )
        assert "log in again" in body["error"]["hint"]


@dataclass
class BeforeExpiry:
    """What the sessions were before the first access tokens expired."""

    access_tokens: dict[str, str] = field(repr=False)
    expires_at: float
    started: dict[str, str]
    kernel: str
    kernel_token: dict[str, Any]


@pytest.fixture(scope="module")
def past_first_expiry(hub: Hub) -> BeforeExpiry:
    """A kernel started, the first tokens noted, then the module's only wait: past their expiry.

    The wait is the tokens' lifetime (one minute, the ``jupyterhub`` client's); every test
    that uses this fixture runs after it, against the same servers and kernel.
    """
    with hub.diagnosed():
        tokens = {user: hub.auth_state(user)["access_token"] for user in ACCOUNTS}
        expires_at = max(float(jwt_claims(t)["exp"]) for t in tokens.values())
        started = {user: hub.server_started(user) for user in ACCOUNTS}
        kernel = hub.start_kernel("alice")
        kernel_token = hub.run_in_kernel("alice", kernel, KERNEL_HUB_TOKEN)
        assert (kernel_token["sub"], kernel_token["account"]) == ("alice", "alice")
        assert kernel_token["client_id"] == "jupyterhub"
        # The only wait of this module: until every first token has expired.
        time.sleep(max(0.0, expires_at - time.time() + 5))
        assert time.time() > expires_at
    return BeforeExpiry(tokens, expires_at, started, kernel, kernel_token)


def test_past_the_first_expiry_the_hub_hands_servers_a_renewed_token(
    hub: Hub, past_first_expiry: BeforeExpiry
) -> None:
    """Through what exists today: the server's own hub token, the hub's refresh_user."""
    before = past_first_expiry
    with hub.diagnosed():
        after = hub.run_in_kernel("alice", before.kernel, KERNEL_HUB_TOKEN)
        assert (after["sub"], after["account"]) == ("alice", "alice")
        assert after["jti"] != before.kernel_token["jti"]
        assert after["exp"] > time.time() + 1, "the hub handed over an expired token"
        assert "Renewed the tokens of alice" in hub.log.read_text()


@pytest.mark.parametrize("user", list(ACCOUNTS))
def test_past_the_first_expiry_each_session_keeps_browsing_with_no_restart(
    hub: Hub, past_first_expiry: BeforeExpiry, user: str
) -> None:
    """The server extension's REST API, through the proxy, on the token the hub renewed.

    Needs the session's token keeper to read the hub (escape_portal.lake.tokens).
    INTEGRATOR: the REST API's streaming and upload endpoints, past the first expiry,
    join here once the data path and upload land.
    """
    before = past_first_expiry
    with hub.diagnosed():
        check_the_session_browses_as(hub, user, pattern="crab-*")
        assert hub.server_started(user) == before.started[user]  # the same server
        renewed = hub.auth_state(user)["access_token"]
        assert renewed != before.access_tokens[user]
        assert float(jwt_claims(renewed)["exp"]) > before.expires_at


def test_past_the_first_expiry_the_kernel_keeps_browsing(
    hub: Hub, past_first_expiry: BeforeExpiry
) -> None:
    """The library in the kernel started before the expiry, with no token given to it.

    It browses, streams a FITS header (``escape_portal.access``, ``stream=True``: range
    requests, nothing downloaded), uploads a result to a storage element not mounted here
    and reads it back through ``rucio://`` over that storage's protocol: the session's
    token keeper re-reads the hub, and exchanges the renewed token for storage tokens.
    """
    with hub.diagnosed():
        code = KERNEL_BROWSE.replace("PATTERN", repr("crab-2024.*"))
        code = code.replace("STREAMED", repr(STREAMED))
        answer = hub.run_in_kernel("alice", past_first_expiry.kernel, code)
        assert answer == {
            "account": "alice",
            "found": ["cta:crab-2024.dl3", "cta:crab-2024.sky"],
            "ctype": "RA---TAN",
            "cached": 0,
            "uploaded": ["uploaded", "user.alice", "DESY-DISK"],
            "read_back": True,
        }
