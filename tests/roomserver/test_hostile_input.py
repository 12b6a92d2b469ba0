"""Hostile input with a valid token (issue 13): size limits on entity, artifact and policy fields, and the
former causes of 500 (deep JSON, `²` and huge numbers in query parameters and headers, metadata the
encoder cannot write back). Each is one clear 400 naming the field, and nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomserver.domain.artifacts import ArtifactDraft
from roomserver.storage import repository
from roomserver.storage.repository import ROOM_WORKSPACE
from tests.support.roomserver import running_roomserver, upload_artifact

ROOM = "room-hostile-1"


def _nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {}
    inner = document
    for _ in range(depth - 1):
        inner["a"] = {}
        inner = inner["a"]
    return document


async def _revision(client: httpx.AsyncClient) -> int:
    revision: int = (await client.get(f"/room/{ROOM}/state")).json()["revision"]
    return revision


# --- entity fields ----------------------------------------------------------------------------------------

ENTITY = {"entityId": "E-agent-a", "kind": "agent"}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"displayName": "x" * 257}, "entity.displayName must be at most 256 characters"),
        ({"displayName": "x" * 500_000}, "entity.displayName must be at most 256 characters"),
        ({"ownerUserId": "u" * 257}, "entity.ownerUserId must be at most 256 characters"),
        ({"capabilities": [f"cap{i}" for i in range(65)]}, "entity.capabilities must have at most 64 items"),
        ({"capabilities": ["a" * 129]}, "entity.capabilities[0] must be at most 128 characters"),
        ({"policy": {"env_whitelist": ["V"] * 65}}, "entity.policy.env_whitelist must have at most 64 items"),
        ({"policy": {"env_whitelist": ["V" * 257]}}, "entity.policy.env_whitelist[0] must be at most 256"),
        ({"policy": {"scopes": ["s"] * 65}}, "entity.policy.scopes must have at most 64 items"),
        ({"policy": {"scopes": ["s" * 129]}}, "entity.policy.scopes[0] must be at most 128 characters"),
    ],
)
@pytest.mark.parametrize("route", ["join", "put"])
async def test_entity_fields_have_size_limits(
    client: httpx.AsyncClient, extra: dict[str, Any], words: str, route: str
) -> None:
    body = {**ENTITY, **extra}
    if route == "join":
        answer = await client.post(f"/room/{ROOM}/join", json=body)
    else:
        answer = await client.put(f"/room/{ROOM}/entities/E-agent-a", json=body)
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_ENTITY_SPEC")
    assert words in answer.json()["message"]
    assert len(answer.text) < 1024  # the error never echoes the oversized value
    assert await _revision(client) == 0


async def test_entities_at_the_limits_are_accepted(client: httpx.AsyncClient) -> None:
    body = {
        **ENTITY,
        "displayName": "x" * 256,
        "capabilities": [f"cap{i}" for i in range(64)],
        "policy": {"env_whitelist": ["V" * 256] * 64, "scopes": ["s" * 128] * 64},
    }
    answer = await client.post(f"/room/{ROOM}/join", json=body)
    assert answer.status_code == 201, answer.text


async def test_a_lone_surrogate_in_an_entity_is_refused_not_a_500(client: httpx.AsyncClient) -> None:
    raw = b'{"entityId":"E-agent-a","kind":"agent","displayName":"\\ud800"}'
    answer = await client.post(
        f"/room/{ROOM}/join", content=raw, headers={"Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_ENTITY_SPEC")
    assert "entity.displayName must be valid Unicode text" in answer.json()["message"]
    assert await _revision(client) == 0


@pytest.mark.parametrize("value", [1_000_001, 10**30, -1])
async def test_policy_numbers_are_bounded(client: httpx.AsyncClient, value: int) -> None:
    answer = await client.put(f"/rooms/{ROOM}/policies", json={"maxArtifactsPerEntity": value})
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_POLICIES")
    assert "maxArtifactsPerEntity must be an integer from 0 to 1000000" in answer.json()["message"]
    assert (await client.get(f"/rooms/{ROOM}/policies")).json()["maxArtifactsPerEntity"] == 100


async def test_a_deep_json_body_is_400_not_500(client: httpx.AsyncClient) -> None:
    for path, method in ((f"/room/{ROOM}/join", "POST"), (f"/rooms/{ROOM}/policies", "PUT")):
        answer = await client.request(
            method, path, content=b"[" * 100_000, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, path
    assert await _revision(client) == 0


# --- artifact writes --------------------------------------------------------------------------------------


def _spec(**fields: Any) -> str:
    return json.dumps({"name": "doc", "type": "document", **fields})


@pytest.mark.parametrize(
    ("parts", "error", "words"),
    [
        ({"spec": "[" * 100_000}, "InvalidSpec", "spec is nested deeper than 64 levels"),
        ({"spec": _spec(metadata=_nested(300))}, "InvalidSpec", "spec is nested deeper than 64 levels"),
        (
            {"spec": _spec(metadata=_nested(33))},
            "InvalidSpec",
            "spec.metadata is nested deeper than 32 levels",
        ),
        ({"spec": _spec(metadata={"x": "y" * 70_000})}, "InvalidSpec", "spec.metadata must be at most 65536"),
        ({"spec": _spec(metadata={"n": 1}).replace("1", "NaN")}, "InvalidSpec", "NaN is not a JSON number"),
        ({"spec": _spec(metadata={"n": 1}).replace("1", "1e999")}, "InvalidSpec", "outside the range"),
        (
            {"spec": _spec(metadata={"n": 1}).replace("1", "9" * 5000)},
            "InvalidSpec",
            "spec must be valid JSON",
        ),
        ({"spec": _spec(metadata={"s": "x"}).replace('"x"', '"\\udc00"')}, "InvalidSpec", "valid Unicode"),
        ({"spec": _spec(tags=[f"t{i}" for i in range(65)])}, "InvalidSpec", "spec.tags must have at most 64"),
        (
            {"spec": _spec(), "parents": "[" * 100_000},
            "InvalidParents",
            "parents must be an array of strings",
        ),
        ({"spec": _spec(), "parents": json.dumps(["p"] * 65)}, "InvalidParents", "at most 64 items"),
        ({"spec": _spec(), "parents": json.dumps(["p" * 257])}, "InvalidParents", "at most 256 characters"),
        ({"spec": _spec(), "port": "a" * 129}, "InvalidPort", "port must be at most 128 characters"),
    ],
)
async def test_bad_upload_parts_are_400_and_store_nothing(
    app: FastAPI, client: httpx.AsyncClient, parts: dict[str, str], error: str, words: str
) -> None:
    files: dict[str, Any] = {key: (None, value) for key, value in parts.items()}
    files["data"] = ("doc", b"bytes")
    answer = await client.post(f"/rooms/{ROOM}/artifacts", files=files)
    assert (answer.status_code, answer.json()["error"]) == (400, error), answer.text
    assert words in answer.json()["message"]
    assert await _revision(client) == 0
    data_dir = app.state.roomserver.settings.data_dir
    assert list((data_dir / "blobs").iterdir()) == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 100_000, "Body is nested deeper than 64 levels"),
        (json.dumps({"name": "doc", "metadata": _nested(300)}).encode(), "Body is nested deeper than 64"),
        (json.dumps({"name": "doc", "metadata": _nested(33)}).encode(), "metadata is nested deeper than 32"),
        (b'{"name":"doc","metadata":{"n":NaN}}', "NaN is not a JSON number"),
        (b'{"name":"\\ud800"}', "valid Unicode"),
    ],
)
async def test_bad_promote_bodies_are_400(client: httpx.AsyncClient, body: bytes, words: str) -> None:
    assert (await upload_artifact(client, ROOM, "doc", b"v1")).status_code == 201
    before = await _revision(client)
    answer = await client.post(
        f"/rooms/{ROOM}/artifacts/promote", content=body, headers={"Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "InvalidPromoteRequest")
    assert words in answer.json()["message"]
    assert await _revision(client) == before


async def test_metadata_within_the_limits_round_trips(client: httpx.AsyncClient) -> None:
    metadata = {"deep": _nested(31), "text": "é" * 100}
    files = {"spec": (None, _spec(metadata=metadata)), "data": ("doc", b"bytes")}
    assert (await client.post(f"/rooms/{ROOM}/artifacts", files=files)).status_code == 201
    listed = (await client.get(f"/rooms/{ROOM}/artifacts")).json()["items"]
    assert listed[0]["metadata"] == metadata


async def test_rows_stored_before_the_depth_limit_are_still_read(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A 300-deep metadata stored by an earlier server: its list and versions answer 200, also after a
    delete (they answered 500 for every call)."""
    deep = _nested(300)
    draft = ArtifactDraft(name="old", type="document", workspace="room", metadata=deep)
    await app.state.roomserver.db.run(repository.write_artifact, ROOM, ROOM_WORKSPACE, draft, "0" * 64, 0)
    listed = await client.get(f"/rooms/{ROOM}/artifacts")
    assert listed.status_code == 200
    assert listed.json()["items"][0]["metadata"] == deep
    assert (await client.get(f"/rooms/{ROOM}/artifacts/old/versions")).status_code == 200
    assert (await client.delete(f"/rooms/{ROOM}/artifacts/old")).status_code == 204
    versions = await client.get(f"/rooms/{ROOM}/artifacts/old/versions")
    assert (versions.status_code, versions.json()["deleted"]) == (200, True)


