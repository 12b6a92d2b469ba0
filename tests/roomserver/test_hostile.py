"""Hostile callers of the room server (issue 13), in-process over ASGI: bodies authorised and capped before
they are read, identity (`X-Entity-Id`, promote from a private workspace), one room's data from another,
and path traversal. Input bounds and the former causes of 500 are in `test_hostile_input.py`; slow clients
and real sockets in `test_slow_clients.py`."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from roomcontract.scopes import ALL_SCOPES, ARTIFACTS_WRITE, ENTITIES_WRITE, READ
from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.support.roomserver import upload_artifact

ROOM = "room-hostile-1"
OTHER = "room-hostile-2"
MIB = 1024 * 1024


class BodyProbe:
    """A request body streamed in chunks, counting what the server pulled from it."""

    def __init__(self, size: int, *, chunk: int = 64 * 1024, fill: bytes = b"{"):
        self.size, self.chunk, self.fill = size, chunk, fill
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.size:
            piece = self.fill * min(self.chunk, self.size - self.pulled)
            self.pulled += len(piece)
            yield piece


def _tokens_file(folder: Path, scopes_by_name: dict[str, tuple[str, ...]]) -> tuple[Path, dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    tokens = {name: secrets.token_urlsafe(24) for name in scopes_by_name}
    document = {
        "tokens": [
            {
                "name": name,
                "sha256": hashlib.sha256(tokens[name].encode()).hexdigest(),
                "scopes": list(scopes),
            }
            for name, scopes in scopes_by_name.items()
        ]
    }
    path = folder / "tokens.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path, tokens


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """A room server whose `test` token may read and write entities and artifacts but is not `room:admin`;
    `app.state.admin` holds every scope, `app.state.reader` only `room:read`."""
    tokens_file, tokens = _tokens_file(
        tmp_path / "data",
        {"test": (READ, ENTITIES_WRITE, ARTIFACTS_WRITE), "admin": ALL_SCOPES, "reader": (READ,)},
    )
    application = create_app(ServerSettings(data_dir=tmp_path / "data", tokens_file=tokens_file))
    application.state.token, application.state.admin = tokens["test"], tokens["admin"]
    application.state.reader = tokens["reader"]
    async with application.router.lifespan_context(application):
        yield application


def _client(app: FastAPI, token: str | None) -> httpx.AsyncClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rs", headers=headers)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, app.state.token) as http:
        yield http


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, app.state.admin) as http:
        yield http


async def _join(client: httpx.AsyncClient, room: str, entity: str, kind: str = "agent") -> None:
    answer = await client.post(f"/room/{room}/join", json={"entityId": entity, "kind": kind})
    assert answer.status_code == 201, answer.text


async def _revision(client: httpx.AsyncClient, room: str = ROOM) -> int:
    revision: int = (await client.get(f"/room/{room}/state")).json()["revision"]
    return revision


BODY_ROUTES = [
    ("POST", f"/room/{ROOM}/join", "room:entities:write"),
    ("PUT", f"/room/{ROOM}/entities/E-agent-a", "room:entities:write"),
    ("PUT", f"/rooms/{ROOM}/policies", "room:policies:write"),
    ("PUT", f"/rooms/{ROOM}/manager", "room:admin"),
    ("POST", "/admin/mcp/load", "room:admin"),
    ("POST", f"/rooms/{ROOM}/artifacts", "room:artifacts:write"),
    ("POST", f"/rooms/{ROOM}/entities/E-agent-a/artifacts", "room:artifacts:write"),
    ("POST", f"/rooms/{ROOM}/artifacts/promote", "room:artifacts:write"),
]


@pytest.mark.parametrize(("method", "path", "scope"), BODY_ROUTES)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("token", [None, "not-a-known-token-value"], ids=["no-token", "unknown-token"])
async def test_an_unauthenticated_body_is_401_and_never_read(
    app: FastAPI, method: str, path: str, scope: str, declared: bool, token: str | None
) -> None:
    probe = BodyProbe(8 * MIB)  # invalid JSON and invalid multipart, far over every cap
    headers = {"Content-Length": str(probe.size)} if declared else {}
    async with _client(app, token) as http:
        answer = await http.request(method, path, content=probe, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (401, "AUTH_REQUIRED")
    assert answer.headers["connection"] == "close"
    assert probe.pulled == 0


@pytest.mark.parametrize(("method", "path", "scope"), BODY_ROUTES)
async def test_a_token_lacking_the_scope_is_403_before_its_body_is_read(
    app: FastAPI, method: str, path: str, scope: str
) -> None:
    probe = BodyProbe(64, fill=b"[")  # malformed JSON: 400 if it were read first
    async with _client(app, app.state.reader) as http:
        answer = await http.request(method, path, content=probe)
    assert (answer.status_code, answer.json()["code"]) == (403, "INSUFFICIENT_SCOPE")
    assert scope in answer.json()["message"]
    assert probe.pulled == 0


@pytest.mark.parametrize(("method", "path", "scope"), BODY_ROUTES)
async def test_a_declared_length_over_the_cap_is_413_before_reading(
    app: FastAPI, admin: httpx.AsyncClient, method: str, path: str, scope: str
) -> None:
    settings = app.state.roomserver.settings
    await _join(admin, ROOM, "E-agent-a")
    before = await _revision(admin)
    upload = path.endswith("/artifacts")
    cap = settings.max_upload_body_bytes if upload else settings.max_body_bytes
    probe = BodyProbe(cap + 1)
    headers = {"Content-Length": str(probe.size), "X-Entity-Id": "E-agent-a"}
    if upload:
        headers["Content-Type"] = "multipart/form-data; boundary=b0und"
    answer = await admin.request(method, path, content=probe, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert str(cap) in answer.json()["message"]
    assert answer.headers["connection"] == "close"
    assert probe.pulled == 0
    assert await _revision(admin) == before


@pytest.mark.parametrize(
    ("method", "path", "scope"), [r for r in BODY_ROUTES if not r[1].endswith("/artifacts")]
)
async def test_a_chunked_body_is_cut_off_at_the_cap(
    app: FastAPI, admin: httpx.AsyncClient, method: str, path: str, scope: str
) -> None:
    settings = app.state.roomserver.settings
    probe = BodyProbe(8 * settings.max_body_bytes, fill=b" ")
    answer = await admin.request(method, path, content=probe)
    assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert probe.pulled <= settings.max_body_bytes + probe.chunk
    assert await _revision(admin) == 0


async def test_a_chunked_upload_is_cut_off_at_its_own_larger_cap(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    settings = app.state.roomserver.settings
    settings.max_upload_bytes, settings.max_form_field_bytes = 2 * MIB, 1024
    boundary = b"b0und"
    head = (
        b'--b0und\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{"name":"big","type":"t"}\r\n'
        b'--b0und\r\nContent-Disposition: form-data; name="data"; filename="d"\r\n\r\n'
    )
    probe = BodyProbe(8 * MIB, fill=b"x")

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in probe:
            yield chunk

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}
    answer = await admin.post(f"/rooms/{ROOM}/artifacts", content=body(), headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"] == "PayloadTooLarge"
    assert 2 * MIB < probe.pulled <= settings.max_upload_body_bytes + probe.chunk
    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert list((settings.data_dir / "blobs").iterdir()) == []


async def test_an_upload_within_its_cap_is_not_held_to_the_small_body_cap(
    app: FastAPI, admin: httpx.AsyncClient
) -> None:
    app.state.roomserver.settings.max_body_bytes = 1024
    answer = await upload_artifact(admin, ROOM, "roomy", b"x" * 4096)
    assert answer.status_code == 201


# --- identity ---------------------------------------------------------------------------------------------


async def _private_secret(client: httpx.AsyncClient, room: str = ROOM) -> None:
    await _join(client, room, "E-agent-a")
    written = await upload_artifact(client, room, "secret1", b"private bytes", entity="E-agent-a")
    assert written.status_code == 201, written.text


async def test_a_service_token_cannot_copy_a_private_artifact_into_the_room(
    client: httpx.AsyncClient,
) -> None:
    await _private_secret(client)
    before = await _revision(client)
    body = {"fromEntity": "E-agent-a", "name": "secret1", "as": "leak"}
    answer = await client.post(f"/rooms/{ROOM}/artifacts/promote", json=body)
    assert (answer.status_code, answer.json()["code"]) == (403, "PERM_DENIED")
    assert "room:admin" in answer.json()["message"]
    assert (await client.get(f"/rooms/{ROOM}/artifacts/leak")).status_code == 404
    assert await _revision(client) == before


async def test_another_member_cannot_copy_it_but_the_owner_and_an_admin_can(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await _private_secret(client)
    await _join(client, ROOM, "E-agent-b")
    path = f"/rooms/{ROOM}/artifacts/promote"
    body = {"fromEntity": "E-agent-a", "name": "secret1", "as": "shared"}
    refused = await client.post(path, json=body, headers={"X-Entity-Id": "E-agent-b"})
    assert (refused.status_code, refused.json()["code"]) == (403, "PERM_DENIED")
    by_owner = await client.post(path, json=body, headers={"X-Entity-Id": "E-agent-a"})
    assert by_owner.status_code == 201
    by_admin = await admin.post(path, json={**body, "as": "shared-too"})
    assert by_admin.status_code == 201
    assert by_admin.json()["manifest"]["createdBy"] == "admin"


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("DELETE", ""), ("GET", "/hash"), ("GET", "/versions"), ("GET", ""), ("GET", "?version=1")],
)
@pytest.mark.parametrize("entity", ["E-stranger", "E-agent-a", "not-an-entity", "../E-agent-a"])
async def test_every_artifact_route_refuses_an_entity_not_declared_in_the_room(
    client: httpx.AsyncClient, method: str, suffix: str, entity: str
) -> None:
    await _join(client, OTHER, "E-agent-a")  # declared, but in another room
    assert (await upload_artifact(client, ROOM, "plan", b"v1")).status_code == 201
    answer = await client.request(
        method, f"/rooms/{ROOM}/artifacts/plan{suffix}", headers={"X-Entity-Id": entity}
    )
    assert (answer.status_code, answer.json()["code"]) == (403, "PERM_DENIED")
    state = (await client.get(f"/room/{ROOM}/state")).json()
    assert [a["name"] for a in state["artifacts"]] == ["plan"]


async def test_a_declared_member_may_delete_a_room_artifact(client: httpx.AsyncClient) -> None:
    await _join(client, ROOM, "E-agent-a")
    assert (await upload_artifact(client, ROOM, "plan", b"v1")).status_code == 201
    deleted = await client.delete(f"/rooms/{ROOM}/artifacts/plan", headers={"X-Entity-Id": "E-agent-a"})
    assert deleted.status_code == 204


# --- one room's data from another -------------------------------------------------------------------------


async def test_one_room_never_serves_another_rooms_artifacts(
    client: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await _private_secret(client, ROOM)
    assert (await upload_artifact(client, ROOM, "room-plan", b"room bytes")).status_code == 201
    me = {"X-Entity-Id": "E-agent-a"}
    # The member of ROOM is nobody in OTHER ...
    undeclared = await client.get(f"/rooms/{OTHER}/entities/E-agent-a/artifacts/secret1", headers=me)
    assert undeclared.status_code == 403
    # ... and once declared there too, its workspace in OTHER is its own, empty one.
    await _join(client, OTHER, "E-agent-a")
    for path in (
        f"/rooms/{OTHER}/entities/E-agent-a/artifacts/secret1",
        f"/rooms/{OTHER}/artifacts/room-plan",
        f"/rooms/{OTHER}/artifacts/room-plan/hash",
        f"/rooms/{OTHER}/artifacts/room-plan/versions",
        f"/rooms/{OTHER}/artifacts/room-plan?version=1",
    ):
        answer = await client.get(path, headers=me)
        assert (answer.status_code, answer.json()["error"]) == (404, "ArtifactNotFound"), path
    listed = await client.get(f"/rooms/{OTHER}/entities/E-agent-a/artifacts", headers=me)
    assert listed.json() == {"items": []}
    assert (await client.get(f"/rooms/{OTHER}/artifacts")).json() == {"items": []}
    copied = await admin.post(
        f"/rooms/{OTHER}/artifacts/promote", json={"fromEntity": "E-agent-a", "name": "secret1"}
    )
    assert copied.status_code == 404
    assert (await client.delete(f"/rooms/{OTHER}/artifacts/room-plan")).status_code == 404
    state = (await client.get(f"/room/{OTHER}/state")).json()
    assert state["artifacts"] == []
    assert [e["id"] for e in state["entities"]] == ["E-agent-a"]


# --- path traversal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "..%2F..%2Fblobs",
        "%2e%2e",
        "..%5Cx",
        "a%2F..%2F..%2Froomserver.db",
        "manifest.json",
        "x.tmp",
        "%00",
    ],
)
async def test_traversal_through_artifact_names_is_refused(client: httpx.AsyncClient, name: str) -> None:
    await _private_secret(client)
    me = {"X-Entity-Id": "E-agent-a"}
    for path in (
        f"/rooms/{ROOM}/artifacts/{name}",
        f"/rooms/{ROOM}/artifacts/{name}/versions",
        f"/rooms/{ROOM}/entities/E-agent-a/artifacts/{name}",
    ):
        answer = await client.get(path, headers=me)
        assert answer.status_code in (400, 404), (path, answer.status_code)
        assert b"private bytes" not in answer.content


@pytest.mark.parametrize(
    "from_entity", ["../E-agent-a", "E-agent-a/../E-agent-a", "E-agent-a\\..", "..", "E-agent-a%2F.."]
)
async def test_traversal_through_from_entity_is_refused(admin: httpx.AsyncClient, from_entity: str) -> None:
    await _private_secret(admin)
    answer = await admin.post(
        f"/rooms/{ROOM}/artifacts/promote", json={"fromEntity": from_entity, "name": "secret1"}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "InvalidPromoteRequest")
    assert "fromEntity must match pattern" in answer.json()["message"]


@pytest.mark.parametrize("target", ["../leak", "..", "a/b", "manifest.json"])
async def test_traversal_through_the_promoted_name_is_refused(admin: httpx.AsyncClient, target: str) -> None:
    await _private_secret(admin)
    answer = await admin.post(
        f"/rooms/{ROOM}/artifacts/promote", json={"fromEntity": "E-agent-a", "name": "secret1", "as": target}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "InvalidArtifactName")
    assert (await admin.get(f"/room/{ROOM}/state")).json()["artifacts"] == []
