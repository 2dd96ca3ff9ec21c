"""Configuration of Rucio instances and of the notebook's compute site.

An instance is read from, in this order of precedence (first found wins per instance):

1. the portal's own file, TOML, ``$ESCAPE_PORTAL_CONFIG`` or
   ``~/.config/escape-portal/instances.toml``, with one ``[instances.NAME]`` table each;
2. environment variables as JupyterHub deployments set them (instance ``env``);
3. an existing ``rucio.cfg`` (``$RUCIO_CONFIG``, ``$RUCIO_HOME/etc/rucio.cfg`` or
   ``/opt/rucio/etc/rucio.cfg``), instance ``rucio-cfg``;
4. instance providers: installed packages that describe instances themselves, through
   the entry-point group ``escape_portal.instances`` (:data:`INSTANCE_PROVIDERS`). Each
   entry point names a function ``describe(env)`` answering a ``LakeConfig``, several
   (any iterable of them: :data:`Provided`), or ``None``; the portal's own embedded lake
   is one (``embedded = "escape_portal.embedded.instance:describe"``), the instances
   ``embedded-alice`` (a researcher, first) and ``embedded`` (its operator) while it runs.

Why entry points rather than the running embedded lake writing an instance file: the
configuration stays a thing the user writes (the embedded lake's demo password would
otherwise sit in a file this module refuses passwords in), several lakes can run with
different ``ESCAPE_PORTAL_LAKE_DIR`` without one shared file to fight over, and a lake
that was killed leaves no stale description behind — ``describe`` reads the lake's own
state on each call. This module imports no provider: the layers stay top-down (see
``tests/unit/test_layers.py``). A provider's entry point is read from the installed
metadata, so a change to the group needs ``pip install -e .`` again.

Passwords and tokens are only ever held in memory: a configuration file names the file
or variable a token comes from, never the token. See ``docs/configuration.md``.
"""

from __future__ import annotations

import configparser
import functools
import importlib.metadata
import logging
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from escape_portal.errors import InvalidRequest

