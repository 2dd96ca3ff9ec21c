"""Rucio's JSON DID-metadata plugin, enabled on SQLite.

Rucio stores free-form DID metadata (target, ra/dec, band, ...) through its
``JSONDidMeta`` plugin, but refuses it on SQLite by a dialect check, although SQLite's
JSON1 functions (which SQLAlchemy's ``JSON`` type compiles to) do everything the plugin
asks. The embedded lake runs on SQLite by default, so this plugin (loaded by the Rucio
server through ``[metadata] plugins``) lifts that check for SQLite only. On PostgreSQL,
Oracle and MySQL Rucio's own check applies unchanged.
"""

from __future__ import annotations

from typing import Any

from rucio.core.did_meta_plugins import json_meta
from rucio.db.sqla import util as sqla_util

_rucio_json_implemented = sqla_util.json_implemented


def _json_implemented(*, session: Any = None) -> bool:
    if session is not None and session.bind.dialect.name == "sqlite":
        return True
    return bool(_rucio_json_implemented(session=session))


json_meta.json_implemented = _json_implemented


class SQLiteJSONDidMeta(json_meta.JSONDidMeta):  # type: ignore[misc]
    """Rucio's ``JSONDidMeta`` that also works on SQLite (plugin name ``JSON``)."""
