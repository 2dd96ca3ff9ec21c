"""The IVOA identifiers that link Virtual Observatory records to lake DIDs.

Every ObsCore record the lake publishes has ``obs_publisher_did =
ivo://escape.eu/lake?SCOPE:NAME`` (the DID of the file). This scheme is a contract between
the lake's VO publication (:mod:`escape_portal.vo_publish.server`), which writes it, and
the discovery client, which reads it to turn a VO row back into a lake DID.
"""

from __future__ import annotations

from escape_portal.lake.models import DID

#: The registry authority and resource key under which the lake's records are published.
LAKE_IVOID = "ivo://escape.eu/lake"


def publisher_did(scope: str, name: str) -> str:
    """The publisher DID of the lake file ``scope:name``.

    Parameters
    ----------
    scope, name
        The Rucio scope and name of the file.

    Returns
    -------
    str
        ``ivo://escape.eu/lake?scope:name``.

    """
    return f"{LAKE_IVOID}?{scope}:{name}"


def parse_publisher_did(text: str) -> DID | None:
    """The lake DID of a publisher DID, or ``None`` if it is not one of the lake's.

    Parameters
    ----------
    text
        An ``obs_publisher_did`` (or DataLink ``ID``); the authority part is compared
        without regard to case, as IVOA identifiers are case-insensitive there.

    Returns
    -------
    DID or None
        The DID, or ``None`` for identifiers of other publishers or malformed ones.

    """
    if not isinstance(text, str):
        return None
    base, sep, did = text.strip().partition("?")
    if not sep or base.lower() != LAKE_IVOID:
        return None
    try:
        return DID.parse(did)
    except ValueError:
        return None
