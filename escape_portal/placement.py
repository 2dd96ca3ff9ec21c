"""Where data should be read from, and where it should go to be near the compute.

:func:`plan` decides, for one DID and the session's compute site:

- if a complete replica sits on storage at the compute site that the compute can read
  (mounted, or LAN-readable), nothing moves: read it there;
- otherwise the best destination storage at or near the compute site (writable, with
  quota for the missing bytes, nearest first), and the best sources to copy from (by
  measured throughput, then latency, then distance).

Every decision comes with a ranked table of candidates and a reason for each, the same
for the CLI, the REST API and the widgets. :func:`make_available` turns a plan into the
(created or reused) Rucio rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from escape_portal.errors import InvalidRequest, QuotaExceeded
from escape_portal.lake import DID, Lake, Rule
from escape_portal.lake.models import DatasetReplica, as_did
from escape_portal.topology import StorageElement, Topology


@dataclass(frozen=True)
class Candidate:
    """A storage element considered as a destination or a source, with why."""

    rse: str
    site: str | None
    eligible: bool
    reasons: tuple[str, ...]
    km: float | None = None
    throughput_mbps: float | None = None
    latency_ms: float | None = None
    over_quota: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "rse": self.rse,
            "site": self.site,
            "eligible": self.eligible,
            "over_quota": self.over_quota,
            "reasons": list(self.reasons),
            "km": None if self.km is None else round(self.km),
            "throughput_mbps": self.throughput_mbps,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True)
class Placement:
    """The decision for one DID."""

    did: DID
    compute_site: str | None
    bytes_total: int
    needs_transfer: bool
    read_from: str | None
    destination: str | None
    destinations: list[Candidate] = field(default_factory=list)
    sources: list[Candidate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One sentence for the user."""
        if not self.needs_transfer and self.read_from:
            return f"{self.did} is already at {self.read_from}, readable from your compute."
        if self.destination:
            best = next((s.rse for s in self.sources if s.eligible), None)
            origin = f" from {best}" if best else ""
            return f"{self.did} will be copied{origin} to {self.destination}, near your compute."
        return f"No storage near {self.compute_site or 'your compute'} can take {self.did}."

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "did": str(self.did),
            "compute_site": self.compute_site,
            "bytes_total": self.bytes_total,
            "needs_transfer": self.needs_transfer,
            "read_from": self.read_from,
            "destination": self.destination,
            "summary": self.summary,
            "destinations": [c.to_dict() for c in self.destinations],
            "sources": [c.to_dict() for c in self.sources],
            "warnings": list(self.warnings),
        }


def _readable_at_compute(se: StorageElement, compute_site: str | None) -> bool:
    return (
        bool(compute_site)
        and se.site == compute_site
        and (se.mount_path is not None or "file" in se.schemes or "root" in se.schemes)
    )


def _destination(
    se: StorageElement, topology: Topology, compute_site: str | None, missing: int
) -> Candidate:
    link = topology.link(se.site, compute_site)
    reasons = []
    eligible = True
    if compute_site and se.site == compute_site:
        reasons.append(
            f"at the compute site, mounted at {se.mount_path}"
            if se.mount_path
            else "at the compute site"
        )
    elif link and link.km is not None:
        reasons.append(f"{link.km:.0f} km from {compute_site}")
    else:
        reasons.append("distance to the compute site unknown")
    if not se.writable:
        eligible = False
        reasons.append("not writable now")
    free = se.free_quota_bytes
    over_quota = free is not None and free < missing
    if free is not None:
        if over_quota:
            eligible = False
            reasons.append(f"quota: {free} bytes free, {missing} needed")
        else:
            reasons.append(f"quota: {free / 2**30:.1f} GiB free")
    return Candidate(
        se.rse,
        se.site,
        eligible,
        tuple(reasons),
        km=link.km if link else None,
        throughput_mbps=link.throughput_mbps if link else None,
        latency_ms=link.latency_ms if link else None,
        over_quota=over_quota,
    )


def _source(
    replica: DatasetReplica, se: StorageElement | None, topology: Topology, target_site: str | None
) -> Candidate:
    site = se.site if se else replica.site
    link = topology.link(site, target_site)
    reasons = []
    eligible = replica.available_files > 0 and (se is None or se.readable)
    if not replica.complete:
        reasons.append(f"holds {replica.available_files}/{replica.total_files} files")
    if se is not None and not se.readable:
        reasons.append("not readable now")
    if link and link.throughput_mbps is not None:
        reasons.append(f"{link.throughput_mbps:.0f} Mb/s measured to {target_site}")
    if link and link.packet_loss:
        reasons.append(f"{100 * link.packet_loss:.1f}% packet loss")
    if link and link.km is not None:
        reasons.append(f"{link.km:.0f} km")
    return Candidate(
        replica.rse,
        site,
        eligible,
        tuple(reasons) or ("no network data",),
        km=link.km if link else None,
        throughput_mbps=link.throughput_mbps if link else None,
        latency_ms=link.latency_ms if link else None,
    )


