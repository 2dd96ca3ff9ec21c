"""The embedded lake's CRIC-style and perfSONAR-style feeds, written at every ``lake up``.

They describe the embedded sites the way ESCAPE's CRIC and perfSONAR describe real ones,
so that :mod:`escape_portal.topology` is exercised end to end. Network figures are
modelled from distance (light in fibre covers about 200 km per millisecond; throughput
falls with distance), and one link is made lossy so that rankings have something to say.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from escape_portal.embedded.layout import LakePaths
from escape_portal.embedded.sites import SITES, Site, great_circle_km

LOSSY_LINK = ("INFN-NA", "CERN")


def cric_feed(paths: LakePaths, compute_site: Site) -> dict[str, Any]:
    """Storage elements with sites and protocols, and sites with coordinates and compute."""
    return {
        "sites": {
            s.name: {
                "country": s.country,
                "latitude": s.latitude,
                "longitude": s.longitude,
                "compute": ["jupyterhub"] if s.name == compute_site.name else [],
            }
            for s in SITES
        },
        "rses": {
            s.rse: {
                "site": s.name,
                "country": s.country,
                "rse_type": "DISK",
                "protocols": [
                    {
                        "scheme": "file",
                        "prefix": str(paths.rse_dir(s.rse)),
                        **({"mount": str(paths.rse_dir(s.rse))} if s is compute_site else {}),
                    }
                ],
            }
            for s in SITES
        },
    }


def perfsonar_feed(now: dt.datetime | None = None) -> dict[str, Any]:
    """Throughput, latency and loss between every pair of sites, measured ``now``."""
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for a in SITES:
        for b in SITES:
            if a is b:
                continue
            km = great_circle_km(a, b)
            lossy = {a.name, b.name} == set(LOSSY_LINK)
            rows.append(
                {
                    "source": a.name,
                    "destination": b.name,
                    "throughput_mbps": round(10_000 / (1 + km / 400) * (0.2 if lossy else 1), 1),
                    "latency_ms": round(2 * km / 200 + 1, 2),
                    "packet_loss": 0.02 if lossy else 0.0,
                    "measured_at": now.isoformat(),
                }
            )
    return {"measurements": rows}


def write_feeds(paths: LakePaths, compute_site: Site) -> tuple[Path, Path]:
    """Write both feeds into ``DATA_DIR/feeds``; return their paths (CRIC, perfSONAR)."""
    folder = paths.root / "feeds"
    folder.mkdir(parents=True, exist_ok=True)
    cric, perfsonar = folder / "cric.json", folder / "perfsonar.json"
    for path, data in ((cric, cric_feed(paths, compute_site)), (perfsonar, perfsonar_feed())):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    return cric, perfsonar
