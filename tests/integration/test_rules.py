"""Replication rules against the embedded lake: real copies, reuse, stuck transfers."""

import datetime as dt
import time
import zlib
from pathlib import Path

import pytest
from rucio.common.exception import AccessDenied

from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.errors import PermissionDenied
from escape_portal.events import wait_for
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake


def _adler(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def test_rule_copies_bytes_and_reaches_ok(lake: Lake, embedded_lake: EmbeddedLake) -> None:
    did = DID("lofar", "lotss-dr2.hetdex")  # lives at PIC-DISK
    rule, created = lake.add_rule(did, "CERN-DISK", lifetime=3600, comment="test")
    seen: list[str] = []
    progress = wait_for(lake, rule.id, timeout=120, on_progress=lambda e: seen.append(e.state))
    assert progress.state == "available", progress
    assert progress.files_done == progress.files_total == 4
    assert progress.bytes_done == progress.bytes_total > 0
    if created:
        assert seen[0] in ("replicating", "waiting") or len(seen) == 1
    files = {f.name: f for f in lake.files(did)}
    replicas = list(lake.file_replicas(f.did for f in files.values()))
    for rep in replicas:
        assert rep.states["CERN-DISK"] == "AVAILABLE"
        path = rep.local_path("CERN-DISK")
        assert path is not None
        assert path.is_relative_to(embedded_lake.mount_path)
        assert _adler(path) == files[rep.name].adler32  # the bytes really arrived


def test_a_researcher_extends_and_deletes_her_own_rules_and_no_one_elses(
    alice_config: LakeConfig, lake: Lake, fresh_dataset: DID
) -> None:
    """The lake's policy lets a rule's owner extend and delete it; others' rules are refused.

    On a fresh dataset: deleting rules on the seeded sample data would, once Rucio's
    judge-cleaner removes them, leave replicas without a lock for the reaper.
    """
    operator, alice = lake, Lake(alice_config)
    did = fresh_dataset  # at PIC-DISK
    first, _ = alice.add_rule(did, "LAPP-DISK", lifetime=600)
    again, created = alice.add_rule(did, "LAPP-DISK", lifetime=7200)
    assert created is False and again.id == first.id
    assert again.expires_at and first.expires_at and again.expires_at > first.expires_at
    assert [
        r.id for r in alice.rules(did) if r.rse_expression == "LAPP-DISK" and r.account == "alice"
    ] == [first.id]
    theirs, _ = operator.add_rule(did, "INFN-NA-DISK", lifetime=600)
    with pytest.raises(PermissionDenied):
        alice.delete_rule(theirs.id)
    with pytest.raises(PermissionDenied):
        alice.extend_rule(theirs.id, 7200)
    with pytest.raises(AccessDenied):  # locking stays with the admins
        alice.client.update_replication_rule(first.id, {"locked": True})
    alice.delete_rule(first.id)
    operator.delete_rule(theirs.id)


def test_equivalent_rule_is_reused_and_extended(lake: Lake, fresh_dataset: DID) -> None:
    did = fresh_dataset  # not the seeded data, whose replicas the reaper would then take
    first, _ = lake.add_rule(did, "DESY-DISK", lifetime=600)
    again, created = lake.add_rule(did, "DESY-DISK", lifetime=7200)
    assert created is False and again.id == first.id
    assert again.expires_at and first.expires_at and again.expires_at > first.expires_at
    assert [r.id for r in lake.rules(did) if r.rse_expression == "DESY-DISK"] == [first.id]
    lake.delete_rule(first.id)
    # Rucio deletes softly: the rule expires within the hour, then its judge-cleaner
    # removes it (reusing it before then brings it back).
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, seconds=5)
    left = [r for r in lake.rules(did) if r.id == first.id]
    assert not left or (left[0].expires_at is not None and left[0].expires_at <= soon)


def test_corrupted_source_ends_stuck_with_the_reason(
    lake: Lake, operator_lake: Lake, embedded_lake: EmbeddedLake
) -> None:
    """A replica whose bytes no longer match the catalogue is never copied as good."""
    client = operator_lake.client  # replicas are registered by the operator
    scope, name = "user.escape", f"corrupt-{int(time.time() * 1000)}.dat"
    good = b"the original bytes of this file\n"
    adler = f"{zlib.adler32(good) & 0xFFFFFFFF:08x}"
    client.add_replicas(
        "PIC-DISK", [{"scope": scope, "name": name, "bytes": len(good), "adler32": adler}]
    )
    path = next(iter(lake.file_replicas([DID(scope, name)]))).local_path("PIC-DISK")
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"THE CORRUPTED bytes of the file\n")  # same size, other content
    rule, _ = lake.add_rule(DID(scope, name), "CERN-DISK", lifetime=600)
    progress = wait_for(lake, rule.id, timeout=90, first_interval=0.5, max_interval=2)
    assert progress.state == "stuck", progress
    reps = next(iter(lake.file_replicas([DID(scope, name)])))
    assert reps.states.get("CERN-DISK") != "AVAILABLE"
    assert not list(embedded_lake.mount_path.rglob(name)), "no corrupted copy may appear"
    assert progress.stuck_reason and "checksum mismatch" in progress.stuck_reason


def test_expired_rule_is_cleaned_and_its_replicas_deleted(
    lake: Lake, embedded_lake: EmbeddedLake
) -> None:
    """Lifetimes end: the judge-cleaner removes the rule, the reaper the bytes."""
    did = DID("ska", "sdc2.continuum")  # home: CERN-DISK
    rule, _ = lake.add_rule(did, "LAPP-DISK", lifetime=3600)
    assert wait_for(lake, rule.id, timeout=120).state == "available"
    lapp = embedded_lake.paths.rse_dir("LAPP-DISK")
    names = [f.name for f in lake.files(did)]
    assert all(list(lapp.rglob(n)) for n in names)
    lake.extend_rule(rule.id, 1)  # now it expires in a second
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        gone = not any(list(lapp.rglob(n)) for n in names)
        if gone and all(r.id != rule.id for r in lake.rules(did)):
            break
        time.sleep(2)
    else:
        pytest.fail("the expired rule's replicas were not deleted within 150 s")
    states = {r.name: r.states for r in lake.file_replicas(DID(did.scope, n) for n in names)}
    assert all("LAPP-DISK" not in s for s in states.values())
    assert all(s.get("CERN-DISK") == "AVAILABLE" for s in states.values())


def test_when_available_calls_back_from_a_background_watch(lake: Lake, fresh_dataset: DID) -> None:
    import threading

    from escape_portal.events import when_available

    rule, created = lake.add_rule(fresh_dataset, "LAPP-DISK", lifetime=600)
    assert created
    ready = threading.Event()
    events = []

    def arrived(event: object) -> None:
        events.append(event)
        ready.set()

    watch = when_available(lake, rule.id, arrived, first_interval=0.5, max_interval=2)
    try:
        assert ready.wait(120), "the rule did not become available"
    finally:
        watch.stop()
    [event] = events
    assert (
        event.progress.files_done == 3 and event.progress.bytes_done == event.progress.bytes_total
    )  # type: ignore[attr-defined]
