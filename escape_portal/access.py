"""Open lake files in the notebook: the one data path of the CLI, REST API, kernel and widgets.

For each file, the first that works, in the order :mod:`escape_portal.replicas` chooses:

1. **mounted**: a replica on the storage element mounted into the compute (a local path,
   read in place);
2. **cache**: a copy already in the portal's download cache (size checked);
3. **download**: the nearest replica over the protocol that fits the compute
   (``root://``, ``davs://``/``https://`` with a storage-audience token, ``file://`` on the
   compute's own site) is copied into the cache — streamed, adler32-verified on the way,
   renamed into place only when complete, so an interrupted download never looks
   complete; on an error (storage down, 403, checksum mismatch) the next replica. The
   cache is bounded: least recently used files go first. Collections download several
   files at once.

Instead of downloading, a remote replica can be **streamed** (``open(did, stream=True)``,
``fits(did, stream=True)``) through the ``rucio://`` filesystem
(:mod:`escape_portal.rucio_fs`): byte ranges, so one FITS header costs a few blocks.

Readers return astropy objects: :meth:`Access.fits` (an ``HDUList``), :meth:`Access.table`.

Files that are not in the lake (a VO result's ``access_url``) are downloaded into the
same cache by :meth:`Cache.fetch_url`, as atomically (size checked against
``Content-Length`` where the server sends one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import requests

from escape_portal.errors import LakeError, NotFound
from escape_portal.integrity import write_verified
from escape_portal.lake import DID, FileInfo, FileReplicas, Lake
from escape_portal.lake.models import as_did
from escape_portal.replicas import Choice, NotAvailableHere, ReplicaChooser, Way
from escape_portal.storage import download, unreadable
from escape_portal.topology import Topology

__all__ = ["Access", "Cache", "Located", "NotAvailableHere"]

DEFAULT_CACHE_LIMIT = 10 * 2**30
DOWNLOAD_TIMEOUT = 60.0
#: Bytes fetched per range request when streaming.
STREAM_BLOCK = 256 * 1024
#: Files downloaded at once.
DEFAULT_WORKERS = 4


def default_cache_limit() -> int:
    """``$ESCAPE_PORTAL_CACHE_LIMIT`` bytes, else 10 GiB."""
    return int(os.environ.get("ESCAPE_PORTAL_CACHE_LIMIT", DEFAULT_CACHE_LIMIT))


def default_cache_dir() -> Path:
    """``$ESCAPE_PORTAL_CACHE``, else ``$XDG_CACHE_HOME/escape-portal/files``."""
    if os.environ.get("ESCAPE_PORTAL_CACHE"):
        return Path(os.environ["ESCAPE_PORTAL_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "escape-portal" / "files"


@dataclass
class Cache:
    """A bounded folder of verified copies, ``ROOT/scope/name``."""

    root: Path
    limit_bytes: int = DEFAULT_CACHE_LIMIT

    def path_for(self, file: FileInfo) -> Path:
        """Where ``file`` lives in the cache."""
        return self.root / file.scope / file.name

    def get(self, file: FileInfo) -> Path | None:
        """The cached copy of ``file`` if complete (right size), touched as recently used."""
        path = self.path_for(file)
        try:
            if path.stat().st_size != file.bytes:
                return None
        except FileNotFoundError:
            return None
        os.utime(path)
        return path

    def entries(self) -> Iterator[Path]:
        """Complete files in the cache (``.part`` files are never complete)."""
        if not self.root.exists():
            return
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.endswith(".part"):
                yield path

    def usage(self) -> tuple[int, int]:
        """Number of files and bytes in the cache."""
        sizes = [p.stat().st_size for p in self.entries()]
        return len(sizes), sum(sizes)

    def fetch_url(
        self,
        url: str,
        *,
        timeout: float = DOWNLOAD_TIMEOUT,
        on_bytes: Callable[[int], None] | None = None,
    ) -> Path:
        """Download ``url`` (not a lake file) into the cache; reuse a complete copy.

        The copy lives at ``ROOT/_web/<hash of the URL>/<file name>``; it is written to a
        hidden ``.part`` file and renamed into place only when complete (and as long as
        ``Content-Length`` says), so an interrupted download never looks complete.

        Raises
        ------
        LakeError
            If the download fails (nothing incomplete is kept) or does not fit the cache.

        """
        if not url.startswith(("http://", "https://")):
            raise LakeError(
                f"Only http(s) URLs can be downloaded, not {url!r}.",
                "Open it with the tool its scheme needs.",
            )
        digest = hashlib.sha256(url.encode()).hexdigest()[:24]
        name = os.path.basename(url.split("?", 1)[0].rstrip("/")) or "download"
        target = self.root / "_web" / digest / name
        if target.is_file():
            os.utime(target)
            return target
        try:
            with requests.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                length = response.headers.get("Content-Length")
                encoded = response.headers.get("Content-Encoding", "identity") != "identity"
                expected = int(length) if length and length.isdigit() and not encoded else None
                if expected is not None:
                    self.make_room(expected)
                response.raw.decode_content = True
                write_verified(
                    response.raw,
                    target,
                    expected_bytes=expected,
                    expected_adler32=None,
                    label=url,
                    on_bytes=on_bytes,
                )
        except (OSError, ValueError, requests.RequestException) as exc:
            raise LakeError(
                f"Downloading {url} failed: {exc}",
                "Nothing incomplete was kept; try again later.",
            ) from exc
        return target

    def make_room(self, needed: int, keep: set[Path] | None = None) -> int:
        """Evict least recently used files until ``needed`` more bytes fit; return bytes freed.

        Raises
        ------
        LakeError
            If ``needed`` alone exceeds the cache's limit.
        """
        if needed > self.limit_bytes:
            raise LakeError(
                f"The file ({needed} bytes) is larger than the download cache "
                f"({self.limit_bytes} bytes, {self.root}).",
                "Raise ESCAPE_PORTAL_CACHE_LIMIT, or make the data available near compute.",
            )
        keep = keep or set()
        files = sorted(self.entries(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        freed = 0
        for path in files:
            if total + needed <= self.limit_bytes:
                break
            if path in keep:
                continue
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            total -= size
            freed += size
        return freed


@dataclass(frozen=True)
class Located:
    """How one file will be read here (the first source of its :class:`Choice`)."""

    file: FileInfo
    way: Way
    path: Path | None
    source: str | None = None
    choice: Choice | None = None

    @property
    def reason(self) -> str:
        """Why it is read from there, in the user's words."""
        return self.choice.explain() if self.choice else ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "did": str(self.file.did),
            "bytes": self.file.bytes,
            "way": self.way,
            "path": str(self.path) if self.path else None,
            "source": self.source,
            "reason": self.reason,
        }


