"""Rucio's notifications, as its hermes daemon publishes them on a STOMP message broker.

Rucio records events (``RULE_OK``, ``RULE_PROGRESS``, ``transfer-queued``,
``transfer-done``, ``transfer-failed``, ...) and hermes delivers them to a broker
(ActiveMQ in production, and in the embedded lake) as JSON bodies
``{"event_type", "payload", "created_at"}`` on one destination. A :class:`Subscription`
listens there and hands each :class:`Notification` to its listeners;
:class:`escape_portal.events.Watch` uses it to refresh a request's progress when
something happened to it instead of polling on a timer.

Notifications are hints, never the truth: a watch asks Rucio for the state when woken,
and keeps a slow poll as a safety net, because a broker may drop messages.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import stomp

from escape_portal.config import LakeConfig
from escape_portal.errors import InvalidRequest, LakeError, LakeUnavailable

log = logging.getLogger(__name__)
DEFAULT_PORT = 61613


@dataclass(frozen=True)
class Notification:
    """One event published by Rucio."""

    event_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def rule_id(self) -> str | None:
        """The rule the event concerns, when it names one."""
        value = self.payload.get("rule_id") or self.payload.get("rule-id")
        return str(value) if value and value != "None" else None

    @property
    def destination_rse(self) -> str | None:
        """The destination storage of a transfer event."""
        value = self.payload.get("dst-rse") or self.payload.get("rse")
        return str(value) if value else None

    @property
    def is_transfer(self) -> bool:  # noqa: D102
        return self.event_type.startswith("transfer-")


def parse_message(body: str | bytes) -> Notification | None:
    """A hermes message body as a :class:`Notification` (``None`` if it is not one)."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event_type"), str):
        return None
    payload = data.get("payload")
    if isinstance(payload, str):  # some brokers relay the payload as a JSON string
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = {}
    return Notification(
        event_type=data["event_type"].lower(),
        payload=payload if isinstance(payload, dict) else {},
        created_at=str(data.get("created_at", "")),
    )


