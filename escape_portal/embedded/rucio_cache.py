"""Rucio's cache survives a restarted memcached (the supervisor restarts a dead one).

Rucio's ``MemcacheRegion`` talks to memcached through dogpile's pymemcache backend with
no retry: once memcached restarts, every pooled connection fails its next call with
``MemcacheUnexpectedCloseError`` (the server answers HTTP 500, a login fails), and the
hash client then shuns the server for a minute. :func:`reconnect_to_memcached` adds
dogpile's own retry options to the regions Rucio configures — a call that meets a closed
connection is sent again on a new one — and lets a memcached that is back be used within
a second. Applied in the embedded lake's server and daemons, before Rucio's modules make
their regions.

:func:`remember_rse_columns` keeps what Rucio caches of a storage element by its id
(name, VO: ``rse.get_rse_name`` and friends) in the process as well: the conveyor asks
for the names of the same few storage elements once per request, and each memcached
round trip was about an eighth of the daemons' CPU during a 10,000-file make-available.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: Seconds a storage element's column is kept in the process (Rucio's own memcached
#: region keeps it 900 s).
RSE_COLUMN_TTL = 300.0

#: dogpile's ``dogpile.cache.pymemcache`` arguments added to Rucio's.
RETRY_ARGUMENTS: dict[str, Any] = {
    "enable_retry_client": True,
    "retry_attempts": 3,
    "retry_delay": 0.2,
    "hashclient_dead_timeout": 1,
}


def reconnect_to_memcached() -> None:
    """Make Rucio's memcached regions retry on a connection memcached closed."""
    from pymemcache.exceptions import MemcacheUnexpectedCloseError
    from rucio.common.cache import MemcacheRegion

    if getattr(MemcacheRegion, "_escape_portal_retry", False):
        return
    configure = MemcacheRegion.configure

    def configure_with_retry(self: Any, backend: str, **kwargs: Any) -> Any:
        if backend == "dogpile.cache.pymemcache":
            kwargs["arguments"] = {
                **kwargs.get("arguments", {}),
                **RETRY_ARGUMENTS,
                "retry_for": (MemcacheUnexpectedCloseError, OSError),
            }
        return configure(self, backend, **kwargs)

    MemcacheRegion.configure = configure_with_retry
    MemcacheRegion._escape_portal_retry = True


def remember_rse_columns() -> None:
    """Keep Rucio's cached columns of storage elements (name, VO) in the process too."""
    from rucio.core import rse

    if getattr(rse, "_escape_portal_remembered", False):
        return
    lookup = rse._get_rse_db_column
    kept: dict[tuple[str, str], tuple[float, Any]] = {}
    lock = threading.Lock()

    def remembered(
        rse_id: str, column: Any, cache_prefix: str, include_deleted: bool = True, **kwargs: Any
    ) -> Any:
        if not include_deleted:  # not cached by Rucio either
            return lookup(rse_id, column, cache_prefix, include_deleted, **kwargs)
        key = (cache_prefix, str(rse_id))
        now = time.monotonic()
        with lock:
            hit = kept.get(key)
        if hit is not None and now - hit[0] < RSE_COLUMN_TTL:
            return hit[1]
        value = lookup(rse_id, column, cache_prefix, include_deleted, **kwargs)
        with lock:
            kept[key] = (now, value)
        return value

    rse._get_rse_db_column = remembered
    rse._escape_portal_remembered = True
