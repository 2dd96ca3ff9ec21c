"""``escape-portal``: the data lake from the terminal.

Readable tables by default, ``--json`` for scripts. Exit codes: 0 success, 1 lake error,
2 bad input, 3 not found, 4 authentication, 5 permission or quota, 6 lake unavailable,
7 embedded lake failed to start, 8 waited but not available (stuck or timed out),
130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from escape_portal import __version__
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, Lake, LakeError, Rule, RuleProgress

EXIT_NOT_AVAILABLE = 8
EXIT_EMBEDDED = 7


# -- output -------------------------------------------------------------------------------


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    text_rows = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in text_rows
    ]
    return "\n".join(lines)


def parse_lifetime(text: str | None) -> int | None:
    """``3600``, ``30m``, ``12h``, ``7d`` -> seconds (``None`` stays ``None``)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not match:
        raise InvalidRequest(
            f"{text!r} is not a lifetime.", "Write seconds, or a number with s, m, h, d or w."
        )
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return int(match.group(1)) * factor


def _emit(args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text())


# -- commands -----------------------------------------------------------------------------


def _lake(args: argparse.Namespace) -> Lake:
    lake = Lake.from_instance(args.instance)
    notice = lake.token_notice()  # a token nobody renews, about to expire: say so first
    if notice:
        print(f"warning: {notice}", file=sys.stderr)
    return lake


def _lake_env(args: argparse.Namespace, lake: Any) -> int:
    """``lake env``: the variables with which Rucio's CLI and grid clients use the lake."""
    import shlex

    paths = lake.paths
    if not paths.rucio_client_cfg.exists() or lake.status().rucio_host is None:
        print(
            f"error: the embedded lake in {paths.root} is not running; "
            "start it with 'escape-portal lake up'",
            file=sys.stderr,
        )
        return EXIT_EMBEDDED
    variables = {
        "RUCIO_CONFIG": str(paths.rucio_client_cfg),
        # The lake's CA, for the clients of its https/davs/root+TLS storage.
        "X509_CERT_DIR": str(paths.pki / "certificates"),
        "REQUESTS_CA_BUNDLE": str(paths.pki / "ca.pem"),
    }
    _emit(
        args,
        variables,
        lambda: (
            "\n".join(f"export {k}={shlex.quote(v)}" for k, v in variables.items())
            + "\n# then, e.g.: rucio whoami; rucio list-dids 'cta:*'"
        ),
    )
    return 0


def cmd_lake(args: argparse.Namespace) -> int:
    """``lake up|down|status``."""
    from escape_portal.embedded.supervisor import EmbeddedLake, EmbeddedLakeError

    lake = EmbeddedLake(
        args.data_dir, port=args.port, database_url=args.database_url, database=args.database
    )
    try:
        if args.action == "up":
            import time

            started = time.monotonic()
            say = (lambda _m: None) if args.json else (lambda m: print(f"  {m}", file=sys.stderr))
            status = lake.up(seed=not args.no_seed, progress=say)
            elapsed = time.monotonic() - started
            if not args.json:
                print(f"Embedded lake up in {elapsed:.1f} s.", file=sys.stderr)
        elif args.action == "env":
            return _lake_env(args, lake)
        elif args.action == "down":
            stopped = lake.down()
            _emit(
                args,
                {"stopped": stopped},
                lambda: "Stopped: " + (", ".join(stopped) or "nothing was running"),
            )
            return 0
        else:
            status = lake.status()
    except EmbeddedLakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_EMBEDDED
    except OSError as exc:  # the data directory cannot be made or written
        print(
            f"error: the embedded lake's data directory {lake.paths.root} cannot be used: "
            f"{exc.strerror or exc} ({exc.filename or lake.paths.root}). "
            "Choose another with --data-dir or ESCAPE_PORTAL_LAKE_DIR.",
            file=sys.stderr,
        )
        return EXIT_EMBEDDED

    def text() -> str:
        rows = [
            (c.name, c.pid, "running" if c.running else "stopped", c.log) for c in status.components
        ]
        lines = [
            f"Data directory : {status.data_dir}",
            f"Rucio server   : {status.rucio_host or '-'} "
            f"({'Rucio ' + status.server_version if status.server_version else 'not answering'})",
            f"Compute site   : {status.compute_site}, storage {status.mounted_rse} mounted at "
            f"{status.mount_path}",
            "",
            table(rows, ["part", "pid", "state", "log"]),
        ]
        return "\n".join(lines)

    _emit(args, status.to_dict(), text)
    return 0 if status.running or args.action == "status" else 1


