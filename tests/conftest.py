"""Shared fixtures: the embedded lake, started once per test session and stopped after.

The lake's data directory is ``$ESCAPE_PORTAL_TEST_LAKE_DIR`` or ``.cache/test-lake`` in
the repository; it is kept between sessions, so only the first run pays for seeding the
100,000-file dataset. Every process the fixture starts is stopped by process id at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from escape_portal.config import LakeConfig, provided_instances
from escape_portal.embedded.instance import (
    embedded_instance,
    operator_instance,
    researcher_instance,
)
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import DID, Lake

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def lake_dir() -> Path:
    return Path(
        os.environ.get("ESCAPE_PORTAL_TEST_LAKE_DIR", ROOT / ".cache" / "test-lake")
    ).resolve()


@pytest.fixture(scope="session")
def embedded_lake(lake_dir: Path) -> Iterator[EmbeddedLake]:
    lake = EmbeddedLake(lake_dir)
    already_running = lake.status().running
    try:
        lake.up(progress=lambda message: print(f"[embedded lake] {message}"))
    except BaseException:
        lake.down()  # stop whatever part did start
        raise
    yield lake
    if not already_running:
        lake.down()


@pytest.fixture(scope="session")
def lake_config(embedded_lake: EmbeddedLake) -> LakeConfig:
    """The instance ``embedded``: the operator (root, userpass), chosen by name.

    Most integration tests act as the operator, who may touch every scope; the lake's
    default instance is researcher alice (see ``alice_config``), which the CLI, the
    server extension and the UI tests use when no instance is named.
    """
    env = {"ESCAPE_PORTAL_LAKE_DIR": str(embedded_lake.paths.root)}
    config = operator_instance(env)
    assert config is not None and config.account == "root"
    default = embedded_instance(env)
    assert default is not None and default.name == "embedded-alice", "alice is the default"
    # The CLI, the server and the VO publication find the lake through its entry point.
    assert provided_instances(env).get("embedded") == config, (
        "The embedded lake's entry point (escape_portal.instances) is not installed: "
        "re-run 'pip install -e .' after pyproject.toml changed."
    )
    return config


@pytest.fixture(scope="session")
def operator_config(lake_config: LakeConfig) -> LakeConfig:
    """The operator's instance, named so by tests that need root's rights."""
    return lake_config


@pytest.fixture(scope="session")
def alice_config(embedded_lake: EmbeddedLake) -> LakeConfig:
    """The instance ``embedded-alice``: researcher alice over OIDC, tokens renewed by the portal."""
    config = researcher_instance({"ESCAPE_PORTAL_LAKE_DIR": str(embedded_lake.paths.root)})
    assert config is not None and config.auth_type == "oidc" and config.account == "alice"
    return config


@pytest.fixture()
def lake(lake_config: LakeConfig) -> Lake:
    return Lake(lake_config)


@pytest.fixture()
def operator_lake(operator_config: LakeConfig) -> Lake:
    return Lake(operator_config)


@pytest.fixture()
def lake_env(embedded_lake: EmbeddedLake, tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses that selects the test lake and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "ESCAPE_PORTAL_"))}
    env["ESCAPE_PORTAL_LAKE_DIR"] = str(embedded_lake.paths.root)
    env["ESCAPE_PORTAL_CONFIG"] = str(tmp_path / "no-instances.toml")
    return env


@pytest.fixture()
def fresh_dataset(operator_lake: Lake) -> DID:
    """A new dataset of three small FITS files at PIC-DISK only, real bytes, true checksums.

    Tests that move data use it, so that they move something on every run even though
    the test lake is kept between sessions. Registered by the operator (replicas are
    registered by root, as an upload daemon would).
    """
    from escape_portal.embedded.fresh import fresh_dataset as make

    return make(operator_lake)


@pytest.fixture(scope="session")
def researcher_config(alice_config: LakeConfig) -> LakeConfig:
    """The embedded lake as researcher alice (``embedded-alice``) with nothing mounted.

    Her tokens come from the lake's provider and are renewed by the portal; the session
    exchanges them for storage-audience tokens. Nothing is mounted (``mounted_rse`` and
    ``mount_path`` unset): replicas are reached over their storage's protocols.
    """
    import dataclasses

    return dataclasses.replace(alice_config, mounted_rse=None, mount_path=None)
