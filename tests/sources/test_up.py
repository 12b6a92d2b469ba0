"""`roomop up DIR` as a user runs it (a subprocess, not a terminal): the folder is a GitOps source, an
edit of a spec there is applied without a restart, and `roomop sources` shows it."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

from tests.service.test_first_hour import ROOMOP, Up, _quiet_env, _up_command
from tests.sources.conftest import write_spec
from tests.support.servers import free_port

ROOM = "room-upfolder-01"


def test_up_follows_a_folder_of_specs(tmp_path: Path) -> None:
    rooms, data = tmp_path / "rooms", tmp_path / ".roomop"
    write_spec(rooms / "lab.room.yaml", ROOM, entities=1)
    operator_port, server_port = free_port(), free_port()
    process = subprocess.Popen(
        _up_command(data, operator_port, server_port, rooms),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_quiet_env(),
    )
    up = Up(process, data, f"http://127.0.0.1:{operator_port}", server_port, operator_port)
    reader = threading.Thread(target=up.read, daemon=True)
    reader.start()
    try:
        first = json.loads(up.wait_for(r'"event": "room changed"'))
        assert (first["room_id"], first["spec_version"]) == (ROOM, 1)
        write_spec(rooms / "lab.room.yaml", ROOM, version=2, entities=2)
        second = json.loads(up.wait_for(r'"event": "room changed"', within=20))
        assert (second["room_id"], second["spec_version"]) == (ROOM, 2)
        command = [str(ROOMOP), "sources", "--operator", up.operator_url, "--token", up.token, "-o", "json"]
        listed = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        assert listed["items"][0]["name"] == "specs"
        assert listed["items"][0]["rooms"] == {ROOM: "lab.room.yaml"}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        reader.join(timeout=10)
