"""The operator's HTTP API against a real room server: every endpoint and its errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from roomoperator.spec.parsing import MAX_DOCUMENT_BYTES
from tests.service.conftest import EXAMPLES, Operator, room_spec


async def test_apply_converges_a_room_and_stores_the_spec(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    answer = await operator.http.post("/apply", json={"spec": room_spec("room-lab-01", artifacts=1)})
    body = answer.json()
    assert answer.status_code == 200, body
    assert list(body)[:8] == [
        "success", "partialSuccess", "correlationId", "phase", "diff", "warnings", "errors", "duration",
    ]  # fmt: skip
    assert (body["success"], body["phase"], body["converged"]) == (True, "VERIFY", True)
    assert sorted(body["diff"]["toJoin"]) == ["E-agent-0", "E-agent-1"]
    state = (await admin.get("/room/room-lab-01/state")).json()
    assert [e["id"] for e in state["entities"]] == ["E-agent-0", "E-agent-1"]
    assert [a["name"] for a in state["artifacts"]] == ["doc-0"]
    room = (await operator.http.get("/rooms/room-lab-01")).json()
    assert (room["managed"], room["specVersion"], room["revision"]) == (True, 1, 1)
    assert room["spec"]["spec"]["roomId"] == "room-lab-01"
    assert {c["type"]: c["status"] for c in room["conditions"]} == {
        "Ready": "True", "Reconciling": "False", "Stalled": "False",
    }  # fmt: skip
    run = (await operator.http.get(f"/runs/{body['correlationId']}")).json()
    assert (run["status"], run["trigger"], run["result"]["success"]) == ("succeeded", "apply", True)
    actions = [
        e["action"]
        for e in (await operator.http.get("/audit", params={"correlationId": body["correlationId"]})).json()[
            "entries"
        ]
    ]
    assert actions[0] == "reconcile.planning"
    assert "entity.joined" in actions
    assert "spec.accepted" in actions


async def test_apply_accepts_a_bare_spec_and_yaml(operator: Operator) -> None:
    bare = await operator.http.post("/apply", json=room_spec("room-lab-02"))
    assert bare.status_code == 200, bare.text
    yaml_text = (EXAMPLES / "ai-lab.room.yaml").read_text()
    answer = await operator.http.post(
        "/apply", content=yaml_text, headers={"Content-Type": "application/yaml"}
    )
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["success"] is True
    assert sorted(body["diff"]["toSeed"]) == ["project-plan", "research-data"]


async def test_dry_run_writes_nothing_and_does_not_manage(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    for value in ("TRUE", "1", "yes"):
        answer = await operator.http.post(
            "/apply", json=room_spec("room-lab-03"), headers={"X-Dry-Run": value}
        )
        assert answer.status_code == 200
        assert (answer.json()["phase"], answer.json()["diff"]["toJoin"]) == (
            "PRE_CHECKS",
            ["E-agent-0", "E-agent-1"],
        )
    assert (await admin.get("/room/room-lab-03/state")).json()["entities"] == []
    assert (await operator.http.get("/rooms/room-lab-03")).status_code == 404
    run = (await operator.http.get(f"/runs/{answer.json()['correlationId']}")).json()
    assert (run["dryRun"], run["status"]) == (True, "succeeded")


async def test_invalid_specs_get_400_with_field_paths(operator: Operator) -> None:
    cases: list[tuple[dict[str, str], bytes, str]] = [
        ({}, b"", "body: a RoomSpec is required"),
        ({}, b"{not json", "body: invalid JSON"),
        ({}, json.dumps({"spec": None}).encode(), "spec: a RoomSpec is required"),
        ({}, json.dumps({"invalid": "structure"}).encode(), "INVALID_SPEC"),
        ({}, json.dumps(room_spec("bad-room")).encode(), "roomId"),
        ({"Content-Type": "application/yaml"}, b"a: [\n", "INVALID_SPEC"),
        ({}, b"\xff\xfe", "not UTF-8"),
        ({}, b"[" * 100_000, "body: document is nested deeper than 32 levels"),
    ]
    for headers, content, expected in cases:
        answer = await operator.http.post(
            "/apply", content=content, headers={"Content-Type": "application/json"} | headers
        )
        assert answer.status_code == 400, (content, answer.text)
        assert expected in answer.text, (content, answer.text)
        assert answer.json()["warnings"] == []
    spec = room_spec("room-lab-04")
    spec["spec"]["entities"][0]["kind"] = "robot"
    answer = await operator.http.post("/apply", json=spec)
    assert answer.json()["code"] == "INVALID_SPEC"
    assert any(issue["path"] == "spec.entities[0].kind" for issue in answer.json()["issues"])
    unsupported = await operator.http.post("/apply", content=b"x", headers={"Content-Type": "text/plain"})
    assert unsupported.status_code == 415
    huge = await operator.http.post("/apply", content=b" " * (MAX_DOCUMENT_BYTES + 1))
    assert (huge.status_code, huge.json()["code"]) == (413, "BODY_TOO_LARGE")


async def test_older_spec_versions_are_refused(operator: Operator) -> None:
    assert (await operator.http.post("/apply", json=room_spec("room-lab-05", version=2))).status_code == 200
    older = await operator.http.post("/apply", json=room_spec("room-lab-05", version=1, entities=3))
    assert older.status_code == 409
    assert older.json()["code"] == "SPEC_VERSION_REGRESSION"
    assert (older.json()["offeredVersion"], older.json()["currentVersion"]) == (1, 2)
    newer = await operator.http.post("/apply", json=room_spec("room-lab-05", version=3, entities=3))
    assert (newer.status_code, newer.json()["revision"]) == (200, 2)
    history = (await operator.http.get("/rooms/room-lab-05/history")).json()["items"]
    assert [(item["revision"], item["specVersion"]) for item in history] == [(1, 2), (2, 3)]
    assert history[1]["diff"]["toJoin"] == ["E-agent-2"]
    assert history[1]["actor"] == "anonymous"


async def test_guardrail_refusal_is_400_with_code_and_audited(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    assert (await operator.http.post("/apply", json=room_spec("room-lab-06", entities=8))).status_code == 200
    shrink = await operator.http.post("/apply", json=room_spec("room-lab-06", version=2, entities=1))
    body = shrink.json()
    assert shrink.status_code == 400
    assert body["code"] == "GUARDRAILS_EXCEEDED"
    assert "Kick count (7) exceeds limit (5)" in body["errors"]
    assert len((await admin.get("/room/room-lab-06/state")).json()["entities"]) == 8
    refused = await operator.http.get("/audit", params={"action": "reconcile.guardrail_refused"})
    assert [e["correlationId"] for e in refused.json()["entries"]] == [body["correlationId"]]
    assert "room_operator_guardrail_refusals_total 1.0" in (await operator.http.get("/metrics")).text


async def test_status_health_metrics_and_404s(operator: Operator) -> None:
    await operator.http.post("/apply", json=room_spec("room-lab-07"))
    status = (await operator.http.get("/status")).json()
    assert (status["version"], status["health"], status["queuedRequests"]) == ("0.1.0", 0, 0)
    room = next(r for r in status["rooms"] if r["roomId"] == "room-lab-07")
    assert list(room)[:7] == [
        "roomId", "currentPhase", "isReconciling", "pendingDiff", "blocked", "lastReconcile",
        "cyclesSinceConverged",
    ]  # fmt: skip
    assert room["lastReconcile"].endswith("Z")
    assert list(status) == [
        "version", "health", "healthStatus", "rooms", "queuedRequests", "activeReconciliations", "timestamp",
        "nextCursor", "totalRooms",  # pagination, after the reference's keys
    ]  # fmt: skip
    assert status["timestamp"].endswith("Z")
    assert list((await operator.http.get("/status/rooms/room-lab-07")).json()) == list(room)
    missing = await operator.http.get("/status/rooms/nope")
    assert (missing.status_code, missing.json()) == (404, {"error": "Room nope not found"})
    health = await operator.http.get("/health")
    assert (health.status_code, health.json()["status"]) == (200, "healthy")
    assert health.json()["checks"]["roomServer"]["reachable"] is True
    metrics = (await operator.http.get("/metrics")).text
    for name in (
        "room_operator_reconcile_attempts_total ",
        "room_operator_reconcile_successes_total ",
        "room_operator_reconcile_failures_total 0.0",
        "room_operator_reconcile_duration_seconds_count ",
        "room_operator_queued_requests ",
        "room_operator_active_reconciliations ",
        "room_operator_drift_detected_total ",
        'room_operator_phase_duration_seconds_count{phase="PLANNING"}',
        'room_operator_phase_duration_seconds_count{phase="VERIFY"}',
        "room_operator_room_server_request_duration_seconds_count ",
        'room_operator_room_server_requests_total{outcome="2xx"}',
    ):
        assert name in metrics, name
    for path in ("/rooms/nope", "/rooms/nope/history", "/runs/nope"):
        assert (await operator.http.get(path)).status_code == 404
    assert (await operator.http.post("/rooms/nope/reconcile")).status_code == 404
    assert (await operator.http.delete("/rooms/nope")).status_code == 404
    assert (await operator.http.get("/audit", params={"count": "many"})).status_code == 400
    assert (await operator.http.get("/docs")).status_code == 200
    # A room's status is serialised once per change: a change shows at once.
    assert (await operator.http.delete("/rooms/room-lab-07")).status_code == 200
    assert (await operator.http.get("/status/rooms/room-lab-07")).json()["managed"] is False
    after = (await operator.http.get("/status")).json()
    assert next(r for r in after["rooms"] if r["roomId"] == "room-lab-07")["managed"] is False


async def test_audit_filters(operator: Operator) -> None:
    await operator.http.post("/apply", json=room_spec("room-lab-08"))
    await operator.http.post("/apply", json=room_spec("room-lab-09"))
    by_room = (await operator.http.get("/audit", params={"roomId": "room-lab-09"})).json()["entries"]
    assert by_room
    assert {e["roomId"] for e in by_room} == {"room-lab-09"}
    last_two = (await operator.http.get("/audit", params={"count": 2})).json()["entries"]
    assert len(last_two) == 2
    assert (await operator.http.get("/audit", params={"count": 0})).json() == {"entries": []}
    future = (await operator.http.get("/audit", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert future == {"entries": []}


async def test_reconcile_now_and_unmanage(operator: Operator, admin: httpx.AsyncClient) -> None:
    await operator.http.post("/apply", json=room_spec("room-lab-10"))
    await admin.delete("/room/room-lab-10/entities/E-agent-0")
    asked = await operator.http.post("/rooms/room-lab-10/reconcile")
    assert asked.status_code == 202
    location = asked.headers["Location"]
    async with asyncio.timeout(10):
        await operator.controller.wait_idle()
    assert (await operator.http.get(location)).json()["status"] == "succeeded"
    state = (await admin.get("/room/room-lab-10/state")).json()
    assert [e["id"] for e in state["entities"]] == ["E-agent-0", "E-agent-1"]
    gone = await operator.http.delete("/rooms/room-lab-10")
    assert gone.json() == {"roomId": "room-lab-10", "managed": False}
    assert (await operator.http.post("/rooms/room-lab-10/reconcile")).status_code == 404
    assert len((await admin.get("/room/room-lab-10/state")).json()["entities"]) == 2
    assert (await operator.http.get("/rooms/room-lab-10")).json()["managed"] is False


async def test_mcp_is_forwarded_to_the_room_server(operator: Operator) -> None:
    loaded = await operator.http.post(
        "/mcp/load", json={"providers": [{"id": "tool", "url": "http://127.0.0.1:9", "token": "x"}]}
    )
    assert loaded.json() == {"message": "MCP providers loaded", "count": 1}
    status = (await operator.http.get("/mcp/status")).json()
    assert status["enabled"] is True
    assert [p["id"] for p in status["providers"]] == ["tool"]
    assert (await operator.http.post("/mcp/load", json={"providers": None})).status_code == 400
    assert (await operator.http.post("/mcp/load", json={})).status_code == 400


async def test_events_stream_connected_replay_and_live(operator: Operator, tmp_path: Path) -> None:
    await operator.http.post("/apply", json=room_spec("room-lab-11"))
    async with operator.http.stream("GET", "/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        assert await anext(lines) == "event: connected"
        connected = json.loads((await anext(lines)).removeprefix("data: "))
        assert connected["message"] == "Connected to RoomOperator events"
        seen: list[str] = []
        async for line in lines:
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: "))["action"])
            if "spec.accepted" in seen:
                break
        assert seen[0] == "reconcile.planning"
        await operator.http.post("/apply", json=room_spec("room-lab-12"))
        async for line in lines:
            if (
                line.startswith("data: ")
                and json.loads(line.removeprefix("data: "))["roomId"] == "room-lab-12"
            ):
                break


async def test_openapi_describes_the_answer_of_every_route(operator: Operator) -> None:
    document = (await operator.http.get("/openapi.json")).json()
    operations = [
        (method, path, op) for path, item in document["paths"].items() for method, op in item.items()
    ]
    assert len(operations) == 19
    for method, path, operation in operations:
        described = {code: answer for code, answer in operation["responses"].items() if code != "422"}
        assert any(code.startswith("2") for code in described), (method, path)
        for code, answer in described.items():
            media = answer.get("content") or {}
            assert media, (method, path, code)
            assert all(kind.get("schema") for kind in media.values()), (method, path, code)
    schemas = document["components"]["schemas"]
    answers = {"/apply": "ApplyAnswer", "/status": "StatusAnswer", "/rooms/{roomId}": "RoomDetail"}
    for path, name in answers.items():
        method = "post" if path == "/apply" else "get"
        ok = document["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{name}"}
    assert list(schemas["RoomStatus"]["properties"])[:3] == ["roomId", "currentPhase", "isReconciling"]
    queued = document["paths"]["/rooms/{roomId}/reconcile"]["post"]["responses"]["202"]
    assert queued["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Queued"}
