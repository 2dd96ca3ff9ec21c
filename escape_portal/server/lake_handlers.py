"""Handlers of the lake: instances, who you are, browse and search, DID details, replicas, rules.

Each handler parses its request and calls one function of this module in the service's
thread pool; those functions call :class:`escape_portal.lake.Lake` and shape its records
(``to_dict()``) into the JSON the API describes (``openapi.yaml``).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from escape_portal.errors import InvalidRequest, LakeError
from escape_portal.lake import DID
from escape_portal.server.base import PortalHandler, path_did
from escape_portal.server.service import PortalService

DEFAULT_LIMIT = 100


def _page_body(items: list[dict[str, Any]], next_cursor: str | None, limit: int) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor, "limit": limit}


# -- work done in the thread pool -------------------------------------------------------------


def instances(service: PortalService) -> dict[str, Any]:
    """Configured instances (no secrets) and the one in use."""
    found = service.instances()
    try:
        active: str | None = service.config().name
    except LakeError:
        active = None
    return {
        "active": active,
        "instances": [{**c.public(), "active": c.name == active} for c in found.values()],
    }


def whoami(service: PortalService) -> dict[str, Any]:
    """Identity on the instance and the token's validity."""
    who = service.lake.identity()
    left = who.token_valid_for
    return {
        "instance": who.instance,
        "rucio_host": who.rucio_host,
        "account": who.account,
        "auth_type": who.auth_type,
        "token_expires_at": who.token_expires_at.isoformat() if who.token_expires_at else None,
        "token_valid_seconds": None if left is None else max(0, int(left.total_seconds())),
        "token_expired": left is not None and left.total_seconds() <= 0,
        "token_renewable": who.token_renewable,
        "token_notice": who.expiry_notice(),
    }


