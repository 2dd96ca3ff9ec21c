"""Rucio's own notifications, published by the embedded lake's hermes on its broker."""

from __future__ import annotations

import threading
import time

import pytest

from escape_portal.events import ProgressEvent, Watch
from escape_portal.lake import DID, Lake
from escape_portal.notifications import Notification, Subscription

pytestmark = pytest.mark.lake


def test_the_embedded_lake_publishes_rule_notifications(lake: Lake, fresh_dataset: DID) -> None:
    assert lake.config.broker, "the embedded instance names its broker"
    got: list[Notification] = []
    with Subscription(lake.config) as subscription:
        subscription.add_listener(got.append)
        rule, created = lake.add_rule(fresh_dataset, "DESY-DISK", lifetime=600)
        assert created
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(n.event_type == "rule_ok" and n.rule_id == rule.id for n in got):
                break
            time.sleep(0.2)
    mine = [n for n in got if n.rule_id == rule.id]
    kinds = {n.event_type for n in mine}
    assert "rule_ok" in kinds, f"no RULE_OK among {sorted({n.event_type for n in got})}"
    ok = next(n for n in mine if n.event_type == "rule_ok")
    assert ok.payload["scope"] == fresh_dataset.scope and ok.payload["name"] == fresh_dataset.name
    assert "transfer-queued" in kinds  # transfers name their rule when queued


def test_watch_follows_notifications_instead_of_polling(lake: Lake, fresh_dataset: DID) -> None:
    rule, _ = lake.add_rule(fresh_dataset, "INFN-NA-DISK", lifetime=600)
    arrived = threading.Event()
    events: list[ProgressEvent] = []
    watch = Watch(
        lake,
        [rule.id],
        on_progress=events.append,
        on_available=lambda e: arrived.set(),
        # Polling alone would look again only after 10 minutes.
        fallback_interval=600,
    ).start()
    try:
        assert watch.following_notifications, watch.warnings
        assert arrived.wait(180), "the rule did not become available"
    finally:
        watch.stop()
    assert events[-1].state == "available"
    assert events[-1].trigger == "notification"
    assert watch.notified >= 1
    assert watch.polls <= 1 + 2 * watch.notified
    assert not watch.warnings
