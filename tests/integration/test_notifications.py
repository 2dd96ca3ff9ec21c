"""Rucio's own notifications, published by the embedded lake's hermes on its broker."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from escape_portal.config import LakeConfig
from escape_portal.embedded import broker
from escape_portal.embedded.supervisor import EmbeddedLake
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


def _listening(pid: int) -> set[tuple[str, int]]:
    """``(address, port)`` of every TCP socket process ``pid`` listens on (``ss -ltnp``)."""
    out = subprocess.run(
        ["ss", "-Hltnp"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            found.add((address.strip("[]"), int(port)))
    return found


def test_the_broker_listens_on_loopback_only_and_only_for_stomp(
    embedded_lake: EmbeddedLake, lake_config: LakeConfig
) -> None:
    state = json.loads(embedded_lake.paths.state_file.read_text())
    pid = state["pids"]["broker"]
    assert pid and "java" in os.readlink(f"/proc/{pid}/exe"), "the pid is the JVM's own"
    listening = _listening(pid)
    # Java's IPv6 socket bound to 127.0.0.1 shows as the IPv4-mapped ::ffff:127.0.0.1.
    assert {port for _, port in listening} == {state["broker_port"]}, listening
    assert all(re.fullmatch(r"(::ffff:)?127\.0\.0\.1", a) for a, _ in listening), listening
    assert lake_config.broker == f"stomp://127.0.0.1:{state['broker_port']}"
    assert lake_config.broker_username and lake_config.broker_password


def test_a_new_subscription_receives_after_the_broker_died_and_came_back(
    embedded_lake: EmbeddedLake, lake: Lake, fresh_dataset: DID
) -> None:
    old = embedded_lake.status()
    pid = next(c.pid for c in old.components if c.name == "broker")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _dead(pid):
        time.sleep(0.1)
    assert _dead(pid)
    port = json.loads(embedded_lake.paths.state_file.read_text())["broker_port"]
    # The lake's supervisor starts the broker again, on its saved port.
    creds = broker.credentials(embedded_lake.paths.root)
    deadline = time.monotonic() + 90
    new_pid = None
    while time.monotonic() < deadline:
        new_pid = next(c.pid for c in embedded_lake.status().components if c.name == "broker")
        if new_pid and new_pid != pid and broker.stomp_connect(port, creds) == "CONNECTED":
            break
        time.sleep(0.3)
    assert new_pid and new_pid != pid
    assert broker.stomp_connect(port, creds) == "CONNECTED"
    # Hermes, still running, knows the broker by that port only.
    assert json.loads(embedded_lake.paths.state_file.read_text())["broker_port"] == port
    got: list[Notification] = []
    with Subscription(lake.config) as subscription:
        subscription.add_listener(got.append)
        rule, _ = lake.add_rule(fresh_dataset, "DESY-DISK", lifetime=600)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(n.event_type == "rule_ok" and n.rule_id == rule.id for n in got):
                break
            time.sleep(0.2)
    assert any(n.event_type == "rule_ok" and n.rule_id == rule.id for n in got), sorted(
        {n.event_type for n in got}
    )


def _dead(pid: int) -> bool:
    """Gone entirely: a JVM's main thread is a zombie while its other threads still exit
    (and hold its listening socket)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this process started the lake
    return not Path(f"/proc/{pid}").exists()
