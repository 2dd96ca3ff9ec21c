"""``GET /watches`` and ``POST /watches/{name}/stop``: the watches of this user, and a stop.

A watch runs in a notebook's kernel or in ``escape-portal watch run``; the server only
reads the store they share (:func:`escape_portal.watches.default_store`) and asks one to
stop, which its runner sees within seconds (:func:`escape_portal.watches.stop`).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from escape_portal import watches
from escape_portal.server.base import PortalHandler


def watch_list() -> dict[str, Any]:
    """Every watch, as the panel shows them."""
    return {"watches": [w.as_dict() for w in watches.list_watches()]}


def watch_stop(name: str) -> dict[str, Any]:
    """Ask watch ``name`` to stop; what it is now."""
    return watches.stop(name).as_dict()


class WatchesHandler(PortalHandler):
    """``GET /watches``: every watch, its state and what it processed."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer the watches."""
        self.reply(await self.service.run(watch_list))


class WatchStopHandler(PortalHandler):
    """``POST /watches/{name}/stop``: stop a watch wherever it runs (its record stays)."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        """Stop the watch."""
        self.reply(await self.service.run(watch_stop, name))
