"""Work done off the kernel's thread, one task at a time, so that widgets stay responsive.

Widgets hand every call to the lake or the Virtual Observatory to a :class:`Background`:
the cell (and the next one) returns at once, and the widget is updated when the answer
comes. Tasks of one widget run in order on one worker thread, so that they never race
each other on the same Rucio client. ``Background(inline=True)`` runs tasks at once in
the caller's thread, for tests and scripts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from escape_portal.errors import LakeError

log = logging.getLogger(__name__)
T = TypeVar("T")


def unexpected(exc: BaseException) -> LakeError:
    """An error no service mapped, told the user plainly (and logged with its traceback)."""
    log.error("escape-portal widget: unexpected error", exc_info=exc)
    return LakeError(
        f"Something unexpected went wrong: {type(exc).__name__}: {exc}",
        "Try again; if it persists, report it with the kernel's log.",
    )


class Background:
    """Runs tasks one after the other on a worker thread.

    Parameters
    ----------
    inline
        Run each task at once in the calling thread instead (tests, scripts).

    """

    def __init__(self, *, inline: bool = False) -> None:
        self.inline = inline
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def submit(
        self,
        work: Callable[[], T],
        done: Callable[[T], None],
        failed: Callable[[LakeError], None],
    ) -> None:
        """Run ``work``; then ``done(result)``, or ``failed(error)`` in the user's words.

        Both callbacks run in the worker thread: they must only touch widget state
        through thread-safe updates.
        """

        def task() -> None:
            try:
                try:
                    result = work()
                except LakeError as exc:
                    failed(exc)
                    return
                except Exception as exc:
                    failed(unexpected(exc))
                    return
                done(result)
            except Exception as exc:  # a failing callback must not kill the worker
                log.error("escape-portal widget: updating the widget failed", exc_info=exc)
            finally:
                with self._lock:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.set()

        with self._lock:
            self._pending += 1
            self._idle.clear()
        if self.inline:
            task()
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="escape-portal-widget")
        future: Future[None] = self._executor.submit(task)
        del future

    @property
    def busy(self) -> bool:
        """Whether a task is queued or running."""
        return not self._idle.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no task is queued or running; return whether that happened in time."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the worker after the tasks already queued."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        with self._lock:
            self._pending = 0
            self._idle.set()
