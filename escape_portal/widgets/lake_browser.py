"""``LakeBrowser``: search and browse the data lake, see where data is, bring it near, open it.

Standard ipywidgets controls and generated HTML only: it needs no lab extension and
runs in JupyterLab, Notebook 7 and Voila. Every call to the lake runs off the kernel's
thread (:class:`~escape_portal.widgets.background.Background`), through
:class:`~escape_portal.widgets.browser.BrowserModel`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import ipywidgets as widgets  # type: ignore[import-untyped]

from escape_portal.access import Access
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, Lake
from escape_portal.widgets import markup
from escape_portal.widgets.actions import Opened, opened_html
from escape_portal.widgets.browser import TYPES, BrowserModel, Details, Entry, Listing
from escape_portal.widgets.panel import BackgroundPanel

CSS_CLASS = "escape-portal-lake-browser"
T = TypeVar("T")


def _button(description: str, css: str, **kwargs: Any) -> Any:
    button = widgets.Button(description=description, **kwargs)
    button.add_class(css)
    return button


class LakeBrowser(BackgroundPanel):
    """Search and browse the data lake; details, make available near compute, open.

    Parameters
    ----------
    lake
        The lake (default: ``Lake.from_instance()``, the configured instance or the
        embedded lake).
    access
        Reading files (default: ``Access(lake)``).
    page_size
        Items per page.
    compute_site
        The compute site (default: configured, else detected).
    start
        Browse to the scopes at once.
    inline
        Run lake calls in the calling thread (tests, scripts) instead of a worker.
    watch_options
        Passed to each :class:`~escape_portal.events.Watch` following a request.

    Examples
    --------
    >>> from escape_portal.widgets import LakeBrowser
    >>> browser = LakeBrowser()
    >>> browser  # doctest: +SKIP
    >>> browser.search("cta:crab*", type="dataset", filters="target=Crab")  # doctest: +SKIP

    """

    lake: Lake

    def __init__(
        self,
        lake: Lake | None = None,
        *,
        access: Access | None = None,
        page_size: int = 100,
        compute_site: str | None = None,
        start: bool = True,
        inline: bool = False,
        watch_options: dict[str, Any] | None = None,
    ) -> None:
        self.lake = lake or Lake.from_instance()
        self.model = BrowserModel(
            self.lake, access=access, page_size=page_size, compute_site=compute_site
        )
        self._setup(inline=inline, watch_options=watch_options)
        self._quiet = False
        self._wanted: str | None = None
        self.selected: Entry | None = None
        self.last_opened: Opened | None = None

        self.header = widgets.HTML(self._header_html())
        self.query = widgets.Text(placeholder="scope:pattern, e.g. cta:crab*", description="Search")
        self.query.add_class("escape-portal-search-text")
        self.type = widgets.Dropdown(options=list(TYPES), value="all", description="Type")
        self.type.add_class("escape-portal-search-type")
        self.filters = widgets.Text(placeholder="target=Crab, ra>80", description="Metadata")
        self.filters.add_class("escape-portal-search-filters")
        self.search_button = _button("Search", "escape-portal-search-button", icon="search")
        self.breadcrumb = widgets.HBox([])
        self.breadcrumb.add_class("escape-portal-breadcrumb")
        self.title = widgets.HTML()
        self.title.add_class("escape-portal-listing-title")
        self.items = widgets.Select(options=[], rows=14, layout=widgets.Layout(width="100%"))
        self.items.add_class("escape-portal-listing")
        self.previous_button = _button("Previous", "escape-portal-previous-page", icon="arrow-left")
        self.next_button = _button("Next page", "escape-portal-next-page", icon="arrow-right")
        self.page_label = widgets.HTML()
        self.page_label.add_class("escape-portal-page")
        self.browse_button = _button("Browse into", "escape-portal-browse", icon="folder-open")
        self.make_available_button = _button(
            "Make available near compute",
            "escape-portal-make-available",
            icon="cloud-download",
            layout=widgets.Layout(width="auto"),
        )
        self.open_button = _button("Open", "escape-portal-open", icon="file")
        self.details = widgets.HTML()
        self.details.add_class("escape-portal-details")
        self.opened = widgets.HTML()
        self.opened.add_class("escape-portal-open-pane")

        left = widgets.VBox(
            [
                self.breadcrumb,
                self.title,
                self.items,
                widgets.HBox([self.previous_button, self.page_label, self.next_button]),
            ],
            layout=widgets.Layout(width="45%"),
        )
        right = widgets.VBox(
            [
                widgets.HBox([self.browse_button, self.make_available_button, self.open_button]),
                self.details,
                self.placement,
                self.progress,
                self.opened,
            ],
            layout=widgets.Layout(width="55%", padding="0 0 0 12px"),
        )
        super().__init__(
            [
                widgets.HTML(markup.STYLE),
                self.header,
                widgets.HBox([self.query, self.type, self.filters, self.search_button]),
                self.status,
                widgets.HBox([left, right]),
            ]
        )
        self.add_class(CSS_CLASS)

        self.search_button.on_click(lambda _: self.search())
        self.query.continuous_update = False
        self.query.observe(lambda _: self.search(), names="value")
        self.next_button.on_click(lambda _: self.next_page())
        self.previous_button.on_click(lambda _: self.previous_page())
        self.browse_button.on_click(lambda _: self.browse_into())
        self.make_available_button.on_click(lambda _: self.make_available())
        self.open_button.on_click(lambda _: self.open_data())
        self.items.observe(self._on_select, names="value")
        self._refresh_buttons()
        if start:
            self.go(None)

    # -- plumbing ------------------------------------------------------------------------

    def _header_html(self) -> str:
        config = self.lake.config
        site = self.model.near.compute_site or "unknown (set ESCAPE_COMPUTE_SITE)"
        return (
            f"<b>ESCAPE data lake</b> {markup.text(config.name)} "
            f'<span class="escape-portal-muted">({markup.text(config.rucio_host)}; '
            f"compute site {markup.text(site)})</span>"
        )

    # -- listings ------------------------------------------------------------------------

    def _show_listing(self, listing: Listing[Any]) -> None:
        page = listing.page
        start = listing.offset
        options = [(self._label(start + i, entry), i) for i, entry in enumerate(page.items)]
        with self._ui():
            self._quiet = True
            try:
                self.items.options = options
                self.items.value = None
            finally:
                self._quiet = False
            self.selected = None
            self.title.value = f"<b>{markup.text(listing.title)}</b>"
            if page.items:
                more = ", more on the next page" if page.next_cursor else ""
                self.page_label.value = (
                    f"{start + 1} to {start + len(page.items)}{markup.text(more)}"
                )
            else:
                self.page_label.value = markup.muted("nothing found")
            self._show_breadcrumb()
            self._refresh_buttons()

    @staticmethod
    def _label(number: int, entry: Entry) -> str:
        size = "" if entry.bytes is None else f"  {markup.human_bytes(entry.bytes)}"
        files = "" if entry.files is None else f"  {entry.files} files"
        return f"{entry.did}  [{entry.type}]{files}{size}"

    def _show_breadcrumb(self) -> None:
        crumbs = [_button("Scopes", "escape-portal-crumb", layout=widgets.Layout(width="auto"))]
        crumbs[0].on_click(lambda _: self.go(None))
        for target in self.model.location:
            crumb = _button(target, "escape-portal-crumb", layout=widgets.Layout(width="auto"))
            crumb.on_click(lambda _, t=target: self.go(t))
            crumbs.append(crumb)
        self.breadcrumb.children = crumbs

    def _refresh_buttons(self) -> None:
        listing = self.model.listing
        entry = self.selected
        self.next_button.disabled = listing is None or not listing.has_next
        self.previous_button.disabled = listing is None or not listing.has_previous
        self.browse_button.disabled = entry is None or not entry.browsable
        actionable = entry is not None and entry.type != "scope"
        self.make_available_button.disabled = not actionable
        self.open_button.disabled = not actionable

    def go(self, target: str | None) -> None:
        """Browse to the scopes (``None``), a scope, or a container or dataset."""
        self._run(
            f"Listing {target or 'scopes'}...",
            lambda: self.model.go(target),
            self._show_listing,
        )

    def search(
        self, text: str | None = None, *, type: str | None = None, filters: str | None = None
    ) -> None:
        """Search ``scope:pattern`` with a type and metadata filters.

        Without ``text`` the form is searched as it is; with it, the form is filled in
        (type ``all`` and no filters unless given) and searched.
        """
        if text is not None:
            type = type or "all"
            filters = filters or ""
        with self._ui():
            self._quiet = True
            try:
                if text is not None:
                    self.query.value = text
                if type is not None:
                    self.type.value = type
                if filters is not None:
                    self.filters.value = filters
            finally:
                self._quiet = False
        query, kind, wanted = self.query.value, self.type.value, self.filters.value
        if self._quiet or not query.strip():
            return
        self._run(
            f"Searching {query}...",
            lambda: self.model.search(query, type=kind, filters=wanted),
            self._show_listing,
        )

    def next_page(self) -> None:
        """Show the next page of the listing."""

        def work() -> Listing[Any]:
            self.model.next_page()
            assert self.model.listing is not None
            return self.model.listing

        self._run("Reading the next page...", work, self._show_listing)

    def previous_page(self) -> None:
        """Show the previous page of the listing."""

        def work() -> Listing[Any]:
            self.model.previous_page()
            assert self.model.listing is not None
            return self.model.listing

        self._run("", work, self._show_listing)

    def browse_into(self, target: str | None = None) -> None:
        """Browse into the selected scope, container or dataset (or ``target``)."""
        if target is None:
            if self.selected is None:
                self._failed(InvalidRequest("Nothing is selected.", "Pick an entry first."))
                return
            target = self.selected.did
        self.go(target)

    # -- selection and details -----------------------------------------------------------

    @property
    def entries(self) -> list[Entry]:
        """The entries of the page shown."""
        listing = self.model.listing
        return list(listing.page.items) if listing is not None else []

    def select(self, item: int | str) -> None:
        """Select an entry of the page shown by position or DID, and show its details."""
        entries = self.entries
        if isinstance(item, str):
            found = [i for i, e in enumerate(entries) if e.did == item]
            if not found:
                self._failed(InvalidRequest(f"{item} is not on this page."))
                return
            item = found[0]
        self.items.value = item  # the observer shows the details

    def _on_select(self, change: dict[str, Any]) -> None:
        if self._quiet or change["new"] is None:
            return
        entries = self.entries
        index = int(change["new"])
        if not 0 <= index < len(entries):
            return
        entry = entries[index]
        with self._ui():
            self.selected = entry
            self._refresh_buttons()
            self.placement.value = ""
            self.opened.value = ""
        if entry.type == "scope":
            with self._ui():
                self.details.value = (
                    f"<b>Scope {markup.text(entry.scope)}</b>: browse into it, or search "
                    f"<code>{markup.text(entry.scope)}:*</code>."
                )
            return
        self.show_details(entry.did)

    def show_details(self, did: str) -> None:
        """Show size, file count, replicas by site and distance, and rules of ``did``."""
        self._wanted = did

        def work() -> Details | None:
            if self._wanted != did:  # another entry was selected meanwhile
                return None
            return self.model.details(did)

        def done(details: Details | None) -> None:
            if details is not None and self._wanted == did:
                with self._ui():
                    self.details.value = details_html(details)

        with self._ui():
            self.details.value = markup.muted(f"Reading {did}...")
        self._run(f"Reading {did}...", work, done)

    # -- actions -------------------------------------------------------------------------

    def _target(self, did: str | None) -> str | None:
        if did is not None:
            return did
        if self.selected is None or self.selected.type == "scope":
            self._failed(InvalidRequest("No DID is selected.", "Pick a dataset or file first."))
            return None
        return self.selected.did

    def make_available(self, did: str | None = None) -> None:
        """Bring the selected DID (or ``did``) near the compute; show where, why, progress."""
        target = self._target(did)
        if target is None:
            return
        with self._ui():
            self.placement.value = markup.muted(f"Deciding where {target} goes...")
        self._run(
            f"Making {target} available near compute...",
            lambda: self.model.make_available(target),
            lambda request: self._follow(request, label=target),
        )

    def open_data(self, did: str | None = None) -> None:
        """Local paths of the selected DID's files (or ``did``'s), with a FITS preview."""
        target = self._target(did)
        if target is None:
            return
        with self._ui():
            self.opened.value = markup.muted(f"Opening {target}...")

        def done(opened: Opened) -> None:
            with self._ui():
                self.opened.value = opened_html(opened)
            self.last_opened = opened

        self._run(f"Opening {target}...", lambda: self.model.open(target), done)

    def close(self) -> None:
        """Stop following requests, let go of the listing and the worker, close the widget."""
        if hasattr(self, "model"):  # not there if __init__ failed early
            self.model.close()
        super().close()


def details_html(details: Details) -> str:
    """The details pane: size, files, replicas by site with distance, rules with progress."""
    info = details.info
    did = DID(info.scope, info.name)
    size = markup.human_bytes(info.bytes)
    files = (
        "" if info.type == "file" else f", {info.length if info.length is not None else '?'} files"
    )
    parts = [f"<div><b>{markup.text(did)}</b> ({markup.text(info.type)}, {size}{files})</div>"]
    site = details.compute_site or "unknown"
    if details.replicas:
        rows = [
            (
                r.replica.rse,
                r.replica.site,
                "here" if r.at_compute else ("?" if r.km is None else f"{r.km:.0f} km"),
                f"{r.replica.available_files}/{r.replica.total_files}",
                f"{markup.human_bytes(r.replica.available_bytes)} / "
                f"{markup.human_bytes(r.replica.total_bytes)}",
                r.replica.state,
            )
            for r in details.replicas
        ]
        parts.append(f"<div>Replicas (distance from the compute site {markup.text(site)}):</div>")
        parts.append(
            markup.table(
                rows,
                ["storage", "site", "distance", "files", "bytes", "state"],
                css="escape-portal-replicas",
            )
        )
    else:
        parts.append(markup.muted(f"{did} has no replicas."))
    if details.rules:
        rule_rows = [
            (
                p.rule.id[:8],
                p.rule.rse_expression,
                p.rule.account,
                p.state,
                f"{p.files_done}/{p.files_total}",
                f"{100 * p.fraction:.0f}%",
                p.rule.expires_at.date().isoformat() if p.rule.expires_at else "never",
                p.stuck_reason or "",
            )
            for p in details.rules
        ]
        parts.append("<div>Rules:</div>")
        parts.append(
            markup.table(
                rule_rows,
                ["rule", "to", "account", "state", "files", "done", "expires", "why stuck"],
                css="escape-portal-rules",
            )
        )
        if details.more_rules:
            parts.append(markup.muted(f"... and {details.more_rules} more rules."))
    hidden = {"scope", "name", "did_type", "bytes", "length"}
    meta = [(k, v) for k, v in sorted(details.metadata.items()) if k not in hidden]
    if meta:
        body = markup.table(meta, ["key", "value"], css="escape-portal-metadata")
        parts.append(f"<details><summary>Metadata ({len(meta)})</summary>{body}</details>")
    parts.append(markup.warnings(details.warnings))
    return "".join(parts)
