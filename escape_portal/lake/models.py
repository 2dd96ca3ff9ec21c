"""Typed records returned by the lake library."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlparse

from escape_portal.errors import InvalidDID, InvalidRequest

DIDType = Literal["container", "dataset", "file"]
_SCOPE = re.compile(r"^[A-Za-z0-9_\-.]{1,25}$")
_NAME = re.compile(r"^[/A-Za-z0-9][/A-Za-z0-9.\-_]{0,249}$")
_EXAMPLE = "e.g. 'cta:crab-2024.dl3'"


@dataclass(frozen=True, order=True)
class DID:
    """A data identifier ``scope:name``."""

    scope: str
    name: str

    @classmethod
    def parse(cls, text: str) -> DID:
        """Parse ``scope:name``.

        Raises
        ------
        InvalidDID
            With what is wrong and an example, if ``text`` is not a valid DID.

        """
        if not isinstance(text, str) or ":" not in text:
            raise InvalidDID(
                f"{text!r} is not a data identifier.",
                f"Write it as scope:name, {_EXAMPLE}.",
            )
        scope, name = text.split(":", 1)
        if not _SCOPE.match(scope):
            raise InvalidDID(
                f"{scope!r} is not a valid scope in {text!r}.",
                "A scope has 1 to 25 letters, digits, '.', '-' or '_'.",
            )
        if not _NAME.match(name):
            raise InvalidDID(
                f"{name!r} is not a valid name in {text!r}.",
                "A name starts with a letter, digit or '/' and has only letters, digits, "
                f"'/', '.', '-' or '_' (at most 250), {_EXAMPLE}.",
            )
        return cls(scope, name)

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}"

    def as_rucio(self) -> dict[str, str]:
        """The ``{'scope': ..., 'name': ...}`` form Rucio's API takes."""
        return {"scope": self.scope, "name": self.name}


def as_did(value: DID | str) -> DID:
    """Accept a :class:`DID` or its text."""
    return value if isinstance(value, DID) else DID.parse(value)


@dataclass(frozen=True)
class Record:
    """Base of the records: conversion to plain JSON-able dicts."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary of the record (datetimes as ISO 8601)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, DID):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class DIDInfo(Record):
    """A data identifier with its type and size (``None`` where the lake did not say)."""

    scope: str
    name: str
    type: DIDType | None
    bytes: int | None = None
    length: int | None = None

    @property
    def did(self) -> DID:  # noqa: D102
        return DID(self.scope, self.name)


@dataclass(frozen=True)
class FileInfo(Record):
    """A file with its size and checksums."""

    scope: str
    name: str
    bytes: int
    adler32: str | None
    md5: str | None = None

    @property
    def did(self) -> DID:  # noqa: D102
        return DID(self.scope, self.name)


def web_url(url: str) -> str:
    """``url`` with ``davs://`` spelled ``https://`` (the same resource); others unchanged."""
    return "https" + url[len("davs") :] if url.startswith("davs://") else url


@dataclass(frozen=True)
class FileReplicas(Record):
    """The replicas of one file: storage element -> state (AVAILABLE, COPYING, ...)."""

    scope: str
    name: str
    bytes: int | None
    adler32: str | None
    states: dict[str, str]
    pfns: dict[str, list[str]] = field(default_factory=dict)

    def local_path(self, rse: str) -> Path | None:
        """The file's path on this machine at ``rse``, if that replica is a local file."""
        for pfn in self.pfns.get(rse, []):
            parsed = urlparse(pfn)
            if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
                return Path(parsed.path)
        return None

    def url(self, rse: str, schemes: tuple[str, ...] = ("https", "davs", "http")) -> str | None:
        """A URL of the replica at ``rse`` in the first of ``schemes`` it offers.

        ``davs://`` URLs (WebDAV over TLS, as Rucio names it) are given as ``https://``,
        the same URL as web clients (DataLink, ObsCore, browsers) spell it; the storage
        still wants its token (:meth:`escape_portal.lake.Lake.storage_token`).
        """
        for scheme in schemes:
            for pfn in self.pfns.get(rse, []):
                if urlparse(pfn).scheme == scheme:
                    return web_url(pfn)
        return None


@dataclass(frozen=True)
class DatasetReplica(Record):
    """How much of a dataset one storage element holds."""

    scope: str
    name: str
    rse: str
    site: str | None
    available_files: int
    total_files: int
    available_bytes: int
    total_bytes: int
    state: str

    @property
    def complete(self) -> bool:  # noqa: D102
        return self.total_files > 0 and self.available_files >= self.total_files


@dataclass(frozen=True)
class Rule(Record):
    """A replication rule and the state of its locks."""

    id: str
    scope: str
    name: str
    account: str
    rse_expression: str
    copies: int
    state: str
    locks_ok: int
    locks_replicating: int
    locks_stuck: int
    expires_at: dt.datetime | None
    created_at: dt.datetime | None
    comment: str | None = None
    activity: str | None = None
    error: str | None = None

    @property
    def total_locks(self) -> int:  # noqa: D102
        return self.locks_ok + self.locks_replicating + self.locks_stuck


@dataclass(frozen=True)
class RuleProgress(Record):
    """Where a rule stands: files and bytes at the destination, and its state."""

    rule: Rule
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    stuck_reason: str | None = None

    @property
    def state(self) -> str:
        """``available``, ``replicating``, ``stuck`` or ``waiting``, in the user's words."""
        if self.rule.state == "OK":
            return "available"
        if self.rule.state == "STUCK" or self.rule.locks_stuck:
            return "stuck"
        if self.rule.state == "REPLICATING":
            return "replicating"
        return "waiting"

    @property
    def fraction(self) -> float:  # noqa: D102
        if self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        return 1.0 if self.state == "available" else 0.0


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the cursor of the next (``None`` on the last page)."""

    items: list[T]
    next_cursor: str | None

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


def encode_cursor(offset: int) -> str:
    """Opaque cursor for the item at ``offset`` of a listing."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """Offset of an opaque cursor (``None`` is the start).

    Raises
    ------
    InvalidRequest
        If the cursor was not made by :func:`encode_cursor`.

    """
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded.encode()))["o"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(
            f"{cursor!r} is not a valid page cursor.", "Start again from the first page."
        ) from exc
    if not isinstance(offset, int) or offset < 0:
        raise InvalidRequest(f"{cursor!r} is not a valid page cursor.", "Start again.")
    return offset


def parse_filters(items: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    """Metadata filters from ``{'key.op': value}`` or ``['key>=value', 'key=value']``.

    Operators: ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``; values become numbers when they
    look like numbers; ``*`` in string values is a wildcard.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    ops = [(">=", ".gte"), ("<=", ".lte"), ("!=", ".ne"), (">", ".gt"), ("<", ".lt"), ("=", "")]
    filters: dict[str, Any] = {}
    for item in items:
        for op, suffix in ops:
            if op in item:
                key, value = (part.strip() for part in item.split(op, 1))
                if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                    raise InvalidRequest(
                        f"{key!r} in filter {item!r} is not a metadata key.",
                        "Write filters as key=value, key>value, key<=value, ...",
                    )
                filters[key + suffix] = _number(value)
                break
        else:
            raise InvalidRequest(
                f"{item!r} is not a filter.", "Write filters as key=value, key>value, key<=value."
            )
    return filters


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
