"""A Rucio lake in the Virtual Observatory: TAP, SIA2, Cone Search, DataLink, RegTAP.

Serves any configured Rucio instance (:func:`escape_portal.config.select_instance`):
``escape-portal vo serve --instance NAME`` for operators, ``python -m
escape_portal.vo_publish --instance NAME --port PORT --state-dir DIR`` as the embedded
lake starts it. Binds 127.0.0.1 unless told otherwise. Endpoints (paths are a contract):

- ``/tap`` — TAP 1.1 (``/tap/sync``, ``/tap/async`` as UWS 1.1 jobs, see
  :mod:`escape_portal.vo_publish.uws`, ``/tap/availability``, ``/tap/capabilities``,
  ``/tap/tables``) over ``ivoa.obscore``, ``tap_schema.*`` and the RegTAP ``rr.*`` tables;
- ``/sia2/query`` — SIA 2.0; ``/scs/query`` — Simple Cone Search 1.03 (each with VOSI
  ``availability`` and ``capabilities``);
- ``/datalink/links?ID=...`` — DataLink 1.1: one ``#this`` row per replica, nearest first
  from ``SITE`` (default: the instance's compute site), with its ``https://`` URL (a
  ``davs`` replica spelled as web clients want it; the storage asks for a token, and
  :meth:`escape_portal.lake.Lake.dids_from_urls` maps it back to the file);
- ``/resolve?name=...`` — the positions of the targets the lake knows, as JSON.

The ObsCore records are read from Rucio (through :class:`escape_portal.lake.Lake`, with
metadata filters so datasets without ObsCore metadata are never listed) and kept for
:data:`CACHE_TTL` seconds. The state folder holds what an operator adds:
``registry-extra.json``, more registry records (see :mod:`escape_portal.vo_publish.vo_registry`).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import logging
import math
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from escape_portal.config import LakeConfig, select_instance
from escape_portal.errors import LakeError
from escape_portal.lake import Lake
from escape_portal.vo_ids import parse_publisher_did
from escape_portal.vo_publish import adql, obscore, uws, vo_registry, vo_schema
from escape_portal.vo_publish.votable import (
    DATALINK_MIME,
    VOTABLE_MIME,
    Field,
    error_document,
    table_document,
)

log = logging.getLogger("escape_portal.vo")

#: Seconds the ObsCore records (and the topology) are reused before Rucio is read again.
CACHE_TTL = 60.0
_VOTABLE_FORMATS = {
    "votable",
    "votable/td",
    "application/x-votable+xml",
    "text/xml",
    "application/x-votable+xml;serialization=tabledata",
}


class BadRequest(ValueError):
    """A parameter is wrong (HTTP 400 with a VOTable error document)."""


@dataclass
class Snapshot:
    """The published tables at one moment."""

    db: sqlite3.Connection
    lock: threading.Lock
    harvest: obscore.Harvest
    built_at: float


class VOService:
    """The state behind the endpoint: the lake, cached records, cached topologies.

    Parameters
    ----------
    instance
        The Rucio instance to publish: a configured instance's name (looked up again
        when needed, so a restarted server that moved is followed), or its settings.
    base_url
        The URL this service is reached at (``http://127.0.0.1:PORT``); written into the
        capabilities, the registry records and every ObsCore ``access_url``.
    state_dir
        The service's folder (``registry-extra.json`` adds registry records).
    env
        The environment instances are read from (default: the process's).

    """

    def __init__(
        self,
        instance: str | LakeConfig,
        base_url: str,
        state_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.instance = instance
        self.base_url = base_url.rstrip("/")
        self.state_dir = state_dir
        self._env = env
        self._lake: Lake | None = None
        self._lake_lock = threading.RLock()
        self._snapshot: Snapshot | None = None
        self._topologies: dict[str, tuple[float, Any]] = {}
        #: The asynchronous TAP jobs (``/tap/async``), run like ``/tap/sync`` queries.
        self.jobs = uws.JobManager(
            self._tap_document,
            user_errors=(BadRequest, adql.AdqlError, LakeError),
            max_duration=adql.QUERY_TIMEOUT,
        )

    # -- the lake ---------------------------------------------------------------------

    def lake(self) -> Lake:
        """The lake (re-made if the instance's server moved).

        Raises
        ------
        LakeError
            If the named instance is not configured (for the embedded lake: not started).

        """
        if isinstance(self.instance, LakeConfig):
            config = self.instance
        else:
            config = select_instance(self.instance, self._env)
        if self._lake is None or self._lake.config.rucio_host != config.rucio_host:
            self._lake = Lake(config)
        return self._lake

    def snapshot(self) -> Snapshot:
        """The published tables, rebuilt from Rucio when older than :data:`CACHE_TTL`."""
        current = self._snapshot
        if current is not None and time.monotonic() - current.built_at < CACHE_TTL:
            return current
        with self._lake_lock:
            current = self._snapshot
            if current is not None and time.monotonic() - current.built_at < CACHE_TTL:
                return current
            try:
                harvest = obscore.collect(self.lake(), self.base_url)
            except LakeError as exc:
                if current is None:
                    raise
                log.warning("refresh from Rucio failed (%s); serving the previous records", exc)
                current.built_at = time.monotonic()
                return current
            self._snapshot = self._build(harvest)
            log.info("published %d ObsCore records", len(harvest.records))
            return self._snapshot

    def _build(self, harvest: obscore.Harvest) -> Snapshot:
        resources = vo_registry.own_resources(self.base_url, harvest.messengers)
        resources += vo_registry.extra_resources(self.state_dir / "registry-extra.json")
        rows: dict[str, list[dict[str, Any]]] = {"ivoa.obscore": harvest.records}
        rows.update(vo_schema.tap_schema_rows())
        rows.update(vo_registry.rr_rows(resources))
        db = vo_schema.build_database(rows)
        adql.register_functions(db)
        return Snapshot(db, threading.Lock(), harvest, time.monotonic())

    def topology(self, site: str) -> Any:
        """The lake's topology seen from ``site`` (cached)."""
        from escape_portal.topology import lake_topology

        cached = self._topologies.get(site)
        if cached and time.monotonic() - cached[0] < CACHE_TTL:
            return cached[1]
        with self._lake_lock:
            lake = self.lake()
            topology = lake_topology(lake, site)
        self._topologies[site] = (time.monotonic(), topology)
        return topology

    # -- services ---------------------------------------------------------------------

    def tap_sync(self, params: dict[str, list[str]]) -> tuple[int, str]:
        """Run a TAP synchronous query."""
        return 200, self._tap_document(params, adql.QUERY_TIMEOUT)

    def _tap_document(self, params: dict[str, list[str]], timeout: float) -> str:
        """The result VOTable of a TAP query (sync, or an async job's run)."""
        lang = _one(params, "LANG")
        if lang is None:
            raise BadRequest("LANG is missing; this service runs LANG=ADQL.")
        if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
            raise BadRequest(f"LANG={lang} is not supported; use LANG=ADQL.")
        request = _one(params, "REQUEST")
        if request is not None and request != "doQuery":
            raise BadRequest(f"REQUEST={request} is not supported; use REQUEST=doQuery.")
        _check_format(params)
        query = _one(params, "QUERY")
        if not query:
            raise BadRequest("QUERY is missing: give an ADQL query.")
        maxrec = _maxrec(params)
        snap = self.snapshot()
        result = adql.run_query(snap.db, snap.lock, query, maxrec, timeout)
        return table_document(result.fields, result.rows, overflow=result.overflow)

    def sia2(self, params: dict[str, list[str]]) -> tuple[int, str]:
        """Run a SIA 2.0 query."""
        _check_format(params)
        tests = _sia2_tests(params)
        maxrec = _maxrec(params)
        records = [r for r in self.snapshot().harvest.records if all(t(r) for t in tests)]
        fields = vo_schema.OBSCORE.columns
        rows = [[r.get(f.name) for f in fields] for r in records[:maxrec]]
        return 200, table_document(fields, rows, overflow=len(records) > maxrec)

    def scs(self, params: dict[str, list[str]]) -> tuple[int, str]:
        """Run a Simple Cone Search 1.03 query."""
        try:
            ra = float(_one(params, "RA") or "nan")
            dec = float(_one(params, "DEC") or "nan")
            radius = float(_one(params, "SR") or "nan")
            verb = int(_one(params, "VERB") or "2")
        except ValueError as exc:
            raise BadRequest(f"RA, DEC and SR must be numbers (degrees), VERB 1-3: {exc}") from exc
        if math.isnan(ra) or math.isnan(dec) or math.isnan(radius):
            raise BadRequest("RA, DEC and SR (degrees) are required.")
        if not (0 <= ra <= 360 and -90 <= dec <= 90 and 0 <= radius <= 180):
            raise BadRequest("RA must be in [0, 360], DEC in [-90, 90] and SR in [0, 180].")
        found = []
        for r in self.snapshot().harvest.records:
            if r["s_ra"] is None or r["s_dec"] is None:
                continue
            distance = adql.angular_distance(ra, dec, r["s_ra"], r["s_dec"])
            if distance <= radius:
                found.append((distance, r))
        found.sort(key=lambda item: item[0])
        fields = [
            Field("obs_publisher_did", ucd="ID_MAIN", description="Publisher DID of the file"),
            Field("s_ra", "double", unit="deg", ucd="POS_EQ_RA_MAIN", description="RA (ICRS)"),
            Field("s_dec", "double", unit="deg", ucd="POS_EQ_DEC_MAIN", description="Dec (ICRS)"),
        ]
        if verb >= 2:
            fields += [
                Field("_r", "double", unit="deg", ucd="pos.angDistance", description="Distance"),
                Field("target_name", ucd="meta.id;src"),
                Field("dataproduct_type", ucd="meta.code.class"),
                Field("facility_name", ucd="meta.id;instr.tel"),
                Field("access_url", ucd="meta.ref.url"),
                Field("lake_did", ucd="meta.id"),
            ]
        if verb >= 3:
            names = {f.name for f in fields}
            fields += [c for c in vo_schema.OBSCORE.columns if c.name not in names]
        rows = [[d if f.name == "_r" else r.get(f.name) for f in fields] for d, r in found]
        return 200, table_document(fields, rows)

    def datalink(self, params: dict[str, list[str]]) -> tuple[int, str]:
        """DataLink ``#this`` rows: the replicas of each ID, nearest first."""
        ids = [i for value in params.get("ID", []) for i in [value.strip()] if i]
        if not ids:
            raise BadRequest("ID is missing: give an obs_publisher_did (ivo://escape.eu/lake?...).")
        _check_format(params)
        fields = [
            Field("ID", ucd="meta.id;meta.main"),
            Field("access_url", ucd="meta.ref.url"),
            Field("service_def", ucd="meta.ref"),
            Field("error_message", ucd="meta.code.error"),
            Field("semantics", ucd="meta.code"),
            Field("description", ucd="meta.note"),
            Field("content_type", ucd="meta.code.mime"),
            Field("content_length", "long", unit="byte", ucd="phys.size;meta.file"),
            Field("content_qualifier", ucd="meta.code.class"),
            Field("local_semantics", ucd="meta.code"),
            Field("rse", ucd="meta.id;instr.setup", description="Storage element"),
            Field("site", ucd="meta.id", description="Site of the storage element"),
            Field("distance_km", "double", unit="km", description="From the caller's site"),
        ]
        rows: list[list[Any]] = []
        site = _one(params, "SITE")
        for ident in ids:
            rows.extend(self._links(ident, site))
        return 200, table_document(fields, rows)

    def _links(self, ident: str, site: str | None) -> list[list[Any]]:
        did = parse_publisher_did(ident)
        if did is None:
            return [_error_row(ident, f"UsageFault: {ident} is not an ID of this service")]
        with self._lake_lock:
            lake = self.lake()
            replicas = next(iter(lake.file_replicas([did])), None)
            sites = lake.rse_sites()
            site = site or lake.config.compute_site
        if replicas is None:
            return [_error_row(ident, f"NotFoundFault: {did} is not in the lake")]
        topology = self.topology(site) if site else None
        options = []
        for rse in replicas.pfns:
            if replicas.states.get(rse) != "AVAILABLE":
                continue
            url = replicas.url(rse)  # https (davs spelled as web clients want it), else http
            if url is None:
                continue
            link = topology.link(sites.get(rse), site) if topology is not None else None
            key = (
                link is None or link.km != 0,
                -(link.throughput_mbps or 0.0) if link else 0.0,
                link.latency_ms if link and link.latency_ms is not None else math.inf,
                link.km if link and link.km is not None else math.inf,
                rse,
            )
            options.append((key, rse, url, link.km if link else None))
        options.sort(key=lambda o: o[0])
        if not options:
            return [_error_row(ident, f"NotFoundFault: no readable replica of {did}")]
        content_type = "application/fits" if did.name.endswith(".fits") else None
        return [
            [ident, url, None, None, "#this", f"{did} at {rse}" + (
                f" ({km:.0f} km from {site})" if km is not None else ""),
             content_type, replicas.bytes, None, None, rse, sites.get(rse), km]
            for _, rse, url, km in options
        ]  # fmt: skip

    def resolve(self, name: str) -> tuple[int, dict[str, Any]]:
        """The position of a target the lake knows."""
        wanted = " ".join(name.split()).lower()
        for target in self.snapshot().harvest.targets:
            if target.name.lower() == wanted:
                return 200, {"name": target.name, "ra": target.ra, "dec": target.dec}
        known = ", ".join(t.name for t in self.snapshot().harvest.targets)
        return 404, {
            "error": f"No target named {name!r} in the lake.",
            "hint": f"Known targets: {known or 'none'}.",
        }


def _error_row(ident: str, message: str) -> list[Any]:
    """A DataLink row saying why ``ident`` has no links (semantics ``#this``, per the standard)."""
    return [ident, None, None, message, "#this"] + [None] * 8


# -- parameters -------------------------------------------------------------------------


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _maxrec(params: dict[str, list[str]]) -> int:
    value = _one(params, "MAXREC")
    if value is None or value == "":
        return adql.DEFAULT_MAXREC
    try:
        number = int(value)
    except ValueError as exc:
        raise BadRequest(f"MAXREC={value} is not a whole number.") from exc
    if number < 0:
        raise BadRequest("MAXREC must not be negative.")
    return min(number, adql.HARD_MAXREC)


def _check_format(params: dict[str, list[str]]) -> None:
    wanted = _one(params, "RESPONSEFORMAT") or _one(params, "FORMAT")
    if wanted and wanted.replace(" ", "").lower() not in _VOTABLE_FORMATS:
        raise BadRequest(f"RESPONSEFORMAT={wanted} is not supported; use votable.")


def _interval(text: str, name: str) -> tuple[float, float]:
    words = text.split()
    try:
        numbers = [float(w) for w in words]
    except ValueError as exc:
        raise BadRequest(f"{name}={text}: give one number or 'low high'.") from exc
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    if len(numbers) != 2:
        raise BadRequest(f"{name}={text}: give one number or 'low high'.")
    return numbers[0], numbers[1]


def _overlaps(low: float, high: float, r_low: Any, r_high: Any) -> bool:
    if r_low is None or r_high is None:
        return False
    return bool(float(r_low) <= high and low <= float(r_high))


def _in_range(r: dict[str, Any], b: tuple[float, float], lo: str, hi: str) -> bool:
    return _overlaps(b[0], b[1], r[lo], r[hi])


def _one_of(r: dict[str, Any], column: str, wanted: set[str]) -> bool:
    return str(r.get(column) or "").lower() in wanted


def _region(text: str) -> str:
    words = text.split()
    kind = words[0].upper() if words else ""
    try:
        numbers = [float(w) for w in words[1:]]
    except ValueError as exc:
        raise BadRequest(f"POS={text}: coordinates must be numbers.") from exc
    if kind == "CIRCLE" and len(numbers) == 3:
        return "Circle ICRS " + " ".join(map(str, numbers))
    if kind == "RANGE" and len(numbers) == 4:
        ra1, ra2, dec1, dec2 = numbers
        ra1, ra2 = max(ra1, 0.0), min(ra2, 360.0)
        dec1, dec2 = max(dec1, -90.0), min(dec2, 90.0)
        return (
            f"Polygon ICRS {ra1} {dec1} {ra2} {dec1} {ra2} {dec2} {ra1} {dec2}"
            if (ra2 - ra1) < 180 and (dec2 - dec1) < 180
            else "Circle ICRS 0 90 180"
        )
    if kind == "POLYGON" and len(numbers) >= 6 and len(numbers) % 2 == 0:
        return "Polygon ICRS " + " ".join(map(str, numbers))
    raise BadRequest(
        f"POS={text} is not CIRCLE ra dec radius, RANGE ra1 ra2 dec1 dec2 or POLYGON ra dec ..."
    )


Test = Callable[[dict[str, Any]], bool]


def _sia2_tests(params: dict[str, list[str]]) -> list[Test]:
    tests: list[Test] = []

    def any_of(values: list[Test]) -> None:
        tests.append(lambda r: any(v(r) for v in values))

    if "POS" in params:
        regions = [_region(p) for p in params["POS"]]

        def on_sky(r: dict[str, Any], region: str) -> bool:
            own = r.get("s_region") or (
                f"Position ICRS {r['s_ra']} {r['s_dec']}" if r.get("s_ra") is not None else None
            )
            return own is not None and adql._intersects(own, region) == 1

        any_of([functools.partial(on_sky, region=g) for g in regions])
    for name, low_col, high_col in (
        ("BAND", "em_min", "em_max"),
        ("TIME", "t_min", "t_max"),
        ("FOV", "s_fov", "s_fov"),
        ("SPATRES", "s_resolution", "s_resolution"),
        ("EXPTIME", "t_exptime", "t_exptime"),
    ):
        if name in params:
            bounds = [_interval(v, name) for v in params[name]]
            any_of([functools.partial(_in_range, b=b, lo=low_col, hi=high_col) for b in bounds])
    for name, column in (
        ("ID", "obs_publisher_did"),
        ("COLLECTION", "obs_collection"),
        ("FACILITY", "facility_name"),
        ("INSTRUMENT", "instrument_name"),
        ("DPTYPE", "dataproduct_type"),
        ("TARGET", "target_name"),
        ("FORMAT", "access_format"),
    ):
        if name in params:
            wanted = {v.strip().lower() for v in params[name]}
            tests.append(functools.partial(_one_of, column=column, wanted=wanted))
    if "CALIB" in params:
        try:
            levels = {int(v) for v in params["CALIB"]}
        except ValueError as exc:
            raise BadRequest("CALIB must be a whole number 0-4.") from exc
        tests.append(lambda r: r.get("calib_level") in levels)
    if "POL" in params:
        states = {v.strip().upper() for v in params["POL"]}
        tests.append(lambda r: bool(states & set(str(r.get("pol_states") or "").split("/"))))
    return tests


# -- VOSI documents ---------------------------------------------------------------------

_NS = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
    'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0"'
)
_GEO = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE",
        "COORD1", "COORD2", "COORDSYS", "AREA")  # fmt: skip
_UDF_FORMS = (
    ("ivo_hasword(haystack TEXT, needle TEXT) -> INTEGER", "1 if needle is a word of haystack"),
    ("ivo_hashlist_has(hashlist TEXT, item TEXT) -> INTEGER", "1 if item is in a #-list"),
    ("ivo_nocasematch(value TEXT, pattern TEXT) -> INTEGER", "case-insensitive LIKE"),
    ("ivo_string_agg(expr TEXT, delim TEXT) -> TEXT", "aggregate: join strings with delim"),
    (
        "ivo_interval_overlap(l1 REAL, h1 REAL, l2 REAL, h2 REAL) -> INTEGER",
        "1 if the intervals [l1, h1] and [l2, h2] overlap",
    ),
)


def _vosi_caps(base: str) -> str:
    return "".join(
        f'<capability standardID="ivo://ivoa.net/std/VOSI#{kind}">'
        f'<interface xsi:type="vs:ParamHTTP"><accessURL use="full">{base}/{kind}</accessURL>'
        "</interface></capability>\n"
        for kind in ("capabilities", "availability")
    )


def tap_capabilities(base_url: str) -> str:
    """The VOSI capabilities of the TAP service (with TAPRegExt)."""
    base = f"{base_url}/tap"
    geo = "".join(f"<feature><form>{g}</form></feature>" for g in _GEO)
    udf = "".join(
        f"<feature><form>{escape(f)}</form><description>{escape(d)}</description></feature>"
        for f, d in _UDF_FORMS
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<vosi:capabilities {_NS}>\n"
        '<capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">'
        f'<interface xsi:type="vs:ParamHTTP" role="std" version="1.1">'
        f'<accessURL use="base">{base}</accessURL></interface>'
        # The asynchronous (UWS 1.1) job list, for readers; clients take the std interface.
        f'<interface xsi:type="vs:ParamHTTP"><accessURL use="base">{base}/async</accessURL>'
        "<queryType>POST</queryType><resultType>text/xml</resultType></interface>"
        '<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
        '<dataModel ivo-id="ivo://ivoa.net/std/RegTAP#1.1">Registry 1.1</dataModel>'
        '<language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>'
        '<version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>'
        "<description>ADQL 2.0 (translated to SQLite)</description>"
        f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{geo}'
        "</languageFeatures>"
        f'<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-udf">{udf}'
        "</languageFeatures>"
        '<languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adql-sets">'
        + "".join(f"<feature><form>{s}</form></feature>" for s in ("UNION", "EXCEPT", "INTERSECT"))
        + "</languageFeatures></language>"
        '<outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">'
        f"<mime>{VOTABLE_MIME}</mime><alias>votable</alias></outputFormat>"
        f"<retentionPeriod><default>{uws.DESTRUCTION_SECONDS:.0f}</default>"
        f"<hard>{uws.MAX_LIFETIME:.0f}</hard></retentionPeriod>"
        f"<executionDuration><default>{adql.QUERY_TIMEOUT:.0f}</default>"
        f"<hard>{adql.QUERY_TIMEOUT:.0f}</hard></executionDuration>"
        f'<outputLimit><default unit="row">{adql.DEFAULT_MAXREC}</default>'
        f'<hard unit="row">{adql.HARD_MAXREC}</hard></outputLimit>'
        "</capability>\n"
        '<capability standardID="ivo://ivoa.net/std/VOSI#tables">'
        f'<interface xsi:type="vs:ParamHTTP"><accessURL use="full">{base}/tables</accessURL>'
        "</interface></capability>\n" + _vosi_caps(base) + "</vosi:capabilities>\n"
    )


def simple_capabilities(base_url: str, service: str) -> str:
    """The VOSI capabilities of the SIA2 or SCS service."""
    standard = {"sia2": "ivo://ivoa.net/std/SIA#query-2.0", "scs": "ivo://ivoa.net/std/ConeSearch"}
    base = f"{base_url}/{service}"
    extra = ""
    if service == "scs":
        extra = (
            "<maxSR>180</maxSR><maxRecords>10000</maxRecords><verbosity>true</verbosity>"
            "<testQuery><ra>83.6331</ra><dec>22.0145</dec><sr>1</sr></testQuery>"
        )
    kind = ' xsi:type="cs:ConeSearch"' if service == "scs" else ""
    ns = ' xmlns:cs="http://www.ivoa.net/xml/ConeSearch/v1.0"' if service == "scs" else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<vosi:capabilities {_NS}{ns}>\n"
        f'<capability standardID="{standard[service]}"{kind}>'
        '<interface xsi:type="vs:ParamHTTP" role="std">'
        f'<accessURL use="base">{base}/query</accessURL></interface>{extra}</capability>\n'
        + _vosi_caps(base)
        + "</vosi:capabilities>\n"
    )


