"""Where the embedded lake keeps its state, and the Rucio configuration it runs with.

Everything lives below one data directory::

    etc/rucio.cfg, etc/alembic.ini   configuration of server and daemons
    etc/rucio-client.cfg             for Rucio's own CLI (``escape-portal lake env``)
    db/rucio.db                      the SQLite catalogue (unless a database URL is given)
    db/postgres/                     or the PostgreSQL cluster's (``database.py``)
    rse/<RSE>/                       one folder per POSIX storage element
    logs/                            one log file per process
    run/                             pid files and state.json (ports, URLs)
    transfers/                       job state of the POSIX transfertool
    pki/                             the lake's CA and host certificate (``pki.py``)
    idp/                             the identity provider's signing key (``tokens.py``)
    etc/idpsecrets.json              Rucio's client of the identity provider (mode 0600)
    broker/                          ActiveMQ's config, credentials and data (``broker.py``)
"""

from __future__ import annotations

import configparser
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The account and identity of the embedded lake's researcher. This is a published demo
#: credential for a catalogue bound to 127.0.0.1, not a secret: production instances use
#: OIDC tokens or X.509 (see :mod:`escape_portal.lake.config`).
DEMO_ACCOUNT = "root"
DEMO_USERNAME = "escape"
DEMO_PASSWORD = "escape-demo"
TRANSFERTOOL_NAME = "posix"

