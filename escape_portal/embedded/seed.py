"""Sample data for the embedded lake, shaped like ESCAPE science.

FITS images with a celestial WCS and FITS event lists for CTA, LOFAR, KM3NeT and SKA,
grouped as containers of datasets, with ObsCore-ready DID metadata (target, ra/dec, band,
time, instrument, facility, ...), and scale datasets of 100, 10,000 and 100,000 tiny
files. Every file is written on its storage element's folder at the path Rucio's
``lfn2pfn`` gives and registered with its true size, adler32 and md5.

Registration goes through ``rucio.gateway`` (Rucio's server API, with its permission
checks) in chunks of 500 (SQLite rejects larger statements); runs inside the bootstrap
process (see :mod:`escape_portal.embedded.bootstrap`).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from escape_portal.embedded.layout import LakePaths

ISSUER = "root"
CHUNK = 500
#: Bumped when the sample data changes; a lake seeded with an older version is reseeded.
SEED_VERSION = 1
SCALE_DATASETS = {"files-100": 100, "files-10k": 10_000, "files-100k": 100_000}
SCALE_RSE = "INFN-NA-DISK"

# ObsCore em_min/em_max in metres
_BANDS = {
    "gamma-ray": (1.24e-18, 1.24e-16),  # ~10 TeV .. 10 GeV
    "radio": (1.4, 2.5),  # LOFAR HBA 120-210 MHz
    "neutrino": (1.24e-21, 1.24e-19),
    "radio-l": (0.2, 0.22),  # SKA-Mid band 2 HI
}


@dataclass
class SampleFile:
    """One file to write and register."""

    name: str
    content: bytes
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def adler32(self) -> str:  # noqa: D102
        return f"{zlib.adler32(self.content) & 0xFFFFFFFF:08x}"

    @property
    def md5(self) -> str:  # noqa: D102
        return hashlib.md5(self.content, usedforsecurity=False).hexdigest()


@dataclass
class SampleDataset:
    """A dataset of a container, with its files on one storage element."""

    scope: str
    container: str
    name: str
    rse: str
    meta: dict[str, Any]
    files: list[SampleFile]


def _image(
    ra: float, dec: float, target: str, telescope: str, instrument: str, mjd: float, seed: int
) -> bytes:
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(seed)
    size = 128
    y, x = np.mgrid[0:size, 0:size]
    source = 50.0 * np.exp(-((x - size / 2) ** 2 + (y - size / 2) ** 2) / (2 * 4.0**2))
    data = (source + rng.normal(0.0, 1.0, (size, size))).astype(np.float32)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    wcs.wcs.cdelt = [-0.01, 0.01]
    header = wcs.to_header()
    header["OBJECT"] = target
    header["TELESCOP"] = telescope
    header["INSTRUME"] = instrument
    header["MJD-OBS"] = mjd
    header["BUNIT"] = "Jy/beam" if telescope in {"LOFAR", "SKA"} else "counts"
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(data=data, header=header)]).writeto(buffer)
    return buffer.getvalue()


def _events(
    ra: float, dec: float, target: str, telescope: str, mjd: float, seed: int, n: int = 2000
) -> bytes:
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    duration = 1800.0
    columns = [
        fits.Column("EVENT_ID", "K", array=np.arange(n, dtype=np.int64)),
        fits.Column("TIME", "D", unit="s", array=np.sort(rng.uniform(0, duration, n))),
        fits.Column("RA", "E", unit="deg", array=ra + rng.normal(0, 0.2, n)),
        fits.Column("DEC", "E", unit="deg", array=dec + rng.normal(0, 0.2, n)),
        fits.Column("ENERGY", "E", unit="TeV", array=rng.pareto(1.6, n) + 0.1),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="EVENTS")
    table.header["OBJECT"] = target
    table.header["TELESCOP"] = telescope
    table.header["MJDREFI"] = int(mjd)
    table.header["MJDREFF"] = mjd - int(mjd)
    table.header["TSTART"] = 0.0
    table.header["TSTOP"] = duration
    table.header["RA_OBJ"] = ra
    table.header["DEC_OBJ"] = dec
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
    return buffer.getvalue()


def _obscore(
    target: str,
    ra: float,
    dec: float,
    band: str,
    mjd: float,
    facility: str,
    instrument: str,
    product: str,
    collection: str,
) -> dict[str, Any]:
    em_min, em_max = _BANDS[band]
    return {
        "target": target,
        "ra": ra,
        "dec": dec,
        "band": band.split("-")[0],
        "em_min": em_min,
        "em_max": em_max,
        "t_min": mjd,
        "t_max": mjd + 1800.0 / 86400.0,
        "facility": facility,
        "instrument": instrument,
        "dataproduct_type": product,
        "calib_level": 2 if product == "event" else 3,
        "obs_collection": collection,
        "s_fov": 1.28 if product == "image" else 5.0,
    }


def sample_datasets() -> list[SampleDataset]:
    """The science-like sample datasets (deterministic)."""
    specs = [
        # scope, container, dataset, rse, target, ra, dec, band, facility, instrument, kind, n
        (
            "cta",
            "crab-2024",
            "crab-2024.dl3",
            "DESY-DISK",
            "Crab",
            83.6331,
            22.0145,
            "gamma-ray",
            "CTAO",
            "LST-1",
            "event",
            4,
        ),
        (
            "cta",
            "crab-2024",
            "crab-2024.sky",
            "LAPP-DISK",
            "Crab",
            83.6331,
            22.0145,
            "gamma-ray",
            "CTAO",
            "LST-1",
            "image",
            2,
        ),
        (
            "cta",
            "pks2155-2023",
            "pks2155-2023.dl3",
            "PIC-DISK",
            "PKS 2155-304",
            329.7169,
            -30.2256,
            "gamma-ray",
            "CTAO",
            "LST-1",
            "event",
            3,
        ),
        (
            "lofar",
            "lotss-dr2",
            "lotss-dr2.hetdex",
            "PIC-DISK",
            "HETDEX field",
            180.0,
            52.0,
            "radio",
            "LOFAR",
            "HBA",
            "image",
            4,
        ),
        (
            "km3net",
            "arca21-2023",
            "arca21-2023.events",
            "INFN-NA-DISK",
            "Galactic Centre",
            266.4168,
            -29.0078,
            "neutrino",
            "KM3NeT",
            "ARCA21",
            "event",
            3,
        ),
        (
            "ska",
            "sdc2",
            "sdc2.continuum",
            "CERN-DISK",
            "SDC2 field",
            0.0,
            -30.0,
            "radio-l",
            "SKA",
            "SKA-Mid",
            "image",
            2,
        ),
    ]
    datasets = []
    for index, spec in enumerate(specs):
        (
            scope,
            container,
            dataset,
            rse,
            target,
            ra,
            dec,
            band,
            facility,
            instrument,
            kind,
            count,
        ) = spec
        mjd0 = 60300.0 + 10 * index
        meta = _obscore(target, ra, dec, band, mjd0, facility, instrument, kind, container)
        files = []
        for i in range(count):
            mjd = mjd0 + i
            seed = 1000 * index + i
            offset_ra, offset_dec = ra + 0.3 * i, dec + 0.1 * i
            if kind == "image":
                content = _image(offset_ra, offset_dec, target, facility, instrument, mjd, seed)
            else:
                content = _events(offset_ra, offset_dec, target, facility, mjd, seed)
            file_meta = _obscore(
                target, offset_ra, offset_dec, band, mjd, facility, instrument, kind, container
            )
            files.append(SampleFile(f"{dataset}.{i + 1:04d}.fits", content, file_meta))
        datasets.append(SampleDataset(scope, container, dataset, rse, meta, files))
    return datasets


def _scale_files(dataset: str, count: int) -> Iterator[SampleFile]:
    for i in range(count):
        name = f"{dataset}.{i:06d}.dat"
        yield SampleFile(name, f"escape-portal scale sample {dataset} {i:06d}\n".encode())


def _write(paths: LakePaths, rse: str, scope: str, files: list[SampleFile]) -> None:
    from rucio.rse import rsemanager

    info = rsemanager.get_rse_info(rse=rse)
    lfns = [{"scope": scope, "name": f.name} for f in files]
    pfns = rsemanager.lfns2pfns(info, lfns, operation="write", scheme="file")
    root = paths.rse_dir(rse)
    for f in files:
        pfn = pfns[f"{scope}:{f.name}"]
        target = Path(urlparse(pfn).path)
        if not target.is_relative_to(root):
            raise RuntimeError(f"{pfn} is outside storage element folder {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(f.content)
        tmp.replace(target)


def _existing_content(scope: str, name: str) -> set[str] | None:
    from rucio.common.exception import DataIdentifierNotFound
    from rucio.gateway import did

    try:
        return {c["name"] for c in did.list_content(scope, name)}
    except DataIdentifierNotFound:
        return None


def _register_dataset(
    paths: LakePaths,
    scope: str,
    dataset: str,
    rse: str,
    files: Iterator[SampleFile] | list[SampleFile],
    meta: dict[str, Any] | None,
) -> int:
    from rucio.gateway import did

    present = _existing_content(scope, dataset)
    if present is None:
        did.add_did(scope, dataset, "DATASET", issuer=ISSUER)
        present = set()
    added = 0
    chunk: list[SampleFile] = []

    def flush() -> None:
        nonlocal added
        if not chunk:
            return
        _write(paths, rse, scope, chunk)
        did.attach_dids(
            scope,
            dataset,
            {
                "rse": rse,
                "dids": [
                    {
                        "scope": scope,
                        "name": f.name,
                        "bytes": len(f.content),
                        "adler32": f.adler32,
                        "md5": f.md5,
                    }
                    for f in chunk
                ],
            },
            issuer=ISSUER,
        )
        for f in chunk:
            if f.meta:
                did.set_metadata_bulk(scope, f.name, f.meta, issuer=ISSUER)
        added += len(chunk)
        chunk.clear()

    for f in files:
        if f.name in present:
            continue
        chunk.append(f)
        if len(chunk) >= CHUNK:
            flush()
    flush()
    if meta:
        did.set_metadata_bulk(scope, dataset, meta, issuer=ISSUER)
    # After the files: one rule over the whole dataset (one partition, see layout.py) is
    # linear, where evaluating it chunk by chunk as files are attached is quadratic.
    _ensure_home_rule(scope, dataset, rse)
    return added


def _update_dataset_summaries() -> None:
    """Bring the dataset replica summaries up to date now, as Rucio's abacus daemon would."""
    from rucio.core.replica import (
        get_cleaned_updated_collection_replicas,
        update_collection_replica,
    )

    while pending := get_cleaned_updated_collection_replicas(
        total_workers=0, worker_number=0, limit=1000
    ):
        for request in pending:
            update_collection_replica(request)


