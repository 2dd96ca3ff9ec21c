"""A sky view of search results, drawn as SVG: no image service, no script, nothing fetched.

Rows are placed on a tangent-plane (gnomonic) projection around the search centre, east
to the left as on the sky; each row is a point with its field of view (ObsCore
``s_fov``, a diameter) as a circle; the search circle is dashed; rows linked to the lake
are coloured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

CSS_CLASS = "escape-portal-sky"
LINKED = "#e07b00"
UNLINKED = "#4a6fa5"


@dataclass(frozen=True)
class SkyRow:
    """A result row as the sky view needs it."""

    index: int
    ra: float
    dec: float
    fov: float | None = None
    label: str = ""
    lake_did: str = ""


def _project(ra: float, dec: float, ra0: float, dec0: float) -> tuple[float, float] | None:
    """Gnomonic projection in degrees (x grows to the east), ``None`` behind the centre."""
    a, d, a0, d0 = map(math.radians, (ra, dec, ra0, dec0))
    cos_c = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    if cos_c <= 1e-6:
        return None
    x = math.cos(d) * math.sin(a - a0) / cos_c
    y = (math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / cos_c
    return math.degrees(x), math.degrees(y)


def separation(ra: float, dec: float, ra0: float, dec0: float) -> float:
    """Angular distance in degrees."""
    a, d, a0, d0 = map(math.radians, (ra, dec, ra0, dec0))
    h = math.sin((d - d0) / 2) ** 2 + math.cos(d) * math.cos(d0) * math.sin((a - a0) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def sky_svg(
    rows: Sequence[SkyRow],
    centre: tuple[float, float],
    radius: float,
    *,
    size: int = 360,
) -> str:
    """The sky view as an SVG document.

    Parameters
    ----------
    rows
        Rows with positions (rows without one are left out).
    centre, radius
        The search circle, degrees (ICRS).
    size
        Width and height in pixels.

    Returns
    -------
    str
        ``<svg class="escape-portal-sky">``; each row is a ``<g class="escape-portal-sky-row">``
        (plus ``escape-portal-sky-linked`` for lake rows) with ``data-row`` and, if linked,
        ``data-lake-did``, and a ``<title>`` shown on hover.

    """
    ra0, dec0 = centre
    reach = radius
    for row in rows:
        far = separation(row.ra, row.dec, ra0, dec0) + (row.fov or 0.0) / 2
        reach = max(reach, far)
    half = min(reach, 4 * radius, 80.0) * 1.15  # huge fields of view are clipped
    scale = (size / 2) / half
    mid = size / 2

    def xy(x: float, y: float) -> tuple[float, float]:
        return mid - x * scale, mid - y * scale  # east to the left, north up

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{CSS_CLASS}" width="{size}" '
        f'height="{size}" viewBox="0 0 {size} {size}" role="img" '
        f'aria-label="Sky view of {len(rows)} results around RA {ra0:.4f}, Dec {dec0:.4f}">',
        f'<defs><clipPath id="escape-portal-sky-clip"><rect width="{size}" height="{size}"/>'
        "</clipPath></defs>",
        f'<rect width="{size}" height="{size}" fill="#0b1a2e"/>',
        '<g clip-path="url(#escape-portal-sky-clip)">',
        f'<circle class="escape-portal-sky-search" cx="{mid:.1f}" cy="{mid:.1f}" '
        f'r="{radius * scale:.1f}" fill="none" stroke="#ffffff" stroke-dasharray="6 4">'
        f"<title>search: {radius:g}° around RA {ra0:.4f}, Dec {dec0:.4f}</title></circle>",
        f'<path d="M{mid - 6:.1f} {mid:.1f}h12M{mid:.1f} {mid - 6:.1f}v12" stroke="#ffffff"/>',
    ]
    shown = 0
    for row in rows:
        p = _project(row.ra, row.dec, ra0, dec0)
        if p is None:
            continue
        x, y = xy(*p)
        colour = LINKED if row.lake_did else UNLINKED
        cls = "escape-portal-sky-row" + (" escape-portal-sky-linked" if row.lake_did else "")
        data = f' data-row="{row.index}"'
        if row.lake_did:
            data += f' data-lake-did="{escape(row.lake_did)}"'
        title = escape(
            f"#{row.index} {row.label} RA {row.ra:.4f} Dec {row.dec:.4f}"
            + (f" fov {row.fov:g}°" if row.fov else "")
            + (f" — lake: {row.lake_did}" if row.lake_did else "")
        )
        parts.append(f'<g class="{cls}"{data}><title>{title}</title>')
        if row.fov:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{row.fov / 2 * scale:.1f}" '
                f'fill="{colour}" fill-opacity="0.08" stroke="{colour}" stroke-opacity="0.8"/>'
            )
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/></g>')
        shown += 1
    parts.append("</g>")
    label = f"{2 * half:.2g}° across · N up, E left · {shown} shown"
    parts += [
        f'<text x="6" y="{size - 8}" fill="#cfd8e3" font-size="11" '
        f'font-family="sans-serif">{escape(label)}</text>',
        f'<text x="{mid - 4:.0f}" y="14" fill="#cfd8e3" font-size="11">N</text>',
        f'<text x="6" y="{mid + 4:.0f}" fill="#cfd8e3" font-size="11">E</text>',
        f'<g font-size="11" font-family="sans-serif"><circle cx="{size - 90}" cy="12" r="4" '
        f'fill="{LINKED}"/><text x="{size - 82}" y="16" fill="#cfd8e3">in the lake</text></g>',
        "</svg>",
    ]
    return "".join(parts)
