"""``rucio://SCOPE/NAME``: the data lake as an fsspec filesystem.

Any library that opens files through fsspec takes lake DIDs::

    import fsspec, pandas, xarray
    from astropy.io import fits

    with fsspec.open("rucio://cta/crab-2024.dl3.0001.fits") as f: ...
    fits.open("rucio://cta/crab-2024.dl3.0001.fits", use_fsspec=True)
    pandas.read_csv("rucio://user.alice/table.csv")
    xarray.open_dataset(fsspec.open("rucio://user.alice/cube.nc").open(), engine="h5netcdf")

Paths: ``""`` lists the scopes, ``SCOPE`` its containers and datasets, ``SCOPE/NAME`` a
collection's contents or one file (``SCOPE:NAME`` is accepted too). Options
(``storage_options``): ``instance`` (a configured instance; default the selected one),
``config`` (a :class:`~escape_portal.config.LakeConfig`), ``lake`` or ``access`` objects,
``compute_site``, ``protocols`` (e.g. ``["root"]``), ``cache_dir``.

Which replica is read, and over which protocol, is :mod:`escape_portal.replicas`' choice
(:meth:`RucioFileSystem.where` says why); reads go through :mod:`escape_portal.storage`
with a storage-audience token per storage element, moving to the next replica on an
error. Ranged reads fetch only the blocks asked for; a whole-file read
(:meth:`~RucioFileSystem.cat_file`, files up to :data:`WHOLE_BELOW`, a sequential read to
the end) is checked against the catalogue's adler32 on the way; :meth:`get_file`
downloads into the bounded cache of :mod:`escape_portal.access`, verified and atomic.
Opening a remote file costs two Rucio requests (the DID, its replicas); both answers are
kept for :data:`METADATA_TTL` seconds.

``put`` (uploads) is not here yet.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from escape_portal.access import Access, Cache, default_cache_dir, default_cache_limit
from escape_portal.config import LakeConfig, select_instance
from escape_portal.errors import InvalidRequest, NotFound
from escape_portal.integrity import copy_verified
from escape_portal.lake import DID, FileInfo, FileReplicas, Lake
from escape_portal.replicas import Choice, Skipped, Source
from escape_portal.storage import Reader, StorageError, open_reader, read_verified, scrub

#: Files up to this size are read whole, verified, when opened (a failover can still
#: pick another replica for them).
WHOLE_BELOW = 4 * 2**20
#: Seconds a DID's type and replicas are remembered.
METADATA_TTL = 30.0
DEFAULT_BLOCK = 256 * 1024


class RucioFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """The data lake's DIDs as files and folders (protocol ``rucio``).

    Parameters
    ----------
    instance
        A configured instance's name (default: the selected one).
    config
        An instance's configuration (instead of ``instance``).
    lake
        A :class:`~escape_portal.lake.Lake` (instead of the two above).
    access
        An :class:`~escape_portal.access.Access` (its lake, cache, mount and choice).
    compute_site, protocols, cache_dir
        For a new :class:`~escape_portal.access.Access`: the compute's site, the only
        protocols to read remote replicas with, the download cache's folder.
    """

    protocol = "rucio"
    root_marker = ""

    def __init__(
        self,
        instance: str | None = None,
        *,
        config: LakeConfig | None = None,
        lake: Lake | None = None,
        access: Access | None = None,
        compute_site: str | None = None,
        protocols: list[str] | tuple[str, ...] | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if access is None:
            if lake is None:
                lake = Lake(config or select_instance(instance))
            cache = Cache(
                Path(cache_dir).expanduser() if cache_dir else default_cache_dir(),
                default_cache_limit(),
            )
            access = Access(lake, cache, compute_site=compute_site, protocols=protocols)
        self.access = access
        self.lake = access.lake
        self._meta: dict[DID, tuple[float, dict[str, Any], Choice | None]] = {}
        self._lock = threading.Lock()
        #: (file, storage element) -> why its replica is corrupt (found by a read to the
        #: end); not read again by this filesystem.
        self.corrupt: dict[tuple[DID, str], str] = {}

    # -- paths ----------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: str | list[str]) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        if text.startswith("rucio://"):
            text = text[len("rucio://") :]
        elif text.startswith("rucio:"):
            text = text[len("rucio:") :]
        if ":" in text and "/" not in text.split(":", 1)[0]:
            text = text.replace(":", "/", 1)  # scope:name
        return text.rstrip("/") if text.count("/") or text.endswith("/") else text

    @staticmethod
    def did_of(path: str) -> DID:
        """The DID of a ``rucio://SCOPE/NAME`` path.

        Raises
        ------
        InvalidRequest
            If the path names a scope or nothing, not a DID.
        """
        stripped = RucioFileSystem._strip_protocol(path)
        scope, _, name = stripped.partition("/")
        if not scope or not name:
            raise InvalidRequest(f"{path!r} names no data identifier.", "Write rucio://SCOPE/NAME.")
        return DID.parse(f"{scope}:{name}")

    @staticmethod
    def url_of(did: DID | str) -> str:
        """The ``rucio://`` URL of a DID."""
        d = did if isinstance(did, DID) else DID.parse(did)
        return f"rucio://{d.scope}/{d.name}"

    # -- metadata -------------------------------------------------------------------------

    def _entry(self, did: DID, row: Any) -> dict[str, Any]:
        kind = "file" if row.type == "file" else "directory"
        return {
            "name": f"{did.scope}/{did.name}",
            "did": str(did),
            "type": kind,
            "did_type": row.type,
            "size": int(row.bytes or 0),
            "length": row.length,
        }

    def _lookup(self, did: DID, *, replicas: bool) -> tuple[dict[str, Any], Choice | None]:
        """The DID's info and (for a file, if asked) its replica choice; two requests."""
        now = time.monotonic()
        with self._lock:
            cached = self._meta.get(did)
        if cached and now - cached[0] < METADATA_TTL and (cached[2] or not replicas):
            return cached[1], cached[2]
        row = self.lake.info(did)
        info = self._entry(did, row)
        choice = None
        if row.type == "file" and replicas:
            choice = self._choice(did, row)
            info["adler32"] = choice.file.adler32
            info["size"] = choice.file.bytes
        with self._lock:
            self._meta[did] = (now, info, choice)
        return info, choice

    def _choice(self, did: DID, row: Any) -> Choice:
        reps = list(self.lake.file_replicas([did]))
        if not reps:
            raise NotFound(f"No such file: {did}.")
        rep = reps[0]
        file = FileInfo(did.scope, did.name, int(rep.bytes or row.bytes or 0), rep.adler32)
        return self.access.chooser.choose(file, rep)

    def remember(self, file: FileInfo, replicas: FileReplicas) -> None:
        """Keep a file's entry and replicas known from a bulk listing (no request).

        For :data:`METADATA_TTL` seconds, opening the file then asks Rucio nothing: a
        dataset listed once (``list_replicas`` of the dataset) is read file by file
        without two requests per file (:mod:`escape_portal.analysis` on Dask workers).
        """
        did = file.did
        choice = self.access.chooser.choose(file, replicas)
        info = {
            "name": f"{did.scope}/{did.name}",
            "did": str(did),
            "type": "file",
            "did_type": "file",
            "size": file.bytes,
            "length": None,
            "adler32": file.adler32,
        }
        with self._lock:
            self._meta[did] = (time.monotonic(), info, choice)

    def choice(self, path: str) -> Choice:
        """The replica choice of one file (a new one: its failures list starts empty)."""
        did = self.did_of(path)
        info, choice = self._lookup(did, replicas=True)
        if choice is None:
            raise InvalidRequest(f"{did} is a {info['did_type']}, not a file.", "Open its files.")
        bad = {rse: why for (d, rse), why in self.corrupt.items() if d == did}
        sources = [s for s in choice.sources if s.rse not in bad]
        skipped = [*choice.skipped, *(Skipped(rse, why) for rse, why in bad.items())]
        cached = self.access.cache.get(choice.file)
        if cached is not None and not any(s.kind != "remote" for s in sources):
            sources.insert(
                0,
                Source("cache", None, str(cached), "file", "a verified copy in the download cache"),
            )
        return Choice(choice.file, choice.compute_site, sources, skipped)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Size, type and (files) adler32 of a path."""
        stripped = self._strip_protocol(path)
        if not stripped:
            return {"name": "", "type": "directory", "size": 0}
        if "/" not in stripped:
            if stripped not in self.lake.scopes():
                raise FileNotFoundError(f"no scope {stripped!r}")
            return {"name": stripped, "type": "directory", "size": 0}
        try:
            info, _ = self._lookup(self.did_of(stripped), replicas=True)
        except NotFound as exc:
            raise FileNotFoundError(stripped) from exc
        return dict(info)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """Scopes (``""``), a scope's containers and datasets, a collection's contents."""
        stripped = self._strip_protocol(path)
        entries: list[dict[str, Any]]
        if not stripped:
            entries = [{"name": s, "type": "directory", "size": 0} for s in self.lake.scopes()]
        elif "/" not in stripped:
            entries = [
                self._entry(row.did, row) for row in self.lake.dids(stripped, type="collection")
            ]
        else:
            did = self.did_of(stripped)
            try:
                info, _ = self._lookup(did, replicas=False)
            except NotFound as exc:
                raise FileNotFoundError(stripped) from exc
            if info["type"] == "file":
                entries = [self.info(stripped)]
            else:
                entries = [self._entry(row.did, row) for row in self.lake.contents(did)]
        return entries if detail else [e["name"] for e in entries]

    def where(self, path: str) -> list[dict[str, Any]]:
        """Which replica each file of ``path`` is read from here, and why."""
        return [c.to_dict() for c in self.access.where(self.did_of(path))]

    # -- reading --------------------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        if mode != "rb":
            raise NotImplementedError(
                "rucio:// is read-only here: uploads are not wired yet (put is not available)."
            )
        choice = self.choice(path)
        best = choice.best
        if best is not None and best.kind != "remote" and best.path is not None:
            return best.path.open("rb")
        if choice.file.bytes <= WHOLE_BELOW:
            import io

            return io.BytesIO(read_verified(self.lake, choice))
        return RucioFile(
            self,
            self._strip_protocol(path),
            choice,
            block_size=block_size or DEFAULT_BLOCK,
            cache_type=kwargs.pop("cache_type", "readahead"),
            cache_options=cache_options,
        )

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """Bytes of a file: all of them verified, or the range ``start``-``end``."""
        if start is None and end is None:
            choice = self.choice(path)
            best = choice.best
            if best is not None and best.kind != "remote" and best.path is not None:
                return best.path.read_bytes()
            return read_verified(self.lake, choice)
        with self.open(path, "rb") as handle:
            size = handle.size if hasattr(handle, "size") else None
            begin = start or 0
            if begin < 0 and size is not None:
                begin += size
            handle.seek(begin)
            stop = end
            if stop is not None and stop < 0 and size is not None:
                stop += size
            data: bytes = handle.read() if stop is None else handle.read(max(0, stop - begin))
            return data

    def get_file(self, rpath: str, lpath: str, callback: Any = None, **kwargs: Any) -> None:
        """Download one file into ``lpath`` (a file, or a folder to put it in), verified.

        The bytes go into the bounded download cache first (or are read in place from a
        mount), then are linked or copied to ``lpath`` atomically.
        """
        choice = self.choice(rpath)
        source = self.access.fetch(choice)
        target = Path(lpath)
        if target.is_dir() or str(lpath).endswith(os.sep):
            target = target / choice.file.name.rsplit("/", 1)[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.link.part")
        try:
            os.link(source, partial)
            partial.replace(target)
        except OSError:
            partial.unlink(missing_ok=True)
            copy_verified(
                source,
                target,
                expected_bytes=choice.file.bytes,
                expected_adler32=choice.file.adler32,
            )
        if callback is not None:
            callback.relative_update(choice.file.bytes)

    def put_file(
        self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        """Upload local file ``lpath`` as the file DID of ``rpath`` (``rucio://SCOPE/NAME``).

        Rucio's upload semantics (:func:`escape_portal.upload.put_file`): written at the
        writable storage nearest the compute (or ``rse=``) under a temporary name,
        verified by the storage, renamed, and only then registered; a retry of the same
        bytes changes nothing. Keyword arguments ``rse``, ``dataset`` (a DID to attach
        the file to, created if missing) and ``meta`` (a dict of DID metadata) are passed
        on.

        Raises
        ------
        LakeError
            If the upload fails (nothing is registered) or the DID exists with other bytes.
        """
        from escape_portal.upload import put_file

        did = self.did_of(rpath)
        on_bytes = None
        if callback is not None and hasattr(callback, "relative_update"):
            callback.set_size(os.path.getsize(lpath))
            on_bytes = callback.relative_update
        put_file(
            self.lake,
            lpath,
            did,
            rse=kwargs.get("rse"),
            dataset=kwargs.get("dataset"),
            meta=kwargs.get("meta"),
            on_bytes=on_bytes,
        )
        self.invalidate_cache(self._strip_protocol(rpath))

    def ukey(self, path: str) -> str:
        """A key of the file's content: its adler32 (the same bytes at every replica)."""
        info = self.info(path)
        return str(info.get("adler32") or info.get("size"))


class RucioFile(AbstractBufferedFile):  # type: ignore[misc]
    """A remote lake file read by byte ranges, moving to the next replica on an error.

    Bytes read in order from the start are checked against the catalogue's adler32 on
    the way; reading to the end of a corrupt replica raises :class:`StorageError`.
    """

    def __init__(
        self,
        fs: RucioFileSystem,
        path: str,
        choice: Choice,
        *,
        block_size: int,
        cache_type: str,
        cache_options: dict[str, Any] | None,
    ) -> None:
        self.choice = choice
        self.source: Source
        self.reader: Reader
        self.source, self.reader = open_reader(fs.lake, choice)
        self._adler = 1
        self._upto = 0
        super().__init__(
            fs,
            path,
            mode="rb",
            block_size=block_size,
            cache_type=cache_type,
            cache_options=cache_options,
            size=choice.file.bytes,
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        while True:
            try:
                data = self.reader.read_range(start, end)
                break
            except StorageError as exc:
                self.choice.failures.append((self.source, exc.message))
                self.reader.close()
                self.source, self.reader = open_reader(self.fs.lake, self.choice)
        self._verify(start, data)
        return data

    def _verify(self, start: int, data: bytes) -> None:
        if start <= self._upto < start + len(data):
            self._adler = zlib.adler32(data[self._upto - start :], self._adler)
            self._upto = start + len(data)
            expected = self.choice.file.adler32
            if self._upto >= self.size and expected:
                adler = f"{self._adler & 0xFFFFFFFF:08x}"
                if adler != expected.lower().zfill(8):
                    reason = scrub(
                        f"checksum mismatch reading {self.choice.file.did} from "
                        f"{self.source.rse}: adler32 {adler}, catalogue says {expected}"
                    )
                    self.choice.failures.append((self.source, reason))
                    self.fs.corrupt[(self.choice.file.did, str(self.source.rse))] = reason
                    raise StorageError(
                        "corrupt",
                        reason,
                        "That replica is corrupt; open the file again to read another one.",
                    )

    def close(self) -> None:
        """Close the file and its storage connection."""
        super().close()
        self.reader.close()
