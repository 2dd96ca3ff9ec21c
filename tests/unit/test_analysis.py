"""The pure parts of escape_portal.analysis: sites of workers, placement, workers' credentials."""

from __future__ import annotations

import pickle

import pytest

from escape_portal import analysis
from escape_portal.config import LakeConfig
from escape_portal.lake import DID, Lake


def _file(*sites: str) -> analysis.LakeFile:
    return analysis.LakeFile(DID("s", "f.fits"), 10, "0000abcd", sites, (), "x")


def test_a_worker_site_is_a_resource() -> None:
    assert analysis.site_resource("CERN") == "site-CERN"
    assert analysis.site_of_resources({"site-CERN": 1, "GPU": 2}) == "CERN"
    assert analysis.site_of_resources({"GPU": 2}) is None
    assert analysis.site_of_resources({"site-": 1}) is None


def test_workers_by_site_and_placement() -> None:
    workers = {
        "tcp://a:1": {"resources": {"site-CERN": 1}},
        "tcp://b:1": {"resources": {"site-DESY": 1}},
        "tcp://c:1": {"resources": {"site-CERN": 1}},
        "tcp://d:1": {"resources": {}},
    }
    by_site = analysis.workers_by_site(workers)
    assert by_site == {"CERN": ["tcp://a:1", "tcp://c:1"], "DESY": ["tcp://b:1"]}
    assert analysis.placement(_file("CERN"), by_site) == ["tcp://a:1", "tcp://c:1"]
    assert analysis.placement(_file("DESY", "CERN"), by_site) == [
        "tcp://a:1",
        "tcp://b:1",
        "tcp://c:1",
    ]
    assert analysis.placement(_file("PIC"), by_site) is None  # no worker there: anywhere
    assert analysis.placement(_file(), by_site) is None  # no replica known: anywhere


def _oidc() -> LakeConfig:
    return LakeConfig(
        name="x",
        rucio_host="https://rucio.example",
        auth_type="oidc",
        token="access-token-123",
        token_source="token",
        oidc_refresh_token="refresh-token-456",
        oidc_client_id="portal",
        oidc_client_secret="client-secret-789",
        username="alice",
        password="password-000",
        broker_password="broker-111",
        compute_site="CERN",
        mounted_rse="CERN-DISK",
        mount_path="/eos",
    )


def test_workers_get_the_access_token_only() -> None:
    config = analysis.worker_config(Lake(_oidc()))
    assert config.token == "access-token-123" and config.token_source == "token"
    assert config.oidc_refresh_token is None and config.password is None
    assert config.username is None and config.broker_password is None
    assert config.oidc_client_id == "portal"  # workers exchange it for storage tokens
    assert (config.compute_site, config.mounted_rse, config.mount_path) == (None, None, None)


def test_userpass_workers_authenticate_as_configured() -> None:
    base = LakeConfig(name="y", rucio_host="https://rucio.example", username="root", password="pw")
    config = analysis.worker_config(Lake(base))
    assert (config.username, config.password) == ("root", "pw")
    assert config.compute_site is None


def test_credentials_hide_their_secrets_and_reach_the_registry() -> None:
    plugin = analysis.Credentials(analysis.worker_config(Lake(_oidc())))
    assert "access-token" not in repr(plugin) and "secret" not in repr(plugin)
    assert "access-token" not in repr(plugin.config)
    assert plugin.name == "escape-portal-credentials-x"
    plugin.setup(worker=None)
    assert analysis._configs["x"] is plugin.config
    newer = analysis.Credentials(analysis.worker_config(Lake(_oidc())))
    newer.setup(worker=None)
    plugin.teardown(worker=None)  # an older plugin's teardown keeps the newer one's
    assert analysis._configs["x"] is newer.config
    newer.teardown(worker=None)
    assert "x" not in analysis._configs


def test_a_lake_file_carries_no_secret() -> None:
    blob = pickle.dumps(_file("CERN"))
    assert pickle.loads(blob) == _file("CERN")
    assert b"token" not in blob and _file().url == "rucio://s/f.fits"


def test_outside_a_worker_the_site_is_none() -> None:
    assert analysis.worker_site() is None


def test_distributed_is_the_plugin_base() -> None:
    distributed = pytest.importorskip("distributed")
    assert issubclass(analysis.Credentials, distributed.WorkerPlugin)


def test_outside_a_worker_the_filesystem_is_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import escape_portal.config

    monkeypatch.setattr(escape_portal.config, "select_instance", lambda name: _oidc())
    first = analysis.filesystem("x")
    assert analysis.filesystem("x") is first
    assert first.lake.config.token == "access-token-123"
    analysis._filesystems.clear()
