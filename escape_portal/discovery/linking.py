"""Link rows found in the Virtual Observatory to files of the data lake.

A row is linked to a lake DID, in this order, when

1. its ``obs_publisher_did`` is one of the lake's (``ivo://escape.eu/lake?SCOPE:NAME``,
   see :mod:`escape_portal.vo_ids`);
2. its ``access_url`` — or, for DataLink pointers, one of the ``#this`` links — is the URL
   of a replica of a lake file (:meth:`escape_portal.lake.Lake.dids_from_urls`, checked
   against Rucio's own replica list);
3. a configured rule maps it (:class:`LinkRule`: a regular expression on a column, with
   named groups ``scope`` and ``name`` or ``did``).

Every link is confirmed with the catalogue: a DID Rucio does not know is not a link. Linked
rows carry the storage elements that hold them, so they can be made available near
compute and opened exactly like lake data; the rest can be downloaded into the cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from astropy.table import Table

from escape_portal.config import LakeConfig
from escape_portal.discovery.datalink import datalinks
from escape_portal.errors import InvalidRequest, LakeError
from escape_portal.lake import DID, Lake
from escape_portal.vo_ids import parse_publisher_did

#: Content type of DataLink documents in ObsCore ``access_format``.
DATALINK_FORMAT = "content=datalink"
#: How a row was linked.
HOW = ("publisher DID", "replica URL", "DataLink replica", "rule")


@dataclass(frozen=True)
class LinkRule:
    r"""Maps rows to DIDs by a regular expression on one column.

    Parameters
    ----------
    pattern
        A regular expression with the named groups ``scope`` and ``name``, or ``did``
        (``scope:name``), searched in the column's text.
    column
        The column (default ``access_url``).

    Examples
    --------
    >>> rule = LinkRule(r"https://archive\.example/(?P<scope>\w+)/(?P<name>[^/?]+)$")
    >>> rule.match("https://archive.example/cta/run1.fits")
    DID(scope='cta', name='run1.fits')

    """

    pattern: str
    column: str = "access_url"

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise InvalidRequest(
                f"Link rule {self.pattern!r} is not a valid regular expression: {exc}."
            ) from exc
        groups = set(compiled.groupindex)
        if not ({"scope", "name"} <= groups or "did" in groups):
            raise InvalidRequest(
                f"Link rule {self.pattern!r} names no DID.",
                "Give it the named groups (?P<scope>...) and (?P<name>...), or (?P<did>...).",
            )

    def match(self, text: str) -> DID | None:
        """The DID ``text`` maps to, if the pattern matches."""
        found = re.search(self.pattern, text)
        if found is None:
            return None
        groups = found.groupdict()
        try:
            if groups.get("did"):
                return DID.parse(groups["did"])
            return DID(groups["scope"], groups["name"])
        except (ValueError, KeyError, TypeError):
            return None


def rules_from_config(config: LakeConfig) -> list[LinkRule]:
    """The link rules configured for an instance (``vo_links``)."""
    return [LinkRule(pattern, column) for column, pattern in config.vo_links]


def _text(row: Any, column: str) -> str:
    if column not in row.colnames:
        return ""
    value = row[column]
    if value is None or getattr(value, "mask", False) is True:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def link_to_lake(
    table: Table,
    lake: Lake,
    *,
    rules: Sequence[LinkRule] | None = None,
    follow_datalinks: int = 25,
    timeout: float = 10.0,
) -> Table:
    """Add ``lake_did``, ``lake_link`` and ``lake_rses`` columns to discovered rows.

    Parameters
    ----------
    table
        Rows of :func:`escape_portal.discovery.search` (any table with ObsCore's
        ``obs_publisher_did`` / ``access_url`` / ``access_format`` columns will do).
    lake
        The lake to link to.
    rules
        Extra mappings (default: the instance's configured ``vo_links``).
    follow_datalinks
        Read the DataLink documents of at most this many otherwise unlinked rows, in
        parallel, to compare their ``#this`` URLs with the lake's replicas.
    timeout
        Seconds for each DataLink document.

    Returns
    -------
    astropy.table.Table
        A copy of ``table`` with ``lake_did`` (``scope:name`` or ``""``), ``lake_link``
        (how it was linked, one of :data:`HOW`, or ``""``) and ``lake_rses`` (storage
        elements holding an available replica, comma-separated).

    """
    rules = rules_from_config(lake.config) if rules is None else list(rules)
    out = table.copy(copy_data=True)
    n = len(out)
    dids: list[DID | None] = [None] * n
    how = [""] * n

    for i, row in enumerate(out):
        did = parse_publisher_did(_text(row, "obs_publisher_did"))
        if did is not None:
            dids[i], how[i] = did, "publisher DID"

    urls = {i: _text(row, "access_url") for i, row in enumerate(out) if dids[i] is None}
    urls = {i: u for i, u in urls.items() if u}
    if urls:
        found = lake.dids_from_urls(set(urls.values()))
        for i, url in urls.items():
            if url in found:
                dids[i], how[i] = found[url][0], "replica URL"

    pointers = [
        i
        for i, row in enumerate(out)
        if dids[i] is None
        and urls.get(i)
        and DATALINK_FORMAT in _text(row, "access_format").replace(" ", "")
    ][:follow_datalinks]
    if pointers:
        for i, did in _follow(out, pointers, lake, timeout):
            dids[i], how[i] = did, "DataLink replica"

    for i, row in enumerate(out):
        if dids[i] is not None:
            continue
        for rule in rules:
            did = rule.match(_text(row, rule.column))
            if did is not None:
                dids[i], how[i] = did, "rule"
                break

    rses = _confirm(lake, dids)
    for i, did in enumerate(dids):
        if did is not None and did not in rses:
            dids[i], how[i] = None, ""  # the catalogue does not know it
    _set_column(out, "lake_did", [str(d) if d else "" for d in dids])
    _set_column(out, "lake_link", how)
    _set_column(out, "lake_rses", [",".join(rses.get(d, [])) if d else "" for d in dids])
    return out


def _follow(table: Table, rows: list[int], lake: Lake, timeout: float) -> Iterable[tuple[int, DID]]:
    def links(i: int) -> list[str]:
        try:
            found = datalinks(_text(table[i], "access_url"), timeout=timeout)
        except LakeError:
            return []
        return [link.url for link in found if link.semantics == "#this" and link.url]

    with ThreadPoolExecutor(max_workers=min(8, len(rows))) as pool:
        this = dict(zip(rows, pool.map(links, rows), strict=True))
    every = {url for urls in this.values() for url in urls}
    found = lake.dids_from_urls(every) if every else {}
    for i, urls in this.items():
        match = next((found[u][0] for u in urls if u in found), None)
        if match is not None:
            yield i, match


def _confirm(lake: Lake, dids: Sequence[DID | None]) -> dict[DID, list[str]]:
    """Known DIDs -> storage elements with an available replica (bulk requests)."""
    wanted = list(dict.fromkeys(d for d in dids if d is not None))
    known: dict[DID, list[str]] = {}
    if not wanted:
        return known
    try:
        replicas = list(lake.file_replicas(wanted))
    except LakeError:  # one unknown scope fails the bulk request: ask one by one
        replicas = []
        for did in wanted:
            try:
                replicas.extend(lake.file_replicas([did]))
            except LakeError:
                continue
    for rep in replicas:
        available = sorted(rse for rse, state in rep.states.items() if state == "AVAILABLE")
        known[DID(rep.scope, rep.name)] = available
    for did in wanted:  # collections (not files) are summarised instead
        if did in known:
            continue
        try:
            summary = lake.dataset_replicas(did)
        except LakeError:
            continue
        known[did] = sorted(r.rse for r in summary if r.available_files)
    return known


def _set_column(table: Table, name: str, values: list[str]) -> None:
    if name in table.colnames:
        table.remove_column(name)  # a service's own claim is replaced by the checked one
    table[name] = values if values else Table.Column([], dtype=str)


def linked_dids(table: Table) -> list[DID]:
    """The distinct lake DIDs of linked rows (after :func:`link_to_lake`), in row order."""
    if "lake_did" not in table.colnames:
        return []
    seen = dict.fromkeys(DID.parse(str(v)) for v in table["lake_did"] if str(v))
    return list(seen)
