"""Loading the reference example and reporting mistakes with file positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomoperator.spec import SpecError, dump_yaml, load_data, load_file, load_text

EXAMPLES = Path(__file__).parents[2] / "examples" / "specs"


def test_reference_example_loads() -> None:
    [loaded] = load_file(EXAMPLES / "ai-lab.room.yaml")
    assert loaded.spec.room_id == "room-ai-lab-01"
    assert [entity.id for entity in loaded.spec.spec.entities] == [
        "E-orchestrator-main",
        "E-agent-researcher",
        "E-human-owner",
    ]
    assert loaded.spec.spec.entities[0].policy.allow_commands_from == "orchestrator"
    assert loaded.base_dir == EXAMPLES.resolve()
    assert loaded.warnings == ()


def test_dump_then_load_gives_the_same_spec() -> None:
    [loaded] = load_file(EXAMPLES / "ai-lab.room.yaml")
    [again] = load_text(dump_yaml(loaded.spec))
    assert again.spec == loaded.spec


def test_wrong_kind_is_reported_with_file_line_and_column() -> None:
    text = (
        "metadata: {name: x, version: 1}\n"
        "spec:\n"
        "  roomId: room-test-1\n"
        "  entities:\n"
        "    - {id: E-a1, kind: human}\n"
        "    - {id: E-a2, kind: agent}\n"
        "    - id: E-a3\n"
        "      kind: robot\n"
    )
    with pytest.raises(SpecError) as caught:
        load_text(text, source="room.yaml")
    assert [str(issue) for issue in caught.value.issues] == [
        "room.yaml:8:13: spec.entities[2].kind: must be one of human, agent, npc, orchestrator (got 'robot')"
    ]


def test_json_body_errors_name_field_paths() -> None:
    body = {
        "metadata": {"name": "x", "version": 1},
        "spec": {"roomId": "room-test-1", "entities": [{"id": "E-a1"}]},
    }
    with pytest.raises(SpecError) as caught:
        load_data(body)
    assert [str(issue) for issue in caught.value.issues] == ["<request>: spec.entities[0].kind: is required"]
