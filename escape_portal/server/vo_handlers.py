"""Handlers of the Virtual Observatory: registry, search across services, DataLink, names.

The search is :func:`escape_portal.discovery.search` (every service at once, within a
deadline, each with its status); found rows are linked to the lake by
:func:`escape_portal.discovery.linking.link_to_lake` (columns ``lake_did``, ``lake_link``,
``lake_rses``), so that the UI can make them available and open them like lake data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.decorator import authorized
from tornado import web

from escape_portal.errors import InvalidRequest, LakeError
from escape_portal.server.base import PortalHandler
from escape_portal.server.service import PortalService

if TYPE_CHECKING:
    from escape_portal.discovery import Service, ServiceStatus

# escape_portal.discovery (astropy, pyvo: ~35 MiB) is imported on the first VO request,
# not when the server starts: a server that never searches the VO does not carry it.

F = TypeVar("F", bound=Callable[..., Any])
#: A search sends a body but reads only: it needs the ``read`` permission, not ``write``.
authorized_to_read: Callable[[F], F] = authorized("read")

#: Fields of a search request that go into :class:`Query` as they are.
QUERY_FIELDS = (
    "radius",
    "band",
    "collection",
    "dataproduct_type",
    "calib_level",
    "facility",
    "instrument",
    "maxrec",
    "adql",
)
SEARCH_FIELDS = (*QUERY_FIELDS, "pos", "name", "time", "services", "timeout", "link")


def table_json(table: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Columns (name, unit, description) and rows (one object per row) of an astropy Table."""
    from escape_portal.discovery.normalise import plain_value

    columns = [
        {
            "name": name,
            "unit": str(column.unit) if column.unit is not None else None,
            "description": column.description or None,
        }
        for name, column in table.columns.items()
    ]
    values = {name: [plain_value(v) for v in table[name].tolist()] for name in table.colnames}
    rows = [{name: values[name][i] for name in table.colnames} for i in range(len(table))]
    return columns, rows


def status_json(status: ServiceStatus) -> dict[str, Any]:
    """How one service answered."""
    return {
        "service": dataclasses.asdict(status.service),
        "state": status.state,
        "rows": status.rows,
        "seconds": round(status.seconds, 3),
        "message": status.message,
        "query": status.query,
        "retry_after": status.retry_after,
    }


def _services(service: PortalService, given: Any) -> list[Service]:
    from escape_portal.discovery import Service

    if given is None:
        vo_url = service.config().vo_url
        if not vo_url:
            raise InvalidRequest(
                "No VO services to search.",
                'Send "services": [{"name", "kind", "url"}, ...] (see /vo/registry), or '
                "configure the lake's VO endpoint (c.EscapePortal.vo_url, ESCAPE_VO_URL).",
            )
        return [Service("lake", "tap", f"{vo_url.rstrip('/')}/tap", title="The data lake")]
    if not isinstance(given, list) or not given:
        raise InvalidRequest('"services" must be a non-empty list of {"name", "kind", "url"}.')
    found = []
    for entry in given:
        if not isinstance(entry, dict) or not {"name", "kind", "url"} <= set(entry):
            raise InvalidRequest(
                f"{entry!r} is not a service.", 'Give each as {"name", "kind", "url"}.'
            )
        unknown = set(entry) - {"name", "kind", "url", "ivoid", "title"}
        if unknown:
            raise InvalidRequest(f"Unknown service field(s): {', '.join(sorted(unknown))}.")
        found.append(Service(**entry))
    return found


def _time(value: Any) -> Any:
    """MJD numbers pass; ISO 8601 strings become astropy Times."""
    if value is None:
        return None
    ends = value if isinstance(value, list) else [value]
    if any(isinstance(v, str) for v in ends):
        from astropy.time import Time

        try:
            ends = [Time(v) if isinstance(v, str) else v for v in ends]
        except ValueError as exc:
            raise InvalidRequest(
                f"time {value!r} is not a time: {exc}.",
                "Give MJD numbers or ISO 8601 dates, e.g. ['2024-01-01', '2024-02-01'].",
            ) from None
    return ends if isinstance(value, list) else ends[0]


