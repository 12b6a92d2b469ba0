"""Client test fixtures: the real room server on a random 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.roomserver import RoomServerHandle, running_roomserver


@pytest.fixture
async def roomserver(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    async with running_roomserver(tmp_path / "roomserver") as handle:
        yield handle
