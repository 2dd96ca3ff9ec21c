from pathlib import Path

import pytest

from escape_portal.config import (
    LakeConfig,
    instance_from_env,
    instance_from_rucio_cfg,
    instances_from_file,
    load_instances,
    select_instance,
)
from escape_portal.errors import InvalidRequest


def test_env_as_jupyterhub_sets_it(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    env = {
        "RUCIO_BASE_URL": "https://rucio.example.org",
        "RUCIO_AUTH_URL": "https://auth.example.org",
        "RUCIO_ACCOUNT": "alice",
        "BEARER_TOKEN_FILE": str(token_file),
        "ESCAPE_COMPUTE_SITE": "ignored-here",
    }
    config = instance_from_env(env)
    assert config is not None
    assert config.auth_type == "oidc"
    assert config.token_file == str(token_file)
    assert config.auth_host == "https://auth.example.org"
    assert config.account == "alice"


def test_env_token_is_kept_in_memory_and_hidden() -> None:
    config = instance_from_env({"RUCIO_BASE_URL": "https://r.example", "RUCIO_ACCESS_TOKEN": "abc"})
    assert config is not None and config.token == "abc"
    assert "abc" not in repr(config)
    assert "token" not in config.public()


def test_file_refuses_plaintext_secrets(tmp_path: Path) -> None:
    path = tmp_path / "instances.toml"
    path.write_text('[instances.escape]\nrucio_host = "https://r.example"\npassword = "x"\n')
    with pytest.raises(InvalidRequest, match="plain text"):
        instances_from_file(path)


def test_file_rejects_unknown_settings_and_bad_urls(tmp_path: Path) -> None:
    path = tmp_path / "instances.toml"
    path.write_text('[instances.escape]\nrucio_host = "https://r.example"\ncolour = "blue"\n')
    with pytest.raises(InvalidRequest, match="colour"):
        instances_from_file(path)
    with pytest.raises(InvalidRequest, match="http"):
        LakeConfig(name="x", rucio_host="rucio.example.org")


def test_rucio_cfg_client_section(tmp_path: Path) -> None:
    cfg = tmp_path / "rucio.cfg"
    cfg.write_text(
        "[client]\nrucio_host = https://r.example\nauth_host = https://a.example\n"
        "auth_type = x509_proxy\nclient_x509_proxy = /tmp/x509up_u1000\naccount = bob\n"
    )
    config = instance_from_rucio_cfg(cfg, env={})
    assert config is not None
    assert (config.auth_type, config.x509_proxy, config.account) == (
        "x509_proxy",
        "/tmp/x509up_u1000",
        "bob",
    )


def test_precedence_file_then_env_then_rucio_cfg(tmp_path: Path) -> None:
    path = tmp_path / "instances.toml"
    path.write_text('[instances.escape]\nrucio_host = "https://file.example"\n')
    cfg = tmp_path / "rucio.cfg"
    cfg.write_text("[client]\nrucio_host = https://cfg.example\n")
    env = {
        "ESCAPE_PORTAL_CONFIG": str(path),
        "RUCIO_BASE_URL": "https://env.example",
        "RUCIO_CONFIG": str(cfg),
        "ESCAPE_PORTAL_LAKE_DIR": str(tmp_path / "no-lake"),
        "RUCIO_PASSWORD": "from-env",
    }
    found = load_instances(env)
    assert list(found) == ["escape", "env", "rucio-cfg"]
    assert found["escape"].password == "from-env"
    assert select_instance(None, env).name == "escape"
    assert select_instance("rucio-cfg", env).rucio_host == "https://cfg.example"
    with pytest.raises(InvalidRequest, match="No Rucio instance named"):
        select_instance("nope", env)


def test_nothing_configured_says_how_to_start(tmp_path: Path) -> None:
    env = {
        "ESCAPE_PORTAL_CONFIG": str(tmp_path / "none.toml"),
        "ESCAPE_PORTAL_LAKE_DIR": str(tmp_path / "no-lake"),
        "RUCIO_CONFIG": str(tmp_path / "none.cfg"),
    }
    with pytest.raises(InvalidRequest, match="lake up"):
        select_instance(None, env)


def _install_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: str) -> None:
    """A package describing instances, installed the way pip does (dist-info on sys.path)."""
    (tmp_path / "site_lake_provider.py").write_text(
        "from escape_portal.config import LakeConfig\n"
        "def describe(env):\n"
        "    host = env.get('SITE_LAKE_HOST')\n"
        "    return LakeConfig(name='site-lake', rucio_host=host) if host else None\n"
    )
    info = tmp_path / "site_lake_provider-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: site-lake-provider\nVersion: 1\n")
    (info / "entry_points.txt").write_text(f"[escape_portal.instances]\n{entries}")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_instance_providers_come_last_and_only_while_they_describe_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _install_provider(
        tmp_path,
        monkeypatch,
        "site-lake = site_lake_provider:describe\nstale = site_lake_gone:describe\n",
    )
    env = {
        "ESCAPE_PORTAL_CONFIG": str(tmp_path / "none.toml"),
        "ESCAPE_PORTAL_LAKE_DIR": str(tmp_path / "no-lake"),
        "RUCIO_CONFIG": str(tmp_path / "none.cfg"),
    }
    assert "site-lake" not in load_instances(env)  # its lake is not running
    env["SITE_LAKE_HOST"] = "https://site-lake.example"
    assert select_instance("site-lake", env).rucio_host == "https://site-lake.example"
    assert "stale" in caplog.text and "cannot be loaded" in caplog.text
    # A configured instance of the same name wins over the provider's.
    path = tmp_path / "instances.toml"
    path.write_text('[instances.site-lake]\nrucio_host = "https://configured.example"\n')
    env["ESCAPE_PORTAL_CONFIG"] = str(path)
    assert select_instance("site-lake", env).rucio_host == "https://configured.example"


