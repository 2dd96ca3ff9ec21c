"""Sites, storage elements and the links between them, merged from several sources.

Sources, each optional but Rucio:

- **Rucio**: storage elements with their attributes (``site``, ``country``, ``latitude``,
  ``longitude``, ``escape_mount``), availability, protocols, the account's quota and
  usage, and Rucio's ``distance`` ranks from the storage near the compute site.
- **A CRIC-style feed** (JSON, file or URL): ``{"rses": {RSE: {"site": ..., "country":
  ..., "latitude": ..., "longitude": ..., "protocols": [{"scheme": ..., "mount": ...}]}},
  "sites": {SITE: {"country": ..., "latitude": ..., "longitude": ..., "compute":
  [...]}}}``, as ESCAPE's CRIC publishes storage elements with their sites and protocols.
- **A perfSONAR-style feed** (JSON, file or URL): ``{"measurements": [{"source": SITE,
  "destination": SITE, "throughput_mbps": ..., "latency_ms": ..., "packet_loss": ...,
  "measured_at": ISO-8601}]}``.

A source that cannot be read, answers garbage or is older than its maximum age is left
out with a warning in :attr:`Topology.warnings`; nothing fails because a feed is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from escape_portal.lake import Lake

#: Feeds older than this are stale: used, with a warning.
DEFAULT_MAX_AGE = dt.timedelta(hours=24)
FEED_TIMEOUT = 10.0


@dataclass(frozen=True)
class Site:
    """A site of the data lake."""

    name: str
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    compute: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorageElement:
    """A Rucio storage element (RSE) as the portal sees it."""

    rse: str
    site: str | None
    schemes: tuple[str, ...] = ()
    mount_path: str | None = None
    readable: bool = True
    writable: bool = True
    quota_bytes: int | None = None
    used_bytes: int | None = None

    @property
    def free_quota_bytes(self) -> int | None:
        """What the account may still write here (``None``: no quota known)."""
        if self.quota_bytes is None:
            return None
        return max(0, self.quota_bytes - (self.used_bytes or 0))


@dataclass(frozen=True)
class Link:
    """What is known of the network between two sites."""

    source: str
    destination: str
    distance: int | None = None
    km: float | None = None
    throughput_mbps: float | None = None
    latency_ms: float | None = None
    packet_loss: float | None = None
    measured_at: dt.datetime | None = None


@dataclass
class Topology:
    """Sites, storage and links, plus warnings about sources left out or stale."""

    sites: dict[str, Site] = field(default_factory=dict)
    storage: dict[str, StorageElement] = field(default_factory=dict)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def storage_at(self, site: str) -> list[StorageElement]:
        """Storage elements of ``site``."""
        return [s for s in self.storage.values() if s.site == site]

    def link(self, source: str | None, destination: str | None) -> Link | None:
        """The link between two sites (either direction), with km filled from coordinates."""
        if not source or not destination:
            return None
        if source == destination:
            return Link(source, destination, distance=0, km=0.0)
        found = self.links.get((source, destination)) or self.links.get((destination, source))
        km = self.km(source, destination)
        if found is None:
            return Link(source, destination, km=km) if km is not None else None
        return found if found.km is not None or km is None else replace(found, km=km)

    def km(self, a: str, b: str) -> float | None:
        """Great-circle distance between two sites, if both have coordinates."""
        sa, sb = self.sites.get(a), self.sites.get(b)
        if not sa or not sb or None in (sa.latitude, sa.longitude, sb.latitude, sb.longitude):
            return None
        assert sa.latitude is not None and sa.longitude is not None
        assert sb.latitude is not None and sb.longitude is not None
        lat1, lon1, lat2, lon2 = map(
            math.radians, (sa.latitude, sa.longitude, sb.latitude, sb.longitude)
        )
        h = (
            math.sin((lat2 - lat1) / 2) ** 2
            + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
        )
        return 2 * 6371.0 * math.asin(math.sqrt(h))


def detect_compute_site(
    configured: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The site of the compute running this session: configured beats detected.

    Detected from ``ESCAPE_COMPUTE_SITE``, then ``SITE_NAME`` (WLCG/OSG convention), then
    ``JUPYTERHUB_SITE`` (set by ESCAPE VRE deployments).
    """
    if configured:
        return configured
    env = os.environ if env is None else env
    for key in ("ESCAPE_COMPUTE_SITE", "SITE_NAME", "JUPYTERHUB_SITE"):
        if env.get(key):
            return env[key]
    return None


def read_feed(source: str, *, timeout: float = FEED_TIMEOUT) -> Any:
    """JSON of a feed from a file path or an http(s) URL.

    Raises
    ------
    ValueError
        If it cannot be read or is not JSON, with the source in the message.

    """
    try:
        if source.startswith(("http://", "https://")):
            response = requests.get(source, timeout=timeout)
            response.raise_for_status()
            return response.json()
        return json.loads(Path(source).expanduser().read_text())
    except (OSError, requests.RequestException, ValueError) as exc:
        raise ValueError(f"cannot read feed {source}: {exc}") from exc


