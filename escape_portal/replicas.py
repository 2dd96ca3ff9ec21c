"""Which replica of a lake file to read from here, and why: the one place that decides.

For one file, :meth:`ReplicaChooser.choose` gives an ordered list of :class:`Source`
candidates, each with the reason it is where it is, and the replicas it left out with
the reason too:

1. a replica on the storage element **mounted** into this compute: read in place;
2. a complete copy in the download **cache**;
3. the other replicas, **nearest first** by the topology
   (:mod:`escape_portal.topology`: the same site, then measured throughput, latency and
   distance from the compute site), and within one storage element its protocols in
   the order that fits the compute: on the compute's own site (LAN) ``file``, ``root``,
   ``davs``/``https``; across the WAN ``davs``/``https`` then ``root``; plain ``http``
   (which some lakes other than ESCAPE's may offer; the embedded lake does not) last.
   Replicas that are not ``AVAILABLE``, storage that is not readable and
   ``file://`` paths of other sites are left out, each with its reason.

Readers (:mod:`escape_portal.storage`) try the candidates in that order and move to the
next on an error (storage down, 403, checksum mismatch), keeping the reason. The CLI
(``escape-portal where``), the REST API (``GET /dids/{scope}/{name}/placement``) and the
widgets show the same :meth:`Choice.explain`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from escape_portal.errors import LakeError
from escape_portal.lake import FileInfo, FileReplicas, Lake
from escape_portal.topology import Topology, detect_compute_site, lake_topology

#: Protocols for storage on the compute's own site (LAN), best first.
LAN_PROTOCOLS: tuple[str, ...] = ("file", "root", "davs", "https", "http")
#: Protocols for storage elsewhere (WAN), best first.
WAN_PROTOCOLS: tuple[str, ...] = ("davs", "https", "root", "http")
#: Every protocol a reader exists for.
READABLE: frozenset[str] = frozenset(LAN_PROTOCOLS)


class NotAvailableHere(LakeError):
    """No replica of a file can be read from this machine."""

    exit_code = 8
    http_status = 409


Way = Literal["mounted", "cache", "download"]


@dataclass(frozen=True)
class Source:
    """One place to read a file from, with why it is in that position.

    Attributes
    ----------
    kind
        ``mounted`` (a local path on storage mounted here), ``cache`` (a verified copy in
        the download cache) or ``remote`` (a replica read over ``url``'s protocol).
    rse
        The storage element (``None`` for the cache).
    url
        Where to read: a local path for ``mounted``/``cache``, a replica URL (never with
        a token in it) for ``remote``.
    scheme
        ``file``, ``root``, ``davs``, ``https`` or ``http``.
    reason
        Why this source, in the user's words.
    """

    kind: Literal["mounted", "cache", "remote"]
    rse: str | None
    url: str
    scheme: str
    reason: str
    site: str | None = None

    @property
    def path(self) -> Path | None:
        """The local path of a mounted or cached source."""
        return Path(self.url) if self.kind != "remote" else None

    @property
    def storage_path(self) -> str:
        """The replica's path on its storage (what a storage token's scope names)."""
        return "/" + unquote(urlsplit(self.url).path).lstrip("/")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "kind": self.kind,
            "rse": self.rse,
            "site": self.site,
            "scheme": self.scheme,
            "url": self.url,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Skipped:
    """A replica (or one protocol of it) left out, and why."""

    rse: str
    reason: str
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"rse": self.rse, "url": self.url, "reason": self.reason}


@dataclass
class Choice:
    """The ordered sources of one file, the replicas left out, and what failed on the way.

    ``failures`` grows while readers try the sources: ``(source, reason)`` of each that
    did not work.
    """

    file: FileInfo
    compute_site: str | None
    sources: list[Source]
    skipped: list[Skipped] = field(default_factory=list)
    failures: list[tuple[Source, str]] = field(default_factory=list)

    @property
    def best(self) -> Source | None:
        """The first source (``None`` if nothing can be read here)."""
        return self.sources[0] if self.sources else None

    @property
    def way(self) -> Way | None:
        """``mounted``, ``cache`` or ``download`` (``None``: nothing readable)."""
        best = self.best
        if best is None:
            return None
        return "download" if best.kind == "remote" else best.kind

    def explain(self) -> str:
        """One sentence for the user: where it is read from and why."""
        best = self.best
        if best is None:
            left = "; ".join(f"{s.rse}: {s.reason}" for s in self.skipped)
            return f"No replica of {self.file.did} can be read from here" + (
                f" ({left})." if left else "."
            )
        failed = "".join(
            f" {s.rse or 'cache'} over {s.scheme} failed ({why})." for s, why in self.failures
        )
        return f"{self.file.did}: {best.reason}.{failed}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the same for the CLI, the REST API and the widgets)."""
        return {
            "did": str(self.file.did),
            "bytes": self.file.bytes,
            "adler32": self.file.adler32,
            "compute_site": self.compute_site,
            "way": self.way,
            "explanation": self.explain(),
            "sources": [s.to_dict() for s in self.sources],
            "skipped": [s.to_dict() for s in self.skipped],
            "failures": [{**s.to_dict(), "error": why} for s, why in self.failures],
        }


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


