"""Validation rules and their messages: the reference RoomSpecValidator's texts, ids, dependsOn, seeds."""

from __future__ import annotations

import json

from roomoperator.spec import load_data, load_text
from tests.spec.documents import issues_of_data, issues_of_text, minimal

AGENT = {"id": "E-agent-1", "kind": "agent"}
ARTIFACT = {"name": "notes", "type": "document", "workspace": "shared"}


def test_minimal_spec_is_valid_and_defaults_apply() -> None:
    spec = load_data(minimal(entities=[AGENT]))
    entity = spec.spec.entities[0]
    assert (entity.visibility, entity.policy.allow_commands_from, entity.protect) == ("team", "any", False)
    assert spec.spec.policies.max_artifacts_per_entity == 100


def test_reference_messages_for_required_fields() -> None:
    data = minimal(
        roomId=" ",
        entities=[{"kind": "agent"}],
        artifacts=[{"type": "document"}, {"name": "x"}],
    )
    data["metadata"]["version"] = 0
    assert issues_of_data(data) == [
        "<request>: metadata.version: Spec version must be positive (got 0)",
        "<request>: spec.roomId: RoomId is required",
        "<request>: spec.entities[0].id: Entity Id is required",
        "<request>: spec.artifacts[0].name: Artifact Name is required",
        "<request>: spec.artifacts[0].workspace: Artifact requires Workspace",
        "<request>: spec.artifacts[1].type: Artifact x requires Type",
        "<request>: spec.artifacts[1].workspace: Artifact x requires Workspace",
    ]


def test_duplicates_and_owner_visibility_use_reference_texts() -> None:
    data = minimal(
        entities=[AGENT, {**AGENT, "visibility": "owner"}],
        artifacts=[ARTIFACT, ARTIFACT],
        resources=[{"name": "t", "type": "mcp-tool"}, {"name": "t", "type": "mcp-tool"}],
    )
    assert issues_of_data(data) == [
        "<request>: spec.entities[1].id: Duplicate entity Id: E-agent-1",
        "<request>: spec.artifacts[1].name: Duplicate artifact name: notes",
        "<request>: spec.resources[1].name: Duplicate resource name: t",
        "<request>: spec.entities[1].ownerUserId:"
        " Entity E-agent-1 with visibility=owner requires OwnerUserId",
    ]


def test_kind_is_case_insensitive_and_stored_lower_case() -> None:
    spec = load_data(minimal(entities=[{"id": "E-agent-1", "kind": "Agent"}]))
    assert spec.spec.entities[0].kind == "agent"


def test_identifier_formats_are_enforced() -> None:
    data = minimal(
        roomId="r!",
        entities=[{"id": "agent-1", "kind": "agent", "capabilities": ["Read Artifacts"]}],
        artifacts=[
            {"name": "a/b", "type": "document", "workspace": "shared"},
            {"name": "x..y", "type": "document", "workspace": "shared"},
            {"name": "manifest.json", "type": "document", "workspace": "shared"},
            {"name": "draft.tmp", "type": "document", "workspace": "my space", "tags": ["a,b"]},
        ],
    )
    messages = issues_of_data(data)
    assert messages == [
        "<request>: spec.roomId: must be a room id: 'room-' then 6 or more letters, digits, '-' or '_'"
        " (room-abc123) (got 'r!')",
        "<request>: spec.entities[0].id: must be an entity id: 'E-' then 2-64 letters, digits, '-' or '_'"
        " (got 'agent-1')",
        "<request>: spec.entities[0].capabilities[0]: must be a capability: lower-case words of a-z, 0-9 and"
        " '_' joined by '.' (read_artifacts) (got 'Read Artifacts')",
        "<request>: spec.artifacts[0].name: must be an artifact name: 1-128 letters, digits, '.', '-', '_',"
        " starting alphanumeric (got 'a/b')",
        "<request>: spec.artifacts[1].name: must not contain '..' (got 'x..y')",
        "<request>: spec.artifacts[2].name: is reserved by the room server (got 'manifest.json')",
        "<request>: spec.artifacts[3].name: is reserved by the room server (got 'draft.tmp')",
        "<request>: spec.artifacts[3].workspace: must be a workspace label: 1-64 letters, digits, '-' or '_',"
        " starting with a letter or digit (got 'my space')",
        "<request>: spec.artifacts[3].tags[0]: must be a tag: 1-64 letters, digits or '.', '_', ':', '/', '-'"
        " (no spaces or commas) (got 'a,b')",
    ]


