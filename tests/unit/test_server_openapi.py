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


def _validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator of ``schema`` whose ``$ref``s resolve in the spec."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator({**schema, "components": _spec()["components"]})


def _one_ofs(node: Any, where: str = "") -> list[tuple[str, list[Any]]]:
    found = []
    if isinstance(node, dict):
        if "oneOf" in node:
            found.append((where, node["oneOf"]))
        for key, value in node.items():
            found += _one_ofs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _one_ofs(value, f"{where}/{i}")
    return found


def test_a_contents_item_matches_exactly_one_schema_of_its_one_of() -> None:
    # A dataset's files and a container's children: each must match one branch only,
    # else a client (or schemathesis) cannot tell which it is.
    schema = _spec()["paths"]["/dids/{scope}/{name}/contents"]["get"]["responses"]["200"]
    items = schema["content"]["application/json"]["schema"]["allOf"][1]["properties"]["items"]
    validator = _validator(items)
    file = {"scope": "cta", "name": "f.fits", "type": "file", "bytes": 10, "adler32": None}
    dataset = {"scope": "cta", "name": "d", "type": "dataset", "bytes": None, "length": 3}
    container = {"scope": "cta", "name": "c", "type": "container"}
    assert not list(validator.iter_errors([file, dataset, container]))
    for ambiguous in ({**file, "type": None}, {**dataset, "type": "file"}):
        assert list(validator.iter_errors([ambiguous])), ambiguous


def test_every_one_of_is_listed_and_reviewed() -> None:
    # A new oneOf must have branches that exclude each other: add it here once checked.
    assert {where for where, _ in _one_ofs(_spec())} == {
        "/paths//dids/{scope}/{name}/contents/get/responses/200/content"
        "/application/json/schema/allOf/1/properties/items/items",
        "/components/schemas/AvailabilityRequest/properties/rule",  # Rule | null
        "/components/schemas/Placement/properties/read",  # ReadChoice (an object) | null
        "/components/schemas/SearchRequest/properties/time",  # array | number or string
    }
