"""Notebook-attached DIDs, resolved into variables in the kernel.

The JupyterLab extension stores the DIDs a researcher attaches to a notebook in its
metadata (``metadata.escape_portal.dids``: ``{variable name: DID}``), so they travel
with the ``.ipynb``; whenever a kernel starts it asks this module to bind them::

    from escape_portal.kernel import attach_all
    attach_all({"crab_events": "cta:crab-2024.dl3"})

Each variable becomes the local path of a file, or the list of paths of a collection's
files, read in place from storage mounted into this compute (or from the verified
download cache). Data not here yet binds an :class:`Unavailable` placeholder that says
why and what to do; when a make-available rule is bringing the data near compute, the
placeholder is replaced by the paths as soon as the rule is available (the kernel prints
a line then). ``attach(..., fetch=True)`` downloads what is only remote instead.

In plain Python (no IPython) the same calls return the values without binding names.
"""

from __future__ import annotations

import keyword
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from escape_portal.access import Access, NotAvailableHere
from escape_portal.errors import InvalidRequest, LakeError
from escape_portal.events import ProgressEvent, Watch
from escape_portal.lake import DID, Lake
from escape_portal.lake.models import as_did

log = logging.getLogger(__name__)
Value = Path | list[Path]


@dataclass
class Unavailable:
    """Stands for attached data that cannot be read here yet.

    Using it like a path fails with the reason; it is replaced by the real value when
    the data arrives (if a rule is bringing it).
    """

    did: DID
    reason: str
    hint: str = ""
    rule_id: str | None = None
    progress: str = ""

    def __fspath__(self) -> str:
        raise NotAvailableHere(f"{self.did} is not available here yet: {self.reason}", self.hint)

    def __repr__(self) -> str:
        waiting = f" (rule {self.rule_id}: {self.progress})" if self.rule_id else ""
        return f"<{self.did}: not available here yet{waiting} — {self.reason}>"


@dataclass
class Attached:
    """One attached DID and what it resolved to."""

    name: str
    did: DID
    value: Value | Unavailable
    watch: Watch | None = field(default=None, repr=False)

    @property
    def available(self) -> bool:  # noqa: D102
        return not isinstance(self.value, Unavailable)


def _namespace() -> MutableMapping[str, Any] | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns


def variable_name(did: DID | str) -> str:
    """A Python name for a DID: ``cta:crab-2024.dl3`` -> ``crab_2024_dl3``."""
    name = "".join(c if c.isalnum() else "_" for c in as_did(did).name).strip("_").lower()
    if not name or name[0].isdigit():
        name = f"did_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


