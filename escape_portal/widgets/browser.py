"""The lake browser's state, without widgets: search, browse with pages, details, actions.

:class:`BrowserModel` is plain Python over the lake library and the services; the
:class:`~escape_portal.widgets.LakeBrowser` widget renders it. Listings are read a page
at a time from a stream kept open at the next page (:class:`Listing`), so the first page
of a 100,000-file dataset shows as soon as its first files arrive, and the next page
continues the same server stream instead of reading the listing again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from escape_portal.access import Access
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, DatasetReplica, DIDInfo, Lake, Page, RuleProgress
from escape_portal.lake.listings import OpenListings
from escape_portal.lake.models import as_did
from escape_portal.placement import Request
from escape_portal.widgets.actions import NearCompute, Opened, open_did

T = TypeVar("T")
TYPES = ("all", "collection", "container", "dataset", "file")
#: Rules shown with their progress in the details (each costs a summary request).
DETAILS_MAX_RULES = 10


@dataclass(frozen=True)
class Entry:
    """One line of a listing: a scope, a container, a dataset or a file."""

    scope: str
    name: str
    type: str
    files: int | None = None
    bytes: int | None = None

    @property
    def did(self) -> str:
        """``scope:name``, or the scope itself for a scope."""
        return self.scope if self.type == "scope" else f"{self.scope}:{self.name}"

    @property
    def browsable(self) -> bool:
        """Whether it holds something to browse into."""
        return self.type in ("scope", "container", "dataset")

    @classmethod
    def of(cls, item: Any) -> Entry:
        """An entry from a :class:`DIDInfo` or :class:`FileInfo`."""
        kind = getattr(item, "type", "file") or "unknown"
        return cls(item.scope, item.name, kind, getattr(item, "length", None), item.bytes)


class Listing(Generic[T]):
    """A listing read page by page from one stream kept open at its next page.

    Parameters
    ----------
    title
        What is listed, for the user.
    produce
        Starts the listing from its first item (a lake stream).
    size
        Items per page.

    Notes
    -----
    Cursors are the lake library's (:meth:`escape_portal.lake.Lake.page`). Pages already
    read are kept, so going back costs nothing; if the kept stream breaks, the next page
    is read again from the start of a new stream at its cursor.

    """

    def __init__(self, title: str, produce: Callable[[], Iterable[T]], size: int = 100) -> None:
        Lake.page((), size=size)  # the library's check of the size
        self.title = title
        self.size = size
        self._produce = produce
        self._open = OpenListings(max_open=1, idle_seconds=3600.0)
        self.pages: list[Page[T]] = []
        self.index = -1

    @property
    def page(self) -> Page[T]:
        """The page shown."""
        return self.pages[self.index] if self.pages else Page([], None)

    @property
    def offset(self) -> int:
        """Position of the page's first item in the listing."""
        return max(0, self.index) * self.size

    @property
    def has_next(self) -> bool:  # noqa: D102
        return self.page.next_cursor is not None

    @property
    def has_previous(self) -> bool:  # noqa: D102
        return self.index > 0

    def first(self) -> Page[T]:
        """Read the first page."""
        self.close()
        self.pages, self.index = [], -1
        return self._read(None)

    def next(self) -> Page[T]:
        """Read (or show again) the next page."""
        if self.index + 1 < len(self.pages):
            self.index += 1
            return self.page
        if not self.has_next:
            raise InvalidRequest("This is the last page.")
        return self._read(self.page.next_cursor)

    def previous(self) -> Page[T]:
        """Show the previous page again."""
        if self.index > 0:
            self.index -= 1
        return self.page

    def _read(self, cursor: str | None) -> Page[T]:
        # The lake layer keeps the stream open at the next page (re-read if it broke).
        page = self._open.page(self, self._produce, size=self.size, cursor=cursor)
        self.pages.append(page)
        self.index = len(self.pages) - 1
        return page

    def close(self) -> None:
        """Let go of the stream (which closes the server response)."""
        self._open.close()


@dataclass(frozen=True)
class ReplicaSite:
    """A replica of the details, with its distance from the compute."""

    replica: DatasetReplica
    km: float | None
    at_compute: bool


@dataclass(frozen=True)
class Details:
    """What the details pane shows of a DID."""

    info: DIDInfo
    metadata: dict[str, Any]
    replicas: list[ReplicaSite]
    rules: list[RuleProgress]
    compute_site: str | None
    more_rules: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_search(text: str) -> tuple[str | None, str]:
    """``scope:pattern`` -> ``(scope, pattern)``; a bare pattern searches every scope."""
    text = text.strip()
    if ":" in text:
        scope, pattern = text.split(":", 1)
        if not scope:
            raise InvalidRequest(
                f"{text!r} names no scope.", "Write scope:pattern, e.g. cta:crab*."
            )
        return scope, pattern or "*"
    return None, text or "*"


def parse_filter_text(text: str) -> list[str]:
    """``'target=Crab, ra>80'`` -> ``['target=Crab', 'ra>80']`` (commas, semicolons, lines)."""
    return [part.strip() for part in re.split(r"[,;\n]", text) if part.strip()]


