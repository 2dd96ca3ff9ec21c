"""The embedded lake, described as a Rucio instance for :mod:`escape_portal.config`.

Registered under the entry-point group ``escape_portal.instances`` (see pyproject.toml):
:func:`escape_portal.config.load_instances` asks every installed provider, so the core
never imports the embedded lake. The instance exists while the lake of
``$ESCAPE_PORTAL_LAKE_DIR`` (or the default data directory) has a ``run/state.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from escape_portal.config import LakeConfig
from escape_portal.embedded import broker, layout

#: The name the embedded lake's instance is configured under.
NAME = "embedded"


def describe(env: Mapping[str, str]) -> LakeConfig | None:
    """The embedded lake of ``env``'s data directory, if it was started (else ``None``).

    Its demo password is the one the lake's bootstrap gives its identity: it is held in
    memory only, never written by the portal.
    """
    state = layout.read_state(layout.LakePaths(layout.default_data_dir(env)))
    if not state:
        return None
    # The broker's password stays in its 0600 file, not in state.json.
    creds = broker.read_credentials(Path(state["data_dir"])) if state.get("broker") else None
    return LakeConfig(
        name=NAME,
        rucio_host=state["rucio_host"],
        account=layout.DEMO_ACCOUNT,
        auth_type="userpass",
        username=layout.DEMO_USERNAME,
        password=layout.DEMO_PASSWORD,
        compute_site=state.get("compute_site"),
        mounted_rse=state.get("mounted_rse"),
        mount_path=state.get("mount_path"),
        cric_feed=state.get("cric_feed"),
        network_feed=state.get("perfsonar_feed"),
        broker=state.get("broker"),
        broker_destination=state.get("broker_destination", "/topic/rucio.events"),
        broker_vhost=state.get("broker_vhost"),
        broker_username=creds.username if creds else None,
        broker_password=creds.password if creds else None,
        vo_url=state.get("vo_url"),
        source=str(state["data_dir"]),
    )


def embedded_instance(env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """:func:`describe` of ``env`` (default: the process's environment)."""
    return describe(os.environ if env is None else env)
