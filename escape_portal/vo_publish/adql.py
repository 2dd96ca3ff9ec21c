"""ADQL for the lake's VO publication: parse, check, translate to SQLite, run.

Queries are parsed with sqlglot (its T-SQL dialect reads ``TOP``), then checked on the
syntax tree: one ``SELECT`` (or set operation of selects) only, tables of the published
schemas only (``ivoa.obscore``, ``tap_schema.*``, ``rr.*``), functions from an allowlist
only. ADQL geometry (``POINT``, ``CIRCLE``, ``BOX``, ``POLYGON``, ``CONTAINS``,
``INTERSECTS``, ``DISTANCE``, ``COORD1``/``COORD2``, ``AREA``) and the RegTAP ``ivo_*``
functions become SQLite user-defined functions registered by :func:`register_functions`.
Geometries travel between those functions as STC-S strings (``Circle ICRS 83.6 22.0
0.5``), the same form as ``ivoa.obscore.s_region``.
"""

from __future__ import annotations

import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from escape_portal.vo_publish.vo_schema import TABLES, Table
from escape_portal.vo_publish.votable import Field

DEFAULT_MAXREC = 10_000
HARD_MAXREC = 100_000
QUERY_TIMEOUT = 20.0


class AdqlError(ValueError):
    """The query is not ADQL this service runs; the message says why."""


# -- geometry --------------------------------------------------------------------------

_DEG = math.pi / 180.0


@dataclass(frozen=True)
class Shape:
    """A parsed geometry: kind (``point``, ``circle``, ``box``, ``polygon``) and numbers."""

    kind: str
    values: tuple[float, ...]


def _stcs(kind: str, values: tuple[float, ...]) -> str:
    label = {"point": "Position", "circle": "Circle", "box": "Box", "polygon": "Polygon"}[kind]
    return " ".join([label, "ICRS", *(f"{v:.10g}" for v in values)])


