"""The OpenAPI description in the repository matches the handlers the extension registers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

import escape_portal.server
from escape_portal.server.routes import API_PREFIX, ROUTES, handlers, methods

SPEC_PATH = Path(escape_portal.server.__file__).parent / "openapi.yaml"
OPERATIONS = ("get", "post", "put", "patch", "delete")


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return spec


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in _spec()["paths"].items()
        for method in item
        if method in OPERATIONS
    }


def _registered() -> set[tuple[str, str]]:
    return {(m.upper(), template) for template, handler in ROUTES for m in methods(handler)}


def test_every_registered_operation_is_documented_and_nothing_else() -> None:
    assert _registered() == _documented()


def test_spec_is_openapi_31_served_under_the_prefix() -> None:
    spec = _spec()
    assert spec["openapi"].startswith("3.1")
    assert spec["servers"] == [{"url": API_PREFIX}]


def test_path_parameters_match_the_templates() -> None:
    spec = _spec()
    refs = spec["components"]["parameters"]
    for path, item in spec["paths"].items():
        wanted = set(re.findall(r"\{(\w+)\}", path))
        declared = set()
        for method in [None, *OPERATIONS]:
            params = (
                item.get("parameters", [])
                if method is None
                else item.get(method, {}).get("parameters", [])
            )
            for p in params:
                p = refs[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                if p["in"] == "path":
                    assert p["required"] is True, (path, p)
                    declared.add(p["name"])
        assert declared == wanted, path


def test_every_operation_documents_errors_and_a_success() -> None:
    for path, item in _spec()["paths"].items():
        for method in OPERATIONS:
            if method not in item:
                continue
            responses = item[method]["responses"]
            assert responses["default"] == {"$ref": "#/components/responses/Error"}, path
            assert any(code.startswith("2") for code in responses), path


def test_tornado_patterns_are_built_from_the_templates() -> None:
    patterns = dict(handlers())
    assert len(patterns) == len(ROUTES)
    contents = next(p for p in patterns if p.endswith("/contents"))
    match = re.fullmatch(contents, f"{API_PREFIX}/dids/cta/crab-2024.dl3/contents")
    assert match and match.groupdict() == {"scope": "cta", "name": "crab-2024.dl3"}
    assert re.fullmatch(contents, f"{API_PREFIX}/dids/cta/a/b/contents") is None
