"""ESCAPE Portal: the researcher's door to the ESCAPE data lake from Jupyter."""

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (imported only when a Jupyter server loads it)."""
    from escape_portal.server import EscapePortal

    return [{"module": "escape_portal.server", "app": EscapePortal}]
