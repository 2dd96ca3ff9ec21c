"""Dask next to the replicas, through the real lake: alice's files read on tagged workers.

A fresh dataset (three FITS images at PIC-DISK, pixels 0, 1, 2) gets a second replica of
its file 1 at DESY-DISK, a file at DESY-DISK only (pixels 10) and one at LAPP-DISK only
(pixels 20), where no worker is. A LocalCluster of two one-thread workers in this process,
one tagged at PIC and one at DESY, reads them as researcher alice (OIDC, storage tokens
exchanged on the workers; nothing mounted).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from escape_portal import analysis
from escape_portal.config import LakeConfig
from escape_portal.embedded.fresh import place_file
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake

distributed = pytest.importorskip("distributed")

PIXELS = 16 * 16
SITES = ("PIC", "DESY")


def _image(value: float) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(np.full((16, 16), value, dtype=np.float32)).writeto(buffer)
    return buffer.getvalue()


def _events(energies: list[float]) -> bytes:
    buffer = io.BytesIO()
    table = Table({"ENERGY": np.array(energies, dtype=">f8"), "EVENT_ID": np.arange(len(energies))})
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]).writeto(buffer)
    buffer.seek(0)
    with fits.open(buffer) as hdus:
        hdus[1].name = "EVENTS"
        out = io.BytesIO()
        hdus.writeto(out)
    return out.getvalue()


@pytest.fixture()
def spread(fresh_dataset: DID, operator_lake: Lake) -> DID:
    """The fresh dataset with replicas at PIC, PIC+DESY, DESY only and LAPP only."""
    names = sorted(f.name for f in operator_lake.files(fresh_dataset))
    place_file(operator_lake, DID(fresh_dataset.scope, names[1]), _image(1), ("DESY-DISK",))
    extra = []
    for value, rse in ((10, "DESY-DISK"), (20, "LAPP-DISK")):
        did = DID(fresh_dataset.scope, f"{fresh_dataset.name}.only-{rse}.fits")
        place_file(operator_lake, did, _image(value), (rse,))
        extra.append(did.as_rucio())
    operator_lake.client.attach_dids(fresh_dataset.scope, fresh_dataset.name, extra)
    return fresh_dataset


@pytest.fixture()
def alice(researcher_config: LakeConfig) -> Lake:
    return Lake(dataclasses.replace(researcher_config, compute_site="INFN-NA"))


@pytest.fixture()
def session(alice: Lake) -> Iterator[analysis.Session]:
    cluster = analysis.local_cluster(SITES)
    client = distributed.Client(cluster)
    client.wait_for_workers(len(SITES))
    session = analysis.Session(alice, client, refresh_every=3600)
    yield session
    session.close()
    client.close()
    cluster.close()


def _probe(file: analysis.LakeFile) -> dict[str, Any]:
    """What a task reports: the pixel sum, its worker's site, the replica it read."""
    with file.fits() as hdus:
        total = float(hdus[0].data.sum())
    source = file.source()
    return {
        "did": str(file.did),
        "sum": total,
        "rse": source["rse"],
        "scheme": source["scheme"],
        "site": analysis.worker_site(),
    }