def test_a_provider_may_describe_several_instances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "multi_lake_provider.py").write_text(
        "from escape_portal.config import LakeConfig\n"
        "def describe(env):\n"
        "    host = env.get('SITE_LAKE_HOST')\n"
        "    if not host:\n"
        "        return None\n"
        "    return [LakeConfig(name='site-lake', rucio_host=host),\n"
        "            LakeConfig(name='site-lake-admin', rucio_host=host, account='root')]\n"
    )
    info = tmp_path / "multi_lake_provider-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: multi-lake-provider\nVersion: 1\n")
    (info / "entry_points.txt").write_text(
        "[escape_portal.instances]\nsite-lake = multi_lake_provider:describe\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    env = {
        "ESCAPE_PORTAL_CONFIG": str(tmp_path / "none.toml"),
        "ESCAPE_PORTAL_LAKE_DIR": str(tmp_path / "no-lake"),
        "RUCIO_CONFIG": str(tmp_path / "none.cfg"),
        "SITE_LAKE_HOST": "https://site-lake.example",
    }
    found = load_instances(env)
    assert [n for n in found if n.startswith("site-lake")] == ["site-lake", "site-lake-admin"]
    assert select_instance("site-lake-admin", env).account == "root"


def test_the_embedded_lake_is_a_researcher_and_an_operator(tmp_path: Path) -> None:
    import json

    from escape_portal.embedded import instance, layout

    paths = layout.LakePaths(tmp_path)
    paths.state_file.parent.mkdir(parents=True, exist_ok=True)
    paths.state_file.write_text(
        json.dumps(
            {
                "data_dir": str(tmp_path),
                "rucio_host": "http://127.0.0.1:1",
                "idp_url": "https://localhost:2",
                "ca_cert": str(tmp_path / "ca.pem"),
            }
        )
    )
    # The researcher first: the default instance while the lake runs.
    researcher, operator = instance.describe({"ESCAPE_PORTAL_LAKE_DIR": str(tmp_path)}) or []
    assert (researcher.name, researcher.account, researcher.auth_type) == (
        "embedded-alice",
        "alice",
        "oidc",
    )
    assert researcher.token_source == "password" and researcher.oidc_issuer == "https://localhost:2"
    assert researcher.oidc_scope and "offline_access" in researcher.oidc_scope
    assert (operator.name, operator.account, operator.auth_type) == (
        "embedded",
        "root",
        "userpass",
    )
    assert "alice-demo" not in repr(researcher) and "password" not in researcher.public()
