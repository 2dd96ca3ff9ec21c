"""A real JupyterHub on loopback spawns sessions that reach the lake as their own user.

The hub is PyPI's ``jupyterhub`` run from this venv, with configurable-http-proxy from
npm (``tests/hub``, installed by ``scripts/setup.sh``), ``SimpleLocalProcessSpawner``
starting this venv's ``jupyterhub-singleuser``, and a login that plays the OIDC
provider's part (``tests/hub/lake_authenticator.py``): the lake's Rucio authentication
server checks the password and issues the token the hub keeps, encrypted, in the user's
auth state. The token reaches the session through the ``auth_state_hook`` of
``docs/jupyterhub.md`` (Variant A), read from the document itself, so the documented
snippet is the one tested; the instance and the compute site are the environment
section 3 and 4 of that document tell operators to set.

Two Rucio accounts (``hub-alice``, ``hub-bob``, created once in the test lake with its
root credentials) log in through the hub's login form; a third hub user, created by the
admin API and never logged in, has no token. Through the proxy's public URL, with a hub
token of each user, the tests check that the single-user server serves the JupyterLab
extension and answers the REST API, that each session is the Rucio account its user
logged in as, and that the session without a token gets a clear JSON error. The hub,
the proxy and the single-user servers are stopped by process id at the end, and none
may be left behind.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import Lake

pytestmark = [pytest.mark.lake, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
HUB_DIR = ROOT / "tests" / "hub"
PROXY = HUB_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
VENV_BIN = Path(sys.executable).parent
LABEXTENSION = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "escape-portal"
GUIDE = ROOT / "docs" / "jupyterhub.md"

#: Hub users that log in; each is a Rucio account of the same name with a userpass
#: identity of the same name. The passwords are test credentials of a catalogue bound to
#: 127.0.0.1 (like the embedded lake's published demo password), not secrets.
ACCOUNTS = {"hub-alice": "hub-alice-lake-pass", "hub-bob": "hub-bob-lake-pass"}
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


# -- the lake's side: accounts for the hub's users ------------------------------------------


def ensure_lake_accounts(root: LakeConfig, accounts: dict[str, str]) -> None:
    """Create each Rucio account with a userpass identity of its name, unless it exists.

    Parameters
    ----------
    root
        The embedded lake's instance with its root credentials.
    accounts
        Account (and identity) names and their passwords.

    """
    from rucio.common.exception import Duplicate

    client = Lake(root).client
    for account, password in accounts.items():
        with contextlib.suppress(Duplicate):
            client.add_account(account, "USER", f"{account}@escape.invalid")
        with contextlib.suppress(Duplicate):
            client.add_identity(
                account, account, "USERPASS", f"{account}@escape.invalid", password=password
            )


# -- the hub ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 8888, which Galata's test server uses)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != 8888:
            return port


def documented_auth_state_hook() -> str:
    """The Variant A snippet of ``docs/jupyterhub.md``, verbatim."""
    section = GUIDE.read_text(encoding="utf-8").split("### Variant A", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"{GUIDE}: no python block under 'Variant A'"
    code = match.group(1)
    assert "c.Spawner.auth_state_hook" in code, code
    return code


def session_environment(lake: LakeConfig) -> dict[str, str]:
    """What docs/jupyterhub.md (sections 3 to 5) has operators set for every session."""
    env = {
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
    workdir: Path, *, hub_port: int, public_port: int, api_port: int, lake: LakeConfig
) -> str:
    """The text of the hub's ``jupyterhub_config.py`` (no secret in it)."""
    settings = f"""
        import os
        import sys

        sys.path.insert(0, {str(HUB_DIR)!r})
        from lake_authenticator import LakeLoginAuthenticator

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

        # The login: the lake's authentication server issues the user's token.
        c.JupyterHub.authenticator_class = LakeLoginAuthenticator
        c.LakeLoginAuthenticator.auth_url = {lake.auth_host!r}
        c.Authenticator.allow_all = True
        c.Authenticator.enable_auth_state = True  # JUPYTERHUB_CRYPT_KEY is in the environment

        # The test drives the hub through its REST API as this service.
        c.JupyterHub.services = [
            {{"name": {SERVICE!r}, "api_token": os.environ["ESCAPE_PORTAL_TEST_HUB_TOKEN"]}}
        ]
        c.JupyterHub.load_roles = [
            {{
                "name": {SERVICE!r},
                "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
                "services": [{SERVICE!r}],
            }}
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
        c.Spawner.environment = {session_environment(lake)!r}


        # The account may be named in the spawn hook (docs/jupyterhub.md, section 3): for
        # hub-alice it is; hub-bob's session acts as its token's default account.
        def escape_portal_account(spawner):
            if spawner.user.name == "hub-alice":
                spawner.environment["RUCIO_ACCOUNT"] = spawner.user.name


        c.Spawner.pre_spawn_hook = escape_portal_account

        # docs/jupyterhub.md, "Variant A - the token in the environment at spawn", verbatim:
    """
    return textwrap.dedent(settings) + documented_auth_state_hook()


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
    ensure_lake_accounts(operator_config, ACCOUNTS)  # accounts are the operator's to add

    workdir = tmp_path_factory.mktemp("hub")
    ports = {"hub_port": 0, "public_port": 0, "api_port": 0}
    while len(set(ports.values())) < len(ports):
        ports = {name: free_port() for name in ports}
    config = workdir / "jupyterhub_config.py"
    config.write_text(hub_config(workdir, lake=lake_config, **ports), encoding="utf-8")

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


