"""The VO search's state, without widgets: form, services, search, rows linked to the lake.

:class:`VOSearchModel` is plain Python over :mod:`escape_portal.discovery` (registry
search, name resolution, the fan-out search, links to the lake) and the same actions as
the lake browser; the :class:`~escape_portal.widgets.VOSearch` widget renders it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from escape_portal.access import Access
from escape_portal.discovery import (
    PRODUCT_TYPES,
    DiscoveryResult,
    Query,
    Service,
    link_to_lake,
    registry_search,
    resolve_name,
    search,
    unique_records,
)
from escape_portal.discovery.normalise import plain_value
from escape_portal.discovery.services import instance_endpoints
from escape_portal.errors import InvalidRequest, LakeError
from escape_portal.lake import Lake
from escape_portal.placement import Request
from escape_portal.widgets.actions import NearCompute, Opened, open_did
from escape_portal.widgets.sky import SkyRow, sky_svg

#: Columns of the results table, when present.
COLUMNS = (
    "target_name",
    "dataproduct_type",
    "s_ra",
    "s_dec",
    "s_fov",
    "t_min",
    "facility_name",
    "instrument_name",
    "obs_id",
    "service",
)


@dataclass(frozen=True)
class VOForm:
    """What the form holds, as typed.

    Attributes
    ----------
    name
        An object name, resolved to a position (used when ``pos`` is empty).
    pos
        ``'RA DEC'`` in degrees (ICRS).
    radius
        Degrees.
    time, band
        ``LOW..HIGH`` (MJD; metres), or one value.
    collection, product
        ObsCore ``obs_collection`` and ``dataproduct_type`` (``""``: any).
    maxrec
        Rows asked of each service.

    """

    name: str = ""
    pos: str = ""
    radius: float = 0.5
    time: str = ""
    band: str = ""
    collection: str = ""
    product: str = ""
    maxrec: int = 1000


def parse_position(text: str) -> tuple[float, float]:
    """``'83.63 22.01'`` or ``'83.63, 22.01'`` -> ``(83.63, 22.01)``."""
    parts = text.replace(",", " ").split()
    try:
        if len(parts) != 2:
            raise ValueError(text)
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidRequest(
            f"The position {text!r} is not 'RA DEC' in degrees.",
            "For example 83.6331 22.0145, or give an object name instead.",
        ) from None


def parse_range(text: str, what: str, example: str) -> tuple[float, float] | None:
    """``'LOW..HIGH'`` or one number -> ``(low, high)``; ``''`` -> ``None``."""
    text = text.strip()
    if not text:
        return None
    low, sep, high = text.partition("..")
    try:
        if not sep:
            return float(text), float(text)
        return float(low), float(high)
    except ValueError:
        raise InvalidRequest(
            f"The {what} {text!r} is not a range of numbers.", f"Write it as LOW..HIGH, {example}."
        ) from None


@dataclass(frozen=True)
class VOResults:
    """What a search found: the rows (linked to the lake where they are lake files)."""

    result: DiscoveryResult
    rows: list[dict[str, Any]]
    centre: tuple[float, float] | None
    radius: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def linked(self) -> list[int]:
        """Indexes of the rows that are lake data."""
        return [i for i, r in enumerate(self.rows) if r.get("lake_did")]

    def sky_rows(self) -> list[SkyRow]:
        """The rows with a position, for the sky view."""
        out = []
        for i, row in enumerate(self.rows):
            ra, dec = row.get("s_ra"), row.get("s_dec")
            if not isinstance(ra, int | float) or not isinstance(dec, int | float):
                continue
            if not (math.isfinite(ra) and math.isfinite(dec)):
                continue
            fov = row.get("s_fov")
            fov = float(fov) if isinstance(fov, int | float) and math.isfinite(fov) else None
            label = str(row.get("target_name") or row.get("obs_id") or "")
            out.append(SkyRow(i, float(ra), float(dec), fov, label, str(row.get("lake_did", ""))))
        return out

    def sky(self, size: int = 360) -> str:
        """The sky view (SVG) of the rows around the search circle."""
        rows = self.sky_rows()
        centre = self.centre
        if centre is None:  # an ADQL search, say: centre on the rows
            if not rows:
                return ""
            centre = (rows[0].ra, rows[0].dec)
        return sky_svg(rows, centre, self.radius or 1.0, size=size)


class VOSearchModel:
    """Search the Virtual Observatory and link what is found to the lake, without widgets.

    Parameters
    ----------
    lake
        The lake rows are linked to, made available in and opened from (``None``: no
        linking).
    registry_url
        RegTAP endpoint (default: ``$IVOA_REGISTRY``, else the lake's own VO endpoint
        ``lake.config.vo_url + '/tap'``, as the CLI chooses).
    resolver_url
        Name resolver (default: ``$ESCAPE_PORTAL_RESOLVER``, else the lake's
        ``vo_url + '/resolve'``; Sesame after it).
    timeout
        Seconds for each registry search, name resolution and fan-out search.
    access
        Reading files (default: ``Access(lake)``).

    """

    def __init__(
        self,
        lake: Lake | None,
        *,
        registry_url: str | None = None,
        resolver_url: str | None = None,
        timeout: float = 30.0,
        access: Access | None = None,
        compute_site: str | None = None,
    ) -> None:
        self.lake = lake
        self.registry_url, self.resolver_url = instance_endpoints(
            lake.config if lake is not None else None,
            registry_url=registry_url,
            resolver_url=resolver_url,
        )
        self.timeout = timeout
        self.access = access or (Access(lake) if lake is not None else None)
        self.near = NearCompute(lake, compute_site) if lake is not None else None
        self.services: list[Service] = []
        self.results: VOResults | None = None

    def find_services(
        self, keywords: str = "", kinds: tuple[str, ...] = ("tap", "sia2", "scs")
    ) -> list[Service]:
        """Services of the registry matching ``keywords`` and kinds (kept in ``services``)."""
        if not self.registry_url:
            raise InvalidRequest(
                "No VO registry is configured.",
                "Give registry_url=, set IVOA_REGISTRY, or start the embedded lake, "
                "whose registry lists its services.",
            )
        self.services = registry_search(
            keywords=keywords.split() or None,
            servicetype=list(kinds) or None,
            registry_url=self.registry_url,
            timeout=self.timeout,
        )
        return self.services

    def query(self, form: VOForm) -> Query:
        """The checked query of ``form``; an object name is resolved to its position."""
        if form.product and form.product not in PRODUCT_TYPES:
            raise InvalidRequest(
                f"Unknown product type {form.product!r}.", f"Use one of {', '.join(PRODUCT_TYPES)}."
            )
        fields: dict[str, Any] = {
            "time": parse_range(form.time, "time range", "e.g. 60300..60310 (MJD)"),
            "band": parse_range(form.band, "band", "e.g. 1e-7..1e-6 (metres)"),
            "collection": form.collection.strip() or None,
            "dataproduct_type": form.product or None,
            "maxrec": form.maxrec,
        }
        if form.pos.strip():
            return Query(pos=parse_position(form.pos), radius=form.radius, **fields)
        if form.name.strip():
            Query(pos=(0.0, 0.0), radius=form.radius, **fields)  # checked before resolving
            coord = resolve_name(
                form.name, resolver_url=self.resolver_url, timeout=min(self.timeout, 10.0)
            )
            return Query(pos=coord, radius=form.radius, **fields)
        return Query(**fields)

    def search(self, query: Query, services: list[Service]) -> VOResults:
        """Ask ``services`` at once; rows de-duplicated, linked to the lake, with their sites."""
        result = search(services, query, timeout=self.timeout)
        table = unique_records(result.table)
        warnings = list(result.warnings)
        sites: dict[str, str | None] = {}
        if self.lake is not None and len(table):
            try:
                table = link_to_lake(table, self.lake)
                sites = self.lake.rse_sites()
            except LakeError as exc:
                warnings.append(f"Rows were not linked to the lake: {exc.message}")
        rows = []
        for row in table:
            record = {c: plain_value(row[c]) for c in table.colnames if c != "query"}
            rses = [r for r in str(record.get("lake_rses") or "").split(",") if r]
            record["lake_sites"] = ", ".join(
                f"{rse} ({sites[rse]})" if sites.get(rse) else rse for rse in rses
            )
            rows.append(record)
        centre = None if query.ra is None or query.dec is None else (query.ra, query.dec)
        self.results = VOResults(result, rows, centre, query.radius_deg, warnings)
        return self.results

    def _lake_did(self, row: int) -> str:
        if self.results is None or not 0 <= row < len(self.results.rows):
            raise InvalidRequest(f"There is no row {row}.", "Search first, then pick a row.")
        did = str(self.results.rows[row].get("lake_did") or "")
        if not did:
            raise InvalidRequest(
                f"Row {row} is not a file of the lake.",
                "Only rows marked 'lake' can be made available or opened from here.",
            )
        return did

    def make_available(self, row: int) -> Request:
        """Bring a linked row's lake data near the compute."""
        did = self._lake_did(row)
        assert self.near is not None
        return self.near.make_available(did)

    def open(self, row: int) -> Opened:
        """Local paths of a linked row's lake files, and a FITS preview."""
        did = self._lake_did(row)
        assert self.lake is not None and self.access is not None
        return open_did(self.lake, self.access, did)
