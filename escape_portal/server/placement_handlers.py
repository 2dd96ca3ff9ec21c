"""Handlers that bring data near the compute and open it: placement, make-available, download.

The decisions are :mod:`escape_portal.placement`'s (the same as ``escape-portal where`` and
``escape-portal make-available``); files are located and fetched by
:class:`escape_portal.access.Access` (mounted storage, the download cache, or a verified
download into it).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID
from escape_portal.placement import make_available, plan
from escape_portal.server.base import PortalHandler, path_did
from escape_portal.server.service import PortalService

DEFAULT_LIFETIME = 7 * 86400
DEFAULT_COMMENT = "escape-portal (JupyterLab): near compute"
#: DIDs one make-available request may name.
MAX_DIDS = 100


def placement(service: PortalService, did: DID) -> dict[str, Any]:
    """Where ``did`` would be read from, and what make-available would do, with reasons.

    For a file, ``read`` is the replica choice of :mod:`escape_portal.replicas` (which
    replica and protocol this session reads, and why), as ``escape-portal where`` shows.
    """
    topology, site = service.topology()
    answer = plan(service.lake, topology, did, site).to_dict()
    answer["read"] = None
    if service.lake.info(did).type == "file":
        answer["read"] = service.access().where(did)[0].to_dict()
    return answer


def request_replicas(
    service: PortalService, dids: list[DID], lifetime: int | None, comment: str
) -> dict[str, Any]:
    """Create or reuse the rules that bring ``dids`` near the compute, with their progress."""
    topology, site = service.topology()
    done = make_available(service.lake, topology, dids, site, lifetime=lifetime, comment=comment)
    answers = []
    for request in done:
        entry: dict[str, Any] = {
            "did": str(request.placement.did),
            "created": request.created,
            "summary": request.placement.summary,
            "destination": request.placement.destination,
            "rule": request.rule.to_dict() if request.rule else None,
        }
        if request.rule is None:
            entry.update(state="available", progress=None)
        else:
            progress, eta = service.progress(request.rule.id)
            entry.update(
                state=progress.state,
                progress={
                    "files_done": progress.files_done,
                    "files_total": progress.files_total,
                    "bytes_done": progress.bytes_done,
                    "bytes_total": progress.bytes_total,
                    "fraction": progress.fraction,
                    "eta_seconds": eta,
                    "stuck_reason": progress.stuck_reason,
                },
            )
        answers.append(entry)
    return {"compute_site": site, "requests": answers}


def download(service: PortalService, did: DID) -> dict[str, Any]:
    """Local paths of every file of ``did``: mounted, cached, or downloaded (verified) now."""
    access = service.access()
    located = access.locate(did)
    paths = access.paths(did)  # as 'escape-portal open' does: locate, then fetch what is missing
    files = [
        {**item.to_dict(), "path": str(path)} for item, path in zip(located, paths, strict=True)
    ]
    return {
        "did": str(did),
        "files": files,
        "bytes_downloaded": sum(item.file.bytes for item in located if item.path is None),
    }


def _lifetime(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(
            f"lifetime {value!r} is not a positive number of seconds.",
            "Give seconds (604800 is a week), or null to keep the replicas until deleted.",
        )
    return value


class PlacementHandler(PortalHandler):
    """``GET /dids/{scope}/{name}/placement``: the placement decision and its reasons."""

    @web.authenticated
    @authorized
    async def get(self, scope: str, name: str) -> None:
        """Answer the placement."""
        self.reply(await self.service.run(placement, self.service, path_did(scope, name)))


class MakeAvailableHandler(PortalHandler):
    """``POST /make-available``: replicate DIDs to the storage nearest the compute."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Create or reuse rules and answer them with their progress."""
        body = self.json_body()
        texts = body.get("dids")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest(
                "No DIDs to make available.", 'Send {"dids": ["scope:name", ...]}.'
            )
        if len(texts) > MAX_DIDS:
            raise InvalidRequest(
                f"{len(texts)} DIDs in one request is too many.",
                f"Send at most {MAX_DIDS}, or make a container of them.",
            )
        dids = list(dict.fromkeys(DID.parse(t) for t in texts))
        lifetime = _lifetime(body.get("lifetime", DEFAULT_LIFETIME))
        comment = body.get("comment") or DEFAULT_COMMENT
        if not isinstance(comment, str):
            raise InvalidRequest("comment must be a string.")
        self.reply(
            await self.service.run(request_replicas, self.service, dids, lifetime, comment),
            status=201,
        )


class DownloadHandler(PortalHandler):
    """``POST /download``: local paths of a DID's files, downloading into the cache if needed."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Locate or download the files and answer their paths."""
        text = self.json_body().get("did")
        if not isinstance(text, str):
            raise InvalidRequest("No DID to download.", 'Send {"did": "scope:name"}.')
        self.reply(await self.service.run(download, self.service, DID.parse(text)))
