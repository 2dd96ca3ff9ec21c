"""The embedded lake's message broker: Debian's Apache ActiveMQ 5.17, STOMP on 127.0.0.1.

Rucio's hermes daemon (in :mod:`escape_portal.embedded.daemons`) delivers Rucio's
notifications to it, as it delivers them to ActiveMQ in production, and the portal
subscribes to them (:mod:`escape_portal.notifications`). The broker keeps no messages on
disk (``persistent="false"``): notifications are hints, and Rucio's catalogue stays the
truth.

Why ActiveMQ and not RabbitMQ 3.10 (both Debian packages, measured on the 2-core
development machine under load, each configured with STOMP only, on 127.0.0.1):

=====================================  =====================  ======================
                                       ActiveMQ 5.17.2        RabbitMQ 3.10.8 + STOMP
=====================================  =====================  ======================
start to a STOMP CONNECT accepted      2.8-3.4 s              7.7 s
idle resident memory                   82 MB (``-Xmx128m``)   126 MB (157 MB at start)
idle CPU over 60 s                     0.09 s                 0.14 s
processes / listening ports            1 / 1 (STOMP)          2 / 3 (STOMP, Erlang
                                                              distribution, epmd)
=====================================  =====================  ======================

ActiveMQ is what production ESCAPE runs, fits Binder's ~2 GB and 1 core with room to
spare, and is one process that ``lake down`` stops by its pid; RabbitMQ's epmd daemonizes
into its own session and outlives the broker.

The broker runs as a plain foreground ``java`` process (not through Debian's init script,
which daemonizes it and reads ``/etc/activemq``); config, data and temporary files live
in ``DATA_DIR/broker``. Only the STOMP connector is configured: no OpenWire, AMQP, MQTT
or WebSocket connector, no JMX (so no RMI port), no web console (Jetty is never
loaded), no advisory topics, no scheduler. One user, with a password generated per lake,
may connect (anonymous access is refused): hermes and the portal's subscriber use it. The
password is kept in ``DATA_DIR/broker/credentials.json`` and in the broker's
``activemq.xml`` (both mode 0600), and in ``rucio.cfg`` for hermes.

Destinations: hermes sends to ``/topic/rucio.events``, which ActiveMQ's STOMP maps to the
JMS topic ``rucio.events`` (every subscriber gets every message; a consumer subscribing
to the same name gets the same topic). ActiveMQ does not check the STOMP ``host`` header
(virtual hosts are a RabbitMQ notion, where ``/topic/X`` is the ``amq.topic`` exchange
and ``host`` must name a vhost such as ``/``); hermes and the portal both send
:data:`VIRTUAL_HOST` anyway, so the setting is the same on both sides.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

#: Where hermes publishes and the portal listens (a topic: every subscriber gets all).
DESTINATION = "/topic/rucio.events"
#: The STOMP ``host`` header both sides send (ActiveMQ accepts any).
VIRTUAL_HOST = "localhost"
#: The one account of the broker, shared by hermes and the portal's subscriber.
USERNAME = "rucio"
#: Debian's ActiveMQ (package ``activemq``).
ACTIVEMQ_HOME = Path("/usr/share/activemq")
#: The JVM's heap limit: the broker holds at most :data:`MEMORY_LIMIT` of messages.
HEAP_LIMIT = "128m"
MEMORY_LIMIT = "32 mb"
START_TIMEOUT = 60.0


class BrokerError(RuntimeError):
    """The broker cannot be started; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    """The broker's user and password (``repr`` hides the password)."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"


def broker_dir(data_dir: Path) -> Path:
    """``DATA_DIR/broker``: the broker's config (``conf/``), data and temporary files."""
    return Path(data_dir) / "broker"


def _credentials_file(data_dir: Path) -> Path:
    return broker_dir(data_dir) / "credentials.json"