def availability(note: str, available: bool = True) -> str:
    """A VOSI availability document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<avl:availability xmlns:avl="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
        f"<avl:available>{'true' if available else 'false'}</avl:available>"
        f"<avl:note>{escape(note)}</avl:note></avl:availability>\n"
    )


def tableset() -> str:
    """The VOSI tables document of the TAP service."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<vosi:tableset '
        'xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    ]
    for schema, description in vo_schema.SCHEMAS.items():
        parts.append(
            f"<schema><name>{schema}</name><description>{escape(description)}</description>"
        )
        for table in vo_schema.ALL_TABLES:
            if table.schema != schema:
                continue
            parts.append(
                f'<table type="table"><name>{table.qualified}</name>'
                f"<description>{escape(table.description)}</description>"
                + (f"<utype>{table.utype}</utype>" if table.utype else "")
            )
            for c in table.columns:
                parts.append(f"<column><name>{vo_schema.published_name(c.name)}</name>")
                if c.description:
                    parts.append(f"<description>{escape(c.description)}</description>")
                for key in ("unit", "ucd", "utype"):
                    if getattr(c, key):
                        parts.append(f"<{key}>{escape(getattr(c, key))}</{key}>")
                size = f' arraysize="{c.arraysize}"' if c.arraysize else ""
                parts.append(f'<dataType xsi:type="vs:VOTableType"{size}>{c.datatype}</dataType>')
                parts.append("<flag>std</flag>" if c.std else "")
                parts.append("</column>")
            for _, source, target, column, target_column in vo_schema.TAP_SCHEMA_KEYS:
                if source == table.qualified:
                    parts.append(
                        f"<foreignKey><targetTable>{target}</targetTable><fkColumn>"
                        f"<fromColumn>{column}</fromColumn><targetColumn>{target_column}"
                        "</targetColumn></fkColumn></foreignKey>"
                    )
            parts.append("</table>\n")
        parts.append("</schema>\n")
    parts.append("</vosi:tableset>\n")
    return "".join(parts)