def cmd_whoami(args: argparse.Namespace) -> int:
    """Identity and token validity."""
    who = _lake(args).identity()
    data = {
        "instance": who.instance,
        "rucio_host": who.rucio_host,
        "account": who.account,
        "auth_type": who.auth_type,
        "token_expires_at": who.token_expires_at.isoformat() if who.token_expires_at else None,
        "token_renewable": who.token_renewable,
        "token_notice": who.expiry_notice(),
    }
    left = who.token_valid_for
    if left is None:
        validity = "renewed automatically" if who.token_renewable else "of unknown validity"
    else:
        validity = f"valid for {left}".split(".")[0]
        if who.token_renewable:
            validity += ", renewed automatically"
    _emit(
        args,
        data,
        lambda: (
            f"{who.account} on {who.instance} ({who.rucio_host}), {who.auth_type}, token {validity}"
        ),
    )
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """Scopes; collections of a scope; content of a collection."""
    lake = _lake(args)
    if not args.target:
        scopes = lake.scopes()
        _emit(args, scopes, lambda: "\n".join(scopes))
        return 0
    if ":" not in args.target:
        items = list(lake.dids(args.target, type="collection", limit=args.limit))
    else:
        did = DID.parse(args.target)
        info = lake.info(did)
        if info.type == "file":
            items = [info]
        elif info.type == "dataset":
            page = Lake.page(lake.files(did), size=args.limit, cursor=args.cursor)
            rows = [f.to_dict() for f in page.items]
            _emit(
                args,
                {"files": rows, "next_cursor": page.next_cursor},
                lambda: (
                    table(
                        [
                            (f"{f.scope}:{f.name}", human_bytes(f.bytes), f.adler32)
                            for f in page.items
                        ],
                        ["file", "size", "adler32"],
                    )
                    + (f"\n... more: --cursor {page.next_cursor}" if page.next_cursor else "")
                ),
            )
            return 0
        else:
            items = list(itertools.islice(lake.contents(did), args.limit))
    _emit(
        args,
        [i.to_dict() for i in items],
        lambda: table(
            [(f"{i.scope}:{i.name}", i.type, i.length, human_bytes(i.bytes)) for i in items],
            ["did", "type", "files", "size"],
        ),
    )
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    """Search by name pattern, type and metadata filters."""
    scope, _, pattern = (
        args.pattern.partition(":") if ":" in args.pattern else (args.scope, "", args.pattern)
    )
    if not scope:
        raise InvalidRequest("No scope given.", "Write scope:pattern or pass --scope.")
    found = list(
        _lake(args).dids(
            scope, pattern or "*", type=args.type, filters=args.filter or None, limit=args.limit
        )
    )
    _emit(
        args,
        [f.to_dict() for f in found],
        lambda: (
            table(
                [(f"{f.scope}:{f.name}", f.type, f.length, human_bytes(f.bytes)) for f in found],
                ["did", "type", "files", "size"],
            )
            + f"\n{len(found)} found"
        ),
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Type, size, metadata and parents of a DID."""
    lake = _lake(args)
    did = DID.parse(args.did)
    info = lake.info(did)
    meta = lake.metadata(did)
    parents = lake.parents(did)
    data = {**info.to_dict(), "metadata": meta, "parents": [str(p.did) for p in parents]}
    hidden = {"scope", "name", "did_type", "bytes", "length"}

    def text() -> str:
        lines = [
            f"{did}  ({info.type}, {human_bytes(info.bytes)}"
            + (f", {info.length} files)" if info.type != "file" else ")"),
        ]
        if parents:
            lines.append("in: " + ", ".join(str(p.did) for p in parents))
        lines += [f"  {k:18} {v}" for k, v in sorted(meta.items()) if k not in hidden]
        return "\n".join(lines)

    _emit(args, data, text)
    return 0


def cmd_replicas(args: argparse.Namespace) -> int:
    """Where a DID's data is, by storage element and site."""
    lake = _lake(args)
    did = DID.parse(args.did)
    if args.files:
        files = [f.did for f in lake.files(did, limit=args.limit)]
        reps = list(lake.file_replicas(files))
        _emit(
            args,
            [r.to_dict() for r in reps],
            lambda: table(
                [
                    (
                        f"{r.scope}:{r.name}",
                        ", ".join(f"{k}={v}" for k, v in sorted(r.states.items())),
                    )
                    for r in reps
                ],
                ["file", "replicas"],
            ),
        )
        return 0
    summary = lake.dataset_replicas(did)
    _emit(
        args,
        [r.to_dict() for r in summary],
        lambda: (
            table(
                [
                    (
                        r.rse,
                        r.site,
                        f"{r.available_files}/{r.total_files}",
                        f"{human_bytes(r.available_bytes)} / {human_bytes(r.total_bytes)}",
                        r.state,
                    )
                    for r in summary
                ],
                ["storage", "site", "files", "bytes", "state"],
            )
            if summary
            else f"{did} has no replicas."
        ),
    )
    return 0


def _near_compute(lake: Lake, args: argparse.Namespace) -> tuple[Any, str | None]:
    from escape_portal.topology import detect_compute_site, lake_topology

    site = detect_compute_site(getattr(args, "site", None) or lake.config.compute_site)
    topology = lake_topology(lake, site)
    return topology, site


def cmd_where(args: argparse.Namespace) -> int:
    """Where a DID is, how far from the compute, and what make-available would do."""
    from escape_portal.access import Access
    from escape_portal.placement import plan

    lake = _lake(args)
    topology, site = _near_compute(lake, args)
    did = DID.parse(args.did)
    placement = plan(lake, topology, did, site)
    read = None
    if lake.info(did).type == "file":  # which replica this session reads, and why
        read = Access(lake, compute_site=site, topology=topology).where(did)[0]

    def text() -> str:
        lines = [placement.summary, ""]
        if read is not None:
            lines += [f"Read from here: {read.explain()}", ""]
            rows = [(s.rse or "cache", s.scheme, s.reason) for s in read.sources]
            rows += [(s.rse, "-", f"left out: {s.reason}") for s in read.skipped]
            lines += [table(rows, ["storage", "protocol", "why"]), ""]
        if placement.sources:
            lines.append("Replicas (best source first):")
            lines.append(
                table(
                    [
                        (c.rse, c.site, "yes" if c.eligible else "no", "; ".join(c.reasons))
                        for c in placement.sources
                    ],
                    ["storage", "site", "usable", "why"],
                )
            )
        if placement.destinations:
            lines += ["", f"Destinations near {site} (chosen first):"]
            lines.append(
                table(
                    [
                        (c.rse, c.site, "yes" if c.eligible else "no", "; ".join(c.reasons))
                        for c in placement.destinations
                    ],
                    ["storage", "site", "usable", "why"],
                )
            )
        lines += [f"warning: {w}" for w in placement.warnings]
        return "\n".join(lines)

    _emit(args, {**placement.to_dict(), "read": read.to_dict() if read else None}, text)
    return 0


def _progress_bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr
    )


