"""ESCAPE Portal's Jupyter server extension: the REST API under ``/escape-portal/api``.

Enabled on ``pip install`` by ``jupyter-config/jupyter_server_config.d/escape_portal.json``;
configured with ``c.EscapePortal.*`` (see :class:`EscapePortal`) and the environment
variables of :mod:`escape_portal.config`. The API is described in ``openapi.yaml`` beside
this file and in ``docs/server-api.md``.
"""

from __future__ import annotations

from typing import Any

from escape_portal.server.app import EscapePortal

__all__ = ["EscapePortal"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "escape_portal.server", "app": EscapePortal}]
