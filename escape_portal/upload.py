"""Save results back: upload local files into the lake, the way Rucio's own upload does.

For each file, in this order (Rucio's ``UploadClient`` with ``register_after_upload``):

1. its size and adler32 are computed here;
2. if its DID already exists, the checksum decides: the same content already at the
   chosen storage is **skipped** (and said so; attachment, rule and metadata are still
   made sure of), other content is an error — a DID is never given new bytes;
3. the storage element is the writable one nearest the compute (the topology's sites
   and distances; the account's quota there must hold the bytes; it must offer a write
   protocol the portal speaks), or the one named;
4. the bytes go to Rucio's deterministic PFN (the server's ``lfns2pfns``, operation ``write``)
   under a temporary name (``NAME.rucio.upload``) over ``davs://`` (WebDAV ``PUT`` with
   a storage-audience bearer token, :meth:`Lake.storage_token`, and the instance's CA);
5. the storage's own size and adler32 (``HEAD`` with ``Want-Digest: adler32``) are
   compared with ours; then the temporary file is renamed (``MOVE``) to the final name;
6. only then is it registered: the replica (state ``A``), a rule for the account at that
   storage, the dataset (created if missing) it is attached to, its metadata.

A file that was not written whole is therefore never registered, and an interrupted
upload leaves at most a temporary file, removed by the next attempt. A final-name file
that is on the storage but not registered (the process died between rename and
registration) is reused when its checksum matches, else replaced.

:func:`upload` is the call every surface uses; :func:`put_file` uploads one file (the
``put`` of the ``rucio://`` filesystem).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from escape_portal.errors import (
    InvalidRequest,
    LakeError,
    LakeUnavailable,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)
from escape_portal.integrity import adler32_of
from escape_portal.lake import DID, Lake
from escape_portal.lake.models import as_did
from escape_portal.topology import Topology, detect_compute_site, lake_topology

#: Suffix of the temporary name a file is written under (Rucio's own).
TEMPORARY_SUFFIX = ".rucio.upload"
#: Write protocols the portal speaks, in order of preference.
WRITE_SCHEMES = ("davs",)
#: Seconds to wait for the storage to accept a connection; reads wait ``config.timeout``.
CONNECT_TIMEOUT = 10.0
#: Bytes read from the local file per block sent.
BLOCK = 4 * 2**20
DEFAULT_COMMENT = "escape-portal upload"

State = Literal["uploaded", "skipped", "failed"]


@dataclass(frozen=True)
class UploadResult:
    """What happened to one local file.

    Attributes
    ----------
    path
        The local file.
    did
        Its DID in the lake.
    state
        ``uploaded`` (written and registered now), ``skipped`` (the lake already had
        these bytes under this DID at ``rse``) or ``failed`` (see ``error``).
    rse
        The storage element written to (or holding it, when skipped).
    bytes, adler32
        Size and checksum of the local file.
    dataset
        The dataset it was attached to.
    rule_id
        The rule that keeps it at ``rse`` for the account.
    message
        One line for the user.
    error
        Why it failed.

    """

    path: str
    did: DID
    state: State
    rse: str | None = None
    bytes: int = 0
    adler32: str = ""
    dataset: DID | None = None
    rule_id: str | None = None
    message: str = ""
    error: LakeError | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (the REST API's and ``--json``'s shape)."""
        return {
            "path": self.path,
            "did": str(self.did),
            "state": self.state,
            "rse": self.rse,
            "bytes": self.bytes,
            "adler32": self.adler32,
            "dataset": str(self.dataset) if self.dataset else None,
            "rule_id": self.rule_id,
            "message": self.message,
            "error": None
            if self.error is None
            else {
                "type": type(self.error).__name__,
                "message": self.error.message,
                "hint": self.error.hint,
            },
        }


@dataclass(frozen=True)
class _Local:
    path: Path
    did: DID
    bytes: int
    adler32: str


