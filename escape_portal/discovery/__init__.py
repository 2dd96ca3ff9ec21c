"""Discovery in the Virtual Observatory: find services, search them all at once, follow links.

::

    from escape_portal.discovery import Query, Service, search, resolve_name

    crab = resolve_name("Crab")
    services = [Service("lake", "tap", "http://127.0.0.1:8080/tap")]
    result = search(services, Query(pos=crab, radius=0.5, dataproduct_type="event"))
    print(result)          # rows found and how each service answered
    result.table           # one ObsCore-shaped astropy Table, with service/query columns

See ``docs/discovery.md``.
"""

from escape_portal.discovery.datalink import Link, datalinks
from escape_portal.discovery.fanout import DiscoveryResult, ServiceStatus, search
from escape_portal.discovery.linking import LinkRule, link_to_lake, linked_dids
from escape_portal.discovery.names import resolve_name
from escape_portal.discovery.normalise import OBSCORE_COLUMNS, unique_records
from escape_portal.discovery.query import PRODUCT_TYPES, Query, adql_string, check_adql
from escape_portal.discovery.services import Service, registry_endpoint, registry_search

__all__ = [
    "OBSCORE_COLUMNS",
    "PRODUCT_TYPES",
    "DiscoveryResult",
    "Link",
    "LinkRule",
    "Query",
    "Service",
    "ServiceStatus",
    "adql_string",
    "check_adql",
    "datalinks",
    "link_to_lake",
    "linked_dids",
    "registry_endpoint",
    "registry_search",
    "resolve_name",
    "search",
    "unique_records",
]
