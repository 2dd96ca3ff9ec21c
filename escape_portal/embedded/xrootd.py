"""Grid storage of the embedded lake: one XRootD server per storage element.

Production ESCAPE storage (dCache, EOS, StoRM, XRootD) speaks ``root://`` and
``davs://`` (WebDAV over HTTPS) and authorises WLCG-profile bearer tokens. Each storage
element listed in :data:`XROOTD_RSES` runs one ``xrootd`` process (Debian's
``xrootd-server``; independent failure, as real sites), serving its folder
``DATA_DIR/rse/<RSE>`` under the base path ``/<RSE>/``:

- ``root://localhost:ROOT_PORT//<RSE>/...``: the XRootD protocol, TLS-capable, tokens
  through the ``ztn`` security protocol or ``?authz=Bearer%20TOKEN``;
- ``https://localhost:HTTPS_PORT/<RSE>/...``: HTTP/WebDAV over TLS (XrdHttp): ranged
  GET, PUT, PROPFIND, MKCOL, DELETE, ``Want-Digest: adler32``, third-party copy (pull).

There is no other way in: no anonymous protocol serves the storage folders. What each
server reads from its files is in its log (``ofs.trace read``), summed by
:func:`bytes_read`.

TLS comes from the lake's PKI (:mod:`escape_portal.embedded.pki`); tokens are checked by
the SciTokens plugin against the lake's issuer (:mod:`escape_portal.embedded.tokens`),
with the storage element's audience (:func:`escape_portal.embedded.tokens.storage_audience`)
and the scopes ``storage.read:/`` / ``storage.modify:/`` relative to the base path. An
``acc.authdb`` grants nothing: without a valid token everything is refused.

How it is run, and why:

- xrootd refuses to run as root: when the lake runs as root, the server runs as Debian's
  ``xrootd`` user. Its storage folders get POSIX ACLs (``setfacl``) that give that user
  ``rwX``, also as default ACLs so that files the lake writes in place (seeding, the
  POSIX transfertool, tests) stay readable and writable through XRootD; any ancestor
  of the data directory that the user cannot traverse (``/root`` is 0700) gets a
  traverse-only ACL entry ``u:xrootd:x``. Its TLS key is a copy owned by it, mode 0400.
- 5.5.3's ``xrd.port`` has no bind address: the supervisor binds both sockets on
  127.0.0.1 and hands them over the systemd way (``LISTEN_FDS=2``, fds 3 and 4,
  ``LISTEN_PID`` set by a ``sh`` that then execs xrootd, so it is xrootd's pid).
- scitokens-cpp fetches an issuer's keys only over https and ignores CA environment
  variables, so it cannot reach the lake's self-signed issuer: the issuer's JWKS is
  written into its key cache (``XDG_CACHE_HOME/scitokens/scitokens_cpp.sqllite``)
  before each start, with ``next_update`` and ``expires`` ten years ahead, so it never
  tries to refresh them (a refresh would fail and, past ``expires``, drop the keys).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from escape_portal.embedded.layout import LakePaths
from escape_portal.embedded.pki import LakePKI, ensure_pki
from escape_portal.embedded.tokens import signing_key, storage_audience

#: Storage elements served by XRootD: all of them. INFN-NA-DISK holds the 110,000-file
#: scale datasets; its third-party copies stay ``file://`` (see
#: :data:`POSIX_COPY_RSES`), and its tree gets its ACLs walked once, not at each start.
XROOTD_RSES = ("CERN-DISK", "DESY-DISK", "PIC-DISK", "LAPP-DISK", "INFN-NA-DISK")
#: Storage elements whose third-party copies (from and to them) stay ``file://`` with the
#: POSIX transfertool: a gfal2 davs copy costs ~0.7 s a file, too much for the scale
#: datasets' 10,000-file copies. Their ``root``/``davs`` serve reads and writes only.
POSIX_COPY_RSES = ("INFN-NA-DISK",)
XROOTD_USER = "xrootd"
XROOTD_BINARY = "/usr/bin/xrootd"
START_TIMEOUT = 30.0
#: How long the seeded issuer keys stay fresh in scitokens-cpp's cache (ten years).
KEY_CACHE_SECONDS = 10 * 365 * 86400


class XRootDError(RuntimeError):
    """An XRootD server could not be prepared or started; the message says what to do."""


@dataclass(frozen=True)
class XRootDEndpoint:
    """Where one storage element's XRootD server listens."""

    rse: str
    root_port: int
    https_port: int

    @property
    def base_path(self) -> str:
        """The storage element's area in the server's namespace (Rucio's prefix)."""
        return base_path(self.rse)

    @property
    def root_url(self) -> str:  # noqa: D102
        return f"root://localhost:{self.root_port}/{self.base_path}/"

    @property
    def https_url(self) -> str:  # noqa: D102
        return f"https://localhost:{self.https_port}{self.base_path}/"


