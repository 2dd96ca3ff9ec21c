"""The embedded lake's message broker: CoilMQ, a small STOMP broker, on 127.0.0.1.

Rucio's hermes daemon (in :mod:`escape_portal.embedded.daemons`) delivers Rucio's
notifications to it, as it delivers them to ActiveMQ in production, and the portal
subscribes to them (:mod:`escape_portal.notifications`). Messages are kept in memory
only: notifications are hints, and Rucio's catalogue stays the truth.

CoilMQ 1.1's frame buffer breaks when a frame arrives split across reads (it parses a
half-received header line, or a JSON body, as headers, and drops the connection): hermes
sends bursts of frames, so one of ours (:class:`FrameBuffer`) replaces it — frames are
parsed only once complete, STOMP 1.2 header escapes are honoured, heart-beat EOLs between
frames are skipped, and consumed bytes are released.

Run as ``python -m escape_portal.embedded.broker PORT``; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

#: Where hermes publishes and the portal listens (a topic: every subscriber gets all).
DESTINATION = "/topic/rucio.events"


_ESCAPES = {"\\r": "\r", "\\n": "\n", "\\c": ":", "\\\\": "\\"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _ESCAPES:
            out.append(_ESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class FrameBuffer:
    """Bytes received on one connection, cut into complete STOMP frames."""

    def __init__(self) -> None:
        self._data = bytearray()

    def append(self, data: bytes) -> None:
        """Add received bytes."""
        self._data += data

    def extract_frame(self) -> Any:
        """The next complete frame, or ``None`` until more bytes arrive."""
        from coilmq.util.frames import Frame

        data = self._data
        start = 0
        while start < len(data) and data[start] in b"\r\n":  # heart-beats between frames
            start += 1
        end = data.find(b"\n\n", start)
        end_crlf = data.find(b"\r\n\r\n", start)
        if end < 0 and end_crlf < 0:
            del data[:start]
            return None
        if end < 0 or (0 <= end_crlf < end):
            head_end, body_start = end_crlf, end_crlf + 4
        else:
            head_end, body_start = end, end + 2
        lines = data[start:head_end].decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
        command, headers = lines[0], {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep and _unescape(key) not in headers:  # STOMP 1.2: the first one wins
                headers[_unescape(key)] = _unescape(value)
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit():
            body_end = body_start + int(length)
            if len(data) < body_end + 1:
                return None
        else:
            body_end = data.find(b"\x00", body_start)
            if body_end < 0:
                return None
        body = bytes(data[body_start:body_end])
        del data[: body_end + 1]  # the body and its NUL terminator
        return Frame(command, headers=headers, body=body)

    def __iter__(self) -> FrameBuffer:
        return self

    def __next__(self) -> Any:
        frame = self.extract_frame()
        if frame is None:
            raise StopIteration
        return frame


def virtual_host() -> str:
    """The STOMP ``host`` header the broker accepts (it serves this machine's name)."""
    return socket.getfqdn()


def make_server(port: int) -> Any:
    """A CoilMQ server bound to ``127.0.0.1:port`` (not yet serving)."""
    from coilmq.queue import QueueManager
    from coilmq.scheduler import FavorReliableSubscriberScheduler, RandomQueueScheduler
    from coilmq.server import socket_server
    from coilmq.server.socket_server import ThreadedStompServer
    from coilmq.store.memory import MemoryQueue
    from coilmq.topic import TopicManager

    socket_server.FrameBuffer = FrameBuffer  # see the module's docstring
    server = ThreadedStompServer(
        ("127.0.0.1", port),
        queue_manager=QueueManager(
            store=MemoryQueue(),
            subscriber_scheduler=FavorReliableSubscriberScheduler(),
            queue_scheduler=RandomQueueScheduler(),
        ),
        topic_manager=TopicManager(),
        authenticator=None,
    )
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    server = make_server(int(args[0]))
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    thread = threading.Thread(target=server.serve_forever, name="broker", daemon=True)
    thread.start()
    print(f"escape-portal: STOMP broker on 127.0.0.1:{args[0]}", flush=True)
    stopping.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
