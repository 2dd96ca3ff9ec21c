"""Progress of a make-available request, live in the notebook.

:class:`ProgressModel` turns :class:`~escape_portal.events.ProgressEvent` objects into what
is shown (plain Python, testable without a browser); :class:`ProgressWidget` follows a
rule with an :class:`~escape_portal.events.Watch` and shows the model: files and bytes
done out of total, state, time left, and why a transfer is stuck.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from escape_portal.events import ProgressEvent, Watch
from escape_portal.lake import Lake
from escape_portal.placement import Request
from escape_portal.widgets import markup

CSS_CLASS = "escape-portal-progress"
_BAR_STYLES = {"available": "success", "stuck": "danger", "error": "warning"}


@dataclass(frozen=True)
class ProgressModel:
    """What a progress display shows.

    Attributes
    ----------
    label
        What is being made available (usually the DID).
    state
        ``starting``, ``waiting``, ``replicating``, ``available``, ``stuck`` or ``error``.
    rule_id
        The Rucio rule followed (``None`` when nothing had to move).
    files_done, files_total, bytes_done, bytes_total
        At the destination, out of the total.
    eta_seconds
        Estimated time left, when a rate could be measured.
    stuck_reason
        Rucio's reason, when stuck.
    error
        The last error asking the lake (the watch goes on).

    """

    label: str
    state: str = "starting"
    rule_id: str | None = None
    destination: str | None = None
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    eta_seconds: float | None = None
    stuck_reason: str | None = None
    error: str | None = None

    @classmethod
    def already_available(cls, label: str, where: str | None) -> ProgressModel:
        """Nothing to copy: the data is readable from the compute already."""
        return cls(label, "available", destination=where)

    def updated(self, event: ProgressEvent) -> ProgressModel:
        """The model after ``event``."""
        p = event.progress
        return replace(
            self,
            state=event.state,
            rule_id=event.rule_id,
            destination=p.rule.rse_expression,
            files_done=p.files_done,
            files_total=p.files_total,
            bytes_done=p.bytes_done,
            bytes_total=p.bytes_total,
            eta_seconds=event.eta_seconds,
            stuck_reason=p.stuck_reason,
            error=event.error,
        )

    @property
    def fraction(self) -> float:
        """Done, from 0 to 1 (bytes, else files)."""
        if self.state == "available":
            return 1.0
        if self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        if self.files_total:
            return min(1.0, self.files_done / self.files_total)
        return 0.0

    @property
    def done(self) -> bool:
        """Whether following is over (available or stuck)."""
        return self.state in ("available", "stuck")

    @property
    def bar_style(self) -> str:
        """The ipywidgets bar style of the state."""
        return _BAR_STYLES.get(self.state, "info")

    def describe(self) -> str:
        """One line for the user."""
        where = f" at {self.destination}" if self.destination else ""
        if self.state == "available" and self.rule_id is None:
            return f"{self.label}: available{where}, readable from your compute; nothing to copy."
        counts = (
            f"{self.files_done}/{self.files_total} files, "
            f"{markup.human_bytes(self.bytes_done)} of {markup.human_bytes(self.bytes_total)}"
        )
        line = f"{self.label}: {self.state}{where} — {counts}"
        if self.state == "replicating" and self.eta_seconds is not None:
            line += f", about {markup.duration(self.eta_seconds)} left"
        if self.state == "stuck":
            line += f". Stuck: {self.stuck_reason or 'Rucio gave no reason'}"
        if self.error:
            line += f" (asking the lake failed: {self.error}; still trying)"
        return line


class ProgressWidget(widgets.VBox):  # type: ignore[misc]
    """A progress bar that follows one make-available request until available or stuck.

    Parameters
    ----------
    lake
        The lake the rule lives in.
    rule_id
        The rule to follow; ``None`` shows ``model`` as it is (e.g. already available).
    label
        What is being made available, as shown to the user.
    model
        The starting state (default: ``starting``).
    start
        Start following at once (else call :meth:`start`).
    watch_options
        Passed to :class:`~escape_portal.events.Watch` (``first_interval``, ``timeout``...).

    Notes
    -----
    The watch calls back from its own thread; every update of the widget's traits goes
    through one lock and :meth:`hold_sync`, so that the front end gets whole states.

    """

    def __init__(
        self,
        lake: Lake | None,
        rule_id: str | None,
        *,
        label: str = "",
        model: ProgressModel | None = None,
        start: bool = True,
        **watch_options: Any,
    ) -> None:
        self.model = model or ProgressModel(label or (rule_id or ""), rule_id=rule_id)
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="")
        self.bar.add_class("escape-portal-progress-bar")
        self.status = widgets.HTML()
        self.status.add_class("escape-portal-progress-status")
        super().__init__([self.bar, self.status])
        self.add_class(CSS_CLASS)
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self.watch: Watch | None = None
        self._started = False
        if lake is not None and rule_id is not None:
            self.watch = Watch(
                lake,
                [rule_id],
                on_progress=self.update,
                **watch_options,
            )
        self._show(self.model)
        if self.model.done:
            self._arrived.set()
        if start:
            self.start()

    @classmethod
    def for_request(
        cls,
        lake: Lake | None,
        request: Request,
        *,
        label: str | None = None,
        start: bool = True,
        **watch_options: Any,
    ) -> ProgressWidget:
        """The widget following ``request`` (from :func:`~escape_portal.placement.make_available`).

        A request with no rule (the data is already readable near compute) shows as
        available at once.
        """
        did = label or str(request.placement.did)
        if request.rule is None:
            model = ProgressModel.already_available(did, request.placement.read_from)
            return cls(None, None, label=did, model=model)
        return cls(lake, request.rule.id, label=did, start=start, **watch_options)

    def start(self) -> ProgressWidget:
        """Start following (no-op without a rule, or if already started)."""
        if self.watch is not None and not self._started and not self.model.done:
            self._started = True
            self.watch.start()
        return self

    def stop(self) -> None:
        """Stop following."""
        if self.watch is not None:
            self.watch.stop()

    def update(self, event: ProgressEvent) -> None:
        """Show ``event`` (safe to call from any thread)."""
        with self._lock:
            self.model = self.model.updated(event)
            model = self.model
        self._show(model)
        if model.done:
            self._arrived.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until available or stuck; return whether that happened within ``timeout``."""
        return self._arrived.wait(timeout)

    @property
    def state(self) -> str:
        """The state shown: ``starting``, ``waiting``, ``replicating``, ``available``..."""
        return self.model.state

    def _show(self, model: ProgressModel) -> None:
        with self._lock, self.hold_sync():
            self.bar.value = model.fraction
            self.bar.bar_style = model.bar_style
            self.status.value = (
                f'<div class="escape-portal-progress-{model.state}">'
                f"{markup.text(model.describe())}</div>"
            )
