"""Analysis beyond one machine: lake files as Dask collections, computed next to their replicas.

A dataset, a container or a list of DIDs becomes Dask work with one task per file::

    from escape_portal import analysis
    from escape_portal.lake import Lake

    lake = Lake.from_instance()
    session = analysis.connect(lake)                  # a LocalCluster, or client=...
    sums = session.to_dask("user.alice:crab", lambda f: f.fits()[0].data.sum())
    total = sums.sum().compute()
    events = session.table_frame("cta:crab-2024.dl3", hdu="EVENTS", columns=["ENERGY"])
    events.ENERGY.describe().compute()

How it works:

- **Listing in bulk.** The files of the DIDs and their replicas come from two Rucio
  streams for the whole dataset (``list_replicas`` of the collections themselves and
  ``list_files``), never one request per file (:func:`lake_files`).
- **Workers carry their site** as a Dask worker resource ``site-<SITE>`` (``dask worker
  --resources site-CERN=1``, or :func:`local_cluster`), read from the scheduler; a worker
  without one is a worker of no site.
- **Site-aware placement.** Each file's task is submitted with ``workers=`` the workers at
  the sites holding an available replica of it, when there are any: it runs at a
  replica's site when a worker is there, else anywhere (:func:`placement`). The
  restriction is strict by default: Dask's work stealing moves tasks with loose
  restrictions (``allow_other_workers=True``) to idle workers elsewhere, which then read
  over the WAN (seen with worker processes); ``Session(strict=False)`` allows that. Dask
  ``resources=`` restrictions are not used: a task could not ask for "CERN or DESY".
  Custom annotations of lazy graphs are lost when Dask fuses tasks, so
  :meth:`Session.to_dask` and :meth:`Session.table_frame` submit the per-file tasks at
  once (their results stay on the workers that read them, and what you chain onto the
  collection runs next to them); :meth:`Session.delayed` gives lazy, annotated
  ``Delayed`` objects for ``dask.compute`` / ``client.compute`` as they are.
- **Reading on the worker.** A task opens its file through the ``rucio://`` filesystem
  built on that worker for that worker's site, so :mod:`escape_portal.replicas` picks
  the replica nearest the worker (a ``file://`` path on its own site's storage, else the
  nearest over ``root``/``davs`` with a storage token exchanged there).
- **Credentials.** Task graphs carry only the instance's name, the DIDs and their sites.
  The session's credentials reach workers through a :class:`Credentials` worker plugin (a
  copy of the instance's configuration holding the session's current access token, not
  its refresh token or password, for OIDC instances); :class:`Session` re-registers it
  whenever the session renews its token (checked every :data:`REFRESH_EVERY` seconds),
  so workers always hold a valid one. Secret fields never appear in ``repr``; the
  plugin travels over the cluster's own connections (TLS on a real deployment) and is
  kept by the scheduler, not shown on its dashboard.

The default cluster (:func:`local_cluster`) is a ``LocalCluster`` of two one-thread
workers in this process (``processes=False``): reading lake files is I/O (XRootD, HTTP
and FITS decoding release the GIL for most of it), two cores give nothing to more
processes, and in-process workers start in well under a second and talk over
``inproc://``, binding no port. Pass ``client=`` for any other cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from escape_portal.config import LakeConfig
from escape_portal.errors import InvalidRequest
from escape_portal.lake import DID, FileInfo, FileReplicas, Lake
from escape_portal.lake.models import as_did

try:
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - the "analysis" extra is not installed
    WorkerPlugin = object  # type: ignore[assignment,misc]

__all__ = [
    "Credentials",
    "LakeFile",
    "Session",
    "connect",
    "lake_files",
    "local_cluster",
    "placement",
    "site_resource",
    "table_frame",
    "to_dask",
    "worker_config",
    "worker_site",
]

log = logging.getLogger(__name__)

#: Prefix of the worker resource naming a worker's site (``site-CERN``).
SITE_RESOURCE = "site-"
#: Seconds between two checks that the workers' token is still the session's.
REFRESH_EVERY = 20.0
#: Name prefix of the credentials plugin (one per instance).
PLUGIN_PREFIX = "escape-portal-credentials-"


# -- pure parts: files, sites, placement ------------------------------------------------


@dataclass(frozen=True)
class LakeFile:
    """One lake file of a Dask collection: what a task gets, with no secret in it.

    Attributes
    ----------
    did
        The file's DID.
    bytes, adler32
        Its size and checksum from the catalogue.
    sites
        Sites holding an available replica of it (sorted; empty if none known).
    rses
        Storage elements holding those replicas.
    instance
        The name of the lake instance it belongs to (how a worker finds its credentials).
    replicas
        Its replicas as the bulk listing found them (states and URLs, never a token): a
        worker opens the file without asking Rucio again.
    """

    did: DID
    bytes: int
    adler32: str | None
    sites: tuple[str, ...]
    rses: tuple[str, ...]
    instance: str
    replicas: FileReplicas | None = None

    @property
    def url(self) -> str:
        """``rucio://SCOPE/NAME``."""
        return f"rucio://{self.did.scope}/{self.did.name}"

    def filesystem(self) -> Any:
        """The ``rucio://`` filesystem of this process for the file's instance.

        On a Dask worker: built from the credentials its plugin holds, for the worker's
        site. Elsewhere: the instance as configured here.
        """
        fs = filesystem(self.instance)
        if self.replicas is not None:
            info = FileInfo(self.did.scope, self.did.name, self.bytes, self.adler32)
            fs.remember(info, self.replicas)
        return fs

    def open(self) -> BinaryIO:
        """A binary file object of the file, read from the replica nearest this worker."""
        handle: BinaryIO = self.filesystem().open(self.url, "rb")
        return handle

    def fits(self, **kwargs: Any) -> Any:
        """An ``astropy.io.fits.HDUList`` of the file (read from the nearest replica)."""
        from astropy.io import fits

        return fits.open(self.open(), **kwargs)

    def source(self) -> dict[str, Any]:
        """Where this process reads the file from and why (its replica choice)."""
        choice = self.filesystem().choice(self.url)
        best = choice.best
        return {
            "rse": best.rse if best else None,
            "site": best.site if best else None,
            "scheme": best.scheme if best else None,
            "explanation": choice.explain(),
        }


