"""A folder source end to end: spec files under a watched temp folder become rooms on the real room
server; edits (of a spec or of a seed) are applied from the watch's event; an invalid file is reported
with its position and its room keeps its last good revision; a deleted file stops managing its room and
removes nothing, unless the source prunes; a room belongs to its source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from tests.service.conftest import EXAMPLES, room_spec
from tests.sources.conftest import operator_with, synced, syncer_of, write_spec
from tests.support.roomserver import RoomServerHandle, upload_artifact

ROOM = "room-folder-01"


def folder_source(root: Path, **fields: object) -> dict[str, object]:
    # A long interval: every change below must arrive through the file watch, not the periodic rescan.
    return {"name": "specs", "folder": root, "interval_seconds": 60, "debounce_ms": 50, **fields}


async def entities(admin: httpx.AsyncClient, room_id: str) -> list[str]:
    state = (await admin.get(f"/room/{room_id}/state")).json()
    return sorted(entity["id"] for entity in state["entities"])


async def test_spec_files_are_applied_and_followed(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    write_spec(root / "team" / "lab.room.yaml", ROOM, entities=2)
    (root / "notes.yaml").write_text("not: a spec file\n", encoding="utf-8")
    async with operator_with(roomserver, tmp_path, folder_source(root)) as operator:
        first = await synced(operator, "specs", lambda state: ROOM in state.rooms)
        assert first.rooms == {ROOM: "team/lab.room.yaml"}
        assert first.applied_revision == first.fetched_revision is not None
        assert await entities(admin, ROOM) == ["E-agent-0", "E-agent-1"]

        write_spec(root / "team" / "lab.room.yaml", ROOM, version=2, entities=3)
        second = await synced(
            operator, "specs", lambda state: state.applied_revision != first.applied_revision
        )
        assert await entities(admin, ROOM) == ["E-agent-0", "E-agent-1", "E-agent-2"]

        history = (await operator.http.get(f"/rooms/{ROOM}/history")).json()
        assert [item["revision"] for item in history["items"]] == [1, 2]
        listed = (await operator.http.get("/sources")).json()["items"]
        assert listed[0]["name"] == "specs"
        assert listed[0]["lastAppliedRevision"] == second.applied_revision
        assert listed[0]["conditions"][0]["status"] == "True"


async def test_a_seed_change_is_a_new_revision(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    shutil.copytree(EXAMPLES / "seeds", root / "seeds")
    write_spec(root / "lab.room.yaml", ROOM, entities=1, artifacts=1)
    async with operator_with(roomserver, tmp_path, folder_source(root)) as operator:
        first = await synced(operator, "specs", lambda state: ROOM in state.rooms)
        before = operator.controller.room(ROOM)
        assert before is not None
        assert before.revision == 1
        (root / "seeds" / "project-plan.md").write_text("# a new plan\n", encoding="utf-8")
        await synced(operator, "specs", lambda state: state.applied_revision != first.applied_revision)
        view = operator.controller.room(ROOM)
        assert view is not None
        assert view.revision == 2
        content = await admin.get(f"/rooms/{ROOM}/artifacts/doc-0")
        assert content.text == "# a new plan\n"


async def test_an_invalid_file_is_reported_and_its_room_keeps_its_revision(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    spec = root / "lab.room.yaml"
    write_spec(spec, ROOM, entities=2)
    async with operator_with(roomserver, tmp_path, folder_source(root)) as operator:
        await synced(operator, "specs", lambda state: ROOM in state.rooms)
        spec.write_text(
            "apiVersion: v1\nkind: RoomSpec\nmetadata: {name: x, version: 2}\nspec:\n  roomId: [\n"
        )
        state = await synced(operator, "specs", lambda state: bool(state.errors))
        assert state.errors[0]["file"] == "lab.room.yaml"
        assert state.errors[0]["line"] is not None
        assert state.errors[0]["message"].startswith(f"lab.room.yaml:{state.errors[0]['line']}:")
        assert state.rooms == {ROOM: "lab.room.yaml"}  # still declared: not released
        view = operator.controller.room(ROOM)
        assert view is not None
        assert view.managed
        assert view.revision == 1
        assert await entities(admin, ROOM) == ["E-agent-0", "E-agent-1"]
        listed = (await operator.http.get("/sources")).json()["items"][0]
        assert listed["conditions"][0] == {
            "type": "Ready",
            "status": "False",
            "reason": "SpecInvalid",
            "message": state.errors[0]["message"],
        }
        assert listed["lastAppliedRevision"] != listed["lastAttemptedRevision"]
        audit = (await operator.http.get("/audit", params={"action": "source.sync_failed"})).json()
        assert any("lab.room.yaml:6:1" in entry["metadata"]["errors"] for entry in audit["entries"])


async def test_a_deleted_file_stops_managing_and_removes_nothing(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    write_spec(root / "lab.room.yaml", ROOM, entities=2)
    async with operator_with(roomserver, tmp_path, folder_source(root)) as operator:
        await synced(operator, "specs", lambda state: ROOM in state.rooms)
        (root / "lab.room.yaml").unlink()
        state = await synced(operator, "specs", lambda state: ROOM not in state.rooms)
        assert state.errors == []
        view = operator.controller.room(ROOM)
        assert view is not None
        assert not view.managed
        assert await entities(admin, ROOM) == ["E-agent-0", "E-agent-1"]
        # Released: the API may take the room now.
        answer = await operator.http.post("/apply", json=room_spec(ROOM, version=3, entities=1))
        assert answer.status_code in (200, 202), answer.text


async def test_prune_removes_the_operators_inventory_only(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    shutil.copytree(EXAMPLES / "seeds", root / "seeds")
    write_spec(root / "lab.room.yaml", ROOM, entities=1, artifacts=2)
    source = folder_source(root, prune=True, confirm=True)  # a reviewed removal: past the empty-room guard
    async with operator_with(roomserver, tmp_path, source) as operator:
        await synced(operator, "specs", lambda state: ROOM in state.rooms)
        names = {a["name"] for a in (await admin.get(f"/room/{ROOM}/state")).json()["artifacts"]}
        assert names == {"doc-0", "doc-1"}
        member = await upload_artifact(admin, ROOM, "member-notes", b"mine", entity="E-agent-0")
        assert member.status_code == 201, member.text
        shared = await admin.post(
            f"/rooms/{ROOM}/artifacts",
            files={"spec": (None, '{"name": "minutes", "type": "document"}'), "data": ("m", b"x")},
            headers={"X-Entity-Id": "E-agent-0"},
        )
        assert shared.status_code == 201, shared.text
        (root / "lab.room.yaml").unlink()
        await synced(operator, "specs", lambda state: ROOM not in state.rooms)
        state = (await admin.get(f"/room/{ROOM}/state")).json()
        assert [a["name"] for a in state["artifacts"]] == ["minutes"]  # the member's work stays
        assert state["entities"] == []  # the operator's declarations go
        view = operator.controller.room(ROOM)
        assert view is not None
        assert not view.managed


def open_room_spec(*entities: str) -> dict[str, object]:
    spec = room_spec(ROOM, entities=0)
    spec["spec"] = {**spec["spec"], "membership": "open"}
    spec["spec"]["entities"] = [{"id": entity, "kind": "agent"} for entity in entities]
    return spec


async def test_prune_of_an_open_room_kicks_only_what_the_operator_joined(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    # A member (the admin token, not the operator's) joins E-agent-b before the spec declares it.
    member = {"entityId": "E-agent-b", "kind": "agent"}
    assert (await admin.post(f"/room/{ROOM}/join", json=member)).status_code in (200, 201)
    spec = root / "lab.room.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps(open_room_spec("E-agent-a", "E-agent-b")), encoding="utf-8")
    async with operator_with(roomserver, tmp_path, folder_source(root, prune=True)) as operator:
        await synced(operator, "specs", lambda state: ROOM in state.rooms)
        assert await entities(admin, ROOM) == ["E-agent-a", "E-agent-b"]
        joined = await admin.post(f"/room/{ROOM}/join", json={"entityId": "E-member", "kind": "agent"})
        assert joined.status_code in (200, 201), joined.text  # an open room: a member joins itself
        spec.unlink()
        await synced(operator, "specs", lambda state: ROOM not in state.rooms)
        assert await entities(admin, ROOM) == ["E-agent-b", "E-member"]
        audit = (await operator.http.get("/audit", params={"roomId": ROOM, "action": "entity.kicked"})).json()
        assert [entry["metadata"]["entityId"] for entry in audit["entries"]] == ["E-agent-a"]
        view = operator.controller.room(ROOM)
        assert view is not None
        assert not view.managed


async def test_a_sources_room_refuses_other_writers(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root, other = tmp_path / "specs", tmp_path / "other"
    write_spec(root / "lab.room.yaml", ROOM, entities=2)
    write_spec(other / "lab.room.yaml", ROOM, version=5, entities=1)
    second = {"name": "other", "folder": other, "interval_seconds": 60, "debounce_ms": 50}
    async with operator_with(roomserver, tmp_path, folder_source(root)) as operator:
        await synced(operator, "specs", lambda state: ROOM in state.rooms)
        answer = await operator.http.post("/apply", json=room_spec(ROOM, version=2, entities=1))
        assert answer.status_code == 409
        assert answer.json()["code"] == "SOURCE_CONFLICT"
        assert "'specs'" in answer.json()["errors"][0]
    async with operator_with(roomserver, tmp_path, folder_source(root), second) as operator:
        state = await synced(operator, "other", lambda state: state.fetched_revision is not None)
        assert "belongs to source 'specs'" in state.errors[0]["message"]
        listed = (await operator.http.get("/sources")).json()["items"]
        assert [item["conditions"][0]["reason"] for item in listed] == ["Succeeded", "Refused"]
        assert await entities(admin, ROOM) == ["E-agent-0", "E-agent-1"]
    async with operator_with(roomserver, tmp_path) as operator:  # the source is gone from the settings
        answer = await operator.http.post("/apply", json=room_spec(ROOM, version=2, entities=1))
        assert answer.status_code == 200, answer.text


async def test_overrides_when_the_source_allows_them(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = tmp_path / "specs"
    write_spec(root / "lab.room.yaml", ROOM, entities=2)
    async with operator_with(roomserver, tmp_path, folder_source(root, allow_overrides=True)) as operator:
        await synced(operator, "specs", lambda state: ROOM in state.rooms)
        answer = await operator.http.post("/apply", json=room_spec(ROOM, version=2, entities=1))
        assert answer.status_code in (200, 202), answer.text
        await operator.controller.wait_idle()
        assert await entities(admin, ROOM) == ["E-agent-0"]
        # A rescan keeps the override while the source declares what it did: drift from the source.
        first = syncer_of(operator, "specs").state
        await syncer_of(operator, "specs").sync()
        await operator.controller.wait_idle()
        assert await entities(admin, ROOM) == ["E-agent-0"]
        listed = (await operator.http.get("/sources")).json()["items"][0]
        assert listed["overridden"] == [ROOM]
        # The source's next change of the room wins again.
        write_spec(root / "lab.room.yaml", ROOM, version=3, entities=3)
        await synced(operator, "specs", lambda state: state.applied_revision != first.applied_revision)
        assert await entities(admin, ROOM) == ["E-agent-0", "E-agent-1", "E-agent-2"]
        assert (await operator.http.get("/sources")).json()["items"][0]["overridden"] == []