def test_room_ids_follow_the_reference_room_server_rule_up_to_64_characters() -> None:
    for room_id in ("room-abc123", "room-ai-lab-01", "room-" + "x" * 59):
        assert load_data(minimal(roomId=room_id)).room_id == room_id
    for refused in ("bad-room", "ai-lab-01", "room-abc12", "room-abc!23"):
        assert issues_of_data(minimal(roomId=refused))[0].startswith(
            "<request>: spec.roomId: must be a room id"
        ), refused
    assert issues_of_data(minimal(roomId="room-" + "x" * 60)) == [
        "<request>: spec.roomId: must be at most 64 characters (got 65)"
    ]


def test_unknown_keys_suggest_the_closest_known_key() -> None:
    data = minimal(entities=[{**AGENT, "dispalyName": "A", "policy": {"sandboxmode": True}}], roomID="x")
    data["metdata"] = {}
    assert issues_of_data(data) == [
        "<request>: spec.entities[0].policy.sandboxmode:"
        " unknown key 'sandboxmode' (did you mean 'sandboxMode'?)",
        "<request>: spec.entities[0].dispalyName: unknown key 'dispalyName' (did you mean 'displayName'?)",
        "<request>: spec.roomID: unknown key 'roomID' (did you mean 'roomId'?)",
        "<request>: metdata: unknown key 'metdata' (did you mean 'metadata'?)",
    ]


def test_unknown_key_without_a_close_match_lists_the_allowed_ones() -> None:
    [message] = issues_of_data(minimal(policies={"dmVisibilityDefault": "team", "zzz": 1}))
    assert message == (
        "<request>: spec.policies.zzz: unknown key 'zzz' (allowed: dmVisibilityDefault,"
        " allowResourceCreation, maxArtifactsPerEntity)"
    )


def test_snake_case_field_names_are_not_accepted_for_camel_case_keys() -> None:
    [message] = issues_of_data(minimal(entities=[{**AGENT, "display_name": "A"}]))
    assert "did you mean 'displayName'" in message


def test_policy_keys_accept_snake_and_camel_case() -> None:
    snake = {"allow_commands_from": "owner", "sandbox_mode": True, "env_whitelist": ["HOME"]}
    camel = {"allowCommandsFrom": "owner", "sandboxMode": True, "envWhitelist": ["HOME"]}
    first = load_data(minimal(entities=[{**AGENT, "policy": snake}]))
    second = load_data(minimal(entities=[{**AGENT, "policy": camel}]))
    assert first == second
    assert first.spec.entities[0].policy.env_whitelist == ("HOME",)


def test_type_errors_say_what_was_expected_and_what_came() -> None:
    data = minimal(entities=None, artifacts=[{**ARTIFACT, "promoteAfterSeed": "maybe"}])
    data["metadata"]["labels"] = {"tier": 1}
    assert issues_of_data(data) == [
        "<request>: metadata.labels.tier: must be a string (got 1)",
        "<request>: spec.entities: must be a list (got null)",
        "<request>: spec.artifacts[0].promoteAfterSeed: must be true or false (got 'maybe')",
    ]


def test_document_that_is_not_a_mapping() -> None:
    assert issues_of_data([1, 2]) == [
        "<request>: a RoomSpec document must be a mapping with apiVersion, kind, metadata and spec"
        " (got a list)"
    ]


def test_depends_on_must_name_artifacts_of_the_spec() -> None:
    data = minimal(
        entities=[AGENT],
        artifacts=[{**ARTIFACT, "dependsOn": ["missing", "notes"]}],
        resources=[{"name": "t", "type": "mcp-tool", "dependsOn": ["E-agent-1", "notes", "E-ghost"]}],
    )
    assert issues_of_data(data) == [
        "<request>: spec.artifacts[0].dependsOn[0]: names no artifact of this spec (got 'missing')",
        "<request>: spec.artifacts[0].dependsOn: dependsOn forms a cycle: notes -> notes",
        "<request>: spec.resources[0].dependsOn[2]: names no entity or artifact of this spec (got 'E-ghost')",
    ]


