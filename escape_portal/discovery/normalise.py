"""Answers of ObsCore, SIA2, cone search and SSA services as one ObsCore-shaped table.

ObsCore (TAP) and SIA2 answers already have ObsCore columns (matched by name, or by
``obscore:`` utype). Cone-search answers are mapped by UCD, SSA answers by their SSA
data-model utypes. Units are converted to ObsCore's (degrees, MJD, metres). Columns a
service has beyond ObsCore are kept under their own names (masked in the rows of other
services), or as ``SERVICE.column`` where the same name holds another kind of value
elsewhere. Every row says which ``service`` it came from and what ``query`` was sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

#: ObsCore columns of the merged table, and their numpy kind (U: text, i: int, f: float).
OBSCORE_COLUMNS: dict[str, str] = {
    "dataproduct_type": "U",
    "calib_level": "i",
    "obs_collection": "U",
    "obs_id": "U",
    "obs_publisher_did": "U",
    "access_url": "U",
    "access_format": "U",
    "access_estsize": "i",
    "target_name": "U",
    "s_ra": "f",
    "s_dec": "f",
    "s_fov": "f",
    "s_region": "U",
    "s_resolution": "f",
    "t_min": "f",
    "t_max": "f",
    "t_exptime": "f",
    "t_resolution": "f",
    "em_min": "f",
    "em_max": "f",
    "em_res_power": "f",
    "o_ucd": "U",
    "pol_states": "U",
    "facility_name": "U",
    "instrument_name": "U",
    "obs_title": "U",
}
PROVENANCE_COLUMNS = ("service", "query")
_DTYPES: dict[str, Any] = {"U": "U1", "i": np.int64, "f": np.float64}
_UNITS = {
    "s_ra": u.deg,
    "s_dec": u.deg,
    "s_fov": u.deg,
    "s_resolution": u.arcsec,
    "t_min": u.d,
    "t_max": u.d,
    "t_exptime": u.s,
    "t_resolution": u.s,
    "em_min": u.m,
    "em_max": u.m,
}

#: Cone search: UCD (lower case, first word set) -> ObsCore column.
_SCS_UCDS = {
    "pos.eq.ra;meta.main": "s_ra",
    "pos.eq.dec;meta.main": "s_dec",
    "pos.eq.ra": "s_ra",
    "pos.eq.dec": "s_dec",
    "meta.id;meta.main": "obs_id",
    "meta.ref.url": "access_url",
    "meta.ref.url;meta.dataset": "access_url",
    "meta.ref.ivoid": "obs_publisher_did",
    "meta.curation": "obs_publisher_did",
    "meta.code.mime": "access_format",
    "phys.size;meta.file": "access_estsize",
    "meta.id;src": "target_name",
    "time.start": "t_min",
    "time.end": "t_max",
    "time.epoch": "t_min",
    "time.duration;obs.exposure": "t_exptime",
    "em.wl;stat.min": "em_min",
    "em.wl;stat.max": "em_max",
    "instr.tel": "facility_name",
    "instr.setup": "instrument_name",
    "meta.title": "obs_title",
}
#: SSA data-model utype (after the prefix, lower case) -> ObsCore column.
_SSA_UTYPES = {
    "access.reference": "access_url",
    "access.format": "access_format",
    "access.size": "access_estsize",
    "target.name": "target_name",
    "dataid.collection": "obs_collection",
    "dataid.creatordid": "obs_id",
    "dataid.datasetid": "obs_id",
    "curation.publisherdid": "obs_publisher_did",
    "dataid.title": "obs_title",
    "dataid.instrument": "instrument_name",
    "char.spatialaxis.coverage.bounds.extent": "s_fov",
    "char.timeaxis.coverage.bounds.start": "t_min",
    "char.timeaxis.coverage.bounds.stop": "t_max",
    "char.timeaxis.coverage.support.extent": "t_exptime",
    "char.spectralaxis.coverage.bounds.start": "em_min",
    "char.spectralaxis.coverage.bounds.stop": "em_max",
    "char.spatialaxis.coverage.location.value": "s_ra,s_dec",
}


def _utype_key(utype: str | None) -> str:
    if not utype:
        return ""
    key = utype.split(":", 1)[-1].lower()
    return re.sub(r"^(spectrum|ssa|ssldm)\.", "", key)


def obscore_names(kind: str, fields: Sequence[Any], names: Sequence[str]) -> dict[str, str]:
    """Map a service's column names onto ObsCore names, from names, utypes and UCDs.

    Parameters
    ----------
    kind
        The service kind (``tap``, ``sia2``, ``scs``, ``ssa``).
    fields
        The VOTable FIELDs of the answer (``name``, ``ucd``, ``utype``).
    names
        The table's column names, in the same order.

    Returns
    -------
    dict
        Column name -> ObsCore name (``"s_ra,s_dec"`` for an SSA position pair), only
        for columns that have one.

    """
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for field, name in zip(fields, names, strict=False):
        lowered = name.lower()
        ucd = (getattr(field, "ucd", None) or "").lower()
        utype = getattr(field, "utype", None)
        target: str | None = None
        if lowered in OBSCORE_COLUMNS:
            target = lowered
        elif utype and utype.lower().startswith("obscore:"):
            target = _OBSCORE_UTYPES.get(utype.split(":", 1)[1].lower())
        elif kind == "ssa":
            target = _SSA_UTYPES.get(_utype_key(utype))
        elif kind == "scs":
            target = _SCS_UCDS.get(ucd)
        if target and target not in taken:
            mapping[name] = target
            taken.update(target.split(","))
    return mapping


_OBSCORE_UTYPES = {
    "obsdataset.dataproducttype": "dataproduct_type",
    "obsdataset.calibLevel".lower(): "calib_level",
    "dataid.collection": "obs_collection",
    "dataid.observationid": "obs_id",
    "curation.publisherdid": "obs_publisher_did",
    "access.reference": "access_url",
    "access.format": "access_format",
    "access.size": "access_estsize",
    "target.name": "target_name",
    "char.spatialaxis.coverage.location.coord.position2d.value2.c1": "s_ra",
    "char.spatialaxis.coverage.location.coord.position2d.value2.c2": "s_dec",
    "char.spatialaxis.coverage.bounds.extent.diameter": "s_fov",
    "char.spatialaxis.coverage.support.area": "s_region",
    "char.timeaxis.coverage.bounds.limits.starttime": "t_min",
    "char.timeaxis.coverage.bounds.limits.stoptime": "t_max",
    "char.spectralaxis.coverage.bounds.limits.lolimit": "em_min",
    "char.spectralaxis.coverage.bounds.limits.hilimit": "em_max",
    "provenance.obsconfig.facility.name": "facility_name",
    "provenance.obsconfig.instrument.name": "instrument_name",
}


def _text(values: Any, mask: Any) -> MaskedColumn:
    out = []
    for v, m in zip(values, mask, strict=True):
        if m:
            out.append("")
        elif isinstance(v, bytes):
            out.append(v.decode("utf-8", "replace"))
        else:
            out.append(str(v))
    return MaskedColumn(np.array(out, dtype=str) if out else np.array([], dtype="U1"), mask=mask)


def _converted(column: Any, target: str) -> Any:
    unit = getattr(column, "unit", None)
    wanted = _UNITS.get(target)
    data = np.ma.asarray(column)
    if unit is None or wanted is None:
        return data
    try:
        factor = (1 * u.Unit(unit)).to_value(wanted, equivalencies=u.spectral())
    except (u.UnitsError, ValueError, TypeError):
        return data
    if target.startswith("em_") and u.Unit(unit).physical_type != "length":
        # frequency or energy: not a scale factor
        values = (np.ma.getdata(data).astype(float) * u.Unit(unit)).to_value(
            u.m, equivalencies=u.spectral()
        )
        return np.ma.array(values, mask=np.ma.getmaskarray(data))
    if target.startswith("t_") and target in ("t_min", "t_max") and u.Unit(unit) != u.d:
        return data  # an epoch in another scale (JD, s since...): left as given
    return data.astype(float) * factor


def to_obscore(table: Table, fields: Sequence[Any], kind: str, service: str, query: str) -> Table:
    """One service's answer as ObsCore columns, extras and provenance.

    Parameters
    ----------
    table
        The answer as an astropy Table.
    fields
        Its VOTable FIELDs (for UCDs and utypes).
    kind
        The service kind.
    service
        Service name (the ``service`` column).
    query
        What was sent (the ``query`` column).

    Returns
    -------
    astropy.table.Table
        Every ObsCore column of :data:`OBSCORE_COLUMNS` (masked where the service has
        none), then the service's other columns, then ``service`` and ``query``.

    """
    n = len(table)
    mapping = obscore_names(kind, fields, table.colnames)
    columns: dict[str, Any] = {}
    for name, target in mapping.items():
        col = table[name]
        if target == "s_ra,s_dec":
            data = np.ma.asarray(col)
            if data.ndim == 2 and data.shape[1] >= 2:
                columns["s_ra"] = data[:, 0].astype(float)
                columns["s_dec"] = data[:, 1].astype(float)
            continue
        columns[target] = _converted(col, target)
    if kind == "ssa" and "dataproduct_type" not in columns:
        columns["dataproduct_type"] = np.ma.array(["spectrum"] * n)
    out = Table(masked=True)
    for name, kind_code in OBSCORE_COLUMNS.items():
        if name in columns:
            data = columns[name]
            mask = np.ma.getmaskarray(data)
            if kind_code == "U":
                out[name] = _text(np.ma.getdata(data), mask)
            else:
                dtype = np.int64 if kind_code == "i" else np.float64
                raw = np.ma.getdata(data)
                try:
                    values = np.asarray(raw).astype(dtype)
                except (TypeError, ValueError):
                    values = np.zeros(n, dtype=dtype)
                    mask = np.ones(n, dtype=bool)
                out[name] = MaskedColumn(values, mask=mask)
        else:
            empty: Any = {"U": "", "i": 0, "f": np.nan}[kind_code]
            out[name] = MaskedColumn(
                np.full(n, empty, dtype=_DTYPES[kind_code]),
                mask=np.ones(n, dtype=bool),
            )
        if name in _UNITS and name in columns:
            out[name].unit = _UNITS[name]
    for name in table.colnames:
        if name in mapping or name.lower() in OBSCORE_COLUMNS or name in PROVENANCE_COLUMNS:
            continue
        col = table[name]
        if getattr(col, "ndim", 1) > 1 or np.asarray(col).dtype.kind == "O":
            out[name] = _text(
                np.ma.getdata(col), np.asarray(np.ma.getmaskarray(col)).reshape(n, -1).any(1)
            )
        else:
            out[name] = MaskedColumn(col)
    out["service"] = np.array([service] * n, dtype=str) if n else np.array([], dtype="U1")
    out["query"] = np.array([query] * n, dtype=str) if n else np.array([], dtype="U1")
    return out


def _kind_of(column: Any) -> str:
    k = column.dtype.kind
    return "U" if k in "USO" else ("b" if k == "b" else "n")


def merge(parts: Sequence[tuple[str, Table]]) -> Table:
    """Stack per-service ObsCore tables into one, extras masked where absent.

    Parameters
    ----------
    parts
        ``(service name, table from to_obscore)`` pairs.

    Returns
    -------
    astropy.table.Table
        ObsCore columns first, then extras, then ``service`` and ``query``.

    """
    from astropy.table import vstack

    if not parts:
        return empty_obscore()
    kinds: dict[str, set[str]] = {}
    for _, table in parts:
        for name in table.colnames:
            kinds.setdefault(name, set()).add(_kind_of(table[name]))
    renamed = []
    for service, table in parts:
        t = table.copy(copy_data=False)
        for name in list(t.colnames):
            extra = name not in OBSCORE_COLUMNS and name not in PROVENANCE_COLUMNS
            if extra and len(kinds[name]) > 1:
                t.rename_column(name, f"{service}.{name}")
        renamed.append(t)
    merged = vstack(renamed, join_type="outer", metadata_conflicts="silent")
    order = [c for c in OBSCORE_COLUMNS if c in merged.colnames]
    order += [
        c for c in merged.colnames if c not in OBSCORE_COLUMNS and c not in PROVENANCE_COLUMNS
    ]
    order += list(PROVENANCE_COLUMNS)
    result: Table = merged[order]
    return result


def empty_obscore() -> Table:
    """An ObsCore-shaped table without rows (what a search that found nothing returns)."""
    return to_obscore(Table(), [], "tap", "", "")


def unique_records(table: Table) -> Table:
    """One row per ``obs_publisher_did``: the fullest found, ``service`` naming every source.

    Several services (a TAP and a SIA2 front of one archive, mirrors) often publish the
    same record; of those rows the one with the most values is kept (an ObsCore row over a
    cone search's), in the order first seen. Rows without a publisher DID are all kept.
    """
    if len(table) == 0 or "obs_publisher_did" not in table.colnames:
        return table
    groups: dict[str, list[int]] = {}
    order: list[str] = []
    for i, row in enumerate(table):
        did = row["obs_publisher_did"]
        key = "" if np.ma.is_masked(did) else str(did).strip()
        key = key or f"\x00{i}"  # no publisher DID: a group of its own
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(i)

    def filled(i: int) -> int:
        return sum(not np.ma.is_masked(v) and str(v) != "" for v in table[i])

    keep = [max(groups[k], key=lambda i: (filled(i), -i)) for k in order]
    out = table[keep]
    if "service" in out.colnames:
        names = [
            ", ".join(dict.fromkeys(str(table["service"][i]) for i in groups[k])) for k in order
        ]
        out.replace_column("service", names)
    return out


def plain_value(value: Any) -> Any:
    """A table cell as plain Python that JSON can carry.

    Masked, NaN and infinite values become ``None``, bytes text, numpy scalars Python
    ones; lists (array cells) are converted item by item.
    """
    if np.ma.is_masked(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value
