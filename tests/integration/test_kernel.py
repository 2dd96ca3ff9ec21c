"""Notebook-attached DIDs resolved into kernel variables, against the embedded lake."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from escape_portal.access import Access, Cache, NotAvailableHere
from escape_portal.config import LakeConfig
from escape_portal.kernel import Attached, Attachments, Unavailable, variable_name
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake


def test_variable_names_from_dids() -> None:
    assert variable_name("cta:crab-2024.dl3") == "crab_2024_dl3"
    assert variable_name("scale:100k") == "did_100k"


def test_mounted_data_binds_paths_at_once(lake: Lake, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {}
    kernel = Attachments(lake, access=Access(lake, Cache(tmp_path)), namespace=namespace)
    entry = kernel.attach("cta:crab-2024.dl3", "events")
    assert entry.available and isinstance(namespace["events"], list)
    assert len(namespace["events"]) == 4
    assert all(
        p.is_file() and str(p).startswith(str(lake.config.mount_path)) for p in namespace["events"]
    )
    one = kernel.attach("cta:crab-2024.dl3.0001.fits")
    assert isinstance(one.value, Path) and namespace["crab_2024_dl3_0001_fits"] == one.value


def test_remote_data_waits_for_its_rule_then_rebinds(
    lake: Lake, fresh_dataset: DID, tmp_path: Path
) -> None:
    namespace: dict[str, Any] = {}
    changed = threading.Event()
    seen: list[Attached] = []

    def on_change(entry: Attached) -> None:
        seen.append(entry)
        changed.set()

    kernel = Attachments(
        lake, access=Access(lake, Cache(tmp_path)), namespace=namespace, on_change=on_change
    )
    try:
        entry = kernel.attach(fresh_dataset, "fresh")
        placeholder = namespace["fresh"]
        assert isinstance(placeholder, Unavailable) and placeholder.rule_id is None
        assert "make-available" in placeholder.hint
        with pytest.raises(NotAvailableHere, match="not available here yet"):
            os.fspath(placeholder)

        rule, _ = lake.add_rule(fresh_dataset, str(lake.config.mounted_rse), lifetime=600)
        entry = kernel.attach(fresh_dataset, "fresh")
        if not entry.available:  # usually: the copy takes a few seconds
            assert isinstance(entry.value, Unavailable) and entry.value.rule_id == rule.id
            assert changed.wait(180), "the variable was not re-resolved when the data arrived"
            assert seen[-1].available
        paths = namespace["fresh"]
        assert isinstance(paths, list) and len(paths) == 3 and all(p.is_file() for p in paths)
    finally:
        kernel.close()


def test_fetch_downloads_what_is_only_remote(alice_config: LakeConfig, tmp_path: Path) -> None:
    """As researcher alice: remote replicas need a storage token (the operator has none)."""
    lake = Lake(alice_config)
    namespace: dict[str, Any] = {}
    kernel = Attachments(lake, access=Access(lake, Cache(tmp_path)), namespace=namespace)
    mounted = lake.config.mounted_rse
    remote = [  # sample files no replica of which is on the mounted storage
        f"{r.scope}:{r.name}"
        for r in lake.file_replicas(f.did for f in lake.files("cta:crab-2024"))
        if r.states.get(str(mounted)) != "AVAILABLE"
    ]
    if not remote:
        pytest.skip("every sample file of cta:crab-2024 is on the mounted storage already")
    sky = remote[0]
    assert isinstance(kernel.attach(sky, "sky").value, Unavailable)
    path = kernel.attach(sky, "sky", fetch=True).value
    assert isinstance(path, Path) and path.is_relative_to(tmp_path)