AuthType = Literal["userpass", "oidc", "x509", "x509_proxy"]
AUTH_TYPES: tuple[str, ...] = ("userpass", "oidc", "x509", "x509_proxy")
#: Where an OIDC session's token comes from (``auto``: the first configured, in the order
#: of :mod:`escape_portal.lake.tokens`).
TOKEN_SOURCES: tuple[str, ...] = ("auto", "file", "refresh", "token", "hub", "password")
#: Settings never read from a file: they come from the environment (or a provider) only.
SECRET_FIELDS = frozenset(
    {"password", "token", "broker_password", "oidc_client_secret", "oidc_refresh_token"}
)
DEFAULT_TIMEOUT = 30.0
#: The entry-point group of instance providers (see the module's docstring).
INSTANCE_PROVIDERS = "escape_portal.instances"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LakeConfig:
    """How to reach one Rucio instance, and where the notebook's compute is.

    Attributes
    ----------
    name
        Short name of the instance (``escape``, ``embedded``, ...).
    rucio_host, auth_host
        Base URLs of the Rucio server and of its authentication server.
    account, vo
        The Rucio account to act as, and the VO (``def`` on single-VO instances).
    auth_type
        ``userpass``, ``oidc`` (a token handed over by JupyterHub or IAM), ``x509`` or
        ``x509_proxy``.
    username, password
        For ``userpass``; the password is never written anywhere by the portal.
    token, token_file
        For ``oidc``: the token itself (from the environment) or the file it is kept in
        (re-read on every authentication, so a hub can refresh it).
    token_source
        Where an OIDC session's token comes from: ``auto`` (the first configured of
        ``file``, ``refresh``, ``token``, ``hub``, ``password``) or one of those.
    oidc_issuer
        The identity provider's issuer URL (its discovery document gives the token
        endpoint); needed to renew a token when no token tells its issuer yet.
    oidc_client_id, oidc_client_secret
        The OAuth client the portal uses at the identity provider (token exchange for
        storage-audience tokens, refresh); the secret only from the environment.
    oidc_refresh_token
        A refresh token at that provider, from ``ESCAPE_PORTAL_OIDC_REFRESH_TOKEN`` only;
        the portal renews the session's token with it (in memory; rotated tokens kept).
    oidc_scope
        The scopes to ask for when renewing (``None``: what the refresh token has).
    client_cert, client_key, x509_proxy
        For X.509.
    ca_cert
        CA bundle to verify the server's certificate (``None``: the system's).
    timeout
        Seconds to wait for any answer of the server.
    compute_site
        Site whose compute runs the notebook (``CERN``, ...).
    mounted_rse, mount_path
        Storage element mounted into the compute, and the local folder that is its prefix.
    cric_feed, network_feed
        URL or file of a CRIC-style site/storage feed and a perfSONAR-style metrics feed.
    broker
        ``stomp://host:port`` (or ``stomp+ssl://``) of the message broker on which the
        instance's Rucio (its hermes daemon) publishes rule and transfer notifications;
        progress then follows them instead of polling alone.
    broker_destination, broker_vhost, broker_username, broker_password
        Topic or queue of those notifications (Rucio's ``[messaging-hermes]
        destination``), the STOMP virtual host, and credentials (the password only from
        ``ESCAPE_BROKER_PASSWORD``).
    vo_url
        Base URL of a Virtual Observatory endpoint publishing this lake's datasets (TAP at
        ``/tap``, SIA2 at ``/sia2/query``, Cone Search at ``/scs/query``, DataLink at
        ``/datalink/links``, RegTAP through ``/tap``); from ``ESCAPE_VO_URL``, the embedded
        lake's own endpoint for the embedded instance.
    vo_links
        Extra rules linking VO results to lake DIDs: ``(column, regular expression)``
        pairs whose named groups ``scope``/``name`` (or ``did``) give the DID; in TOML a
        list of tables ``{column = "access_url", pattern = "..."}``.

    """

    name: str
    rucio_host: str
    auth_host: str = ""
    account: str | None = None
    vo: str = "def"
    auth_type: AuthType = "userpass"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None
    token_source: str = "auto"
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = field(default=None, repr=False)
    oidc_refresh_token: str | None = field(default=None, repr=False)
    oidc_scope: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    x509_proxy: str | None = None
    ca_cert: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    compute_site: str | None = None
    mounted_rse: str | None = None
    mount_path: str | None = None
    cric_feed: str | None = None
    network_feed: str | None = None
    broker: str | None = None
    broker_destination: str = "/topic/rucio.events"
    broker_vhost: str | None = None
    broker_username: str | None = None
    broker_password: str | None = field(default=None, repr=False)
    vo_url: str | None = None
    vo_links: tuple[tuple[str, str], ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.rucio_host.startswith(("http://", "https://")):
            raise InvalidRequest(
                f"Instance {self.name!r}: rucio_host {self.rucio_host!r} is not an http(s) URL.",
                "Set it to the Rucio server's URL, e.g. https://rucio.example.org.",
            )
        if self.auth_type not in AUTH_TYPES:
            raise InvalidRequest(
                f"Instance {self.name!r}: unknown auth_type {self.auth_type!r}.",
                f"Use one of {', '.join(AUTH_TYPES)}.",
            )
        if not self.auth_host:
            object.__setattr__(self, "auth_host", self.rucio_host)
        if self.token_source not in TOKEN_SOURCES:
            raise InvalidRequest(
                f"Instance {self.name!r}: unknown token_source {self.token_source!r}.",
                f"Use one of {', '.join(TOKEN_SOURCES)}.",
            )
        if self.timeout <= 0:
            raise InvalidRequest(f"Instance {self.name!r}: timeout must be positive.")
        if self.broker and not self.broker.startswith(("stomp://", "stomp+ssl://")):
            raise InvalidRequest(
                f"Instance {self.name!r}: broker {self.broker!r} is not a stomp:// URL.",
                "Set it to the broker Rucio's hermes publishes to, e.g. stomp://mq.example:61613.",
            )

    def public(self) -> dict[str, Any]:
        """Settings safe to show or log: no password, no token."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECRET_FIELDS}


_FIELDS = {f.name for f in fields(LakeConfig)}


def _from_mapping(name: str, values: Mapping[str, Any], source: str) -> LakeConfig:
    unknown = set(values) - _FIELDS
    if unknown:
        raise InvalidRequest(
            f"Instance {name!r} in {source}: unknown setting(s) {', '.join(sorted(unknown))}.",
            f"Known settings: {', '.join(sorted(_FIELDS - {'name', 'source'}))}.",
        )
    if SECRET_FIELDS & set(values):
        raise InvalidRequest(
            f"Instance {name!r} in {source} holds a password, secret or token in plain text.",
            "Remove it; give token_file (OIDC) or set RUCIO_PASSWORD, "
            "ESCAPE_PORTAL_OIDC_CLIENT_SECRET, ESCAPE_PORTAL_OIDC_REFRESH_TOKEN "
            "(ESCAPE_BROKER_PASSWORD for the broker) in the environment.",
        )
    if "rucio_host" not in values:
        raise InvalidRequest(f"Instance {name!r} in {source} has no rucio_host.")
    kwargs = dict(values)
    if "vo_links" in kwargs:
        try:
            kwargs["vo_links"] = tuple(
                (str(link.get("column", "access_url")), str(link["pattern"]))
                for link in kwargs["vo_links"]
            )
        except (AttributeError, KeyError, TypeError) as exc:
            raise InvalidRequest(
                f"Instance {name!r} in {source}: vo_links must be a list of tables "
                '{column = "...", pattern = "..."}.'
            ) from exc
    if "timeout" in kwargs:
        kwargs["timeout"] = float(kwargs["timeout"])
    return LakeConfig(name=name, source=source, **kwargs)


def config_file_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the portal's instance file is looked for."""
    env = os.environ if env is None else env
    if env.get("ESCAPE_PORTAL_CONFIG"):
        return Path(env["ESCAPE_PORTAL_CONFIG"]).expanduser()
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "escape-portal" / "instances.toml"


def instances_from_file(path: Path) -> dict[str, LakeConfig]:
    """Instances of a TOML file with ``[instances.NAME]`` tables (empty if no file)."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"{path} is not valid TOML: {exc}.") from exc
    tables = data.get("instances", {})
    return {name: _from_mapping(name, values, str(path)) for name, values in tables.items()}


def _env_secrets(config: LakeConfig, env: Mapping[str, str]) -> LakeConfig:
    """Fill password/token from the environment (never from files we write)."""
    updates: dict[str, Any] = {}
    if config.broker and not config.broker_password and env.get("ESCAPE_BROKER_PASSWORD"):
        updates["broker_password"] = env["ESCAPE_BROKER_PASSWORD"]
    if config.auth_type == "userpass" and not config.password and env.get("RUCIO_PASSWORD"):
        updates["password"] = env["RUCIO_PASSWORD"]
    if config.auth_type == "oidc":
        for name, variable in (
            ("oidc_client_secret", "ESCAPE_PORTAL_OIDC_CLIENT_SECRET"),
            ("oidc_refresh_token", "ESCAPE_PORTAL_OIDC_REFRESH_TOKEN"),
        ):
            if not getattr(config, name) and env.get(variable):
                updates[name] = env[variable].strip()
    if config.auth_type == "oidc" and not config.token and not config.token_file:
        token = env.get("RUCIO_ACCESS_TOKEN") or env.get("BEARER_TOKEN")
        token_file = env.get("RUCIO_OIDC_TOKEN_FILE") or env.get("BEARER_TOKEN_FILE")
        if token:
            updates["token"] = token.strip()
        elif token_file:
            updates["token_file"] = token_file
    return replace(config, **updates) if updates else config


def instance_from_env(env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """The instance described by environment variables, if ``RUCIO_BASE_URL`` is set.

    Variables: ``RUCIO_BASE_URL`` (or ``RUCIO_HOST``), ``RUCIO_AUTH_URL``, ``RUCIO_ACCOUNT``,
    ``RUCIO_VO``, ``RUCIO_AUTH_TYPE``, ``RUCIO_USERNAME``/``RUCIO_PASSWORD``,
    ``RUCIO_ACCESS_TOKEN``/``BEARER_TOKEN``, ``RUCIO_OIDC_TOKEN_FILE``/``BEARER_TOKEN_FILE``,
    ``RUCIO_CA_CERT``, ``X509_USER_PROXY``, ``RUCIO_TIMEOUT``, for renewing OIDC tokens:
    ``ESCAPE_PORTAL_TOKEN_SOURCE``, ``ESCAPE_PORTAL_OIDC_ISSUER``,
    ``ESCAPE_PORTAL_OIDC_CLIENT_ID``/``ESCAPE_PORTAL_OIDC_CLIENT_SECRET``,
    ``ESCAPE_PORTAL_OIDC_REFRESH_TOKEN``, ``ESCAPE_PORTAL_OIDC_SCOPE``, and for the compute:
    ``ESCAPE_COMPUTE_SITE`` (or ``SITE_NAME``), ``ESCAPE_MOUNTED_RSE``, ``ESCAPE_MOUNT_PATH``,
    and for notifications: ``ESCAPE_BROKER_URL``, ``ESCAPE_BROKER_DESTINATION``,
    ``ESCAPE_BROKER_VHOST``, ``ESCAPE_BROKER_USERNAME``, ``ESCAPE_BROKER_PASSWORD``, and
    ``ESCAPE_VO_URL`` for the lake's VO endpoint.
    """
    env = os.environ if env is None else env
    host = env.get("RUCIO_BASE_URL") or env.get("RUCIO_HOST")
    if not host:
        return None
    has_token = any(
        env.get(k)
        for k in (
            "RUCIO_ACCESS_TOKEN",
            "BEARER_TOKEN",
            "RUCIO_OIDC_TOKEN_FILE",
            "BEARER_TOKEN_FILE",
            "ESCAPE_PORTAL_OIDC_REFRESH_TOKEN",
        )
    )
    auth_type = env.get("RUCIO_AUTH_TYPE") or ("oidc" if has_token else "userpass")
    config = LakeConfig(
        name=env.get("ESCAPE_PORTAL_INSTANCE_NAME", "env"),
        rucio_host=host,
        auth_host=env.get("RUCIO_AUTH_URL", ""),
        account=env.get("RUCIO_ACCOUNT"),
        vo=env.get("RUCIO_VO", "def"),
        auth_type=auth_type,  # type: ignore[arg-type]
        username=env.get("RUCIO_USERNAME"),
        token_source=env.get("ESCAPE_PORTAL_TOKEN_SOURCE", "auto"),
        oidc_issuer=env.get("ESCAPE_PORTAL_OIDC_ISSUER"),
        oidc_client_id=env.get("ESCAPE_PORTAL_OIDC_CLIENT_ID"),
        oidc_scope=env.get("ESCAPE_PORTAL_OIDC_SCOPE"),
        x509_proxy=env.get("X509_USER_PROXY"),
        ca_cert=env.get("RUCIO_CA_CERT"),
        timeout=float(env.get("RUCIO_TIMEOUT", DEFAULT_TIMEOUT)),
        compute_site=env.get("ESCAPE_COMPUTE_SITE"),
        mounted_rse=env.get("ESCAPE_MOUNTED_RSE"),
        mount_path=env.get("ESCAPE_MOUNT_PATH"),
        cric_feed=env.get("ESCAPE_CRIC_FEED"),
        network_feed=env.get("ESCAPE_NETWORK_FEED"),
        broker=env.get("ESCAPE_BROKER_URL"),
        broker_destination=env.get("ESCAPE_BROKER_DESTINATION", "/topic/rucio.events"),
        broker_vhost=env.get("ESCAPE_BROKER_VHOST"),
        broker_username=env.get("ESCAPE_BROKER_USERNAME"),
        vo_url=env.get("ESCAPE_VO_URL"),
        source="environment",
    )
    return _env_secrets(config, env)


def rucio_cfg_path(env: Mapping[str, str] | None = None) -> Path | None:
    """The ``rucio.cfg`` Rucio's own clients would read, if there is one."""
    env = os.environ if env is None else env
    candidates = []
    if env.get("RUCIO_CONFIG"):
        candidates.append(Path(env["RUCIO_CONFIG"]))
    if env.get("RUCIO_HOME"):
        candidates.append(Path(env["RUCIO_HOME"]) / "etc" / "rucio.cfg")
    candidates.append(Path("/opt/rucio/etc/rucio.cfg"))
    return next((c for c in candidates if c.is_file()), None)


def instance_from_rucio_cfg(path: Path, env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """The instance of the ``[client]`` section of a ``rucio.cfg``.

    A password in that file is used (Rucio's own clients would use it too) but never copied.
    """
    env = os.environ if env is None else env
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    if not parser.has_section("client") or not parser.has_option("client", "rucio_host"):
        return None
    client = parser["client"]
    auth_type = client.get("auth_type", "userpass")
    if auth_type not in AUTH_TYPES:
        raise InvalidRequest(
            f"{path}: auth_type {auth_type!r} is not supported by the portal.",
            f"Use one of {', '.join(AUTH_TYPES)}.",
        )
    config = LakeConfig(
        name="rucio-cfg",
        rucio_host=client["rucio_host"],
        auth_host=client.get("auth_host", ""),
        account=client.get("account"),
        vo=client.get("vo", "def"),
        auth_type=auth_type,  # type: ignore[arg-type]
        username=client.get("username"),
        password=client.get("password"),
        token_file=client.get("auth_token_file_path"),
        client_cert=client.get("client_cert"),
        client_key=client.get("client_key"),
        x509_proxy=client.get("client_x509_proxy"),
        ca_cert=client.get("ca_cert") or None,
        source=str(path),
    )
    return _env_secrets(config, env)


#: What an instance provider's ``describe(env)`` answers: one instance, several, or none.
Provided = LakeConfig | Iterable[LakeConfig] | None


@functools.lru_cache(maxsize=4)
def _providers(search_path: tuple[str, ...]) -> tuple[Callable[..., Provided], ...]:
    """The loaded ``describe`` functions (scanning the installed metadata takes ~50 ms)."""
    found = []
    for entry in importlib.metadata.entry_points(group=INSTANCE_PROVIDERS):
        try:
            found.append(entry.load())
        except (ImportError, AttributeError) as exc:
            log.warning(
                "instance provider %s (%s) cannot be loaded: %s", entry.name, entry.value, exc
            )
    return tuple(found)


def provided_instances(env: Mapping[str, str] | None = None) -> dict[str, LakeConfig]:
    """The instances installed providers describe now (entry points :data:`INSTANCE_PROVIDERS`).

    A provider that cannot be loaded (a stale install) is skipped with a warning; one that
    describes nothing (``None``: its lake is not running) adds nothing. The providers are
    found once per ``sys.path``; what they describe is asked on every call.
    """
    env = os.environ if env is None else env
    found: dict[str, LakeConfig] = {}
    for describe in _providers(tuple(sys.path)):
        provided = describe(env)
        configs = [provided] if isinstance(provided, LakeConfig) else list(provided or ())
        for config in configs:
            if config.name not in found:
                found[config.name] = config
    return found


def embedded_instance(env: Mapping[str, str] | None = None) -> LakeConfig | None:
    """The instance ``embedded`` its provider describes (``None`` if the lake is not started).

    Kept for callers; it is :func:`escape_portal.embedded.instance.describe`, found
    through the entry points rather than imported.
    """
    return provided_instances(env).get("embedded")


def load_instances(env: Mapping[str, str] | None = None) -> dict[str, LakeConfig]:
    """Every configured instance, by name (see the module's docstring for the order)."""
    env = os.environ if env is None else env
    found: dict[str, LakeConfig] = {}
    for name, config in instances_from_file(config_file_path(env)).items():
        found[name] = _env_secrets(config, env)
    from_env = instance_from_env(env)
    if from_env and from_env.name not in found:
        found[from_env.name] = from_env
    cfg_path = rucio_cfg_path(env)
    if cfg_path:
        from_cfg = instance_from_rucio_cfg(cfg_path, env)
        if from_cfg and from_cfg.name not in found:
            found[from_cfg.name] = from_cfg
    for name, provided in provided_instances(env).items():
        found.setdefault(name, provided)
    return found


def select_instance(name: str | None = None, env: Mapping[str, str] | None = None) -> LakeConfig:
    """The instance to use: ``name``, else ``$ESCAPE_PORTAL_INSTANCE``, else the first found.

    Raises
    ------
    InvalidRequest
        If no instance is configured, or ``name`` is unknown.

    """
    env = os.environ if env is None else env
    instances = load_instances(env)
    wanted = name or env.get("ESCAPE_PORTAL_INSTANCE")
    if wanted:
        if wanted not in instances:
            raise InvalidRequest(
                f"No Rucio instance named {wanted!r}.",
                f"Configured: {', '.join(instances) or 'none'}.",
            )
        return instances[wanted]
    if not instances:
        raise InvalidRequest(
            "No Rucio instance is configured and the embedded lake is not running.",
            f"Start it with 'escape-portal lake up', or describe your instance in "
            f"{config_file_path(env)} or with RUCIO_BASE_URL (see docs/configuration.md).",
        )
    return next(iter(instances.values()))
