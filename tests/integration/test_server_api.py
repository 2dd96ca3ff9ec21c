"""The REST API of the server extension, through a real Jupyter server, on the embedded lake."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import DID
from tests.integration.server_fixtures import (
    Fetch,
    get_json,
    lake_environment,
    post_json,
    server_config,
)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
# Coroutine tests run on pytest-jupyter's loop (the server's): no asyncio mark (strict mode).
pytestmark = pytest.mark.lake

CRAB = (83.6331, 22.0145)


@pytest.fixture()
def jp_server_config(
    embedded_lake: EmbeddedLake,
    lake_config: LakeConfig,
    operator_config: LakeConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Config:
    lake_environment(monkeypatch, embedded_lake.paths.root, tmp_path)
    # The password of the (operator's userpass) instances a test writes into the (so far
    # absent) instances file.
    assert operator_config.password
    monkeypatch.setenv("RUCIO_PASSWORD", operator_config.password)
    return server_config(lake_config, tmp_path)


async def test_instances_and_whoami(jp_fetch: Fetch, lake_config: LakeConfig) -> None:
    status, body = await get_json(jp_fetch, "instances")
    assert status == 200
    assert body["active"] == "embedded"
    [embedded] = [i for i in body["instances"] if i["name"] == "embedded"]
    assert embedded["active"] is True and "password" not in embedded
    status, who = await get_json(jp_fetch, "whoami")
    assert status == 200
    assert who["account"] == lake_config.account and who["auth_type"] == "userpass"
    assert who["token_valid_seconds"] is None and who["token_expired"] is False
    assert who["token_renewable"] is True and who["token_notice"] is None


async def test_switching_to_another_instance(
    jp_fetch: Fetch, operator_config: LakeConfig, tmp_path: Path
) -> None:
    # Two more instances in the user's instances file: the same lake under another name,
    # and one whose server is not there.
    (tmp_path / "no-instances.toml").write_text(
        f"""
[instances.lake-b]
rucio_host = "{operator_config.rucio_host}"
auth_host = "{operator_config.auth_host}"
auth_type = "userpass"
account = "{operator_config.account}"
username = "{operator_config.username}"
compute_site = "{operator_config.compute_site}"
timeout = 5

