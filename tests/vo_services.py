"""Local VO services for tests and benchmarks: real HTTP on 127.0.0.1, real VOTables.

``FakeVOService(behaviour, kind=...)`` starts a stdlib ``ThreadingHTTPServer`` in a
thread that acts as an ObsCore TAP service (``/tap/sync``), SIA2 (``/sia2/query``), cone
search (``/scs/query``) or SSA (``/ssa/query``), and also answers DataLink
(``/datalink/links``) and a name resolver (``/resolve``). Behaviours:

``good``        a VOTable of ``rows`` rows (cut at MAXREC, with QUERY_STATUS OVERFLOW)
``overflow``    exactly MAXREC rows and QUERY_STATUS OVERFLOW
``html``        an HTML page with status 200
``error-votable`` HTTP 500 with a VOTable error document
``error-plain`` HTTP 500 with a line of text
``malformed``   status 200, XML that breaks off
``huge``        a valid VOTable of ``huge_mb`` megabytes, streamed
``hang``        accepts the request and never answers
``trickle``     answers one byte every 0.2 s, forever
``ratelimit``   HTTP 429 with ``Retry-After: 7``

``latency`` seconds are waited before any answer. Use it as a context manager; ``stop()``
ends the server and releases hanging handlers.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from astropy.io.votable.tree import Info, VOTableFile
from astropy.table import Table

PATHS = {"tap": "/tap", "sia2": "/sia2/query", "scs": "/scs/query", "ssa": "/ssa/query"}
BEHAVIOURS = (
    "good",
    "overflow",
    "html",
    "error-votable",
    "error-plain",
    "malformed",
    "huge",
    "hang",
    "trickle",
    "ratelimit",
)
ERROR_MESSAGE = "Table 'ivoa.obscor' does not exist; did you mean ivoa.obscore?"
NAMES = {"crab": (83.6331, 22.0145), "m 31": (10.6847, 41.2690)}


def obscore_table(n: int, base: str, tag: str = "svc") -> Table:
    """``n`` ObsCore rows (CTA-like event lists), with one extra column."""
    i = np.arange(n)
    return Table(
        {
            "dataproduct_type": np.array(["event"] * n, dtype=str),
            "calib_level": np.full(n, 2, dtype=np.int16),
            "obs_collection": np.array(["CTA-DL3"] * n, dtype=str),
            "obs_id": np.array([f"{tag}-{k}" for k in i], dtype=str),
            "obs_publisher_did": np.array(
                [f"ivo://escape.eu/lake?cta:crab-2024.dl3.{k:04d}.fits" for k in i], dtype=str
            ),
            "access_url": np.array([f"{base}/data/{tag}/{k}.fits" for k in i], dtype=str),
            "access_format": np.array(["application/fits"] * n, dtype=str),
            "access_estsize": np.full(n, 120, dtype=np.int64),
            "target_name": np.array(["Crab"] * n, dtype=str),
            "s_ra": 83.63 + i * 1e-3,
            "s_dec": 22.01 + i * 1e-3,
            "s_fov": np.full(n, 5.0),
            "t_min": 60310.0 + i,
            "t_max": 60310.1 + i,
            "em_min": np.full(n, 1.2e-19),
            "em_max": np.full(n, 1.2e-16),
            "facility_name": np.array(["CTAO-North"] * n, dtype=str),
            "instrument_name": np.array(["LST-1"] * n, dtype=str),
            "zenith_angle": np.linspace(20, 40, n) if n else np.zeros(0),
        }
    )


def _votable(table: Table, status: str = "OK", kind: str = "tap") -> bytes:
    votable = VOTableFile.from_table(table)
    resource = votable.resources[0]
    resource.type = "results"
    fields = resource.tables[0].fields
    if kind == "scs":
        ucds = {"id": "meta.id;meta.main", "ra": "pos.eq.ra;meta.main"}
        ucds |= {"dec": "pos.eq.dec;meta.main", "mag": "phot.mag;em.opt.V"}
        for f in fields:
            f.ucd = ucds.get(f.name)
    if kind == "ssa":
        utypes = {
            "ref": "ssa:Access.Reference",
            "fmt": "ssa:Access.Format",
            "title": "ssa:DataID.Title",
            "pos": "ssa:Char.SpatialAxis.Coverage.Location.Value",
            "wl_lo": "ssa:Char.SpectralAxis.Coverage.Bounds.Start",
            "wl_hi": "ssa:Char.SpectralAxis.Coverage.Bounds.Stop",
        }
        for f in fields:
            f.utype = utypes.get(f.name)
            if f.name.startswith("wl_"):
                f.unit = "nm"
    resource.infos.append(Info(name="QUERY_STATUS", value=status))
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()


def error_votable(message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        '<RESOURCE type="results">\n'
        f'<INFO name="QUERY_STATUS" value="ERROR">{message}</INFO>\n'
        "</RESOURCE>\n</VOTABLE>\n"
    ).encode()


def scs_table(n: int) -> Table:
    i = np.arange(n)
    return Table(
        {
            "id": np.array([f"star-{k}" for k in i], dtype=str),
            "ra": 83.6 + i * 1e-3,
            "dec": 22.0 + i * 1e-3,
            "mag": np.linspace(10, 15, n) if n else np.zeros(0),
        }
    )


def ssa_table(n: int, base: str) -> Table:
    i = np.arange(n)
    return Table(
        {
            "ref": np.array([f"{base}/spec/{k}.fits" for k in i], dtype=str),
            "fmt": np.array(["application/fits"] * n, dtype=str),
            "title": np.array([f"spectrum {k}" for k in i], dtype=str),
            "pos": np.array([[83.6, 22.0]] * n) if n else np.zeros((0, 2)),
            "wl_lo": np.full(n, 400.0),
            "wl_hi": np.full(n, 700.0),
        }
    )


def datalink_votable(base: str, ident: str) -> bytes:
    table = Table(
        {
            "ID": np.array([ident] * 4, dtype=str),
            "access_url": np.array(
                [f"{base}/data/{ident}.fits", f"{base}/preview/{ident}.png", "", ""], dtype=str
            ),
            "service_def": np.array(["", "", "soda-sync", ""], dtype=str),
            "error_message": np.array(["", "", "", "NotFoundFault: no calibration"], dtype=str),
            "semantics": np.array(["#this", "#preview", "#cutout", "#calibration"], dtype=str),
            "description": np.array(
                ["the event list", "a sky map", "cut out a region", "calibration"], dtype=str
            ),
            "content_type": np.array(
                ["application/fits", "image/png", "application/fits", ""], dtype=str
            ),
            "content_length": np.array([123456, 2048, 0, 0], dtype=np.int64),
        }
    )
    return _votable(table)


class FakeVOService:
    """One local VO service with a chosen behaviour (see the module docstring)."""

    def __init__(
        self,
        behaviour: str = "good",
        *,
        kind: str = "tap",
        rows: int = 3,
        latency: float = 0.0,
        huge_mb: int = 8,
    ) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour}")
        self.behaviour = behaviour
        self.kind = kind
        self.rows = rows
        self.latency = latency
        self.huge_mb = huge_mb
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The URL a ``Service`` of this kind is given."""
        return self.base + PATHS[self.kind]

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeVOService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer_rows(self, params: dict[str, str]) -> tuple[bytes, str]:
        maxrec = int(params.get("MAXREC", "1000"))
        n = maxrec if self.behaviour == "overflow" else min(self.rows, maxrec)
        status = "OVERFLOW" if self.behaviour == "overflow" or self.rows > maxrec else "OK"
        tag = f"{self.kind}{self.port}"
        if self.kind == "scs":
            return _votable(scs_table(n), status, "scs"), status
        if self.kind == "ssa":
            return _votable(ssa_table(n, self.base), status, "ssa"), status
        return _votable(obscore_table(n, self.base, tag), status), status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                self._dispatch({k: v[0] for k, v in parse_qs(body).items()})

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                self._dispatch({k: v[0] for k, v in query.items()})

            def _dispatch(self, params: dict[str, str]) -> None:
                path = urlparse(self.path).path
                fake.requests.append(path)
                if path == "/resolve":
                    self._resolve(params.get("name", ""))
                    return
                if path == "/datalink/links":
                    body = datalink_votable(fake.base, params.get("ID", "x"))
                    self._send(200, body, "application/x-votable+xml;content=datalink")
                    return
                if fake.latency and fake._stop.wait(fake.latency):
                    return
                getattr(self, "_" + fake.behaviour.replace("-", "_"))(params)

            def _resolve(self, name: str) -> None:
                pos = NAMES.get(name.lower())
                if pos is None:
                    self._send(404, b'{"error": "unknown"}', "application/json")
                    return
                body = json.dumps({"name": name, "ra": pos[0], "dec": pos[1]}).encode()
                self._send(200, body, "application/json")

            def _good(self, params: dict[str, str]) -> None:
                body, _ = fake._answer_rows(params)
                self._send(200, body, "application/x-votable+xml")

            _overflow = _good

            def _html(self, params: dict[str, str]) -> None:
                body = b"<!DOCTYPE html><html><body><h1>Welcome to our portal</h1></body></html>"
                self._send(200, body, "text/html; charset=utf-8")

            def _error_votable(self, params: dict[str, str]) -> None:
                self._send(500, error_votable(ERROR_MESSAGE), "application/x-votable+xml")

            def _error_plain(self, params: dict[str, str]) -> None:
                self._send(500, b"database connection lost\n", "text/plain")

            def _malformed(self, params: dict[str, str]) -> None:
                body = b'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE type="res'
                self._send(200, body, "application/x-votable+xml")

            def _ratelimit(self, params: dict[str, str]) -> None:
                self._send(429, b"slow down", "text/plain", Retry_After="7")

            def _hang(self, params: dict[str, str]) -> None:
                fake._stop.wait(120)

            def _trickle(self, params: dict[str, str]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-votable+xml")
                self.end_headers()
                try:
                    self.wfile.write(b'<?xml version="1.0"?>\n<VOTABLE version="1.4">')
                    self.wfile.flush()
                    while not fake._stop.wait(0.2):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                except OSError:
                    pass

            def _huge(self, params: dict[str, str]) -> None:
                table = obscore_table(1, fake.base)
                xml = _votable(table).decode()
                head, _, rest = xml.partition("<TR>")
                row, _, tail = rest.partition("</TR>")
                row = "<TR>" + row + "</TR>\n"
                self.send_response(200)
                self.send_header("Content-Type", "application/x-votable+xml")
                self.end_headers()
                block = (row * 200).encode()
                sent = 0
                try:
                    self.wfile.write(head.encode())
                    while sent < fake.huge_mb * 1024 * 1024 and not fake._stop.is_set():
                        self.wfile.write(block)
                        sent += len(block)
                    self.wfile.write(tail.encode())
                except OSError:
                    pass

        return Handler


class FakeFleet:
    """Several fake services started together and stopped together."""

    def __init__(self) -> None:
        self.services: list[FakeVOService] = []

    def add(self, behaviour: str = "good", **kwargs: Any) -> FakeVOService:
        fake = FakeVOService(behaviour, **kwargs)
        self.services.append(fake)
        return fake

    def stop(self) -> None:
        for fake in self.services:
            fake.stop()

    def __enter__(self) -> FakeFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False
