"""Fixtures: a real room server on a random 127.0.0.1 port, and an HTTP client with its token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.roomserver import RoomServerHandle, running_roomserver

ROOM = "room-test-1"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    async with running_roomserver(tmp_path / "data") as handle:
        yield handle


@pytest.fixture
async def rest(server: RoomServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        yield client