def base_path(rse: str) -> str:
    """``/<RSE>``: the storage element's base path (tokens' scopes are relative to it)."""
    return f"/{rse}"


def component(rse: str) -> str:
    """The supervisor's name of the XRootD server of ``rse``."""
    return f"xrootd-{rse}"


def port_keys(rse: str) -> tuple[str, str]:
    """Keys of the saved ports (``run/ports.json``, ``state.json``) of ``rse``'s server."""
    return f"xrootd_{rse}_root", f"xrootd_{rse}_https"


def _folder(paths: LakePaths, rse: str) -> Path:
    return paths.etc / "xrootd" / rse


def config_file(paths: LakePaths, rse: str) -> Path:
    """``DATA_DIR/etc/xrootd/<RSE>.cfg``."""
    return paths.etc / "xrootd" / f"{rse}.cfg"


def _run_dir(paths: LakePaths, rse: str) -> Path:
    return paths.run / "xrootd" / rse


def _as_root() -> bool:
    return os.geteuid() == 0


def _service_user() -> pwd.struct_passwd:
    if not _as_root():
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(XROOTD_USER)
    except KeyError as exc:
        raise XRootDError(
            f"The '{XROOTD_USER}' user does not exist; install the XRootD server "
            "(Debian: apt-get install xrootd-server xrootd-scitokens-plugins) or run "
            "scripts/setup.sh."
        ) from exc


def _own(path: Path, user: pwd.struct_passwd, mode: int) -> None:
    if _as_root():
        os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(path, mode)


