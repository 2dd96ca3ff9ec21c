"""RegTAP records of the VO publication's own services, and of extra ones.

The ``rr`` tables hold one resource each for this server's TAP, SIA2 and Cone Search
services, plus any resources listed in ``STATE_DIR/registry-extra.json``: a JSON list
of ``{"ivoid", "title", "description", "waveband", "subjects", "capabilities":
[{"standard_id", "access_url"}]}`` (``waveband``: a list of IVOA messenger terms or a
``#``-separated string). RegTAP wants ivoids, standard ids and wavebands lowercased.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from escape_portal.vo_ids import LAKE_IVOID
from escape_portal.vo_publish.vo_schema import ALL_TABLES, SCHEMAS

log = logging.getLogger(__name__)

TAP_ID = "ivo://ivoa.net/std/tap"
SIA2_ID = "ivo://ivoa.net/std/sia#query-2.0"
SCS_ID = "ivo://ivoa.net/std/conesearch"
_SUBJECTS = {
    "gamma-ray": "gamma-ray-astronomy",
    "radio": "radio-astronomy",
    "neutrino": "neutrino-astronomy",
}
_PUBLISHED = "2026-11-25T00:00:00"


@dataclass(frozen=True)
class Resource:
    """One registry record."""

    ivoid: str
    title: str
    description: str
    res_type: str
    waveband: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, str], ...] = ()  # (standard_id, access_url)
    short_name: str | None = None
    tables: bool = field(default=False)


def own_resources(base_url: str, messengers: Sequence[str]) -> list[Resource]:
    """The records of this server's TAP, SIA2 and Cone Search services."""
    waveband = tuple(sorted({m.lower() for m in messengers}))
    subjects = ("astronomical-databases", "data-lake", *(_SUBJECTS.get(m, m) for m in waveband))
    what = "the ESCAPE data lake (CTAO, LOFAR, KM3NeT, SKA sample data)"
    return [
        Resource(
            f"{LAKE_IVOID}/tap",
            "ESCAPE data lake TAP service",
            f"ObsCore records of {what}, queryable in ADQL; also this registry (RegTAP).",
            "vs:catalogservice",
            waveband,
            subjects,
            ((TAP_ID, f"{base_url}/tap"),),
            "ESCAPE TAP",
            tables=True,
        ),
        Resource(
            f"{LAKE_IVOID}/sia2",
            "ESCAPE data lake image and event search (SIA2)",
            f"Simple Image Access 2.0 over the ObsCore records of {what}.",
            "vs:catalogservice",
            waveband,
            subjects,
            ((SIA2_ID, f"{base_url}/sia2/query"),),
            "ESCAPE SIA2",
        ),
        Resource(
            f"{LAKE_IVOID}/scs",
            "ESCAPE data lake cone search",
            f"Simple Cone Search 1.03 over the observations of {what}.",
            "vs:catalogservice",
            waveband,
            subjects,
            ((SCS_ID, f"{base_url}/scs/query"),),
            "ESCAPE SCS",
        ),
    ]


def extra_resources(path: Path) -> list[Resource]:
    """The records of ``registry-extra.json`` (none if the file is absent or unreadable)."""
    if not path.exists():
        return []
    try:
        items = json.loads(path.read_text())
        found = []
        for item in items:
            waveband = item.get("waveband") or ()
            if isinstance(waveband, str):
                waveband = [w for w in waveband.split("#") if w]
            found.append(
                Resource(
                    str(item["ivoid"]).lower(),
                    str(item.get("title") or item["ivoid"]),
                    str(item.get("description") or ""),
                    "vs:catalogservice",
                    tuple(str(w).lower() for w in waveband),
                    tuple(str(s) for s in item.get("subjects") or ()),
                    tuple(
                        (str(c["standard_id"]).lower(), str(c["access_url"]))
                        for c in item.get("capabilities") or ()
                    ),
                )
            )
        return found
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return []


def rr_rows(resources: Sequence[Resource]) -> dict[str, list[dict[str, Any]]]:
    """Rows of the ``rr`` tables for ``resources``."""
    rows: dict[str, list[dict[str, Any]]] = {
        f"rr.{n}": []
        for n in [
            "resource",
            "capability",
            "interface",
            "res_subject",
            "res_schema",
            "res_table",
            "table_column",
            "res_role",
            "res_date",
            "validation",
        ]
    }
    for res in resources:
        rows["rr.resource"].append(
            {
                "ivoid": res.ivoid,
                "res_type": res.res_type,
                "created": _PUBLISHED,
                "updated": _PUBLISHED,
                "short_name": res.short_name,
                "res_title": res.title,
                "content_level": "research",
                "res_description": res.description,
                "reference_url": res.capabilities[0][1] if res.capabilities else None,
                "creator_seq": "ESCAPE Portal",
                "content_type": "catalog",
                "res_version": "1",
                "region_of_regard": 0.01,
                "waveband": "#".join(res.waveband) or None,
                "rights": "public",
            }
        )
        rows["rr.res_role"].append(
            {"ivoid": res.ivoid, "role_name": "ESCAPE Portal", "base_role": "publisher"}
        )
        rows["rr.res_date"].append(
            {"ivoid": res.ivoid, "date_value": _PUBLISHED, "value_role": "created"}
        )
        rows["rr.res_subject"].extend({"ivoid": res.ivoid, "res_subject": s} for s in res.subjects)
        for index, (standard_id, url) in enumerate(res.capabilities, start=1):
            rows["rr.capability"].append(
                {
                    "ivoid": res.ivoid,
                    "cap_index": index,
                    "cap_type": "tr:tableaccess" if standard_id == TAP_ID else None,
                    "standard_id": standard_id,
                }
            )
            rows["rr.interface"].append(
                {
                    "ivoid": res.ivoid,
                    "cap_index": index,
                    "intf_index": index,
                    "intf_type": "vs:paramhttp",
                    "intf_role": "std",
                    "std_version": "1.1" if standard_id == TAP_ID else None,
                    "url_use": "base",
                    "access_url": url,
                    "authenticated_only": 0,
                }
            )
            rows["rr.validation"].append(
                {"ivoid": res.ivoid, "cap_index": index, "validated_by": res.ivoid, "val_level": 2}
            )
        if res.tables:
            for s_index, schema in enumerate(SCHEMAS):
                rows["rr.res_schema"].append(
                    {
                        "ivoid": res.ivoid,
                        "schema_index": s_index,
                        "schema_name": schema,
                        "schema_description": SCHEMAS[schema],
                    }
                )
            for t_index, table in enumerate(ALL_TABLES):
                rows["rr.res_table"].append(
                    {
                        "ivoid": res.ivoid,
                        "schema_index": list(SCHEMAS).index(table.schema),
                        "table_index": t_index,
                        "table_name": table.qualified,
                        "table_description": table.description,
                        "table_utype": table.utype,
                        "table_type": "table",
                    }
                )
                rows["rr.table_column"].extend(
                    {
                        "ivoid": res.ivoid,
                        "table_index": t_index,
                        "name": c.name,
                        "ucd": c.ucd,
                        "utype": c.utype,
                        "std": int(c.std),
                        "datatype": c.datatype,
                        "arraysize": c.arraysize,
                        "description": c.description,
                        "unit": c.unit,
                    }
                    for c in table.columns
                )
    return rows