[instances.gone]
rucio_host = "http://127.0.0.1:9"
auth_type = "userpass"
account = "{operator_config.account}"
username = "{operator_config.username}"
timeout = 2
"""
    )
    status, body = await get_json(jp_fetch, "instances")
    assert status == 200 and body["active"] == "embedded"
    assert {i["name"] for i in body["instances"]} >= {"embedded", "lake-b", "gone"}
    status, body = await post_json(jp_fetch, "instances/active", {"name": "lake-b"})
    assert status == 200, body
    assert body["active"] == "lake-b"
    assert [i["name"] for i in body["instances"] if i["active"]] == ["lake-b"]
    status, who = await get_json(jp_fetch, "whoami")
    assert status == 200 and who["instance"] == "lake-b"
    status, scopes = await get_json(jp_fetch, "scopes")
    assert status == 200 and "cta" in scopes["scopes"]

    # An instance that cannot be reached is refused, and the one in use stays.
    status, error = await post_json(jp_fetch, "instances/active", {"name": "gone"})
    assert status == 503, error
    assert "127.0.0.1:9" in error["error"]["message"] or error["error"]["hint"]
    status, body = await get_json(jp_fetch, "instances")
    assert body["active"] == "lake-b"
    # An unknown name: 404, with the names there are.
    status, error = await post_json(jp_fetch, "instances/active", {"name": "nope"})
    assert status == 404 and "lake-b" in error["error"]["hint"]
    status, error = await post_json(jp_fetch, "instances/active", {})
    assert status == 400


async def test_browse_and_search(jp_fetch: Fetch) -> None:
    status, body = await get_json(jp_fetch, "scopes")
    assert status == 200 and {"cta", "scale"} <= set(body["scopes"])
    status, found = await get_json(
        jp_fetch, "dids", scope="cta", type="dataset", filter="target=Crab"
    )
    assert status == 200, found
    assert {f"{d['scope']}:{d['name']}" for d in found["items"]} == {
        "cta:crab-2024.dl3",
        "cta:crab-2024.sky",
    }
    assert found["next_cursor"] is None
    status, page = await get_json(jp_fetch, "dids", scope="cta", pattern="crab-2024.dl3.*", limit=3)
    assert status == 200 and len(page["items"]) == 3 and page["next_cursor"]
    status, rest = await get_json(
        jp_fetch, "dids", scope="cta", pattern="crab-2024.dl3.*", cursor=page["next_cursor"]
    )
    assert [d["name"] for d in page["items"] + rest["items"]] == [
        f"crab-2024.dl3.{i:04d}.fits" for i in range(1, 5)
    ]


async def test_first_pages_of_100k_files(jp_fetch: Fetch) -> None:
    started = time.monotonic()
    status, first = await get_json(jp_fetch, "dids/scale/files-100k/contents", limit=100)
    seconds = time.monotonic() - started
    assert status == 200, first
    assert first["did"]["type"] == "dataset" and first["did"]["length"] == 100_000
    assert len(first["items"]) == 100 and first["next_cursor"]
    assert all(i["type"] == "file" and i["adler32"] for i in first["items"])
    status, second = await get_json(
        jp_fetch, "dids/scale/files-100k/contents", limit=100, cursor=first["next_cursor"]
    )
    assert status == 200 and len(second["items"]) == 100
    assert not {i["name"] for i in first["items"]} & {i["name"] for i in second["items"]}
    assert second["next_cursor"] != first["next_cursor"]
    print(f"first page of 100,000 files in {seconds:.2f} s")


async def test_container_contents_and_details(jp_fetch: Fetch) -> None:
    status, body = await get_json(jp_fetch, "dids/cta/crab-2024/contents")
    assert status == 200
    assert body["did"]["type"] == "container"
    assert sorted(i["name"] for i in body["items"]) == ["crab-2024.dl3", "crab-2024.sky"]
    status, details = await get_json(jp_fetch, "dids/cta/crab-2024.dl3")
    assert status == 200
    assert (details["type"], details["length"]) == ("dataset", 4)
    assert details["metadata"]["target"] == "Crab"
    assert [p["name"] for p in details["parents"]] == ["crab-2024"]


async def test_replicas_rules_and_placement(jp_fetch: Fetch, lake_config: LakeConfig) -> None:
    status, body = await get_json(jp_fetch, "dids/cta/crab-2024.dl3/replicas")
    assert status == 200, body
    assert body["compute_site"] == lake_config.compute_site
    assert body["replicas"], body
    for replica in body["replicas"]:
        assert {"rse", "site", "available_files", "total_files", "km", "complete"} <= set(replica)
    kms = [r["km"] for r in body["replicas"] if r["km"] is not None]
    assert kms == sorted(kms)
    status, files = await get_json(jp_fetch, "dids/cta/crab-2024.dl3/file-replicas", limit=2)
    assert status == 200 and len(files["items"]) == 2 and files["next_cursor"]
    assert all(f["states"] for f in files["items"])
    status, rules = await get_json(jp_fetch, "dids/cta/crab-2024.dl3/rules")
    assert status == 200 and isinstance(rules["rules"], list)
    status, placement = await get_json(jp_fetch, "dids/cta/crab-2024.dl3/placement")
    assert status == 200
    assert placement["did"] == "cta:crab-2024.dl3" and placement["summary"]
    assert placement["compute_site"] == lake_config.compute_site
    assert placement["sources"] or placement["read_from"]


async def test_make_available_and_progress_until_available(
    jp_fetch: Fetch, fresh_dataset: DID
) -> None:
    status, body = await post_json(
        jp_fetch, "make-available", {"dids": [str(fresh_dataset)], "lifetime": 3600}
    )
    assert status == 201, body
    [request] = body["requests"]
    assert request["did"] == str(fresh_dataset) and request["created"] is True
    rule_id = request["rule"]["id"]
    assert request["state"] in ("waiting", "replicating", "available")
    deadline = time.monotonic() + 180
    states = []
    while True:
        status, progress = await get_json(jp_fetch, f"rules/{rule_id}/progress")
        assert status == 200, progress
        states.append(progress["state"])
        if progress["state"] in ("available", "stuck") or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    assert progress["state"] == "available", states
    assert progress["files_done"] == progress["files_total"] == 3
    assert progress["fraction"] == 1.0
    status, again = await post_json(jp_fetch, "make-available", {"dids": [str(fresh_dataset)]})
    assert status == 201
    assert again["requests"][0]["state"] == "available"  # now readable here: no new rule
    assert again["requests"][0]["rule"] is None or again["requests"][0]["created"] is False


async def test_download_gives_verified_local_paths(
    jp_fetch: Fetch, fresh_dataset: DID, tmp_path: Path
) -> None:
    # As researcher alice (the lake's default): the files are at PIC-DISK only, whose
    # storage serves nothing without a storage token, which the operator does not have.
    status, body = await post_json(jp_fetch, "instances/active", {"name": "embedded-alice"})
    assert status == 200 and body["active"] == "embedded-alice", body
    status, body = await post_json(jp_fetch, "download", {"did": str(fresh_dataset)})
    assert status == 200, body
    assert len(body["files"]) == 3
    for item in body["files"]:
        path = Path(item["path"])
        assert path.is_file() and path.stat().st_size == item["bytes"]
        if item["way"] == "download":
            assert path.is_relative_to(tmp_path / "download-cache")
    assert body["bytes_downloaded"] == sum(
        f["bytes"] for f in body["files"] if f["way"] == "download"
    )


async def test_vo_search_rows_linked_to_the_lake(jp_fetch: Fetch, lake_config: LakeConfig) -> None:
    assert lake_config.vo_url
    status, body = await post_json(
        jp_fetch,
        "vo/search",
        {"pos": list(CRAB), "radius": 0.5, "collection": "CTAO", "timeout": 30},
    )
    if status == 200 and not body["rows"]:  # the collection name differs: search by position
        status, body = await post_json(
            jp_fetch, "vo/search", {"pos": list(CRAB), "radius": 0.5, "timeout": 30}
        )
    assert status == 200, body
    [lake_status] = body["statuses"]
    assert lake_status["state"] == "ok", lake_status
    assert lake_status["service"]["url"] == f"{lake_config.vo_url}/tap"
    assert body["rows"]
    names = {c["name"] for c in body["columns"]}
    assert {"obs_publisher_did", "access_url", "lake_did", "lake_link", "lake_rses"} <= names
    linked = [r for r in body["rows"] if r["lake_did"]]
    assert linked and all(r["lake_rses"] for r in linked)
    assert all(r["lake_did"].startswith("cta:") for r in linked if r["target_name"] == "Crab")


async def test_vo_search_by_name_with_explicit_sia2_service(
    jp_fetch: Fetch, lake_config: LakeConfig
) -> None:
    sia2 = {"name": "lake-sia2", "kind": "sia2", "url": f"{lake_config.vo_url}/sia2/query"}
    status, body = await post_json(
        jp_fetch, "vo/search", {"name": "Crab", "radius": 0.5, "services": [sia2], "link": False}
    )
    assert status == 200, body
    assert abs(body["position"]["ra"] - CRAB[0]) < 0.1
    assert body["statuses"][0]["state"] == "ok" and body["rows"]
    assert {r["target_name"] for r in body["rows"]} == {"Crab"}


async def test_vo_registry_and_datalinks(jp_fetch: Fetch, lake_config: LakeConfig) -> None:
    status, body = await get_json(jp_fetch, "vo/registry", servicetype="tap")
    assert status == 200, body
    assert body["registry"] == f"{lake_config.vo_url}/tap"
    assert any(s["url"].startswith(str(lake_config.vo_url)) for s in body["services"])
    status, found = await post_json(
        jp_fetch, "vo/search", {"pos": list(CRAB), "radius": 0.5, "link": False}
    )
    assert status == 200 and found["rows"]
    url = found["rows"][0]["access_url"]
    status, links = await get_json(jp_fetch, "vo/datalinks", url=url)
    assert status == 200, links
    assert any(link["semantics"] == "#this" for link in links["links"])


@pytest.mark.parametrize(
    ("path", "params", "status", "kind", "words"),
    [
        ("dids/cta/bad name!", {}, 400, "InvalidDID", "not a valid name"),
        ("dids/nosuchscope/x/contents", {}, 404, "NotFound", "No such"),
        ("dids", {"scope": "nosuchscope"}, 404, "NotFound", "no scope 'nosuchscope'"),
        ("dids", {}, 400, "InvalidRequest", "No scope given"),
        ("dids/scale/files-100/contents", {"cursor": "garbage!"}, 400, "InvalidRequest", "cursor"),
        ("dids/scale/files-100/contents", {"limit": "0"}, 400, "InvalidRequest", "out of range"),
        ("dids/cta/crab-2024.dl3.0001.fits/contents", {}, 400, "InvalidRequest", "is a file"),
        # Malformed rule ids and DataLink URLs are the caller's mistake, not the lake's.
        ("rules/I/progress", {}, 400, "InvalidRequest", "not a rule id"),
        ("rules/" + "0" * 32 + "/progress", {}, 404, "NotFound", "No such rule"),
        ("vo/datalinks", {"url": "not-a-url"}, 400, "InvalidRequest", "not the URL of a DataLink"),
        ("vo/datalinks", {"url": "null"}, 400, "InvalidRequest", "not the URL of a DataLink"),
        ("vo/datalinks", {"url": "file:///etc/passwd"}, 400, "InvalidRequest", "not the URL"),
        ("vo/datalinks", {"url": "gopher://x"}, 400, "InvalidRequest", "not the URL of a DataLink"),
    ],
)
async def test_errors_are_json_a_user_can_act_on(
    jp_fetch: Fetch, path: str, params: dict[str, str], status: int, kind: str, words: str
) -> None:
    code, body = await get_json(jp_fetch, path, **params)
    assert code == status, body
    error = body["error"]
    assert error["type"] == kind
    assert words.lower() in error["message"].lower()
    assert set(error) == {"type", "message", "hint"}


async def test_bad_bodies_are_400s(jp_fetch: Fetch) -> None:
    cases: list[tuple[str, Any]] = [
        ("make-available", {}),
        ("make-available", {"dids": ["cta:crab-2024.dl3"], "lifetime": -5}),
        ("make-available", {"dids": ["not a did"]}),
        ("download", {"path": "x"}),
        ("vo/search", {"radius": 0.5}),
        ("vo/search", {"pos": [83, 22], "radius": 400}),
        ("vo/search", {"pos": [83, 22], "radius": 1, "colection": "typo"}),
    ]
    for path, body in cases:
        code, answer = await post_json(jp_fetch, path, body)
        assert code == 400, (path, body, answer)
        assert answer["error"]["message"], answer


async def test_a_datalink_url_the_service_refuses_is_a_400_not_a_503(
    jp_fetch: Fetch, lake_config: LakeConfig
) -> None:
    # Found by the API fuzz (test_api_fuzz.py): the lake's DataLink service answers 400
    # to a URL without ID=, which was reported as "unavailable, try again later".
    status, body = await get_json(
        jp_fetch, "vo/datalinks", url=f"{lake_config.vo_url}/datalink/links"
    )
    assert status == 400, body
    assert body["error"]["type"] == "InvalidRequest"
    assert "refused" in body["error"]["message"] and "ID" in body["error"]["message"]
    # A service that cannot be reached is still a 503.
    status, body = await get_json(jp_fetch, "vo/datalinks", url="http://127.0.0.1:9/links?ID=x")
    assert status == 503 and body["error"]["type"] == "ServiceUnavailable", body


async def test_watches_are_listed_and_stopped(
    jp_fetch: Fetch,
    lake_config: LakeConfig,
    fresh_dataset: DID,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from escape_portal import watches
    from escape_portal.lake import Lake

    monkeypatch.setenv("ESCAPE_PORTAL_WATCHES", str(tmp_path / "watches.sqlite"))
    status, body = await get_json(jp_fetch, "watches")
    assert (status, body) == (200, {"watches": []})
    assert not (tmp_path / "watches.sqlite").exists()  # reading made no store
    watch = await asyncio.to_thread(
        watches.watch, Lake(lake_config), fresh_dataset, len, name="nightly", notifications=False
    )
    try:
        status, body = await get_json(jp_fetch, "watches")
        assert status == 200, body
        [row] = body["watches"]
        assert row["name"] == "nightly" and row["state"] == "running"
        assert row["target"] == str(fresh_dataset) and row["counts"] == {"existing": 3}
        status, body = await post_json(jp_fetch, "watches/nightly/stop", {})
        assert status == 200 and body["state"] == "stopped", body
        assert await asyncio.to_thread(watch.wait, 10)
        status, body = await post_json(jp_fetch, "watches/no-such/stop", {})
        assert status == 404 and "no watch named 'no-such'" in body["error"]["message"]
    finally:
        watch.stop()
