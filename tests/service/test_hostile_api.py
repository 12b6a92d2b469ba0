"""The operator's API under hostile input (issue 13): bodies are read only after authentication and never
beyond their route's limit, reads need `operator:read`, hostile values are 400s naming the field with
nothing stored, and slow clients are cut off. Over HTTP against the real operator and room server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from roomoperator.service.launching import serving
from roomoperator.settings import OperatorSettings
from tests.service.conftest import Operator, operator_settings, room_spec, running_operator
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port

WRITER = "writer-token-0123456789"
READER = "reader-token-0123456789"
BODY_ROUTES = ("/apply", "/mcp/load", "/rooms/room-hostile-01/rollback")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def secured(roomserver: RoomServerHandle, tmp_path: Path, **api: Any) -> AsyncIterator[Operator]:
    settings = operator_settings(
        roomserver, tmp_path, api={"token": SecretStr(WRITER), "read_token": SecretStr(READER), **api}
    )
    async with running_operator(settings) as op:
        yield op


async def exchange(url: str, head: str, body: bytes = b"", *, within: float = 5.0) -> bytes:
    """Send `head` (and `body`) on a raw socket; everything the server sends until it closes."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.encode() + body)
        with contextlib.suppress(ConnectionError):  # a refusal may close before all of it was sent
            await writer.drain()
        async with asyncio.timeout(within):
            return await reader.read()  # to EOF: the server closed the connection
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# Authentication first, then a capped body --------------------------------------------------------------