def cmd_make_available(args: argparse.Namespace) -> int:
    """Create or reuse the rules that bring DIDs to storage near compute."""
    lake = _lake(args)
    results, worst = _bring_near_compute(lake, [DID.parse(text) for text in args.dids], args)
    _emit(args, results, lambda: _requests_table(results))
    return worst


def _bring_near_compute(
    lake: Lake, dids: list[DID], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int]:
    """Rules for ``dids`` near compute (or to ``--rse``), followed with ``--wait``."""
    from escape_portal.placement import make_available

    lifetime = parse_lifetime(args.lifetime)
    requests: list[tuple[DID, Rule | None, bool]]
    if getattr(args, "rse", None):
        requests = [
            (did, *lake.add_rule(did, args.rse, lifetime=lifetime, comment=args.comment))
            for did in dids
        ]
    else:
        topology, site = _near_compute(lake, args)
        requests = [
            (r.placement.did, r.rule, r.created)
            for r in make_available(
                lake, topology, dids, site, lifetime=lifetime, comment=args.comment
            )
        ]
    results: list[dict[str, Any]] = []
    worst = 0
    for did, rule, created in requests:
        if rule is None:
            if not args.json:
                print(
                    f"{did}: already readable from your compute; nothing to copy.", file=sys.stderr
                )
            results.append({"did": str(did), "created": False, "state": "available", "rule": None})
            continue
        if not args.json:
            verb = "created" if created else "reused"
            print(
                f"{did}: rule {rule.id} {verb} -> {rule.rse_expression} ({rule.state})",
                file=sys.stderr,
            )
        progress = lake.rule_progress(rule.id)
        if args.wait:
            wait = getattr(args, "wait_timeout", None) or args.timeout
            progress = _wait(lake, rule.id, str(did), wait, quiet=args.json)
            if progress.state != "available":
                worst = EXIT_NOT_AVAILABLE
                if not args.json:
                    reason = progress.stuck_reason or "still replicating when the wait ended"
                    print(f"{did}: {progress.state}: {reason}", file=sys.stderr)
        results.append(
            {"did": str(did), "created": created, "state": progress.state, **progress.to_dict()}
        )
    return results, worst


def _requests_table(results: list[dict[str, Any]]) -> str:
    return table(
        [
            (
                r["did"],
                r["rule"]["id"] if r["rule"] else "-",
                r["state"],
                f"{r.get('files_done', '-')}/{r.get('files_total', '-')}",
            )
            for r in results
        ],
        ["did", "rule", "state", "files"],
    )


def _wait(lake: Lake, rule_id: str, label: str, timeout: float, *, quiet: bool) -> RuleProgress:
    from escape_portal.events import ProgressEvent, wait_for

    bar = None
    status = ""  # the line's text while the lake answers

    def line(text: str) -> None:
        nonlocal bar
        if bar is None:
            bar = _progress_bar(0, label)
        bar.set_postfix_str(text)
        bar.refresh()

    def show(event: ProgressEvent) -> None:
        nonlocal bar, status
        if quiet:
            return
        if event.error:  # the lake stayed away for a whole call: keep waiting
            line(waiting_message(lake.config.rucio_host))
            return
        progress = event.progress
        if bar is None:
            bar = _progress_bar(progress.bytes_total, label)
        bar.total = progress.bytes_total
        bar.n = progress.bytes_done
        eta = f", about {event.eta_seconds:.0f} s left" if event.eta_seconds else ""
        status = f"{progress.files_done}/{progress.files_total} files, {event.state}{eta}"
        line(status)

    def waiting(message: str | None) -> None:
        if not quiet:
            line(message or status)

    from escape_portal.lake.auth import waiting_message

    lake.on_waiting = waiting
    try:
        return wait_for(lake, rule_id, timeout=timeout, on_progress=show)
    finally:
        lake.on_waiting = None
        if bar is not None:
            bar.close()


