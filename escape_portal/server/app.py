"""The Jupyter server extension: settings (``c.EscapePortal.*``), the service and the routes."""

from __future__ import annotations

from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Enum, Float, Int, Unicode

from escape_portal.config import AUTH_TYPES
from escape_portal.server.base import SERVICE_KEY
from escape_portal.server.routes import API_PREFIX, handlers
from escape_portal.server.service import ENV_OF_SETTING, PortalService, ServerSettings


def _env_help(setting: str, text: str) -> str:
    variable = ENV_OF_SETTING.get(setting)
    return f"{text} Beats ${variable} when set." if variable else text


class EscapePortal(ExtensionApp):
    """ESCAPE Portal's REST API for JupyterLab, under ``/escape-portal/api``.

    Every setting left unset falls back to the environment (as JupyterHub deployments set
    it) and to the instance files of :mod:`escape_portal.config`.
    """

    name = "escape_portal"
    description = "The ESCAPE data lake and the Virtual Observatory, as a REST API."
    load_other_extensions = True

    instance_name = Unicode(
        None,
        allow_none=True,
        help=_env_help(
            "instance", "Name of the Rucio instance to use (see docs/configuration.md)."
        ),
    ).tag(config=True)
    rucio_host = Unicode(
        None,
        allow_none=True,
        help=_env_help(
            "rucio_host",
            "URL of the Rucio server; describes the instance here instead of in a file.",
        ),
    ).tag(config=True)
    auth_host = Unicode(
        None,
        allow_none=True,
        help=_env_help("auth_host", "URL of Rucio's authentication server (default: rucio_host)."),
    ).tag(config=True)
    account = Unicode(
        None, allow_none=True, help=_env_help("account", "Rucio account to act as.")
    ).tag(config=True)
    auth_type = Enum(
        AUTH_TYPES,
        None,
        allow_none=True,
        help=_env_help("auth_type", "How to authenticate: userpass, oidc, x509 or x509_proxy."),
    ).tag(config=True)
    token_file = Unicode(
        None,
        allow_none=True,
        help=_env_help(
            "token_file",
            "File holding the OIDC token (re-read on each authentication, so a hub can "
            "refresh it).",
        ),
    ).tag(config=True)
    request_timeout = Float(
        None,
        allow_none=True,
        help=_env_help("request_timeout", "Seconds to wait for any answer of the Rucio server."),
    ).tag(config=True)
    compute_site = Unicode(
        None,
        allow_none=True,
        help=_env_help(
            "compute_site", "Site whose compute runs the notebooks (what 'near' is near to)."
        ),
    ).tag(config=True)
    mounted_rse = Unicode(
        None,
        allow_none=True,
        help=_env_help("mounted_rse", "Storage element mounted into the notebook's compute."),
    ).tag(config=True)
    mount_path = Unicode(
        None,
        allow_none=True,
        help=_env_help("mount_path", "Local folder that is the mounted storage's prefix."),
    ).tag(config=True)
    vo_url = Unicode(
        None,
        allow_none=True,
        help=_env_help(
            "vo_url",
            "Base URL of the lake's own VO endpoint (TAP at /tap): searched by default, and "
            "the default registry.",
        ),
    ).tag(config=True)
    registry_url = Unicode(
        None,
        allow_none=True,
        help="RegTAP endpoint of the VO registry. Default: $IVOA_REGISTRY, else vo_url + /tap.",
    ).tag(config=True)
    resolver_url = Unicode(
        None,
        allow_none=True,
        help="Object-name resolver (GET URL?name=). Default: $ESCAPE_PORTAL_RESOLVER, else "
        "vo_url + /resolve; Sesame after it.",
    ).tag(config=True)
    cache_dir = Unicode(
        None,
        allow_none=True,
        help="Download cache folder. Default: $ESCAPE_PORTAL_CACHE, else "
        "$XDG_CACHE_HOME/escape-portal/files.",
    ).tag(config=True)
    cache_limit = Int(
        None,
        allow_none=True,
        help="Largest size of the download cache in bytes. Default: "
        "$ESCAPE_PORTAL_CACHE_LIMIT, else 10 GiB.",
    ).tag(config=True)
    vo_timeout = Float(10.0, help="Seconds one VO search may take, all services together.").tag(
        config=True
    )
    max_workers = Int(8, help="Threads that run lake and VO calls off the event loop.").tag(
        config=True
    )
    topology_ttl = Float(
        300.0, help="Seconds the sites, storage and network links are kept before re-reading."
    ).tag(config=True)
    open_listings = Int(
        4,
        help="Listings kept open between pages so that the next page continues the stream "
        "(each holds a connection to the lake; 0 re-reads from the start every page).",
    ).tag(config=True)
    listing_idle = Float(60.0, help="Seconds an open listing waits for its next page.").tag(
        config=True
    )

    def server_settings(self) -> ServerSettings:
        """The settings as the service takes them."""
        names = [f for f in ServerSettings.__dataclass_fields__]
        values: dict[str, Any] = {
            name: getattr(self, "instance_name" if name == "instance" else name) for name in names
        }
        return ServerSettings(**values)

    def initialize_settings(self) -> None:
        """Make the service the handlers share."""
        settings = self.server_settings()
        self.settings[SERVICE_KEY] = PortalService(settings)
        self.log.info(
            "ESCAPE Portal API at %s (instance: %s)",
            API_PREFIX,
            settings.instance or settings.rucio_host or "as configured",
        )

    def initialize_handlers(self) -> None:
        """Register the API's routes."""
        self.handlers.extend(handlers())

    async def stop_extension(self) -> None:
        """Stop the service's threads."""
        service = self.settings.get(SERVICE_KEY)
        if isinstance(service, PortalService):
            service.close()
