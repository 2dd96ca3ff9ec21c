"""``POST /upload``: files of the Jupyter server's folder into the lake.

Paths are relative to the server's root directory (what JupyterLab's file browser shows);
a path that leaves it (``..``, an absolute path, a link pointing outside) is refused.
The upload itself is :func:`escape_portal.upload.upload`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from escape_portal.errors import InvalidRequest, NotFound
from escape_portal.server.base import PortalHandler
from escape_portal.server.service import PortalService
from escape_portal.upload import upload

#: Files one request may name.
MAX_FILES = 1000


def resolve_paths(root: Path, texts: list[str]) -> list[Path]:
    """The files ``texts`` name below ``root``, refusing any that lies outside it."""
    base = root.resolve()
    found = []
    for text in texts:
        if not text or text.startswith("/") or "\\" in text:
            raise InvalidRequest(
                f"{text[:200]!r} is not a path relative to the server's folder.",
                "Give paths as JupyterLab's file browser shows them, e.g. results/out.fits.",
            )
        path = (base / text).resolve()
        if not path.is_relative_to(base):
            raise InvalidRequest(
                f"{text[:200]!r} lies outside the server's folder.",
                "Upload files that are below the folder the Jupyter server serves.",
            )
        if not path.is_file():
            raise NotFound(f"There is no file {text[:200]!r} in the server's folder.")
        found.append(path)
    return found


def upload_files(
    service: PortalService,
    root: Path,
    texts: list[str],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Upload the files and answer one result per file."""
    topology, site = service.topology()
    paths = resolve_paths(root, texts)
    results = upload(service.lake, paths, topology=topology, compute_site=site, **options)
    files = []
    for text, result in zip(texts, results, strict=True):
        entry = result.to_dict()
        entry["path"] = text  # the server's own paths stay out of the answer
        files.append(entry)
    return {
        "compute_site": site,
        "uploaded": sum(r.state == "uploaded" for r in results),
        "skipped": sum(r.state == "skipped" for r in results),
        "failed": sum(r.state == "failed" for r in results),
        "files": files,
    }


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{key} must be a non-empty string.")
    return value


class UploadHandler(PortalHandler):
    """``POST /upload``: upload files of the server's folder into the lake."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Write, verify and register the files; answer per-file results."""
        body = self.json_body()
        texts = body.get("paths")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("No files to upload.", 'Send {"paths": ["results/out.fits"]}.')
        if len(texts) > MAX_FILES:
            raise InvalidRequest(
                f"{len(texts)} files in one request is too many.", f"Send at most {MAX_FILES}."
            )
        texts = list(dict.fromkeys(texts))
        meta = body.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise InvalidRequest("meta must be an object of metadata keys and values.")
        lifetime = body.get("lifetime")
        if lifetime is not None and (
            isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0
        ):
            raise InvalidRequest("lifetime must be a positive number of seconds, or null.")
        options = {
            "scope": _optional_str(body, "scope"),
            "dataset": _optional_str(body, "dataset"),
            "rse": _optional_str(body, "rse"),
            "meta": meta,
            "lifetime": lifetime,
        }
        root = Path(
            getattr(self.contents_manager, "root_dir", None)
            or self.settings.get("server_root_dir")
            or "."
        ).expanduser()
        self.reply(await self.service.run(upload_files, self.service, root, texts, options))
