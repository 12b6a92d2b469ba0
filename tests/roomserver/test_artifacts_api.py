"""Artifact routes (reference R4–R10, plus hash, versions, delete) with their documented errors."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomserver.api.schemas import ManifestEnvelope, ManifestList, VersionList
from tests.support.roomserver import upload_artifact

ROOM = "room-ai-lab-01"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _join(client: httpx.AsyncClient, entity_id: str, kind: str = "agent") -> None:
    assert (
        await client.post(f"/room/{ROOM}/join", json={"entityId": entity_id, "kind": kind})
    ).status_code == 201


async def _state_artifacts(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    artifacts: list[dict[str, Any]] = (await client.get(f"/room/{ROOM}/state")).json()["artifacts"]
    return artifacts


async def test_seed_creates_then_repeating_it_is_a_no_op(client: httpx.AsyncClient) -> None:
    fingerprint = "f" * 64

    async def seed() -> httpx.Response:
        return await upload_artifact(
            client,
            ROOM,
            "project-plan",
            b"plan v1",
            workspace="shared",
            tags=("planning",),
            fingerprint=fingerprint,
        )

    first = await seed()
    assert first.status_code == 201
    assert first.headers["location"] == f"/rooms/{ROOM}/artifacts/project-plan"
    manifest = ManifestEnvelope.model_validate(first.json()).manifest
    assert (manifest.version, manifest.sha256, manifest.size) == (1, _sha(b"plan v1"), 7)
    assert (manifest.origin.workspace, manifest.origin.entity, manifest.workspace) == (
        "room",
        "E-SERVICE",
        "shared",
    )
    again = await seed()
    assert again.status_code == 200
    assert again.json() == first.json()
    [entry] = await _state_artifacts(client)
    assert entry["version"] == 1
    assert entry["fingerprint"] == fingerprint
    assert entry["tags"] == ["planning"]


async def test_changed_bytes_or_metadata_make_new_versions_and_old_bytes_stay(
    client: httpx.AsyncClient,
) -> None:
    assert (await upload_artifact(client, ROOM, "notes.md", b"one")).status_code == 201
    assert (await upload_artifact(client, ROOM, "notes.md", b"two")).json()["manifest"]["version"] == 2
    retagged = await upload_artifact(client, ROOM, "notes.md", b"two", tags=("x",))
    assert (retagged.status_code, retagged.json()["manifest"]["version"]) == (201, 3)
    assert (await client.get(f"/rooms/{ROOM}/artifacts/notes.md")).content == b"two"
    old = await client.get(f"/rooms/{ROOM}/artifacts/notes.md", params={"version": 1})
    assert (old.content, old.headers["x-artifact-version"]) == (b"one", "1")
    assert (await client.get(f"/rooms/{ROOM}/artifacts/notes.md/hash")).json() == {"hash": _sha(b"two")}
    versions = VersionList.model_validate(
        (await client.get(f"/rooms/{ROOM}/artifacts/notes.md/versions")).json()
    )
    assert [m.version for m in versions.items] == [1, 2, 3]
    assert versions.deleted is False
    download = await client.get(f"/rooms/{ROOM}/artifacts/notes.md", params={"download": "true"})
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["content-type"] == "application/octet-stream"


async def test_delete_tombstones_keeps_versions_and_reupload_continues(client: httpx.AsyncClient) -> None:
    await upload_artifact(client, ROOM, "gone", b"bytes")
    assert (await client.delete(f"/rooms/{ROOM}/artifacts/gone")).status_code == 204
    assert await _state_artifacts(client) == []
    second = await client.delete(f"/rooms/{ROOM}/artifacts/gone")
    assert second.status_code == 404
    assert second.json() == {"error": "ArtifactNotFound", "message": "Artifact not found"}
    assert (await client.get(f"/rooms/{ROOM}/artifacts/gone")).status_code == 404
    assert (await client.get(f"/rooms/{ROOM}/artifacts/gone/hash")).status_code == 404
    versions = (await client.get(f"/rooms/{ROOM}/artifacts/gone/versions")).json()
    assert (len(versions["items"]), versions["deleted"]) == (1, True)
    assert (await client.get(f"/rooms/{ROOM}/artifacts/gone", params={"version": 1})).content == b"bytes"
    back = await upload_artifact(client, ROOM, "gone", b"bytes")
    assert (back.status_code, back.json()["manifest"]["version"]) == (201, 2)
    assert [a["name"] for a in await _state_artifacts(client)] == ["gone"]


async def test_promote_by_name_is_idempotent_and_reseed_unpromotes(client: httpx.AsyncClient) -> None:
    await upload_artifact(client, ROOM, "plan", b"v1")
    promoted = await client.post(f"/rooms/{ROOM}/artifacts/promote", json={"name": "plan"})
    assert promoted.status_code == 201
    assert promoted.json()["manifest"]["promoted"] is True
    revision = (await client.get(f"/room/{ROOM}/state")).json()["revision"]
    repeat = await client.post(f"/rooms/{ROOM}/artifacts/promote", json={"name": "plan"})
    assert (repeat.status_code, repeat.json()) == (200, promoted.json())
    assert (await client.get(f"/room/{ROOM}/state")).json()["revision"] == revision
    await upload_artifact(client, ROOM, "plan", b"v2")
    [entry] = await _state_artifacts(client)
    assert (entry["version"], entry["promoted"]) == (2, False)
    missing = await client.post(f"/rooms/{ROOM}/artifacts/promote", json={"name": "nothing"})
    assert missing.status_code == 404


async def test_reference_promote_copies_from_an_entity_workspace_once(client: httpx.AsyncClient) -> None:
    await _join(client, "E-writer")
    await _join(client, "E-orch", kind="orchestrator")
    await _join(client, "E-other")
    written = await upload_artifact(
        client, ROOM, "draft.md", b"draft", entity="E-writer", type="text/markdown"
    )
    assert written.status_code == 201
    assert written.headers["location"] == f"/rooms/{ROOM}/entities/E-writer/artifacts/draft.md"
    body = {"fromEntity": "E-writer", "name": "draft.md", "as": "final.md"}
    denied = await client.post(
        f"/rooms/{ROOM}/artifacts/promote", json=body, headers={"X-Entity-Id": "E-other"}
    )
    assert denied.status_code == 403
    assert denied.json() == {
        "error": "Forbidden",
        "code": "PERM_DENIED",
        "message": "not allowed to promote artifact",
    }
    copied = await client.post(
        f"/rooms/{ROOM}/artifacts/promote", json=body, headers={"X-Entity-Id": "E-orch"}
    )
    assert copied.status_code == 201
    assert copied.headers["location"] == f"/rooms/{ROOM}/artifacts/final.md"
    manifest = copied.json()["manifest"]
    assert manifest["parents"] == [_sha(b"draft")]
    assert manifest["origin"]["entity"] == "E-writer"
    assert (manifest["type"], manifest["promoted"]) == ("text/markdown", True)
    again = await client.post(
        f"/rooms/{ROOM}/artifacts/promote", json=body, headers={"X-Entity-Id": "E-writer"}
    )
    assert (again.status_code, again.json()) == (200, copied.json())
    assert (await client.get(f"/rooms/{ROOM}/artifacts/final.md")).content == b"draft"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{nope", 400, "Body must be valid JSON"),
        (b"[1]", 400, "Body must be a JSON object"),
        (b"{}", 400, "name is required"),
        (b'{"fromEntity":"../../room-other/entities/E-x","name":"a"}', 400, "fromEntity must match pattern"),
        (b'{"name":"a","as":5}', 400, "as must be a string"),
        (b'{"name":"a","metadata":[]}', 400, "metadata must be a JSON object"),
        (b'{"fromEntity":"E-nobody","name":"a"}', 404, "Artifact not found in entity workspace"),
        (b'{"FROMENTITY":"E-nobody","NAME":"a"}', 404, "Artifact not found in entity workspace"),
    ],
)
async def test_promote_errors(client: httpx.AsyncClient, body: bytes, status: int, message: str) -> None:
    answer = await client.post(
        f"/rooms/{ROOM}/artifacts/promote", content=body, headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == status
    expected_error = "InvalidPromoteRequest" if status == 400 else "ArtifactNotFound"
    assert (
        answer.json() == {"error": expected_error, "message": message} or message in answer.json()["message"]
    )
    assert answer.json()["error"] == expected_error


async def test_entity_workspaces_are_private(client: httpx.AsyncClient) -> None:
    await _join(client, "E-alice")
    await _join(client, "E-bob")
    assert (await upload_artifact(client, ROOM, "secret", b"s", entity="E-alice")).status_code == 201
    path = f"/rooms/{ROOM}/entities/E-alice/artifacts"
    as_bob = {"X-Entity-Id": "E-bob"}
    for method, url in [("GET", path), ("GET", f"{path}/secret")]:
        denied = await client.request(method, url, headers=as_bob)
        assert denied.status_code == 403
        assert denied.json() == {
            "error": "Forbidden",
            "code": "PERM_DENIED",
            "message": "not allowed to access workspace",
        }
    anonymous = await client.get(path)
    assert anonymous.json() == {
        "error": "Unauthorized",
        "code": "AUTH_REQUIRED",
        "message": "X-Entity-Id header is required",
    }
    stranger = await client.get(path, headers={"X-Entity-Id": "E-ghost"})
    assert (stranger.status_code, stranger.json()["code"]) == (403, "PERM_DENIED")
    mine = await client.get(path, headers={"X-Entity-Id": "E-alice"})
    assert [m.name for m in ManifestList.model_validate(mine.json()).items] == ["secret"]
    assert (await client.get(f"{path}/secret", headers={"X-Entity-Id": "E-alice"})).content == b"s"
    assert await _state_artifacts(client) == []


async def test_origin_cannot_be_spoofed(client: httpx.AsyncClient) -> None:
    await _join(client, "E-alice")
    spoof = await upload_artifact(client, ROOM, "x", b"x", parts={"entityId": "E-alice"})
    assert (spoof.status_code, spoof.json()["code"]) == (403, "PERM_DENIED")
    files = {
        "spec": (None, json.dumps({"name": "y", "type": "t"})),
        "data": ("y", b"y"),
        "entityId": (None, "E-alice"),
    }
    own = await client.post(f"/rooms/{ROOM}/artifacts", files=files, headers={"X-Entity-Id": "E-alice"})
    assert own.status_code == 201
    assert own.json()["manifest"]["origin"]["entity"] == "E-alice"


async def test_list_filters_and_reference_errors(client: httpx.AsyncClient) -> None:
    await _join(client, "E-alice")
    await upload_artifact(client, ROOM, "alpha", b"a", type="doc")
    await upload_artifact(client, ROOM, "beta", b"b", type="image")
    files = {
        "spec": (None, json.dumps({"name": "alpine", "type": "doc"})),
        "data": ("x", b"c"),
        "port": (None, "text.generate"),
    }
    assert (
        await client.post(f"/rooms/{ROOM}/artifacts", files=files, headers={"X-Entity-Id": "E-alice"})
    ).status_code == 201

    async def names(**params: Any) -> list[str]:
        answer = await client.get(f"/rooms/{ROOM}/artifacts", params=params)
        assert answer.status_code == 200
        return [m["name"] for m in answer.json()["items"]]

    assert await names() == ["alpine", "beta", "alpha"]
    assert await names(prefix="AL") == ["alpine", "alpha"]
    assert await names(type="DOC") == ["alpine", "alpha"]
    assert await names(entity="e-alice") == ["alpine"]
    assert await names(limit=1, offset=1) == ["beta"]
    assert await names(since="2000-01-01T00:00:00") == ["alpine", "beta", "alpha"]
    assert await names(since="2999-01-01T00:00:00Z") == []
    for params, error, message in [
        ({"since": "soon"}, "InvalidSince", "since must be an ISO datetime"),
        ({"limit": "-1"}, "InvalidLimit", "limit must be a non-negative integer"),
        ({"offset": "x"}, "InvalidOffset", "offset must be a non-negative integer"),
    ]:
        answer = await client.get(f"/rooms/{ROOM}/artifacts", params=params)
        assert (answer.status_code, answer.json()) == (400, {"error": error, "message": message})


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "b0und") -> bytes:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in parts
    )
    return body + f"--{boundary}--\r\n".encode()


SPEC = ("spec", b'{"name":"a","type":"t"}')
NAME = "InvalidArtifactName"
RESERVED = ("spec", b'{"name":"manifest.json","type":"t"}')
BAD_WRITES = [
    (b"{}", "application/json", 400, "InvalidContentType", "multipart/form-data"),
    (_multipart([("data", b"x")]), None, 400, "MissingSpecOrData", "spec or data not provided"),
    (_multipart([SPEC]), None, 400, "MissingSpecOrData", "spec or data"),
    (_multipart([("spec", b"nope"), ("data", b"x")]), None, 400, "InvalidSpec", "spec must be valid JSON"),
    (_multipart([RESERVED, ("data", b"")]), None, 400, NAME, "is reserved"),
    (_multipart([("spec", b'{"name":"../x","type":"t"}'), ("data", b"x")]), None, 400, NAME, "path"),
    (_multipart([SPEC, ("data", b"x"), ("parents", b"{}")]), None, 400, "InvalidParents", "array of strings"),
    (_multipart([SPEC, ("data", b"x"), ("data", b"y")]), None, 400, "InvalidMultipart", "more than once"),
    (_multipart([SPEC, ("data", b"x"), ("port", b"Bad Port")]), None, 400, "InvalidPort", "port must match"),
    (b"--wrong\r\n", None, 400, "InvalidMultipart", "malformed multipart body"),
    (_multipart([SPEC, ("data", b"x")])[:-12], None, 400, "InvalidMultipart", "incomplete"),
    (_multipart([SPEC, ("data", b"x" * 2048)]), None, 413, "PayloadTooLarge", "upload limit"),
    (_multipart([("spec", b" " * 5000), ("data", b"x")]), None, 413, "PayloadTooLarge", "form part 'spec'"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "content_type", "status", "error", "words"), BAD_WRITES)
async def test_write_errors_leave_nothing_behind(
    app: FastAPI,
    client: httpx.AsyncClient,
    body: bytes,
    content_type: str | None,
    status: int,
    error: str,
    words: str,
) -> None:
    settings = app.state.roomserver.settings
    settings.max_upload_bytes, settings.max_form_field_bytes = 1024, 4096
    headers = {"Content-Type": content_type or "multipart/form-data; boundary=b0und"}
    answer = await client.post(f"/rooms/{ROOM}/artifacts", content=body, headers=headers)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert words in answer.json()["message"]
    assert await _state_artifacts(client) == []
    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert list((settings.data_dir / "blobs").iterdir()) == []


async def test_declared_content_length_over_the_limit_is_refused_before_reading(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.roomserver.settings.max_upload_bytes = 10
    headers = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(10**9)}
    answer = await client.post(f"/rooms/{ROOM}/artifacts", content=b"", headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (413, "PayloadTooLarge")


async def test_entity_artifact_limit_follows_the_room_policy(client: httpx.AsyncClient) -> None:
    await _join(client, "E-alice")
    await client.put(f"/rooms/{ROOM}/policies", json={"maxArtifactsPerEntity": 1})
    assert (await upload_artifact(client, ROOM, "one", b"1", entity="E-alice")).status_code == 201
    assert (await upload_artifact(client, ROOM, "one", b"2", entity="E-alice")).status_code == 201
    refused = await upload_artifact(client, ROOM, "two", b"2", entity="E-alice")
    assert (refused.status_code, refused.json()["error"]) == (409, "ArtifactLimitExceeded")


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        (f"/rooms/{ROOM}/artifacts/nothing", {}, 404, "ArtifactNotFound"),
        (f"/rooms/{ROOM}/artifacts/nothing/versions", {}, 404, "ArtifactNotFound"),
        (f"/rooms/{ROOM}/artifacts/manifest.json", {}, 400, "InvalidArtifactName"),
        (f"/rooms/{ROOM}/artifacts/thing", {"version": "0"}, 400, "InvalidVersion"),
        (f"/rooms/{ROOM}/artifacts/thing", {"version": "9"}, 404, "ArtifactNotFound"),
    ],
)
async def test_read_errors(
    client: httpx.AsyncClient, path: str, params: dict[str, str], status: int, error: str
) -> None:
    await upload_artifact(client, ROOM, "thing", b"t")
    answer = await client.get(path, params=params)
    assert (answer.status_code, answer.json()["error"]) == (status, error)


async def test_blank_or_unknown_member_headers_are_refused(client: httpx.AsyncClient) -> None:
    blank = await client.get(f"/rooms/{ROOM}/artifacts", headers={"X-Entity-Id": " "})
    assert (blank.status_code, blank.json()["code"]) == (401, "AUTH_REQUIRED")
    for value in ("E-ghost", "not-an-entity"):
        unknown = await upload_artifact(client, ROOM, "x", b"x", entity=value)
        assert (unknown.status_code, unknown.json()["message"]) == (
            403,
            "entity is not declared in this room",
        )
    await _join(client, "E-agent")
    promote = await client.post(
        f"/rooms/{ROOM}/artifacts/promote", json={"name": "x"}, headers={"X-Entity-Id": "E-agent"}
    )
    assert (promote.status_code, promote.json()["code"]) == (403, "PERM_DENIED")
