"""Fixtures: a real room server in the test's loop, and an authenticated httpx client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.roomserver import RoomServerHandle, running_roomserver


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    async with running_roomserver(tmp_path / "data") as handle:
        yield handle


@pytest.fixture
async def client(server: RoomServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as http:
        yield http
