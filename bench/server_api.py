"""Benchmark: the server extension's REST API vs the Rucio JupyterLab extension's, same lake.

Both run as real Jupyter servers (one fresh server process per dataset, so every first
request is cold and the peak memory is that dataset's), against the embedded lake:

- ours: ``escape_portal`` from the project's ``.venv``, ``/escape-portal/api/...``;
- the peer: ``rucio-jupyterlab`` 41.0.0 (PyPI) in a separate venv (``--peer-venv``,
  default ``.cache/bench-venv``; made with ``python -m venv`` and
  ``pip install rucio-jupyterlab==41.0.0``), ``/rucio-jupyterlab/...``, in its
  ``replica`` mode with the lake's mounted storage, logged in with the lake's userpass.

For ``scale:files-100`` / ``files-10k`` / ``files-100k`` it measures the time to the first
page of files (ours: 100 rows; the peer has no pages: its whole listing), the time to
the complete listing (ours: pages of 10,000 following the cursors; the peer: its
listing re-fetched), a search over datasets, the replica status of the dataset (ours:
the summary by storage; the peer: its DID details, per file), and the server's peak RSS
(``VmHWM``). It prints the ratios peer / ours (above 1: we are faster / smaller).

    .venv/bin/python bench/server_api.py [--data-dir DIR] [--peer-venv DIR] [--repeat 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from listing import _rucio_cli
from running_lake import running_lake

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("scale:files-100", "scale:files-10k", "scale:files-100k")
TOKEN = "bench-token"
TIMEOUT = 900.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A Jupyter server in its own process, with a token."""

    def __init__(self, executable: Path, config: str, env: dict[str, str], work: Path) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config_file = work / "jupyter_server_config.py"
        config_file.write_text(config)
        self.log = (work / "server.log").open("w")
        self.proc = subprocess.Popen(
            [
                str(executable),
                f"--config={config_file}",
                f"--port={self.port}",
                "--ip=127.0.0.1",
                "--no-browser",
                "--allow-root",
                f"--ServerApp.token={TOKEN}",
                f"--ServerApp.root_dir={work}",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {TOKEN}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.session.get(f"{self.base}/api/status", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Jupyter server did not start; see {work / 'server.log'}")

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON answer (raises on HTTP errors)."""
        response = self.session.get(f"{self.base}{path}", params=params, timeout=TIMEOUT)
        if not response.ok:
            raise RuntimeError(f"GET {path} {params}: {response.status_code} {response.text[:300]}")
        return response.json()

    def put(self, path: str, body: dict[str, Any]) -> None:
        """PUT a JSON body."""
        response = self.session.put(f"{self.base}{path}", json=body, timeout=60)
        if not response.ok:
            raise RuntimeError(f"PUT {path}: {response.status_code} {response.text[:300]}")

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        """Stop the server process (by its id)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


# -- ours -----------------------------------------------------------------------------------


def _ours(lake_dir: Path, did: str, work: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "ESCAPE_"))}
    env.update(
        ESCAPE_PORTAL_LAKE_DIR=str(lake_dir),
        ESCAPE_PORTAL_CONFIG=str(work / "no-instances.toml"),
        HOME=str(work),
    )
    config = (
        "c.ServerApp.jpserver_extensions = {'escape_portal': True}\n"
        "c.EscapePortal.instance_name = 'embedded'\n"
        f"c.EscapePortal.cache_dir = {str(work / 'cache')!r}\n"
    )
    server = Server(ROOT / ".venv" / "bin" / "jupyter-server", config, env, work)
    try:
        scope, name = did.split(":")
        path = f"/escape-portal/api/dids/{scope}/{urllib.parse.quote(name, safe='')}"
        first, page = _timed(lambda: server.get(f"{path}/contents", limit=100))
        assert len(page["items"]) == min(100, page["did"]["length"])

        def everything() -> int:
            n, cursor = 0, None
            while True:
                params: dict[str, Any] = {"limit": 10_000}
                if cursor:
                    params["cursor"] = cursor
                body = server.get(f"{path}/contents", **params)
                n += len(body["items"])
                cursor = body["next_cursor"]
                if cursor is None:
                    return n

        full, n = _timed(everything)
        assert n == page["did"]["length"], (n, page["did"]["length"])
        search, found = _timed(
            lambda: server.get("/escape-portal/api/dids", scope="cta", type="dataset", limit=1000)
        )
        assert found["items"]
        replicas, summary = _timed(lambda: server.get(f"{path}/replicas"))
        assert summary["replicas"]
        return {
            "first": first,
            "all": full,
            "search": search,
            "replicas": replicas,
            "rss_mib": server.peak_rss_mib(),
            "files": n,
        }
    finally:
        server.stop()


# -- the peer -------------------------------------------------------------------------------


def _peer(lake: Any, peer_venv: Path, did: str, work: Path) -> dict[str, float]:
    config = lake.config
    instance = {
        "name": "embedded",
        "display_name": "Embedded lake",
        "rucio_base_url": config.rucio_host,
        "rucio_auth_url": config.auth_host,
        "site_name": config.compute_site,
        "mode": "replica",
        "destination_rse": config.mounted_rse,
        "rse_mount_path": config.mount_path,
        "wildcard_enabled": True,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "ESCAPE_"))}
    env.update(HOME=str(work))
    server = Server(
        peer_venv / "bin" / "jupyter-server",
        "c.ServerApp.jpserver_extensions = {'rucio_jupyterlab': True}\n"
        f"c.RucioConfig.instances = [{instance!r}]\n",
        env,
        work,
    )
    try:  # what its UI does: pick the instance and the auth method, then log in
        server.put("/rucio-jupyterlab/instances", {"instance": "embedded", "auth": "userpass"})
        server.put(
            "/rucio-jupyterlab/auth",
            {
                "namespace": "embedded",
                "type": "userpass",
                "params": {
                    "username": config.username,
                    "password": config.password,
                    "account": config.account,
                },
            },
        )
        base = "/rucio-jupyterlab"
        first, files = _timed(lambda: server.get(f"{base}/files", namespace="embedded", did=did))
        full, again = _timed(
            lambda: server.get(f"{base}/files", namespace="embedded", did=did, poll="1")
        )
        assert len(files) == len(again)
        search, found = _timed(
            lambda: server.get(
                f"{base}/did-search", namespace="embedded", did="cta:*", type="dataset"
            )
        )
        assert found
        replicas, details = _timed(
            lambda: server.get(f"{base}/did", namespace="embedded", did=did, force="1")
        )
        assert details
        return {
            "first": first,
            "all": full,
            "search": search,
            "replicas": replicas,
            "rss_mib": server.peak_rss_mib(),
            "files": len(files),
        }
    finally:
        server.stop()


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> int:
    """Run the benchmark and print times, memory and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="embedded lake data directory")
    parser.add_argument("--peer-venv", default=str(ROOT / ".cache" / "bench-venv"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    args = parser.parse_args()

    embedded, lake = running_lake(args.data_dir)
    peer_venv = Path(args.peer_venv)
    have_peer = (peer_venv / "bin" / "jupyter-server").exists()
    if not have_peer:
        print(f"no peer venv at {peer_venv}: measuring ours only", file=sys.stderr)

    # The target for the complete listing is Rucio's own CLI (`rucio list-files`).
    from escape_portal.embedded.layout import DEMO_PASSWORD, DEMO_USERNAME

    cli_dir = tempfile.TemporaryDirectory()
    cfg = Path(cli_dir.name) / "rucio.cfg"
    cfg.write_text(
        "[client]\n"
        f"rucio_host = {lake.config.rucio_host}\nauth_host = {lake.config.rucio_host}\n"
        f"auth_type = userpass\naccount = {lake.config.account}\n"
        f"username = {DEMO_USERNAME}\npassword = {DEMO_PASSWORD}\nrequest_retries = 0\n"
    )
    cli_env = dict(os.environ, RUCIO_CONFIG=str(cfg))
    cli_all: dict[str, float] = {}

    results: dict[str, dict[str, dict[str, float]]] = {}
    for did in args.datasets:
        cli_all[did] = statistics.median(
            _rucio_cli(did, cli_env)["all"] for _ in range(args.repeat)
        )
        sides: dict[str, Callable[[Path], dict[str, float]]] = {
            "ours": functools.partial(_ours, embedded.paths.root, did)
        }
        if have_peer:
            sides["peer"] = functools.partial(_peer, lake, peer_venv, did)
        results[did] = {}
        for side, run in sides.items():
            runs = []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as work:
                    runs.append(run(Path(work)))
            results[did][side] = _median(runs)

    head = f"{'dataset':18} {'measure':12} {'ours':>10} {'rucio-jupyterlab':>17} {'ratio':>8}"
    print(head)
    print("-" * len(head))
    units = {
        "first": "s",
        "all": "s",
        "search": "s",
        "replicas": "s",
        "rss_mib": "MiB",
    }
    for did, sides_done in results.items():
        ours = sides_done["ours"]
        peer = sides_done.get("peer")
        for key, unit in units.items():
            theirs = f"{peer[key]:.2f} {unit}" if peer else "-"
            ratio = f"{peer[key] / ours[key]:.1f}x" if peer and ours[key] else "-"
            print(f"{did:18} {key:12} {ours[key]:>8.2f} {unit:3} {theirs:>15} {ratio:>8}")
        cli = f"{cli_all[did]:.2f} s"
        print(
            f"{did:18} {'all vs CLI':12} {ours['all']:>8.2f} s   {cli:>15} "
            f"{cli_all[did] / ours['all']:>7.1f}x   (rucio list-files)"
        )
    cli_dir.cleanup()
    print(
        "\nfirst: first page (ours 100 rows; the peer's whole listing, it has no pages); "
        "all: complete listing (ours in pages of 10,000); search: datasets of scope cta; "
        "replicas: replica status of the dataset; rss_mib: server peak RSS. "
        "ratio = peer / ours."
    )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
