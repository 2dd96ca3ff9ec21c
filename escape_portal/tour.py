"""A guided tour of the lake from the terminal (``escape-portal tour``)."""

from __future__ import annotations

from escape_portal.access import Access
from escape_portal.events import wait_for
from escape_portal.lake import DID, Lake
from escape_portal.placement import make_available, plan
from escape_portal.topology import detect_compute_site, lake_topology

TOUR_DATASET = DID("cta", "crab-2024.dl3")


def run_tour(lake: Lake, dataset: DID = TOUR_DATASET) -> int:
    """Walk through identity, browsing, search, placement, make-available and opening.

    Returns 0 when done, 8 if the data did not arrive in time.
    """
    from escape_portal.cli import human_bytes, table

    def step(title: str) -> None:
        print(f"\n== {title}")

    who = lake.identity()
    step("Who am I")
    print(f"{who.account} on {who.instance} ({who.rucio_host}), auth {who.auth_type}")

    step("Scopes of the lake  (escape-portal ls)")
    print("  ".join(lake.scopes()))

    step(f"Collections of scope {dataset.scope}  (escape-portal ls {dataset.scope})")
    collections = list(lake.dids(dataset.scope, type="collection"))
    print(table([(str(c.did), c.type, c.length) for c in collections], ["did", "type", "files"]))

    step("Search by metadata  (escape-portal find cta:* --type dataset --filter target=Crab)")
    found = list(lake.dids(dataset.scope, type="dataset", filters=["target=Crab"]))
    print(table([(str(f.did), f.type) for f in found], ["did", "type"]))

    step(f"Where {dataset} is  (escape-portal replicas {dataset})")
    summary = lake.dataset_replicas(dataset)
    print(
        table(
            [(r.rse, r.site, f"{r.available_files}/{r.total_files}") for r in summary],
            ["storage", "site", "files"],
        )
    )

    site = detect_compute_site(lake.config.compute_site)
    topology = lake_topology(lake, site)
    step(f"Where it would go  (escape-portal where {dataset})")
    placement = plan(lake, topology, dataset, site)
    print(placement.summary)
    for candidate in placement.destinations[:3]:
        print(f"  {candidate.rse:14} {'; '.join(candidate.reasons)}")

    step(f"Make it available near compute  (escape-portal make-available {dataset} --wait)")
    [request] = make_available(
        lake, topology, [dataset], site, lifetime=86400, comment="escape-portal tour"
    )
    if request.rule is not None:
        verb = "created" if request.created else "reused"
        print(f"rule {request.rule.id} {verb} -> {request.rule.rse_expression}")
        progress = wait_for(
            lake,
            request.rule.id,
            timeout=300,
            on_progress=lambda e: print(
                f"  {e.state:12} {e.progress.files_done}/{e.progress.files_total} files, "
                f"{human_bytes(e.progress.bytes_done)} of {human_bytes(e.progress.bytes_total)}"
            ),
        )
        if progress.state != "available":
            print(f"not available yet: {progress.stuck_reason or progress.state}")
            return 8

    step(f"Open it  (escape-portal open {dataset})")
    access = Access(lake)
    for item in access.locate(dataset):
        print(f"  {item.file.did} -> {item.way}: {item.path or item.source}")
    first = next(iter(lake.files(dataset)))
    events = access.table(first.did, hdu="EVENTS")
    print(
        f"\n{first.did}: {len(events)} events, energies "
        f"{events['ENERGY'].min():.2f} to {events['ENERGY'].max():.1f} TeV"
    )
    print("\nDone. In a notebook: from escape_portal.lake import Lake; lake = Lake.from_instance()")
    return 0
