"""Rucio's cache survives a restarted memcached (the supervisor restarts a dead one).

Rucio's ``MemcacheRegion`` talks to memcached through dogpile's pymemcache backend with
no retry: once memcached restarts, every pooled connection fails its next call with
``MemcacheUnexpectedCloseError`` (the server answers HTTP 500, a login fails), and the
hash client then shuns the server for a minute. :func:`reconnect_to_memcached` adds
dogpile's own retry options to the regions Rucio configures — a call that meets a closed
connection is sent again on a new one — and lets a memcached that is back be used within
a second. Applied in the embedded lake's server and daemons, before Rucio's modules make
their regions.
"""

from __future__ import annotations

from typing import Any

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