def _rank_sources(candidates: Iterable[Candidate]) -> list[Candidate]:
    def key(c: Candidate) -> tuple[Any, ...]:
        return (
            not c.eligible,
            c.km != 0,  # on the target site itself: no network at all
            -(c.throughput_mbps or 0.0),
            c.latency_ms if c.latency_ms is not None else float("inf"),
            c.km if c.km is not None else float("inf"),
            c.rse,
        )

    return sorted(candidates, key=key)


def _rank_destinations(
    candidates: Iterable[Candidate], compute_site: str | None
) -> list[Candidate]:
    def key(c: Candidate) -> tuple[Any, ...]:
        return (
            not c.eligible,
            c.site != compute_site,
            "mounted" not in " ".join(c.reasons),
            c.km if c.km is not None else float("inf"),
            c.rse,
        )

    return sorted(candidates, key=key)


def plan(lake: Lake, topology: Topology, did: DID | str, compute_site: str | None) -> Placement:
    """Decide where ``did`` is read from and whether it must be copied near the compute."""
    d = as_did(did)
    replicas = lake.dataset_replicas(d)
    bytes_total = replicas[0].total_bytes if replicas else (lake.info(d).bytes or 0)
    warnings = list(topology.warnings)
    if not compute_site:
        warnings.append(
            "The compute site is unknown: set compute_site (ESCAPE_COMPUTE_SITE) so that "
            "'near compute' means something."
        )
    local = [
        r
        for r in replicas
        if r.complete
        and r.rse in topology.storage
        and _readable_at_compute(topology.storage[r.rse], compute_site)
    ]
    if local:
        best = sorted(local, key=lambda r: topology.storage[r.rse].mount_path is None)[0]
        sources = [
            _source(r, topology.storage.get(r.rse), topology, compute_site) for r in replicas
        ]
        return Placement(
            d,
            compute_site,
            bytes_total,
            needs_transfer=False,
            read_from=best.rse,
            destination=None,
            sources=_rank_sources(sources),
            warnings=warnings,
        )
    held = {r.rse: r.available_bytes for r in replicas}
    destinations = _rank_destinations(
        (
            _destination(se, topology, compute_site, bytes_total - held.get(se.rse, 0))
            for se in topology.storage.values()
        ),
        compute_site,
    )
    chosen = next((c for c in destinations if c.eligible), None)
    target_site = chosen.site if chosen else compute_site
    sources = _rank_sources(
        _source(r, topology.storage.get(r.rse), topology, target_site)
        for r in replicas
        if not chosen or r.rse != chosen.rse
    )
    readable_files = max((r.available_files for r in replicas), default=0)
    if replicas and sum(r.available_files for r in replicas) < replicas[0].total_files:
        warnings.append(f"Some files of {d} have no replica available now; the copy will wait.")
    elif not readable_files:
        warnings.append(f"No replica of {d} is readable now; the copy will wait.")
    return Placement(
        d,
        compute_site,
        bytes_total,
        needs_transfer=True,
        read_from=None,
        destination=chosen.rse if chosen else None,
        destinations=destinations,
        sources=sources,
        warnings=warnings,
    )


@dataclass(frozen=True)
class Request:
    """A make-available request: the placement and the rule that carries it out."""

    placement: Placement
    rule: Rule | None
    created: bool


def make_available(
    lake: Lake,
    topology: Topology,
    dids: Iterable[DID | str],
    compute_site: str | None,
    *,
    lifetime: int | None = 7 * 86400,
    comment: str = "escape-portal: near compute",
    activity: str | None = None,
) -> list[Request]:
    """Create or reuse, for each DID, the rule that brings it near the compute.

    DIDs already readable at the compute site get no rule. A DID for which no storage
    can take it raises :class:`QuotaExceeded` (quota) or :class:`InvalidRequest`.
    """
    requests = []
    for did in dids:
        placement = plan(lake, topology, did, compute_site)
        if not placement.needs_transfer:
            requests.append(Request(placement, None, False))
            continue
        if placement.destination is None:
            over_quota = [c for c in placement.destinations if c.over_quota]
            if over_quota:
                raise QuotaExceeded(
                    f"No storage near {compute_site} has quota for {placement.did} "
                    f"({placement.bytes_total} bytes).",
                    "Free space by deleting rules you no longer need, or ask the operators.",
                )
            raise InvalidRequest(placement.summary, "Check the compute site and storage settings.")
        rule, created = lake.add_rule(
            placement.did,
            placement.destination,
            lifetime=lifetime,
            comment=comment,
            activity=activity,
        )
        requests.append(Request(placement, rule, created))
    return requests