def cmd_open(args: argparse.Namespace) -> int:
    """Local paths to read a DID's files from here (downloading into the cache if needed)."""
    from escape_portal.access import Access

    access = Access(_lake(args))
    located = access.locate(DID.parse(args.did))
    missing = sum(item.file.bytes for item in located if item.path is None)
    if args.no_download and missing:
        raise InvalidRequest(
            f"{missing} bytes of {args.did} would have to be downloaded.",
            "Drop --no-download, or make the data available near compute first.",
        )
    bar = _progress_bar(missing, "download") if missing and not args.json else None
    try:
        paths = access.paths(args.did, on_bytes=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    rows = [
        {**item.to_dict(), "path": str(path)} for item, path in zip(located, paths, strict=True)
    ]
    _emit(args, rows, lambda: "\n".join(str(p) for p in paths))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Copy a DID's files into a folder, verified (through the cache when remote)."""
    from pathlib import Path

    from escape_portal.access import Access
    from escape_portal.integrity import copy_verified

    access = Access(_lake(args))
    located = access.locate(DID.parse(args.did))
    total = sum(item.file.bytes for item in located)
    bar = _progress_bar(total, "download") if not args.json else None
    target = Path(args.to).expanduser()
    done = []
    try:
        for item, source in zip(located, access.paths(args.did), strict=True):
            destination = target / item.file.name
            try:
                copy_verified(
                    source,
                    destination,
                    expected_bytes=item.file.bytes,
                    expected_adler32=item.file.adler32,
                )
            except (OSError, ValueError) as exc:
                raise LakeError(
                    f"Copying {item.file.did} to {destination} failed: {exc}",
                    "Nothing incomplete was left there; check the folder and try again.",
                ) from exc
            if bar is not None:
                bar.update(item.file.bytes)
            done.append({"did": str(item.file.did), "path": str(destination)})
    finally:
        if bar is not None:
            bar.close()
    _emit(args, done, lambda: "\n".join(d["path"] for d in done))
    return 0


def _meta_pairs(pairs: list[str]) -> dict[str, Any]:
    """``['target=Crab', 'ra=83.6']`` -> ``{'target': 'Crab', 'ra': 83.6}`` (numbers as numbers)."""
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(
                f"--meta {pair!r} is not KEY=VALUE.", "Write e.g. --meta target=Crab."
            )
        parsed: Any = value
        for kind in (int, float):
            try:
                parsed = kind(value)
                break
            except ValueError:
                continue
        meta[key.strip()] = parsed
    return meta


def cmd_upload(args: argparse.Namespace) -> int:
    """Upload local files into your scope: written near the compute, verified, registered."""
    from escape_portal.upload import upload

    lake = _lake(args)
    paths = [Path(p) for p in args.paths]
    total = sum(p.stat().st_size for p in paths if p.is_file())
    bar = _progress_bar(total, "upload") if total and not args.json else None
    try:
        results = upload(
            lake,
            paths,
            scope=args.scope,
            dataset=args.dataset,
            rse=args.rse,
            meta=_meta_pairs(args.meta),
            lifetime=parse_lifetime(args.lifetime),
            compute_site=args.site,
            on_bytes=bar.update if bar else None,
        )
    finally:
        if bar is not None:
            bar.close()
    rows = [r.to_dict() for r in results]
    _emit(args, rows, lambda: "\n".join(f"{r.state:8}  {r.message}" for r in results))
    failed = [r.error for r in results if r.error is not None]
    return failed[0].exit_code if failed else 0


def cmd_rules(args: argparse.Namespace) -> int:
    """Rules of a DID; delete or extend one."""
    lake = _lake(args)
    if args.delete:
        lake.delete_rule(args.delete)
        _emit(args, {"deleted": args.delete}, lambda: f"Rule {args.delete} deleted.")
        return 0
    if args.extend:
        rule = lake.extend_rule(args.extend, parse_lifetime(args.lifetime))
        _emit(
            args,
            rule.to_dict(),
            lambda: f"Rule {rule.id} now expires {rule.expires_at or 'never'}.",
        )
        return 0
    if not args.did:
        raise InvalidRequest("Name a DID, or --delete/--extend a rule id.")
    rules = lake.rules(DID.parse(args.did))
    _emit(
        args,
        [r.to_dict() for r in rules],
        lambda: (
            table(
                [
                    (
                        r.id,
                        r.rse_expression,
                        r.state,
                        f"{r.locks_ok}/{r.total_locks}",
                        r.expires_at,
                        r.account,
                    )
                    for r in rules
                ],
                ["rule", "to", "state", "locks ok", "expires", "account"],
            )
            if rules
            else "No rules."
        ),
    )
    return 0


def cmd_rses(args: argparse.Namespace) -> int:
    """Storage elements and their sites."""
    sites = _lake(args).rse_sites()
    _emit(args, sites, lambda: table(sorted(sites.items()), ["storage", "site"]))
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    """A short guided tour of the lake from the terminal."""
    from escape_portal.tour import run_tour

    return run_tour(_lake(args))


# -- parser -------------------------------------------------------------------------------


# -- the Virtual Observatory --------------------------------------------------------------


def _vo_instance(args: argparse.Namespace) -> Any:
    """The lake instance, for its VO endpoint and linking (``None`` if none is configured)."""
    from escape_portal.config import select_instance

    try:
        return select_instance(args.instance)
    except InvalidRequest:
        if args.instance:
            raise
        return None


def _registry_url(args: argparse.Namespace, config: Any) -> str:
    from escape_portal.discovery.services import instance_endpoints

    registry, _ = instance_endpoints(config, registry_url=args.registry)
    if registry:
        return registry
    raise InvalidRequest(
        "No VO registry is configured.",
        "Give --registry URL (a RegTAP service), set IVOA_REGISTRY, or start the embedded "
        "lake ('escape-portal lake up'), whose registry lists its services.",
    )


def _range(text: str | None, what: str) -> tuple[float, float] | None:
    if not text:
        return None
    low, sep, high = text.partition("..")
    try:
        if not sep:
            value = float(text)
            return value, value
        return float(low), float(high)
    except ValueError as exc:
        raise InvalidRequest(
            f"--{what} {text!r} is not a range of numbers.",
            f"Write it as LOW..HIGH, e.g. {_EX[what]}.",
        ) from exc


_EX = {"time": "60300..60310 (MJD)", "band": "1e-7..1e-6 (metres)"}


def _position(text: str) -> tuple[float, float]:
    parts = text.replace(",", " ").split()
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise InvalidRequest(
            f"--pos {text!r} is not 'RA DEC' in degrees.", "For example --pos '83.63 22.01'."
        ) from exc


def _services_from_args(specs: list[str]) -> list[Any]:
    from escape_portal.discovery import Service

    services = []
    for i, spec in enumerate(specs):
        kind, sep, url = spec.partition("=")
        if not sep or kind not in ("tap", "sia2", "scs", "ssa") or not url.startswith("http"):
            raise InvalidRequest(
                f"--service {spec!r} is not KIND=URL.",
                "KIND is tap, sia2, scs or ssa, e.g. --service tap=https://example.org/tap.",
            )
        services.append(Service(f"{kind}-{i + 1}", kind, url))  # type: ignore[arg-type]
    return services


def cmd_vo_registry(args: argparse.Namespace) -> int:
    """Services of a VO registry matching keywords, service type and waveband."""
    from escape_portal.discovery import registry_search

    url = _registry_url(args, _vo_instance(args))
    services = registry_search(
        keywords=args.keywords or None,
        servicetype=args.type or None,
        waveband=args.band or None,
        registry_url=url,
        timeout=args.timeout,
    )
    data = [
        {"name": s.name, "kind": s.kind, "url": s.url, "ivoid": s.ivoid, "title": s.title}
        for s in services
    ]
    _emit(
        args,
        data,
        lambda: (
            table([(s.kind, s.name, s.url) for s in services], ["kind", "service", "url"])
            if services
            else f"No service of {url} matches."
        ),
    )
    return 0


def _vo_state_dir(name: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "escape-portal" / "vo" / name


def cmd_vo_serve(args: argparse.Namespace) -> int:
    """Publish an instance in the VO (TAP, SIA2, SCS, DataLink, RegTAP) until Ctrl-C."""
    from escape_portal.config import select_instance
    from escape_portal.vo_publish.server import run, serve

    config = select_instance(args.instance)  # fails now if the instance is unknown
    state_dir = Path(args.state_dir or _vo_state_dir(config.name)).expanduser().resolve()
    try:
        server = serve(
            config.name, args.port, state_dir, host=args.host, public_url=args.public_url
        )
    except OSError as exc:
        raise InvalidRequest(
            f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}.",
            "Choose another --port (0: any free one) or --host.",
        ) from exc
    base = server.service.base_url
    if args.host in ("0.0.0.0", "::", "") and not args.public_url:
        print(
            f"warning: the services will name themselves {base}, which clients elsewhere "
            "cannot reach; give --public-url (the address they use).",
            file=sys.stderr,
        )
    endpoints = {
        "instance": config.name,
        "rucio_host": config.rucio_host,
        "url": base,
        "tap": f"{base}/tap",
        "sia2": f"{base}/sia2/query",
        "scs": f"{base}/scs/query",
        "datalink": f"{base}/datalink/links",
        "state_dir": str(state_dir),
    }
    if args.json:
        print(json.dumps(endpoints), flush=True)
    else:
        print(
            f"Publishing {config.name} ({config.rucio_host}) in the Virtual Observatory at "
            f"{base}\n  TAP {base}/tap, SIA2 {base}/sia2/query, SCS {base}/scs/query\n"
            f"  state in {state_dir}; Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
    try:
        records = len(server.service.snapshot().harvest.records)
        if not args.json:
            print(f"  {records} ObsCore records published.", file=sys.stderr, flush=True)
    except LakeError as exc:  # served anyway: Rucio is asked again on the next query
        print(f"warning: {exc.message} Asked again on each query.", file=sys.stderr, flush=True)
    run(server)
    if not args.json:
        print("Stopped.", file=sys.stderr)
    return 0


def cmd_vo_search(args: argparse.Namespace) -> int:
    """Search VO services at once; mark rows that are lake files; bring them near compute."""
    from escape_portal.discovery import (
        Query,
        link_to_lake,
        linked_dids,
        registry_search,
        resolve_name,
        search,
        unique_records,
    )
    from escape_portal.discovery.normalise import plain_value

    config = _vo_instance(args)
    pos: Any = _position(args.pos) if args.pos else None
    query = Query(  # checked here, before any request is sent
        pos=pos if pos is not None else (0.0, 0.0) if args.name else None,
        radius=args.radius,
        time=_range(args.time, "time"),
        band=_range(args.band, "band"),
        collection=args.collection,
        dataproduct_type=args.product,
        calib_level=args.calib,
        facility=args.facility,
        maxrec=args.maxrec,
        adql=args.adql,
    )
    if args.name:
        from escape_portal.discovery.services import instance_endpoints

        _, resolver = instance_endpoints(config, resolver_url=args.resolver)
        coord = resolve_name(args.name, resolver_url=resolver, timeout=min(args.timeout, 10.0))
        query = Query(**{**_query_fields(query), "pos": coord})
        if not args.json:
            print(f"{args.name}: RA {coord.ra.deg:.4f}, Dec {coord.dec.deg:.4f}", file=sys.stderr)
    if args.service:
        services = _services_from_args(args.service)
    else:
        services = registry_search(
            keywords=args.keywords or None,
            servicetype=["tap"] if args.adql else (args.type or ["tap", "sia2", "scs"]),
            registry_url=_registry_url(args, config),
            timeout=args.timeout,
        )
        if not services:
            raise InvalidRequest(
                "The registry lists no service to ask.", "Try other --keywords or --type."
            )
    result = search(services, query, timeout=args.timeout, sync=not args.use_async)
    rows = result.table if args.all_rows else unique_records(result.table)
    lake = None
    warnings = list(result.warnings)
    if config is not None and len(rows):
        try:
            lake = Lake(config)
            rows = link_to_lake(rows, lake)
        except LakeError as exc:
            warnings.append(f"Rows were not linked to the lake: {exc.message}")
    statuses = [
        {
            "service": s.service.name,
            "kind": s.service.kind,
            "state": s.state,
            "rows": s.rows,
            "seconds": round(s.seconds, 2),
            "message": s.message,
        }
        for s in result.statuses
    ]
    shown = [c for c in _VO_COLUMNS if c in rows.colnames]
    records = [{c: plain_value(row[c]) for c in rows.colnames if c != "query"} for row in rows]
    requests: list[dict[str, Any]] = []
    worst = 0 if any(s.answered for s in result.statuses) else 6
    if args.make_available:
        dids = linked_dids(rows)
        if lake is None or not dids:
            warnings.append("No row is a lake file: nothing to make available.")
        else:
            requests, code = _bring_near_compute(lake, dids, args)
            worst = max(worst, code)

    def text() -> str:
        out = [result.summary(), ""]
        if len(rows):
            out.append(
                table(
                    [
                        [
                            "lake" if str(r.get("lake_did", "")) else "",
                            *(_cell(r[c]) for c in shown),
                        ]
                        for r in records
                    ],
                    ["", *shown],
                )
            )
            linked = sum(1 for r in records if r.get("lake_did"))
            out.append(
                f"\n{len(records)} rows, {linked} of them lake files "
                "(marked 'lake': make-available and open work on them)"
            )
        if requests:
            out += ["", _requests_table(requests)]
        out += [f"warning: {w}" for w in warnings]
        return "\n".join(out)

    _emit(
        args,
        {"statuses": statuses, "rows": records, "requests": requests, "warnings": warnings},
        text,
    )
    return worst


_VO_COLUMNS = (
    "target_name",
    "dataproduct_type",
    "s_ra",
    "s_dec",
    "t_min",
    "facility_name",
    "instrument_name",
    "obs_id",
    "service",
    "lake_did",
    "lake_rses",
)


def _query_fields(query: Any) -> dict[str, Any]:
    names = ("pos", "radius", "time", "band", "collection", "dataproduct_type")
    more = ("calib_level", "facility", "instrument", "maxrec", "adql")
    return {n: getattr(query, n) for n in names + more}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _common_options(*, top_level: bool) -> argparse.ArgumentParser:
    """``--instance`` and ``--json``, accepted before the command and after it.

    argparse copies a sub-command's defaults over what the main parser read, so after the
    command the options have no default (``SUPPRESS``): ``escape-portal --json find X``
    and ``escape-portal find X --json`` mean the same.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--instance",
        default=None if top_level else argparse.SUPPRESS,
        help="configured Rucio instance to use",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=False if top_level else argparse.SUPPRESS,
        help="print JSON for scripts",
    )
    return common


# -- watches: processing driven by the lake's events ----------------------------------------


def _watch_rows(infos: Sequence[Any]) -> str:
    rows = [
        (
            w.name,
            w.state,
            w.target,
            w.function,
            w.counts.get("done", 0),
            w.counts.get("failed", 0),
            sum(w.counts.get(s, 0) for s in ("new", "running", "retry")),
        )
        for w in infos
    ]
    return table(rows, ["watch", "state", "target", "runs", "done", "failed", "waiting"])


def _import_function(spec: str) -> Callable[[Any], Any]:
    """``package.module:function`` -> the function."""
    import importlib

    module, _, attribute = spec.partition(":")
    if not module or not attribute:
        raise InvalidRequest(
            f"{spec!r} does not name a function.", "Write it as package.module:function."
        )
    try:
        found: Any = importlib.import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidRequest(f"Cannot import {spec}: {exc}.", "Is the module on sys.path?") from exc
    if not callable(found):
        raise InvalidRequest(f"{spec} is not a function.")
    return found  # type: ignore[no-any-return]


def _follow(args: argparse.Namespace, watcher: Any) -> int:
    """Run a watch in the foreground until it is stopped (here with Ctrl-C, or elsewhere)."""
    print(
        f"Watching {watcher.target} as {watcher.name!r}"
        + (" through the broker" if watcher.following_notifications else " by polling")
        + "; Ctrl-C or 'escape-portal watch stop NAME' ends it.",
        file=sys.stderr,
    )
    for warning in watcher.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    try:
        while not watcher.wait(1.0):
            pass
    except KeyboardInterrupt:
        watcher.stop()
        print("stopped", file=sys.stderr)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Watches: list, show, stop, remove, or run one (add, run)."""
    from escape_portal import watches

    action = args.watch_command
    if action == "list":
        infos = watches.list_watches()
        _emit(
            args,
            [w.as_dict() for w in infos],
            lambda: _watch_rows(infos) if infos else "No watches.",
        )
        return 0
    if action == "show":
        store = watches.Store()
        try:
            info = store.info(args.name)
            records = store.records(args.name, args.state)
        finally:
            store.close()
        data = {**info.as_dict(), "files": [dataclasses.asdict(r) for r in records]}
        rows = [(r.did, r.state, r.attempts, r.error or r.result) for r in records[-args.limit :]]
        _emit(
            args,
            data,
            lambda: (
                _watch_rows([info]) + "\n\n" + table(rows, ["file", "state", "tries", "result"])
            ),
        )
        return 0
    if action == "stop":
        info = watches.stop(args.name)
        _emit(args, info.as_dict(), lambda: f"Watch {args.name!r} stops (its record is kept).")
        return 0
    if action == "remove":
        watches.remove(args.name)
        _emit(args, {"removed": args.name}, lambda: f"Watch {args.name!r} removed.")
        return 0
    if action == "run":
        return _follow(args, watches.resume(args.name, lake=_lake(args) if args.instance else None))
    # add
    function = _import_function(args.function) if args.function else None
    watcher = watches.watch(
        _lake(args),
        args.target,
        function,
        notebook=args.notebook,
        name=args.name,
        filters=args.filter,
        include_existing=args.include_existing,
    )
    return _follow(args, watcher)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="escape-portal",
        description="Browse the ESCAPE data lake and bring data next to your compute.",
        parents=[_common_options(top_level=True)],
    )
    # The same options after the command; they must not reset what was given before it.
    common = _common_options(top_level=False)
    parser.add_argument("--version", action="version", version=f"escape-portal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lake = sub.add_parser("lake", parents=[common], help="run the embedded data lake")
    lake.add_argument(
        "action",
        choices=["up", "down", "status", "env"],
        help="env: what to export to use Rucio's own CLI (and xrdcp, gfal-copy) on it",
    )
    lake.add_argument("--data-dir", help="state folder (default ~/.escape-portal/lake)")
    lake.add_argument("--port", type=int, help="port of the Rucio server on 127.0.0.1")
    lake.add_argument("--database-url", help="SQLAlchemy URL instead of SQLite")
    lake.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        help="the catalogue's database, remembered per data directory "
        "(default: sqlite; see docs/embedded-lake.md)",
    )
    lake.add_argument("--no-seed", action="store_true", help="do not write sample data")
    lake.set_defaults(func=cmd_lake)

    sub.add_parser("whoami", parents=[common], help="who you are, token validity").set_defaults(
        func=cmd_whoami
    )

    ls = sub.add_parser("ls", parents=[common], help="scopes, or what a scope/DID holds")
    ls.add_argument("target", nargs="?", help="scope or scope:name")
    ls.add_argument("--limit", type=int, default=50, help="rows per page (default 50)")
    ls.add_argument("--cursor", help="continue a dataset's file listing")
    ls.set_defaults(func=cmd_ls)

    find = sub.add_parser("find", parents=[common], help="search DIDs by name and metadata")
    find.add_argument("pattern", help="scope:pattern (wildcard *), or a pattern with --scope")
    find.add_argument("--scope")
    find.add_argument(
        "--type", default="all", choices=["all", "collection", "container", "dataset", "file"]
    )
    find.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY<OP>VALUE",
        help="metadata filter, e.g. target=Crab or ra>80 (repeatable)",
    )
    find.add_argument("--limit", type=int, default=100)
    find.set_defaults(func=cmd_find)

    info = sub.add_parser("info", parents=[common], help="size, metadata and parents of a DID")
    info.add_argument("did")
    info.set_defaults(func=cmd_info)

    rep = sub.add_parser("replicas", parents=[common], help="where a DID's data is")
    rep.add_argument("did")
    rep.add_argument("--files", action="store_true", help="per file (first --limit files)")
    rep.add_argument("--limit", type=int, default=50)
    rep.set_defaults(func=cmd_replicas)

    mk = sub.add_parser(
        "make-available", parents=[common], help="replicate DIDs to the storage near your compute"
    )
    mk.add_argument("dids", nargs="+", metavar="DID")
    mk.add_argument("--rse", help="destination storage element (default: chosen near compute)")
    mk.add_argument("--site", help="compute site (default: configured or detected)")
    mk.add_argument("--lifetime", default="7d", help="how long to keep it (default 7d)")
    mk.add_argument("--comment", default="escape-portal make-available")
    mk.add_argument("--wait", action="store_true", help="show progress until available")
    mk.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    mk.set_defaults(func=cmd_make_available)

    where = sub.add_parser(
        "where", parents=[common], help="where a DID is, and what make-available would do"
    )
    where.add_argument("did")
    where.add_argument("--site", help="compute site (default: configured or detected)")
    where.set_defaults(func=cmd_where)

    rules = sub.add_parser("rules", parents=[common], help="rules of a DID; delete/extend")
    rules.add_argument("did", nargs="?")
    rules.add_argument("--delete", metavar="RULE_ID")
    rules.add_argument("--extend", metavar="RULE_ID")
    rules.add_argument("--lifetime", help="with --extend: new lifetime from now")
    rules.set_defaults(func=cmd_rules)

    op = sub.add_parser(
        "open",
        parents=[common],
        help="local paths of a DID's files (mounted, cached, or downloaded and verified)",
    )
    op.add_argument("did")
    op.add_argument("--no-download", action="store_true", help="fail rather than download")
    op.set_defaults(func=cmd_open)

    dl = sub.add_parser(
        "download", parents=[common], help="copy a DID's files into a folder, verified"
    )
    dl.add_argument("did")
    dl.add_argument("--to", default=".", help="folder to copy into (default: here)")
    dl.set_defaults(func=cmd_download)

    up = sub.add_parser(
        "upload",
        parents=[common],
        help="upload files into your scope (near your compute, verified, then registered)",
    )
    up.add_argument("paths", nargs="+", metavar="PATH", help="local files")
    up.add_argument("--scope", help="scope of the new DIDs (default user.<account>)")
    up.add_argument("--dataset", help="dataset to attach them to (name or scope:name; made if new)")
    up.add_argument("--rse", help="storage element to write to (default: nearest writable)")
    up.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="DID metadata for every file (repeatable)",
    )
    up.add_argument("--lifetime", help="how long the rule keeping them lasts (default: forever)")
    up.add_argument("--site", help="compute site (default: configured or detected)")
    up.set_defaults(func=cmd_upload)

    sub.add_parser("rses", parents=[common], help="storage elements and sites").set_defaults(
        func=cmd_rses
    )
    sub.add_parser("tour", parents=[common], help="a guided tour of the lake").set_defaults(
        func=cmd_tour
    )

    watch = sub.add_parser(
        "watch", parents=[common], help="run a function or notebook on every new file"
    )
    watch_sub = watch.add_subparsers(dest="watch_command", required=True, metavar="WATCH_COMMAND")
    add = watch_sub.add_parser(
        "add", parents=[common], help="watch a dataset, container or scope and run it (foreground)"
    )
    add.add_argument("target", help="scope:name of a dataset or container, or a scope")
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--function", help="package.module:function, called with each LakeFile")
    what.add_argument("--notebook", help="a notebook run with papermill for each file")
    add.add_argument("--name", help="the watch's name (default: from the target)")
    add.add_argument("--filter", action="append", help="metadata filter on a scope's files")
    add.add_argument(
        "--include-existing", action="store_true", help="process the files already there too"
    )
    watch_sub.add_parser("list", parents=[common], help="every watch and what it did")
    show = watch_sub.add_parser("show", parents=[common], help="a watch's files")
    show.add_argument("name")
    show.add_argument("--state", choices=["existing", "new", "running", "retry", "done", "failed"])
    show.add_argument("--limit", type=int, default=50, help="rows (default 50, the latest)")
    for verb, text in (
        ("stop", "stop a watch, wherever it runs (its record is kept)"),
        ("run", "start a stopped watch again where it stopped (foreground)"),
        ("remove", "forget a stopped watch and what it processed"),
    ):
        watch_sub.add_parser(verb, parents=[common], help=text).add_argument("name")
    watch.set_defaults(func=cmd_watch)

    vo = sub.add_parser("vo", parents=[common], help="discover data in the Virtual Observatory")
    vo_sub = vo.add_subparsers(dest="vo_command", required=True, metavar="VO_COMMAND")
    reg = vo_sub.add_parser("registry", parents=[common], help="find VO services in a registry")
    reg.add_argument("keywords", nargs="*", help="words the services' descriptions contain")
    reg.add_argument("--type", action="append", choices=["tap", "sia2", "scs", "ssa"])
    reg.add_argument("--band", action="append", help="waveband: radio, optical, gamma-ray, ...")
    reg.add_argument("--registry", help="RegTAP endpoint (default: IVOA_REGISTRY or the lake's)")
    reg.add_argument("--timeout", type=float, default=20.0)
    reg.set_defaults(func=cmd_vo_registry)

    vs = vo_sub.add_parser(
        "search",
        parents=[common],
        help="search many VO services at once; mark and fetch rows that are lake files",
    )
    where_ = vs.add_mutually_exclusive_group()
    where_.add_argument("--pos", help="'RA DEC' in degrees (ICRS)")
    where_.add_argument("--name", help="an object name, resolved to a position")
    vs.add_argument("--radius", type=float, help="degrees")
    vs.add_argument("--time", help="MJD range LOW..HIGH")
    vs.add_argument("--band", help="wavelength range in metres LOW..HIGH")
    vs.add_argument("--collection", action="append")
    vs.add_argument("--product", action="append", help="dataproduct_type: image, event, ...")
    vs.add_argument("--calib", type=int, action="append", help="calibration level 0..4")
    vs.add_argument("--facility", action="append")
    vs.add_argument("--adql", help="raw ADQL for TAP services (experts)")
    vs.add_argument("--maxrec", type=int, default=1000, help="rows asked of each service")
    vs.add_argument(
        "--service", action="append", metavar="KIND=URL", help="ask this service (repeatable)"
    )
    vs.add_argument("--keywords", nargs="*", help="registry keywords choosing the services")
    vs.add_argument("--type", action="append", choices=["tap", "sia2", "scs", "ssa"])
    vs.add_argument("--registry", help="RegTAP endpoint (default: IVOA_REGISTRY or the lake's)")
    vs.add_argument("--resolver", help="name resolver URL (default: the lake's, then Sesame)")
    vs.add_argument("--timeout", type=float, default=15.0, help="seconds per service")
    vs.add_argument("--async", dest="use_async", action="store_true", help="TAP async jobs")
    vs.add_argument("--all-rows", action="store_true", help="keep duplicates across services")
    vs.add_argument(
        "--make-available", action="store_true", help="bring the lake rows near your compute"
    )
    vs.add_argument("--site", help="compute site (default: configured or detected)")
    vs.add_argument("--lifetime", default="7d", help="with --make-available (default 7d)")
    vs.add_argument("--comment", default="escape-portal vo search")
    vs.add_argument("--wait", action="store_true", help="with --make-available: show progress")
    vs.add_argument("--timeout-wait", dest="wait_timeout", type=float, default=3600.0)
    vs.set_defaults(func=cmd_vo_search)

    serve = vo_sub.add_parser(
        "serve",
        parents=[common],
        help="publish an instance in the VO (TAP, SIA2, SCS, DataLink) until Ctrl-C",
    )
    serve.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    serve.add_argument("--state-dir", help="its folder (default ~/.local/state/escape-portal/vo)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--public-url", help="URL clients reach it at (default http://HOST:PORT)")
    serve.set_defaults(func=cmd_vo_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``escape-portal``."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except LakeError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__}))
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
