"""The embedded lake, described as Rucio instances for :mod:`escape_portal.config`.

Registered under the entry-point group ``escape_portal.instances`` (see pyproject.toml):
:func:`escape_portal.config.load_instances` asks every installed provider, so the core
never imports the embedded lake. The instances exist while the lake of
``$ESCAPE_PORTAL_LAKE_DIR`` (or the default data directory) has a ``run/state.json``:

- ``embedded-alice`` (the default): researcher ``alice`` (:data:`.layout.DEMO_RESEARCHER`)
  over OpenID Connect, as a researcher meets ESCAPE's lake: tokens from the lake's
  provider (her published demo password, then refresh tokens), renewed while the session
  runs. She reads and writes token-protected storage with storage-audience tokens, has
  quota on every storage element, and may extend and delete her own rules (the lake's
  permission policy, :mod:`escape_portal.embedded.policy`);
- ``embedded``: the operator's bootstrap identity (account ``root``, userpass), for the
  operator's work (publishing the lake in the VO, Rucio's own CLI through ``lake env``)
  and the only userpass identity the lake keeps. Choose it by name
  (``--instance embedded``, ``ESCAPE_PORTAL_INSTANCE=embedded``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from escape_portal.config import LakeConfig
from escape_portal.embedded import broker, layout

#: The name of the operator's instance.
NAME = "embedded"
#: The name of the researcher's instance (the default one while the lake runs).
RESEARCHER = "embedded-alice"
#: The OAuth client of the lake's provider the researcher's session uses.
CLIENT_ID = "escape-portal"


def describe(env: Mapping[str, str]) -> list[LakeConfig] | None:
    """The embedded lake of ``env``'s data directory, if it was started (else ``None``).

    Two instances: the researcher's (first, so the default) and the operator's. Their
    demo passwords and the provider client's secret are published credentials of a
    loopback lake; they are held in memory only, never written by the portal.
    """
    state = layout.read_state(layout.LakePaths(layout.default_data_dir(env)))
    if not state:
        return None
    # The broker's password stays in its 0600 file, not in state.json.
    creds = broker.read_credentials(Path(state["data_dir"])) if state.get("broker") else None
    operator = LakeConfig(
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
        # The storage's TLS (XRootD's https); its files need a token the operator's
        # userpass session does not have, so it reads only the mounted storage.
        ca_cert=state.get("ca_cert"),
    )
    if not state.get("idp_url"):  # a lake without its provider: the operator alone
        return [operator]
    researcher = replace(
        operator,
        name=RESEARCHER,
        account=layout.DEMO_RESEARCHER,
        auth_type="oidc",
        username=layout.DEMO_RESEARCHER,
        password=layout.DEMO_RESEARCHERS[layout.DEMO_RESEARCHER],
        token_source="password",
        oidc_issuer=state["idp_url"],
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=layout.DEMO_CLIENTS[CLIENT_ID],
        oidc_scope=layout.RESEARCHER_SCOPE,
    )
    return [researcher, operator]


def embedded_instance(env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """The default instance of :func:`describe`, the researcher's (default env: the process's)."""
    found = describe(os.environ if env is None else env)
    return found[0] if found else None


def operator_instance(env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """The operator's instance of :func:`describe` (account root, userpass)."""
    found = describe(os.environ if env is None else env) or []
    return next((c for c in found if c.name == NAME), None)


def researcher_instance(env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """The researcher's instance of :func:`describe` (alice over OIDC), if the lake has one."""
    found = describe(os.environ if env is None else env) or []
    return next((c for c in found if c.name == RESEARCHER), None)
