"""DataLink: the files, previews and cutout services behind one discovered row.

Links are read from the DataLink document directly; pyvo's ``bysemantics()`` is not used
because it downloads the IVOA semantics vocabulary, which an offline notebook cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests

from escape_portal.discovery.session import VOSession, describe_failure
from escape_portal.errors import InvalidRequest, NotFound, ServiceUnavailable

DATALINK_FORMAT = "content=datalink"


@dataclass(frozen=True)
class Link:
    """One link of a DataLink document.

    Attributes
    ----------
    url
        Where the linked resource is (empty for a service descriptor or an error).
    semantics
        ``#this`` (the dataset itself), ``#preview``, ``#cutout``, ``#auxiliary``...
    content_type
        MIME type, if the service gave one.
    content_length
        Size in bytes, if the service gave one.
    description
        Human description.
    error
        Why this link is not available, if it is not.
    service_def
        Identifier of the service descriptor (e.g. a SODA cutout service) the link
        is processed with, when it is one.
    id
        The dataset identifier the link belongs to.

    """

    url: str
    semantics: str
    content_type: str = ""
    content_length: int | None = None
    description: str = ""
    error: str = ""
    service_def: str = ""
    id: str = ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value)
    return "" if text in ("--", "None") else text


def _datalink_url(row_or_url: Any) -> str | Link:
    if isinstance(row_or_url, str):
        return row_or_url
    try:
        url = _text(row_or_url["access_url"])
    except (KeyError, TypeError, IndexError, ValueError):
        raise InvalidRequest(
            f"{type(row_or_url).__name__} has no access_url.",
            "Give a row of DiscoveryResult.table, or a DataLink URL.",
        ) from None
    try:
        fmt = _text(row_or_url["access_format"])
    except (KeyError, IndexError, ValueError):
        fmt = ""
    if DATALINK_FORMAT in fmt.lower():
        return url
    # Not a DataLink row: the access URL is the dataset itself.
    size: Any = None
    try:
        size = row_or_url["access_estsize"]
        size = int(size) * 1024 if _text(size) else None
    except (KeyError, IndexError, ValueError, TypeError):
        size = None
    return Link(url=url, semantics="#this", content_type=fmt, content_length=size)


def datalinks(
    row_or_url: Any, *, session: requests.Session | None = None, timeout: float = 10.0
) -> list[Link]:
    """The links of a discovered row (or of a DataLink URL).

    Parameters
    ----------
    row_or_url
        A row of :attr:`DiscoveryResult.table` (its ``access_url``; when its
        ``access_format`` is not a DataLink document the row's own file is the one
        ``#this`` link), or the URL of a DataLink document (``.../links?ID=...``).
    session
        A ``requests.Session`` to use (authentication...); a fresh one otherwise.
    timeout
        Seconds to wait for the DataLink service.

    Returns
    -------
    list of Link
        In the document's order; links the service reported as failed carry ``error``.

    Raises
    ------
    InvalidRequest
        The row has no access URL, or the service refused the URL as malformed.
    NotFound
        The service has no document at that URL.
    ServiceUnavailable
        The DataLink service could not be reached, did not answer in time, or did not
        answer a DataLink document.

    """
    from pyvo.dal.adhoc import DatalinkResults

    target = _datalink_url(row_or_url)
    if isinstance(target, Link):
        return [target]
    parsed = urlparse(target)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidRequest(
            f"{target[:200]!r} is not the URL of a DataLink document.",
            "Give an http:// or https:// URL of a DataLink service, such as a row's access_url.",
        )
    own = VOSession(timeout)
    if session is not None:
        own.headers.update(session.headers)
        own.cookies = session.cookies
        own.auth = session.auth
        own.cert = session.cert
        own.verify = session.verify
    try:
        results = DatalinkResults.from_result_url(target, session=own)
        links: list[Link] = []
        for record in results:
            # The columns themselves: pyvo's properties would look service descriptors up.
            def column(name: str, record: Any = record) -> str:
                return _text(record.get(name, default=None))

            size = column("content_length")
            links.append(
                Link(
                    url=column("access_url"),
                    semantics=column("semantics"),
                    content_type=column("content_type"),
                    content_length=int(float(size)) if size else None,
                    description=column("description"),
                    error=column("error_message"),
                    service_def=column("service_def"),
                    id=column("ID"),
                )
            )
    except Exception as exc:
        state, message = describe_failure(own, exc)
        if state == "timeout":
            message = f"no answer within {timeout:g} s"
        # The service answered that this URL is wrong: asking again will not help.
        if own.last_status in (404, 410):
            raise NotFound(
                f"The DataLink service at {target} has no such document: {message}.",
                "Use a row's access_url as the search answered it.",
            ) from None
        if own.last_status in (400, 405, 414, 422):
            raise InvalidRequest(
                f"The DataLink service at {target} refused the request: {message}.",
                "Use a row's access_url as the search answered it (with its ID=...).",
            ) from None
        raise ServiceUnavailable(
            f"The DataLink service at {target} could not be used: {message}.",
            "Try again later; the row's access_url may still give the dataset itself.",
            url=target,
            timeout=timeout,
        ) from None
    finally:
        own.close()
    return links
