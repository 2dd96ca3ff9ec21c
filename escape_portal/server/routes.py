"""The REST API's routes: one table, from which Tornado's patterns and the API test are made.

Paths are OpenAPI templates relative to :data:`API_PREFIX`; a ``{parameter}`` matches one
path segment (percent-encode a ``/`` inside a DID name as ``%2F``).
"""

from __future__ import annotations

import re

from tornado.web import RequestHandler

from escape_portal.server import lake_handlers as lake
from escape_portal.server import placement_handlers as placement
from escape_portal.server import upload_handlers as upload
from escape_portal.server import vo_handlers as vo
from escape_portal.server import watch_handlers as watch

API_PREFIX = "/escape-portal/api"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")

ROUTES: list[tuple[str, type[RequestHandler]]] = [
    ("/instances", lake.InstancesHandler),
    ("/instances/active", lake.ActiveInstanceHandler),
    ("/whoami", lake.WhoAmIHandler),
    ("/scopes", lake.ScopesHandler),
    ("/dids", lake.DidsHandler),
    ("/dids/{scope}/{name}", lake.DidHandler),
    ("/dids/{scope}/{name}/contents", lake.ContentsHandler),
    ("/dids/{scope}/{name}/replicas", lake.ReplicasHandler),
    ("/dids/{scope}/{name}/file-replicas", lake.FileReplicasHandler),
    ("/dids/{scope}/{name}/rules", lake.RulesHandler),
    ("/dids/{scope}/{name}/placement", placement.PlacementHandler),
    ("/make-available", placement.MakeAvailableHandler),
    ("/rules/{rule_id}/progress", lake.RuleProgressHandler),
    ("/download", placement.DownloadHandler),
    ("/upload", upload.UploadHandler),
    ("/vo/registry", vo.RegistryHandler),
    ("/vo/search", vo.SearchHandler),
    ("/vo/datalinks", vo.DatalinksHandler),
    ("/vo/resolve", vo.ResolveHandler),
    ("/watches", watch.WatchesHandler),
    ("/watches/{name}/stop", watch.WatchStopHandler),
]


def pattern(template: str) -> str:
    """Tornado's URL pattern of a path template (``{x}`` is one segment, named ``x``)."""
    return API_PREFIX + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)


def methods(handler: type[RequestHandler]) -> set[str]:
    """HTTP methods a handler answers (those it defines itself or inherits from ours)."""
    return {m for m in HTTP_METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


def handlers() -> list[tuple[str, type[RequestHandler]]]:
    """``(pattern, handler)`` pairs for the Jupyter server (without its base URL)."""
    return [(pattern(template), handler) for template, handler in ROUTES]