class Access:
    """Reading lake files from this session: the one data path.

    Parameters
    ----------
    lake
        The lake.
    cache
        The download cache (default: :func:`default_cache_dir`, limit
        ``$ESCAPE_PORTAL_CACHE_LIMIT`` bytes or 10 GiB).
    mounted_rse
        Storage element mounted into this compute (default: the lake's configuration).
    mount_path
        The local folder where that storage's namespace is mounted (default: the lake's
        configuration). Replicas there are read in place: from their ``file://`` URL when
        the storage element publishes one, else at ``mount_path`` + the replica's path
        below the storage element's protocol prefix (e.g. an EOS or CephFS mount of a
        storage Rucio reaches over ``root://`` or ``davs://``).
    compute_site
        The compute's site (default: configured, else detected).
    protocols
        Read remote replicas only over these protocols, in this order (e.g.
        ``("root",)``); default: by LAN/WAN (:mod:`escape_portal.replicas`).
    workers
        Files downloaded at once by :meth:`paths`.
    topology
        The topology the replicas are ranked by (default: loaded on first need).
    """

    def __init__(
        self,
        lake: Lake,
        cache: Cache | None = None,
        mounted_rse: str | None = None,
        mount_path: str | Path | None = None,
        *,
        compute_site: str | None = None,
        protocols: Sequence[str] | None = None,
        workers: int = DEFAULT_WORKERS,
        topology: Topology | None = None,
    ) -> None:
        self.lake = lake
        self.cache = cache or Cache(default_cache_dir(), default_cache_limit())
        self.mounted_rse = mounted_rse or lake.config.mounted_rse
        mount = mount_path or lake.config.mount_path
        self.mount_path = Path(mount).expanduser() if mount else None
        self.workers = max(1, workers)
        self.chooser = ReplicaChooser(
            lake,
            compute_site=compute_site,
            mounted=self._mounted,
            mounted_rse=self.mounted_rse,
            cached=self.cache.get,
            protocols=protocols,
            topology=topology,
        )
        self._room = threading.Lock()
        self._fs: Any = None

    # -- which replica ------------------------------------------------------------------

    def choices(self, did: DID | str) -> list[Choice]:
        """The replica choice of each file of ``did`` (two Rucio requests for a file DID).

        Raises
        ------
        NotFound
            If ``did`` does not exist.
        """
        d = as_did(did)
        info = self.lake.info(d)
        if info.type == "file":
            rows = list(self.lake.file_replicas([d]))
            if not rows:
                raise NotFound(f"No such file: {d}.")
            rep = rows[0]
            file = FileInfo(d.scope, d.name, int(rep.bytes or info.bytes or 0), rep.adler32)
            return [self.chooser.choose(file, rep)]
        files = list(self.lake.files(d))
        replicas = {(r.scope, r.name): r for r in self.lake.file_replicas(f.did for f in files)}
        return [self.chooser.choose(f, replicas.get((f.scope, f.name))) for f in files]

    def where(self, did: DID | str) -> list[Choice]:
        """Where each file of ``did`` is read from here and why (same as :meth:`choices`)."""
        return self.choices(did)

    def locate(self, did: DID | str) -> list[Located]:
        """How each file of ``did`` would be read here (one replica look-up per 100 files).

        Raises
        ------
        NotAvailableHere
            If a file has no replica readable from here.
        """
        return [self._located(c) for c in self.choices(did)]

    def _locate(self, file: FileInfo, replicas: FileReplicas | None) -> Located:
        return self._located(self.chooser.choose(file, replicas))

    def _located(self, choice: Choice) -> Located:
        best = choice.best
        if best is None:
            raise unreadable(choice, "Reading")
        if best.kind == "remote":
            return Located(choice.file, "download", None, best.url, choice)
        return Located(choice.file, best.kind, best.path, None, choice)

    def _mounted(self, replicas: FileReplicas, rse: str) -> Path | None:
        """The replica's path on the storage mounted here, if it is there."""
        path = replicas.local_path(rse)
        if path is not None and path.is_file():
            return path
        if self.mount_path is None:
            return None
        prefixes = [
            "/" + str(p.get("prefix") or "").strip("/")
            for p in self.lake.rse_protocols().get(rse, [])
        ]
        for pfn in replicas.pfns.get(rse, []):
            replica_path = unquote(urlsplit(pfn).path)
            for prefix in sorted(prefixes, key=len, reverse=True):
                base = prefix.rstrip("/") + "/"
                if replica_path.startswith(base):
                    candidate = self.mount_path / replica_path[len(base) :]
                    if candidate.is_file():
                        return candidate
        return None

    # -- local paths --------------------------------------------------------------------

    def paths(self, did: DID | str, *, on_bytes: Callable[[int], None] | None = None) -> list[Path]:
        """Local paths of every file of ``did``: mounted, cached, or downloaded now.

        Downloads run ``workers`` at a time, each verified and atomic, each trying the
        next replica on an error.
        """
        return self.fetch_all([item.choice for item in self.locate(did) if item.choice], on_bytes)

    def fetch_all(
        self, choices: list[Choice], on_bytes: Callable[[int], None] | None = None
    ) -> list[Path]:
        """Local paths of the files of ``choices``, downloading (in parallel) what is remote."""
        remote = [c for c in choices if c.way == "download"]
        if len(remote) <= 1 or self.workers == 1:
            return [self.fetch(c, on_bytes) for c in choices]
        lock = threading.Lock()

        def progress(n: int) -> None:
            if on_bytes is not None:
                with lock:
                    on_bytes(n)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="escape-download") as pool:
            return list(pool.map(lambda c: self.fetch(c, progress), choices))

    def fetch(self, choice: Choice, on_bytes: Callable[[int], None] | None = None) -> Path:
        """A local path of the file of ``choice``: mounted or cached, else downloaded.

        Raises
        ------
        LakeError
            If no replica gives the right bytes (nothing incomplete is kept).
        """
        best = choice.best
        if best is None:
            raise unreadable(choice, "Reading")
        if best.kind != "remote" and best.path is not None:
            return best.path
        target = self.cache.path_for(choice.file)
        with self._room:
            self.cache.make_room(choice.file.bytes)
        download(self.lake, choice, target, on_bytes=on_bytes)
        return target

    def path(self, did: DID | str) -> Path:
        """Local path of one file DID.

        Raises
        ------
        LakeError
            If ``did`` is a collection: use :meth:`paths`.
        """
        found = self.paths(did)
        if len(found) != 1:
            raise LakeError(f"{did} holds {len(found)} files.", "Use paths() for collections.")
        return found[0]

    # -- reading ------------------------------------------------------------------------

    def filesystem(self) -> Any:
        """The ``rucio://`` filesystem of this access (same lake, cache, mount and choice).

        See :class:`escape_portal.rucio_fs.RucioFileSystem`.
        """
        from escape_portal.rucio_fs import RucioFileSystem

        if self._fs is None:
            self._fs = RucioFileSystem(access=self, skip_instance_cache=True)
        return self._fs

    def open(self, did: DID | str, *, stream: bool = False) -> BinaryIO:
        """A binary file object of one file DID.

        With ``stream=True`` a file that is neither mounted nor cached is read from its
        replica by byte ranges (``root://``, ``davs://``, ``https://``) instead of being
        downloaded first: reading a header fetches a few blocks, not the file.
        """
        if stream:
            d = as_did(did)
            handle: BinaryIO = self.filesystem().open(
                f"rucio://{d.scope}/{d.name}", "rb", block_size=STREAM_BLOCK
            )
            return handle
        return self.path(did).open("rb")

    def fits(self, did: DID | str, *, stream: bool = False) -> Any:
        """An ``astropy.io.fits.HDUList`` of one file DID (lazy).

        Local files are memory-mapped; with ``stream=True`` a remote one is read by byte
        ranges, so only the HDUs you touch are fetched.
        """
        from astropy.io import fits

        if stream:
            return fits.open(self.open(did, stream=True), lazy_load_hdus=True)
        return fits.open(self.path(did), memmap=True, lazy_load_hdus=True)

    def table(self, did: DID | str, hdu: int | str = 1) -> Any:
        """An ``astropy.table.Table`` from a FITS table HDU of one file DID."""
        from astropy.table import Table

        return Table.read(self.path(did), hdu=hdu)

    def clear_cache(self) -> None:
        """Remove every cached copy."""
        shutil.rmtree(self.cache.root, ignore_errors=True)