def broker_address(url: str) -> tuple[str, int, bool]:
    """``(host, port, ssl)`` of a ``stomp://`` or ``stomp+ssl://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("stomp", "stomp+ssl") or not parts.hostname:
        raise InvalidRequest(
            f"Broker {url!r} is not a stomp:// URL.",
            "Give it as stomp://host:port (or stomp+ssl://host:port).",
        )
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise InvalidRequest(f"Broker {url!r} has an invalid port.") from exc
    return parts.hostname, port, parts.scheme == "stomp+ssl"


Listener = Callable[[Notification], None]
#: The receipt asked for with SUBSCRIBE: a broker may apply a subscription after it
#: answers, and what is published in between would be missed.
_SUBSCRIBED = "escape-portal-subscribed"


class _StompListener(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription

    def on_connected(self, frame: Any) -> None:
        self.subscription._connected.set()

    def on_error(self, frame: Any) -> None:
        self.subscription.last_error = str(getattr(frame, "body", "") or frame)
        log.warning("escape-portal: the broker answered an error: %s", frame)

    def on_receipt(self, frame: Any) -> None:
        if getattr(frame, "headers", {}).get("receipt-id") == _SUBSCRIBED:
            self.subscription._subscribed.set()

    def on_disconnected(self) -> None:
        self.subscription._connected.clear()
        self.subscription._dispatch_disconnect()

    def on_message(self, frame: Any) -> None:
        self.subscription._dispatch(getattr(frame, "body", ""))


class Subscription:
    """A listener on the broker an instance's Rucio publishes its notifications to.

    Parameters
    ----------
    config
        The instance; its ``broker``, ``broker_destination``, ``broker_vhost`` and
        credentials are used.
    timeout
        Seconds to wait for the broker to accept the connection (default: the instance's).

    Examples
    --------
    >>> sub = Subscription(lake.config).start()  # doctest: +SKIP
    >>> sub.add_listener(lambda n: print(n.event_type, n.rule_id))  # doctest: +SKIP

    """

    def __init__(self, config: LakeConfig, *, timeout: float | None = None) -> None:
        if not config.broker:
            raise InvalidRequest(
                f"Instance {config.name!r} has no message broker configured.",
                "Set broker (stomp://host:port) for the instance, or ESCAPE_BROKER_URL.",
            )
        self.config = config
        self.url = config.broker
        self.host, self.port, self.ssl = broker_address(config.broker)
        self.timeout = config.timeout if timeout is None else timeout
        self.received = 0
        self.ignored = 0
        self.last_error: str | None = None
        self._listeners: list[Listener] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._conn: Any = None

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up (notifications arrive)."""
        return self._connected.is_set()

    def start(self) -> Subscription:
        """Connect and subscribe; returns ``self``.

        Raises
        ------
        LakeUnavailable
            If the broker cannot be reached or does not accept the connection in time.

        """
        self._subscribed.clear()
        conn = stomp.Connection12(
            host_and_ports=[(self.host, self.port)],
            vhost=self.config.broker_vhost,
            timeout=self.timeout,
            reconnect_attempts_max=1,
            keepalive=True,
        )
        if self.ssl:
            conn.set_ssl(for_hosts=[(self.host, self.port)], ca_certs=self.config.ca_cert)
        conn.set_listener("escape-portal", _StompListener(self))
        try:
            conn.connect(self.config.broker_username, self.config.broker_password or "", wait=False)
        except stomp.exception.StompException as exc:
            raise self._unavailable(str(exc) or type(exc).__name__) from exc
        except OSError as exc:
            raise self._unavailable(str(exc)) from exc
        if not self._connected.wait(self.timeout):
            reason = self.last_error or "no answer"
            _quiet_disconnect(conn)
            raise self._unavailable(reason)
        conn.subscribe(
            self.config.broker_destination,
            id="escape-portal",
            ack="auto",
            headers={"receipt": _SUBSCRIBED},
        )
        if not self._subscribed.wait(self.timeout):
            reason = self.last_error or "no receipt for the subscription"
            _quiet_disconnect(conn)
            raise self._unavailable(reason)
        self._conn = conn
        log.info("escape-portal: following Rucio's notifications on %s", self.url)
        return self

    def _unavailable(self, reason: str) -> LakeUnavailable:
        return LakeUnavailable(
            f"The message broker at {self.url} did not accept a connection within "
            f"{self.timeout:g} s ({reason}).",
            "Progress is followed by polling Rucio instead; check the instance's broker "
            "setting, or ask the operators whether the broker is up.",
            url=self.url,
            timeout=self.timeout,
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every notification (from the broker's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:  # noqa: D102
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def add_disconnect_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the broker connection drops."""
        with self._lock:
            self._disconnect_listeners.append(listener)

    def remove_disconnect_listener(self, listener: Callable[[], None]) -> None:  # noqa: D102
        with self._lock:
            if listener in self._disconnect_listeners:
                self._disconnect_listeners.remove(listener)

    def _dispatch_disconnect(self) -> None:
        if self._conn is None:  # closed by us
            return
        log.warning("escape-portal: the connection to the broker %s dropped", self.url)
        with self._lock:
            listeners = list(self._disconnect_listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("escape-portal: a disconnect listener failed")

    def _dispatch(self, body: str | bytes) -> None:
        notification = parse_message(body)
        if notification is None:
            self.ignored += 1
            log.debug("escape-portal: ignored a broker message that is not Rucio's: %.200r", body)
            return
        self.received += 1
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(notification)
            except Exception:  # one listener must not silence the others
                log.exception("escape-portal: a notification listener failed")

    def close(self) -> None:
        """Unsubscribe and disconnect."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _quiet_disconnect(conn)
        self._connected.clear()

    def __enter__(self) -> Subscription:
        return self.start() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet_disconnect(conn: Any) -> None:
    try:
        conn.disconnect()
    except Exception:  # closing a broken connection may fail in many ways
        log.debug("escape-portal: closing the broker connection failed", exc_info=True)


def follow(
    config: LakeConfig, wanted: Subscription | bool | None
) -> tuple[Subscription | None, bool, LakeError | None]:
    """The subscription a follower of Rucio's events uses: ``(subscription, owned, error)``.

    ``wanted`` is ``None`` (the instance's broker, if it has one), ``False`` (none) or a
    started :class:`Subscription` to share. ``owned`` says whether the caller started it
    (and closes it); ``error`` is why the broker could not be reached (then no
    subscription: the caller polls).
    """
    if wanted is False or (wanted is None and not config.broker):
        return None, False, None
    if isinstance(wanted, Subscription):
        return wanted, False, None
    try:
        return Subscription(config).start(), True, None
    except LakeError as exc:
        return None, False, exc