def test_files_and_sites_in_bulk(spread: DID, alice: Lake) -> None:
    alice.rse_sites()  # the storage elements' sites, once per lake object
    calls: list[str] = []
    client = alice.client
    for method in ("list_replicas", "list_files", "get_did", "list_content"):
        original = getattr(client, method)

        def counted(*args: Any, _name: str = method, _call: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return _call(*args, **kw)

        setattr(client, method, counted)
    files = {f.did.name.rsplit(".", 2)[-2]: f for f in analysis.lake_files(alice, spread)}
    # one stream of replicas and one of files for the dataset (plus its own type)
    assert sorted(calls) == ["get_did", "list_files", "list_replicas"], calls
    assert len(files) == 5
    assert files["only-LAPP-DISK"].sites == ("IN2P3-LAPP",)
    assert files["only-DESY-DISK"].rses == ("DESY-DISK",)
    assert files["1"].sites == ("DESY", "PIC")
    assert files["0"].sites == ("PIC",)
    assert all(
        f.instance == alice.config.name and f.bytes > 0 and f.adler32 for f in files.values()
    )


def test_tasks_run_at_a_replica_site_and_read_it_there(
    spread: DID, session: analysis.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []  # what the workers asked Rucio about the files
    for method in ("info", "file_replicas"):
        original = getattr(Lake, method)

        def counted(self: Lake, *a: Any, _m: str = method, _o: Any = original, **k: Any) -> Any:
            if analysis.worker_site() is not None:
                asked.append(_m)
            return _o(self, *a, **k)

        monkeypatch.setattr(Lake, method, counted)
    bag = session.to_dask(spread, _probe)
    rows = bag.compute()
    assert asked == [], "workers looked files up again instead of using the bulk listing"
    assert sum(r["sum"] for r in rows) == PIXELS * (0 + 1 + 2 + 10 + 20)
    files = {str(f.did): f for f in session.files(spread)}
    assert {r["did"] for r in rows} == set(files)
    for row in rows:
        file = files[row["did"]]
        assert row["site"] in SITES
        here = [s for s in file.sites if s in SITES]
        if here:
            # ran at a site holding a replica, and read that site's own replica (file://)
            assert row["site"] in here, row
            assert row["rse"] == f"{row['site']}-DISK", row
            assert row["scheme"] == "file", row
        else:
            # no worker where its replica is: ran anywhere, read the nearest (LAPP-DISK)
            assert row["rse"] == "LAPP-DISK" and row["scheme"] in ("root", "davs"), row

    # The bag chains: what runs on the results is plain Dask.
    assert bag.map(lambda r: r["sum"]).sum().compute() == PIXELS * 33


def test_lazy_delayed_objects_keep_their_placement(spread: DID, session: analysis.Session) -> None:
    import dask

    parts = session.delayed(spread, _probe)
    rows = session.client.compute(parts, sync=True)
    for row, part in zip(rows, parts, strict=True):
        assert row["did"].split(":", 1)[1] in part.key
        file = next(f for f in session.files(spread) if str(f.did) == row["did"])
        here = [s for s in file.sites if s in SITES]
        if here:
            assert row["site"] in here, row
    assert dask.compute(*parts)[0]["sum"] >= 0


def test_no_token_in_graphs_logs_or_task_specs(spread: DID, session: analysis.Session) -> None:
    keeper = session.lake.tokens
    assert keeper is not None
    token = keeper.current()
    secrets = [
        token.encode(),
        (session.lake.config.password or "unset-password").encode(),
        b"eyJ",  # the start of any JWT: no token of any kind in a graph
    ]
    if session.lake.config.oidc_client_secret:
        secrets.append(session.lake.config.oidc_client_secret.encode())

    parts = session.delayed(spread, _probe)
    blobs = [cloudpickle.dumps(dict(p.__dask_graph__())) for p in parts]
    bag = session.to_dask(spread, _probe)
    blobs.append(cloudpickle.dumps(dict(bag.__dask_graph__())))
    assert len(bag.compute()) == 5  # the workers did read, so they did hold tokens

    def task_specs(dask_scheduler: Any) -> list[bytes]:
        return [cloudpickle.dumps(ts.run_spec) for ts in dask_scheduler.tasks.values()]

    blobs.extend(session.client.run_on_scheduler(task_specs))
    logs = [
        *(line for _, line in session.client.get_scheduler_logs(n=1000)),
        *(line for lines in session.client.get_worker_logs(n=1000).values() for _, line in lines),
    ]
    blobs.append("\n".join(logs).encode())
    blobs.append(repr(analysis.Credentials(analysis.worker_config(session.lake))).encode())
    for blob in blobs:
        for secret in secrets:
            assert secret not in blob


def test_workers_get_the_renewed_token(spread: DID, session: analysis.Session) -> None:
    keeper = session.lake.tokens
    assert keeper is not None and keeper.renewable
    name = session.instance

    def held() -> str:
        token = analysis._configs[name].token or ""
        return hashlib.sha256(token.encode()).hexdigest()

    before = keeper.current()
    assert set(session.client.run(held).values()) == {hashlib.sha256(before.encode()).hexdigest()}
    assert session.refresh() is False  # nothing changed: nothing sent
    time.sleep(1.1)  # a new token differs in its issue time
    after = keeper.renew(refused=before)
    assert after != before
    assert session.refresh() is True
    assert set(session.client.run(held).values()) == {hashlib.sha256(after.encode()).hexdigest()}
    # The workers read with the new credentials (new filesystems, new storage tokens).
    assert sum(session.to_dask(spread, _probe).pluck("sum").compute()) == PIXELS * 33
    # Closed, the session takes its credentials off the workers.
    session.close()
    assert set(session.client.run(lambda: name in analysis._configs).values()) == {False}


def test_table_frame_of_event_lists(operator_lake: Lake, alice: Lake) -> None:
    stamp = time.time_ns()
    dataset = DID("user.escape", f"dask-events-{stamp}")
    operator_lake.client.add_dataset(dataset.scope, dataset.name)
    energies = {"PIC-DISK": [1.0, 2.0, 3.0], "DESY-DISK": [10.0, 20.0]}
    dids = []
    for rse, values in energies.items():
        did = DID(dataset.scope, f"dask-events-{stamp}.{rse}.fits")
        place_file(operator_lake, did, _events(values), (rse,))
        dids.append(did.as_rucio())
    operator_lake.client.attach_dids(dataset.scope, dataset.name, dids)

    cluster = analysis.local_cluster(SITES)
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(len(SITES))
        with analysis.Session(alice, client, refresh_every=3600) as session:
            frame = session.table_frame(dataset, hdu="EVENTS", with_file=True)
            assert list(frame.columns) == ["ENERGY", "EVENT_ID", "did"]
            assert frame.npartitions == 2
            assert frame.ENERGY.sum().compute() == pytest.approx(36.0)
            per_file = frame.groupby("did").ENERGY.count().compute().to_dict()
            assert sorted(per_file.values()) == [2, 3]
            only = session.table_frame(dataset, hdu="EVENTS", columns=["ENERGY"]).compute()
            assert sorted(only.ENERGY) == [1.0, 2.0, 3.0, 10.0, 20.0]
            # A derived column, computed more than once (dask lost the partitions of a frame
            # built on bare futures then).
            frame["big"] = frame.ENERGY > 5
            assert frame.big.sum().compute() == 2
            assert frame[frame.big].ENERGY.values.sum().compute() == pytest.approx(30.0)
            assert frame.ENERGY.max().compute() == pytest.approx(20.0)
    finally:
        client.close()
        cluster.close()


def test_default_cluster_is_local_at_the_session_site(spread: DID, alice: Lake) -> None:
    session = analysis.Session(alice, refresh_every=3600)
    try:
        assert set(session.workers_by_site()) == {"INFN-NA"}
        assert len(session.client.scheduler_info(n_workers=-1)["workers"]) == 2
        rows = analysis.to_dask(alice, spread, _probe, client=session.client).compute()
        assert sum(r["sum"] for r in rows) == PIXELS * 33
        assert {r["site"] for r in rows} == {"INFN-NA"}
    finally:
        session.close()


def test_the_session_thread_keeps_the_workers_token_fresh(alice: Lake) -> None:
    keeper = alice.tokens
    assert keeper is not None
    cluster = analysis.local_cluster(SITES)
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(len(SITES))
        with analysis.Session(alice, client, refresh_every=0.2) as session:
            assert session.pushes == 1
            time.sleep(1.1)  # a new token differs in its issue time
            after = keeper.renew(refused=keeper.current())
            deadline = time.monotonic() + 10
            while session.pushes < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert session.pushes == 2, "the session's thread did not send the new token"
            name = session.instance
            held = client.run(lambda: analysis._configs[name].token == after)
            assert set(held.values()) == {True}
    finally:
        client.close()
        cluster.close()


def test_worker_processes_get_credentials_only_from_the_plugin(spread: DID, alice: Lake) -> None:
    """Workers in their own processes, over TCP on loopback: the plugin is the only way in."""
    cluster = analysis.local_cluster(SITES, processes=True)
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(len(SITES))
        files = analysis.lake_files(alice, spread)
        # Without the session's plugin a worker has no credentials for the instance.
        future = client.submit(_probe, files[0], pure=False)
        with pytest.raises(InvalidRequest, match="holds no credentials"):
            future.result()
        with analysis.Session(alice, client, refresh_every=3600) as session:
            rows = session.to_dask(files, _probe).compute()
        assert sum(r["sum"] for r in rows) == PIXELS * 33
        for row in rows:
            file = next(f for f in files if str(f.did) == row["did"])
            here = [s for s in file.sites if s in SITES]
            if here:
                assert row["site"] in here and row["scheme"] == "file", row
    finally:
        client.close()
        cluster.close()


def test_connect_reuses_a_live_session_only(alice: Lake) -> None:
    cluster = analysis.local_cluster(SITES)
    client = distributed.Client(cluster)
    try:
        first = analysis.connect(alice, client)
        assert analysis.connect(alice, client) is first
        first.close()
        second = analysis.connect(alice, client)
        assert second is not first and not second.closed
        second.close()
    finally:
        client.close()
        cluster.close()
