"""Dask's dashboard in JupyterLab: dask-labextension's server side and jupyter-server-proxy.

A real Jupyter server (pytest-jupyter's, on 127.0.0.1) with the ``dask_labextension`` and
``jupyter_server_proxy`` server extensions, and a cluster of
:func:`escape_portal.analysis.local_cluster` serving its dashboard on a free loopback
port: the extension's REST API answers, its dashboard check finds the dashboard, and the
dashboard is reachable through the server at ``proxy/<port>/`` (what the dashboard panes
load on a hub). No lake is needed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote, urlparse

import pytest
from traitlets.config import Config

from escape_portal import analysis

pytest.importorskip("distributed")
pytest.importorskip("dask_labextension")
pytest.importorskip("jupyter_server_proxy")

pytest_plugins = ["pytest_jupyter.jupyter_server"]
# dask-labextension 7.0.0 still names its entry points the old way (jupyter_server warns;
# the tests' "error" filter would refuse to load it).
pytestmark = pytest.mark.filterwarnings(
    "ignore:A `_jupyter_server_extension_points` function was not found:DeprecationWarning",
    "ignore:A `_load_jupyter_server_extension` function was not found:DeprecationWarning",
)

Fetch = Callable[..., Awaitable[Any]]


@pytest.fixture()
def jp_server_config() -> Config:
    return Config(
        {
            "ServerApp": {
                "ip": "127.0.0.1",
                "jpserver_extensions": {"dask_labextension": True, "jupyter_server_proxy": True},
            }
        }
    )


@pytest.fixture()
def dashboard_port() -> Iterator[int]:
    """A portal cluster (2 in-process workers) with its dashboard on a free loopback port."""
    cluster = analysis.local_cluster(dashboard_address="127.0.0.1:0")
    try:
        port = urlparse(cluster.dashboard_link).port
        assert port, cluster.dashboard_link
        yield port
    finally:
        cluster.close(timeout=10)


async def test_the_server_extension_answers(jp_fetch: Fetch) -> None:
    response = await jp_fetch("dask", "clusters", request_timeout=10)
    assert response.code == 200
    assert json.loads(response.body) == []  # no cluster started from the sidebar


async def test_the_dashboard_is_found_and_proxied(jp_fetch: Fetch, dashboard_port: int) -> None:
    # The labextension's check of a dashboard URL typed in (or found in the kernel).
    link = quote(f"http://127.0.0.1:{dashboard_port}/status", safe="")
    response = await jp_fetch("dask", "dashboard-check", link, request_timeout=20)
    found = json.loads(response.body)
    assert found["isActive"] is True, found
    assert "/individual-task-stream" in found["plots"].values()

    # Through jupyter-server-proxy, as a browser on a hub reaches it: for a link under the
    # server's base URL ("{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status") the labextension
    # asks for individual-plots.json itself, with the session's credentials (its
    # server-side dashboard-check fetches without them and would not get through).
    response = await jp_fetch(
        "proxy", str(dashboard_port), "individual-plots.json", request_timeout=20
    )
    assert response.code == 200
    assert "Individual Task Stream" in json.loads(response.body)
    response = await jp_fetch("proxy", str(dashboard_port), "status", request_timeout=20)
    assert response.code == 200
    assert b"bokeh" in response.body.lower()


def test_the_link_a_hub_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``distributed.dashboard.link`` as docs/analysis.md says: the link through the proxy."""
    import dask

    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    link = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"
    with dask.config.set({"distributed.dashboard.link": link}):
        cluster = analysis.local_cluster(dashboard_address="127.0.0.1:0")
        try:
            port = cluster.scheduler.http_server.port
            assert cluster.dashboard_link == f"/user/alice/proxy/{port}/status"
        finally:
            cluster.close(timeout=10)
