"""`roomop validate` and `roomop schema`, run through the real typer application."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from roomoperator.cli import app
from tests.spec.documents import EXAMPLES

runner = CliRunner()

BAD = """\
metadata:
  name: lab
  version: 0
spec:
  roomId: room-test-1
  entities:
    - id: E-agent-1
      kind: robot
      dispalyName: Agent
"""


def test_valid_files_print_one_summary_line_per_room() -> None:
    result = runner.invoke(
        app, ["validate", str(EXAMPLES / "ai-lab.room.yaml"), str(EXAMPLES / "product-studio.room.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{EXAMPLES / 'ai-lab.room.yaml'}: ok: room room-ai-lab-01 (ai-lab v4):"
        " 3 entities, 2 artifacts, 1 resource",
        f"{EXAMPLES / 'product-studio.room.yaml'}: ok: room room-product-studio-01 (product-studio v7):"
        " 14 entities, 5 artifacts, 3 resources",
    ]


def test_every_error_is_printed_and_the_exit_code_is_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = runner.invoke(app, ["validate", str(EXAMPLES / "ai-lab.room.yaml"), str(bad)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[1:] == [
        f"{bad}:3:12: metadata.version: Spec version must be positive (got 0)",
        f"{bad}:8:13: spec.entities[0].kind: must be one of human, agent, npc, orchestrator (got 'robot')",
        f"{bad}:9:7: spec.entities[0].dispalyName: unknown key 'dispalyName' (did you mean 'displayName'?)",
        "3 errors in 1 file",
    ]
    assert lines[0].endswith("ok: room room-ai-lab-01 (ai-lab v4): 3 entities, 2 artifacts, 1 resource")


def test_stdin_is_read_for_a_dash() -> None:
    result = runner.invoke(app, ["validate", "-"], input=BAD)
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[0]
        == "<stdin>:3:12: metadata.version: Spec version must be positive (got 0)"
    )


def test_json_output(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = runner.invoke(
        app, ["validate", "--output", "json", str(EXAMPLES / "ai-lab.room.yaml"), str(bad)]
    )
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["valid"] is False
    assert report["rooms"] == [
        {
            "source": str(EXAMPLES / "ai-lab.room.yaml"),
            "roomId": "room-ai-lab-01",
            "name": "ai-lab",
            "version": 4,
            "entities": 3,
            "artifacts": 2,
            "resources": 1,
            "warnings": [],
        }
    ]
    assert report["errors"][0] == {
        "source": str(bad),
        "path": "metadata.version",
        "message": "Spec version must be positive (got 0)",
        "line": 3,
        "col": 12,
    }
    assert len(report["errors"]) == 3


def test_warnings_are_printed_but_do_not_fail(tmp_path: Path) -> None:
    spec = tmp_path / "room.yaml"
    spec.write_text("metadata: {name: x, version: 1}\nspec:\n  roomId: room-test-1\n")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{spec}: ok: room room-test-1 (x v1): 0 entities, 0 artifacts, 0 resources",
        f"warning: {spec}:3:3: spec.policies: dmVisibilityDefault not set, will default to 'team'",
    ]


def test_the_same_room_in_two_files_is_an_error(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(
            "metadata: {name: x, version: 1}\nspec: {roomId: room-test-1, policies: {}}\n"
        )
    result = runner.invoke(app, ["validate", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert result.exit_code == 1
    assert (
        f"{tmp_path / 'b.yaml'}: spec.roomId: room 'room-test-1' is also declared in {tmp_path / 'a.yaml'}"
        in (result.output.splitlines())
    )


def test_schema_command_prints_the_committed_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    committed = Path(__file__).parents[2] / "schemas" / "roomspec.schema.json"
    assert json.loads(result.output) == json.loads(committed.read_text())


def test_the_invalid_example_reports_all_its_mistakes() -> None:
    example = EXAMPLES.parent / "invalid" / "mistakes.room.yaml"
    result = runner.invoke(app, ["validate", str(example)])
    assert result.exit_code == 1
    lines = [line.removeprefix(f"{example}:") for line in result.output.splitlines()]
    assert lines == [
        "7:12: metadata.version: Spec version must be positive (got 0)",
        "12:13: spec.entities[0].kind: must be one of human, agent, npc, orchestrator (got 'robot')",
        "13:11: spec.entities[1].id: Duplicate entity Id: E-agent-1",
        "15:7: spec.entities[1].dispalyName: unknown key 'dispalyName' (did you mean 'displayName'?)",
        "16:7: spec.entities[2].ownerUserId: Entity E-human-1 with visibility=owner requires OwnerUserId",
        "23:17: spec.artifacts[0].seedFrom: must stay inside the spec's folder"
        " ('../../etc/passwd' escapes it with '..')",
        "24:18: spec.artifacts[0].dependsOn: dependsOn forms a cycle: plan -> notes -> plan",
        "25:7: spec.artifacts[1].type: Artifact notes requires Type",
        "8 errors in 1 file",
    ]


def test_hostile_values_are_clear_errors_not_tracebacks(tmp_path: Path) -> None:
    long_seed = tmp_path / "long-seed.room.yaml"
    long_seed.write_text(
        "metadata: {name: lab, version: 1}\nspec:\n  roomId: room-test-1\n  artifacts:\n"
        f"    - {{name: a, type: document, workspace: shared, seedFrom: seeds/{'x' * 300}.md}}\n"
    )
    deep = tmp_path / "deep.room.json"
    config: dict[str, object] = {}
    for _ in range(900):
        config = {"a": config}
    resource = {"name": "tool", "type": "mcp", "config": config}
    deep.write_text(
        json.dumps(
            {
                "metadata": {"name": "lab", "version": 1},
                "spec": {"roomId": "room-test-1", "resources": [resource]},
            }
        )
    )
    digits = tmp_path / "digits.room.yaml"
    digits.write_text(f"metadata: {{name: lab, version: {'9' * 5000}}}\nspec:\n  roomId: room-test-1\n")
    huge = tmp_path / "huge.room.yaml"
    huge.write_text(f"metadata: {{name: lab, version: {'9' * 30}}}\nspec:\n  roomId: room-test-1\n")
    expected = {
        long_seed: "5:62: spec.artifacts[0].seedFrom: each part of the path must be at most 255 bytes",
        deep: "document is nested deeper than 32 levels",
        digits: "1:32: '99999999" + "9" * 32 + "' is not a valid int: 5000 digits (at most 4300)",
        huge: "1:32: metadata.version: must be at most 2147483647",
    }
    for file, message in expected.items():
        server = ["--server", "http://127.0.0.1:9"]
        for command in (
            ["validate", str(file)],
            ["plan", "-f", str(file), *server],
            ["apply", "-f", str(file), *server],
        ):
            result = runner.invoke(app, command)
            assert result.exit_code == 1, (command, result.output)
            assert message in result.output, (command, result.output)
            assert "Traceback" not in result.output
