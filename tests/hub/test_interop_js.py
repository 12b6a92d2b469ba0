"""Interop with Microsoft's official JavaScript client (`@microsoft/signalr`, pinned in
`tests/hub/node/package-lock.json`, installed by `make unit` with `npm ci`), run by node against a real
room server: negotiate, token, Join, ListEntities, SendToRoom with `message` and `event` on a second
client, a denied command with the reference's error text, a direct message, Leave."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from tests.hub.conftest import ROOM
from tests.support.roomserver import RoomServerHandle

NODE_DIR = Path(__file__).parent / "node"


async def test_the_official_javascript_client_speaks_to_the_hub_unchanged(server: RoomServerHandle) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the JavaScript interop test"
    assert (NODE_DIR / "node_modules" / "@microsoft" / "signalr").is_dir(), (
        "run `make unit` (or `npm ci --prefix tests/hub/node`) to install @microsoft/signalr"
    )
    env = {
        **os.environ,
        "HUB_URL": f"{server.url}/room",
        "TOKEN_A": server.token,
        "TOKEN_B": server.admin_token,
        "ROOM": ROOM,
    }
    process = await asyncio.create_subprocess_exec(
        node,
        "interop.mjs",
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode(errors="replace")
    assert output.decode().strip().endswith("interop ok")