def _setfacl(*args: str) -> None:
    setfacl = shutil.which("setfacl")
    if setfacl is None:
        raise XRootDError(
            "setfacl is not installed; the lake gives the xrootd user access to its "
            "storage folders with it (Debian: apt-get install acl, or run scripts/setup.sh)."
        )
    result = subprocess.run(
        [setfacl, *args], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        raise XRootDError(
            f"Giving the xrootd user access failed ({result.stderr.strip()}); the data "
            "directory must be on a file system with POSIX ACLs (ext4, xfs)."
        )


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may search ``path`` by its mode bits (ACLs aside)."""
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.pw_gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def grant_access(paths: LakePaths, rses: tuple[str, ...] = XROOTD_RSES) -> None:
    """Let the xrootd user reach the data directory and read/write the storage folders.

    Only when the lake runs as root (otherwise xrootd runs as the lake's own user).
    Ancestors of the data directory it cannot traverse get ``u:xrootd:x`` (traverse
    only, nothing listed or read); each storage folder gets ``u:xrootd:rwX``,
    recursively and as the default ACL of new files and folders.
    """
    if not _as_root():
        return
    user = _service_user()
    for folder in [paths.rse_root, *paths.rse_root.parents]:
        if not _can_traverse(folder, user):
            _setfacl("-m", f"u:{user.pw_name}:x", str(folder))
    for rse in rses:
        folder = paths.rse_dir(rse)
        folder.mkdir(parents=True, exist_ok=True)
        marker = _run_dir(paths, rse) / "acl-granted"
        if marker.exists():
            # Only the folder itself: its tree inherited the default ACL since.
            _setfacl("-m", f"u:{user.pw_name}:rwX,d:u:{user.pw_name}:rwX", str(folder))
            continue
        _setfacl("-R", "-m", f"u:{user.pw_name}:rwX,d:u:{user.pw_name}:rwX", str(folder))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def seed_key_cache(cache_home: Path, issuer: str, jwks: Mapping[str, object]) -> Path:
    """Write ``issuer``'s keys into scitokens-cpp's key cache under ``cache_home``.

    ``next_update`` and ``expires`` are :data:`KEY_CACHE_SECONDS` ahead, so the plugin
    never tries to fetch them from the issuer (see the module's docstring).
    """
    folder = cache_home / "scitokens"
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "scitokens_cpp.sqllite"
    now = int(time.time())
    entry = json.dumps(
        {"jwks": jwks, "next_update": now + KEY_CACHE_SECONDS, "expires": now + KEY_CACHE_SECONDS}
    )
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db, db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS keycache "
            "(issuer text UNIQUE PRIMARY KEY NOT NULL,keys text NOT NULL)"
        )
        db.execute("DELETE FROM keycache WHERE issuer = ?", (issuer,))
        db.execute("INSERT INTO keycache VALUES (?, ?)", (issuer, entry))
    return database


def write_config(paths: LakePaths, endpoint: XRootDEndpoint, issuer: str) -> Path:
    """Write the server's configuration, authorisation files, TLS copy and key cache.

    Returns
    -------
    Path
        ``DATA_DIR/etc/xrootd/<RSE>.cfg``.
    """
    rse = endpoint.rse
    user = _service_user()
    pki: LakePKI = ensure_pki(paths.pki)
    folder = _folder(paths, rse)
    folder.mkdir(parents=True, exist_ok=True)
    run = _run_dir(paths, rse)
    run.mkdir(parents=True, exist_ok=True)
    _own(run, user, 0o700)

    tls = folder / "tls"
    tls.mkdir(exist_ok=True)
    for source, name, mode in (
        (pki.host_cert, "host.pem", 0o444),
        (pki.host_key, "host.key", 0o400),
    ):
        target = tls / name
        with contextlib.suppress(FileNotFoundError):
            os.chmod(target, 0o600)
        shutil.copyfile(source, target)
        _own(target, user, mode)
    _own(tls, user, 0o700)

    authdb = folder / "authdb"
    authdb.write_text("# Nothing is granted without a token (see scitokens.cfg).\n")
    scitokens = folder / "scitokens.cfg"
    scitokens.write_text(
        "[Global]\n"
        f"audience = {storage_audience(rse)}\n"
        "onmissing = passthrough\n"
        "\n"
        "[Issuer lake]\n"
        f"issuer = {issuer}\n"
        f"base_path = {endpoint.base_path}\n"
    )
    cache = run / "cache"
    database = seed_key_cache(cache, issuer, signing_key(paths.root).jwks())
    for path in (cache, database.parent, database):
        _own(path, user, 0o700 if path.is_dir() else 0o600)

    config = config_file(paths, rse)
    config.write_text(
        f"""# Written by escape_portal.embedded.xrootd at each start of the lake; edits are lost.
# The listening sockets (127.0.0.1 only) are handed over by the supervisor (LISTEN_FDS).
all.role server
all.sitename {rse}
all.export {endpoint.base_path}/
oss.localroot {paths.rse_root}
all.adminpath {run.parent}
all.pidpath {run}
xrd.port {endpoint.root_port}
xrd.protocol XrdHttp:{endpoint.https_port} libXrdHttp.so

xrd.tls {tls / "host.pem"} {tls / "host.key"}
xrd.tlsca certdir {pki.certdir}
xrootd.tls capable all

# root://: tokens through ztn; unix identifies token-less clients, who get nothing.
xrootd.seclib libXrdSec.so
sec.protocol ztn
sec.protocol unix
sec.protbind * ztn unix

ofs.authorize 1
acc.authdb {authdb}
ofs.authlib ++ libXrdAccSciTokens.so config={scitokens}
# XrdHttp 5.5.3 passes the bearer token to the plugin only as the authz CGI.
http.header2cgi Authorization authz

xrootd.chksum adler32

# Each read, with its length and offset, in the log: the storage's account of what it
# served (bytes_read sums it).
ofs.trace read

# Third-party copy: root:// (xrdcp --server pulls) and davs:// (HTTP-TPC, pull).
ofs.tpc autorm echo pgm /usr/bin/xrdcp --server
http.exthandler xrdtpc libXrdHttpTPC.so
"""
    )
    return config


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise XRootDError(f"Port {port} on 127.0.0.1 is already in use.") from exc
    sock.listen(128)
    return sock


def start(
    paths: LakePaths, endpoint: XRootDEndpoint, issuer: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start ``endpoint``'s xrootd on sockets bound here on 127.0.0.1.

    The caller waits for it with :func:`wait_ready` and stops it by pid (its own
    process group).
    """
    if not Path(XROOTD_BINARY).exists():
        raise XRootDError(
            "The XRootD server is not installed (Debian: apt-get install xrootd-server "
            "xrootd-server-plugins xrootd-scitokens-plugins), or run scripts/setup.sh."
        )
    grant_access(paths, (endpoint.rse,))
    config = write_config(paths, endpoint, issuer)
    user = _service_user()
    root_sock, https_sock = _listen(endpoint.root_port), _listen(endpoint.https_port)
    fds = (root_sock.fileno(), https_sock.fileno())

    def hand_over() -> None:
        # In the child, before exec: the two sockets become fds 3 and 4 (systemd's order).
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        for target, fd in enumerate(high, start=3):
            os.dup2(fd, target)
            os.close(fd)

    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(_run_dir(paths, endpoint.rse)),
        "XDG_CACHE_HOME": str(_run_dir(paths, endpoint.rse) / "cache"),
        "X509_CERT_DIR": str(paths.pki / "certificates"),
        "LISTEN_FDS": "2",
        "LC_ALL": "C",
    }
    as_root = _as_root()
    try:
        process = subprocess.Popen(
            [
                "/bin/sh",
                "-c",
                'export LISTEN_PID=$$; exec "$0" "$@"',
                XROOTD_BINARY,
                "-c",
                str(config),
                "-n",
                endpoint.rse,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=_run_dir(paths, endpoint.rse),
            start_new_session=True,
            pass_fds=(3, 4),
            preexec_fn=hand_over,  # the supervisor runs no threads here
            user=user.pw_uid if as_root else None,
            group=user.pw_gid if as_root else None,
            extra_groups=[] if as_root else None,
        )
    finally:
        root_sock.close()
        https_sock.close()
    return process


def ready(endpoint: XRootDEndpoint, ca_bundle: Path) -> bool:
    """Whether both listeners answer (the https one through TLS with the lake's CA)."""
    try:
        with socket.create_connection(("127.0.0.1", endpoint.root_port), timeout=2):
            pass
        response = requests.head(endpoint.https_url, verify=str(ca_bundle), timeout=3)
    except (OSError, requests.RequestException):
        return False
    return response.status_code in (200, 401, 403, 404)


#: A read in the server's log (``ofs.trace read``): ``ofs_read: LENGTH@OFFSET fn=PATH``.
_READ = re.compile(r" ofs_read: (\d+)@(\d+) fn=(\S+)")


def bytes_read(paths: LakePaths, rse: str) -> int:
    """Bytes the XRootD server of ``rse`` has served from its files, by its own log.

    Every read reaches XRootD's file system layer, whatever the protocol (root://,
    davs:// GETs through XrdHttp, the source side of third-party copies), and
    ``ofs.trace read`` logs it as ``ofs_read: LENGTH@OFFSET fn=PATH`` as it happens. A
    read asks for ``LENGTH`` bytes; past the end of the file it gets fewer, so each is
    counted up to the file's current size (the asked length if the file is gone). The
    count covers the server's log since the lake's data directory was made: compare
    two readings.

    Parameters
    ----------
    paths
        The lake's layout (its log is ``logs/xrootd-<RSE>.log``).
    rse
        The storage element.
    """
    log = paths.logs / f"{component(rse)}.log"
    if not log.exists():
        return 0
    sizes: dict[str, int | None] = {}
    total = 0
    with log.open("r", errors="replace") as lines:
        for line in lines:
            match = _READ.search(line)
            if match is None:
                continue
            length, offset, name = int(match.group(1)), int(match.group(2)), match.group(3)
            if name not in sizes:
                try:
                    sizes[name] = (paths.rse_root / name.lstrip("/")).stat().st_size
                except OSError:
                    sizes[name] = None
            size = sizes[name]
            total += length if size is None else max(0, min(length, size - offset))
    return total


def wait_ready(
    endpoint: XRootDEndpoint,
    ca_bundle: Path,
    alive: Callable[[], bool],
    timeout: float = START_TIMEOUT,
) -> float:
    """Wait until ``endpoint`` answers; return the seconds it took.

    Raises
    ------
    XRootDError
        If the process exits (``alive()`` false) or does not answer within ``timeout``.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not alive():
            raise XRootDError(f"The XRootD server of {endpoint.rse} exited at start.")
        if ready(endpoint, ca_bundle):
            return time.monotonic() - started
        time.sleep(0.1)
    raise XRootDError(f"The XRootD server of {endpoint.rse} did not answer within {timeout:.0f} s.")
