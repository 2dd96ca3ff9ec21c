"""WSGI entry of the embedded lake's Rucio server.

Rucio's own application, with the SQLite adaptations of
:mod:`escape_portal.embedded.sqlite_compat`, the memcached retries of
:mod:`.rucio_cache` and the request validation of :mod:`.rucio_schema` applied before
it is imported.
"""

from escape_portal.embedded.rucio_cache import reconnect_to_memcached
from escape_portal.embedded.rucio_schema import validate_once
from escape_portal.embedded.sqlite_compat import (
    cap_or_chains,
    immediate_write_sessions,
    narrow_replica_lookups,
    normal_sync,
    temporary_table_statistics,
)

reconnect_to_memcached()  # before Rucio's modules make their cache regions
immediate_write_sessions()
cap_or_chains()
narrow_replica_lookups()
normal_sync()
temporary_table_statistics()
validate_once()

from rucio.web.rest.flaskapi.v1.main import application  # noqa: E402 - after the adaptations

__all__ = ["application"]
