"""``VOSearch``: search the Virtual Observatory, see the results on the sky, use lake rows.

Standard ipywidgets controls, generated HTML and SVG only (no lab extension, nothing
fetched at run time): runs in JupyterLab, Notebook 7 and Voila. Searches run off the
kernel's thread, so the notebook stays responsive while services answer.
"""

from __future__ import annotations

from typing import Any, TypeVar

import ipywidgets as widgets  # type: ignore[import-untyped]

from escape_portal.access import Access
from escape_portal.discovery import PRODUCT_TYPES, Query, Service
from escape_portal.errors import InvalidRequest
from escape_portal.lake import Lake
from escape_portal.widgets import markup
from escape_portal.widgets.actions import Opened, opened_html
from escape_portal.widgets.panel import BackgroundPanel
from escape_portal.widgets.vo import COLUMNS, VOForm, VOResults, VOSearchModel

CSS_CLASS = "escape-portal-vo-search"
T = TypeVar("T")


def _with_class(widget: Any, css: str) -> Any:
    widget.add_class(css)
    return widget


class VOSearch(BackgroundPanel):
    """Search many VO services at once; rows that are lake files can be brought near and opened.

    Parameters
    ----------
    lake
        The lake rows are linked to (default: ``Lake.from_instance()``); ``None`` with
        ``link=False`` searches without linking.
    registry_url, resolver_url
        Override the registry (default: ``$IVOA_REGISTRY``, else the lake's
        ``vo_url + '/tap'``) and the name resolver (the lake's ``vo_url + '/resolve'``).
    timeout
        Seconds for each registry search, name resolution and search.
    access
        Reading files (default: ``Access(lake)``).
    start
        Ask the registry for services at once.
    inline
        Run calls in the calling thread (tests, scripts) instead of a worker.
    watch_options
        Passed to each :class:`~escape_portal.events.Watch` following a request.

    Examples
    --------
    >>> from escape_portal.widgets import VOSearch
    >>> vo = VOSearch()  # doctest: +SKIP
    >>> vo.run(name="Crab", radius=1.0)  # doctest: +SKIP

    """

    def __init__(
        self,
        lake: Lake | None = None,
        *,
        link: bool = True,
        registry_url: str | None = None,
        resolver_url: str | None = None,
        timeout: float = 30.0,
        access: Access | None = None,
        compute_site: str | None = None,
        start: bool = True,
        inline: bool = False,
        watch_options: dict[str, Any] | None = None,
    ) -> None:
        self.lake = lake if lake is not None or not link else Lake.from_instance()
        self.model = VOSearchModel(
            self.lake,
            registry_url=registry_url,
            resolver_url=resolver_url,
            timeout=timeout,
            access=access,
            compute_site=compute_site,
        )
        self._setup(inline=inline, watch_options=watch_options)
        self.last_opened: Opened | None = None

        def text(description: str, placeholder: str, css: str) -> Any:
            return _with_class(widgets.Text(description=description, placeholder=placeholder), css)

        self.name = text("Object", "e.g. Crab", "escape-portal-vo-name")
        self.pos = text("Position", "RA Dec (deg), e.g. 83.6331 22.0145", "escape-portal-vo-pos")
        self.radius = _with_class(
            widgets.BoundedFloatText(value=0.5, min=1e-6, max=180.0, description="Radius (°)"),
            "escape-portal-vo-radius",
        )
        self.time = text("Time", "MJD from..to, e.g. 60300..60310", "escape-portal-vo-time")
        self.band = text("Band", "metres from..to, e.g. 1e-7..1e-6", "escape-portal-vo-band")
        self.collection = text("Collection", "e.g. crab-2024", "escape-portal-vo-collection")
        self.product = _with_class(
            widgets.Dropdown(
                options=[("any", ""), *[(p, p) for p in PRODUCT_TYPES]],
                value="",
                description="Product",
            ),
            "escape-portal-vo-product",
        )
        self.keywords = text(
            "Keywords", "registry keywords (optional)", "escape-portal-vo-keywords"
        )
        self.find_button = _with_class(
            widgets.Button(description="Find services", icon="list"), "escape-portal-vo-find"
        )
        self.service_boxes = _with_class(widgets.VBox([]), "escape-portal-vo-services")
        self.search_button = _with_class(
            widgets.Button(description="Search", icon="search", button_style="primary"),
            "escape-portal-vo-search-button",
        )
        self.statuses = _with_class(widgets.HTML(), "escape-portal-vo-statuses")
        self.table = _with_class(
            widgets.HTML(layout=widgets.Layout(max_height="360px", overflow="auto")),
            "escape-portal-vo-results",
        )
        self.sky = _with_class(widgets.HTML(), "escape-portal-vo-sky")
        self.linked = _with_class(
            widgets.Dropdown(
                options=[], description="Lake row", layout=widgets.Layout(width="60%")
            ),
            "escape-portal-vo-linked",
        )
        self.make_available_button = _with_class(
            widgets.Button(
                description="Make available near compute",
                icon="cloud-download",
                layout=widgets.Layout(width="auto"),
            ),
            "escape-portal-make-available",
        )
        self.open_button = _with_class(
            widgets.Button(description="Open", icon="file"), "escape-portal-open"
        )
        self.opened = _with_class(widgets.HTML(), "escape-portal-open-pane")

        registry = self.model.registry_url or "none configured"
        super().__init__(
            [
                widgets.HTML(markup.STYLE),
                widgets.HTML(
                    "<b>Search the Virtual Observatory</b> "
                    f'<span class="escape-portal-muted">(registry {markup.text(registry)}; '
                    "rows that are lake files are marked and can be made available)</span>"
                ),
                widgets.HBox([self.name, self.pos, self.radius]),
                widgets.HBox([self.time, self.band]),
                widgets.HBox([self.collection, self.product]),
                widgets.HBox([self.keywords, self.find_button]),
                self.service_boxes,
                self.search_button,
                self.status,
                self.statuses,
                widgets.HBox([self.table, self.sky]),
                widgets.HBox([self.linked, self.make_available_button, self.open_button]),
                self.placement,
                self.progress,
                self.opened,
            ]
        )
        self.add_class(CSS_CLASS)
        self.find_button.on_click(lambda _: self.find_services())
        self.search_button.on_click(lambda _: self.run())
        self.make_available_button.on_click(lambda _: self.make_available())
        self.open_button.on_click(lambda _: self.open_data())
        self._refresh_buttons()
        if start and self.model.registry_url:
            self.find_services()

    # -- plumbing ------------------------------------------------------------------------

    def _refresh_buttons(self) -> None:
        enabled = bool(self.linked.options) and self.lake is not None
        self.make_available_button.disabled = not enabled
        self.open_button.disabled = not enabled

    # -- services ------------------------------------------------------------------------

    def find_services(self, keywords: str | None = None) -> None:
        """Ask the registry for services (optionally matching ``keywords``); all checked."""
        if keywords is not None:
            self.keywords.value = keywords
        words = str(self.keywords.value)
        self._run(
            "Asking the registry for services...",
            lambda: self.model.find_services(words),
            self._show_services,
        )

    def _show_services(self, services: list[Service]) -> None:
        boxes = [
            _with_class(
                widgets.Checkbox(
                    value=True,
                    description=f"{s.name} ({s.kind}) {s.url}",
                    indent=False,
                    layout=widgets.Layout(width="auto"),
                ),
                "escape-portal-vo-service",
            )
            for s in services
        ]
        with self._ui():
            self.service_boxes.children = boxes or [
                widgets.HTML(markup.muted("The registry lists no service to ask."))
            ]

    @property
    def selected_services(self) -> list[Service]:
        """The services checked."""
        boxes = [b for b in self.service_boxes.children if isinstance(b, widgets.Checkbox)]
        return [s for s, b in zip(self.model.services, boxes, strict=False) if b.value]

    # -- search --------------------------------------------------------------------------

    @property
    def form(self) -> VOForm:
        """The form as typed."""
        return VOForm(
            name=str(self.name.value),
            pos=str(self.pos.value),
            radius=float(self.radius.value),
            time=str(self.time.value),
            band=str(self.band.value),
            collection=str(self.collection.value),
            product=str(self.product.value or ""),
        )

    def run(self, **form: Any) -> None:
        """Search with the form (fields given here are filled in first), in the background.

        Keywords are the form's: ``name``, ``pos``, ``radius``, ``time``, ``band``,
        ``collection``, ``product``.
        """
        controls = {
            "name": self.name,
            "pos": self.pos,
            "radius": self.radius,
            "time": self.time,
            "band": self.band,
            "collection": self.collection,
            "product": self.product,
        }
        unknown = set(form) - set(controls)
        if unknown:
            self._failed(InvalidRequest(f"Unknown form field(s): {', '.join(sorted(unknown))}."))
            return
        with self._ui():
            for key, value in form.items():
                controls[key].value = value
        current = self.form

        def work() -> VOResults:
            services = self.selected_services
            if not services:
                raise InvalidRequest(
                    "No service is selected.", "Find services and check at least one."
                )
            query: Query = self.model.query(current)
            with self._ui():
                self.statuses.value = markup.table(
                    [(s.name, s.kind, "asking...", "", "", "") for s in services],
                    ["service", "kind", "state", "rows", "seconds", "message"],
                )
                if query.ra is not None and query.dec is not None:
                    self.status.value = markup.muted(
                        f"Searching {len(services)} services around RA {query.ra:.4f}, "
                        f"Dec {query.dec:.4f}..."
                    )
            return self.model.search(query, services)

        with self._ui():
            self.table.value = ""
            self.sky.value = ""
        self._run("Searching...", work, self._show_results)

    def _show_results(self, results: VOResults) -> None:
        statuses = markup.table(
            [
                (s.service.name, s.service.kind, s.state, s.rows, f"{s.seconds:.2f}", s.message)
                for s in results.result.statuses
            ],
            ["service", "kind", "state", "rows", "seconds", "message"],
        )
        shown = [c for c in COLUMNS if any(c in r for r in results.rows)]
        rows = [
            [
                i,
                "lake" if r.get("lake_did") else "",
                *(_cell(r.get(c)) for c in shown),
                r.get("lake_did") or "",
                r.get("lake_sites") or "",
            ]
            for i, r in enumerate(results.rows)
        ]
        linked = results.linked
        summary = (
            f"{len(results.rows)} rows, {len(linked)} of them lake data "
            "(marked 'lake': make available and open work on them)."
        )
        table = markup.muted(summary) + markup.table(
            rows,
            ["#", "", *shown, "lake DID", "storage (site)"],
            css="escape-portal-vo-table",
            row_classes=["escape-portal-linked" if r.get("lake_did") else "" for r in results.rows],
        )
        options = [(f"#{i} {results.rows[i]['lake_did']}", i) for i in linked]
        with self._ui():
            self.status.value = ""  # "Searching N services..." is answered by the table
            self.statuses.value = statuses + markup.warnings(results.warnings)
            self.table.value = table
            self.sky.value = results.sky()
            self.linked.options = options
            self.linked.value = options[0][1] if options else None
            self._refresh_buttons()

    @property
    def results(self) -> VOResults | None:
        """What the last search found."""
        return self.model.results

    # -- actions on linked rows ----------------------------------------------------------

    def _row(self, row: int | None) -> int | None:
        if row is not None:
            return row
        if self.linked.value is None:
            self._failed(InvalidRequest("No lake row is selected.", "Search, then pick a row."))
            return None
        return int(self.linked.value)

    def make_available(self, row: int | None = None) -> None:
        """Bring a linked row's data (default: the one picked) near the compute."""
        index = self._row(row)
        if index is None:
            return
        self._run(
            f"Making row {index} available near compute...",
            lambda: self.model.make_available(index),
            self._follow,
        )

    def open_data(self, row: int | None = None) -> None:
        """Local paths of a linked row's files (default: the one picked), with a preview."""
        index = self._row(row)
        if index is None:
            return

        def done(opened: Opened) -> None:
            with self._ui():
                self.opened.value = opened_html(opened)
            self.last_opened = opened

        self._run(f"Opening row {index}...", lambda: self.model.open(index), done)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
