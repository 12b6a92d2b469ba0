"""The JSON Schema: committed copy in sync, examples valid under it, mistakes flagged by it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from roomoperator.spec.parsing import parse_documents
from roomoperator.spec.schema import json_schema
from tests.spec.documents import EXAMPLES, minimal

COMMITTED = Path(__file__).parents[2] / "schemas" / "roomspec.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_up_to_date() -> None:
    assert json.loads(COMMITTED.read_text()) == json_schema(), (
        "run: roomop schema > schemas/roomspec.schema.json"
    )


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_examples_are_valid_under_the_schema(
    validator: jsonschema.Draft202012Validator, example: Path
) -> None:
    for document in parse_documents(example.read_text()):
        assert list(validator.iter_errors(document.data)) == []


@pytest.mark.parametrize(
    ("change", "flagged"),
    [
        ({"entities": [{"id": "E-a1", "kind": "robot"}]}, "'robot' is not one of"),
        ({"entities": [{"id": "agent", "kind": "agent"}]}, "does not match"),
        ({"roomId": "x"}, "does not match"),
        ({"unknown": 1}, "Additional properties are not allowed"),
        ({"entities": [{"id": "E-a1", "kind": "agent", "policy": {"sandboxMode": "yes"}}]}, "is not of type"),
    ],
)
def test_schema_flags_mistakes(
    validator: jsonschema.Draft202012Validator, change: dict[str, Any], flagged: str
) -> None:
    messages = [error.message for error in validator.iter_errors(minimal(**change))]
    assert any(flagged in message for message in messages), messages


def test_schema_accepts_both_policy_spellings(validator: jsonschema.Draft202012Validator) -> None:
    for policy in ({"allow_commands_from": "owner"}, {"allowCommandsFrom": "owner"}):
        assert (
            list(validator.iter_errors(minimal(entities=[{"id": "E-a1", "kind": "agent", "policy": policy}])))
            == []
        )
