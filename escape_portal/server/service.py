"""What the REST handlers share: the lake, the compute's topology, a thread pool.

One :class:`PortalService` is made when the extension loads and kept in the Tornado
application's settings. Handlers stay thin: they parse the request, call the library
(:mod:`escape_portal.lake`, :mod:`escape_portal.placement`, :mod:`escape_portal.access`,
:mod:`escape_portal.discovery`) through :meth:`PortalService.run`, which runs it in the
service's thread pool so that the Jupyter server's event loop never waits on the lake.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from escape_portal.access import Access, Cache, default_cache_dir, default_cache_limit
from escape_portal.config import LakeConfig, load_instances, select_instance
from escape_portal.errors import NotFound
from escape_portal.events import estimate_seconds_left
from escape_portal.lake import Lake, RuleProgress
from escape_portal.lake.listings import OpenListings
from escape_portal.topology import Topology, detect_compute_site, lake_topology

T = TypeVar("T")

#: Settings of the server extension and the environment variables they stand for
#: (``escape_portal.config`` reads those variables; a setting beats its variable).
ENV_OF_SETTING: dict[str, str] = {
    "instance": "ESCAPE_PORTAL_INSTANCE",
    "rucio_host": "RUCIO_BASE_URL",
    "auth_host": "RUCIO_AUTH_URL",
    "account": "RUCIO_ACCOUNT",
    "auth_type": "RUCIO_AUTH_TYPE",
    "token_file": "RUCIO_OIDC_TOKEN_FILE",
    "request_timeout": "RUCIO_TIMEOUT",
    "compute_site": "ESCAPE_COMPUTE_SITE",
    "mounted_rse": "ESCAPE_MOUNTED_RSE",
    "mount_path": "ESCAPE_MOUNT_PATH",
    "vo_url": "ESCAPE_VO_URL",
}


@dataclass(frozen=True)
class ServerSettings:
    """The extension's settings (``c.EscapePortal.*``); ``None`` means "not set here".

    Attributes
    ----------
    instance
        Name of the configured Rucio instance to use (see :mod:`escape_portal.config`).
    rucio_host, auth_host, account, auth_type, token_file, request_timeout
        Describe the instance here instead of in a file or the environment.
    compute_site, mounted_rse, mount_path
        The notebook's compute site, and the storage mounted into it at ``mount_path``.
    vo_url
        The lake's own VO endpoint (TAP at ``/tap``, also its default registry).
    registry_url, resolver_url
        RegTAP endpoint for the VO registry search; name resolver (``GET URL?name=``).
    cache_dir, cache_limit
        Download cache folder and its size limit in bytes.
    vo_timeout
        Seconds a VO search (all services together) may take.
    max_workers
        Threads running lake and VO calls.
    topology_ttl
        Seconds the compute's topology (sites, storage, links) is kept before re-reading.
    open_listings, listing_idle
        Listings kept open between pages, and seconds an unread one is kept.

    """

    instance: str | None = None
    rucio_host: str | None = None
    auth_host: str | None = None
    account: str | None = None
    auth_type: str | None = None
    token_file: str | None = None
    request_timeout: float | None = None
    compute_site: str | None = None
    mounted_rse: str | None = None
    mount_path: str | None = None
    vo_url: str | None = None
    registry_url: str | None = None
    resolver_url: str | None = None
    cache_dir: str | None = None
    cache_limit: int | None = None
    vo_timeout: float = 10.0
    max_workers: int = 8
    topology_ttl: float = 300.0
    open_listings: int = 4
    listing_idle: float = 60.0

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with the settings given here written over their variables."""
        merged = dict(env)
        for setting, variable in ENV_OF_SETTING.items():
            value = getattr(self, setting)
            if value is not None:
                merged[variable] = str(value)
        if self.rucio_host and not self.instance:
            # The instance described here is the one to use, whatever files say.
            merged["ESCAPE_PORTAL_INSTANCE"] = merged.get("ESCAPE_PORTAL_INSTANCE_NAME", "env")
        if self.token_file:
            for variable in ("RUCIO_ACCESS_TOKEN", "BEARER_TOKEN"):
                merged.pop(variable, None)
        return merged

    def resolve(
        self, env: Mapping[str, str] | None = None, instance: str | None = None
    ) -> LakeConfig:
        """The instance to use: selected as :func:`select_instance` does, then these settings.

        ``instance`` names another configured instance than the settings' one.

        Raises
        ------
        InvalidRequest
            No instance is configured, or the one named does not exist.

        """
        merged = self.environment(os.environ if env is None else env)
        config = select_instance(instance or self.instance, merged)
        updates: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("compute_site", "mounted_rse", "mount_path", "vo_url", "account")
            if getattr(self, name) is not None
        }
        if self.request_timeout is not None:
            updates["timeout"] = float(self.request_timeout)
        if self.auth_type is not None:
            updates["auth_type"] = self.auth_type
        if self.token_file is not None:
            updates.update(token_file=self.token_file, token=None)
        return dataclasses.replace(config, **updates) if updates else config

    def instances(self, env: Mapping[str, str] | None = None) -> dict[str, LakeConfig]:
        """Every configured instance, seen with these settings."""
        return load_instances(self.environment(os.environ if env is None else env))


