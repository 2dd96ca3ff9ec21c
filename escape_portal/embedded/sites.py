"""The sites and storage elements of the embedded data lake.

They stand for ESCAPE data-lake sites. Coordinates are the real sites' approximate
positions; distances are great-circle kilometres, ranked the way Rucio's ``distance``
table expects (smaller is nearer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """A site of the embedded lake with one POSIX storage element."""

    name: str
    rse: str
    country: str
    city: str
    latitude: float
    longitude: float
    quota_bytes: int


SITES: tuple[Site, ...] = (
    Site("CERN", "CERN-DISK", "CH", "Geneva", 46.2330, 6.0557, 50 * 2**30),
    Site("DESY", "DESY-DISK", "DE", "Hamburg", 53.5753, 9.8797, 50 * 2**30),
    Site("INFN-NA", "INFN-NA-DISK", "IT", "Napoli", 40.8384, 14.1827, 50 * 2**30),
    Site("PIC", "PIC-DISK", "ES", "Barcelona", 41.5002, 2.1110, 50 * 2**30),
    Site("IN2P3-LAPP", "LAPP-DISK", "FR", "Annecy", 45.9059, 6.1264, 50 * 2**30),
)

#: The site whose storage is mounted into the notebook's compute (the ESCAPE VRE ran at CERN).
DEFAULT_COMPUTE_SITE = "CERN"


def site_by_name(name: str) -> Site:
    """Return the embedded site called ``name``.

    Raises
    ------
    KeyError
        If no embedded site has that name.

    """
    for site in SITES:
        if site.name == name:
            return site
    raise KeyError(f"no embedded site named {name!r}; known: {', '.join(s.name for s in SITES)}")


def great_circle_km(a: Site, b: Site) -> float:
    """Great-circle distance between two sites in kilometres (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def rucio_distance(a: Site, b: Site) -> int:
    """Rucio ``distance`` rank between two sites: 1 per started 100 km, at least 1."""
    return max(1, math.ceil(great_circle_km(a, b) / 100))
