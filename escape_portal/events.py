"""Follow make-available requests and call back: on progress, when available, when stuck.

A :class:`Watch` polls Rucio in a background thread with backoff — one rule and one
dataset summary per poll, never one request per file — and delivers
:class:`ProgressEvent` objects, with an estimate of the time left from the observed rate::

    watch = when_available(lake, rule.id, lambda event: print("ready:", event.progress))

Where the instance has a message broker (``broker`` in its configuration; the embedded
lake runs one), the watch follows Rucio's notifications instead: it asks Rucio for a
rule's progress when a notification concerns the rule (``RULE_OK``, ``RULE_PROGRESS``,
transfers queued/done/failed into its storage), and otherwise only every
``fallback_interval`` seconds as a safety net. If the broker cannot be reached, or the
connection drops, it polls with backoff as without one, and says so in ``warnings``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from escape_portal.errors import LakeError, LakeUnavailable
from escape_portal.lake import Lake, RuleProgress
from escape_portal.notifications import Notification, Subscription, follow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressEvent:
    """One observation of a request."""

    rule_id: str
    progress: RuleProgress
    eta_seconds: float | None
    error: str | None = None
    #: What prompted this observation: ``start``, ``poll`` (timer) or ``notification``.
    trigger: str = "poll"

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
#: Seconds between two observations prompted by transfers into a rule's storage that do
#: not name the rule.
RSE_HINT_GAP = 5.0


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
    notifications
        Follow Rucio's notifications on the instance's broker: ``None`` (default) when one
        is configured, ``False`` never, or a started :class:`Subscription` to share.
    fallback_interval
        While notifications arrive, ask Rucio anyway after this many quiet seconds.
    min_gap
        Seconds between two observations prompted by notifications (a burst of transfer
        events costs one request).
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
        notifications: Subscription | bool | None = None,
        fallback_interval: float = 120.0,
        min_gap: float = 1.0,
    ) -> None:
        self.lake = lake
        self.rule_ids = list(rule_ids)
        self.on_progress = on_progress
        self.on_available = on_available
        self.on_stuck = on_stuck
        self.first_interval = first_interval
        self.max_interval = max_interval
        self.timeout = timeout
        self.fallback_interval = fallback_interval
        self.min_gap = min_gap
        self.warnings: list[str] = []
        #: Requests made to Rucio (one per rule observation).
        self.polls = 0
        #: Notifications that concerned these rules.
        self.notified = 0
        self._notifications = notifications
        self._subscription: Subscription | None = None
        self._owns_subscription = False
        self._targets: dict[str, set[str]] = {}
        self._wake = threading.Event()
        self._last_rse_hint = 0.0
        self.latest: dict[str, ProgressEvent] = {}
        self._samples: dict[str, list[tuple[float, int]]] = {r: [] for r in self.rule_ids}
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="escape-portal-watch", daemon=True)

    def start(self) -> Watch:
        """Start following; returns ``self``."""
        self._subscribe()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following (callbacks stop)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._unsubscribe()

    @property
    def following_notifications(self) -> bool:
        """Whether updates currently come from the broker (else from polling)."""
        return self._subscription is not None and self._subscription.connected

    def _subscribe(self) -> None:
        self._subscription, self._owns_subscription, error = follow(
            self.lake.config, self._notifications
        )
        if error is not None:
            self.warnings.append(str(error))
            log.warning("escape-portal: %s", error)
        if self._subscription is None:
            return
        self._subscription.add_listener(self._on_notification)
        self._subscription.add_disconnect_listener(self._wake.set)

    def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        subscription.remove_listener(self._on_notification)
        subscription.remove_disconnect_listener(self._wake.set)
        if self._owns_subscription:
            subscription.close()

    def _on_notification(self, notification: Notification) -> None:
        rule_id = notification.rule_id
        if rule_id is not None:
            concerned = rule_id in self.rule_ids
        else:
            # Transfers into the rules' storage, which may be other people's: a hint at
            # most every RSE_HINT_GAP seconds.
            rse = notification.destination_rse
            now = time.monotonic()
            concerned = (
                notification.is_transfer
                and rse is not None
                and any(rse in targets for targets in self._targets.values())
                and now - self._last_rse_hint >= RSE_HINT_GAP
            )
            if concerned:
                self._last_rse_hint = now
        if concerned:
            self.notified += 1
            self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every rule is done (or the watch ended); return whether it finished."""
        return self._finished.wait(timeout)

    def poll_once(self, trigger: str = "poll") -> list[ProgressEvent]:
        """Observe every rule not yet done once; deliver callbacks; return what changed."""
        changed = []
        for rule_id in self.rule_ids:
            previous = self.latest.get(rule_id)
            if previous is not None and previous.done:
                continue
            event = self._observe(rule_id, previous, trigger)
            if previous is None or _key(previous) != _key(event):
                changed.append(event)
                self.latest[rule_id] = event
                self._deliver(event)
        return changed

    def _observe(self, rule_id: str, previous: ProgressEvent | None, trigger: str) -> ProgressEvent:
        self.polls += 1
        try:
            progress = self.lake.rule_progress(rule_id)
            if self._subscription is not None and rule_id not in self._targets:
                # Transfer events name their destination storage, not always the rule.
                self._targets[rule_id] = set(self.lake.resolve_rses(progress.rule.rse_expression))
        except LakeError as exc:
            if previous is None:
                raise
            return ProgressEvent(rule_id, previous.progress, None, error=str(exc), trigger=trigger)
        samples = self._samples[rule_id]
        samples.append((time.monotonic(), progress.bytes_done))
        del samples[:-10]  # the recent rate
        return ProgressEvent(
            rule_id, progress, estimate_seconds_left(samples, progress.bytes_total), trigger=trigger
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
        trigger = "start"
        warned = False
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._wake.clear()
                try:
                    changed = self.poll_once(trigger)
                except LakeUnavailable:
                    # Not even one observation yet and the lake went away: each call
                    # already waited for it (the client's retries); keep asking.
                    self._stop.wait(self.first_interval)
                    continue
                if all(e.done for e in self.latest.values()) and len(self.latest) == len(
                    self.rule_ids
                ):
                    return
                if self.following_notifications:
                    quiet = min(self.fallback_interval, deadline - time.monotonic())
                    woken = self._wake.wait(quiet)
                    trigger = "notification" if woken else "poll"
                    if woken:
                        self._stop.wait(self.min_gap)  # one request for a burst of events
                    continue
                if self._subscription is not None and not warned:
                    warned = True
                    message = f"The connection to the broker {self._subscription.url} dropped"
                    self.warnings.append(message + "; polling Rucio instead.")
                    log.warning("escape-portal: %s; polling Rucio instead", message)
                interval = self.first_interval if changed else min(self.max_interval, interval * 2)
                self._stop.wait(interval)
                trigger = "poll"
        except LakeError:
            log.exception("escape-portal: following rules %s failed", self.rule_ids)
        finally:
            self._finished.set()
            if self._owns_subscription:
                self._unsubscribe()


def _key(event: ProgressEvent) -> tuple[object, ...]:
    p = event.progress
    return (event.state, p.files_done, p.bytes_done, p.stuck_reason, event.error)


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
    notifications: Subscription | bool | None = None,
) -> RuleProgress:
    """Block until the rule is available or stuck, or ``timeout`` passes; its last progress.

    ``notifications`` is as for :class:`Watch` (default: follow the instance's broker if it
    has one).
    """
    watch = Watch(
        lake,
        [rule_id],
        on_progress=on_progress,
        first_interval=first_interval,
        max_interval=max_interval,
        timeout=timeout,
        notifications=notifications,
    ).start()
    watch.wait(timeout + max_interval + 5)
    watch.stop()
    latest = watch.latest.get(rule_id)
    if latest is None or latest.error:
        return lake.rule_progress(rule_id)
    return latest.progress
