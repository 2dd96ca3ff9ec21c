"""What both widgets do with a lake DID: bring it near the compute, and open it.

Thin over the services: placement decides and explains (:mod:`escape_portal.placement`),
access reads (:class:`escape_portal.access.Access`). The HTML of their answers is made
here too, so that the lake browser and the VO search show them alike.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from escape_portal.access import Access, Located
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, Lake
from escape_portal.lake.models import as_did
from escape_portal.placement import Candidate, Placement, Request, make_available, plan
from escape_portal.topology import Topology, detect_compute_site, lake_topology
from escape_portal.widgets import markup

#: Collections with more files than this are not opened from a widget (it would list,
#: locate and possibly download them all); open their files one by one, or use Access.
OPEN_MAX_FILES = 200
#: Header cards and table rows shown in a FITS preview.
PREVIEW_CARDS = 60
PREVIEW_ROWS = 10
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fz")


class NearCompute:
    """The session's compute site and the lake's topology, loaded once, for placement.

    Parameters
    ----------
    lake
        The lake.
    compute_site
        The compute site (default: configured, else detected as the CLI does).

    """

    def __init__(self, lake: Lake, compute_site: str | None = None) -> None:
        self.lake = lake
        self.compute_site = detect_compute_site(compute_site or lake.config.compute_site)
        self._topology: Topology | None = None
        self._lock = threading.Lock()

    @property
    def topology(self) -> Topology:
        """Sites, storage and links (Rucio plus the configured feeds), loaded on first use."""
        with self._lock:
            if self._topology is None:
                self._topology = lake_topology(self.lake, self.compute_site)
            return self._topology

    def km(self, site: str | None) -> float | None:
        """Distance from ``site`` to the compute site, if known."""
        link = self.topology.link(site, self.compute_site)
        return link.km if link else None

    def plan(self, did: DID | str) -> Placement:
        """Where ``did`` would be read from, or copied to, and why."""
        return plan(self.lake, self.topology, as_did(did), self.compute_site)

    def make_available(self, did: DID | str) -> Request:
        """Create or reuse the rule that brings ``did`` near the compute."""
        [request] = make_available(self.lake, self.topology, [as_did(did)], self.compute_site)
        return request


@dataclass(frozen=True)
class HDUPreview:
    """One HDU of a FITS file: its header, and the first rows of a table."""

    index: int
    name: str
    kind: str
    header: str
    shape: str = ""
    rows: str | None = None


@dataclass(frozen=True)
class Opened:
    """A DID opened from this session: how each file is read, its paths, a preview."""

    did: DID
    located: list[Located]
    paths: list[Path]
    preview_of: DID | None = None
    preview: list[HDUPreview] = field(default_factory=list)
    preview_error: str | None = None


def is_fits(name: str) -> bool:
    """Whether a file name looks like FITS."""
    return name.lower().endswith(FITS_SUFFIXES)


def open_did(lake: Lake, access: Access, did: DID | str) -> Opened:
    """Local paths of ``did``'s files (mounted, cached or downloaded) and a FITS preview.

    Raises
    ------
    InvalidRequest
        For a collection of more than :data:`OPEN_MAX_FILES` files.

    """
    d = as_did(did)
    info = lake.info(d)
    if info.type != "file" and (info.length or 0) > OPEN_MAX_FILES:
        raise InvalidRequest(
            f"{d} holds {info.length} files: too many to open from here.",
            f"Browse into it and open files one by one, or in code: Access(lake).paths('{d}').",
        )
    located = access.locate(d)
    paths = access.paths(d)
    first = next(
        (
            (item.file.did, path)
            for item, path in zip(located, paths, strict=True)
            if is_fits(item.file.name)
        ),
        None,
    )
    if first is None:
        return Opened(d, located, paths)
    try:
        preview = preview_fits(first[1])
    except (OSError, ValueError, TypeError) as exc:
        return Opened(d, located, paths, first[0], preview_error=f"{type(exc).__name__}: {exc}")
    return Opened(d, located, paths, first[0], preview)


def preview_fits(path: Path) -> list[HDUPreview]:
    """Headers of every HDU of a local FITS file, and the first rows of its tables."""
    from astropy.io import fits
    from astropy.table import Table

    previews = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd headers or units must not stop a preview
        with fits.open(path, memmap=False) as hdul:
            for i, hdu in enumerate(hdul):
                cards = [str(card) for card in hdu.header.cards[:PREVIEW_CARDS]]
                if len(hdu.header) > PREVIEW_CARDS:
                    cards.append(f"... {len(hdu.header) - PREVIEW_CARDS} more cards")
                rows = None
                shape = ""
                if isinstance(hdu, fits.BinTableHDU | fits.TableHDU) and hdu.data is not None:
                    shape = f"{len(hdu.data)} rows x {len(hdu.columns)} columns"
                    head = Table(hdu.data[:PREVIEW_ROWS], copy=True)
                    rows = "\n".join(head.pformat(max_width=160, max_lines=PREVIEW_ROWS + 4))
                elif getattr(hdu, "shape", None):
                    shape = " x ".join(str(n) for n in hdu.shape)
                previews.append(
                    HDUPreview(i, hdu.name, type(hdu).__name__, "\n".join(cards), shape, rows)
                )
    return previews


# -- HTML ---------------------------------------------------------------------------------


def _candidates(title: str, rows: list[Candidate]) -> str:
    if not rows:
        return ""
    return f"<div><b>{markup.text(title)}</b></div>" + markup.table(
        [(c.rse, c.site, "yes" if c.eligible else "no", "; ".join(c.reasons)) for c in rows],
        ["storage", "site", "usable", "why"],
    )


def placement_html(placement: Placement, request: Request | None = None) -> str:
    """Where the data goes and why: the placement explanation, as ``escape-portal where``."""
    parts = [
        '<div class="escape-portal-placement-summary">'
        f"<b>{markup.text(placement.summary)}</b></div>"
    ]
    if request is not None and request.rule is not None:
        verb = "created" if request.created else "reused"
        parts.append(
            markup.muted(
                f"Rule {request.rule.id} {verb} -> {request.rule.rse_expression} "
                f"({request.rule.state})."
            )
        )
    parts.append(_candidates("Replicas (best source first)", placement.sources))
    site = placement.compute_site or "your compute"
    parts.append(_candidates(f"Destinations near {site} (chosen first)", placement.destinations))
    parts.append(markup.warnings(placement.warnings))
    return '<div class="escape-portal-placement">' + "".join(parts) + "</div>"


_WAYS = {
    "mounted": "read in place (storage mounted here)",
    "cache": "from the download cache",
    "download": "downloaded into the cache (checksum verified)",
}


def opened_html(opened: Opened) -> str:
    """Paths of an opened DID, how each is read, and the FITS preview."""
    rows = [
        (str(item.file.did), _WAYS.get(item.way, item.way), item.reason, str(path))
        for item, path in zip(opened.located, opened.paths, strict=True)
    ]
    parts = [
        f"<div><b>{markup.text(opened.did)}</b>: {len(rows)} file(s). "
        "In code: <code>Access(lake).paths("
        f"'{markup.text(opened.did)}')</code></div>",
        markup.table(rows[:50], ["file", "how", "why", "path"], css="escape-portal-paths"),
    ]
    if len(rows) > 50:
        parts.append(markup.muted(f"... and {len(rows) - 50} more."))
    if opened.preview_error:
        parts.append(
            markup.warnings([f"No preview of {opened.preview_of}: {opened.preview_error}"])
        )
    if opened.preview:
        parts.append(f"<div><b>FITS preview of {markup.text(opened.preview_of)}</b></div>")
    for hdu in opened.preview:
        title = f"HDU {hdu.index} {hdu.name} ({hdu.kind}{', ' + hdu.shape if hdu.shape else ''})"
        body = f'<pre class="escape-portal-pre">{markup.text(hdu.header)}</pre>'
        if hdu.rows:
            first = markup.text(hdu.rows)
            body += f'<pre class="escape-portal-pre escape-portal-fits-rows">{first}</pre>'
        parts.append(f"<details><summary>{markup.text(title)}</summary>{body}</details>")
    return '<div class="escape-portal-opened">' + "".join(parts) + "</div>"