def _drop_seeding_events(seeded: set[tuple[str, str]]) -> int:
    """Forget the judge's re-evaluation events of what seeding attached; return how many.

    Every attachment leaves an event for Rucio's judge-evaluator to apply the DID's rules
    to the new content. Seeding adds each dataset's rule after all its files, so the rule
    already covers them and these events are redundant; left in place they cost the
    evaluator minutes at a full core on the 100,000-file dataset after the first start.
    """
    from rucio.core.rule import delete_updated_did, get_updated_dids

    dropped = 0
    for id_, scope, name, _action in get_updated_dids(total_workers=0, worker_number=0, limit=None):
        if (scope.external, name) in seeded:
            delete_updated_did(id_)
            dropped += 1
    return dropped


def _ensure_home_rule(scope: str, dataset: str, rse: str) -> None:
    """The custodial rule at the dataset's home storage, as every real lake dataset has."""
    from rucio.gateway import rule

    if any(
        r["rse_expression"] == rse
        for r in rule.list_replication_rules({"scope": scope, "name": dataset})
    ):
        return
    rule.add_replication_rule(
        dids=[{"scope": scope, "name": dataset}],
        copies=1,
        rse_expression=rse,
        weight=None,
        lifetime=None,
        grouping="DATASET",
        account=ISSUER,
        locked=False,
        subscription_id=None,
        source_replica_expression=None,
        activity=None,
        notify=None,
        purge_replicas=False,
        ignore_availability=True,
        comment="custodial copy at the home site",
        ask_approval=False,
        asynchronous=False,
        delay_injection=None,
        priority=3,
        split_container=False,
        meta=None,
        issuer=ISSUER,
    )