def test_every_dependency_cycle_is_reported() -> None:
    def artifact(name: str, *depends_on: str) -> dict[str, object]:
        return {**ARTIFACT, "name": name, "dependsOn": list(depends_on)}

    data = minimal(
        artifacts=[
            artifact("a", "b"),
            artifact("b", "a"),
            artifact("c", "d"),
            artifact("d", "e"),
            artifact("e", "c"),
        ]
    )
    messages = issues_of_data(data)
    assert len(messages) == 2
    assert all("dependsOn forms a cycle" in message for message in messages)
    assert {frozenset(message.split(": ")[-1].split(" -> ")) for message in messages} == {
        frozenset({"a", "b"}),
        frozenset({"c", "d", "e"}),
    }


def test_an_acyclic_dependency_graph_is_valid() -> None:
    spec = load_data(
        minimal(
            artifacts=[
                {**ARTIFACT, "name": "a"},
                {**ARTIFACT, "name": "b", "dependsOn": ["a"]},
                {**ARTIFACT, "name": "c", "dependsOn": ["a", "b"]},
            ]
        )
    )
    assert spec.spec.artifacts[2].depends_on == ("a", "b")


def test_missing_dm_visibility_default_is_a_reference_warning() -> None:
    data = minimal()
    del data["spec"]["policies"]
    [loaded] = load_text(json.dumps(data), source="room.json")
    assert [str(warning) for warning in loaded.warnings] == [
        "room.json:1:93: spec.policies: dmVisibilityDefault not set, will default to 'team'"
    ]
    assert loaded.spec.spec.policies.dm_visibility_default == "team"


def test_blank_or_null_dm_visibility_default_is_team_with_the_reference_warning() -> None:
    """The reference's clients send `""`; the reference warned and used `team`."""
    for value in ("", "  ", None):
        data = minimal()
        data["spec"]["policies"] = {"dmVisibilityDefault": value}
        [loaded] = load_text(json.dumps(data), source="room.json")
        assert loaded.spec.spec.policies.dm_visibility_default == "team"
        assert [w.message for w in loaded.warnings] == ["dmVisibilityDefault not set, will default to 'team'"]


def test_all_errors_of_a_file_are_reported_in_order_with_positions() -> None:
    text = """\
apiVersion: v1
kind: RoomSpec
metadata:
  name: lab
  version: -1
spec:
  roomId: room-test-1
  entities:
    - id: E-agent-1
      kind: robot
    - id: E-agent-1
      kind: agent
      visibilty: team
  artifacts:
    - name: notes
      type: document
      workspace: shared
      seedFrom: ../outside.md
"""
    assert issues_of_text(text, source="lab.yaml") == [
        "lab.yaml:5:12: metadata.version: Spec version must be positive (got -1)",
        "lab.yaml:10:13: spec.entities[0].kind: must be one of human, agent, npc, orchestrator (got 'robot')",
        "lab.yaml:11:11: spec.entities[1].id: Duplicate entity Id: E-agent-1",
        "lab.yaml:13:7: spec.entities[1].visibilty: unknown key 'visibilty' (did you mean 'visibility'?)",
        "lab.yaml:18:17: spec.artifacts[0].seedFrom: must stay inside the spec's folder"
        " ('../outside.md' escapes it with '..')",
    ]


def test_json_text_gets_positions_too() -> None:
    text = (
        '{\n  "metadata": {"name": "x", "version": 1},\n'
        '  "spec": {"roomId": "room-test-1", "rollback": "always"}}'
    )
    assert issues_of_text(text, source="r.json") == [
        "r.json:3:49: spec.rollback: must be one of never, on-failure (got 'always')"
    ]


def test_membership_is_closed_or_open() -> None:
    assert issues_of_text(
        "metadata: {name: x, version: 1}\nspec: {roomId: room-test-1, membership: half}\n"
    ) == ["<string>:2:41: spec.membership: must be one of closed, open (got 'half')"]
    [loaded] = load_text("metadata: {name: x, version: 1}\nspec: {roomId: room-test-1}\n")
    assert loaded.spec.spec.membership == "closed"


