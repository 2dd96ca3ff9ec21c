"""ObsCore records of the lake, built from its DID metadata.

One record per file that carries ObsCore-ready metadata (``target``, ``ra``, ``dec``,
``em_min``/``em_max`` in metres, ``t_min``/``t_max`` in MJD, ``facility``,
``instrument``, ``dataproduct_type``, ``calib_level``, ``obs_collection``, ``s_fov``; the
embedded lake's seed writes them, a production lake's ingestion would). Only DIDs matching
a metadata filter are listed, so datasets without ObsCore metadata (the embedded lake's
100,000-file scale datasets, say) are never scanned.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from escape_portal.lake import DID, Lake
from escape_portal.vo_ids import publisher_did

log = logging.getLogger(__name__)

#: The metadata filter that selects DIDs with ObsCore metadata.
OBSCORE_FILTER = "calib_level>=0"
DATALINK_FORMAT = "application/x-votable+xml;content=datalink"
_O_UCD = {"gamma": "phot.count", "neutrino": "phot.count", "radio": "phot.flux.density;em.radio"}
_BULK = 100


@dataclass(frozen=True)
class Target:
    """A named position the lake knows (for the name resolver)."""

    name: str
    ra: float
    dec: float


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def record(
    did: DID,
    meta: dict[str, Any],
    *,
    size: int | None,
    dataset: str | None,
    base_url: str,
) -> dict[str, Any]:
    """The ObsCore record of one file.

    Parameters
    ----------
    did
        The file.
    meta
        Its DID metadata (ObsCore-ready keys).
    size
        Its size in bytes.
    dataset
        ``scope:name`` of its dataset, if any.
    base_url
        This VO endpoint's base URL (the DataLink service lives below it).

    """
    ra, dec, fov = _float(meta.get("ra")), _float(meta.get("dec")), _float(meta.get("s_fov"))
    t_min, t_max = _float(meta.get("t_min")), _float(meta.get("t_max"))
    product = meta.get("dataproduct_type")
    ivoid = publisher_did(did.scope, did.name)
    region = None
    if ra is not None and dec is not None and fov is not None:
        region = f"Circle ICRS {ra:.10g} {dec:.10g} {fov / 2:.10g}"
    band = str(meta.get("band") or "")
    return {
        "dataproduct_type": product,
        "calib_level": int(meta["calib_level"]) if meta.get("calib_level") is not None else None,
        "obs_collection": meta.get("obs_collection"),
        "obs_id": did.name.removesuffix(".fits"),
        "obs_publisher_did": ivoid,
        "access_url": f"{base_url}/datalink/links?ID={quote(ivoid, safe='')}",
        "access_format": DATALINK_FORMAT,
        "access_estsize": None if size is None else max(1, (size + 1023) // 1024),
        "target_name": meta.get("target"),
        "s_ra": ra,
        "s_dec": dec,
        "s_fov": fov,
        "s_region": region,
        "s_resolution": 36.0 if product == "image" else None,  # 0.01 deg pixels
        "t_min": t_min,
        "t_max": t_max,
        "t_exptime": None if t_min is None or t_max is None else (t_max - t_min) * 86400.0,
        "t_resolution": None,
        "em_min": _float(meta.get("em_min")),
        "em_max": _float(meta.get("em_max")),
        "em_res_power": None,
        "s_xel1": 128 if product == "image" else None,
        "s_xel2": 128 if product == "image" else None,
        "t_xel": 1 if product == "image" else None,
        "em_xel": 1 if product == "image" else None,
        "pol_xel": 1 if product == "image" else None,
        "o_ucd": _O_UCD.get(band),
        "pol_states": None,
        "facility_name": meta.get("facility"),
        "instrument_name": meta.get("instrument"),
        "lake_did": str(did),
        "lake_dataset": dataset,
    }


def _metadata_bulk(lake: Lake, dids: list[DID]) -> Iterator[dict[str, Any]]:
    """Metadata of many DIDs, one request per chunk (falls back to one call each)."""
    pending = iter(dids)
    while chunk := list(itertools.islice(pending, _BULK)):
        try:
            rows = list(lake.client.get_metadata_bulk([d.as_rucio() for d in chunk], plugin="ALL"))
        except Exception as exc:  # an older server without the bulk call
            log.info("bulk metadata failed (%s); reading one by one", exc)
            rows = [{"scope": d.scope, "name": d.name, **lake.metadata(d)} for d in chunk]
        yield from rows


def _add_target(targets: dict[str, Target], meta: dict[str, Any]) -> None:
    name, ra, dec = meta.get("target"), _float(meta.get("ra")), _float(meta.get("dec"))
    if name and ra is not None and dec is not None and str(name).lower() not in targets:
        targets[str(name).lower()] = Target(str(name), ra, dec)


_MESSENGERS = {"gamma": "gamma-ray", "radio": "radio", "neutrino": "neutrino"}


@dataclass(frozen=True)
class Harvest:
    """What one read of the lake gave: records, targets and messengers (IVOA terms)."""

    records: list[dict[str, Any]]
    targets: list[Target]
    messengers: list[str]


def collect(lake: Lake, base_url: str) -> Harvest:
    """ObsCore records of every file with ObsCore metadata, the targets and messengers.

    Parameters
    ----------
    lake
        The lake to read.
    base_url
        This VO endpoint's base URL.

    """
    records: list[dict[str, Any]] = []
    targets: dict[str, Target] = {}
    messengers: set[str] = set()
    for scope in lake.scopes():
        files = list(lake.dids(scope, type="file", filters=[OBSCORE_FILTER]))
        if not files:
            continue
        dataset_of: dict[DID, str] = {}
        datasets = [d.did for d in lake.dids(scope, type="dataset", filters=[OBSCORE_FILTER])]
        for dataset in datasets:
            for content in lake.contents(dataset):
                dataset_of.setdefault(content.did, str(dataset))
        for meta in _metadata_bulk(lake, datasets):  # a dataset gives its target's position
            _add_target(targets, meta)
        sizes = {f.did: f.bytes for f in files}
        for meta in _metadata_bulk(lake, [f.did for f in files]):
            did = DID(str(meta["scope"]), str(meta["name"]))
            if did not in dataset_of:
                parents = [p for p in lake.parents(did) if p.type == "dataset"]
                if parents:
                    dataset_of[did] = str(parents[0].did)
            row = record(
                did, meta, size=sizes.get(did), dataset=dataset_of.get(did), base_url=base_url
            )
            records.append(row)
            _add_target(targets, meta)
            band = str(meta.get("band") or "").lower()
            messengers.add(_MESSENGERS.get(band, band) if band else "")
    records.sort(key=lambda r: r["lake_did"])
    messengers.discard("")
    return Harvest(records, list(targets.values()), sorted(messengers))
