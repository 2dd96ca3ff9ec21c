"""Listings kept open between pages, so that reading every page costs one listing.

Pages use the lake library's opaque cursors (:meth:`escape_portal.lake.Lake.page`). Read
alone, page *n* of a listing re-reads the *n - 1* pages before it from the server. Here
the server stream of the last page served stays open, positioned at the next cursor,
for a short while: when the next page is asked for, it continues where the previous one
stopped. At most a few are kept (each holds a connection to the lake); a listing that is
not there any more (evicted, expired, or its stream broke) is simply re-read from the
start, so answers never depend on what is kept.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, TypeVar

from escape_portal.errors import LakeError
from escape_portal.lake import Lake, Page
from escape_portal.lake.models import decode_cursor, encode_cursor

T = TypeVar("T")


class OpenListings:
    """A few listing streams kept open at their next page.

    Parameters
    ----------
    max_open
        Streams kept at most (0 keeps none: every page re-reads from the start).
    idle_seconds
        A stream not continued within this time is closed.

    """

    def __init__(self, max_open: int = 4, idle_seconds: float = 60.0) -> None:
        self.max_open = max_open
        self.idle_seconds = idle_seconds
        self._open: OrderedDict[tuple[Hashable, int], tuple[float, Iterator[Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def page(
        self,
        key: Hashable,
        produce: Callable[[], Iterable[T]],
        *,
        size: int,
        cursor: str | None,
    ) -> Page[T]:
        """One page of the listing ``produce()`` names ``key``, as :meth:`Lake.page` pages it.

        Parameters
        ----------
        key
            What the listing is (same key, same items in the same order).
        produce
            Starts the listing from its first item.
        size, cursor
            As for :meth:`escape_portal.lake.Lake.page`.

        """
        Lake.page((), size=size, cursor=cursor)  # the library's checks of size and cursor
        offset = decode_cursor(cursor)
        kept = self._take(key, offset)
        if kept is not None:
            try:
                return self._read(key, kept, offset, size)
            except LakeError:
                pass  # the kept stream broke (server restarted, timed out): start again
        items = iter(produce())
        next(itertools.islice(items, offset, offset), None)  # skip to the cursor
        return self._read(key, items, offset, size)

    def _read(self, key: Hashable, items: Iterator[T], offset: int, size: int) -> Page[T]:
        window = list(itertools.islice(items, size + 1))
        if len(window) <= size:
            _close(items)
            return Page(window, None)
        self._keep(key, offset + size, _Resumed(window[size:], items))
        return Page(window[:size], encode_cursor(offset + size))

    def _take(self, key: Hashable, offset: int) -> Iterator[Any] | None:
        with self._lock:
            self._expire()
            found = self._open.pop((key, offset), None)
        return found[1] if found else None

    def _keep(self, key: Hashable, offset: int, items: Iterator[Any]) -> None:
        if self.max_open <= 0:
            _close(items)
            return
        evicted = []
        with self._lock:
            self._open[(key, offset)] = (time.monotonic(), items)
            while len(self._open) > self.max_open:
                evicted.append(self._open.popitem(last=False)[1][1])
        for stream in evicted:
            _close(stream)

    def _expire(self) -> None:
        limit = time.monotonic() - self.idle_seconds
        while self._open:
            slot, (since, stream) = next(iter(self._open.items()))
            if since >= limit:
                return
            del self._open[slot]
            _close(stream)

    def close(self) -> None:
        """Close every kept stream."""
        with self._lock:
            streams = [stream for _, stream in self._open.values()]
            self._open.clear()
        for stream in streams:
            _close(stream)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


class _Resumed(Iterator[T]):
    """A stream with the items already read from it put back in front."""

    def __init__(self, head: list[T], rest: Iterator[T]) -> None:
        self._head = head
        self._rest = rest

    def __next__(self) -> T:
        if self._head:
            return self._head.pop(0)
        return next(self._rest)

    def close(self) -> None:
        """Close the underlying stream."""
        _close(self._rest)


def _close(items: Iterator[Any]) -> None:
    """Let go of a stream: generators are closed, which closes the server response."""
    close = getattr(items, "close", None)
    if callable(close):
        close()
