"""Fixtures of the hypothesis fuzzers: one room server and one operator as child processes on 127.0.0.1
for the whole folder (their imports cost seconds), and the example counts of the short and long runs.

The fuzzers are synchronous hypothesis tests talking HTTP and WebSocket to the children, so every example
crosses a real socket and a real server. The room server's log is kept in its data folder and a traceback
in it fails the folder; the operator's failures show in its answers (5xx). The short run (`make test`)
draws `SHORT` examples per property, the `soak`-marked one (`make soak`) `SOAK`.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings

from tests.service.test_durability import roomop_serve
from tests.support.roomserver import RoomServerHandle, RoomServerProcess, start_roomserver_process
from tests.support.servers import free_port

SHORT, SOAK = 30, 2000
RUNS = [pytest.param(SHORT, id="short"), pytest.param(SOAK, id="soak", marks=pytest.mark.soak)]


def examples(count: int) -> settings:
    """Hypothesis settings for `count` examples: no deadline (the box is shared), no example database (a
    run is reproduced from its seed), no shrinking (a failure is recorded as found)."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@dataclass
class Operator:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


@pytest.fixture(scope="session")
def fuzz_roomserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomServerProcess]:
    server = start_roomserver_process(tmp_path_factory.mktemp("fuzz-rs"))
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()[-4000:]


@pytest.fixture(scope="session")
def fuzz_operator(
    fuzz_roomserver: RoomServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    data = tmp_path_factory.mktemp("fuzz-op")
    upstream = RoomServerHandle(fuzz_roomserver.url, fuzz_roomserver.token, "", data, app=None)
    port = free_port()
    settings_ = {
        "ROOMOP_DATA_DIR": str(data),
        "ROOMOP_LOGGING__LEVEL": "critical",
    }  # stderr: a pipe nobody reads
    with roomop_serve(upstream, data / "operator.db", port, **settings_) as process:
        yield Operator(f"http://127.0.0.1:{port}", data, process)


@pytest.fixture
def rs_client(fuzz_roomserver: RoomServerProcess) -> Iterator[httpx.Client]:
    auth = {"Authorization": f"Bearer {fuzz_roomserver.token}"}
    with httpx.Client(base_url=fuzz_roomserver.url, headers=auth, timeout=30) as client:
        yield client


@pytest.fixture
def op_client(fuzz_operator: Operator) -> Iterator[httpx.Client]:
    with fuzz_operator.client() as client:
        yield client


def files_under(folder: Path) -> set[Path]:
    """Every file below `folder` (none when it does not exist)."""
    with contextlib.suppress(FileNotFoundError):
        return {path for path in folder.rglob("*") if path.is_file()}
    return set()