def _as_float(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _from_rucio(lake: Lake, topology: Topology, compute_site: str | None) -> None:
    client = lake.client
    with lake._calling("reading storage elements"):
        rses = list(client.list_rses())
        usage = {u["rse"]: u for u in client.get_local_account_usage(lake.identity().account)}
        for row in rses:
            name = row["rse"]
            attrs = client.list_rse_attributes(name)
            info = client.get_rse(name)
            site = attrs.get("site")
            if site and site not in topology.sites:
                topology.sites[site] = Site(
                    site,
                    attrs.get("country"),
                    _as_float(attrs.get("latitude")),
                    _as_float(attrs.get("longitude")),
                )
            use = usage.get(name, {})
            topology.storage[name] = StorageElement(
                rse=name,
                site=site,
                schemes=tuple(sorted({p["scheme"] for p in info.get("protocols", [])})),
                mount_path=attrs.get("escape_mount") or None,
                readable=bool(info.get("availability_read", True)),
                writable=bool(info.get("availability_write", True)),
                quota_bytes=use.get("bytes_limit"),
                used_bytes=use.get("bytes"),
            )
    local = [s.rse for s in topology.storage.values() if compute_site and s.site == compute_site]
    for near in local:
        for other in topology.storage.values():
            if other.rse == near or other.site is None or other.site == compute_site:
                continue
            with lake._calling("reading distances"):
                rows = client.get_distance(other.rse, near)
            if rows:
                assert compute_site is not None
                key = (other.site, compute_site)
                topology.links[key] = Link(other.site, compute_site, distance=rows[0]["distance"])


def _from_cric(feed: Any, topology: Topology, source: str) -> None:
    if not isinstance(feed, dict) or not isinstance(feed.get("rses", {}), dict):
        raise ValueError(f"{source} is not a CRIC-style feed (expected an object with 'rses')")
    for name, site in (feed.get("sites") or {}).items():
        old = topology.sites.get(name, Site(name))
        topology.sites[name] = Site(
            name,
            site.get("country") or old.country,
            _as_float(site.get("latitude")) if site.get("latitude") is not None else old.latitude,
            _as_float(site.get("longitude"))
            if site.get("longitude") is not None
            else old.longitude,
            tuple(site.get("compute") or old.compute),
        )
    for name, rse in feed.get("rses", {}).items():
        known = topology.storage.get(name)
        mount = next((p.get("mount") for p in rse.get("protocols", []) if p.get("mount")), None)
        schemes = tuple(sorted({p["scheme"] for p in rse.get("protocols", []) if "scheme" in p}))
        if known is None:
            # CRIC knows it, Rucio does not: informative only, never a destination.
            topology.storage[name] = StorageElement(
                name, rse.get("site"), schemes, mount, writable=False
            )
        else:
            topology.storage[name] = replace(
                known,
                site=known.site or rse.get("site"),
                mount_path=known.mount_path or mount,
                schemes=known.schemes or schemes,
            )
        site = rse.get("site")
        if site and site not in topology.sites:
            topology.sites[site] = Site(site, rse.get("country"))


def _from_perfsonar(
    feed: Any, topology: Topology, source: str, now: dt.datetime, max_age: dt.timedelta
) -> None:
    rows = feed.get("measurements") if isinstance(feed, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{source} is not a perfSONAR-style feed (no 'measurements' list)")
    stale = 0
    for row in rows:
        try:
            measured = dt.datetime.fromisoformat(str(row["measured_at"]))
            key = (str(row["source"]), str(row["destination"]))
        except (KeyError, ValueError):
            continue
        if measured.tzinfo is None:
            measured = measured.replace(tzinfo=dt.UTC)
        if now - measured > max_age:
            stale += 1
        old = topology.links.get(key, Link(*key))
        topology.links[key] = replace(
            old,
            throughput_mbps=_as_float(row.get("throughput_mbps")),
            latency_ms=_as_float(row.get("latency_ms")),
            packet_loss=_as_float(row.get("packet_loss")),
            measured_at=measured,
        )
    if stale:
        topology.warnings.append(
            f"{stale} network measurement(s) from {source} are older than {max_age}; "
            "throughput and latency may be out of date."
        )


def lake_topology(lake: Lake, compute_site: str | None = None) -> Topology:
    """The topology of ``lake`` seen from ``compute_site``, with the instance's own feeds.

    :func:`load_topology` with the CRIC-style and perfSONAR-style feeds that the lake's
    configuration names (``cric_feed``, ``network_feed``).
    """
    return load_topology(
        lake,
        compute_site=compute_site,
        cric=lake.config.cric_feed,
        perfsonar=lake.config.network_feed,
    )


def load_topology(
    lake: Lake,
    *,
    compute_site: str | None = None,
    cric: str | None = None,
    perfsonar: str | None = None,
    max_age: dt.timedelta = DEFAULT_MAX_AGE,
    now: dt.datetime | None = None,
) -> Topology:
    """Merge Rucio, a CRIC-style feed and a perfSONAR-style feed into one topology.

    Parameters
    ----------
    lake
        The lake whose storage elements are described.
    compute_site
        The session's compute site (see :func:`detect_compute_site`).
    cric, perfsonar
        File paths or URLs of the feeds; ``None`` leaves a feed out.
    max_age
        Older network measurements are used with a warning.
    now
        The current time (for tests).

    """
    topology = Topology()
    _from_rucio(lake, topology, compute_site)
    now = now or dt.datetime.now(dt.UTC)
    for source, merge in ((cric, "cric"), (perfsonar, "perfsonar")):
        if not source:
            continue
        try:
            feed = read_feed(source)
            if merge == "cric":
                _from_cric(feed, topology, source)
            else:
                _from_perfsonar(feed, topology, source, now, max_age)
        except ValueError as exc:
            topology.warnings.append(f"{exc}; continuing without it.")
    if compute_site and compute_site not in topology.sites:
        topology.warnings.append(
            f"The compute site {compute_site!r} is not a site of this lake; "
            "nothing counts as near compute."
        )
    return topology
