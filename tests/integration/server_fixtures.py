"""A Jupyter server with the ESCAPE Portal extension, pointed at the embedded lake."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from escape_portal.config import LakeConfig

Fetch = Callable[..., Awaitable[Any]]


def server_config(lake_config: LakeConfig, tmp_path: Path, **server_app: Any) -> Config:
    return Config(
        {
            "ServerApp": {"jpserver_extensions": {"escape_portal": True}, **server_app},
            "EscapePortal": {
                "instance_name": "embedded",
                "cache_dir": str(tmp_path / "download-cache"),
                "max_workers": 4,
            },
        }
    )


def lake_environment(monkeypatch: pytest.MonkeyPatch, lake_dir: Path, tmp_path: Path) -> None:
    """Only the embedded lake is configured (as the CLI tests' environment)."""
    import os

    for key in list(os.environ):
        if key.startswith(("RUCIO_", "ESCAPE_PORTAL_", "ESCAPE_COMPUTE", "ESCAPE_MOUNT")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ESCAPE_PORTAL_LAKE_DIR", str(lake_dir))
    monkeypatch.setenv("ESCAPE_PORTAL_CONFIG", str(tmp_path / "no-instances.toml"))


async def get_json(fetch: Fetch, path: str, **params: Any) -> tuple[int, Any]:
    """GET ``/escape-portal/api/<path>``: status and JSON, never raising on HTTP errors."""
    response = await fetch(
        "escape-portal", "api", *path.split("/"), params=params, raise_error=False
    )
    return response.code, json.loads(response.body)


async def post_json(fetch: Fetch, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = await fetch(
        "escape-portal",
        "api",
        *path.split("/"),
        method="POST",
        body=json.dumps(body),
        raise_error=False,
    )
    return response.code, json.loads(response.body)
