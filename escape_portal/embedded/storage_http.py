"""Read access to the embedded storage elements over HTTP, with byte ranges.

Production storage is read over HTTPS/WebDAV (or XRootD) with range requests, which is
what lets a notebook read one FITS header without fetching the whole file. The embedded
lake serves its storage folders the same way, read-only, on 127.0.0.1: ``GET`` and
``HEAD`` of ``/<RSE>/<path>``, honouring ``Range: bytes=a-b``. Each response's byte
count goes to the access log (``logs/storage-http.log``), so tests can count what was
read. Started by the supervisor as
``python -m escape_portal.embedded.storage_http ROOT PORT``.
"""

from __future__ import annotations

import http.server
import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class StorageHandler(http.server.BaseHTTPRequestHandler):
    """Serves files below ``server.root`` (read-only), with single byte ranges."""

    server: StorageServer
    protocol_version = "HTTP/1.1"

    def _target(self) -> Path | None:
        relative = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
        target = (self.server.root / relative).resolve()
        if not target.is_relative_to(self.server.root) or not target.is_file():
            return None
        if target.name.endswith(".part"):
            return None  # never serve a copy being written
        return target

    def do_HEAD(self) -> None:
        """Headers of a file, with its size."""
        self._serve(body=False)

    def do_GET(self) -> None:
        """A file, or one byte range of it."""
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        target = self._target()
        if target is None:
            self.send_error(404, "no such file")
            return
        size = target.stat().st_size
        start, end = 0, size - 1
        status = 200
        header = self.headers.get("Range")
        if header:
            match = _RANGE.match(header.strip())
            if not match or (not match.group(1) and not match.group(2)):
                self.send_error(416, "unsupported range")
                return
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # the last N bytes
                start = max(0, size - int(match.group(2)))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if body:
            with target.open("rb") as handle:
                handle.seek(start)
                remaining = length
                while remaining > 0:
                    block = handle.read(min(1 << 20, remaining))
                    if not block:
                        break
                    self.wfile.write(block)
                    remaining -= len(block)
                    sent += len(block)
        self.log_message('"%s" %d %d', self.requestline, status, sent)

    def log_message(self, format: str, *args: Any) -> None:
        """One line per request on standard error (the component's log)."""
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")
        sys.stderr.flush()


class StorageServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server over one folder."""

    daemon_threads = True

    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        super().__init__(("127.0.0.1", port), StorageHandler)


def bytes_served(log: Path) -> int:
    """Total body bytes the storage server sent, from its log."""
    total = 0
    if not log.exists():
        return 0
    for line in log.read_text().splitlines():
        parts = line.rsplit(" ", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            total += int(parts[2])
    return total


def main(argv: list[str] | None = None) -> int:
    """Serve ROOT on 127.0.0.1:PORT until stopped."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m escape_portal.embedded.storage_http ROOT PORT", file=sys.stderr)
        return 2
    server = StorageServer(Path(args[0]), int(args[1]))
    print(
        f"serving {server.root} on http://127.0.0.1:{args[1]} (pid {os.getpid()})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
