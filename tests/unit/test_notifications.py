"""Notifications through a real STOMP broker (the embedded lake's CoilMQ, in-process).

The lake is scripted here (unit level); tests/integration/test_notifications.py follows
notifications that the embedded Rucio's hermes really publishes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import stomp

from escape_portal.config import LakeConfig
from escape_portal.embedded.broker import DESTINATION, make_server, virtual_host
from escape_portal.errors import InvalidRequest, LakeUnavailable
from escape_portal.events import Watch
from escape_portal.notifications import (
    Notification,
    Subscription,
    broker_address,
    parse_message,
)
from tests.unit.test_events import _progress, _ScriptedLake


@pytest.fixture
def broker() -> Iterator[str]:
    server = make_server(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"stomp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config(url: str, timeout: float = 5.0) -> LakeConfig:
    return LakeConfig(
        name="t",
        rucio_host="http://127.0.0.1:1",
        broker=url,
        broker_vhost=virtual_host(),
        timeout=timeout,
    )


def _publish(url: str, *bodies: str) -> None:
    host, port, _ = broker_address(url)
    conn = stomp.Connection12([(host, port)], vhost=virtual_host(), timeout=5)
    conn.connect("hermes", "", wait=True)
    for body in bodies:
        conn.send(body=body, destination=DESTINATION)
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


def test_subscription_delivers_rucio_messages_and_skips_garbage(broker: str) -> None:
    got: list[Notification] = []
    with Subscription(_config(broker)) as sub:
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
        Subscription(_config(f"stomp://127.0.0.1:{port}", timeout=2)).start()
    assert time.monotonic() - started < 10


def test_silent_broker_does_not_hang_the_subscription() -> None:
    """A port that accepts connections but never speaks STOMP."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(LakeUnavailable, match="within 1 s"):
            Subscription(_config(f"stomp://127.0.0.1:{port}", timeout=1)).start()
        assert time.monotonic() - started < 8


def test_watch_refreshes_on_a_notification_not_on_a_timer(broker: str) -> None:
    lake = _ScriptedLake([_progress("REPLICATING", 0, 0), _progress("OK", 4, 400)], broker)
    lake.config = _config(broker)  # type: ignore[misc]
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


def test_watch_polls_when_the_broker_dies() -> None:
    """The embedded broker runs as its own process here, and is killed mid-watch."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "escape_portal.embedded.broker", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and b"STOMP broker" in process.stdout.readline()
        _watch_survives_broker_death(f"stomp://127.0.0.1:{port}", process)
    finally:
        process.kill()
        process.wait(10)
        process.stdout.close()  # type: ignore[union-attr]


def _watch_survives_broker_death(url: str, process: subprocess.Popen[bytes]) -> None:
    lake = _ScriptedLake([_progress("REPLICATING", 0, 0)] * 3 + [_progress("OK", 4, 400)])
    lake.config = _config(url)  # type: ignore[misc]
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
        process.terminate()  # the broker goes away: the watch must not wait 10 minutes
        assert watch.wait(20), "the watch did not fall back to polling"
    finally:
        watch.stop()
    assert watch.latest["r1"].state == "available"
    assert any("dropped" in w for w in watch.warnings)


def test_a_burst_of_notifications_arrives_whole(broker: str) -> None:
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
    with Subscription(_config(broker)) as sub:
        sub.add_listener(got.append)
        _publish(broker, *bodies)
        assert _until(lambda: len(got) == 300), f"{len(got)} of 300 arrived"
        assert sub.connected
    assert [n.payload["name"] for n in got] == [f"f{i}.fits" for i in range(300)]


def test_frame_buffer_waits_for_whole_frames_and_unescapes() -> None:
    from escape_portal.embedded.broker import FrameBuffer

    wire = (
        b"\n"  # a heart-beat
        + b"SEND\ndestination:/topic/a\nnote:a\\cb\nnote:second\ncontent-length:9\n\n"
        + b'{"k":"v"}\x00'
        + b"SEND\ndestination:/topic/a\n\nno length\x00"
    )
    buffer = FrameBuffer()
    frames = []
    for i in range(len(wire)):  # one byte at a time: every split point
        buffer.append(wire[i : i + 1])
        frames.extend(buffer)
    assert [f.body for f in frames] == [b'{"k":"v"}', b"no length"]
    assert frames[0].headers["note"] == "a:b"  # escaped colon, and the first value wins