def vo_search(service: PortalService, body: dict[str, Any]) -> dict[str, Any]:
    """Search VO services for observations and link what they found to the lake."""
    from escape_portal.discovery import Query, resolve_name
    from escape_portal.discovery import search as search_services
    from escape_portal.discovery.linking import link_to_lake

    unknown = set(body) - set(SEARCH_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"Unknown search field(s): {', '.join(sorted(unknown))}.",
            f"Known: {', '.join(SEARCH_FIELDS)}.",
        )
    position: dict[str, Any] | None = None
    pos: Any = body.get("pos")
    if body.get("name"):
        if pos is not None:
            raise InvalidRequest("Give pos or name, not both.")
        coord = resolve_name(str(body["name"]), resolver_url=service.resolver_url())
        pos = (float(coord.ra.deg), float(coord.dec.deg))
        position = {"name": body["name"], "ra": pos[0], "dec": pos[1]}
    elif pos is not None:
        if not isinstance(pos, list) or len(pos) != 2:
            raise InvalidRequest(f"pos {pos!r} is not [ra, dec].", "Give degrees, ICRS.")
        pos = tuple(pos)
    kwargs = {name: body[name] for name in QUERY_FIELDS if body.get(name) is not None}
    if isinstance(kwargs.get("band"), list):
        kwargs["band"] = tuple(kwargs["band"])
    if isinstance(kwargs.get("calib_level"), list):
        kwargs["calib_level"] = tuple(kwargs["calib_level"])
    query = Query(pos=pos, time=_time(body.get("time")), **kwargs)
    services = _services(service, body.get("services"))
    timeout = body.get("timeout", service.settings.vo_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidRequest(f"timeout {timeout!r} is not a number of seconds.")
    result = search_services(services, query, timeout=float(timeout))
    table = result.table
    warnings = list(result.warnings)
    if body.get("link", True) and len(table):
        try:
            table = link_to_lake(table, service.lake)
        except LakeError as exc:
            warnings.append(f"The rows were not linked to the lake: {exc}")
    columns, rows = table_json(table)
    return {
        "position": position,
        "columns": columns,
        "rows": rows,
        "statuses": [status_json(s) for s in result.statuses],
        "warnings": warnings,
        "seconds": round(result.seconds, 3),
    }


def registry(
    service: PortalService,
    keywords: list[str],
    servicetypes: list[str],
    wavebands: list[str],
    maxrec: int | None,
) -> dict[str, Any]:
    """VO services found in the registry."""
    from escape_portal.discovery import registry_search

    url = service.vo_registry_url()
    found = registry_search(
        keywords or None,
        servicetypes or None,
        wavebands or None,
        registry_url=url,
        timeout=max(service.settings.vo_timeout, 20.0),
        maxrec=maxrec,
    )
    return {"registry": url, "services": [dataclasses.asdict(s) for s in found]}


class RegistryHandler(PortalHandler):
    """``GET /vo/registry``: VO services by keyword, service type and waveband."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer the services found."""
        maxrec = self.get_query_argument("maxrec", None)
        self.reply(
            await self.service.run(
                registry,
                self.service,
                self.get_query_arguments("keywords"),
                self.get_query_arguments("servicetype"),
                self.get_query_arguments("waveband"),
                self.int_argument("maxrec", 0, low=1, high=100_000) if maxrec else None,
            )
        )


class SearchHandler(PortalHandler):
    """``POST /vo/search``: search observations in VO services, rows linked to the lake."""

    @web.authenticated
    @authorized_to_read
    async def post(self) -> None:
        """Answer rows, columns and one status per service."""
        self.reply(await self.service.run(vo_search, self.service, self.json_body()))


class DatalinksHandler(PortalHandler):
    """``GET /vo/datalinks?url=``: the links of a DataLink document."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer the links."""
        from escape_portal.discovery import datalinks

        url = self.get_query_argument("url", "")
        if not url:
            raise InvalidRequest("No url given.", "Add url= (a row's access_url).")
        found = await self.service.run(datalinks, url, timeout=self.service.settings.vo_timeout)
        self.reply({"url": url, "links": [dataclasses.asdict(link) for link in found]})


class ResolveHandler(PortalHandler):
    """``GET /vo/resolve?name=``: the sky position of a named object."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """Answer the position."""
        from escape_portal.discovery import resolve_name

        name = self.get_query_argument("name", "")
        coord = await self.service.run(
            lambda: resolve_name(name, resolver_url=self.service.resolver_url())
        )
        self.reply({"name": name, "ra": float(coord.ra.deg), "dec": float(coord.dec.deg)})