def test_login_with_a_wrong_password_is_refused(hub: Hub) -> None:
    with hub.diagnosed():
        response = hub.login("hub-alice", "not-the-password")
        assert response.status_code == 403
        assert "Invalid username or password" in response.text


def test_the_session_serves_the_lab_extension(hub: Hub) -> None:
    user = "hub-alice"
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
        status, body = hub.portal("hub-alice", "instances")
        assert status == 200, body
        assert body["active"] == "env"
        [env] = [i for i in body["instances"] if i["name"] == "env"]
        assert env["rucio_host"] == lake_config.rucio_host
        assert env["auth_type"] == "oidc" and env["account"] == "hub-alice"
        assert env["compute_site"] == lake_config.compute_site
        assert env["mounted_rse"] == lake_config.mounted_rse
        assert "token" not in env and "password" not in env
        assert [i["name"] for i in body["instances"]] == ["env"]  # nothing else leaked in


@pytest.mark.parametrize("user", list(ACCOUNTS))
def test_each_session_is_the_rucio_account_its_user_logged_in_as(hub: Hub, user: str) -> None:
    with hub.diagnosed():
        status, who = hub.portal(user, "whoami")
        assert status == 200, who
        # Rucio's answer for the token the hub handed over; for hub-bob, without
        # RUCIO_ACCOUNT, the account is the one the token maps to.
        assert who["account"] == user
        assert who["auth_type"] == "oidc" and who["instance"] == "env"
        assert who["token_expired"] is False
        status, scopes = hub.portal(user, "scopes")
        assert status == 200, scopes
        assert {"cta", "scale"} <= set(scopes["scopes"])
        status, found = hub.portal(user, "dids", scope="cta", type="dataset", filter="target=Crab")
        assert status == 200, found
        assert {f"{d['scope']}:{d['name']}" for d in found["items"]} == {
            "cta:crab-2024.dl3",
            "cta:crab-2024.sky",
        }


def test_a_session_without_a_token_gets_a_clear_error(hub: Hub) -> None:
    with hub.diagnosed():
        status, body = hub.portal(NO_TOKEN_USER, "instances")
        assert status == 200, body  # the extension is there, configured by the hub
        status, body = hub.portal(NO_TOKEN_USER, "whoami")
        assert status == 401, body
        assert body["error"]["type"] == "AuthenticationFailed"
        assert body["error"]["message"] == "No OIDC token was given."
        assert "RUCIO_ACCESS_TOKEN" in body["error"]["hint"]
        assert f"No auth state for {NO_TOKEN_USER}: no Rucio token" in hub.log.read_text()
