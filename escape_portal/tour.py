"""A guided tour of the lake from the terminal (``escape-portal tour``)."""

from __future__ import annotations

from escape_portal.events import wait_for
from escape_portal.lake import DID, Lake

TOUR_DATASET = DID("cta", "crab-2024.dl3")


def run_tour(lake: Lake, dataset: DID = TOUR_DATASET) -> int:
    """Walk through identity, browsing, search, replicas and make-available; return 0 if done."""
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

    target = lake.config.mounted_rse
    if not target:
        print("\nNo storage is mounted into this compute; the tour ends here.")
        return 0
    step(f"Make it available near compute  (escape-portal make-available {dataset} --wait)")
    rule, created = lake.add_rule(dataset, target, lifetime=86400, comment="escape-portal tour")
    print(f"rule {rule.id} {'created' if created else 'reused'} -> {target}")
    progress = wait_for(
        lake,
        rule.id,
        timeout=300,
        on_progress=lambda e: print(
            f"  {e.state:12} {e.progress.files_done}/{e.progress.files_total} files, "
            f"{human_bytes(e.progress.bytes_done)} of {human_bytes(e.progress.bytes_total)}"
        ),
    )
    if progress.state != "available":
        print(f"not available yet: {progress.stuck_reason or progress.state}")
        return 8
    step("Open the files from the mounted storage")
    replicas = list(lake.file_replicas(f.did for f in lake.files(dataset)))
    for rep in replicas:
        print(f"  {rep.scope}:{rep.name} -> {rep.local_path(target) or rep.pfns.get(target)}")
    print("\nDone. In a notebook: from escape_portal.lake import Lake; lake = Lake.from_instance()")
    return 0