def search(
    service: PortalService,
    scope: str,
    pattern: str,
    type_: str,
    filters: list[str],
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """One page of the DIDs of a scope matching a name pattern, type and metadata filters."""
    lake = service.lake
    key = ("dids", lake.config.name, scope, pattern, type_, tuple(filters))
    page = service.listings.page(
        key,
        lambda: lake.dids(scope, pattern, type=type_, filters=filters or None),
        size=limit,
        cursor=cursor,
    )
    return _page_body([d.to_dict() for d in page.items], page.next_cursor, limit)


def details(service: PortalService, did: DID) -> dict[str, Any]:
    """Type, size, metadata and parents of a DID."""
    lake = service.lake
    info = lake.info(did)
    return {
        "did": str(did),
        **info.to_dict(),
        "metadata": lake.metadata(did),
        "parents": [p.to_dict() for p in lake.parents(did)],
    }


def contents(service: PortalService, did: DID, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of what a DID holds: the files of a dataset, the children of a container."""
    lake = service.lake
    info = lake.info(did)
    if info.type == "file":
        raise InvalidRequest(
            f"{did} is a file: it holds nothing.",
            f"Ask for its details at /dids/{did.scope}/{did.name} instead.",
        )
    if info.type == "dataset":
        files = service.listings.page(
            ("files", lake.config.name, str(did)),
            lambda: lake.files(did),
            size=limit,
            cursor=cursor,
        )
        items = [{**f.to_dict(), "type": "file"} for f in files.items]
        next_cursor = files.next_cursor
    else:
        children = service.listings.page(
            ("contents", lake.config.name, str(did)),
            lambda: lake.contents(did),
            size=limit,
            cursor=cursor,
        )
        items = [c.to_dict() for c in children.items]
        next_cursor = children.next_cursor
    return {"did": info.to_dict(), **_page_body(items, next_cursor, limit)}


def replicas(service: PortalService, did: DID) -> dict[str, Any]:
    """How much of a DID each storage element holds, and how far each is from the compute."""
    summary = service.lake.dataset_replicas(did)
    topology, site = service.topology()
    rows = []
    for replica in summary:
        storage = topology.storage.get(replica.rse)
        link = topology.link(replica.site, site)
        rows.append(
            {
                **replica.to_dict(),
                "complete": replica.complete,
                "at_compute_site": bool(site) and replica.site == site,
                "mounted": bool(storage and storage.mount_path),
                "km": None if link is None or link.km is None else round(link.km),
                "throughput_mbps": link.throughput_mbps if link else None,
                "latency_ms": link.latency_ms if link else None,
            }
        )
    rows.sort(key=lambda r: (r["km"] is None, r["km"] or 0, r["rse"]))
    return {
        "did": str(did),
        "compute_site": site,
        "replicas": rows,
        "warnings": list(topology.warnings),
    }


def file_replicas(
    service: PortalService, did: DID, limit: int, cursor: str | None
) -> dict[str, Any]:
    """One page of the files of a DID with each file's replica states."""
    lake = service.lake
    page = service.listings.page(
        ("file-replicas", lake.config.name, str(did)),
        lambda: lake.file_replicas(f.did for f in lake.files(did)),
        size=limit,
        cursor=cursor,
    )
    return _page_body([r.to_dict() for r in page.items], page.next_cursor, limit)


def rules(service: PortalService, did: DID) -> dict[str, Any]:
    """Replication rules on a DID."""
    return {
        "did": str(did),
        "rules": [{**r.to_dict(), "total_locks": r.total_locks} for r in service.lake.rules(did)],
    }


def progress(service: PortalService, rule_id: str) -> dict[str, Any]:
    """Where a rule stands, in files, bytes and the user's words, with time left if known."""
    found, eta = service.progress(rule_id)
    return {
        "rule_id": rule_id,
        "state": found.state,
        "fraction": found.fraction,
        "eta_seconds": eta,
        **found.to_dict(),
    }


# -- handlers -------------------------------------------------------------------------------


class InstancesHandler(PortalHandler):
    """``GET /instances``: configured Rucio instances and the one in use."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer the instances."""
        self.reply(await self.service.run(instances, self.service))


class ActiveInstanceHandler(PortalHandler):
    """``POST /instances/active``: work with another configured instance from now on."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Reach the instance named in the body, then answer the instances."""
        name = self.json_body().get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("No instance named.", 'Send {"name": "<instance>"}.')
        await self.service.run(self.service.use_instance, name)
        self.reply(await self.service.run(instances, self.service))


class WhoAmIHandler(PortalHandler):
    """``GET /whoami``: account, authentication and token expiry."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer who the portal acts as."""
        self.reply(await self.service.run(whoami, self.service))


class ScopesHandler(PortalHandler):
    """``GET /scopes``: every scope of the lake."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer the scopes."""
        scopes = await self.service.run(lambda: self.service.lake.scopes())
        self.reply({"scopes": scopes})


class DidsHandler(PortalHandler):
    """``GET /dids``: search a scope by name pattern, type and metadata, a page at a time."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer a page of matching DIDs."""
        scope = self.get_query_argument("scope", "")
        if not scope:
            raise InvalidRequest(
                "No scope given.", "Add scope=...; the scopes are listed at /scopes."
            )
        self.reply(
            await self.service.run(
                search,
                self.service,
                scope,
                self.get_query_argument("pattern", "*") or "*",
                self.get_query_argument("type", "all") or "all",
                self.get_query_arguments("filter"),
                self.int_argument("limit", DEFAULT_LIMIT),
                self.get_query_argument("cursor", None) or None,
            )
        )


class DidHandler(PortalHandler):
    """``GET /dids/{scope}/{name}``: type, size, metadata and parents."""

    @web.authenticated
    @authorized
    async def get(self, scope: str, name: str) -> None:
        """Answer the DID's details."""
        self.reply(await self.service.run(details, self.service, path_did(scope, name)))


class ContentsHandler(PortalHandler):
    """``GET /dids/{scope}/{name}/contents``: a page of what a dataset or container holds."""

    @web.authenticated
    @authorized
    async def get(self, scope: str, name: str) -> None:
        """Answer a page of contents."""
        self.reply(
            await self.service.run(
                contents,
                self.service,
                path_did(scope, name),
                self.int_argument("limit", DEFAULT_LIMIT),
                self.get_query_argument("cursor", None) or None,
            )
        )


class ReplicasHandler(PortalHandler):
    """``GET /dids/{scope}/{name}/replicas``: by storage element, nearest to compute first."""

    @web.authenticated
    @authorized
    async def get(self, scope: str, name: str) -> None:
        """Answer the replica summary."""
        self.reply(await self.service.run(replicas, self.service, path_did(scope, name)))


class FileReplicasHandler(PortalHandler):
    """``GET /dids/{scope}/{name}/file-replicas``: a page of files with their replicas."""

    @web.authenticated
    @authorized
    async def get(self, scope: str, name: str) -> None:
        """Answer a page of per-file replica states."""
        self.reply(
            await self.service.run(
                file_replicas,
                self.service,
                path_did(scope, name),
                self.int_argument("limit", DEFAULT_LIMIT, high=1000),
                self.get_query_argument("cursor", None) or None,
            )
        )


class RulesHandler(PortalHandler):
    """``GET /dids/{scope}/{name}/rules``: replication rules on a DID."""

    @web.authenticated
    @authorized
    async def get(self, scope: str, name: str) -> None:
        """Answer the rules."""
        self.reply(await self.service.run(rules, self.service, path_did(scope, name)))


class RuleProgressHandler(PortalHandler):
    """``GET /rules/{rule_id}/progress``: files and bytes at the destination, time left."""

    @web.authenticated
    @authorized
    async def get(self, rule_id: str) -> None:
        """Answer the rule's progress."""
        self.reply(await self.service.run(progress, self.service, rule_id))
