"""Build the embedded lake's catalogue: schema, root account, storage elements, scopes.

This module talks to Rucio's database through Rucio's own server-side API
(``rucio.gateway``, the layer under the REST handlers, with its permission checks), so it
must run in a process whose ``RUCIO_CONFIG`` points at the lake's ``rucio.cfg``. The
supervisor runs it as ``python -m escape_portal.embedded.bootstrap DATA_DIR``; it is
idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from escape_portal.embedded import tokens
from escape_portal.embedded.layout import DEMO_ACCOUNT, DEMO_RESEARCHERS, LakePaths
from escape_portal.embedded.sites import DEFAULT_COMPUTE_SITE, SITES, rucio_distance
from escape_portal.embedded.xrootd import POSIX_COPY_RSES

ISSUER = "root"
EXPERIMENT_SCOPES = ("cta", "lofar", "km3net", "ska", "scale", "user.escape")


def _check_config(paths: LakePaths) -> None:
    configured = os.environ.get("RUCIO_CONFIG")
    if configured != str(paths.rucio_cfg):
        raise RuntimeError(
            f"RUCIO_CONFIG must be {paths.rucio_cfg} (is {configured!r}); "
            "run this module through 'escape-portal lake up'"
        )


def build_schema(paths: LakePaths) -> bool:
    """Create the schema, base VO and root account unless they exist; return True if built."""
    from rucio.db.sqla.session import get_engine
    from rucio.db.sqla.util import build_database, create_base_vo, create_root_account

    engine = get_engine()
    with engine.connect() as conn:
        has_schema = engine.dialect.has_table(conn, "accounts")
    if has_schema:
        return False
    if engine.dialect.name == "sqlite":
        # WAL lets the server's readers and the daemons' writer proceed side by side.
        with sqlite3.connect(paths.db) as raw:
            raw.execute("PRAGMA journal_mode=WAL")
    build_database()
    create_base_vo()
    create_root_account()
    return True


def build_topology(
    paths: LakePaths,
    xrootd_ports: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Storage elements with attributes and protocols, distances, quotas and scopes.

    ``xrootd_ports`` maps the storage elements served by XRootD
    (:mod:`escape_portal.embedded.xrootd`) to their ``(root, https)`` ports: they get
    ``root`` and ``davs`` protocols and the attributes of token-based transfers, updated
    when the ports change. The anonymous ``http`` protocol earlier versions registered on
    every storage element is deleted (lakes outlive code versions).
    """
    from rucio.common.exception import Duplicate, RSENotFound
    from rucio.gateway import account_limit, rse, scope

    existing = {r["rse"] for r in rse.list_rses()}
    for site in SITES:
        folder = paths.rse_dir(site.rse)
        folder.mkdir(parents=True, exist_ok=True)
        if site.rse not in existing:
            rse.add_rse(
                site.rse,
                issuer=ISSUER,
                city=site.city,
                country_name=site.country,
                latitude=site.latitude,
                longitude=site.longitude,
            )
            rse.add_protocol(
                site.rse,
                issuer=ISSUER,
                data={
                    "scheme": "file",
                    "hostname": "localhost",
                    "port": 0,
                    "prefix": str(folder) + "/",
                    "impl": "rucio.rse.protocols.posix.Default",
                    "domains": {
                        "lan": {"read": 1, "write": 1, "delete": 1},
                        "wan": {
                            "read": 1,
                            "write": 1,
                            "delete": 1,
                            "third_party_copy_read": 1,
                            "third_party_copy_write": 1,
                        },
                    },
                },
            )
        attributes = {
            "site": site.name,
            "country": site.country,
            "city": site.city,
            "latitude": str(site.latitude),
            "longitude": str(site.longitude),
            "type": "DISK",
            "tier": "1" if site.name == "CERN" else "2",
            "escape_mount": str(folder) if site.name == DEFAULT_COMPUTE_SITE else "",
            "lfn2pfn_algorithm": "hash",
        }
        if site.rse in existing:
            _drop_anonymous_http(site.rse)
        if xrootd_ports and site.rse in xrootd_ports:
            _ensure_xrootd_protocols(
                site.rse, *xrootd_ports[site.rse], posix_copies=site.rse in POSIX_COPY_RSES
            )
            # What Rucio's conveyor reads to ask its provider for storage tokens (FTS):
            # tokens for davs when both ends say oidc_support, scopes relative to the base.
            attributes["oidc_support"] = "True"
            attributes["oidc_base_path"] = f"/{site.rse}"
            # The audience its storage checks (Rucio would derive the davs host name,
            # "localhost" for every site here; see escape_portal.lake.tokens).
            attributes["oidc_audience"] = tokens.storage_audience(site.rse)
        present = rse.list_rse_attributes(site.rse) if site.rse in existing else {}
        for key, value in attributes.items():
            if value and str(present.get(key)) != value:
                rse.add_rse_attribute(site.rse, key, value, issuer=ISSUER)
        if site.rse not in existing:
            account_limit.set_local_account_limit(DEMO_ACCOUNT, site.rse, site.quota_bytes, ISSUER)

    known_scopes = set(scope.list_scopes())
    for name in EXPERIMENT_SCOPES:
        if name not in known_scopes:
            scope.add_scope(name, DEMO_ACCOUNT, ISSUER)
    if existing >= {site.rse for site in SITES}:
        return  # distances were set when the storage elements were made
    for src in SITES:
        for dst in SITES:
            if src is dst:
                continue
            with contextlib.suppress(Duplicate, RSENotFound):
                rse.add_distance(src.rse, dst.rse, issuer=ISSUER, distance=rucio_distance(src, dst))


