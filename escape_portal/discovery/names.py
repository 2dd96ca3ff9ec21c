"""Sky positions from object names ("Crab", "M 31").

First the configured resolver (the embedded lake offers one at
``http://127.0.0.1:PORT/resolve``; it answers ``{"name", "ra", "dec"}`` in JSON for
``GET {resolver_url}?name=...``), then CDS Sesame through astropy, each with a timeout.
"""

from __future__ import annotations

import math
import os

import requests
from astropy.coordinates import SkyCoord

from escape_portal.errors import InvalidRequest, NotFound, ServiceUnavailable

RESOLVER_ENV = "ESCAPE_PORTAL_RESOLVER"


def _local(name: str, url: str, timeout: float) -> SkyCoord | None:
    """Coordinates from a JSON resolver; ``None`` if it does not know the name."""
    response = requests.get(url, params={"name": name}, timeout=timeout)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    data = response.json()
    ra, dec = float(data["ra"]), float(data["dec"])
    if not (math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90):
        raise ValueError(f"answered impossible coordinates ra={ra}, dec={dec}")
    return SkyCoord(ra, dec, unit="deg", frame="icrs")


def _sesame(name: str, timeout: float) -> SkyCoord:
    from astropy.utils import data

    with data.conf.set_temp("remote_timeout", timeout):
        coord: SkyCoord = SkyCoord.from_name(name, cache=False)
    return coord


def resolve_name(name: str, *, resolver_url: str | None = None, timeout: float = 5.0) -> SkyCoord:
    """The ICRS position of a named object.

    Parameters
    ----------
    name
        Object name, e.g. ``"Crab"`` or ``"M 31"``.
    resolver_url
        A resolver answering ``{"name", "ra", "dec"}`` JSON at ``GET URL?name=...``
        (e.g. the embedded lake's ``/resolve``); else ``$ESCAPE_PORTAL_RESOLVER``.
        It is asked first; Sesame (CDS, through astropy) after.
    timeout
        Seconds to wait for each resolver.

    Returns
    -------
    astropy.coordinates.SkyCoord

    Raises
    ------
    InvalidRequest
        An empty name.
    NotFound
        A resolver answered but none knows the name.
    ServiceUnavailable
        No resolver could be reached.

    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("An empty name cannot be resolved.", "Give an object name, e.g. Crab.")
    name = name.strip()
    url = resolver_url or os.environ.get(RESOLVER_ENV)
    tried: list[str] = []
    unknown_to: list[str] = []
    if url:
        try:
            found = _local(name, url, timeout)
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            tried.append(f"{url}: {_short(exc)}")
        else:
            if found is not None:
                return found
            unknown_to.append(url)
    from astropy.coordinates.name_resolve import NameResolveError, sesame_url

    try:
        return _sesame(name, timeout)
    except NameResolveError as exc:
        text = str(exc)
        if "Unable to find coordinates" in text:
            unknown_to.append("Sesame")
        else:
            tried.append(f"Sesame ({', '.join(sesame_url.get())}): unreachable")
    except (OSError, ValueError) as exc:
        tried.append(f"Sesame: {_short(exc)}")
    if unknown_to:
        raise NotFound(
            f"No resolver knows the name {name!r} (asked {', '.join(unknown_to)}).",
            "Check the spelling, or give coordinates instead, e.g. pos=(83.63, 22.01).",
        )
    raise ServiceUnavailable(
        f"No name resolver could be reached (tried {'; '.join(tried)}); {name!r} was not resolved.",
        "Give coordinates instead, e.g. pos=(83.63, 22.01), or configure a resolver "
        f"with resolver_url= or ${RESOLVER_ENV}.",
        url=url or "",
        timeout=timeout,
    )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:120] + ("..." if len(text) > 120 else "")