class StorageRefused(PermissionDenied):
    """The storage refused the token (HTTP 401/403)."""


# -- the storage, over WebDAV ------------------------------------------------------------


class _Progress:
    """A file object for ``requests`` that reports bytes read (with a length: no chunking)."""

    def __init__(self, handle: BinaryIO, size: int, on_bytes: Callable[[int], None] | None):
        self._handle = handle
        self._size = size
        self._on_bytes = on_bytes

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        # http.client asks for 8 KiB at a time; whole blocks are sent as well (sendall).
        block = self._handle.read(BLOCK)
        if block and self._on_bytes is not None:
            self._on_bytes(len(block))
        return block


class _Dav:
    """The few WebDAV calls an upload needs, on one storage element, with its token."""

    def __init__(self, lake: Lake, rse: str, token: str | None) -> None:
        self.lake = lake
        self.rse = rse
        self.session = requests.Session()
        # Given with each request: a session's own ``verify`` loses to REQUESTS_CA_BUNDLE.
        self.verify: str | bool = lake.config.ca_cert or True
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = (CONNECT_TIMEOUT, max(lake.config.timeout, 30.0))

    def close(self) -> None:
        self.session.close()

    def _call(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        shown = _shown(url)
        try:
            response = self.session.request(
                method, url, timeout=self.timeout, verify=self.verify, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise LakeUnavailable(
                f"Storage {self.rse} ({_host(url)}) could not be verified (TLS) while {what}.",
                "Its certificate is not signed by the CA the instance names (ca_cert); "
                "check the instance's ca_cert.",
                url=shown,
            ) from exc
        except requests.Timeout as exc:
            raise LakeUnavailable(
                f"Storage {self.rse} did not answer within {self.timeout[1]:g} s while {what}.",
                "It may be overloaded or down; try again later, or choose another with --rse.",
                url=shown,
            ) from exc
        except requests.RequestException as exc:
            raise LakeUnavailable(
                f"Storage {self.rse} ({_host(url)}) cannot be reached while {what}.",
                "It may be down; try again later, or choose another storage element with --rse.",
                url=shown,
            ) from exc
        if response.status_code in (401, 403):
            raise StorageRefused(
                f"Storage {self.rse} refused your token while {what} "
                f"(HTTP {response.status_code}).",
                "Writing needs a token with storage.modify for this path and the storage's "
                "audience; log in again, or ask the lake's operators for write access there.",
            )
        if response.status_code == 507:
            raise QuotaExceeded(
                f"Storage {self.rse} is full (HTTP 507) while {what}.",
                "Choose another storage element with --rse, or ask the lake's operators.",
            )
        if response.status_code >= 500:
            raise LakeUnavailable(
                f"Storage {self.rse} failed while {what} (HTTP {response.status_code}).",
                "Try again later, or choose another storage element with --rse.",
                url=shown,
            )
        return response

    def stat(self, url: str) -> tuple[int, str | None] | None:
        """Size and adler32 of ``url`` on the storage (``None`` if it is not there)."""
        response = self._call("HEAD", url, "checking a file", headers={"Want-Digest": "adler32"})
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise LakeError(
                f"Storage {self.rse} answered HTTP {response.status_code} when asked about a file."
            )
        size = int(response.headers.get("Content-Length") or -1)
        return size, _adler32_of_digest(response.headers.get("Digest", ""))

    def delete(self, url: str) -> None:
        """Remove ``url`` if it is there."""
        response = self._call("DELETE", url, "removing an earlier attempt")
        if response.status_code not in (200, 204, 404):
            raise LakeError(
                f"Storage {self.rse} would not remove an earlier attempt "
                f"(HTTP {response.status_code}).",
                "Try again later.",
            )

    def put(self, url: str, path: Path, size: int, on_bytes: Callable[[int], None] | None) -> None:
        """Write the local ``path`` to ``url``."""
        with path.open("rb") as handle:
            response = self._call(
                "PUT",
                url,
                f"writing {path.name}",
                data=_Progress(handle, size, on_bytes),
                headers={"Content-Length": str(size)},
            )
        if response.status_code not in (200, 201, 204):
            raise LakeError(
                f"Storage {self.rse} did not accept {path.name} (HTTP {response.status_code}).",
                "Nothing was registered; try again later.",
            )

    def move(self, source: str, destination: str) -> None:
        """Rename ``source`` to ``destination`` on the storage."""
        response = self._call(
            "MOVE",
            source,
            "renaming the written file into place",
            headers={"Destination": destination, "Overwrite": "T"},
        )
        if response.status_code not in (200, 201, 204):
            raise LakeError(
                f"Storage {self.rse} did not rename the written file into place "
                f"(HTTP {response.status_code}).",
                "Nothing was registered; try again.",
            )


def _adler32_of_digest(header: str) -> str | None:
    for part in header.split(","):
        kind, _, value = part.strip().partition("=")
        if kind.strip().lower() == "adler32" and value:
            return value.strip().lower().zfill(8)
    return None


def _https(pfn: str) -> str:
    parts = urlsplit(pfn)
    scheme = "https" if parts.scheme == "davs" else parts.scheme
    return urlunsplit((scheme, parts.netloc, quote(parts.path), "", ""))


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _shown(url: str) -> str:
    """A URL fit for messages: no query (a token could be there), no user info."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, _host(url), parts.path, "", ""))


# -- choosing the storage -----------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """Where an upload goes, and why."""

    rse: str
    scheme: str
    reason: str


def _write_schemes(lake: Lake, rse: str) -> list[str]:
    ordered = []
    for proto in lake.rse_protocols().get(rse, []):
        domains = proto.get("domains") or {}
        priority = min(
            (int(d.get("write") or 0) for d in domains.values() if int(d.get("write") or 0) > 0),
            default=0,
        )
        if priority and proto.get("scheme") in WRITE_SCHEMES:
            ordered.append((priority, str(proto["scheme"])))
    return [scheme for _, scheme in sorted(ordered)]


def choose_destination(
    lake: Lake,
    topology: Topology,
    compute_site: str | None,
    needed_bytes: int,
    rse: str | None = None,
) -> Destination:
    """The storage element an upload of ``needed_bytes`` goes to.

    The one named (``rse``), or the writable one nearest ``compute_site``: at the site
    first, then by distance, among those with a write protocol the portal speaks and a
    quota that holds the bytes.

    Raises
    ------
    NotFound
        If ``rse`` is not a storage element of the lake.
    QuotaExceeded
        If the quota does not allow the upload (at ``rse``, or anywhere).
    InvalidRequest
        If ``rse`` (or every storage element) cannot be written to from here.

    """
    storage = topology.storage
    if rse is not None and rse not in storage:
        raise NotFound(
            f"There is no storage element {rse!r} in this lake.",
            "List them with 'escape-portal rses'.",
        )
    names = [rse] if rse is not None else list(storage)
    refusals: list[str] = []
    ranked: list[tuple[tuple[Any, ...], Destination]] = []
    for name in names:
        se = storage[name]
        schemes = _write_schemes(lake, name)
        if not se.writable:
            refusals.append(f"{name} is not writable now")
            continue
        if not schemes:
            refusals.append(f"{name} offers no write protocol the portal speaks (davs)")
            continue
        free = se.free_quota_bytes
        if free is not None and free < needed_bytes:
            refusals.append(
                f"{name}: your quota has {max(free, 0)} bytes free, {needed_bytes} needed"
            )
            continue
        link = topology.link(se.site, compute_site)
        at_site = bool(compute_site) and se.site == compute_site
        km = 0.0 if at_site else (link.km if link and link.km is not None else float("inf"))
        if rse is not None:
            reason = "the storage element you named"
        elif at_site:
            reason = f"at the compute site {compute_site}"
        elif km != float("inf"):
            reason = f"nearest writable storage, {km:.0f} km from {compute_site}"
        else:
            reason = "writable storage (distance to the compute site unknown)"
        ranked.append(((not at_site, km, name), Destination(name, schemes[0], reason)))
    if ranked:
        return sorted(ranked, key=lambda pair: pair[0])[0][1]
    quota = [r for r in refusals if "quota" in r]
    if quota and len(quota) == len(refusals):
        raise QuotaExceeded(
            f"Your quota does not allow uploading {needed_bytes} bytes: {'; '.join(quota)}.",
            "Free space by deleting rules you no longer need, or ask the lake's operators.",
        )
    raise InvalidRequest(
        f"No storage element can take this upload: {'; '.join(refusals) or 'none known'}.",
        "Name another with --rse, or ask the lake's operators.",
    )


# -- the upload -----------------------------------------------------------------------------


def _account(lake: Lake) -> str:
    return lake.config.account or lake.identity().account


def _check_scope(lake: Lake, scope: str, account: str) -> None:
    DID.parse(f"{scope}:x")
    if scope not in lake.scopes():
        raise NotFound(
            f"There is no scope {scope!r} on {lake.config.name}.",
            f"Your own scope is usually user.{account}; pass it with --scope.",
        )
    with lake._calling(f"listing the scopes of account {account}"):
        own = set(lake.client.list_scopes_for_account(account))
    if scope not in own:
        raise PermissionDenied(
            f"Scope {scope!r} is not yours (account {account}): you cannot upload into it.",
            f"Upload into one of your scopes: {', '.join(sorted(own)) or 'none'}.",
        )


def _check_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in (meta or {}).items():
        if not isinstance(key, str) or not key or len(key) > 100:
            raise InvalidRequest(f"Metadata key {key!r} is not a name.", "Use keys like target.")
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise InvalidRequest(
                f"Metadata {key}={value!r} is not a string, number or boolean.",
                "Give plain values, e.g. target=Crab or ra=83.63.",
            )
        checked[key] = value
    return checked


def _local_files(paths: Iterable[str | os.PathLike[str]], scope: str) -> list[_Local]:
    found: list[_Local] = []
    names: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise NotFound(f"There is no file {path}.", "Check the path.")
        if not path.is_file():
            raise InvalidRequest(
                f"{path} is not a file.", "Upload files (for a folder, give the files in it)."
            )
        did = DID.parse(f"{scope}:{path.name}")
        if did.name in names and names[did.name] != path.resolve():
            raise InvalidRequest(
                f"Two files would both be {did}: {names[did.name]} and {path}.",
                "Rename one of them; a DID names one file.",
            )
        names[did.name] = path.resolve()
        found.append(_Local(path, did, path.stat().st_size, adler32_of(path)))
    if not found:
        raise InvalidRequest("No files to upload.", "Name at least one file.")
    return list({f.did: f for f in found}.values())


def _existing(lake: Lake, did: DID) -> tuple[str | None, dict[str, str]] | None:
    """``(adler32, replica states by RSE)`` of an existing file DID, ``None`` if there is none."""
    try:
        info = lake.info(did)
    except NotFound:
        return None
    if info.type != "file":
        raise InvalidRequest(
            f"{did} already exists and is a {info.type}, not a file.",
            "Rename the local file, or upload into another scope.",
        )
    meta = lake.metadata(did)
    replicas = next(iter(lake.file_replicas([did])), None)
    return meta.get("adler32"), dict(replicas.states) if replicas else {}


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).lower().lstrip("0") == str(b).lower().lstrip("0")


def upload(
    lake: Lake,
    paths: Sequence[str | os.PathLike[str]],
    *,
    scope: str | None = None,
    dataset: DID | str | None = None,
    rse: str | None = None,
    meta: Mapping[str, Any] | None = None,
    lifetime: int | None = None,
    topology: Topology | None = None,
    compute_site: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> list[UploadResult]:
    """Upload local files into the lake: write, verify, then register (see the module).

    Parameters
    ----------
    lake
        The lake, as the researcher (an OIDC session gets storage tokens by exchange).
    paths
        Local files; each becomes the file DID ``scope:<file name>``.
    scope
        Where the DIDs go (default ``user.<account>``); it must be the account's.
    dataset
        ``name`` or ``scope:name`` of a dataset to attach the files to (default scope:
        ``scope``); created if missing.
    rse
        The storage element to write to (default: the writable one nearest the compute).
    meta
        DID metadata set on every file (and on the dataset when this call creates it).
    lifetime
        Seconds the rule keeping the files at ``rse`` lasts (default: no end).
    topology, compute_site
        The compute's topology (read from the lake and the configured feeds if not given)
        and its site (default: the configured or detected one).
    on_bytes
        Called with the number of bytes of each block sent (progress).

    Returns
    -------
    list of UploadResult
        One per file, in order: uploaded, skipped (already there with the same content)
        or failed (with the error; the others still went ahead).

    Raises
    ------
    LakeError
        Before anything is written, if the request cannot be done (unknown scope or one
        that is not yours, missing local files, no storage with enough quota); and if
        every file failed, the first failure (its subclass says why: ``PermissionDenied``
        for a refused token, ``LakeUnavailable`` for storage that is down,
        ``InvalidRequest`` for a DID that exists with other content).

    """
    if lake.config.auth_type != "oidc":
        raise PermissionDenied(
            f"Uploading needs a token for the storage; this session signs in to "
            f"{lake.config.name} with {lake.config.auth_type}.",
            "Use an instance with auth_type oidc (a token from the lake's identity "
            "provider, as JupyterHub hands over).",
        )
    account = _account(lake)
    scope = scope or f"user.{account}"
    _check_scope(lake, scope, account)
    checked_meta = _check_meta(meta)
    dataset_did = None
    if dataset is not None:
        text = str(dataset)
        dataset_did = as_did(text if ":" in text else f"{scope}:{text}")
        if dataset_did.scope != scope:
            _check_scope(lake, dataset_did.scope, account)
    files = _local_files(paths, scope)
    if topology is None:
        compute_site = detect_compute_site(compute_site or lake.config.compute_site)
        topology = lake_topology(lake, compute_site)
    existing: dict[DID, tuple[str | None, dict[str, str]] | None] = {}
    results: dict[DID, UploadResult] = {}
    for f in files:
        existing[f.did] = found = _existing(lake, f.did)
        if found is not None and not _same(found[0], f.adler32):
            results[f.did] = _failed(
                f,
                InvalidRequest(
                    f"{f.did} already exists in the lake with other content "
                    f"(adler32 {found[0]}, this file's is {f.adler32}).",
                    "A DID never changes its bytes: rename the file, or upload into another scope.",
                ),
            )
    needed = sum(f.bytes for f in files if f.did not in results and existing[f.did] is None)
    destination = choose_destination(lake, topology, compute_site, needed, rse)
    session = _Session(lake, destination, account, dataset_did, checked_meta, lifetime)
    try:
        to_write = [
            f.did
            for f in files
            if f.did not in results
            and (existing[f.did] or (None, {}))[1].get(destination.rse) != "AVAILABLE"
        ]
        session.prepare(to_write)
        for f in files:
            if f.did in results:
                continue
            try:
                results[f.did] = session.one(f, existing[f.did], on_bytes)
            except LakeError as exc:
                results[f.did] = _failed(f, exc, destination.rse)
    finally:
        session.close()
    ordered = [results[f.did] for f in files]
    if all(r.state == "failed" for r in ordered):
        first = ordered[0].error
        assert first is not None
        raise first
    return ordered


def put_file(
    lake: Lake,
    local: str | os.PathLike[str],
    did: DID | str,
    *,
    rse: str | None = None,
    dataset: DID | str | None = None,
    meta: Mapping[str, Any] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> UploadResult:
    """Upload one local file as the file DID ``did`` (the ``put`` of ``rucio://``).

    The file's name in the lake is ``did``'s name, whatever the local file is called.
    Raises the error instead of returning a failed result; see :func:`upload`.
    """
    target = as_did(did)
    source = Path(local).expanduser()
    with contextlib.ExitStack() as stack:
        path = source
        if source.name != target.name:  # the lake's name comes from the file's: link it
            import tempfile

            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="escape-portal-put-"))
            path = Path(folder) / target.name
            os.symlink(source.resolve(), path)
        [result] = upload(
            lake,
            [path],
            scope=target.scope,
            dataset=dataset,
            rse=rse,
            meta=meta,
            on_bytes=on_bytes,
        )
    result = dataclasses.replace(result, path=str(source))
    if result.error is not None:
        raise result.error
    return result


def _failed(f: _Local, error: LakeError, rse: str | None = None) -> UploadResult:
    return UploadResult(
        str(f.path), f.did, "failed", rse, f.bytes, f.adler32, message=str(error), error=error
    )


class _Session:
    """One upload call at one storage element: tokens, the protocol, the dataset."""

    def __init__(
        self,
        lake: Lake,
        destination: Destination,
        account: str,
        dataset: DID | None,
        meta: dict[str, Any],
        lifetime: int | None,
    ) -> None:
        self.lake = lake
        self.destination = destination
        self.account = account
        self.dataset = dataset
        self.meta = meta
        self.lifetime = lifetime
        self._dataset_ready = False
        self._pfns: dict[DID, str] = {}
        self._dav: _Dav | None = None

    def close(self) -> None:
        if self._dav is not None:
            self._dav.close()

    @property
    def rse(self) -> str:
        return self.destination.rse

    def prepare(self, dids: Sequence[DID]) -> None:
        """Rucio's deterministic write PFNs of ``dids`` here, and one token covering them.

        The PFNs are asked of the Rucio server (``lfns2pfns`` with operation ``write``, in
        one request), which applies the storage element's ``lfn2pfn`` algorithm and the
        instance's policy, as Rucio's upload client does with its local ``rsemanager``
        (that one needs a ``rucio.cfg``, which a hub session lacks). The token's write
        scope is the deepest folder holding all of them (temporary names included).
        """
        if not dids:
            return
        lfns = [f"{d.scope}:{d.name}" for d in dids]
        with self.lake._calling(f"asking where {len(lfns)} file(s) go at {self.rse}"):
            pfns = self.lake.client.lfns2pfns(
                self.rse,
                lfns,
                protocol_domain="wan",
                operation="write",
                scheme=self.destination.scheme,
            )
        for did, lfn in zip(dids, lfns, strict=True):
            pfn = pfns.get(lfn)
            if not pfn:
                raise LakeError(f"The lake gave no {self.destination.scheme} path for {did}.")
            self._pfns[did] = _https(str(pfn))
        folders = [urlsplit(url).path.rsplit("/", 1)[0] for url in self._pfns.values()]
        common = os.path.commonpath(folders) if len(folders) > 1 else folders[0]
        token = self.lake.storage_token(self.rse, common.rstrip("/") + "/", write=True)
        self._dav = _Dav(self.lake, self.rse, token)

    def one(
        self,
        f: _Local,
        existing: tuple[str | None, dict[str, str]] | None,
        on_bytes: Callable[[int], None] | None,
    ) -> UploadResult:
        states = existing[1] if existing else {}
        if states.get(self.rse) == "AVAILABLE":
            rule_id = self._register(f, replica=False)
            return UploadResult(
                str(f.path),
                f.did,
                "skipped",
                self.rse,
                f.bytes,
                f.adler32,
                self.dataset,
                rule_id,
                f"{f.did} is already in the lake at {self.rse} with the same content; "
                "not written again.",
            )
        started = time.monotonic()
        final = self._pfns[f.did]
        temporary = final + TEMPORARY_SUFFIX
        dav = self._dav
        assert dav is not None, "prepare() first"
        there = dav.stat(final)
        if there is not None and there == (f.bytes, f.adler32):
            pass  # written whole by an attempt that died before registering it: reuse
        else:
            if there is not None:
                dav.delete(final)  # an unregistered left-over with other bytes
            if dav.stat(temporary) is not None:
                dav.delete(temporary)
            dav.put(temporary, f.path, f.bytes, on_bytes)
            written = dav.stat(temporary)
            if written != (f.bytes, f.adler32):
                dav.delete(temporary)
                size, adler = written if written else (None, None)
                raise LakeError(
                    f"Storage {self.rse} holds {size} bytes with adler32 {adler} after "
                    f"writing {f.path.name} ({f.bytes} bytes, adler32 {f.adler32}).",
                    "The copy was removed and nothing registered; try again.",
                )
            dav.move(temporary, final)
        rule_id = self._register(f, replica=True)
        seconds = time.monotonic() - started
        return UploadResult(
            str(f.path),
            f.did,
            "uploaded",
            self.rse,
            f.bytes,
            f.adler32,
            self.dataset,
            rule_id,
            f"{f.did} uploaded to {self.rse} ({self.destination.reason}) in {seconds:.1f} s, "
            "adler32 verified by the storage.",
        )

    def _register(self, f: _Local, *, replica: bool) -> str:
        """Replica, rule, dataset and metadata; each step a no-op when already done."""
        lake = self.lake
        if replica:
            with lake._calling(f"registering {f.did} at {self.rse}"):
                lake.client.add_replicas(
                    self.rse,
                    [
                        {
                            "scope": f.did.scope,
                            "name": f.did.name,
                            "bytes": f.bytes,
                            "adler32": f.adler32,
                            "state": "A",
                        }
                    ],
                )
        rule, _ = lake.add_rule(f.did, self.rse, lifetime=self.lifetime, comment=DEFAULT_COMMENT)
        if self.dataset is not None:
            self._ensure_dataset()
            with lake._calling(f"attaching {f.did} to {self.dataset}"):
                attached = {
                    (str(c["scope"]), str(c["name"]))
                    for c in lake.client.list_parent_dids(f.did.scope, f.did.name)
                }
                if (self.dataset.scope, self.dataset.name) not in attached:
                    lake.client.attach_dids(
                        self.dataset.scope, self.dataset.name, [f.did.as_rucio()]
                    )
        if self.meta:
            with lake._calling(f"setting the metadata of {f.did}"):
                lake.client.set_metadata_bulk(f.did.scope, f.did.name, self.meta)
        return rule.id

    def _ensure_dataset(self) -> None:
        if self._dataset_ready or self.dataset is None:
            return
        from rucio.common.exception import DataIdentifierAlreadyExists

        lake = self.lake
        try:
            info = lake.info(self.dataset)
        except NotFound:
            with lake._calling(f"creating dataset {self.dataset}"):
                try:
                    lake.client.add_dataset(self.dataset.scope, self.dataset.name)
                except DataIdentifierAlreadyExists:
                    pass  # made meanwhile by another upload: fine
                else:
                    if self.meta:
                        lake.client.set_metadata_bulk(
                            self.dataset.scope, self.dataset.name, self.meta
                        )
        else:
            if info.type != "dataset":
                raise InvalidRequest(
                    f"{self.dataset} is a {info.type}, not a dataset.",
                    "Name a dataset (new or existing) to attach the files to.",
                )
        self._dataset_ready = True