async def test_unauthenticated_bodies_are_refused_before_a_byte_is_read(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    async with secured(roomserver, tmp_path) as op:
        for path in BODY_ROUTES:
            # 300 MB announced, none sent: an answer now proves nothing is waited for, let alone read.
            head = (
                f"POST {path} HTTP/1.1\r\nHost: op\r\nContent-Type: application/json\r\n"
                "Content-Length: 300000000\r\n\r\n"
            )
            answer = await exchange(op.url, head)
            assert status_of(answer) == 401, (path, answer)
            assert b"connection: close" in answer.lower(), answer
            assert b"AUTH_REQUIRED" in answer
            # An invalid body without a token is 401, not 400; with a read token 403.
            invalid = await op.http.post(
                path, content=b"{not json", headers={"Content-Type": "application/json"}
            )
            assert invalid.status_code == 401, (path, invalid.text)
            reader = await op.http.post(path, content=b"{not json", headers=bearer(READER))
            assert (reader.status_code, reader.json()["code"]) == (403, "INSUFFICIENT_SCOPE"), path
            assert "lacks scope operator:write" in reader.json()["message"]


async def test_each_body_route_has_its_cap_checked_before_and_while_reading(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    async with secured(roomserver, tmp_path) as op:
        for path, declared in (
            ("/mcp/load", 10_000_000),
            ("/apply", 2_000_000),
            ("/rooms/x/rollback", 5_000_000),
        ):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: op\r\nAuthorization: Bearer {WRITER}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
            )
            answer = await exchange(op.url, head)
            assert status_of(answer) == 413, (path, answer)
            assert b"BODY_TOO_LARGE" in answer

        # Chunked: no Content-Length to refuse up front; cut where the bytes read pass 64 KiB.
        chunk = b'{"id": "tool", "url": "http://127.0.0.1:9"},' * 100
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))
        head = (
            f"POST /mcp/load HTTP/1.1\r\nHost: op\r\nAuthorization: Bearer {WRITER}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        answer = await exchange(op.url, head, chunked)
        assert status_of(answer) == 413, answer
        assert answer.endswith(b'{"errors":["body: larger than 65536 bytes"],"code":"BODY_TOO_LARGE"}')


# Reads need operator:read ------------------------------------------------------------------------------

READS = (
    "/status",
    "/status/rooms/room-hostile-02",
    "/rooms",
    "/rooms/room-hostile-02",
    "/rooms/room-hostile-02/history",
    "/audit",
    "/mcp/status",
)


async def test_reads_need_a_token_with_the_read_scope(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    async with secured(roomserver, tmp_path) as op:
        applied = await op.http.post("/apply", json=room_spec("room-hostile-02"), headers=bearer(WRITER))
        assert applied.status_code == 200, applied.text
        run = f"/runs/{applied.json()['correlationId']}"
        for path in (*READS, run, "/events"):
            refused = await op.http.get(path)
            assert (refused.status_code, refused.json()["code"]) == (401, "AUTH_REQUIRED"), path
            assert (await op.http.get(path, headers=bearer("wrong-token-0123456789"))).status_code == 401
        for token in (READER, WRITER):  # the writer's token implies operator:read
            for path in (*READS, run):
                assert (await op.http.get(path, headers=bearer(token))).status_code == 200, (path, token)
            async with op.http.stream("GET", "/events", headers=bearer(token)) as stream:
                assert stream.status_code == 200
        for open_path in ("/health", "/metrics", "/openapi.json"):  # api.open_probes, the API description
            assert (await op.http.get(open_path)).status_code == 200, open_path
        writes = (("POST", "/rooms/room-hostile-02/reconcile"), ("DELETE", "/rooms/room-hostile-02"))
        for method, path in writes:
            answer = await op.http.request(method, path, headers=bearer(READER))
            assert answer.status_code == 403, (method, path)


async def test_probes_can_be_closed_too(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    async with secured(roomserver, tmp_path, open_probes=False) as op:
        for path in ("/health", "/metrics"):
            assert (await op.http.get(path)).status_code == 401, path
            assert (await op.http.get(path, headers=bearer(READER))).status_code == 200, path


# Hostile values: a 400 naming the field, nothing stored -----------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    inner: dict[str, Any] = {}
    for _ in range(depth):
        inner = {"a": inner}
    return inner


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = room_spec("room-hostile-03", artifacts=1)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target: Any = spec
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return spec


HOSTILE_SPECS: list[tuple[str, bytes, str]] = [
    (
        "seedFrom part over 255 bytes",
        json.dumps(spec_with(spec__artifacts__0__seedFrom="seeds/" + "x" * 300 + ".md")).encode(),
        "spec.artifacts[0].seedFrom: each part of the path must be at most 255 bytes",
    ),
    (
        "seedFrom over 1024 bytes",
        json.dumps(spec_with(spec__artifacts__0__seedFrom="/".join(["d" * 200] * 6))).encode(),
        "spec.artifacts[0].seedFrom: must be at most 1024 bytes long",
    ),
    (
        "version of 5,000 digits",
        json.dumps(room_spec("room-hostile-03")).replace('"version": 1', '"version": ' + "7" * 5000).encode(),
        "metadata.version: integer of 5000 digits (at most 4300)",
    ),
    (
        "version of 30 digits",
        json.dumps(spec_with(metadata__version=10**30)).encode(),
        "metadata.version: must be at most 2147483647",
    ),
    (
        "maxArtifactsPerEntity of 20 digits",
        json.dumps(spec_with(spec__policies={"maxArtifactsPerEntity": 10**20})).encode(),
        "spec.policies.maxArtifactsPerEntity: must be at most 2147483647",
    ),
    (
        "config nested 900 deep",
        json.dumps(
            spec_with(spec__resources=[{"name": "tool", "type": "mcp", "config": nested(900)}])
        ).encode(),
        "spec.resources[0].config.a.a...: nested deeper than 32 levels",
    ),
    (
        "annotations nested 40 deep",
        json.dumps(spec_with(metadata__annotations=nested(40))).encode(),
        "metadata.annotations.a.a.a.a...: nested deeper than 32 levels",
    ),
    (
        "NaN in a config",
        json.dumps(
            spec_with(spec__resources=[{"name": "tool", "type": "mcp", "config": {"x": float("nan")}}])
        ).encode(),
        "body: NaN is not a JSON number",
    ),
    (
        "lone surrogate in a config",
        json.dumps(
            spec_with(spec__resources=[{"name": "tool", "type": "mcp", "config": {"x": "\ud800"}}])
        ).encode(),
        "spec.resources[0].config.x: text holds an invalid character (a lone surrogate escape)",
    ),
    ("invalid UTF-8", b'{"spec": "\xff\xfe"}', "body: not UTF-8 text (byte 10)"),
    ("100,000 [", b"[" * 100_000, "body: document is nested deeper than 32 levels"),
]


@pytest.mark.parametrize(
    ("case", "body", "expected"), HOSTILE_SPECS, ids=[case for case, _, _ in HOSTILE_SPECS]
)
async def test_hostile_specs_are_400_naming_the_field(
    operator: Operator, case: str, body: bytes, expected: str
) -> None:
    answer = await operator.http.post("/apply", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert any(error.startswith(expected) for error in answer.json()["errors"]), answer.json()["errors"]
    files = {"spec": ("spec.json", body, "application/json")}
    multipart = await operator.http.post("/apply", files=files)  # the spec part of a multipart apply
    assert multipart.status_code == 400, multipart.text
    assert (await operator.http.get("/rooms")).json()["items"] == []  # nothing stored


async def test_hostile_small_bodies_are_400_naming_the_field(operator: Operator) -> None:
    assert (await operator.http.post("/apply", json=room_spec("room-hostile-04"))).status_code == 200
    rollback = "/rooms/room-hostile-04/rollback"
    cases: list[tuple[str, bytes, str]] = [
        (rollback, b'{"revision": ' + b"9" * 5000 + b"}", "revision: integer of 5000 digits"),
        (rollback, b'{"revision": ' + b"9" * 30 + b"}", "revision: Input should be less than or equal to"),
        (rollback, b'{"revision": "\xff"}', "body: not UTF-8 text"),
        (rollback, b"[" * 1000, "body: document is nested deeper than 32 levels"),
        ("/mcp/load", b'{"providers": "\xc3\x28"}', "body: not UTF-8 text"),
        ("/mcp/load", b'{"providers": [' * 1000, "body: document is nested deeper than 32 levels"),
        ("/mcp/load", b'{"providers": [{"id": "t"}]}', "providers.0.url: Field required"),
    ]
    for path, body, expected in cases:
        answer = await operator.http.post(path, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, (path, body[:40], answer.text)
        assert any(error.startswith(expected) for error in answer.json()["errors"]), answer.json()
    history = (await operator.http.get("/rooms/room-hostile-04/history")).json()["items"]
    assert [item["revision"] for item in history] == [1]  # no rollback was stored
    plain = await operator.http.post(rollback, content=b"revision=1", headers={"Content-Type": "text/plain"})
    assert (plain.status_code, plain.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert (await operator.http.get("/audit", params={"count": -1})).status_code == 400


# Slow clients ------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(settings: OperatorSettings) -> AsyncIterator[str]:
    """The operator as `roomop serve` serves it (its uvicorn configuration), on a free port."""
    async with serving(settings) as _:
        yield f"http://127.0.0.1:{settings.api.port}"


async def test_slow_and_idle_clients_are_cut_off(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    limits = {
        "port": free_port(),
        "header_timeout_seconds": 0.5,
        "body_idle_timeout_seconds": 0.5,
        "body_timeout_seconds": 1.5,
        "keep_alive_seconds": 1,
    }
    settings = operator_settings(roomserver, tmp_path, api=limits)
    async with served(settings) as url:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Connects and sends nothing; half a request line; headers and half a body.
        silent = exchange(url, "")
        half_line = exchange(url, "POST /apply HT")
        half_body = exchange(
            url, "POST /mcp/load HTTP/1.1\r\nHost: op\r\nContent-Length: 100\r\n\r\n", b'{"pro'
        )
        many = [exchange(url, "GET /status HTTP/1.1\r\nHost: op\r\n") for _ in range(100)]
        answers = await asyncio.gather(silent, half_line, half_body, *many)
        assert loop.time() - started < 3  # all cut off at about 0.5 s, none held
        assert all(status_of(answer) == 408 for answer in answers[:2] + answers[3:]), answers[:3]
        assert answers[2] == b"" or status_of(answers[2]) in (400, 408)

        # A body dripping a byte every 0.2 s never pauses 0.5 s, but the whole body must be in by 1.5 s.
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"POST /mcp/load HTTP/1.1\r\nHost: op\r\nContent-Length: 1000\r\n\r\n")
        dripping = loop.time()
        with contextlib.suppress(ConnectionError):
            while not reader.at_eof() and loop.time() - dripping < 5:
                writer.write(b" ")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):  # the drip's pace: waits for the server's close
                        await reader.read()
        assert 1.4 < loop.time() - dripping < 3
        writer.close()

        # A finished request leaves the connection idle: closed after keep_alive_seconds.
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: op\r\n\r\n")
        idle = loop.time()
        async with asyncio.timeout(5):
            answer = await reader.read()
        assert status_of(answer) == 200
        assert 0.9 < loop.time() - idle < 3
        writer.close()

        # Well-behaved clients are not affected.
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/health")).status_code == 200
            assert (await http.post("/apply", json=room_spec("room-hostile-05"))).status_code == 200