def site_resource(site: str) -> str:
    """The worker resource that names ``site`` (``site-CERN``)."""
    return f"{SITE_RESOURCE}{site}"


def site_of_resources(resources: Mapping[str, Any]) -> str | None:
    """The site a worker's resources name (``None``: no ``site-`` resource)."""
    for key in sorted(resources):
        if key.startswith(SITE_RESOURCE) and len(key) > len(SITE_RESOURCE):
            return key[len(SITE_RESOURCE) :]
    return None


def workers_by_site(workers: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Site -> addresses of its workers, from ``scheduler_info()["workers"]``."""
    found: dict[str, list[str]] = {}
    for address, info in sorted(workers.items()):
        site = site_of_resources(info.get("resources") or {})
        if site is not None:
            found.setdefault(site, []).append(address)
    return found


def placement(file: LakeFile, by_site: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The workers ``file``'s task should run on: those at its replicas' sites.

    ``None`` when no worker is at any of them: then it runs anywhere (the worker reads
    the replica nearest to it).
    """
    chosen = [address for site in file.sites for address in by_site.get(site, ())]
    return sorted(set(chosen)) or None


def lake_files(lake: Lake, dids: DID | str | Iterable[DID | str | FileInfo]) -> list[LakeFile]:
    """The files of ``dids`` with the sites of their available replicas.

    ``dids`` is a dataset, a container, a file or a list of them (files may be given as
    the ``FileInfo`` of a listing, which saves asking their size). Two Rucio streams for
    the lot, however many files: their replicas (``list_replicas`` of the collections
    themselves, which Rucio expands to their files) and the files (``list_files``, for
    files that have no replica at all); no request per file.

    Raises
    ------
    NotFound
        If a DID does not exist.
    """
    given = [dids] if isinstance(dids, DID | str) else list(dids)
    files: dict[DID, tuple[int, str | None]] = {}
    wanted = []
    for item in given:
        if isinstance(item, FileInfo):  # a file the caller listed already: no request
            files.setdefault(item.did, (item.bytes, item.adler32))
            wanted.append(item.did)
            continue
        did = as_did(item)
        wanted.append(did)
        info = lake.info(did)
        if info.type == "file":
            files.setdefault(did, (int(info.bytes or 0), None))
        else:
            for f in lake.files(did):
                files.setdefault(f.did, (f.bytes, f.adler32))
    sites_of = lake.rse_sites()
    rows = {DID(r.scope, r.name): r for r in lake.file_replicas(wanted)}
    result = []
    for did, (size, adler32) in files.items():
        row = rows.get(did)
        states = row.states if row else {}
        rses = tuple(sorted(rse for rse, state in states.items() if state == "AVAILABLE"))
        sites = tuple(sorted({site for rse in rses if (site := sites_of.get(rse))}))
        result.append(
            LakeFile(
                did,
                int(row.bytes or size) if row else size,
                (row.adler32 if row else None) or adler32,
                sites,
                rses,
                lake.config.name,
                row,
            )
        )
    return result


def worker_config(lake: Lake) -> LakeConfig:
    """The copy of ``lake``'s configuration given to workers.

    OIDC sessions: the session's current access token (renewed first if near expiry) as a
    plain token, without the refresh token, password or token file, and without the
    broker's password; the OAuth client stays, as workers exchange the token for storage
    tokens. Other sessions (userpass, X.509) authenticate as they are configured. The
    notebook's compute site and mount are not the workers': both are dropped.
    """
    config = lake.config
    config = dataclasses.replace(
        config, compute_site=None, mounted_rse=None, mount_path=None, broker_password=None
    )
    if config.auth_type != "oidc":
        return config
    keeper = lake.tokens
    assert keeper is not None
    return dataclasses.replace(
        config,
        token=keeper.current(),
        token_source="token",
        token_file=None,
        oidc_refresh_token=None,
        username=None,
        password=None,
    )


# -- on the workers ----------------------------------------------------------------------

_registry_lock = threading.Lock()
#: Instance name -> the configuration a credentials plugin gave this process.
_configs: dict[str, LakeConfig] = {}
#: (instance, site) -> (configuration it was built from, rucio:// filesystem).
_filesystems: dict[tuple[str, str | None], tuple[LakeConfig, Any]] = {}


class Credentials(WorkerPlugin):
    """A ``distributed`` worker plugin giving each worker an instance's credentials.

    Registered by :class:`Session` (``client.register_plugin``); a worker that joins later
    gets it too. The configuration is never in a task graph and never in ``repr``.

    Parameters
    ----------
    config
        What :func:`worker_config` made.
    """

    idempotent = False

    def __init__(self, config: LakeConfig) -> None:
        self.config = config
        self.name = PLUGIN_PREFIX + config.name

    def __repr__(self) -> str:
        return f"Credentials(instance={self.config.name!r})"

    def setup(self, worker: Any) -> None:
        """Keep the configuration for tasks of this worker's process."""
        with _registry_lock:
            _configs[self.config.name] = self.config

    def teardown(self, worker: Any) -> None:
        """Forget the configuration (unless a newer plugin already replaced it)."""
        with _registry_lock:
            if _configs.get(self.config.name) is self.config:
                del _configs[self.config.name]
            for key in [k for k, (c, _) in _filesystems.items() if c is self.config]:
                del _filesystems[key]


def _current_worker() -> Any:
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def worker_site() -> str | None:
    """The site of the Dask worker running this task (``None``: not a worker, or no site)."""
    worker = _current_worker()
    if worker is None:
        return None
    return site_of_resources(worker.state.total_resources)


def filesystem(instance: str) -> Any:
    """The ``rucio://`` filesystem of ``instance`` for this process (cached).

    On a Dask worker holding :class:`Credentials` for it: built from those, with the
    worker's site as the compute site. Elsewhere: the instance as configured here.
    """
    from escape_portal.rucio_fs import RucioFileSystem

    worker = _current_worker()
    site = site_of_resources(worker.state.total_resources) if worker is not None else None
    with _registry_lock:
        config = _configs.get(instance) if worker is not None else None
        cached = _filesystems.get((instance, site))
    if config is None:
        if worker is not None:
            raise InvalidRequest(
                f"This Dask worker holds no credentials for the lake instance {instance!r}.",
                "Connect the cluster first: escape_portal.analysis.connect(lake, client).",
            )
        from escape_portal.config import select_instance

        config = select_instance(instance)
    if cached is not None and cached[0] == config:
        return cached[1]
    fs = RucioFileSystem(lake=Lake(config), compute_site=site, skip_instance_cache=True)
    with _registry_lock:
        _filesystems[(instance, site)] = (config, fs)
    return fs


def _run(func: Callable[[LakeFile], Any] | None, file: LakeFile) -> Any:
    return file if func is None else func(file)


def _as_list(func: Callable[[LakeFile], Any] | None, file: LakeFile) -> list[Any]:
    return [_run(func, file)]


def _table(
    file: LakeFile,
    hdu: int | str,
    columns: Sequence[str] | None,
    with_file: bool,
    fs: Any = None,
) -> Any:
    from astropy.table import Table

    with (fs or file.filesystem()).open(file.url, "rb") as handle:
        table = Table.read(handle, format="fits", hdu=hdu)
    if columns is not None:
        table = table[list(columns)]
    names = [n for n in table.colnames if len(table[n].shape) <= 1]
    frame = table[names].to_pandas()
    if with_file:
        frame["did"] = str(file.did)
    return frame


# -- clusters and sessions ----------------------------------------------------------------


def local_cluster(
    sites: Sequence[str | None] = (None, None),
    *,
    threads_per_worker: int = 1,
    processes: bool = False,
    dashboard_address: str | None = None,
) -> Any:
    """A ``distributed.LocalCluster`` with one worker per entry of ``sites``, tagged so.

    Parameters
    ----------
    sites
        The site of each worker (``None``: no site). Default: two workers of no site.
    threads_per_worker
        Threads of each worker.
    processes
        Workers in their own processes (default: in this one; see the module's notes).
    dashboard_address
        Where to serve the dashboard (e.g. ``"127.0.0.1:8787"``; default: not served).
    """
    from distributed import LocalCluster, Nanny, Worker

    cluster = LocalCluster(
        n_workers=0,
        processes=processes,
        threads_per_worker=threads_per_worker,
        dashboard_address=dashboard_address,
        host="127.0.0.1" if processes else None,
        # Without a dashboard the scheduler still serves its health and metrics routes,
        # by default on port 8787 of every interface: on loopback, on a free port.
        scheduler_kwargs=None if dashboard_address else {"dashboard_address": "127.0.0.1:0"},
    )
    spec = {}
    for i, site in enumerate(sites):
        name = f"{site or 'worker'}-{i}"
        resources = {site_resource(site): 1} if site else {}
        options: dict[str, Any] = {"nthreads": threads_per_worker, "name": name}
        if resources:
            options["resources"] = resources
        spec[name] = {"cls": Nanny if processes else Worker, "options": options}
    cluster.worker_spec.update(spec)
    cluster.scale(len(spec))
    return cluster


class Session:
    """A lake session's Dask: a client whose workers hold the session's credentials.

    Parameters
    ----------
    lake
        The lake (its instance's name is what task graphs carry).
    client
        A ``distributed.Client``; default: a new :func:`local_cluster` whose workers are
        at the session's compute site (closed by :meth:`close`).
    refresh_every
        Seconds between two checks that workers hold the session's current token.
    strict
        A file's task runs only on the workers at its replicas' sites when there are
        such workers when it is submitted (it waits for them if they are busy or gone);
        ``False``: idle workers elsewhere may take it (Dask's work stealing) and read the
        replica nearest to them.
    """

    def __init__(
        self,
        lake: Lake,
        client: Any = None,
        *,
        refresh_every: float = REFRESH_EVERY,
        strict: bool = True,
    ) -> None:
        from distributed import Client

        self.lake = lake
        self.instance = lake.config.name
        self.strict = strict
        self._own_cluster = None
        if client is None:
            site = lake.config.compute_site
            if site is None:
                from escape_portal.topology import detect_compute_site

                site = detect_compute_site()
            self._own_cluster = local_cluster((site, site))
            client = Client(self._own_cluster)
            client.wait_for_workers(2)
        self.client = client
        self.pushes = 0
        self._pushed: LakeConfig | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._thread = threading.Thread(
            target=self._keep_fresh, args=(refresh_every,), name="escape-dask-tokens", daemon=True
        )
        self._thread.start()

    # -- credentials ----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Give the workers the session's credentials if they changed; ``True`` if sent."""
        with self._lock:
            config = worker_config(self.lake)
            if config == self._pushed:
                return False
            self.client.register_plugin(Credentials(config), name=PLUGIN_PREFIX + self.instance)
            self._pushed = config
            self.pushes += 1
            return True

    def _keep_fresh(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.refresh()
            except Exception as exc:  # a thread must not die silently
                log.warning("could not give the Dask workers a fresh token: %s", exc)

    # -- collections ---------------------------------------------------------------------

    def files(self, dids: DID | str | Iterable[DID | str]) -> list[LakeFile]:
        """The files of ``dids`` with their replicas' sites (see :func:`lake_files`)."""
        return lake_files(self.lake, dids)

    def workers_by_site(self) -> dict[str, list[str]]:
        """Site -> addresses of the cluster's workers there, now."""
        return workers_by_site(self.client.scheduler_info(n_workers=-1)["workers"])

    def _files(self, dids: Any) -> list[LakeFile]:
        if isinstance(dids, list) and dids and all(isinstance(d, LakeFile) for d in dids):
            return list(dids)
        return self.files(dids)

    def submit(
        self,
        dids: DID | str | Iterable[DID | str] | list[LakeFile],
        func: Callable[..., Any] | None,
        *args: Any,
        wrap: Callable[..., Any] = _run,
    ) -> list[Any]:
        """One future per file: ``wrap(func, file, *args)`` on a worker at a replica's site."""
        by_site = self.workers_by_site()
        futures = []
        batch = uuid.uuid4().hex[:8]
        for file in self._files(dids):
            workers = placement(file, by_site)
            futures.append(
                self.client.submit(
                    wrap,
                    func,
                    file,
                    *args,
                    key=f"lake-{file.did.name}-{batch}",
                    workers=workers,
                    allow_other_workers=workers is not None and not self.strict,
                    pure=False,
                )
            )
        return futures

    def delayed(
        self, dids: DID | str | Iterable[DID | str] | list[LakeFile], func: Callable[..., Any]
    ) -> list[Any]:
        """Lazy ``Delayed`` objects, one per file, annotated with its sites and workers.

        The annotations hold when they are computed as they are (``dask.compute(*parts)``,
        ``client.compute(parts)``); built into a bag or dataframe, Dask's fusion may drop
        them: use :meth:`to_dask` / :meth:`table_frame` for those.
        """
        from dask.base import annotate, tokenize
        from dask.delayed import delayed

        by_site = self.workers_by_site()
        parts = []
        for file in self._files(dids):
            workers = placement(file, by_site)
            loose = not self.strict
            extra = {"workers": workers, "allow_other_workers": loose} if workers else {}
            with annotate(sites=file.sites, **extra):
                parts.append(
                    delayed(_run, pure=True)(
                        func, file, dask_key_name=f"lake-{file.did.name}-{tokenize(func, file)}"
                    )
                )
        return parts

    def to_dask(
        self,
        dids: DID | str | Iterable[DID | str] | list[LakeFile],
        func: Callable[[LakeFile], Any] | None = None,
    ) -> Any:
        """A ``dask.bag.Bag`` of ``func(file)`` for every file of ``dids`` (one per partition).

        Each file's task is started now on a worker at a site holding a replica of it
        (else anywhere) and reads it there (``file.open()``, ``file.fits()``); without
        ``func`` the bag holds the :class:`LakeFile` records.
        """
        import dask.bag as db

        futures = self.submit(dids, func, wrap=_as_list)
        return db.from_delayed(_held(futures)).persist()  # see table_frame

    def table_frame(
        self,
        dids: DID | str | Iterable[DID | str] | list[LakeFile],
        *,
        hdu: int | str = 1,
        columns: Sequence[str] | None = None,
        with_file: bool = False,
        meta: Any = None,
    ) -> Any:
        """A ``dask.dataframe.DataFrame`` of the FITS tables of ``dids``' files (one each).

        Each file's table HDU ``hdu`` is read on a worker at its replica's site with
        astropy and becomes a pandas partition (multidimensional columns are left out);
        ``columns`` selects some; ``with_file`` adds a ``did`` column. ``meta`` (an empty
        pandas frame) defaults to the first file's table read here.
        """
        import dask.dataframe as dd

        from escape_portal.rucio_fs import RucioFileSystem

        files = self._files(dids)
        if not files:
            raise InvalidRequest(f"{dids} holds no file.", "Give a dataset with FITS tables.")
        if meta is None:
            here = RucioFileSystem(lake=self.lake, skip_instance_cache=True)
            meta = _table(files[0], hdu, columns, with_file, here).iloc[:0]
        futures = self.submit(files, None, hdu, columns, with_file, wrap=_table_task)
        # Persisted: a frame built on held futures lost them once a derived column was
        # computed twice ("lost dependencies", dask 2026.8); persisted, the partitions
        # are the collection's own, in the memory of the workers that read them.
        return dd.from_delayed(_held(futures), meta=meta, verify_meta=False).persist()

    # -- lifetime --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stop.is_set()

    def close(self) -> None:
        """Stop refreshing; take the credentials off the workers; close an own cluster."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        if self._own_cluster is not None:
            self.client.close()
            self._own_cluster.close()
        elif self.client.status == "running":
            with self._lock:
                self.client.unregister_worker_plugin(PLUGIN_PREFIX + self.instance)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same(value: Any) -> Any:
    return value


def _held(futures: list[Any]) -> list[Any]:
    """Delayed objects holding ``futures``, so the collection keeps them alive.

    A collection built on bare futures does not: their results would be released once
    the list of futures is gone.
    """
    from dask.delayed import delayed

    return [delayed(_same, pure=True)(f, dask_key_name=f"held-{f.key}") for f in futures]


def _table_task(
    func: None, file: LakeFile, hdu: int | str, columns: Sequence[str] | None, with_file: bool
) -> Any:
    return _table(file, hdu, columns, with_file)


_sessions: dict[tuple[int, str], Session] = {}


def connect(lake: Lake, client: Any = None) -> Session:
    """The :class:`Session` of ``lake`` on ``client`` (made once; default cluster if none).

    Without ``client``: the current ``distributed`` client if there is one, else a new
    :func:`local_cluster`.
    """
    if client is None:
        try:
            from distributed import get_client

            client = get_client()
        except ValueError:
            client = None
    key = (id(client), lake.config.name)
    session = _sessions.get(key) if client is not None else None
    if session is None or session.lake is not lake or session.closed:
        session = Session(lake, client)
        _sessions[(id(session.client), lake.config.name)] = session
    return session


def to_dask(
    lake: Lake,
    dids: DID | str | Iterable[DID | str],
    func: Callable[[LakeFile], Any] | None = None,
    *,
    client: Any = None,
) -> Any:
    """A ``dask.bag.Bag`` of ``func(file)`` per file of ``dids`` (see :meth:`Session.to_dask`)."""
    return connect(lake, client).to_dask(dids, func)


def table_frame(
    lake: Lake, dids: DID | str | Iterable[DID | str], *, client: Any = None, **options: Any
) -> Any:
    """A dataframe of the FITS tables of ``dids`` (see :meth:`Session.table_frame`)."""
    return connect(lake, client).table_frame(dids, **options)