def parse_shape(text: Any) -> Shape | None:
    """Parse an STC-S string (``Position``/``Point``, ``Circle``, ``Box``, ``Polygon``)."""
    if not isinstance(text, str):
        return None
    words = text.split()
    if not words:
        return None
    kind = {"position": "point", "point": "point"}.get(words[0].lower(), words[0].lower())
    if kind not in ("point", "circle", "box", "polygon"):
        return None
    numbers = []
    for word in words[1:]:
        try:
            numbers.append(float(word))
        except ValueError:
            if numbers:  # a frame or flavour word may only come before the numbers
                return None
    need = {"point": 2, "circle": 3, "box": 4}.get(kind)
    if (need and len(numbers) != need) or (
        kind == "polygon" and (len(numbers) < 6 or len(numbers) % 2)
    ):
        return None
    return Shape(kind, tuple(numbers))


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine)."""
    p1, p2 = dec1 * _DEG, dec2 * _DEG
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin((ra2 - ra1) * _DEG / 2) ** 2
    )
    return 2 * math.asin(min(1.0, math.sqrt(h))) / _DEG


def _tangent(ra0: float, dec0: float, ra: float, dec: float) -> tuple[float, float] | None:
    """Gnomonic projection of (ra, dec) around (ra0, dec0), in radians; None if behind."""
    a, d, a0, d0 = ra * _DEG, dec * _DEG, ra0 * _DEG, dec0 * _DEG
    cos_c = math.sin(d0) * math.sin(d) + math.cos(d0) * math.cos(d) * math.cos(a - a0)
    if cos_c <= 0:
        return None
    x = math.cos(d) * math.sin(a - a0) / cos_c
    y = (math.cos(d0) * math.sin(d) - math.sin(d0) * math.cos(d) * math.cos(a - a0)) / cos_c
    return x, y


def _vertices(shape: Shape) -> list[tuple[float, float]]:
    if shape.kind == "polygon":
        v = shape.values
        return [(v[i], v[i + 1]) for i in range(0, len(v), 2)]
    if shape.kind == "box":
        ra, dec, width, height = shape.values
        corners = []
        for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            d = max(-90.0, min(90.0, dec + dy * height / 2))
            corners.append((ra + dx * width / 2 / max(math.cos(d * _DEG), 1e-9), d))
        return corners
    return []


def _centre(shape: Shape) -> tuple[float, float]:
    if shape.kind in ("point", "circle", "box"):
        return shape.values[0], shape.values[1]
    xs = [math.cos(d * _DEG) * math.cos(r * _DEG) for r, d in _vertices(shape)]
    ys = [math.cos(d * _DEG) * math.sin(r * _DEG) for r, d in _vertices(shape)]
    zs = [math.sin(d * _DEG) for _, d in _vertices(shape)]
    x, y, z = sum(xs), sum(ys), sum(zs)
    return (math.atan2(y, x) / _DEG) % 360.0, math.atan2(z, math.hypot(x, y)) / _DEG


def _point_in(ra: float, dec: float, region: Shape) -> bool:
    if region.kind == "point":
        return angular_distance(ra, dec, *region.values) < 1e-9
    if region.kind == "circle":
        return angular_distance(ra, dec, region.values[0], region.values[1]) <= region.values[2]
    if region.kind == "box":
        ra0, dec0, width, height = region.values
        if abs(dec - dec0) > height / 2:
            return False
        delta = (ra - ra0 + 180.0) % 360.0 - 180.0
        return abs(delta * math.cos(dec * _DEG)) <= width / 2
    centre = _centre(region)
    point = _tangent(*centre, ra, dec)
    polygon = [_tangent(*centre, r, d) for r, d in _vertices(region)]
    if point is None or any(p is None for p in polygon):
        return False
    x, y = point
    inside = False
    vertices = [p for p in polygon if p is not None]
    for (x1, y1), (x2, y2) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _contains(inner_text: Any, outer_text: Any) -> int | None:
    inner, outer = parse_shape(inner_text), parse_shape(outer_text)
    if inner is None or outer is None:
        return None
    if inner.kind == "point":
        return int(_point_in(inner.values[0], inner.values[1], outer))
    if inner.kind == "circle" and outer.kind == "circle":
        distance = angular_distance(*inner.values[:2], *outer.values[:2])
        return int(distance + inner.values[2] <= outer.values[2])
    if inner.kind == "circle":
        return int(_point_in(inner.values[0], inner.values[1], outer))  # approximation: its centre
    return int(all(_point_in(r, d, outer) for r, d in _vertices(inner)))


def _intersects(a_text: Any, b_text: Any) -> int | None:
    a, b = parse_shape(a_text), parse_shape(b_text)
    if a is None or b is None:
        return None
    if a.kind == "point":
        return int(_point_in(a.values[0], a.values[1], b))
    if b.kind == "point":
        return int(_point_in(b.values[0], b.values[1], a))
    if a.kind == "circle" and b.kind == "circle":
        return int(angular_distance(*a.values[:2], *b.values[:2]) <= a.values[2] + b.values[2])
    if b.kind == "circle":
        a, b = b, a
    if a.kind == "circle":  # circle against polygon or box
        if _point_in(a.values[0], a.values[1], b):
            return 1
        return int(
            any(
                angular_distance(a.values[0], a.values[1], r, d) <= a.values[2]
                for r, d in _vertices(b)
            )
        )
    return int(
        any(_point_in(r, d, b) for r, d in _vertices(a))
        or any(_point_in(r, d, a) for r, d in _vertices(b))
    )


def _frame_and_numbers(args: tuple[Any, ...]) -> tuple[float, ...]:
    """Drop a leading coordinate-system string; expand POINT arguments into numbers."""
    values: list[float] = []
    rest = args[1:] if args and (isinstance(args[0], str) or args[0] is None) else args
    if args and isinstance(args[0], str) and parse_shape(args[0]) is not None:
        rest = args
    for value in rest:
        shape = parse_shape(value)
        if shape is not None and shape.kind == "point":
            values.extend(shape.values)
        elif value is None:
            raise _NullGeometry
        else:
            values.append(float(value))
    return tuple(values)


class _NullGeometry(Exception):
    pass


def _make(kind: str, sizes: tuple[int, ...]) -> Callable[..., str | None]:
    def make(*args: Any) -> str | None:
        try:
            values = _frame_and_numbers(args)
        except _NullGeometry:
            return None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{kind.upper()}: arguments must be numbers or points") from exc
        if len(values) not in sizes and not (
            kind == "polygon" and len(values) >= 6 and len(values) % 2 == 0
        ):
            raise ValueError(f"{kind.upper()}: wrong number of arguments")
        return _stcs(kind, values)

    return make


def _distance(*args: Any) -> float | None:
    if len(args) == 2:
        a, b = parse_shape(args[0]), parse_shape(args[1])
        if a is None or b is None:
            return None
        return angular_distance(*_centre(a), *_centre(b))
    if len(args) == 4 and None not in args:
        ra1, dec1, ra2, dec2 = (float(a) for a in args)
        return angular_distance(ra1, dec1, ra2, dec2)
    return None


def _coord(index: int) -> Callable[[Any], float | None]:
    def coord(value: Any) -> float | None:
        shape = parse_shape(value)
        return None if shape is None else _centre(shape)[index]

    return coord


def _area(value: Any) -> float | None:
    shape = parse_shape(value)
    if shape is None:
        return None
    if shape.kind == "circle":
        return 2 * math.pi * (1 - math.cos(shape.values[2] * _DEG)) / _DEG**2
    if shape.kind == "box":
        return shape.values[2] * shape.values[3]
    return 0.0 if shape.kind == "point" else None


# -- ivo_* functions (RegTAP 1.1) ------------------------------------------------------


def _hasword(haystack: Any, needle: Any) -> int:
    if haystack is None or needle is None:
        return 0
    words = re.findall(r"\w+", str(needle).lower())
    text = " ".join(re.findall(r"\w+", str(haystack).lower()))
    return int(
        bool(words)
        and re.search(r"\b" + r"\s+".join(map(re.escape, words)) + r"\b", text) is not None
    )


def _hashlist_has(hashlist: Any, item: Any) -> int:
    if hashlist is None or item is None:
        return 0
    return int(str(item).lower() in [w.strip().lower() for w in str(hashlist).split("#")])


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = ("." * (c == "_") + ".*" * (c == "%") or re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _nocasematch(value: Any, pattern: Any) -> int | None:
    if value is None or pattern is None:
        return None
    return int(_like_regex(str(pattern)).fullmatch(str(value)) is not None)


def _interval_overlap(low1: Any, high1: Any, low2: Any, high2: Any) -> int | None:
    if None in (low1, high1, low2, high2):
        return None
    return int(float(low1) <= float(high2) and float(low2) <= float(high1))


class _StringAgg:
    def __init__(self) -> None:
        self.values: list[str] = []
        self.separator = ""

    def step(self, value: Any, separator: Any) -> None:
        self.separator = str(separator)
        if value is not None:
            self.values.append(str(value))

    def finalize(self) -> str | None:
        return self.separator.join(self.values) if self.values else None


def _truncate(value: Any, digits: Any = 0) -> float | None:
    if value is None:
        return None
    factor = 10.0 ** int(digits or 0)
    return math.trunc(float(value) * factor) / factor


#: ADQL name -> (SQLite function name, implementation, number of arguments or -1).
UDFS: dict[str, tuple[str, Callable[..., Any], int]] = {
    "POINT": ("adql_point", _make("point", (2,)), -1),
    "CIRCLE": ("adql_circle", _make("circle", (3,)), -1),
    "BOX": ("adql_box", _make("box", (4,)), -1),
    "POLYGON": ("adql_polygon", _make("polygon", ()), -1),
    "CONTAINS": ("adql_contains", _contains, 2),
    "INTERSECTS": ("adql_intersects", _intersects, 2),
    "DISTANCE": ("adql_distance", _distance, -1),
    "COORD1": ("adql_coord1", _coord(0), 1),
    "COORD2": ("adql_coord2", _coord(1), 1),
    "COORDSYS": ("adql_coordsys", lambda _: "ICRS", 1),
    "AREA": ("adql_area", _area, 1),
    "IVO_HASWORD": ("ivo_hasword", _hasword, 2),
    "IVO_HASHLIST_HAS": ("ivo_hashlist_has", _hashlist_has, 2),
    "IVO_NOCASEMATCH": ("ivo_nocasematch", _nocasematch, 2),
    "IVO_INTERVAL_OVERLAP": ("ivo_interval_overlap", _interval_overlap, 4),
    "TRUNCATE": ("adql_truncate", _truncate, -1),
    "COT": ("adql_cot", lambda x: None if x is None else 1 / math.tan(float(x)), 1),
    "RAND": ("adql_rand", lambda *_: __import__("random").random(), -1),
}
AGGREGATES = {"IVO_STRING_AGG": "ivo_string_agg"}

# sqlglot's own function nodes that map to SQLite functions of the same meaning.
_NATIVE = {
    "Abs", "Acos", "Asin", "Atan", "Atan2", "Avg", "Case", "Cast", "Ceil", "Coalesce",
    "Cos", "Count", "Degrees", "Exp", "Floor", "If", "Ln", "Log", "Lower", "Max", "Min",
    "Pi", "Pow", "Radians", "Round", "Sin", "Sqrt", "Sum", "Tan", "Upper",
}  # fmt: skip
_RENAMED = {"Contains": "CONTAINS", "Trunc": "TRUNCATE", "Rand": "RAND", "Cot": "COT"}


def register_functions(db: sqlite3.Connection) -> None:
    """Register the ADQL geometry and ``ivo_*`` functions on ``db``."""
    for sqlite_name, function, nargs in UDFS.values():
        db.create_function(sqlite_name, nargs, function, deterministic=True)
    db.create_aggregate("ivo_string_agg", 2, _StringAgg)  # type: ignore[arg-type]


# -- translation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Translation:
    """An ADQL query made SQLite: the SQL, the tables it reads, hints for its columns."""

    sql: str
    tables: tuple[Table, ...]
    hints: tuple[Field | None, ...] | None  # None: look columns up by name (SELECT *)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    return type(node).__name__


def _check_and_rewrite(node: exp.Expression, ctes: set[str], tables: list[Table]) -> exp.Expression:
    if isinstance(node, exp.Table):
        if isinstance(node.this, exp.Func) or not node.name:
            raise AdqlError("Table-valued functions are not supported.")
        qualified = f"{node.db}.{node.name}".lower() if node.db else node.name.lower()
        if node.catalog:
            raise AdqlError(f"Unknown table {node.sql()!r}.")
        if not node.db and qualified in ctes:
            return node
        table = TABLES.get(qualified)
        if table is None:
            raise AdqlError(
                f"Unknown table {qualified!r}. Tables of this service: "
                + ", ".join(sorted(TABLES))
                + " (qualify them with their schema)."
            )
        tables.append(table)
        return node
    if isinstance(node, exp.Func) and not isinstance(node, exp.Connector):  # AND/OR are Funcs
        name = _RENAMED.get(type(node).__name__) or _function_name(node)
        if isinstance(node, exp.Log) and node.expression is None:
            return node  # LOG(x): natural logarithm, sqlglot writes LN(x)
        if name in UDFS or name in AGGREGATES:
            sqlite_name = UDFS[name][0] if name in UDFS else AGGREGATES[name]
            args = [a for a in node.args.values() if isinstance(a, exp.Expression)]
            if isinstance(node, exp.Anonymous):
                args = list(node.expressions)
            elif isinstance(node, exp.Contains):
                args = [node.this, node.expression]
            elif isinstance(node, exp.Trunc):
                args = [a for a in (node.this, node.args.get("decimals")) if a is not None]
            return exp.Anonymous(this=sqlite_name, expressions=args)
        if type(node).__name__ in _NATIVE:
            return node
        raise AdqlError(f"Function {name} is not supported by this service.")
    return node


def translate(adql: str) -> Translation:
    """Translate one ADQL query into SQLite SQL.

    Parameters
    ----------
    adql
        The query (ADQL 2.0/2.1 ``SELECT``).

    Raises
    ------
    AdqlError
        If it does not parse, is not a single ``SELECT``, names unknown tables or
        functions; the message says what is wrong.

    """
    if not adql or not adql.strip():
        raise AdqlError("The QUERY parameter is empty.")
    try:
        statements = [s for s in sqlglot.parse(adql, read="tsql") if s is not None]
    except ParseError as exc:
        errors = exc.errors[0] if exc.errors else {}
        where = f" (line {errors.get('line')}, column {errors.get('col')})" if errors else ""
        detail = errors.get("description", str(exc)) if errors else str(exc)
        raise AdqlError(f"Could not parse the ADQL query{where}: {detail}.") from exc
    except SqlglotError as exc:
        raise AdqlError(f"Could not parse the ADQL query: {exc}.") from exc
    if len(statements) != 1:
        raise AdqlError("Send exactly one ADQL SELECT statement (no ';'-separated statements).")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        kind = tree.key.upper() if isinstance(tree, (exp.DDL, exp.DML, exp.Command)) else ""
        raise AdqlError(
            f"Only SELECT queries are allowed, not {kind}."
            if kind
            else "Only SELECT queries are allowed; this does not read as an ADQL SELECT."
        )
    for node in tree.walk():
        if isinstance(node, (exp.Command, exp.Insert, exp.Update, exp.Delete, exp.Create,
                             exp.Drop, exp.Pragma, exp.Into)):  # fmt: skip
            raise AdqlError("Only SELECT queries are allowed.")
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    tables: list[Table] = []
    tree = tree.copy()
    # Children before parents, so that a parent rewritten sees its rewritten arguments.
    for node in reversed(list(tree.walk(bfs=False))):
        new = _check_and_rewrite(node, ctes, tables)  # type: ignore[arg-type]
        if new is not node:
            node.replace(new)
    if not tables:
        raise AdqlError("The query reads no table; use FROM with a table of this service.")
    try:
        sql = tree.sql(dialect="sqlite", unsupported_level=sqlglot.ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise AdqlError(f"The query uses something this service cannot run: {exc}.") from exc
    return Translation(sql, tuple(dict.fromkeys(tables)), _hints(tree, tables))


def _hints(tree: exp.Expression, tables: list[Table]) -> tuple[Field | None, ...] | None:
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return None
    by_name = _columns_by_name(tables)
    hints: list[Field | None] = []
    for expression in select.expressions:
        if isinstance(expression, exp.Star) or (
            isinstance(expression, exp.Column) and isinstance(expression.this, exp.Star)
        ):
            return None
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        if isinstance(inner, exp.Column) and inner.name.lower() in by_name:
            hints.append(by_name[inner.name.lower()])
        else:
            hints.append(None)
    return tuple(hints)


def _columns_by_name(tables: list[Table]) -> dict[str, Field]:
    found: dict[str, Field] = {}
    for table in tables:
        for column in table.columns:
            found.setdefault(column.name.lower(), column)
    return found


# -- execution -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query with their VOTable fields, and whether MAXREC cut them."""

    fields: tuple[Field, ...]
    rows: list[tuple[Any, ...]]
    overflow: bool


