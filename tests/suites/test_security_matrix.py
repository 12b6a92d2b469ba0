"""The security matrix: every route of both servers (from their route tables, `routes.py`) called with no
token, a wrong token, a token lacking the route's scope and a token holding just that scope.

Refusals are 401 `AUTH_REQUIRED` / 403 `INSUFFICIENT_SCOPE` and read nothing of the body (an 8 MiB
streamed body, counted as the app pulls it in-process); the right scope is never refused, and reads
answer 2xx (the hub's transports once a connection is negotiated: without one, a 4xx other than 401/403).
The operator's reads need `operator:read` when auth is on; `/health` and `/metrics` are open while
`api.open_probes` is on and need a reader when it is off; `/hooks/git` takes no token but a signature by
a git source's secret (with none configured, 404 with the body unread). Real servers on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomcontract.scopes import ALL_SCOPES
from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.roomserver.test_hostile import BodyProbe, _tokens_file
from tests.service.conftest import Operator, operator_settings, room_spec, running_operator
from tests.suites.routes import Endpoint, Guard, operator_endpoints, roomserver_endpoints
from tests.support.roomserver import running_roomserver, upload_artifact
from tests.support.servers import serve_app

ROOM, ENTITY, ARTIFACT = "room-matrix-1", "E-agent-a", "plan"
WRONG = "wrong-token-0123456789abcdef"
WRITER, READER = "matrix-writer-0123456789", "matrix-reader-0123456789"
MIB = 1024 * 1024


@dataclass
class Servers:
    url: str
    app: FastAPI
    tokens: dict[str, str]


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def fill(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no value for a parameter of {path}: add it to the matrix"
    return path


async def status_of(http: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]) -> int:
    """The status of a request; streams (SSE) are closed once their head has arrived."""
    async with http.stream(method, url, headers=headers) as answer:
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            return answer.status_code
        await answer.aread()
        return answer.status_code


async def refusal(
    app: FastAPI, endpoint: Endpoint, url: str, headers: dict[str, str]
) -> tuple[int, str, int]:
    """(status, code, bytes of the body pulled) of a request carrying an 8 MiB body, called in-process."""
    probe = BodyProbe(8 * MIB)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://matrix") as http:
        answer = await http.request(endpoint.method, url, content=probe, headers=headers)
    return answer.status_code, answer.json().get("code", ""), probe.pulled


# The room server ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def roomserver(tmp_path: Path) -> AsyncIterator[Servers]:
    """A room server with a token per scope (`only:<scope>`), one lacking it (`all-but:<scope>`), one with
    no scope (`none`) and `admin`; a room with a member, a room artifact and a private one."""
    names: dict[str, tuple[str, ...]] = {"admin": ALL_SCOPES, "none": ()}
    for scope in ALL_SCOPES:
        names[f"only:{scope}"] = (scope,)
        names[f"all-but:{scope}"] = tuple(s for s in ALL_SCOPES if s != scope)
    tokens_file, tokens = _tokens_file(tmp_path / "rs", names)
    app = create_app(ServerSettings(data_dir=tmp_path / "rs", tokens_file=tokens_file))
    async with serve_app(app) as url:
        try:
            async with httpx.AsyncClient(base_url=url, headers=bearer(tokens["admin"])) as admin:
                joined = await admin.post(f"/room/{ROOM}/join", json={"entityId": ENTITY, "kind": "agent"})
                assert joined.status_code == 201, joined.text
                for entity in (None, ENTITY):
                    made = await upload_artifact(admin, ROOM, ARTIFACT, b"matrix bytes", entity=entity)
                    assert made.status_code == 201, made.text
            yield Servers(url, app, tokens)
        finally:
            app.state.roomserver.feed.close()


ROOMSERVER_VALUES = {"roomId": ROOM, "entityId": ENTITY, "name": ARTIFACT}


async def test_every_room_server_route_refuses_wrong_callers_and_serves_the_right_scope(
    tmp_path: Path,
) -> None:
    failures: list[str] = []
    async with roomserver(tmp_path) as rs, httpx.AsyncClient(base_url=rs.url, timeout=10) as http:
        endpoints = roomserver_endpoints(rs.app)
        assert len([e for e in endpoints if e.guard is Guard.SCOPE]) >= 20  # the table was read
        # Deletes last, the member's own last of all; its workspace routes act as that declared member.
        for endpoint in sorted(
            endpoints, key=lambda e: (e.method == "DELETE", "{entityId}" in e.path, e.path)
        ):
            member = {"X-Entity-Id": ENTITY} if "{entityId}" in endpoint.path else {}
            if endpoint.method == "WS":
                continue  # below, over a WebSocket client
            url = fill(endpoint.path, ROOMSERVER_VALUES)
            if endpoint.guard is Guard.OPEN:
                for token in (None, WRONG):
                    got = await status_of(http, endpoint.method, url, bearer(token))
                    if not 200 <= got < 300:
                        failures.append(f"{endpoint} open, token {token}: {got}")
                continue
            refused = [(None, 401, "AUTH_REQUIRED"), (WRONG, 401, "AUTH_REQUIRED")]
            if endpoint.guard is Guard.SCOPE:
                refused.append((rs.tokens[f"all-but:{endpoint.scope}"], 403, "INSUFFICIENT_SCOPE"))
            for token, status, code in refused:
                got = await refusal(rs.app, endpoint, url, {**member, **bearer(token)})
                if got != (status, code, 0):
                    failures.append(f"{endpoint} with {token}: (status, code, pulled) {got}")
            right = rs.tokens["none" if endpoint.guard is Guard.TOKEN else f"only:{endpoint.scope}"]
            got = await status_of(http, endpoint.method, url, {**member, **bearer(right)})
            served = endpoint.method != "GET" or endpoint.session or got < 300  # reads are served
            allowed = got not in (401, 403) and got < 500 and served
            if not allowed:
                failures.append(f"{endpoint} with its scope {endpoint.scope}: {got}")
    assert failures == []


async def test_the_hub_websocket_refuses_wrong_callers(tmp_path: Path) -> None:
    async with roomserver(tmp_path) as rs:
        [hub] = [e for e in roomserver_endpoints(rs.app) if e.method == "WS"]
        ws_url = rs.url.replace("http://", "ws://") + hub.path
        lacking = rs.tokens[f"all-but:{hub.scope}"]
        for token, status in ((None, 401), (WRONG, 401), (lacking, 403)):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url, additional_headers=bearer(token)):
                    pass
            assert refused.value.response.status_code == status, token
        async with httpx.AsyncClient(base_url=rs.url, headers=bearer(rs.tokens[f"only:{hub.scope}"])) as http:
            negotiated = (await http.post("/room/negotiate", params={"negotiateVersion": "1"})).json()
        query = f"?id={negotiated['connectionToken']}&access_token={rs.tokens[f'only:{hub.scope}']}"
        async with connect(ws_url + query) as accepted:  # the right scope, by query as browsers send it
            await accepted.send('{"protocol":"json","version":1}\x1e')
            assert (await accepted.recv()) == "{}\x1e"


# The operator ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def secured_operator(
    tmp_path: Path, *, open_probes: bool = True
) -> AsyncIterator[tuple[Operator, str]]:
    """An operator with a writer and a reader token over a real room server; a room applied, its run id."""
    async with running_roomserver(tmp_path / "roomserver") as rs:
        api = {"token": SecretStr(WRITER), "read_token": SecretStr(READER), "open_probes": open_probes}
        async with running_operator(operator_settings(rs, tmp_path, api=api)) as op:
            applied = await op.http.post("/apply", json=room_spec(ROOM), headers=bearer(WRITER))
            assert applied.status_code == 200, applied.text
            yield op, applied.json()["correlationId"]


async def test_every_operator_route_refuses_wrong_callers_and_serves_the_right_scope(
    tmp_path: Path,
) -> None:
    failures: list[str] = []
    async with secured_operator(tmp_path) as (op, run):
        endpoints = operator_endpoints(op.app)
        assert {e.scope for e in endpoints} >= {"operator:read", "operator:write"}
        values = {"roomId": ROOM, "correlationId": run}
        for endpoint in sorted(endpoints, key=lambda e: (e.method == "DELETE", e.method != "GET", e.path)):
            url = fill(endpoint.path, values)
            if endpoint.guard is Guard.SIGNED:  # no git source has a secret here: 404, the body unread
                for token in (None, WRONG, READER, WRITER):
                    got = await refusal(op.app, endpoint, url, bearer(token))
                    if got != (404, "", 0):
                        failures.append(f"{endpoint} (signed) with {token}: (status, code, pulled) {got}")
                continue
            if endpoint.guard in (Guard.OPEN, Guard.PROBE):  # probes: open by default (`api.open_probes`)
                for token in (None, WRONG):
                    got = await status_of(op.http, endpoint.method, url, bearer(token))
                    if not 200 <= got < 300:
                        failures.append(f"{endpoint} open, token {token}: {got}")
                continue
            refused = [(None, 401, "AUTH_REQUIRED"), (WRONG, 401, "AUTH_REQUIRED")]
            if endpoint.scope == "operator:write":  # no token lacks operator:read: every token implies it
                refused.append((READER, 403, "INSUFFICIENT_SCOPE"))
            for token, status, code in refused:
                got = await refusal(op.app, endpoint, url, bearer(token))
                if got != (status, code, 0):
                    failures.append(f"{endpoint} with {token}: (status, code, pulled) {got}")
            right = READER if endpoint.scope == "operator:read" else WRITER
            got = await status_of(op.http, endpoint.method, url, bearer(right))
            allowed = got not in (401, 403) and got < 500 and (endpoint.method != "GET" or got < 300)
            if not allowed:
                failures.append(f"{endpoint} with {endpoint.scope}: {got}")
    assert failures == []


async def test_operator_probes_need_a_reader_once_closed(tmp_path: Path) -> None:
    async with secured_operator(tmp_path, open_probes=False) as (op, _):
        probes = [e for e in operator_endpoints(op.app) if e.guard is Guard.PROBE]
        assert {e.path for e in probes} == {"/health", "/metrics"}
        for endpoint in probes:
            for token in (None, WRONG):
                got = await refusal(op.app, endpoint, endpoint.path, bearer(token))
                assert got == (401, "AUTH_REQUIRED", 0), (endpoint, token)
            assert (await op.http.get(endpoint.path, headers=bearer(READER))).status_code in (200, 503)
