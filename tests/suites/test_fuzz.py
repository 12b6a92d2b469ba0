"""Fuzzing both servers from their own OpenAPI documents (schemathesis, in-process over ASGI, with tokens).

For every operation, valid and invalid requests (schemathesis' positive and negative modes) are sent with
a token holding every scope. The properties: no 5xx; every 4xx body is an error object naming what went
wrong (`code`, or the reference's `error`); and data stored before the run (a room with a member and an
artifact, on the operator a managed room and its history) is unchanged afterwards. The short run sends a
few examples per operation; `make soak` many more. Left out: `/events` (an endless stream; its resume
parameter is fuzzed by the hostile-input tests) and the MCP loads (`/admin/mcp/load`, `/mcp/load`: they make
the room server connect to the URLs given, which a fuzzer would draw from the whole internet; their bodies
are fuzzed by the hostile-input tests).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis.python import asgi

from roomoperator.service.app import create_app as operator_app
from roomserver.app import create_app as roomserver_app
from roomserver.settings import ServerSettings
from tests.service.conftest import operator_settings, room_spec, running_operator
from tests.support.roomserver import (
    FULL_SCOPES,
    RoomServerProcess,
    running_roomserver,
    start_roomserver_process,
    write_tokens,
)

KEPT = "room-fuzz-keep"
WRITER = "fuzz-writer-0123456789"
LEFT_OUT = ("/events", "/admin/mcp/load", "/mcp/load")
RUNS = [pytest.param(3, id="short"), pytest.param(150, id="soak", marks=pytest.mark.soak)]


def error_shaped(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and any(isinstance(body.get(key), str) for key in ("code", "error"))


def fuzz(schema: schemathesis.BaseSchema, headers: dict[str, str], examples: int) -> dict[str, Any]:
    """Every operation of `schema`, `examples` valid and `examples` invalid requests each; the failures
    (5xx, or a 4xx that is not an error object) and the count of statuses seen."""
    failures: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    operations = 0
    for result in schema.exclude(path=list(LEFT_OUT)).get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate],  # no shrinking: a failure is recorded as found
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call(headers=headers)
                statuses[response.status_code] += 1
                if response.status_code >= 500 or (
                    response.status_code >= 400 and not error_shaped(response)
                ):
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )

            with contextlib.suppress(Unsatisfiable):  # nothing to break: an operation with no inputs
                call()
    return {"failures": failures, "statuses": statuses, "operations": operations}


@pytest.fixture
def stopped_lifespans() -> Iterator[None]:
    """Schemathesis starts each app's lifespan on first use and keeps it: stop them after the test."""
    yield
    asgi.shutdown_lifespans()


@pytest.mark.parametrize("examples", RUNS)
def test_the_room_server_survives_its_own_openapi_document(
    tmp_path: Path, examples: int, stopped_lifespans: None
) -> None:
    data = tmp_path / "rs"
    tokens_file, token, _ = write_tokens(data, FULL_SCOPES)
    app = roomserver_app(ServerSettings(data_dir=data, tokens_file=tokens_file))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    with asgi.get_client(app) as http:
        http.headers.update(headers)
        joined = http.post(f"/room/{KEPT}/join", json={"entityId": "E-human-keep", "kind": "human"})
        assert joined.status_code == 201, joined.text
        files = {"spec": (None, json.dumps({"name": "kept", "type": "document"})), "data": ("kept", b"kept")}
        assert http.post(f"/rooms/{KEPT}/artifacts", files=files).status_code == 201

        def state() -> dict[str, Any]:  # without `resources`: the server's MCP providers, not the room's
            return {k: v for k, v in http.get(f"/room/{KEPT}/state").json().items() if k != "resources"}

        before = state()

        found = fuzz(schema, headers, examples)

        assert state() == before
        kept = http.get(f"/rooms/{KEPT}/artifacts/kept")
        assert hashlib.sha256(kept.content).hexdigest() == hashlib.sha256(b"kept").hexdigest()
    print(f"\nfuzz room server: {found['operations']} operations, {dict(found['statuses'])}")
    assert found["failures"] == [], found["failures"][:20]
    assert found["operations"] >= 20, found  # the document was read


@pytest.fixture
def roomserver_child(tmp_path: Path) -> Iterator[RoomServerProcess]:
    server = start_roomserver_process(tmp_path / "rs")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("examples", RUNS)
def test_the_operator_survives_its_own_openapi_document(
    tmp_path: Path, examples: int, roomserver_child: RoomServerProcess, stopped_lifespans: None
) -> None:
    settings_ = operator_settings(roomserver_child, tmp_path, api={"token": SecretStr(WRITER)})  # type: ignore[arg-type]
    app = operator_app(settings_)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {WRITER}"}
    with asgi.get_client(app) as http:
        http.headers.update(headers)
        applied = http.post("/apply", json=room_spec(KEPT))
        assert applied.status_code == 200, applied.text

        def read() -> tuple[Any, Any]:
            history = http.get(f"/rooms/{KEPT}/history").json()["items"]
            return http.get(f"/rooms/{KEPT}").json()["spec"], [(i["revision"], i["spec"]) for i in history]

        before = read()

        found = fuzz(schema, headers, examples)

        assert read() == before
    print(f"\nfuzz operator: {found['operations']} operations, {dict(found['statuses'])}")
    assert found["failures"] == [], found["failures"][:20]
    assert found["operations"] >= 12, found


async def test_providers_the_room_server_refuses_are_a_400_not_a_502(tmp_path: Path) -> None:
    """Found by this suite: `POST /mcp/load` answered a 502 "upstream failure" when the room server
    refused the providers sent (none, an empty id): the caller's mistake, now a 400 naming it."""
    async with (
        running_roomserver(tmp_path / "rs") as rs,
        running_operator(operator_settings(rs, tmp_path)) as op,
    ):
        for providers in ([], [{"id": "", "url": "ws://127.0.0.1:9"}]):
            answer = await op.http.post("/mcp/load", json={"providers": providers})
            assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_BODY"), answer.text
            assert answer.json()["message"].startswith("providers: refused by the room server: ")
