"""Uploads through the real lake: alice's token, XRootD over davs://, Rucio's catalogue.

Every upload here is written by the real storage (XRootD with SciTokens) with a
storage-audience token obtained by exchange at the lake's identity provider, checked by
the storage's own adler32, and registered in the real Rucio server.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from escape_portal import cli
from escape_portal.config import LakeConfig
from escape_portal.embedded.layout import read_state
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.embedded.tokens import issuer_url, mint, signing_key, storage_audience
from escape_portal.errors import InvalidRequest, NotFound, PermissionDenied
from escape_portal.lake import DID, Lake
from escape_portal.server.base import SERVICE_KEY
from escape_portal.upload import TEMPORARY_SUFFIX, put_file, upload
from tests.integration.server_fixtures import Fetch, lake_environment, post_json, server_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.lake

#: The storage nearest the embedded lake's compute site (CERN).
NEAREST = "CERN-DISK"


@pytest.fixture()
def alice(researcher_config: LakeConfig) -> Lake:
    return Lake(researcher_config)


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def _write(folder: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = folder / name
    path.write_bytes(data)
    return path, data


def _on_storage(embedded_lake: EmbeddedLake, rse: str, did: DID) -> Path:
    """Where Rucio's deterministic ``hash`` path puts ``did`` in the storage's folder."""
    digest = hashlib.md5(f"{did.scope}:{did.name}".encode(), usedforsecurity=False).hexdigest()
    scope_path = did.scope.replace(".", "/") if did.scope.startswith("user.") else did.scope
    return embedded_lake.paths.rse_dir(rse) / scope_path / digest[:2] / digest[2:4] / did.name


def _registered(lake: Lake, did: DID) -> bool:
    try:
        lake.info(did)
    except NotFound:
        return False
    return True


def test_upload_into_a_dataset_with_metadata_then_a_retry_skips(
    alice: Lake, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    first, first_data = _write(tmp_path, _unique("flux") + ".fits", 300_000)
    second, _ = _write(tmp_path, _unique("flux") + ".fits", 5_000)
    dataset = _unique("results")
    seen: list[int] = []
    results = upload(
        alice,
        [first, second],
        dataset=dataset,
        meta={"target": "Crab", "run": 7},
        on_bytes=seen.append,
    )
    assert [r.state for r in results] == ["uploaded", "uploaded"], results
    assert {r.rse for r in results} == {NEAREST}
    assert sum(seen) == 305_000
    did = results[0].did
    assert did == DID("user.alice", first.name)
    ds = DID("user.alice", dataset)
    assert {f.name for f in alice.files(ds)} == {first.name, second.name}
    [replicas] = alice.file_replicas([did])
    assert replicas.states == {NEAREST: "AVAILABLE"}
    assert replicas.adler32 == results[0].adler32 and replicas.bytes == 300_000
    assert _on_storage(embedded_lake, NEAREST, did).read_bytes() == first_data
    assert (
        not _on_storage(embedded_lake, NEAREST, did)
        .with_name(first.name + TEMPORARY_SUFFIX)
        .exists()
    )
    meta = alice.metadata(did)
    assert meta["target"] == "Crab" and int(meta["run"]) == 7
    [rule] = alice.rules(did)
    assert (rule.account, rule.rse_expression, rule.id) == ("alice", NEAREST, results[0].rule_id)

    again = upload(alice, [first, second], dataset=dataset, meta={"target": "Crab", "run": 7})
    assert [r.state for r in again] == ["skipped", "skipped"]
    assert "already in the lake" in again[0].message
    assert [r.id for r in alice.rules(did)] == [rule.id]
    assert len(list(alice.files(ds))) == 2


def test_other_content_under_the_same_name_is_refused(alice: Lake, tmp_path: Path) -> None:
    name = _unique("table") + ".csv"
    path, _ = _write(tmp_path, name, 1000)
    [done] = upload(alice, [path])
    assert done.state == "uploaded"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(InvalidRequest, match="already exists in the lake with other content"):
        upload(alice, [path])
    [replicas] = alice.file_replicas([done.did])
    assert replicas.adler32 == done.adler32


def test_put_file_names_the_did_and_raises_on_failure(
    alice: Lake, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    path, data = _write(tmp_path, "local-name.dat", 777)
    did = DID("user.alice", _unique("chosen") + ".dat")
    result = put_file(alice, path, did)
    assert (result.state, result.did, result.path) == ("uploaded", did, str(path))
    assert _on_storage(embedded_lake, result.rse or "", did).read_bytes() == data
    path.write_bytes(os.urandom(777))
    with pytest.raises(InvalidRequest, match="other content"):
        put_file(alice, path, did)


def test_unknown_or_foreign_scopes_are_refused_before_anything_is_written(
    alice: Lake, tmp_path: Path
) -> None:
    path, _ = _write(tmp_path, _unique("x") + ".dat", 10)
    with pytest.raises(NotFound, match=r"no scope 'user\.nobody'"):
        upload(alice, [path], scope="user.nobody")
    with pytest.raises(PermissionDenied, match="not yours"):
        upload(alice, [path], scope="cta")
    assert not _registered(alice, DID("cta", path.name))


def test_a_session_without_a_token_is_told_so(lake: Lake, tmp_path: Path) -> None:
    path, _ = _write(tmp_path, _unique("x") + ".dat", 10)
    with pytest.raises(PermissionDenied, match="needs a token for the storage"):
        upload(lake, [path])  # the embedded instance signs in with userpass


_KILLED_MID_PUT = """
import os, pickle, signal, sys
from escape_portal.lake import Lake
from escape_portal.upload import upload

