"""VO services to search, and finding them in a RegTAP registry.

The registry is the one given, else ``$IVOA_REGISTRY`` read when searching (pyvo reads
that variable once, at import; we pass our own TAP service to pyvo instead of relying on
its module-level choice), else GAVO's registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from escape_portal.discovery.session import VOSession, describe_failure
from escape_portal.errors import InvalidRequest, ServiceUnavailable

ServiceKind = Literal["tap", "sia2", "scs", "ssa"]
KINDS: tuple[str, ...] = ("tap", "sia2", "scs", "ssa")
DEFAULT_REGISTRY = "http://reg.g-vo.org/tap"

#: Our kinds, pyvo's registry service types, and the IVOA standard ids they stand for.
_PYVO_TYPES = {"tap": "tap", "sia2": "sia2", "scs": "conesearch", "ssa": "ssa"}
_STANDARDS = {
    "ivo://ivoa.net/std/tap": "tap",
    "ivo://ivoa.net/std/sia2": "sia2",
    "ivo://ivoa.net/std/conesearch": "scs",
    "ivo://ivoa.net/std/ssa": "ssa",
}
_ALIASES = {"conesearch": "scs", "cone": "scs", "ssap": "ssa", "obscore": "tap"}
#: Terms of the IVOA messenger vocabulary (http://www.ivoa.net/rdf/messenger), so that
#: pyvo need not download it.
MESSENGERS: tuple[str, ...] = (
    "radio",
    "millimeter",
    "infrared",
    "optical",
    "uv",
    "euv",
    "x-ray",
    "gamma-ray",
    "photon",
    "neutrino",
    "gravitational-wave",
    "particle",
)


@dataclass(frozen=True)
class Service:
    """A Virtual Observatory service to search.

    Attributes
    ----------
    name
        Short name, used in statuses and in the ``service`` column of results.
    kind
        ``"tap"`` (ObsCore over TAP), ``"sia2"``, ``"scs"`` (cone search) or ``"ssa"``.
    url
        Base URL: the TAP root for ``tap``, the query endpoint for the others.
    ivoid
        IVOA identifier of the resource, when it came from a registry.
    title
        Human title.

    """

    name: str
    kind: ServiceKind
    url: str
    ivoid: str | None = None
    title: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidRequest(
                f"Service {self.name!r}: unknown kind {self.kind!r}.",
                f"Use one of {', '.join(KINDS)}.",
            )
        if not self.url.startswith(("http://", "https://")):
            raise InvalidRequest(
                f"Service {self.name!r}: {self.url!r} is not an http(s) URL.",
                "Give the service's base URL, e.g. https://example.org/tap.",
            )


def registry_endpoint(given: str | None = None) -> str:
    """The RegTAP endpoint used: ``given``, else ``$IVOA_REGISTRY``, else GAVO's."""
    return given or os.environ.get("IVOA_REGISTRY") or DEFAULT_REGISTRY


