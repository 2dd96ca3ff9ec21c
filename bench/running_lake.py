"""The embedded lake the benchmarks run against (started if it is not running)."""

from __future__ import annotations

from escape_portal.embedded.instance import operator_instance
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.lake import Lake


def running_lake(data_dir: str | None) -> tuple[EmbeddedLake, Lake]:
    """The embedded lake of ``data_dir`` (default data directory if ``None``), up.

    The lake is seen as its operator (``embedded``, root): benchmarks register
    the files they measure.
    """
    embedded = EmbeddedLake(data_dir)
    if not embedded.status().running:
        embedded.up()
    config = operator_instance({"ESCAPE_PORTAL_LAKE_DIR": str(embedded.paths.root)})
    assert config is not None, "the embedded lake did not record its state"
    return embedded, Lake(config)