def build_researchers(issuer: str) -> None:
    """An account per demo researcher, mapped to the provider's ``sub`` of the same name.

    Each gets scope ``user.<name>``, quotas like root's on every storage element and the
    OIDC identity ``SUB=<name>, ISS=<issuer>``. The issuer carries the provider's port:
    identities of an earlier issuer are replaced.
    """
    from rucio.common.exception import Duplicate
    from rucio.gateway import account, account_limit, identity, scope

    accounts = {a["account"] for a in account.list_accounts()}
    known_scopes = set(scope.list_scopes())
    for name in DEMO_RESEARCHERS:
        if name not in accounts:
            account.add_account(name, "USER", f"{name}@localhost", ISSUER)
            for site in SITES:
                account_limit.set_local_account_limit(name, site.rse, site.quota_bytes, ISSUER)
        if f"user.{name}" not in known_scopes:
            scope.add_scope(f"user.{name}", name, ISSUER)
        wanted = f"SUB={name}, ISS={issuer}"
        for known in account.list_identities(name):
            kind = getattr(known["type"], "name", known["type"])
            if kind == "OIDC" and known["identity"] != wanted:
                identity.del_account_identity(known["identity"], "OIDC", name, ISSUER)
        with contextlib.suppress(Duplicate):
            identity.add_account_identity(
                wanted, "OIDC", name, f"{name}@localhost", ISSUER, default=True
            )


def _drop_anonymous_http(name: str) -> None:
    """Delete the anonymous ``http://127.0.0.1:PORT/<RSE>/`` protocol of earlier versions.

    Their lake served every storage folder over plain HTTP without authorisation (a
    stand-in production storage lacks); only that protocol goes, not an ``http`` one
    registered otherwise.
    """
    from rucio.gateway import rse

    for p in rse.get_rse_protocols(name, issuer=ISSUER)["protocols"]:
        if p["scheme"] == "http" and p["hostname"] == "127.0.0.1" and p["prefix"] == f"/{name}/":
            rse.del_protocols(name, "http", issuer=ISSUER, hostname=p["hostname"], port=p["port"])


#: Priorities of the XRootD protocols: after ``file`` (read in place on this machine) for
#: reads; davs first for third-party copies, as ESCAPE registers its sites.
_GRID_DOMAINS: dict[str, dict[str, dict[str, int]]] = {
    "root": {
        "lan": {"read": 3, "write": 2, "delete": 2},
        "wan": {
            "read": 3,
            "write": 2,
            "delete": 2,
            "third_party_copy_read": 2,
            "third_party_copy_write": 2,
        },
    },
    "davs": {
        "lan": {"read": 4, "write": 3, "delete": 3},
        "wan": {
            "read": 4,
            "write": 3,
            "delete": 3,
            "third_party_copy_read": 1,
            "third_party_copy_write": 1,
        },
    },
}
_GRID_IMPL = {
    "root": "rucio.rse.protocols.xrootd.Default",
    "davs": "rucio.rse.protocols.webdav.Default",
}