def read_credentials(data_dir: Path) -> Credentials | None:
    """The lake's broker credentials, or ``None`` if none were generated yet."""
    try:
        data = json.loads(_credentials_file(data_dir).read_text())
        return Credentials(str(data["username"]), str(data["password"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def credentials(data_dir: Path) -> Credentials:
    """The lake's broker credentials, generated on first use (file of mode 0600)."""
    found = read_credentials(data_dir)
    if found is not None:
        return found
    created = Credentials(USERNAME, secrets.token_urlsafe(24))
    _write_private(
        _credentials_file(data_dir),
        json.dumps({"username": created.username, "password": created.password}),
    )
    return created


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (it holds a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def activemq_xml(port: int, data_dir: Path, creds: Credentials) -> str:
    """The broker's ``activemq.xml``: STOMP on ``127.0.0.1:port`` and nothing else."""
    data = broker_dir(data_dir) / "data"
    user, password = quoteattr(creds.username), quoteattr(creds.password)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by escape_portal.embedded.broker; rewritten at every start. -->
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans
         http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
         http://activemq.apache.org/schema/core
         http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="escape-lake"
          dataDirectory={quoteattr(str(data))} persistent="false" useJmx="false"
          advisorySupport="false" schedulerSupport="false" useShutdownHook="true">
    <plugins>
      <simpleAuthenticationPlugin anonymousAccessAllowed="false">
        <users>
          <authenticationUser username={user} password={password} groups="users"/>
        </users>
      </simpleAuthenticationPlugin>
    </plugins>
    <systemUsage>
      <systemUsage>
        <memoryUsage><memoryUsage limit="{MEMORY_LIMIT}"/></memoryUsage>
        <tempUsage><tempUsage limit="64 mb"/></tempUsage>
      </systemUsage>
    </systemUsage>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}?maximumConnections=100"/>
    </transportConnectors>
  </broker>
</beans>
"""


_LOG4J = """\
# Written by escape_portal.embedded.broker: warnings and the broker's start/stop lines.
log4j.rootLogger=WARN, stdout
log4j.logger.org.apache.activemq.broker.BrokerService=INFO
log4j.logger.org.apache.activemq.broker.TransportConnector=INFO
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} %-5p %c{1} %m%n
"""


def write_config(data_dir: Path, port: int) -> Path:
    """Write the broker's config under ``DATA_DIR/broker/conf``; return ``activemq.xml``."""
    base = broker_dir(data_dir)
    for sub in ("conf", "data", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)
    xml = base / "conf" / "activemq.xml"
    _write_private(xml, activemq_xml(port, data_dir, credentials(data_dir)))
    (base / "conf" / "log4j.properties").write_text(_LOG4J)
    return xml


def java_binary() -> str:
    """The ``java`` that runs the broker."""
    found = shutil.which("java") or next(
        (str(p) for p in (Path("/usr/lib/jvm/default-java/bin/java"),) if p.exists()), None
    )
    if found is None or not (ACTIVEMQ_HOME / "bin" / "activemq.jar").exists():
        raise BrokerError(
            "ActiveMQ is not installed; the embedded lake's notifications go through it. "
            "Install it (Debian: apt-get install activemq) or run scripts/setup.sh."
        )
    return found


def command(data_dir: Path, port: int) -> list[str]:
    """The argv of the broker: ``java ... activemq.jar start`` in the foreground.

    Writes the config first (see :func:`write_config`). The process is the JVM itself,
    so its pid is the broker's, and SIGTERM stops it cleanly.
    """
    base = broker_dir(data_dir)
    xml = write_config(data_dir, port)
    return [
        java_binary(),
        f"-Xmx{HEAP_LIMIT}",
        "-Xms16m",
        "-XX:+UseSerialGC",  # one core: no parallel GC threads
        "-XX:-UsePerfData",  # no /tmp/hsperfdata_* file outside the data directory
        "-Djava.awt.headless=true",
        "--add-opens=java.base/java.lang=ALL-UNNAMED",
        "--add-opens=java.base/java.util=ALL-UNNAMED",
        f"-Dactivemq.home={ACTIVEMQ_HOME}",
        f"-Dactivemq.base={base}",
        f"-Dactivemq.conf={base / 'conf'}",
        f"-Dactivemq.data={base / 'data'}",
        f"-Djava.io.tmpdir={base / 'tmp'}",
        f"-Dlog4j.configuration=file:{base / 'conf' / 'log4j.properties'}",
        "-jar",
        str(ACTIVEMQ_HOME / "bin" / "activemq.jar"),
        "start",
        f"xbean:file:{xml}",
    ]


def stomp_connect(port: int, creds: Credentials, timeout: float = 2.0) -> str | None:
    """Send a STOMP CONNECT to ``127.0.0.1:port``; the answer's command, ``None`` if none.

    ``"CONNECTED"`` means the broker is up and accepts the credentials.
    """
    frame = (
        f"CONNECT\naccept-version:1.2\nhost:{VIRTUAL_HOST}\n"
        f"login:{creds.username}\npasscode:{creds.password}\n\n\0"
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(frame.encode())
            answer = b""
            while b"\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
            command_line = answer.lstrip(b"\r\n").split(b"\n", 1)[0].decode(errors="replace")
            if command_line == "CONNECTED":
                sock.sendall(b"DISCONNECT\n\n\0")
            return command_line.strip() or None
    except OSError:
        return None


def wait_until_ready(
    port: int,
    creds: Credentials,
    alive: Callable[[], bool],
    timeout: float = START_TIMEOUT,
) -> float:
    """Wait until the broker accepts a STOMP CONNECT; return the seconds waited.

    Raises
    ------
    BrokerError
        If the process exits, refuses the credentials, or does not answer in time.

    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not alive():
            raise BrokerError("The message broker exited at start.")
        answer = stomp_connect(port, creds)
        if answer == "CONNECTED":
            return time.monotonic() - started
        if answer == "ERROR":
            raise BrokerError("The message broker refused the lake's credentials.")
        time.sleep(0.2)
    raise BrokerError(
        f"The message broker did not accept a STOMP connection on 127.0.0.1:{port} "
        f"within {timeout:.0f} s."
    )
