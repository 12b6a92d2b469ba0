"""Tokens stay secret (issue 13): `roomop up` in a temporary data folder with its room server child, a
GitOps folder, real applies and failures (refused tokens, an invalid spec, a guardrail refusal), SSE and
the room server's REST with each token; then every file under the data folder, and everything both
processes wrote to stdout and stderr, is scanned for each token's bytes. The credentials file (mode
0600) is the only place any token may be.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.service.conftest import room_spec
from tests.support.roomserver import start_roomserver_process
from tests.support.servers import free_port

pytestmark = pytest.mark.slow

ROOM = "room-secrets-1"
OTHER = "room-secrets-2"


def spec(room: str, *, entities: int = 3, version: int = 1) -> dict[str, Any]:
    """The room with `entities` agents and one artifact seeded from `seeds/project-plan.md`."""
    return room_spec(room, version=version, entities=entities, artifacts=1)


@contextlib.contextmanager
def roomop_up(root: Path) -> Iterator[tuple[str, str, dict[str, Any], Path]]:
    """`roomop up FOLDER` with debug logs; its operator and room server URLs, the credentials and the
    file holding everything the process wrote."""
    specs, data, output = root / "specs", root / "data", root / "up-output.log"
    (specs / "seeds").mkdir(parents=True)
    (specs / "seeds" / "project-plan.md").write_text("the plan\n")
    (specs / "room.room.json").write_text(json.dumps(spec(ROOM)))
    operator_port, server_port = free_port(), free_port()
    roomop = Path(sys.executable).parent / "roomop"
    command = [str(roomop), "up", str(specs), "--data", str(data)]
    command += ["--operator-port", str(operator_port), "--server-port", str(server_port)]
    env = {**os.environ, "ROOMOP_LOGGING__LEVEL": "debug", "PYTHONUNBUFFERED": "1"}
    with output.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{operator_port}"
    try:
        deadline, credentials = time.monotonic() + 60, None
        while time.monotonic() < deadline and credentials is None:
            assert process.poll() is None, output.read_text()
            with contextlib.suppress(httpx.TransportError, FileNotFoundError, json.JSONDecodeError):
                found = json.loads((data / "credentials.json").read_text())
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    credentials = found
            time.sleep(0.1)  # another process's start: there is no event to await
        assert credentials is not None, output.read_text()
        yield url, f"http://127.0.0.1:{server_port}", credentials, data
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, output.read_text()[-3000:]


def ready(http: httpx.Client, room: str) -> bool:
    answer = http.get(f"/rooms/{room}")
    conditions = {c["type"]: c["status"] for c in answer.json().get("conditions", [])}
    return answer.status_code == 200 and conditions.get("Ready") == "True"


def wait_ready(http: httpx.Client, room: str) -> None:
    deadline = time.monotonic() + 60
    while not ready(http, room):
        assert time.monotonic() < deadline, http.get(f"/rooms/{room}").text
        time.sleep(0.1)  # the operator's run in another process: polled


def exercise(operator_url: str, server_url: str, credentials: dict[str, Any]) -> None:
    """Real applies and failures through every way a token travels (headers, SSE, the CLI)."""
    api = {"Authorization": f"Bearer {credentials['operator']['apiToken']}"}
    admin = {"Authorization": f"Bearer {credentials['roomServer']['adminToken']}"}
    with httpx.Client(base_url=operator_url, headers=api, timeout=30) as op:
        wait_ready(op, ROOM)
        files = {
            "spec": (None, json.dumps(spec(OTHER)), "application/json"),
            "seeds/project-plan.md": ("p", b"x"),
        }
        assert op.post("/apply", files=files).status_code == 200
        wait_ready(op, OTHER)
        assert httpx.post(f"{operator_url}/apply", json=spec(OTHER, version=2)).status_code == 401
        wrong = {"Authorization": f"Bearer {credentials['roomServer']['adminToken']}"}  # the wrong one
        assert httpx.post(f"{operator_url}/apply", json=spec(OTHER), headers=wrong).status_code == 401
        assert op.post("/apply", json={"spec": {"kind": 3}}).status_code == 400
        emptied = op.post("/apply", json={**spec(OTHER, version=3), "spec": {"roomId": OTHER}})
        assert (emptied.status_code, emptied.json()["code"]) == (400, "GUARDRAILS_EXCEEDED"), emptied.text
        with op.stream("GET", "/events", timeout=httpx.Timeout(10, read=10)) as events:
            assert next(events.iter_lines()) == "event: connected"
        assert op.get("/audit").status_code == 200
    with httpx.Client(base_url=server_url, headers=admin, timeout=30) as rs:
        assert rs.get(f"/room/{ROOM}/state").status_code == 200
        assert rs.get(f"/room/{ROOM}/state", headers={"Authorization": "Bearer nope"}).status_code == 401
    roomop = Path(sys.executable).parent / "roomop"
    command = [
        str(roomop),
        "status",
        "--operator",
        operator_url,
        "--token",
        credentials["operator"]["apiToken"],
    ]
    shown = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr


def leaks(folder: Path, tokens: dict[str, str], *, allowed: set[Path]) -> list[str]:
    """Each file under `folder` (but `allowed`) that holds a token's bytes, with the token's name."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path not in allowed:
            content = path.read_bytes()
            found += [
                f"{path.relative_to(folder)}: {name}"
                for name, token in tokens.items()
                if token.encode() in content
            ]
    return found


def test_no_token_is_in_any_file_or_output_but_the_credentials_file(tmp_path: Path) -> None:
    with roomop_up(tmp_path) as (operator_url, server_url, credentials, data):
        exercise(operator_url, server_url, credentials)
    tokens = {
        "api token": credentials["operator"]["apiToken"],
        "operator token": credentials["roomServer"]["operatorToken"],
        "admin token": credentials["roomServer"]["adminToken"],
    }
    path = data / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert all(token.encode() in path.read_bytes() for token in tokens.values())
    scanned = sum(1 for item in data.rglob("*") if item.is_file())
    found = leaks(tmp_path, tokens, allowed={path})  # the data folder and the captured output
    print(f"\nsecrets: {scanned} files of the data folder and the output scanned for {len(tokens)} tokens")
    assert found == []
    assert scanned >= 5  # the store, the room server's database and log, the operator's log, ...


def test_a_hub_token_in_the_query_is_not_logged(tmp_path: Path) -> None:
    server = start_roomserver_process(tmp_path / "rs")
    try:
        url = server.url.replace("http://", "ws://", 1) + f"/room?access_token={server.token}"
        with connect(url, open_timeout=10) as ws:
            ws.send(json.dumps({"protocol": "json", "version": 1}) + "\x1e")
            assert ws.recv(timeout=10) == "{}\x1e"
    finally:
        server.stop()
    assert server.token not in server.log()
    assert "access_token=***" in server.log()  # the request was logged, without its token