def _read_write_only(domains: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """``domains`` without the third-party-copy operations (NULL: not offered for them)."""
    return {
        domain: {op: p for op, p in ops.items() if not op.startswith("third_party_copy")}
        for domain, ops in domains.items()
    }


def _ensure_xrootd_protocols(
    name: str, root_port: int, https_port: int, *, posix_copies: bool = False
) -> None:
    """``root://localhost:ROOT//<RSE>/`` and ``davs://localhost:HTTPS/<RSE>/``.

    ``localhost`` is the name the host certificate holds; the ``file`` protocol's
    third-party-copy priority goes behind them (the POSIX transfertool asks for ``file``
    by scheme, so it is unaffected). With ``posix_copies`` (the storage elements of
    :data:`~escape_portal.embedded.xrootd.POSIX_COPY_RSES`) root and davs are offered
    for reads, writes and deletions only: Rucio's matching of source and destination
    protocols (``find_matching_scheme``) then finds ``file`` on both ends, and the
    conveyor copies from and to it with the POSIX transfertool.
    """
    from rucio.gateway import rse

    protocols = rse.get_rse_protocols(name, issuer=ISSUER)["protocols"]
    # XRootD URLs spell an absolute path with a double slash: root://host:port//path.
    for scheme, port, prefix in (
        ("root", root_port, f"//{name}/"),
        ("davs", https_port, f"/{name}/"),
    ):
        domains = _GRID_DOMAINS[scheme]
        if posix_copies:
            domains = _read_write_only(domains)
        current = [p for p in protocols if p["scheme"] == scheme]
        if (
            current
            and current[0]["port"] == port
            and current[0]["prefix"] == prefix
            and _tpc(current[0]) == _tpc({"domains": domains})
        ):
            continue
        for old in current:
            rse.del_protocols(
                name, scheme, issuer=ISSUER, hostname=old["hostname"], port=old["port"]
            )
        rse.add_protocol(
            name,
            issuer=ISSUER,
            data={
                "scheme": scheme,
                "hostname": "localhost",
                "port": port,
                "prefix": prefix,
                "impl": _GRID_IMPL[scheme],
                "domains": domains,
            },
        )
    if posix_copies:
        return  # ``file`` keeps third-party-copy priority 1
    for p in protocols:
        if p["scheme"] == "file" and p["domains"]["wan"].get("third_party_copy_read") == 1:
            rse.update_protocols(
                name,
                "file",
                {"domains": {"wan": {"third_party_copy_read": 3, "third_party_copy_write": 3}}},
                issuer=ISSUER,
                hostname=p["hostname"],
                port=p["port"],
            )


def _tpc(protocol: Mapping[str, Any]) -> tuple[Any, Any]:
    """A protocol's third-party-copy priorities (``None``/0: not offered)."""
    wan = protocol["domains"].get("wan", {})
    return (
        wan.get("third_party_copy_read") or None,
        wan.get("third_party_copy_write") or None,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m escape_portal.embedded.bootstrap DATA_DIR [options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(
            "usage: python -m escape_portal.embedded.bootstrap DATA_DIR [--seed] "
            "[--xrootd-ports JSON] [--idp-issuer URL]",
            file=sys.stderr,
        )
        return 2
    paths = LakePaths(Path(args[0]))
    _check_config(paths)
    report: dict[str, Any] = {}
    started = time.monotonic()
    report["schema_built"] = build_schema(paths)

    xrootd_ports = None
    if "--xrootd-ports" in args:
        raw = json.loads(args[args.index("--xrootd-ports") + 1])
        xrootd_ports = {rse: (int(p[0]), int(p[1])) for rse, p in raw.items()}
    build_topology(paths, xrootd_ports)
    if "--idp-issuer" in args:
        build_researchers(args[args.index("--idp-issuer") + 1])
    report["topology_s"] = round(time.monotonic() - started, 2)
    if "--seed" in args:
        from escape_portal.embedded.seed import seed

        report["seed"] = seed(paths)
    from escape_portal.embedded.sqlite_compat import analyze

    analyzing = time.monotonic()
    if analyze():  # the planner's statistics, once the catalogue holds what it will hold
        report["analyze_s"] = round(time.monotonic() - analyzing, 2)
    report["total_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
