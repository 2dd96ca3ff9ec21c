"""Open lake files in the notebook.

For each file, the first that works:

1. **mounted**: a replica on the storage element mounted into the compute (a local path,
   read in place);
2. **cache**: a copy already in the portal's download cache (size checked);
3. **download**: a replica readable from here (a local ``file://`` path, or ``http(s)``)
   is copied into the cache — streamed, adler32-verified, renamed into place only when
   complete, so an interrupted download never looks complete. The cache is bounded:
   least recently used files go first.

Instead of downloading, a remote replica offered over HTTP(S) can be **streamed**
(``open(did, stream=True)``, ``fits(did, stream=True)``): fsspec reads it by byte ranges,
so one FITS header costs a few blocks, not the file.

Readers return astropy objects: :meth:`Access.fits` (an ``HDUList``), :meth:`Access.table`.

Files that are not in the lake (a VO result's ``access_url``) are downloaded into the
same cache by :meth:`Cache.fetch_url`, as atomically (size checked against
``Content-Length`` where the server sends one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote, urlsplit

import requests

from escape_portal.errors import LakeError, NotFound
from escape_portal.integrity import copy_verified, write_verified
from escape_portal.lake import DID, FileInfo, FileReplicas, Lake
from escape_portal.lake.models import as_did

DEFAULT_CACHE_LIMIT = 10 * 2**30
DOWNLOAD_TIMEOUT = 60.0
#: Bytes fetched per range request when streaming.
STREAM_BLOCK = 256 * 1024


class NotAvailableHere(LakeError):
    """No replica of a file can be read from this machine."""

    exit_code = 8
    http_status = 409


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


Way = Literal["mounted", "cache", "download"]


@dataclass(frozen=True)
class Located:
    """How one file will be read here."""

    file: FileInfo
    way: Way
    path: Path | None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "did": str(self.file.did),
            "bytes": self.file.bytes,
            "way": self.way,
            "path": str(self.path) if self.path else None,
            "source": self.source,
        }


class Access:
    """Reading lake files from this session.

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
    """

    def __init__(
        self,
        lake: Lake,
        cache: Cache | None = None,
        mounted_rse: str | None = None,
        mount_path: str | Path | None = None,
    ) -> None:
        self.lake = lake
        self.cache = cache or Cache(default_cache_dir(), default_cache_limit())
        self.mounted_rse = mounted_rse or lake.config.mounted_rse
        mount = mount_path or lake.config.mount_path
        self.mount_path = Path(mount).expanduser() if mount else None

    def _files(self, did: DID) -> list[FileInfo]:
        info = self.lake.info(did)
        if info.type == "file":
            file = next(iter(self.lake.files(did)), None)
            if file is None:
                raise NotFound(f"No such file: {did}.")
            return [file]
        return list(self.lake.files(did))

    def locate(self, did: DID | str) -> list[Located]:
        """How each file of ``did`` would be read here (one replica look-up per 100 files)."""
        files = self._files(as_did(did))
        replicas = {(r.scope, r.name): r for r in self.lake.file_replicas(f.did for f in files)}
        return [self._locate(f, replicas.get((f.scope, f.name))) for f in files]

    def _locate(self, file: FileInfo, replicas: FileReplicas | None) -> Located:
        states = replicas.states if replicas else {}
        if self.mounted_rse and states.get(self.mounted_rse) == "AVAILABLE" and replicas:
            path = self._mounted(replicas, self.mounted_rse)
            if path is not None:
                return Located(file, "mounted", path)
        cached = self.cache.get(file)
        if cached:
            return Located(file, "cache", cached)
        for rse, state in sorted(states.items()):
            if state != "AVAILABLE" or replicas is None:
                continue
            local = replicas.local_path(rse)
            if local is not None and local.is_file():
                return Located(file, "download", None, str(local))
            url = replicas.url(rse)
            if url:
                return Located(file, "download", None, url)
        raise NotAvailableHere(
            f"No replica of {file.did} can be read from this machine"
            + (f" (replicas at {', '.join(sorted(states))})" if states else "")
            + ".",
            f"Bring it near your compute: escape-portal make-available {file.did}",
        )

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

    def paths(self, did: DID | str, *, on_bytes: Callable[[int], None] | None = None) -> list[Path]:
        """Local paths of every file of ``did``: mounted, cached, or downloaded now."""
        located = self.locate(did)
        return [self._fetch(item, on_bytes) for item in located]

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

    def _fetch(self, item: Located, on_bytes: Callable[[int], None] | None) -> Path:
        if item.path is not None:
            return item.path
        assert item.source is not None
        target = self.cache.path_for(item.file)
        self.cache.make_room(item.file.bytes)
        try:
            if item.source.startswith(("http://", "https://")):
                with requests.get(item.source, stream=True, timeout=DOWNLOAD_TIMEOUT) as response:
                    response.raise_for_status()
                    response.raw.decode_content = True
                    write_verified(
                        response.raw,
                        target,
                        expected_bytes=item.file.bytes,
                        expected_adler32=item.file.adler32,
                        label=str(item.file.did),
                        on_bytes=on_bytes,
                    )
            else:
                copy_verified(
                    Path(item.source),
                    target,
                    expected_bytes=item.file.bytes,
                    expected_adler32=item.file.adler32,
                )
                if on_bytes:
                    on_bytes(item.file.bytes)
        except (OSError, ValueError, requests.RequestException) as exc:
            raise LakeError(
                f"Downloading {item.file.did} failed: {exc}",
                "Nothing incomplete was kept; try again, or make the data available near compute.",
            ) from exc
        return target

    def open(self, did: DID | str, *, stream: bool = False) -> BinaryIO:
        """A binary file object of one file DID.

        With ``stream=True`` a file that is neither mounted nor cached is read over its
        storage's HTTP(S) protocol with range requests (through fsspec) instead of being
        downloaded first: reading a header fetches a few blocks, not the file.
        """
        if stream:
            url = self.stream_url(did)
            if url is not None:
                import fsspec

                handle: BinaryIO = fsspec.open(url, mode="rb", block_size=STREAM_BLOCK).open()
                return handle
        return self.path(did).open("rb")

    def stream_url(self, did: DID | str) -> str | None:
        """The URL to stream one file DID from, or ``None`` if it is mounted or cached here.

        Raises
        ------
        NotAvailableHere
            If no replica is mounted, cached or offered over HTTP(S).
        """
        d = as_did(did)
        [file] = self._files(d)
        replicas = next(iter(self.lake.file_replicas([d])), None)
        located = self._locate(file, replicas)
        if located.path is not None or replicas is None:
            return None
        for rse, state in sorted(replicas.states.items()):
            url = replicas.url(rse) if state == "AVAILABLE" else None
            if url:
                return url
        raise NotAvailableHere(
            f"No replica of {d} can be streamed (none is offered over HTTP(S)).",
            f"Download it (escape-portal open {d}) or make it available near compute.",
        )

    def fits(self, did: DID | str, *, stream: bool = False) -> Any:
        """An ``astropy.io.fits.HDUList`` of one FITS file DID (lazy).

        Local files are memory-mapped; with ``stream=True`` a remote one is read by byte
        ranges, so only the HDUs you touch are fetched.
        """
        from astropy.io import fits

        if stream:
            url = self.stream_url(did)
            if url is not None:
                return fits.open(
                    url,
                    use_fsspec=True,
                    lazy_load_hdus=True,
                    fsspec_kwargs={"block_size": STREAM_BLOCK},
                )
        return fits.open(self.path(did), memmap=True, lazy_load_hdus=True)

    def table(self, did: DID | str, hdu: int | str = 1) -> Any:
        """An ``astropy.table.Table`` from a FITS table HDU of one file DID."""
        from astropy.table import Table

        return Table.read(self.path(did), hdu=hdu)

    def clear_cache(self) -> None:
        """Remove every cached copy."""
        shutil.rmtree(self.cache.root, ignore_errors=True)