def instance_endpoints(
    config: Any,
    *,
    registry_url: str | None = None,
    resolver_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """The registry and name resolver every surface uses for an instance.

    Each: the one given, else the environment (``$IVOA_REGISTRY``,
    ``$ESCAPE_PORTAL_RESOLVER``), else the instance's own VO endpoint (``vo_url`` +
    ``/tap`` and ``/resolve``, what the embedded lake publishes); ``None`` when there is
    none. ``config`` is a :class:`~escape_portal.config.LakeConfig` or ``None``.
    """
    env = os.environ if env is None else env
    vo_url = str(getattr(config, "vo_url", None) or "").rstrip("/")
    registry = registry_url or env.get("IVOA_REGISTRY") or (f"{vo_url}/tap" if vo_url else None)
    resolver = (
        resolver_url
        or env.get("ESCAPE_PORTAL_RESOLVER")
        or (f"{vo_url}/resolve" if vo_url else None)
    )
    return registry, resolver


def _kind(servicetype: str) -> str:
    kind = _ALIASES.get(servicetype.lower(), servicetype.lower())
    if kind not in KINDS:
        raise InvalidRequest(
            f"Unknown service type {servicetype!r}.",
            f"Use one of {', '.join(KINDS)} (or conesearch, ssap).",
        )
    return kind


def _constraints(
    keywords: str | Sequence[str] | None,
    kinds: list[str],
    waveband: str | Sequence[str] | None,
    pos: Any,
    radius: Any,
) -> list[Any]:
    from pyvo.registry import rtcons

    class Waveband(rtcons.Waveband):  # type: ignore[misc]
        _legal_terms = set(MESSENGERS)  # pyvo would download the vocabulary

    constraints: list[Any] = []
    if keywords:
        words = [keywords] if isinstance(keywords, str) else list(keywords)
        constraints.append(rtcons.Freetext(*words))
    constraints.append(rtcons.Servicetype(*(_PYVO_TYPES[k] for k in kinds)))
    if waveband:
        bands = [waveband] if isinstance(waveband, str) else list(waveband)
        unknown = [b for b in bands if b.lower() not in MESSENGERS]
        if unknown:
            raise InvalidRequest(
                f"Unknown waveband(s) {', '.join(unknown)}.",
                f"Use terms of the IVOA messenger vocabulary: {', '.join(MESSENGERS)}.",
            )
        constraints.append(Waveband(*bands))
    if pos is not None:
        from escape_portal.discovery.query import Query

        q = Query(pos=pos, radius=radius if radius is not None else 0.1)
        constraints.append(rtcons.Spatial([q.ra, q.dec, q.radius_deg]))
    return constraints


def registry_search(
    keywords: str | Sequence[str] | None = None,
    servicetype: str | Sequence[str] | None = None,
    waveband: str | Sequence[str] | None = None,
    pos: Any = None,
    radius: Any = None,
    *,
    registry_url: str | None = None,
    timeout: float = 20.0,
    maxrec: int | None = None,
) -> list[Service]:
    """Find VO services in a RegTAP registry.

    Parameters
    ----------
    keywords
        Words matched in titles, descriptions and subjects.
    servicetype
        Kinds of service wanted (``tap``, ``sia2``, ``scs``, ``ssa``); all four if none.
    waveband
        Messenger vocabulary terms (``optical``, ``gamma-ray``, ...).
    pos, radius
        A sky region services must cover (RegTAP 1.2 registries), as in :class:`Query`.
    registry_url
        TAP endpoint of the registry; else ``$IVOA_REGISTRY``, else GAVO's registry.
    timeout
        Seconds for the whole search.
    maxrec
        Most resources returned by the registry.

    Returns
    -------
    list of Service
        One per (resource, interface) of the wanted kinds, in the registry's order.

    Raises
    ------
    InvalidRequest
        An unknown service type or waveband, or a query the registry rejected.
    ServiceUnavailable
        The registry could not be reached, did not answer in time or answered garbage.

    """
    import time

    from pyvo.dal import DALQueryError, TAPService
    from pyvo.registry.regtap import RegistryQuery, get_RegTAP_query

    if servicetype is None:
        kinds = list(KINDS)
    else:
        wanted = [servicetype] if isinstance(servicetype, str) else list(servicetype)
        kinds = list(dict.fromkeys(_kind(s) for s in wanted))
    url = registry_endpoint(registry_url)
    constraints = _constraints(keywords, kinds, waveband, pos, radius)
    session = VOSession(timeout, deadline=time.monotonic() + timeout)
    try:
        service = TAPService(url, session=session)
        adql = get_RegTAP_query(*constraints, service=service)
        results = RegistryQuery(service.baseurl, adql, maxrec=maxrec, session=session).execute()
        resources = list(results)
    except DALQueryError as exc:
        if session.last_status is None or session.last_status < 400:
            raise InvalidRequest(
                f"The registry at {url} rejected the search: {exc.reason or exc}.",
                "Loosen or correct the constraints.",
            ) from None
        _, message = describe_failure(session, exc)
        raise ServiceUnavailable(
            f"The registry at {url} failed: {message}.", _REGISTRY_HINT, url=url, timeout=timeout
        ) from None
    except Exception as exc:
        state, message = describe_failure(session, exc)
        if state == "timeout":
            message = f"no answer within {timeout:g} s"
        raise ServiceUnavailable(
            f"The registry at {url} could not be searched: {message}.",
            _REGISTRY_HINT,
            url=url,
            timeout=timeout,
        ) from None
    finally:
        session.close()
    found: list[Service] = []
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        for interface in resource.interfaces:
            standard = (interface.standard_id or "").split("#")[0].lower()
            kind = _STANDARDS.get(standard)
            if kind not in kinds or not interface.is_standard or not interface.access_url:
                continue
            if (kind, interface.access_url) in seen:
                continue
            seen.add((kind, interface.access_url))
            found.append(
                Service(
                    name=str(resource.short_name or resource.ivoid),
                    kind=kind,  # type: ignore[arg-type]
                    url=str(interface.access_url),
                    ivoid=str(resource.ivoid),
                    title=str(resource.res_title or ""),
                )
            )
    return found


_REGISTRY_HINT = (
    "Check the registry URL (registry_url= or $IVOA_REGISTRY) and your network, "
    "or give the services directly as Service(name, kind, url)."
)
