"""Stopping `roomserver serve`: a second Ctrl-C (SIGINT) while it stops, as a terminal and `roomop up`
both used to send, still ends it cleanly, without a `CancelledError` traceback from the lifespan, and
every acknowledged write is there after a restart."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.support.roomserver import start_roomserver_process


@pytest.mark.slow
@pytest.mark.parametrize("stops", range(4))
def test_a_second_sigint_stops_the_server_without_a_traceback(tmp_path: Path, stops: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    server = start_roomserver_process(data)
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    entity = {"kind": "agent", "displayName": f"stop {stops}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
        declared = http.put("/room/room-stopping-1/entities/E-agent-1", json=entity)
        assert declared.status_code in (200, 201), declared.text
        with http.stream("GET", "/events", timeout=httpx.Timeout(10, read=None)) as events:
            assert next(events.iter_lines()).startswith(("event:", ":", "id:", "retry:", "data:"))
            server.process.send_signal(signal.SIGINT)
            server.process.send_signal(signal.SIGINT)  # uvicorn's forced exit: the lifespan is cancelled
            # uvicorn re-raises the SIGINT it caught once it is done: 130, as for any Ctrl-C'd program
            assert server.process.wait(timeout=20) in (0, 130)
    log = server.log()
    assert "Traceback" not in log
    assert "CancelledError" not in log
    again = start_roomserver_process(data)
    try:
        auth = {"Authorization": f"Bearer {again.admin_token}"}  # a restart writes new tokens
        state = httpx.get(f"{again.url}/room/room-stopping-1/state", headers=auth, timeout=10).json()
        assert [e["id"] for e in state["entities"]] == ["E-agent-1"]
    finally:
        again.stop()
