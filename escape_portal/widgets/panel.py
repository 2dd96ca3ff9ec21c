"""What the lake browser and the VO search share.

Lake calls in a worker thread, one status line, and the make-available requests they
follow.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import ipywidgets as widgets  # type: ignore[import-untyped]

from escape_portal.errors import LakeError
from escape_portal.lake import Lake
from escape_portal.placement import Request
from escape_portal.widgets import markup
from escape_portal.widgets.actions import placement_html
from escape_portal.widgets.background import Background
from escape_portal.widgets.progress import ProgressWidget

T = TypeVar("T")


class BackgroundPanel(widgets.VBox):  # type: ignore[misc]
    """A VBox whose lake calls run off the kernel's main thread.

    Subclasses call :meth:`_setup` first in their ``__init__`` (it makes ``status``,
    ``placement`` and ``progress``, to be laid out by them), then ``super().__init__``
    with their children.
    """

    lake: Lake | None

    def _setup(self, *, inline: bool, watch_options: dict[str, Any] | None) -> None:
        self.background = Background(inline=inline)
        self.watch_options = watch_options or {}
        self._lock = threading.RLock()
        self.requests: list[ProgressWidget] = []
        self.status = widgets.HTML()
        self.status.add_class("escape-portal-status")
        self.placement = widgets.HTML()
        self.placement.add_class("escape-portal-placement-pane")
        self.progress = widgets.VBox([])
        self.progress.add_class("escape-portal-requests")

    @contextlib.contextmanager
    def _ui(self) -> Iterator[None]:
        """Update traits from any thread: one at a time, sent to the front end together."""
        with self._lock, self.hold_sync():
            yield

    def _run(self, what: str, work: Callable[[], T], done: Callable[[T], object]) -> None:
        """Say ``what`` is being done, do ``work`` in the worker, then ``done(result)``."""
        with self._ui():
            self.status.value = markup.muted(what)

        def finished(result: T) -> None:
            done(result)
            with self._ui():
                if self.status.value == markup.muted(what):
                    self.status.value = ""

        self.background.submit(work, finished, self._failed)

    def _failed(self, exc: LakeError) -> None:
        with self._ui():
            self.status.value = markup.error(exc)

    def _follow(self, request: Request, label: str | None = None) -> ProgressWidget:
        """Show where ``request`` brings the data and why, and follow it to available."""
        widget = ProgressWidget.for_request(
            self.lake, request, label=label, start=False, **self.watch_options
        )
        with self._ui():
            self.placement.value = placement_html(request.placement, request)
            self.requests.append(widget)
            self.progress.children = [*self.progress.children, widget]
        widget.start()
        return widget

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the calls asked for so far are answered and shown."""
        return self.background.wait(timeout)

    @property
    def error(self) -> str:
        """The error shown (HTML), or ``""``."""
        value = str(self.status.value)
        return value if "escape-portal-error" in value else ""

    def close(self) -> None:
        """Stop following requests and the worker, and close the widget."""
        # Also called by ipywidgets' __del__, possibly on an object whose __init__ failed.
        for widget in getattr(self, "requests", []):
            widget.stop()
        if hasattr(self, "background"):
            self.background.close()
        super().close()