# -- HTTP -------------------------------------------------------------------------------


class VOHandler(http.server.BaseHTTPRequestHandler):
    """Routes the VO endpoints to :class:`VOService`."""

    server: VOServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Every endpoint answers GET."""
        self._dispatch({})

    def do_POST(self) -> None:
        """TAP, SIA2, SCS and DataLink also take form-encoded POST parameters."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1 << 20:
            self._send(413, "text/plain", "Request body too large.\n")
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form = urllib.parse.parse_qs(body, keep_blank_values=True) if kind in (
            "application/x-www-form-urlencoded", "") else {}  # fmt: skip
        self._dispatch(form)

    def do_DELETE(self) -> None:
        """Deleting an asynchronous TAP job."""
        if int(self.headers.get("Content-Length") or 0) > 0:
            self.close_connection = True  # a body is not read; do not reuse the connection
        self._dispatch({})

    def _dispatch(self, form: dict[str, list[str]]) -> None:
        url = urllib.parse.urlsplit(self.path)
        params: dict[str, list[str]] = {}
        for source in (urllib.parse.parse_qs(url.query, keep_blank_values=True), form):
            for key, values in source.items():
                params.setdefault(key.upper() if key.lower() != "name" else "name", []).extend(
                    values
                )
        path = url.path.rstrip("/") or "/"
        service = self.server.service
        base = service.base_url
        xml = "text/xml; charset=utf-8"
        votable = f"{VOTABLE_MIME}; charset=utf-8"
        try:
            if self.command == "DELETE" and not path.startswith("/tap/async/"):
                self._send(405, "text/plain", f"DELETE is not supported on {path}.\n")
            elif path in ("/tap/availability", "/sia2/availability", "/scs/availability"):
                self._send(200, xml, availability("The ESCAPE data lake's VO endpoint is up."))
            elif path == "/tap/capabilities":
                self._send(200, xml, tap_capabilities(base))
            elif path in ("/sia2/capabilities", "/scs/capabilities"):
                self._send(200, xml, simple_capabilities(base, path.split("/")[1]))
            elif path == "/tap/tables":
                self._send(200, xml, tableset())
            elif path == "/tap/sync":
                self._votable(*service.tap_sync(params))
            elif path == "/tap/async" or path.startswith("/tap/async/"):
                rest = path[len("/tap/async") :].strip("/")
                reply = service.jobs.handle(self.command, rest, params, f"{base}/tap/async")
                self._send(reply.status, reply.content_type, reply.body, reply.location)
            elif path in ("/sia2/query", "/sia2"):
                self._votable(*service.sia2(params))
            elif path in ("/scs/query", "/scs"):
                self._votable(*service.scs(params))
            elif path == "/datalink/links":
                self._votable(*service.datalink(params), mime=DATALINK_MIME)
            elif path == "/resolve":
                name = _one(params, "name") or _one(params, "NAME")
                if not name:
                    self._json(400, {"error": "Give a target name: /resolve?name=Crab"})
                else:
                    self._json(*service.resolve(name))
            elif path in ("/", "/tap"):
                self._json(200, _index(base))
            else:
                self._json(404, {"error": f"No endpoint {path}.", "endpoints": _index(base)})
        except (BadRequest, adql.AdqlError) as exc:
            self._send(400, votable, error_document(str(exc)))
        except LakeError as exc:
            log.warning("lake error on %s: %s", path, exc)
            message = f"The data lake could not be read: {exc}"
            if path == "/resolve":
                self._json(503, {"error": message})
            else:
                self._send(503, votable, error_document(message))
        except Exception as exc:
            log.exception("internal error on %s", self.path)
            self._send(500, votable, error_document(f"Internal error: {exc}"))

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(payload) + "\n")

    def _votable(self, status: int, body: str, mime: str = VOTABLE_MIME) -> None:
        self._send(status, f"{mime}; charset=utf-8", body)

    def _send(self, status: int, content_type: str, body: str, location: str | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if location is not None:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """One line per request in the component's log."""
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")
        sys.stderr.flush()


def _index(base: str) -> dict[str, Any]:
    return {
        "tap": f"{base}/tap",
        "sia2": f"{base}/sia2/query",
        "scs": f"{base}/scs/query",
        "datalink": f"{base}/datalink/links?ID=",
        "resolve": f"{base}/resolve?name=",
    }


class VOServer(http.server.ThreadingHTTPServer):
    """The threading HTTP server of the VO endpoint (on 127.0.0.1 unless told otherwise)."""

    daemon_threads = True

    def __init__(self, service: VOService, port: int, host: str = "127.0.0.1") -> None:
        self.service = service
        super().__init__((host, port), VOHandler)

    def server_close(self) -> None:
        """Close the socket and stop the asynchronous TAP workers."""
        super().server_close()
        self.service.jobs.close()


def serve(
    instance: str | LakeConfig,
    port: int,
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    public_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> VOServer:
    """A VO server publishing ``instance`` on ``host``:``port`` (port 0: any free port).

    Call ``serve_forever()`` on it (or run it in a thread) and ``shutdown()`` to stop.

    Parameters
    ----------
    instance
        A configured instance's name, or its settings.
    port, host
        Where to listen (``host``: 127.0.0.1 by default; another address exposes it).
    state_dir
        The service's folder (made if missing).
    public_url
        The URL clients reach it at, when not ``http://HOST:PORT`` (behind a proxy).
    env
        The environment instances are read from (default: the process's).

    """
    state_dir.mkdir(parents=True, exist_ok=True)
    server = VOServer(VOService(instance, "http://127.0.0.1:0", state_dir, env), port, host)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    server.service.base_url = (public_url or f"http://{shown}:{bound}").rstrip("/")
    return server


def run(server: VOServer) -> None:
    """Serve until SIGTERM or Ctrl-C, then close the socket."""

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    log.info("VO endpoint on %s", server.service.base_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m escape_portal.vo_publish --instance NAME --port PORT --state-dir DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m escape_portal.vo_publish",
        description="Publish a Rucio instance in the Virtual Observatory until SIGTERM.",
    )
    parser.add_argument("--instance", required=True, help="configured Rucio instance")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--state-dir", type=Path, required=True, help="the service's folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--public-url", help="URL clients reach it at (default http://HOST:PORT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = serve(
            args.instance,
            args.port,
            args.state_dir.resolve(),
            host=args.host,
            public_url=args.public_url,
        )
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    run(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