class BrowserModel:
    """The lake browser, without widgets.

    Parameters
    ----------
    lake
        The lake.
    access
        Reading files (default: ``Access(lake)``, with the default download cache).
    page_size
        Items per page of every listing.
    compute_site
        The compute site for placement (default: configured, else detected).

    """

    def __init__(
        self,
        lake: Lake,
        *,
        access: Access | None = None,
        page_size: int = 100,
        compute_site: str | None = None,
    ) -> None:
        self.lake = lake
        self.access = access or Access(lake)
        self.page_size = page_size
        self.near = NearCompute(lake, compute_site)
        #: Where the browser is: ``[]`` (scopes), ``['cta']``, ``['cta', 'cta:crab-2024']``...
        self.location: list[str] = []
        self.listing: Listing[Any] | None = None

    # -- listings ------------------------------------------------------------------------

    def _show(self, listing: Listing[Any]) -> Listing[Any]:
        if self.listing is not None:
            self.listing.close()
        listing.first()
        self.listing = listing
        return listing

    def go(self, target: str | None = None) -> Listing[Any]:
        """Browse to the scopes (``None``), a scope, or a container or dataset.

        The location (breadcrumb) follows: a scope, then the collections down from it.
        """
        if not target:
            listing = Listing(
                "Scopes",
                lambda: (Entry(s, "", "scope") for s in self.lake.scopes()),
                self.page_size,
            )
            self._show(listing)
            self.location = []
            return listing
        if ":" not in target:
            scope = target
            listing = Listing(
                f"Containers and datasets of {scope}",
                lambda: (Entry.of(d) for d in self.lake.dids(scope, type="collection")),
                self.page_size,
            )
            self._show(listing)
            self.location = [scope]
            return listing
        did = DID.parse(target)
        info = self.lake.info(did)
        if info.type == "file":
            raise InvalidRequest(f"{did} is a file: it holds nothing to browse.", "Open it.")
        if info.type == "dataset":
            listing = Listing(
                f"Files of {did}",
                lambda: (Entry.of(f) for f in self.lake.files(did)),
                self.page_size,
            )
        else:
            listing = Listing(
                f"Content of {did}",
                lambda: (Entry.of(c) for c in self.lake.contents(did)),
                self.page_size,
            )
        self._show(listing)
        text = str(did)
        if text in self.location:
            self.location = self.location[: self.location.index(text) + 1]
        elif self.location and self.location[0] == did.scope:
            self.location = [*self.location, text]
        else:
            self.location = [did.scope, text]
        return listing

    def search(
        self, text: str, *, type: str = "all", filters: str | list[str] = ""
    ) -> Listing[Any]:
        """DIDs matching ``scope:pattern`` (``*`` wildcards), a type and metadata filters.

        Parameters
        ----------
        text
            ``scope:pattern``; a pattern alone is searched in every scope, in turn.
        type
            One of :data:`TYPES`.
        filters
            ``key=value``, ``key>value``, ``key<=value``, ... (``=``, ``!=``, ``>``, ``>=``,
            ``<``, ``<=``), as a list or one text separated by commas.

        """
        scope, pattern = parse_search(text)
        wanted = parse_filter_text(filters) if isinstance(filters, str) else list(filters)
        if type not in TYPES:
            raise InvalidRequest(f"Unknown type {type!r}.", f"Use one of {', '.join(TYPES)}.")
        scopes = [scope] if scope else self.lake.scopes()
        for s in scopes:  # mistakes are reported now, not when the first page is read
            DID.parse(f"{s}:x")
        if wanted:
            from escape_portal.lake.models import parse_filters

            parse_filters(wanted)

        def produce() -> Iterator[Entry]:
            for s in scopes:
                found = self.lake.dids(s, pattern, type=type, filters=wanted or None)
                yield from (Entry.of(d) for d in found)

        where = f"{scope}:{pattern}" if scope else f"{pattern} in every scope"
        extra = "".join(f", {f}" for f in wanted) + ("" if type == "all" else f", {type}s")
        return self._show(Listing(f"Search {where}{extra}", produce, self.page_size))

    def next_page(self) -> Page[Any]:
        """The next page of the listing shown."""
        if self.listing is None:
            raise InvalidRequest("Nothing is listed yet.", "Search or browse first.")
        return self.listing.next()

    def previous_page(self) -> Page[Any]:
        """The previous page of the listing shown."""
        if self.listing is None:
            raise InvalidRequest("Nothing is listed yet.", "Search or browse first.")
        return self.listing.previous()

    # -- details and actions ----------------------------------------------------------------

    def details(self, did: DID | str) -> Details:
        """Size, file count, metadata, replicas by site with distances, rules with progress."""
        d = as_did(did)
        info = self.lake.info(d)
        metadata = self.lake.metadata(d)
        site = self.near.compute_site
        replicas = [
            ReplicaSite(r, self.near.km(r.site), bool(site) and r.site == site)
            for r in self.lake.dataset_replicas(d)
        ]
        rules = self.lake.rules(d)
        progress = [self.lake.rule_progress(r.id) for r in rules[:DETAILS_MAX_RULES]]
        return Details(
            info,
            metadata,
            replicas,
            progress,
            site,
            more_rules=max(0, len(rules) - DETAILS_MAX_RULES),
            warnings=list(self.near.topology.warnings),
        )

    def make_available(self, did: DID | str) -> Request:
        """Create or reuse the rule that brings ``did`` near the compute (with the why)."""
        return self.near.make_available(did)

    def open(self, did: DID | str) -> Opened:
        """Local paths of ``did``'s files, and a preview of the first FITS file."""
        return open_did(self.lake, self.access, did)

    def close(self) -> None:
        """Let go of the open listing."""
        if self.listing is not None:
            self.listing.close()
