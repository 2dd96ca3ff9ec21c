"""Follow make-available requests and call back: on progress, when available, when stuck.

A :class:`Watch` polls Rucio in a background thread with backoff — one rule and one
dataset summary per poll, never one request per file — and delivers
:class:`ProgressEvent` objects, with an estimate of the time left from the observed rate::

    watch = when_available(lake, rule.id, lambda event: print("ready:", event.progress))

Rucio can also publish rule notifications on a message broker; the embedded lake runs
none, so polling is what this module does (see the closing notes of issue 4).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from escape_portal.errors import LakeError
from escape_portal.lake import Lake, RuleProgress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """One observation of a request."""

    rule_id: str
    progress: RuleProgress
    eta_seconds: float | None
    error: str | None = None

    @property
    def state(self) -> str:
        """``available``, ``replicating``, ``stuck``, ``waiting``, or ``error``."""
        return "error" if self.error else self.progress.state

    @property
    def done(self) -> bool:  # noqa: D102
        return self.state in ("available", "stuck")


def estimate_seconds_left(samples: list[tuple[float, int]], bytes_total: int) -> float | None:
    """Time left from ``(monotonic time, bytes done)`` samples, at the recent average rate."""
    if len(samples) < 2:
        return None
    (t0, b0), (t1, b1) = samples[0], samples[-1]
    if t1 <= t0 or b1 <= b0:
        return None
    rate = (b1 - b0) / (t1 - t0)
    return max(0.0, (bytes_total - b1) / rate)


Callback = Callable[[ProgressEvent], None]


class Watch:
    """Follow rules in a background thread until each is available or stuck.

    Parameters
    ----------
    lake
        The lake.
    rule_ids
        The rules to follow.
    on_progress
        Called whenever a rule's files, bytes or state change.
    on_available, on_stuck
        Called once per rule when it becomes available, or stuck (with Rucio's reason).
    first_interval, max_interval
        Polling starts every ``first_interval`` seconds and backs off (doubling) while
        nothing changes, up to ``max_interval``.
    timeout
        Give up after this many seconds.
    """

    def __init__(
        self,
        lake: Lake,
        rule_ids: Iterable[str],
        *,
        on_progress: Callback | None = None,
        on_available: Callback | None = None,
        on_stuck: Callback | None = None,
        first_interval: float = 1.0,
        max_interval: float = 30.0,
        timeout: float = 24 * 3600.0,
    ) -> None:
        self.lake = lake
        self.rule_ids = list(rule_ids)
        self.on_progress = on_progress
        self.on_available = on_available
        self.on_stuck = on_stuck
        self.first_interval = first_interval
        self.max_interval = max_interval
        self.timeout = timeout
        self.latest: dict[str, ProgressEvent] = {}
        self._samples: dict[str, list[tuple[float, int]]] = {r: [] for r in self.rule_ids}
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="escape-portal-watch", daemon=True)

    def start(self) -> Watch:
        """Start following; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following (callbacks stop)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every rule is done (or the watch ended); return whether it finished."""
        return self._finished.wait(timeout)

    def poll_once(self) -> list[ProgressEvent]:
        """Observe every rule not yet done once; deliver callbacks; return what changed."""
        changed = []
        for rule_id in self.rule_ids:
            previous = self.latest.get(rule_id)
            if previous is not None and previous.done:
                continue
            event = self._observe(rule_id, previous)
            if previous is None or _key(previous) != _key(event):
                changed.append(event)
                self.latest[rule_id] = event
                self._deliver(event)
        return changed

    def _observe(self, rule_id: str, previous: ProgressEvent | None) -> ProgressEvent:
        try:
            progress = self.lake.rule_progress(rule_id)
        except LakeError as exc:
            if previous is None:
                raise
            return ProgressEvent(rule_id, previous.progress, None, error=str(exc))
        samples = self._samples[rule_id]
        samples.append((time.monotonic(), progress.bytes_done))
        del samples[:-10]  # the recent rate
        return ProgressEvent(
            rule_id, progress, estimate_seconds_left(samples, progress.bytes_total)
        )

    def _deliver(self, event: ProgressEvent) -> None:
        callbacks = [self.on_progress]
        if event.state == "available":
            callbacks.append(self.on_available)
        elif event.state == "stuck":
            callbacks.append(self.on_stuck)
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback(event)
            except Exception:  # a user's callback must not end the watch
                log.exception("escape-portal: a progress callback failed")

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        interval = self.first_interval
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                changed = self.poll_once()
                if all(e.done for e in self.latest.values()) and len(self.latest) == len(
                    self.rule_ids
                ):
                    return
                interval = self.first_interval if changed else min(self.max_interval, interval * 2)
                self._stop.wait(interval)
        except LakeError:
            log.exception("escape-portal: following rules %s failed", self.rule_ids)
        finally:
            self._finished.set()


def _key(event: ProgressEvent) -> tuple[object, ...]:
    p = event.progress
    return (event.state, p.files_done, p.bytes_done, p.stuck_reason)


def when_available(lake: Lake, rule_id: str, callback: Callback, **kwargs: object) -> Watch:
    """Run ``callback`` when the rule's data is available (in a background thread)."""
    return Watch(lake, [rule_id], on_available=callback, **kwargs).start()  # type: ignore[arg-type]


def wait_for(
    lake: Lake,
    rule_id: str,
    *,
    timeout: float = 3600.0,
    on_progress: Callback | None = None,
    first_interval: float = 1.0,
    max_interval: float = 30.0,
) -> RuleProgress:
    """Block until the rule is available or stuck, or ``timeout`` passes; its last progress."""
    watch = Watch(
        lake,
        [rule_id],
        on_progress=on_progress,
        first_interval=first_interval,
        max_interval=max_interval,
        timeout=timeout,
    ).start()
    watch.wait(timeout + max_interval + 5)
    watch.stop()
    latest = watch.latest.get(rule_id)
    if latest is None or latest.error:
        return lake.rule_progress(rule_id)
    return latest.progress
