"""Notifications through a real STOMP broker: the embedded lake's ActiveMQ, started here.

The lake is scripted here (unit level); tests/integration/test_notifications.py follows
notifications that the embedded Rucio's hermes really publishes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import stomp

from escape_portal.config import LakeConfig
from escape_portal.embedded import broker as amq
from escape_portal.errors import InvalidRequest, LakeUnavailable
from escape_portal.events import Watch
from escape_portal.notifications import (
    Notification,
    Subscription,
    broker_address,
    parse_message,
)
from tests.unit.test_events import _progress, _ScriptedLake


@dataclass
class Broker:
    url: str
    credentials: amq.Credentials
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_broker(data_dir: Path) -> Broker:
    port = _free_port()
    with (data_dir / "broker.log").open("ab") as log:
        process = subprocess.Popen(
            amq.command(data_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    creds = amq.credentials(data_dir)
    try:
        amq.wait_until_ready(port, creds, lambda: process.poll() is None)
    except BaseException:
        _stop_broker(process)
        raise
    return Broker(f"stomp://127.0.0.1:{port}", creds, process)


def _stop_broker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    started = _start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield started
    finally:
        _stop_broker(started.process)


def _config(url: str, creds: amq.Credentials | None, timeout: float = 5.0) -> LakeConfig:
    return LakeConfig(
        name="t",
        rucio_host="http://127.0.0.1:1",
        broker=url,
        broker_vhost=amq.VIRTUAL_HOST,
        broker_username=creds.username if creds else None,
        broker_password=creds.password if creds else None,
        timeout=timeout,
    )


def _publish(broker: Broker, *bodies: str) -> None:
    """Send as hermes does (STOMP 1.2, its headers, the lake's credentials)."""
    host, port, _ = broker_address(broker.url)
    conn = stomp.Connection12([(host, port)], vhost=amq.VIRTUAL_HOST, timeout=5)
    conn.connect(broker.credentials.username, broker.credentials.password, wait=True)
    for body in bodies:
        conn.send(
            body=body,
            destination=amq.DESTINATION,
            headers={"persistent": "true", "event_type": "x"},
        )
    conn.disconnect()


def _until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_parse_message_accepts_hermes_bodies_and_rejects_garbage() -> None:
    body = json.dumps(
        {"event_type": "RULE_OK", "payload": {"rule_id": "abc"}, "created_at": "2026-11-25"}
    )
    assert parse_message(body) == Notification("rule_ok", {"rule_id": "abc"}, "2026-11-25")
    transfer = parse_message('{"event_type": "transfer-done", "payload": "{\\"dst-rse\\": "X"}"}')
    assert transfer is None or transfer.payload == {}
    done = parse_message(
        json.dumps({"event_type": "transfer-done", "payload": {"dst-rse": "CERN-DISK"}})
    )
    assert done is not None and done.is_transfer and done.destination_rse == "CERN-DISK"
    assert done.rule_id is None
    for garbage in ("", "<html>", "[1, 2]", '{"payload": {}}', b"\xff\xfe"):
        assert parse_message(garbage) is None


def test_broker_urls_are_checked() -> None:
    assert broker_address("stomp://mq.example:61614") == ("mq.example", 61614, False)
    assert broker_address("stomp+ssl://mq.example") == ("mq.example", 61613, True)
    with pytest.raises(InvalidRequest):
        broker_address("http://mq.example")
    with pytest.raises(InvalidRequest, match="stomp://"):
        LakeConfig(name="t", rucio_host="http://x", broker="amqp://mq")


def test_subscription_delivers_rucio_messages_and_skips_garbage(broker: Broker) -> None:
    got: list[Notification] = []
    with Subscription(_config(broker.url, broker.credentials)) as sub:
        sub.add_listener(got.append)
        _publish(
            broker,
            "not json at all",
            json.dumps({"event_type": "RULE_OK", "payload": {"rule_id": "r1"}}),
        )
        assert _until(lambda: got)
        assert got[0].rule_id == "r1" and got[0].event_type == "rule_ok"
        assert _until(lambda: sub.ignored == 1)
    assert not sub.connected


def test_unreachable_broker_is_a_clear_error_within_the_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(LakeUnavailable, match="polling Rucio instead"):
        Subscription(_config(f"stomp://127.0.0.1:{port}", None, timeout=2)).start()
    assert time.monotonic() - started < 10


def test_silent_broker_does_not_hang_the_subscription() -> None:
    """A port that accepts connections but never speaks STOMP."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(LakeUnavailable, match="within 1 s"):
            Subscription(_config(f"stomp://127.0.0.1:{port}", None, timeout=1)).start()
        assert time.monotonic() - started < 8


def test_watch_refreshes_on_a_notification_not_on_a_timer(broker: Broker) -> None:
    lake = _ScriptedLake([_progress("REPLICATING", 0, 0), _progress("OK", 4, 400)], broker.url)
    lake.config = _config(broker.url, broker.credentials)  # type: ignore[misc]
    ready = threading.Event()
    watch = Watch(
        lake,  # type: ignore[arg-type]
        ["r1"],
        on_available=lambda e: ready.set(),
        first_interval=0.1,
        fallback_interval=600,  # without the notification nothing would happen for 10 min
        min_gap=0,
    ).start()
    try:
        assert _until(lambda: lake.calls == 1)
        assert watch.following_notifications
        time.sleep(0.5)
        assert lake.calls == 1, "the watch polled although nothing was published"
        _publish(broker, json.dumps({"event_type": "RULE_OK", "payload": {"rule_id": "other"}}))
        time.sleep(0.5)
        assert lake.calls == 1, "a notification of another rule woke the watch"
        _publish(broker, json.dumps({"event_type": "RULE_OK", "payload": {"rule_id": "r1"}}))
        assert ready.wait(10)
    finally:
        watch.stop()
    assert watch.latest["r1"].trigger == "notification"
    assert watch.latest["r1"].state == "available"
    assert watch.polls == 2 and watch.notified == 1


def test_watch_polls_when_the_broker_dies(tmp_path: Path) -> None:
    """A broker of its own, killed mid-watch."""
    own = _start_broker(tmp_path)
    try:
        _watch_survives_broker_death(own)
    finally:
        _stop_broker(own.process)


def _watch_survives_broker_death(own: Broker) -> None:
    lake = _ScriptedLake([_progress("REPLICATING", 0, 0)] * 3 + [_progress("OK", 4, 400)])
    lake.config = _config(own.url, own.credentials)  # type: ignore[misc]
    watch = Watch(
        lake,  # type: ignore[arg-type]
        ["r1"],
        first_interval=0.1,
        max_interval=0.2,
        fallback_interval=600,
    ).start()
    try:
        assert _until(lambda: watch.following_notifications)
        assert lake.calls == 1
        own.process.kill()  # the broker goes away: the watch must not wait 10 minutes
        assert watch.wait(20), "the watch did not fall back to polling"
    finally:
        watch.stop()
    assert watch.latest["r1"].state == "available"
    assert any("dropped" in w for w in watch.warnings)


def test_a_burst_of_notifications_arrives_whole(broker: Broker) -> None:
    """Hermes sends hundreds of frames at once; none may be lost or break the broker."""
    got: list[Notification] = []
    bodies = [
        json.dumps(
            {
                "event_type": "transfer-done",
                "payload": {"name": f"f{i}.fits", "dst-url": "http://h:1/a", "rule-id": "r"},
                "created_at": "2026-11-25 09:00:00.123",
            }
        )
        for i in range(300)
    ]
    with Subscription(_config(broker.url, broker.credentials)) as sub:
        sub.add_listener(got.append)
        _publish(broker, *bodies)
        assert _until(lambda: len(got) == 300), f"{len(got)} of 300 arrived"
        assert sub.connected
    assert [n.payload["name"] for n in got] == [f"f{i}.fits" for i in range(300)]


def test_the_broker_refuses_wrong_and_missing_credentials(broker: Broker) -> None:
    wrong = amq.Credentials(broker.credentials.username, "not-the-password")
    with pytest.raises(LakeUnavailable, match="invalid"):
        Subscription(_config(broker.url, wrong)).start()
    with pytest.raises(LakeUnavailable, match="invalid"):
        Subscription(_config(broker.url, None)).start()
    # A loaded machine can take seconds over a refused login: wait long enough to hear it.
    port = int(broker.url.rsplit(":", 1)[1])
    assert amq.stomp_connect(port, wrong, timeout=20.0) == "ERROR"


def test_the_password_is_generated_once_and_kept_owner_only(tmp_path: Path) -> None:
    first = amq.credentials(tmp_path)
    assert amq.credentials(tmp_path) == first and len(first.password) >= 24
    assert amq.credentials(tmp_path / "other").password != first.password
    xml = amq.write_config(tmp_path, 61613)
    for path in (xml, tmp_path / "broker" / "credentials.json"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert first.password not in repr(first)
    text = xml.read_text()
    assert 'uri="stomp://127.0.0.1:61613' in text
    assert text.count("<transportConnector ") == 1  # no OpenWire, AMQP, MQTT, WebSocket
