"""Minimal VOTable 1.4 writer (TABLEDATA) for the lake's VO publication.

Written by hand rather than through astropy so that the document has exactly what DALI
asks for: a ``QUERY_STATUS`` INFO before the table and, when the result was truncated
at MAXREC, an ``OVERFLOW`` INFO after it; error documents carry ``QUERY_STATUS=ERROR``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

VOTABLE_MIME = "application/x-votable+xml"
INT_NULL = {"short": -32768, "int": -2147483648, "long": -9223372036854775808}
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


@dataclass(frozen=True)
class Field:
    """A VOTable FIELD (also a TAP_SCHEMA column): name, type and semantics."""

    name: str
    datatype: str = "char"
    arraysize: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    xtype: str | None = None
    description: str = ""
    principal: bool = False
    indexed: bool = False
    std: bool = False

    def __post_init__(self) -> None:
        if self.datatype == "char" and self.arraysize is None:
            object.__setattr__(self, "arraysize", "*")


def _text(value: Any) -> str:
    return escape(_XML_BAD.sub(" ", str(value)))


def _cell(field: Field, value: Any) -> str:
    if value is None:
        if field.datatype in INT_NULL:
            return f"<TD>{INT_NULL[field.datatype]}</TD>"
        return "<TD/>"
    if field.datatype in ("double", "float"):
        number = float(value)
        return "<TD/>" if math.isnan(number) else f"<TD>{number!r}</TD>"
    if field.datatype in INT_NULL:
        return f"<TD>{int(value)}</TD>"
    if field.datatype == "boolean":
        return f"<TD>{'T' if value else 'F'}</TD>"
    return f"<TD>{_text(value)}</TD>"


def field_xml(field: Field) -> str:
    """The FIELD element of ``field``."""
    attrs = [f"name={quoteattr(field.name)}", f"datatype={quoteattr(field.datatype)}"]
    for key in ("arraysize", "unit", "ucd", "utype", "xtype"):
        value = getattr(field, key)
        if value:
            attrs.append(f"{key}={quoteattr(value)}")
    inner = ""
    if field.description:
        inner += f"<DESCRIPTION>{_text(field.description)}</DESCRIPTION>"
    if field.datatype in INT_NULL:
        inner += f'<VALUES null="{INT_NULL[field.datatype]}"/>'
    return f"<FIELD {' '.join(attrs)}>{inner}</FIELD>" if inner else f"<FIELD {' '.join(attrs)}/>"


def _header() -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    )


def table_document(
    fields: Sequence[Field],
    rows: Iterable[Sequence[Any]],
    *,
    overflow: bool = False,
    infos: Sequence[tuple[str, str]] = (),
    resource_params: str = "",
    name: str = "result",
) -> str:
    """A VOTable with one result table.

    Parameters
    ----------
    fields
        The columns.
    rows
        The rows, values in the order of ``fields``.
    overflow
        Add the DALI ``OVERFLOW`` marker after the table.
    infos
        More ``(name, value)`` INFOs in the result resource.
    resource_params
        Extra XML inside the RESOURCE, before the table (e.g. PARAMs).
    name
        The table's name.

    """
    parts = [_header(), '<RESOURCE type="results">\n<INFO name="QUERY_STATUS" value="OK"/>\n']
    for key, value in infos:
        parts.append(f"<INFO name={quoteattr(key)} value={quoteattr(value)}/>\n")
    parts.append(resource_params)
    parts.append(f"<TABLE name={quoteattr(name)}>\n")
    parts.extend(field_xml(f) + "\n" for f in fields)
    parts.append("<DATA><TABLEDATA>\n")
    for row in rows:
        parts.append("<TR>" + "".join(_cell(f, v) for f, v in zip(fields, row, strict=True)))
        parts.append("</TR>\n")
    parts.append("</TABLEDATA></DATA>\n</TABLE>\n")
    if overflow:
        parts.append('<INFO name="QUERY_STATUS" value="OVERFLOW"/>\n')
    parts.append("</RESOURCE>\n</VOTABLE>\n")
    return "".join(parts)


def error_document(message: str) -> str:
    """A DALI error document: ``QUERY_STATUS=ERROR`` with ``message`` as its content."""
    return (
        _header()
        + '<RESOURCE type="results">\n<INFO name="QUERY_STATUS" value="ERROR">'
        + _text(message)
        + "</INFO>\n</RESOURCE>\n</VOTABLE>\n"
    )
