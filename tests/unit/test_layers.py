"""The layer rule of docs/architecture.md, read from the code: data flows top-down.

Every import in ``escape_portal`` (module-level and inside functions, parsed with ``ast``,
never executed) is checked against the layers:

- core (config, errors, lake/, topology, ...) imports no service, surface, operator
  (``vo_publish``) or embedded module;
- services import no surface, operator or embedded module;
- the VO publication (an operator feature over any Rucio instance) imports no embedded
  module and no surface;
- only the embedded package itself and the CLI's lake commands import
  ``escape_portal.embedded`` (it registers itself as an instance through an entry point);
- the embedded lake, a stand-in built from the same components, imports no service or
  surface (it starts the VO publication as a process, by module name).

A new module must be given a layer in :data:`LAYERS`.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "escape_portal"

#: Module (or package) prefixes of each layer; the longest matching prefix wins.
LAYERS: dict[str, str] = {
    "escape_portal": "surface",  # the package's Jupyter hooks (server extension, kernel)
    "escape_portal.cli": "surface",
    "escape_portal.server": "surface",
    "escape_portal.widgets": "surface",
    "escape_portal.kernel": "surface",
    "escape_portal.tour": "surface",
    "escape_portal.access": "service",
    "escape_portal.placement": "service",
    "escape_portal.replicas": "service",
    "escape_portal.storage": "service",
    "escape_portal.rucio_fs": "service",
    "escape_portal.discovery": "service",
    "escape_portal.events": "service",
    "escape_portal.notifications": "service",
    "escape_portal.upload": "service",
    "escape_portal.analysis": "service",
    "escape_portal.watches": "service",
    "escape_portal.config": "core",
    "escape_portal.errors": "core",
    "escape_portal.lake": "core",
    "escape_portal.topology": "core",
    "escape_portal.integrity": "core",
    "escape_portal.vo_ids": "core",
    "escape_portal.vo_publish": "operator",
    "escape_portal.embedded": "embedded",
}

#: What each layer must not import.
FORBIDDEN: dict[str, set[str]] = {
    "core": {"service", "surface", "operator", "embedded"},
    "service": {"surface", "operator", "embedded"},
    "operator": {"surface", "embedded"},
    "embedded": {"service", "surface"},
    "surface": {"embedded"},
}

#: Functions of surfaces allowed to import the embedded lake: the CLI's lake commands.
EMBEDDED_DOORS = {("escape_portal.cli", "cmd_lake")}

#: Known exceptions, each ``(importer, imported): reason``. Keep this short.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    function: str | None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    root = PACKAGE.parent
    return (root / relative).with_suffix(".py").is_file() or (root / relative).is_dir()


def _imports(path: Path) -> list[Import]:
    importer = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and function is None:
                inner = child.name
            if isinstance(child, ast.Import):
                found.extend(Import(importer, a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = importer.split(".")
                    anchor = anchor[: len(anchor) - child.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    name = candidate if _is_module(candidate) else base
                    found.append(Import(importer, name, child.lineno, inner))
            visit(child, inner)

    visit(tree, None)
    return [i for i in found if i.imported.split(".")[0] == "escape_portal"]


def layer_of(module: str) -> str | None:
    """The layer of a module of the package (``None`` if it has none)."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best] if best != "escape_portal" or module == "escape_portal" else None


@functools.cache
def all_imports() -> tuple[Import, ...]:
    """Every import of the package, of its own modules."""
    return tuple(i for path in sorted(PACKAGE.rglob("*.py")) for i in _imports(path))


def test_every_module_has_a_layer() -> None:
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    missing = sorted(m for m in modules if layer_of(m) is None)
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_the_parser_sees_function_level_imports() -> None:
    doors = [i for i in _imports(PACKAGE / "cli.py") if i.imported.startswith("escape_portal.emb")]
    assert doors, "the CLI's lake commands import the embedded lake inside cmd_lake"
    assert {i.function for i in doors} == {"cmd_lake"}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_goes_up_or_sideways(layer: str) -> None:
    wrong = []
    for i in all_imports():
        if layer_of(i.importer) != layer:
            continue
        target = layer_of(i.imported)
        if target not in FORBIDDEN[layer] or (i.importer, i.imported) in KNOWN_EXCEPTIONS:
            continue
        if target == "embedded" and (i.importer, i.function) in EMBEDDED_DOORS:
            continue
        where = f" in {i.function}()" if i.function else ""
        wrong.append(f"{i.importer}:{i.line}{where} imports {i.imported} ({target})")
    assert not wrong, "\n".join(wrong)


def test_only_the_embedded_lake_and_the_lake_commands_import_it() -> None:
    importers = {
        (i.importer, i.function)
        for i in all_imports()
        if layer_of(i.imported) == "embedded" and layer_of(i.importer) != "embedded"
    }
    assert importers <= EMBEDDED_DOORS, sorted(importers - EMBEDDED_DOORS)


def test_known_exceptions_are_still_needed() -> None:
    present = {(i.importer, i.imported) for i in all_imports()}
    stale = sorted(set(KNOWN_EXCEPTIONS) - present)
    assert not stale, f"remove these from KNOWN_EXCEPTIONS, they no longer happen: {stale}"


def test_the_embedded_lake_registers_itself_as_an_instance(tmp_path: Path) -> None:
    import importlib
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["escape_portal.instances"]["embedded"]
    module, _, function = target.partition(":")
    assert layer_of(module) == "embedded"
    describe = getattr(importlib.import_module(module), function)
    assert describe({"ESCAPE_PORTAL_LAKE_DIR": str(tmp_path)}) is None  # not started there