class PortalService:
    """The lake, topology, download cache and thread pool behind the REST API.

    Parameters
    ----------
    settings
        The extension's settings.
    env
        Environment to read instances from (default: the process's).

    """

    def __init__(self, settings: ServerSettings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = dict(os.environ if env is None else env)
        self.executor = ThreadPoolExecutor(
            max_workers=settings.max_workers, thread_name_prefix="escape-portal"
        )
        self.listings = OpenListings(settings.open_listings, settings.listing_idle)
        self._lock = threading.Lock()
        self._lake: Lake | None = None
        self._chosen: str | None = None  # an instance chosen in the UI, over the settings'
        self._topology: tuple[float, Topology, str | None] | None = None
        self._samples: dict[str, collections.deque[tuple[float, int]]] = {}

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking ``fn(*args, **kwargs)`` in the thread pool and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the thread pool (pending calls are cancelled) and close open listings."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.listings.close()

    # -- lake ---------------------------------------------------------------------------

    def config(self) -> LakeConfig:
        """The instance in use (re-read until a lake was reached once)."""
        if self._lake is not None:
            return self._lake.config
        return self.settings.resolve(self._env, self._chosen)

    def instances(self) -> dict[str, LakeConfig]:
        """Every configured instance."""
        return self.settings.instances(self._env)

    @property
    def lake(self) -> Lake:
        """The lake, authenticated on first use (shared by the pool's threads)."""
        with self._lock:
            if self._lake is None:
                lake = Lake(self.settings.resolve(self._env, self._chosen))
                lake.client  # noqa: B018 - authenticate once, here, not in several threads
                self._lake = lake
            return self._lake

    def use_instance(self, name: str) -> LakeConfig:
        """Work with the configured instance ``name`` from now on (for this server).

        The new lake is reached (and authenticated) first: if that fails, the error is
        raised and the instance in use stays. Open listings and the topology are of the
        old instance and are let go.
        """
        if name not in self.instances():
            raise NotFound(
                f"No Rucio instance named {name!r}.",
                f"Configured: {', '.join(self.instances()) or 'none'}.",
            )
        lake = Lake(self.settings.resolve(self._env, name))
        lake.client  # noqa: B018 - authenticate now: a wrong choice fails here
        with self._lock:
            self._lake, self._chosen, self._topology = lake, name, None
            self._samples.clear()
            old, self.listings = (
                self.listings,
                OpenListings(self.settings.open_listings, self.settings.listing_idle),
            )
        old.close()
        return lake.config

    def topology(self) -> tuple[Topology, str | None]:
        """The topology seen from the compute site, and that site (cached for a while)."""
        lake = self.lake
        with self._lock:
            cached = self._topology
        if cached and time.monotonic() - cached[0] < self.settings.topology_ttl:
            return cached[1], cached[2]
        site = detect_compute_site(lake.config.compute_site, self._env)
        topology = lake_topology(lake, site)
        with self._lock:
            self._topology = (time.monotonic(), topology, site)
        return topology, site

    def access(self) -> Access:
        """Access to files, with the configured download cache."""
        root = Path(self.settings.cache_dir).expanduser() if self.settings.cache_dir else None
        limit = self.settings.cache_limit
        topology, site = self.topology()  # the replica choice ranks by it (cached)
        cache = None
        if root is not None or limit is not None:
            cache = Cache(
                root or default_cache_dir(),
                limit if limit is not None else default_cache_limit(),
            )
        return Access(self.lake, cache, compute_site=site, topology=topology)

    def vo_registry_url(self) -> str | None:
        """RegTAP endpoint: the setting, ``$IVOA_REGISTRY``, else the lake's own VO endpoint."""
        return self._endpoints()[0]

    def resolver_url(self) -> str | None:
        """Name resolver: the setting, ``$ESCAPE_PORTAL_RESOLVER``, else the lake's own."""
        return self._endpoints()[1]

    def _endpoints(self) -> tuple[str | None, str | None]:
        from escape_portal.discovery.services import instance_endpoints

        return instance_endpoints(
            self.config(),
            registry_url=self.settings.registry_url,
            resolver_url=self.settings.resolver_url,
            env=self._env,
        )

    # -- progress -------------------------------------------------------------------------

    def progress(self, rule_id: str) -> tuple[RuleProgress, float | None]:
        """Where a rule stands, and the seconds left at the rate seen by earlier polls."""
        progress = self.lake.rule_progress(rule_id)
        now = time.monotonic()
        with self._lock:
            samples = self._samples.setdefault(rule_id, collections.deque(maxlen=20))
            samples.append((now, progress.bytes_done))
            while samples and now - samples[0][0] > 600:
                samples.popleft()
            recent = list(samples)
            if progress.state in ("available", "stuck"):
                del self._samples[rule_id]
            if len(self._samples) > 1000:  # forgotten rules: forget them too
                self._samples.pop(next(iter(self._samples)))
        return progress, estimate_seconds_left(recent, progress.bytes_total)
