"""HTML the widgets show: escaped tables, messages and the widgets' own small stylesheet.

Everything here is generated text; nothing is loaded from anywhere at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from escape_portal.errors import LakeError

#: Styles of the widgets, scoped by their ``escape-portal-*`` class names.
STYLE = """<style>
.escape-portal-table { border-collapse: collapse; font-size: 12px; }
.escape-portal-table th, .escape-portal-table td {
  padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top;
}
.escape-portal-table tr.escape-portal-linked td { background: #fff4e0; }
/* Result rows stay one line each (long URLs and identifiers are cut, whole on hover). */
.escape-portal-vo-results td {
  white-space: nowrap; max-width: 24em; overflow: hidden; text-overflow: ellipsis;
}
.escape-portal-error { color: #a4000f; border-left: 3px solid #a4000f; padding: 2px 8px; }
.escape-portal-error .escape-portal-hint { color: #555; }
.escape-portal-warning { color: #7a5500; }
.escape-portal-muted { color: #666; }
.escape-portal-pre { font-size: 11px; max-height: 240px; overflow: auto; }
</style>"""


def text(value: Any) -> str:
    """``value`` as escaped HTML text (``None`` as a dash)."""
    return "-" if value is None else escape(str(value))


def table(
    rows: Iterable[Sequence[Any]],
    headers: Sequence[str],
    *,
    css: str = "",
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table of escaped cells.

    Parameters
    ----------
    rows, headers
        The cells (any values; ``None`` shows as a dash) and the column titles.
    css
        Extra class names of the table.
    row_classes
        A class name per row (``""`` for none).

    """
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes and i < len(row_classes) else ""
        attr = f' class="{escape(cls)}"' if cls else ""
        # The title shows a cell whole where CSS cuts it (html.escape quotes: safe here).
        cells = "".join(f'<td title="{text(v)}">{text(v)}</td>' for v in row)
        body.append(f"<tr{attr}>{cells}</tr>")
    return (
        f'<table class="escape-portal-table {escape(css)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def error(exc: LakeError) -> str:
    """An error in the user's words: what happened, and what to do."""
    hint = f'<div class="escape-portal-hint">{text(exc.hint)}</div>' if exc.hint else ""
    return f'<div class="escape-portal-error"><div>{text(exc.message)}</div>{hint}</div>'


def warnings(items: Iterable[str]) -> str:
    """Warnings, one per line."""
    return "".join(f'<div class="escape-portal-warning">⚠ {text(w)}</div>' for w in items)


def muted(message: str) -> str:
    """A quiet line (loading..., nothing found)."""
    return f'<div class="escape-portal-muted">{text(message)}</div>'


def human_bytes(n: int | None) -> str:
    """``1536`` -> ``1.5 KiB`` (as the command line writes sizes)."""
    from escape_portal.cli import human_bytes as cli_human_bytes

    return cli_human_bytes(n)


def duration(seconds: float | None) -> str:
    """``75`` -> ``1 min 15 s``; ``None`` -> ``unknown``."""
    if seconds is None:
        return "unknown"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
