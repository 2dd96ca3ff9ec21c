"""Every handler of the extension refuses requests that are not authenticated.

The server runs with ``allow_unauthenticated_access`` on and XSRF checks off, so that
jupyter_server's own defences step aside: only the handlers' ``@web.authenticated``
stands between an anonymous request and the lake. A handler registered without it
fails this test (and so does a handler left out of the route table's check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.server.routes import API_PREFIX, ROUTES, methods
from tests.integration.server_fixtures import Fetch, lake_environment, server_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.lake

SAMPLE = {"scope": "cta", "name": "crab-2024.dl3", "rule_id": "0" * 32}
BODIES = {
    "/make-available": {"dids": ["cta:crab-2024.dl3"]},
    "/download": {"did": "cta:x"},
    "/instances/active": {"name": "embedded"},
}


@pytest.fixture()
def jp_server_config(
    embedded_lake: EmbeddedLake,
    lake_config: LakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Config:
    lake_environment(monkeypatch, embedded_lake.paths.root, tmp_path)
    return server_config(
        lake_config, tmp_path, allow_unauthenticated_access=True, disable_check_xsrf=True
    )


def _requests() -> list[tuple[str, str]]:
    return [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], template))
        for template, handler in ROUTES
        for method in sorted(methods(handler))
    ]


def _patterns(router: Any) -> Iterator[str]:
    """URL patterns of every rule of a Tornado router, nested routers included."""
    for rule in getattr(router, "rules", []):
        regex = getattr(rule.matcher, "regex", None)
        if regex is not None:
            yield regex.pattern
        yield from _patterns(rule.target)


def test_every_route_is_checked() -> None:
    assert len(_requests()) >= len(ROUTES) == 21


async def test_every_handler_refuses_anonymous_requests(
    jp_fetch: Fetch, jp_serverapp: object
) -> None:
    registered = {
        pattern
        for pattern in _patterns(jp_serverapp.web_app.default_router)  # type: ignore[attr-defined]
        if API_PREFIX in pattern
    }
    assert len(registered) == len(ROUTES)  # nothing registered outside the route table
    open_ones = []
    for method, path in _requests():
        template = path.split("?")[0]
        body = json.dumps(BODIES.get(template, {})) if method == "POST" else None
        response = await jp_fetch(
            *f"escape-portal/api{path}".split("/"),
            method=method,
            body=body,
            headers={"Authorization": ""},
            raise_error=False,
            follow_redirects=False,
        )
        if response.code not in (401, 403):
            open_ones.append((method, path, response.code))
        else:
            assert json.loads(response.body)["error"]["type"] == "HTTPError"
    assert not open_ones, f"answered without authentication: {open_ones}"


async def test_with_the_token_the_same_requests_get_through(jp_fetch: Fetch) -> None:
    response = await jp_fetch("escape-portal", "api", "whoami", raise_error=False)
    assert response.code == 200
