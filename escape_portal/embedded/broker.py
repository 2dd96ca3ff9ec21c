"""The embedded lake's message broker: CoilMQ, a small STOMP broker, on 127.0.0.1.

Rucio's hermes daemon (in :mod:`escape_portal.embedded.daemons`) delivers Rucio's
notifications to it, as it delivers them to ActiveMQ in production, and the portal
subscribes to them (:mod:`escape_portal.notifications`). Messages are kept in memory
only: notifications are hints, and Rucio's catalogue stays the truth.

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


def virtual_host() -> str:
    """The STOMP ``host`` header the broker accepts (it serves this machine's name)."""
    return socket.getfqdn()


def make_server(port: int) -> Any:
    """A CoilMQ server bound to ``127.0.0.1:port`` (not yet serving)."""
    from coilmq.queue import QueueManager
    from coilmq.scheduler import FavorReliableSubscriberScheduler, RandomQueueScheduler
    from coilmq.server.socket_server import ThreadedStompServer
    from coilmq.store.memory import MemoryQueue
    from coilmq.topic import TopicManager

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