config = pickle.loads(sys.stdin.buffer.read())
sent = 0
def on_bytes(n):
    global sent
    sent += n
    if sent >= int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # the connection is cut mid-PUT
upload(Lake(config), [sys.argv[1]], on_bytes=on_bytes)
"""


def test_an_upload_killed_mid_put_leaves_nothing_and_its_retry_succeeds_once(
    alice: Lake, researcher_config: LakeConfig, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    size = 24 * 2**20  # six blocks of 4 MiB: killed after the third
    path, data = _write(tmp_path, _unique("cube") + ".fits", size)
    did = DID("user.alice", path.name)
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_PUT, str(path), str(size // 2)],
        input=pickle.dumps(researcher_config),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    final = _on_storage(embedded_lake, NEAREST, did)
    temporary = final.with_name(final.name + TEMPORARY_SUFFIX)
    assert not _registered(alice, did)
    assert not final.exists()
    assert not temporary.exists() or temporary.stat().st_size < size  # a partial at most

    [retried] = upload(alice, [path])
    assert retried.state == "uploaded"
    assert final.read_bytes() == data and not temporary.exists()
    [replicas] = alice.file_replicas([did])
    assert replicas.states == {NEAREST: "AVAILABLE"}
    [again] = upload(alice, [path])
    assert again.state == "skipped"
    assert len(alice.rules(did)) == 1


class _HandedToken(Lake):
    """The session as it would be with a given storage token (a real one, from the issuer)."""

    def __init__(self, config: LakeConfig, token: str) -> None:
        super().__init__(config)
        self._handed = token

    def storage_token(self, rse: str, path: str, *, write: bool = False) -> str | None:
        return self._handed


@pytest.mark.parametrize("kind", ["read-only", "wrong audience"])
def test_storage_refuses_a_read_only_or_wrong_audience_token(
    kind: str, researcher_config: LakeConfig, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    state = read_state(embedded_lake.paths)
    assert state is not None
    audience, scopes = {
        "read-only": (storage_audience(NEAREST), ("storage.read:/",)),
        "wrong audience": (storage_audience("PIC-DISK"), ("storage.read:/", "storage.modify:/")),
    }[kind]
    token = mint(
        signing_key(embedded_lake.paths.root),
        issuer=issuer_url(state["idp_port"]),
        subject="alice",
        audience=audience,
        scopes=scopes,
        lifetime=600,
    )
    lake = _HandedToken(researcher_config, token)
    path, _ = _write(tmp_path, _unique("refused") + ".dat", 2000)
    with pytest.raises(PermissionDenied) as caught:
        upload(lake, [path], rse=NEAREST)
    message = str(caught.value)
    assert f"Storage {NEAREST} refused your token" in message and "403" in message
    assert "\n" not in message and token not in message
    did = DID("user.alice", path.name)
    assert not _registered(lake, did)
    assert not _on_storage(embedded_lake, NEAREST, did).exists()


def test_the_cli_uploads_once(
    researcher_config: LakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The instance is alice's session (its client secret cannot come from a file).
    monkeypatch.setattr(cli, "_lake", lambda args: Lake(researcher_config))
    path, _ = _write(tmp_path, _unique("cli") + ".dat", 4096)
    dataset = _unique("cli-results")
    code = cli.main(["upload", str(path), "--dataset", dataset, "--meta", "target=Crab", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    [row] = json.loads(out)
    assert (row["state"], row["rse"], row["dataset"]) == (
        "uploaded",
        NEAREST,
        f"user.alice:{dataset}",
    )
    assert cli.main(["upload", str(path), "--dataset", dataset]) == 0
    assert capsys.readouterr().out.startswith("skipped")


@pytest.fixture()
def jp_server_config(
    embedded_lake: EmbeddedLake,
    lake_config: LakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Config:
    lake_environment(monkeypatch, embedded_lake.paths.root, tmp_path)
    assert lake_config.password
    monkeypatch.setenv("RUCIO_PASSWORD", lake_config.password)
    return server_config(lake_config, tmp_path)


async def test_the_rest_api_uploads_files_of_the_server_folder(
    jp_fetch: Fetch,
    jp_serverapp: Any,
    jp_root_dir: Path,
    researcher_config: LakeConfig,
) -> None:
    # The server's session is alice's (as a hub would start it for her).
    jp_serverapp.web_app.settings[SERVICE_KEY]._lake = Lake(researcher_config)
    (jp_root_dir / "results").mkdir()
    name = _unique("rest") + ".dat"
    (jp_root_dir / "results" / name).write_bytes(os.urandom(3000))
    status, body = await post_json(jp_fetch, "upload", {"paths": [f"results/{name}"]})
    assert status == 200, body
    assert (body["uploaded"], body["failed"]) == (1, 0)
    [entry] = body["files"]
    assert entry["path"] == f"results/{name}" and entry["did"] == f"user.alice:{name}"
    assert str(jp_root_dir) not in json.dumps(body)
    status, body = await post_json(jp_fetch, "upload", {"paths": ["../outside.dat"]})
    assert status == 400 and "outside the server's folder" in body["error"]["message"]


def test_fsspec_put_writes_through_the_rucio_filesystem(
    alice: Lake, embedded_lake: EmbeddedLake, tmp_path: Path
) -> None:
    from escape_portal.rucio_fs import RucioFileSystem

    path, data = _write(tmp_path, "result.dat", 4096)
    did = DID("user.alice", _unique("fsspec-put") + ".dat")
    fs = RucioFileSystem(lake=alice, cache_dir=str(tmp_path / "cache"))
    fs.put(str(path), f"rucio://{did.scope}/{did.name}")
    assert fs.info(f"rucio://{did.scope}/{did.name}")["size"] == len(data)
    assert fs.cat_file(f"rucio://{did.scope}/{did.name}") == data
    fs.put(str(path), f"rucio://{did.scope}/{did.name}")  # the same bytes again: no change
    assert len(alice.rules(did)) == 1
