"""Pure rules of the room server: identifiers, entities, policies, artifacts, lifecycle, event framing."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.domain.artifacts import ArtifactDraft, Manifest, parse_parents, parse_port, parse_upload_spec
from roomserver.domain.entities import Entity, make_entity
from roomserver.domain.events import RoomEvent, artifact_written
from roomserver.domain.identifiers import check_artifact_name, check_entity_id, check_room_id
from roomserver.domain.limits import InputError, check_json_value
from roomserver.domain.policies import RoomPolicies
from roomserver.domain.rooms import status_after_join, status_after_leave
from roomserver.domain.timestamps import now_iso, parse_iso
from roomserver.errors import RoomServerError


@pytest.mark.parametrize("room_id", ["room-abc123", "room-ai-lab-01", "room-ABC_XYZ-123", "room-" + "a" * 59])
def test_room_ids_of_the_reference_rule_are_accepted(room_id: str) -> None:
    assert check_room_id(room_id) == room_id


@pytest.mark.parametrize(
    "room_id", ["ab", "-room", "room/x", "", "room abc", "bad-room", "ai-lab-01", "room-abc12"]
)
def test_bad_room_ids_are_refused_with_the_reference_text(room_id: str) -> None:
    with pytest.raises(RoomServerError) as caught:
        check_room_id(room_id)
    assert caught.value.status == 400
    assert caught.value.body() == {
        "error": "BadRequest",
        "code": "INVALID_ROOM_ID",
        "message": "roomId must match pattern: room-[A-Za-z0-9_-]{6,}",
    }


def test_room_ids_longer_than_64_characters_are_refused() -> None:
    with pytest.raises(RoomServerError) as caught:
        check_room_id("room-" + "a" * 60)
    assert caught.value.body()["message"] == "roomId must be at most 64 characters"


@pytest.mark.parametrize("entity_id", ["E-", "E-A", "Entity-123", "E123", "E-a/b"])
def test_bad_entity_ids_are_refused(entity_id: str) -> None:
    with pytest.raises(RoomServerError) as caught:
        check_entity_id(entity_id)
    assert caught.value.code == "INVALID_ENTITY_ID"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Name is required"),
        ("../etc", "Name contains invalid path tokens"),
        ("a/b", "Name contains invalid path tokens"),
        ("manifest.json", "reserved"),
        ("MANIFEST.JSON", "reserved"),
        ("upload.tmp", "reserved"),
        ("-dash", "pattern"),
    ],
)
def test_bad_artifact_names_get_the_reference_error(name: str, message: str) -> None:
    with pytest.raises(RoomServerError) as caught:
        check_artifact_name(name)
    assert caught.value.body()["error"] == "InvalidArtifactName"
    assert message in caught.value.message


@given(st.from_regex(r"\Aroom-[A-Za-z0-9_-]{6,59}\Z"))
def test_every_room_id_of_the_contract_pattern_is_accepted(room_id: str) -> None:
    assert check_room_id(room_id) == room_id


@given(st.text(max_size=80))
def test_room_id_check_accepts_exactly_the_contract_pattern(text: str) -> None:
    valid = re.fullmatch(r"room-[A-Za-z0-9_-]{6,59}", text) is not None
    try:
        check_room_id(text)
        accepted = True
    except RoomServerError:
        accepted = False
    assert accepted == valid


def test_entity_is_normalised_like_the_reference_join() -> None:
    entity = make_entity(
        "E-agent-1", "AGENT", visibility="", capabilities=["read_artifacts", "text.generate"]
    )
    assert entity.kind == "agent"
    assert entity.visibility == "team"
    assert entity.policy.allow_commands_from == "any"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"kind": "robot"}, "INVALID_ENTITY_KIND"),
        ({"kind": " "}, "INVALID_ENTITY_SPEC"),
        ({"kind": "agent", "capabilities": ["Bad-Cap"]}, "INVALID_CAPABILITY"),
        ({"kind": "agent", "visibility": "everyone"}, "INVALID_ENTITY_SPEC"),
        ({"kind": "agent", "visibility": "owner"}, "INVALID_ENTITY_SPEC"),
        ({"kind": "agent", "allow_commands_from": "nobody"}, "INVALID_ENTITY_SPEC"),
    ],
)
def test_invalid_entities_get_the_hub_codes(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(RoomServerError) as caught:
        make_entity("E-agent-1", **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code


@given(
    st.sampled_from(["human", "agent", "npc", "orchestrator"]),
    st.lists(st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z"), max_size=4),
    st.sampled_from(["public", "team"]),
    st.booleans(),
)
def test_entity_wire_round_trip(kind: str, capabilities: list[str], visibility: str, sandbox: bool) -> None:
    entity = make_entity("E-x1", kind, capabilities=capabilities, visibility=visibility, sandbox_mode=sandbox)
    assert Entity.from_wire(json.loads(json.dumps(entity.to_wire()))) == entity


def test_policies_update_only_given_values_and_validate() -> None:
    policies = RoomPolicies().updated(max_artifacts_per_entity=5)
    assert policies.to_wire() == {
        "dmVisibilityDefault": "team",
        "allowResourceCreation": False,
        "maxArtifactsPerEntity": 5,
    }
    assert policies.updated() == policies
    with pytest.raises(RoomServerError, match="dmVisibilityDefault"):
        policies.updated(dm_visibility_default="nobody")
    with pytest.raises(RoomServerError, match="maxArtifactsPerEntity"):
        policies.updated(max_artifacts_per_entity=-1)


def _manifest(**changes: object) -> Manifest:
    base: dict[str, object] = {
        "room_id": "room-ai-lab-01",
        "owner": None,
        "name": "plan",
        "version": 1,
        "type": "document",
        "sha256": "0" * 64,
        "size": 3,
        "workspace": "shared",
        "tags": ("a",),
        "fingerprint": None,
        "metadata": None,
        "parents": None,
        "port": None,
        "origin_entity": "E-SERVICE",
        "promoted": False,
        "ts": now_iso(),
        "created_by": "operator",
    }
    base.update(changes)
    return Manifest(**base)  # type: ignore[arg-type]


def test_a_draft_matches_only_an_identical_manifest() -> None:
    draft = ArtifactDraft(name="plan", type="document", workspace="shared", tags=("a",))
    assert draft.matches(_manifest())
    assert draft.matches(_manifest(version=7, promoted=True))
    assert not draft.matches(_manifest(tags=("b",)))
    assert not draft.matches(_manifest(workspace="analysis"))
    assert not draft.matches(_manifest(metadata={"k": 1}))
    assert draft.matches(_manifest(created_by="E-member"))  # the same bytes again keep the version


def test_manifest_wire_has_reference_fields_and_ours() -> None:
    wire = _manifest(owner="E-agent-1").to_wire()
    assert set(wire) == {
        "name", "type", "path", "size", "sha256", "origin", "version", "parents", "metadata", "ts",
        "workspace", "tags", "promoted", "fingerprint", "createdBy",
    }  # fmt: skip
    assert wire["origin"] == {
        "room": "room-ai-lab-01",
        "entity": "E-SERVICE",
        "port": None,
        "workspace": "entity",
        "channel": None,
    }
    assert _manifest().location() == "/rooms/room-ai-lab-01/artifacts/plan"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (b"{", "spec must be valid JSON"),
        (b"[]", "spec must be a JSON object"),
        (b'{"name":"x"}', "spec must include name and type"),
        (b'{"name":"x","type":"t","bogus":1}', "unknown field(s): bogus"),
        (b'{"name":"x","type":"t","workspace":"a b"}', "spec.workspace"),
        (b'{"name":"x","type":"t","tags":["a,b"]}', "spec.tags"),
        (b'{"name":"x","type":"t","fingerprint":"XYZ"}', "spec.fingerprint"),
        (b'{"name":"x","type":"t","metadata":[1]}', "spec.metadata"),
    ],
)
def test_invalid_spec_parts_name_the_field(spec: bytes, message: str) -> None:
    with pytest.raises(RoomServerError) as caught:
        parse_upload_spec(spec, default_workspace="room")
    assert caught.value.body() == {"error": "InvalidSpec", "message": caught.value.message}
    assert message in caught.value.message


def test_spec_part_defaults() -> None:
    assert parse_upload_spec(b'{"name":"n","type":"t"}', default_workspace="room") == (
        "n",
        "t",
        "room",
        (),
        None,
        None,
    )


def test_parents_and_port_parts() -> None:
    assert parse_parents(b'["abc"]') == ("abc",)
    assert parse_parents(None) is None
    with pytest.raises(RoomServerError, match="parents must be an array of strings"):
        parse_parents(b"[1]")
    assert parse_port(b"text.generate") == "text.generate"
    with pytest.raises(RoomServerError, match="port"):
        parse_port(b"Not A Port")


def test_room_lifecycle() -> None:
    assert status_after_join("init") == "active"
    assert status_after_join("ended") == "active"
    assert status_after_join("paused") == "paused"
    assert status_after_leave("active", remaining=0) == "ended"
    assert status_after_leave("active", remaining=1) == "active"


def test_event_envelope() -> None:
    assert artifact_written("a", 1, "s").kind == "ARTIFACT.ADDED"
    assert artifact_written("a", 2, "s").kind == "ARTIFACT.UPDATED"
    event = RoomEvent(
        43, "room-ai-lab-01", "2026-11-27T03:00:00.123456Z", "ENTITY.LEAVE", {"entityId": "E-agent-1"}
    )
    assert event.envelope() == {
        "id": "43",
        "roomId": "room-ai-lab-01",
        "ts": "2026-11-27T03:00:00.123456Z",
        "type": "event",
        "payload": {"kind": "ENTITY.LEAVE", "data": {"entityId": "E-agent-1"}},
    }


def test_timestamps_are_utc_z_and_parse_back() -> None:
    stamp = now_iso()
    assert stamp.endswith("Z")
    assert parse_iso(stamp) is not None
    assert parse_iso("2026-01-01T00:00:00") is not None
    assert parse_iso("yesterday") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("\ud800", "doc must be valid Unicode text"),
        ({"a": ["ok", {"b": "\udfff"}]}, "doc must be valid Unicode text"),
        ({"ok": {"\ud800": 1}}, "doc key must be valid Unicode text"),
        ([[[["deep"]]]], "doc is nested deeper than 3 levels"),
    ],
)
def test_a_json_value_is_refused_for_a_lone_surrogate_anywhere_or_too_much_depth(
    document: object, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        check_json_value(document, field="doc", max_depth=3)
    assert check_json_value({"é": ["ü", {"k": [1, None, 2.5]}]}, field="doc", max_depth=4) is not None
