"""Rucio's request validation, schemas checked once: the same answers as jsonschema's."""

from __future__ import annotations

import jsonschema
import pytest

from escape_portal.embedded import rucio_schema

DIDS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"scope": {"type": "string", "pattern": "\\w"}, "name": {"type": "string"}},
        "required": ["scope", "name"],
    },
}


@pytest.mark.parametrize(
    "instance",
    [[{"scope": "cta", "name": "f"}], [{"scope": 5, "name": "f"}], [{"name": "f"}], "nope"],
)
def test_the_same_answer_as_jsonschema(instance: object) -> None:
    try:
        jsonschema.validate(instance, DIDS)
        expected = None
    except jsonschema.ValidationError as error:
        expected = error.message
    try:
        rucio_schema.validate(instance, DIDS)
        got = None
    except jsonschema.ValidationError as error:
        got = error.message
    assert got == expected


def test_each_schema_is_checked_and_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rucio_schema, "_validators", {})
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    for _ in range(3):
        rucio_schema.validate({"n": 1}, dict(schema))  # a new dict each time, as Rucio's
    assert len(rucio_schema._validators) == 1


def test_a_broken_schema_is_still_refused() -> None:
    with pytest.raises(jsonschema.SchemaError):
        rucio_schema.validate({}, {"type": "no-such-type"})