class ReplicaChooser:
    """Orders the replicas of files for this compute.

    Parameters
    ----------
    lake
        The lake.
    compute_site
        The compute's site (default: configured, else detected,
        :func:`escape_portal.topology.detect_compute_site`).
    mounted
        ``(replicas, rse) -> local path or None``: where a replica on the mounted storage
        is on this machine (``None`` when nothing is mounted).
    mounted_rse
        The storage element mounted here.
    cached
        ``file -> local path or None``: a complete copy in the download cache.
    protocols
        Only these protocols, in this order, for every remote replica (e.g.
        ``("root",)``); default: by LAN/WAN as above.
    topology
        The topology (default: loaded from the lake and the instance's feeds on first use).
    """

    def __init__(
        self,
        lake: Lake,
        *,
        compute_site: str | None = None,
        mounted: Callable[[FileReplicas, str], Path | None] | None = None,
        mounted_rse: str | None = None,
        cached: Callable[[FileInfo], Path | None] | None = None,
        protocols: Sequence[str] | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.lake = lake
        self.compute_site = detect_compute_site(compute_site or lake.config.compute_site)
        self.mounted = mounted
        self.mounted_rse = mounted_rse
        self.cached = cached
        self.protocols = tuple(p.lower() for p in protocols) if protocols else None
        self._topology = topology
        self._lock = threading.Lock()

    @property
    def topology(self) -> Topology:
        """The lake's topology seen from the compute site (loaded once)."""
        with self._lock:
            if self._topology is None:
                self._topology = lake_topology(self.lake, self.compute_site)
            return self._topology

    def _rank(self, rse: str) -> tuple[tuple[Any, ...], str]:
        """Sort key of a storage element (nearest first) and the words for it."""
        topology = self.topology
        se = topology.storage.get(rse)
        site = se.site if se else None
        if self.compute_site and site == self.compute_site:
            return (0, 0.0, 0.0, 0.0), f"on the compute's own site {site}"
        link = topology.link(site, self.compute_site)
        if link is None:
            return (2, 0.0, 0.0, 0.0), f"at {site or 'an unknown site'}, no distance known"
        words = []
        if link.throughput_mbps is not None:
            words.append(f"{link.throughput_mbps:.0f} Mb/s")
        if link.latency_ms is not None:
            words.append(f"{link.latency_ms:.0f} ms")
        if link.km is not None:
            words.append(f"{link.km:.0f} km")
        if link.distance is not None and not words:
            words.append(f"distance {link.distance}")
        key = (
            1,
            -(link.throughput_mbps or 0.0),
            link.latency_ms if link.latency_ms is not None else 1e9,
            link.km if link.km is not None else float(link.distance or 1e9),
        )
        to = f" from {self.compute_site}" if self.compute_site else ""
        return key, f"at {site}" + (f" ({', '.join(words)}{to})" if words else "")

    def preference(self, rse: str) -> tuple[str, ...]:
        """The protocols to read ``rse`` with, best first."""
        if self.protocols:
            return self.protocols
        se = self.topology.storage.get(rse)
        lan = bool(self.compute_site) and se is not None and se.site == self.compute_site
        return LAN_PROTOCOLS if lan else WAN_PROTOCOLS

    def choose(self, file: FileInfo, replicas: FileReplicas | None) -> Choice:
        """The ordered sources of ``file`` given its replicas (no request to Rucio)."""
        sources: list[Source] = []
        skipped: list[Skipped] = []
        states = replicas.states if replicas else {}
        mounted_here = self.mounted and self.mounted_rse and replicas is not None
        if mounted_here and states.get(str(self.mounted_rse)) == "AVAILABLE":
            assert self.mounted is not None and self.mounted_rse and replicas is not None
            path = self.mounted(replicas, self.mounted_rse)
            if path is not None:
                sources.append(
                    Source(
                        "mounted",
                        self.mounted_rse,
                        str(path),
                        "file",
                        f"on {self.mounted_rse}, mounted here: read in place",
                    )
                )
        if self.cached:
            path = self.cached(file)
            if path is not None:
                sources.append(
                    Source(
                        "cache", None, str(path), "file", "a verified copy in the download cache"
                    )
                )
        ranked: list[tuple[tuple[Any, ...], str, str]] = []
        known = self.topology.storage
        for rse, state in states.items():
            if rse not in known:
                skipped.append(Skipped(rse, "not a storage element this lake lists"))
            elif state != "AVAILABLE":
                skipped.append(Skipped(rse, f"the replica is {state.lower()}, not available"))
            elif not known[rse].readable:
                skipped.append(Skipped(rse, "the storage is marked not readable"))
            else:
                key, words = self._rank(rse)
                ranked.append((key, rse, words))
        for _, rse, words in sorted(ranked):
            sources.extend(self._remote(rse, words, replicas, skipped))
        return Choice(file, self.compute_site, sources, skipped)

    def _remote(
        self, rse: str, words: str, replicas: FileReplicas | None, skipped: list[Skipped]
    ) -> list[Source]:
        pfns = replicas.pfns.get(rse, []) if replicas else []
        order = self.preference(rse)
        found: list[Source] = []
        site = self.topology.storage[rse].site
        for pfn in sorted(
            pfns, key=lambda p: order.index(_scheme(p)) if _scheme(p) in order else 99
        ):
            scheme = _scheme(pfn)
            if scheme not in order:
                if scheme not in READABLE:
                    why = f"no reader for {scheme}://"
                elif scheme == "file":
                    why = "file:// is read only on the storage's own site"
                else:
                    why = f"{scheme}:// is not among the protocols asked for"
                skipped.append(Skipped(rse, why, pfn))
                continue
            if scheme == "file":
                local = Path(unquote(urlsplit(pfn).path))
                if not local.is_file():
                    skipped.append(Skipped(rse, "its file:// path is not on this machine", pfn))
                    continue
            lan = order is LAN_PROTOCOLS
            how = "forced" if self.protocols else ("LAN" if lan else "WAN")
            found.append(
                Source("remote", rse, pfn, scheme, f"{rse} {words}, over {scheme} ({how})", site)
            )
        if not found and pfns:
            skipped.append(Skipped(rse, f"offers none of {', '.join(order)}"))
        return found