def _ensure_container(
    scope: str, container: str, children: list[str], meta: dict[str, Any]
) -> None:
    from rucio.gateway import did

    present = _existing_content(scope, container)
    if present is None:
        did.add_did(scope, container, "CONTAINER", issuer=ISSUER)
        present = set()
    missing = [c for c in children if c not in present]
    if missing:
        did.attach_dids(
            scope,
            container,
            {"dids": [{"scope": scope, "name": c} for c in missing]},
            issuer=ISSUER,
        )
    did.set_metadata_bulk(scope, container, meta, issuer=ISSUER)


def seed(paths: LakePaths) -> dict[str, Any]:
    """Write and register all sample data not yet in the lake; return timings and counts."""
    if paths.seed_marker.exists():
        marker = json.loads(paths.seed_marker.read_text())
        if marker.get("version") == SEED_VERSION:
            return {"skipped": True, **marker}
    report: dict[str, Any] = {"version": SEED_VERSION}
    started = time.monotonic()
    by_container: dict[tuple[str, str], list[SampleDataset]] = {}
    files = 0
    for ds in sample_datasets():
        files += _register_dataset(paths, ds.scope, ds.name, ds.rse, ds.files, ds.meta)
        by_container.setdefault((ds.scope, ds.container), []).append(ds)
    for (scope, container), members in by_container.items():
        _ensure_container(scope, container, [m.name for m in members], members[0].meta)
    report["science_files"] = files
    report["science_s"] = round(time.monotonic() - started, 2)
    for name, count in SCALE_DATASETS.items():
        t0 = time.monotonic()
        added = _register_dataset(paths, "scale", name, SCALE_RSE, _scale_files(name, count), None)
        report[f"scale_{name}_files"] = added
        report[f"scale_{name}_s"] = round(time.monotonic() - t0, 2)
    _ensure_container("scale", "scale-all", list(SCALE_DATASETS), {"obs_collection": "scale"})
    _update_dataset_summaries()
    seeded = {(ds.scope, ds.name) for ds in sample_datasets()}
    seeded |= {(scope, container) for scope, container in by_container}
    seeded |= {("scale", name) for name in SCALE_DATASETS} | {("scale", "scale-all")}
    report["redundant_events_dropped"] = _drop_seeding_events(seeded)
    report["total_s"] = round(time.monotonic() - started, 2)
    paths.seed_marker.write_text(json.dumps(report))
    return report