class Attachments:
    """The DIDs attached in this kernel, their values, and the watches re-resolving them.

    Parameters
    ----------
    lake
        The lake (default: the configured instance).
    access
        How files are read (default: ``Access(lake)``).
    namespace
        Where variables are bound (default: the IPython user namespace, if any).
    on_change
        Called with each :class:`Attached` whose value changed (e.g. data arrived).
    """

    def __init__(
        self,
        lake: Lake | None = None,
        *,
        access: Access | None = None,
        namespace: MutableMapping[str, Any] | None = None,
        on_change: Callable[[Attached], None] | None = None,
    ) -> None:
        self._lake = lake
        self._access = access
        self.namespace = namespace if namespace is not None else _namespace()
        self.on_change = on_change or _announce
        self.attached: dict[str, Attached] = {}
        self._lock = threading.Lock()

    @property
    def lake(self) -> Lake:  # noqa: D102
        if self._lake is None:
            self._lake = Lake.from_instance()
        return self._lake

    @property
    def access(self) -> Access:  # noqa: D102
        if self._access is None:
            self._access = Access(self.lake)
        return self._access

    def attach(self, did: DID | str, name: str | None = None, *, fetch: bool = False) -> Attached:
        """Resolve ``did`` and bind it to ``name`` (default: from the DID's name).

        Parameters
        ----------
        did
            A file, dataset or container.
        name
            The variable to bind.
        fetch
            Download files that are only remote into the cache (else they stay
            :class:`Unavailable` until brought near compute).

        """
        d = as_did(did)
        name = name or variable_name(d)
        if not name.isidentifier() or keyword.iskeyword(name):
            raise InvalidRequest(f"{name!r} is not a valid Python variable name.")
        previous = self.attached.get(name)
        if previous is not None and previous.watch is not None:
            previous.watch.stop()
        entry = Attached(name, d, self._resolve(d, fetch))
        if isinstance(entry.value, Unavailable) and entry.value.rule_id:
            entry.watch = self._follow(entry, fetch)
        with self._lock:
            self.attached[name] = entry
            self._bind(entry)
        return entry

    def _resolve(self, did: DID, fetch: bool) -> Value | Unavailable:
        info = self.lake.info(did)
        try:
            if fetch:
                paths = self.access.paths(did)
            else:
                located = self.access.locate(did)
                missing = [item for item in located if item.path is None]
                if missing:
                    return self._pending(
                        did,
                        f"{len(missing)} of {len(located)} file(s) are only on remote storage",
                    )
                paths = [item.path for item in located if item.path is not None]
        except NotAvailableHere as exc:
            return self._pending(did, exc.message)
        return paths[0] if info.type == "file" and len(paths) == 1 else paths

    def _pending(self, did: DID, reason: str) -> Unavailable:
        mounted = self.access.mounted_rse
        for rule in self.lake.rules(did):
            if mounted and mounted in self.lake.resolve_rses(rule.rse_expression):
                progress = self.lake.rule_progress(rule.id)
                return Unavailable(
                    did,
                    reason,
                    "It arrives with the rule shown; the variable is updated then.",
                    rule.id,
                    f"{progress.state}, {progress.files_done}/{progress.files_total} files",
                )
        return Unavailable(
            did,
            reason,
            f"Make it available near compute (escape-portal make-available {did}), or "
            "attach it with fetch=True to download it into the cache.",
        )

    def _follow(self, entry: Attached, fetch: bool) -> Watch:
        assert isinstance(entry.value, Unavailable) and entry.value.rule_id

        def arrived(event: ProgressEvent) -> None:
            try:
                value = self._resolve(entry.did, fetch)
            except LakeError as exc:
                log.warning("escape-portal: re-resolving %s failed: %s", entry.did, exc)
                return
            with self._lock:
                if self.attached.get(entry.name) is not entry:
                    return  # attached again meanwhile
                entry.value = value
                self._bind(entry)
            self.on_change(entry)

        def stuck(event: ProgressEvent) -> None:
            if isinstance(entry.value, Unavailable):
                entry.value.progress = f"stuck: {event.progress.stuck_reason or 'see the rule'}"
            self.on_change(entry)

        return Watch(self.lake, [entry.value.rule_id], on_available=arrived, on_stuck=stuck).start()

    def _bind(self, entry: Attached) -> None:
        if self.namespace is not None:
            self.namespace[entry.name] = entry.value

    def attach_all(self, dids: Mapping[str, str], *, fetch: bool = False) -> dict[str, Attached]:
        """Attach every ``{name: DID}`` (what the notebook's metadata holds)."""
        return {name: self.attach(did, name, fetch=fetch) for name, did in dids.items()}

    def detach(self, name: str) -> None:
        """Forget an attachment (its variable stays as it is)."""
        entry = self.attached.pop(name, None)
        if entry is not None and entry.watch is not None:
            entry.watch.stop()

    def close(self) -> None:
        """Stop every watch."""
        for name in list(self.attached):
            self.detach(name)


def _announce(entry: Attached) -> None:
    if entry.available:
        count = len(entry.value) if isinstance(entry.value, list) else 1
        print(f"escape-portal: {entry.did} is here now; {entry.name} = {count} path(s)")
    elif isinstance(entry.value, Unavailable):
        print(f"escape-portal: {entry.did}: {entry.value.progress}")


_DEFAULT: Attachments | None = None


def attachments() -> Attachments:
    """The kernel's attachments (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Attachments()
    return _DEFAULT


def attach(did: DID | str, name: str | None = None, *, fetch: bool = False) -> Value | Unavailable:
    """Bind ``did`` to a variable in the notebook and return its value (paths or placeholder)."""
    return attachments().attach(did, name, fetch=fetch).value


def attach_all(dids: Mapping[str, str], *, fetch: bool = False) -> dict[str, Value | Unavailable]:
    """Bind every notebook-attached ``{name: DID}``; what the extension runs on kernel start."""
    return {n: a.value for n, a in attachments().attach_all(dids, fetch=fetch).items()}