#: The researchers of the embedded identity provider (username: password) and its service
#: clients (client id: secret). Like ``DEMO_PASSWORD``, these are published credentials of
#: a loopback demo (the provider binds 127.0.0.1), not secrets. Each researcher has a
#: Rucio account of the same name, scope ``user.<name>``.
DEMO_RESEARCHERS = {"alice": "alice-demo", "bob": "bob-demo"}
#: ``escape-portal``: the portal and notebooks (password, refresh, token exchange);
#: ``jupyterhub``: a JupyterHub's login (password, refresh; one-minute access tokens);
#: ``rucio``: Rucio's server (its ``[oidc] idpsecrets`` client; token exchange);
#: ``rucio-transfers``: Rucio's daemons and transfertool (client credentials, storage);
#: ``escape-portal-brief``: the portal's client again, whose tokens live
#: :data:`BRIEF_LIFETIME` seconds (to see tokens expire and be renewed within a test).
DEMO_CLIENTS = {
    "escape-portal": "escape-portal-demo",
    "escape-portal-brief": "escape-portal-brief-demo",
    "jupyterhub": "jupyterhub-demo",
    "rucio": "rucio-demo",
    "rucio-transfers": "rucio-transfers-demo",
}
#: Seconds the access tokens of client ``escape-portal-brief`` live.
BRIEF_LIFETIME = 8
#: The researcher the embedded instance acts as, and the scopes its session asks for
#: (``offline_access``: a refresh token, so the session renews its token by itself).
DEMO_RESEARCHER = "alice"
RESEARCHER_SCOPE = "openid profile offline_access storage.read:/ storage.modify:/ storage.create:/"


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The embedded lake's data directory.

    ``$ESCAPE_PORTAL_LAKE_DIR``, else ``~/.escape-portal/lake``.
    """
    env = os.environ if env is None else env
    if env.get("ESCAPE_PORTAL_LAKE_DIR"):
        return Path(env["ESCAPE_PORTAL_LAKE_DIR"]).expanduser().resolve()
    return Path.home() / ".escape-portal" / "lake"


def read_state(paths: LakePaths) -> dict[str, Any] | None:
    """The running lake's ``run/state.json`` (ports, URLs, pids), or ``None`` if not started."""
    try:
        state: dict[str, Any] = json.loads(paths.state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def rucio_etc_dir() -> Path:
    """Folder of Rucio's installed data files (mail templates, alembic template)."""
    candidates = [Path(sys.prefix) / "rucio" / "etc", Path(sys.base_prefix) / "rucio" / "etc"]
    for candidate in candidates:
        if (candidate / "mail_templates").is_dir():
            return candidate
    raise FileNotFoundError(
        "Rucio's data files (rucio/etc/mail_templates) were not found under "
        f"{sys.prefix}; install the server with: pip install 'escape-portal[embedded]'"
    )


@dataclass(frozen=True)
class LakePaths:
    """The files and folders of one embedded lake."""

    root: Path

    @property
    def etc(self) -> Path:  # noqa: D102
        return self.root / "etc"

    @property
    def rucio_cfg(self) -> Path:  # noqa: D102
        return self.etc / "rucio.cfg"

    @property
    def idpsecrets(self) -> Path:
        """Rucio's client registration at the lake's identity provider (mode 0600)."""
        return self.etc / "idpsecrets.json"

    @property
    def rucio_client_cfg(self) -> Path:
        """A client-only ``rucio.cfg`` for Rucio's own CLI (``escape-portal lake env``)."""
        return self.etc / "rucio-client.cfg"

    @property
    def alembic_ini(self) -> Path:  # noqa: D102
        return self.etc / "alembic.ini"

    @property
    def db(self) -> Path:  # noqa: D102
        return self.root / "db" / "rucio.db"

    @property
    def rse_root(self) -> Path:  # noqa: D102
        return self.root / "rse"

    def rse_dir(self, rse: str) -> Path:
        """Folder that holds the files of storage element ``rse``."""
        return self.rse_root / rse

    @property
    def logs(self) -> Path:  # noqa: D102
        return self.root / "logs"

    @property
    def run(self) -> Path:  # noqa: D102
        return self.root / "run"

    @property
    def state_file(self) -> Path:  # noqa: D102
        return self.run / "state.json"

    @property
    def seed_marker(self) -> Path:  # noqa: D102
        return self.root / "db" / "seeded.json"

    @property
    def transfers(self) -> Path:  # noqa: D102
        return self.root / "transfers"

    @property
    def pki(self) -> Path:
        """The lake's certificate authority and host certificate (see ``pki.py``)."""
        return self.root / "pki"

    def make(self) -> None:
        """Create every folder."""
        for folder in (
            self.etc,
            self.db.parent,
            self.rse_root,
            self.logs,
            self.run,
            self.transfers,
        ):
            folder.mkdir(parents=True, exist_ok=True)


def write_rucio_config(
    paths: LakePaths,
    *,
    server_port: int,
    memcached_port: int,
    broker_port: int | None = None,
    database_url: str | None = None,
    idp_issuer: str | None = None,
    idp_client_secret: str | None = None,
) -> None:
    """Write ``rucio.cfg`` and ``alembic.ini`` for server and daemons.

    Parameters
    ----------
    paths
        The lake's layout.
    server_port
        Port of the Rucio REST server on 127.0.0.1.
    memcached_port
        Port of the memcached that Rucio's server and daemons cache through.
    broker_port
        Port of the STOMP broker hermes delivers Rucio's notifications to (``None``: none).
    database_url
        SQLAlchemy URL of the catalogue; ``None`` means SQLite in ``db/rucio.db``.
    idp_issuer
        Issuer URL of the lake's OpenID Connect provider whose tokens the server accepts
        (``[oidc]`` and ``etc/idpsecrets.json``); ``None``: no token authentication.
    idp_client_secret
        Secret of the provider's ``rucio`` client (default: the published demo one).

    """
    etc = rucio_etc_dir()
    # A generous busy timeout: server workers and daemons share one SQLite file.
    db_url = database_url or f"sqlite:///{paths.db}?timeout=60"
    cfg = configparser.ConfigParser(interpolation=None)
    cfg["common"] = {
        "logdir": str(paths.logs),
        "loglevel": "INFO",
        "mailtemplatedir": str(etc / "mail_templates"),
    }
    cfg["client"] = {
        "rucio_host": f"http://127.0.0.1:{server_port}",
        "auth_host": f"http://127.0.0.1:{server_port}",
        "auth_type": "userpass",
        "account": DEMO_ACCOUNT,
        "request_retries": "0",
    }
    cfg["database"] = {"default": db_url, "pool_size": "10", "max_overflow": "20"}
    cfg["bootstrap"] = {
        "userpass_identity": DEMO_USERNAME,
        "userpass_pwd": DEMO_PASSWORD,
        "userpass_email": "escape-demo@localhost",
    }
    cfg["api"] = {
        "endpoints": ",".join(
            [
                "accounts",
                "auth",
                "config",
                "credentials",
                "dids",
                "dirac",
                "export",
                "heartbeats",
                "identities",
                "import",
                "lifetime_exceptions",
                "locks",
                "meta_conventions",
                "ping",
                "redirect",
                "replicas",
                "requests",
                "rses",
                "rules",
                "scopes",
                "subscriptions",
                "vos",
            ]
        )
    }
    cfg["policy"] = {
        "permission": "generic",
        "schema": "generic",
        # Generic, plus researchers registering uploads where they have a quota.
        "package": "escape_portal.embedded.policy",
        "lfn2pfn_algorithm_default": "hash",
        "support": "escape-portal@localhost",
        "support_rucio": "https://rucio.cern.ch/",
    }
    cfg["core"] = {"geoip_ignore_error": "True", "use_temp_tables": "False"}
    cfg["cache"] = {"url": f"127.0.0.1:{memcached_port}"}
    # Rucio applies a rule to a dataset in partitions of 2,000 files by default; on SQLite
    # every partition re-reads the whole dataset, which makes a 100,000-file rule take
    # many minutes. One partition keeps it linear (memory is no concern at this scale).
    cfg["rules"] = {"apply_rule_max_partition_size": "1000000"}
    cfg["trace"] = {"tracedir": str(paths.root / "traces")}
    cfg["alembic"] = {"cfg": str(paths.alembic_ini)}
    if db_url.startswith("sqlite"):
        # Elsewhere (PostgreSQL) Rucio's default JSON metadata plugin works unchanged.
        cfg["metadata"] = {"plugins": "escape_portal.embedded.metadata.SQLiteJSONDidMeta"}
    cfg["conveyor"] = {
        "transfertool": TRANSFERTOOL_NAME,
        # davs (third-party copy with tokens) where both ends are XRootD, else file.
        "scheme": "davs,file",
        "user_transfers": "",
    }
    if broker_port is not None:
        from escape_portal.embedded import broker

        # Rucio records notifications for hermes to deliver to the broker, as in production.
        creds = broker.credentials(paths.root)
        cfg["hermes"] = {"services_list": "activemq"}
        cfg["messaging-hermes"] = {
            "brokers": "127.0.0.1",
            "port": str(broker_port),
            "nonssl_port": str(broker_port),
            "use_ssl": "False",
            "username": creds.username,
            "password": creds.password,  # hence rucio.cfg's mode 0600
            "destination": broker.DESTINATION,
            "broker_virtual_host": broker.VIRTUAL_HOST,
        }
    cfg["escape_portal"] = {"transfer_dir": str(paths.transfers)}
    paths.make()
    if idp_issuer is not None:
        cfg["oidc"] = _write_idpsecrets(
            paths, idp_issuer, idp_client_secret or DEMO_CLIENTS["rucio"], server_port
        )
    # Owner-only: it holds the broker's password (and a database URL may hold one).
    _write_private(paths.rucio_cfg, cfg)
    # Rucio's CLI reads its credentials from [client]; the server's file has none. The
    # operator's demo identity (published, see DEMO_PASSWORD) in a file of its own.
    client = configparser.ConfigParser(interpolation=None)
    client["client"] = {
        **cfg["client"],
        "username": DEMO_USERNAME,
        "password": DEMO_PASSWORD,
    }
    _write_private(paths.rucio_client_cfg, client)

    alembic = configparser.ConfigParser(interpolation=None)
    alembic["alembic"] = {
        "script_location": str(Path(_rucio_package_dir()) / "db" / "sqla" / "migrate_repo"),
        "sqlalchemy.url": db_url,
    }
    alembic["loggers"] = {"keys": "root,sqlalchemy,alembic"}
    alembic["handlers"] = {"keys": "console"}
    alembic["formatters"] = {"keys": "generic"}
    alembic["logger_root"] = {"level": "WARN", "handlers": "console", "qualname": ""}
    alembic["logger_sqlalchemy"] = {
        "level": "WARN",
        "handlers": "",
        "qualname": "sqlalchemy.engine",
    }
    alembic["logger_alembic"] = {"level": "WARN", "handlers": "", "qualname": "alembic"}
    alembic["handler_console"] = {
        "class": "StreamHandler",
        "args": "(sys.stderr,)",
        "level": "NOTSET",
        "formatter": "generic",
    }
    alembic["formatter_generic"] = {"format": "%(levelname)-5.5s [%(name)s] %(message)s"}
    with paths.alembic_ini.open("w") as handle:
        alembic.write(handle)


def _write_idpsecrets(
    paths: LakePaths, issuer: str, client_secret: str, server_port: int
) -> dict[str, str]:
    """Rucio's client of the provider in ``etc/idpsecrets.json`` (mode 0600); ``[oidc]``.

    Rucio's server reads the file to discover each issuer (over https: its process trusts
    the lake's CA through ``REQUESTS_CA_BUNDLE``) and verifies tokens with the issuer's
    published keys, audience ``expected_audience`` and scopes ``expected_scope``. The
    ``SCIM`` entry is Rucio's admin client (client credentials), required by its loader.
    """
    from escape_portal.embedded.tokens import RUCIO_AUDIENCE, RUCIO_SCOPES

    client = {
        "client_id": "rucio",
        "client_secret": client_secret,
        "redirect_uris": [f"http://127.0.0.1:{server_port}/auth/oidc_code"],
    }
    secrets_json = {"lake": {"issuer": issuer, **client, "SCIM": dict(client)}}
    tmp = paths.idpsecrets.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(secrets_json, handle, indent=2)
    tmp.replace(paths.idpsecrets)
    return {
        "idpsecrets": str(paths.idpsecrets),
        "admin_issuer": "lake",
        "expected_audience": RUCIO_AUDIENCE,
        "expected_scope": " ".join(RUCIO_SCOPES),
    }


def _write_private(path: Path, cfg: configparser.ConfigParser) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        cfg.write(handle)


def _rucio_package_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("rucio")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the Rucio server package is not installed")
    return str(next(iter(spec.submodule_search_locations)))