# --- numbers in query parameters and headers --------------------------------------------------------------

HUGE = "9" * 30


@pytest.mark.parametrize(
    ("query", "error", "words"),
    [
        ("version=²", "InvalidVersion", "version must be a positive integer"),
        ("version=١", "InvalidVersion", "version must be a positive integer"),
        ("version=0", "InvalidVersion", "version must be a positive integer"),
        (f"version={HUGE}", "InvalidVersion", "version must be at most 9223372036854775807"),
        (f"version={'9' * 5000}", "InvalidVersion", "version must be at most"),
    ],
)
@pytest.mark.parametrize("workspace", ["room", "entity"])
async def test_bad_versions_are_400(
    client: httpx.AsyncClient, query: str, error: str, words: str, workspace: str
) -> None:
    await client.post(f"/room/{ROOM}/join", json=ENTITY)
    base = f"/rooms/{ROOM}/artifacts/doc"
    headers = {}
    if workspace == "entity":
        base, headers = f"/rooms/{ROOM}/entities/E-agent-a/artifacts/doc", {"X-Entity-Id": "E-agent-a"}
    answer = await client.get(f"{base}?{query}", headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (400, error)
    assert words in answer.json()["message"]


async def test_the_largest_version_number_is_simply_not_found(client: httpx.AsyncClient) -> None:
    assert (await upload_artifact(client, ROOM, "doc", b"v1")).status_code == 201
    answer = await client.get(f"/rooms/{ROOM}/artifacts/doc?version={2**63 - 1}")
    assert (answer.status_code, answer.json()["error"]) == (404, "ArtifactNotFound")


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["²", "-1", "1.5", HUGE, "9" * 5000])
async def test_bad_paging_is_400(client: httpx.AsyncClient, name: str, value: str) -> None:
    answer = await client.get(f"/rooms/{ROOM}/artifacts", params={name: value})
    assert (answer.status_code, answer.json()["error"]) == (400, f"Invalid{name.title()}")
    assert answer.json()["message"].startswith(f"{name} must be")


@pytest.mark.parametrize("value", ["²", "-1", "abc", HUGE, "9" * 5000, "1 2"])
async def test_bad_last_event_ids_are_400(tmp_path: Path, value: str) -> None:
    async with (
        running_roomserver(tmp_path / "data") as server,
        httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as http,
    ):
        answer = await http.get("/events", headers={"Last-Event-ID": value.encode()})
        assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_LAST_EVENT_ID")
        assert "Last-Event-ID must be" in answer.json()["message"]


@pytest.mark.parametrize(
    "since",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9" * 5000, "²⁰²⁶-01-01", "2026-13-01"],
)
async def test_bad_since_is_400(client: httpx.AsyncClient, since: str) -> None:
    answer = await client.get(f"/rooms/{ROOM}/artifacts", params={"since": since})
    assert (answer.status_code, answer.json()["error"]) == (400, "InvalidSince")