def _document(name: str, version: int, spec: str) -> str:
    return f"metadata: {{name: {name}, version: {version}}}\nspec: {spec}\n"


def test_multi_document_yaml_holds_several_rooms() -> None:
    text = _document("a", 1, "{roomId: room-test-a}") + "---\n" + _document("b", 2, "{roomId: room-test-b}")
    assert [loaded.spec.room_id for loaded in load_text(text)] == ["room-test-a", "room-test-b"]


def test_the_same_room_twice_in_one_file_is_an_error() -> None:
    text = _document("a", 1, "{roomId: room-test-a}") + "---\n" + _document("b", 2, "{roomId: room-test-a}")
    assert issues_of_text(text, source="f.yaml") == [
        "f.yaml:5:16: spec.roomId: room 'room-test-a' is already declared by document 1 of this file"
    ]


def test_errors_in_several_documents_are_all_reported() -> None:
    text = _document("a", 0, "{roomId: room-test-a}") + "---\n" + _document("b", 1, "{}")
    assert issues_of_text(text, source="f.yaml") == [
        "f.yaml:1:30: metadata.version: Spec version must be positive (got 0)",
        "f.yaml:5:7: spec.roomId: RoomId is required",
    ]


def test_odd_keys_are_quoted_in_paths() -> None:
    data = minimal()
    data["metadata"]["labels"] = {"app.kubernetes.io/name": 5}
    assert issues_of_data(data) == [
        '<request>: metadata.labels["app.kubernetes.io/name"]: must be a string (got 5)'
    ]


def test_entries_of_the_wrong_shape_are_reported_not_raised() -> None:
    data = minimal(entities=[1, "E-x"], artifacts={"name": "x"}, policies=None)
    assert issues_of_data(data) == [
        "<request>: spec.entities[0]: must be a mapping (got 1)",
        "<request>: spec.entities[1]: must be a mapping (got 'E-x')",
        "<request>: spec.artifacts: must be a list (got a mapping)",
        "<request>: spec.policies: must be a mapping (got null)",
    ]


def test_resources_name_mcp_providers_with_urls() -> None:
    data = minimal(
        resources=[
            {"name": "web.search@local", "type": "mcp-tool", "config": {"endpoint": "ws://127.0.0.1:8081"}},
            {"name": "bad name", "type": "mcp-tool", "config": {"endpoint": "ftp://x"}},
            {"name": "t", "type": "mcp-tool", "config": {"url": None}},
        ]
    )
    assert issues_of_data(data) == [
        "<request>: spec.resources[1].name: must be an MCP provider id: 1-128 letters, digits or '.', '_',"
        " '@', ':', '-' (got 'bad name')",
        "<request>: spec.resources[1].config: endpoint must be a ws://, wss://, http:// or https:// URL"
        " or stdio:<name> (got 'ftp://x')",
        "<request>: spec.resources[2].config: url must be a ws://, wss://, http:// or https:// URL"
        " or stdio:<name> (got None)",
    ]


def test_a_resource_without_endpoint_is_a_warning() -> None:
    [loaded] = load_text(
        json.dumps(minimal(resources=[{"name": "tool", "type": "mcp-tool"}])), source="r.json"
    )
    assert [warning.message for warning in loaded.warnings] == [
        "no endpoint: the operator cannot load this resource's MCP provider without its URL"
    ]


def test_entity_and_artifact_fields_hold_to_the_room_servers_bounds() -> None:
    entity = {**AGENT, "displayName": "x" * 257, "capabilities": ["read_artifacts"] * 65}
    entity["policy"] = {"scopes": ["s" * 129]}
    artifact = {**ARTIFACT, "tags": [f"t{i}" for i in range(65)]}
    assert issues_of_data(minimal(entities=[entity], artifacts=[artifact])) == [
        "<request>: spec.entities[0].displayName: must be at most 256 characters (got 257)",
        "<request>: spec.entities[0].capabilities: must have at most 64 items (got 65)",
        "<request>: spec.entities[0].policy.scopes[0]: must be at most 128 characters (got 129)",
        "<request>: spec.artifacts[0].tags: must have at most 64 items (got 65)",
    ]
