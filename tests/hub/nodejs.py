"""Run the hub's node interop script (`node/interop.mjs`, Microsoft's `@microsoft/signalr` pinned in
`node/package-lock.json`, installed by `make unit` with `npm ci`) against a real room server, on one
transport."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from tests.hub.conftest import ROOM
from tests.support.roomserver import RoomServerHandle

NODE_DIR = Path(__file__).parent / "node"


async def run_interop(server: RoomServerHandle, transport: str) -> str:
    """Run `interop.mjs` with the client forced to `transport` (an `HttpTransportType` name); its output.
    Fails the test when a step of the script failed."""
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
        "TRANSPORT": transport,
    }
    process = await asyncio.create_subprocess_exec(
        node,
        "interop.mjs",
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    raw, _ = await asyncio.wait_for(process.communicate(), 60)
    output = raw.decode(errors="replace")
    assert process.returncode == 0, output
    assert output.strip().endswith(f"interop ok ({transport})"), output
    return output
