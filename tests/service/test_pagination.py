"""`GET /status` and `GET /rooms` in pages (cursor + limit) on the real operator: the reference's /status
shape on every page, every room exactly once in room-id order, the default page, bad parameters named."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from roomoperator.cli import app
from tests.service.conftest import Operator, operator_settings, room_spec, running_operator
from tests.support.roomserver import RoomServerHandle

ROOMS = [f"room-page-{letter}x" for letter in "gbfadce"]
REFERENCE_KEYS = {
    "version",
    "health",
    "healthStatus",
    "rooms",
    "queuedRequests",
    "activeReconciliations",
    "timestamp",
}


async def _apply_all(http: httpx.AsyncClient) -> None:
    for room_id in ROOMS:
        answer = await http.post("/apply", json=room_spec(room_id, entities=1))
        assert answer.status_code == 200, answer.text


async def _walk(http: httpx.AsyncClient, path: str, key: str, limit: int) -> list[list[str]]:
    """Every page of `path` from the first, by `nextCursor`: the room ids of each."""
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        answer = await http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if path == "/status":
            assert body.keys() >= REFERENCE_KEYS
            assert body["totalRooms"] == len(ROOMS)
        else:
            assert body["total"] == len(ROOMS)
        pages.append([room["roomId"] for room in body[key]])
        if body["nextCursor"] is None:
            return pages
        assert len(pages) <= len(ROOMS), "the cursor does not advance"
        params = {"limit": limit, "cursor": body["nextCursor"]}


async def test_pages_cover_every_room_once_in_order(operator: Operator) -> None:
    await _apply_all(operator.http)
    for path, key in (("/status", "rooms"), ("/rooms", "items")):
        pages = await _walk(operator.http, path, key, limit=3)
        assert [len(page) for page in pages] == [3, 3, 1]
        assert [room for page in pages for room in page] == sorted(ROOMS)
        whole = await _walk(operator.http, path, key, limit=len(ROOMS))
        assert whole == [sorted(ROOMS)]


async def test_the_default_page_holds_a_small_fleet_whole(operator: Operator) -> None:
    await _apply_all(operator.http)
    body = (await operator.http.get("/status")).json()
    assert body.keys() >= REFERENCE_KEYS
    assert sorted(room["roomId"] for room in body["rooms"]) == sorted(ROOMS)
    assert body["nextCursor"] is None
    assert all(room["managed"] for room in body["rooms"])
    after_last = (await operator.http.get("/rooms", params={"cursor": max(ROOMS)})).json()
    assert (after_last["items"], after_last["nextCursor"]) == ([], None)


async def test_bad_page_parameters_are_400_naming_them(operator: Operator) -> None:
    for path in ("/status", "/rooms"):
        for params in ({"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"cursor": "x" * 257}):
            answer = await operator.http.get(path, params=params)
            assert answer.status_code == 400, (path, params, answer.text)
            (name,) = params
            assert any(error.startswith(f"query.{name}") for error in answer.json()["errors"]), answer.text


async def test_roomop_status_follows_the_pages(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    settings = operator_settings(roomserver, tmp_path, api={"page_size": 3})
    async with running_operator(settings) as operator:
        await _apply_all(operator.http)
        assert len((await operator.http.get("/status")).json()["rooms"]) == 3
        shown = await asyncio.to_thread(
            CliRunner().invoke, app, ["status", "--operator", operator.url, "-o", "json"]
        )
    assert shown.exit_code == 0, shown.output
    assert sorted(room["roomId"] for room in json.loads(shown.output)["rooms"]) == sorted(ROOMS)