def _infer(name: str, values: list[Any]) -> Field:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return Field(name, "long")
    if present and all(isinstance(v, (int, float)) for v in present):
        return Field(name, "double")
    return Field(name, "char")


def _convert(field: Field, value: Any) -> Any:
    if value is None:
        return None
    try:
        if field.datatype == "char":
            return value if isinstance(value, str) else str(value)
        if field.datatype in ("double", "float"):
            return float(value)
        if field.datatype in ("int", "long", "short"):
            return int(value)
    except (TypeError, ValueError):
        return None
    return value


def run_query(
    db: sqlite3.Connection,
    lock: threading.Lock,
    adql: str,
    maxrec: int = DEFAULT_MAXREC,
    timeout: float = QUERY_TIMEOUT,
) -> QueryResult:
    """Run ``adql`` on ``db``, returning at most ``maxrec`` rows.

    Raises
    ------
    AdqlError
        If the query is not accepted or SQLite rejects it (unknown column, ...).

    """
    translation = translate(adql)
    deadline = time.monotonic() + timeout
    with lock:
        db.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cursor = db.execute(translation.sql)
            rows = cursor.fetchmany(maxrec + 1)
            names = [d[0] for d in cursor.description or ()]
            cursor.close()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "interrupted" in text:
                text = f"the query ran longer than {timeout:.0f} s"
            raise AdqlError(f"The query failed: {text}.") from exc
        except (sqlite3.Error, ValueError, OverflowError) as exc:
            raise AdqlError(f"The query failed: {exc}.") from exc
        finally:
            db.set_progress_handler(None, 0)
    overflow = len(rows) > maxrec
    rows = rows[:maxrec]
    by_name = _columns_by_name(list(translation.tables))
    fields: list[Field] = []
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        hint = (
            translation.hints[index]
            if translation.hints is not None and index < len(translation.hints)
            else by_name.get(name.lower())
        )
        base = hint if hint is not None else _infer(name, [r[index] for r in rows])
        unique = name
        if name.lower() in seen:
            seen[name.lower()] += 1
            unique = f"{name}_{seen[name.lower()]}"
        else:
            seen[name.lower()] = 1
        fields.append(Field(**{**base.__dict__, "name": unique}))
    converted = [tuple(_convert(f, v) for f, v in zip(fields, row, strict=True)) for row in rows]
    return QueryResult(tuple(fields), converted, overflow)
