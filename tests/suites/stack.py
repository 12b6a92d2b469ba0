"""The whole stack as processes, for the fault and crash suites: `roomserver serve` and `roomop serve` as
children on random 127.0.0.1 ports, the TCP fault proxy (`faults.py`) between them, each side killable
with `kill -9` and restartable on the same data; and the invariants every suite checks afterwards.

The room server's token comes from `ROOMSERVER_TOKENS` (set for each child alone), so it survives restarts;
a restarted room server listens on a new port and the proxy is pointed at it, as a load balancer would.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import json
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomcontract.scopes import ALL_SCOPES
from tests.service.test_durability import roomop_serve
from tests.suites.faults import FaultRates, TcpFaultProxy, tcp_fault_proxy
from tests.support.roomserver import RoomServerHandle, RoomServerProcess, start_roomserver_process
from tests.support.servers import free_port

SHARED_LOOP = pytest.mark.asyncio(loop_scope="session")
"""`pytestmark` of the modules that use the `running` stack: the loop its proxy runs in (`conftest.py`)."""
MEMBER = "E-human-member"
MEMBER_NOTES, MEMBER_PRIVATE = "member-notes", "member-private"
OPERATOR_ENV = {
    "ROOMOP_RECONCILIATION__RATE_LIMIT_PER_SECOND": "2000",
    "ROOMOP_RECONCILIATION__INTERVAL_SECONDS": "1",
    "ROOMOP_RECONCILIATION__FAILURE_BACKOFF_INITIAL_SECONDS": "0.2",
    "ROOMOP_RECONCILIATION__FAILURE_BACKOFF_MAX_SECONDS": "2",
    "ROOMOP_ROOM_SERVER__TIMEOUT_SECONDS": "1.5",
    "ROOMOP_LOGGING__LEVEL": "critical",  # stderr is a pipe nobody reads while the test runs
}


@dataclass
class Version:
    """One spec of the room: its agents and its artifacts' seed bytes. The spec is the roster (membership
    `closed`, the default), so it lists the member too, as a human; an agent it leaves out is kicked."""

    number: int
    entities: list[str]
    artifacts: dict[str, bytes]

    def document(self, room: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "RoomSpec",
            "metadata": {"name": room, "version": self.number},
            "spec": {
                "roomId": room,
                "entities": [
                    {"id": MEMBER, "kind": "human"},
                    *({"id": entity, "kind": "agent"} for entity in self.entities),
                ],
                "artifacts": [
                    {
                        "name": name,
                        "type": "document",
                        "workspace": "shared",
                        "seedFrom": f"seeds/{name}-{digest(data)[:12]}.md",
                    }
                    for name, data in self.artifacts.items()
                ],
            },
        }


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def versions(count: int, *, entities: int = 12, step: int = 6) -> list[Version]:
    """`count` specs, each adding `step` agents, leaving the oldest one out (a kick, within the guardrail)
    and changing the bytes of one artifact (of the other every second time); no spec goes back to bytes
    an earlier one had."""
    made = []
    for number in range(1, count + 1):
        first = number - 1
        ids = [f"E-agent-{i}" for i in range(first, entities + step * (number - 1))]
        artifacts = {"plan": f"plan v{number}\n".encode(), "notes": f"notes v{(number + 1) // 2}\n".encode()}
        made.append(Version(number, ids, artifacts))
    return made


@dataclass
class Stack:
    root: Path
    proxy: TcpFaultProxy
    proxy_url: str
    token: str
    port: int = field(default_factory=free_port)
    roomserver: RoomServerProcess | None = None
    operator: subprocess.Popen[bytes] | None = None
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    _exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_roomserver(self) -> None:
        document = {
            "tokens": [{"name": "suite", "sha256": digest(self.token.encode()), "scopes": list(ALL_SCOPES)}]
        }
        with _environment(ROOMSERVER_TOKENS=json.dumps(document)):  # the child's, not this process's
            self.roomserver = start_roomserver_process(self.root / "roomserver")
        self.proxy.upstream = self.roomserver.url

    def kill_roomserver(self) -> None:
        assert self.roomserver is not None
        self.roomserver.kill()
        self.kills["roomserver"] += 1

    def start_operator(self) -> None:
        upstream = RoomServerHandle(self.proxy_url, self.token, self.token, self.root, app=None)
        settings = {**OPERATOR_ENV, "ROOMOP_SEEDS__ROOTS": json.dumps([str(self.root / "specs")])}
        self.operator = self._exits.enter_context(
            roomop_serve(upstream, self.root / "operator" / "operator.db", self.port, **settings)
        )

    def kill_operator(self) -> None:
        assert self.operator is not None
        self.operator.send_signal(signal.SIGKILL)
        self.operator.wait(timeout=10)
        self.kills["operator"] += 1

    def write_seeds(self, version: Version) -> None:
        folder = self.root / "specs" / "seeds"
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in version.artifacts.items():
            (folder / f"{name}-{digest(data)[:12]}.md").write_bytes(data)

    def room_server(self, *, limits: httpx.Limits | None = None, timeout: float = 10) -> httpx.AsyncClient:
        """A direct client of the room server (no proxy): the truth, and the member's writes."""
        assert self.roomserver is not None
        auth = {"Authorization": f"Bearer {self.token}"}
        pool = limits or httpx.Limits()
        return httpx.AsyncClient(base_url=self.roomserver.url, headers=auth, timeout=timeout, limits=pool)

    def calm(self) -> None:
        """No faults, no refusals, nothing scripted: as a test that shares the stack expects it."""
        self.proxy.rates, self.proxy.down = FaultRates(), False
        self.proxy.script.clear()

    def close(self) -> None:
        self._exits.close()
        if self.roomserver is not None:
            self.roomserver.stop()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """`values` in `os.environ` for the duration of the block (a child started in it inherits them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.asynccontextmanager
async def running_stack(root: Path) -> AsyncIterator[Stack]:
    """Room server, proxy (no faults until `stack.proxy.rates` says so) and operator, all started."""
    async with tcp_fault_proxy("http://127.0.0.1:9") as (proxy, url):
        stack = Stack(root, proxy, url, secrets.token_urlsafe(24))
        try:
            stack.start_roomserver()
            (root / "specs").mkdir(exist_ok=True)  # the seed root; the store's folder is apart from it
            (root / "operator").mkdir(exist_ok=True)
            stack.start_operator()
            yield stack
        finally:
            stack.close()


async def add_member_content(rs: httpx.AsyncClient, room: str) -> None:
    """What a member makes in the room before the operator manages it: itself, a room artifact, a
    private one. The operator must never remove any of it."""
    joined = await rs.post(f"/room/{room}/join", json={"entityId": MEMBER, "kind": "human"})
    assert joined.status_code == 201, joined.text
    me = {"X-Entity-Id": MEMBER}
    for path, name in (
        (f"/rooms/{room}/artifacts", MEMBER_NOTES),
        (f"/rooms/{room}/entities/{MEMBER}/artifacts", MEMBER_PRIVATE),
    ):
        files = {
            "spec": (None, json.dumps({"name": name, "type": "document"})),
            "data": (name, name.encode()),
        }
        made = await rs.post(path, files=files, headers=me)
        assert made.status_code == 201, made.text


async def apply(stack: Stack, room: str, version: Version) -> asyncio.Task[httpx.Response]:
    """POST the version to the operator; the task ends with its answer (or the error a kill gives)."""
    stack.write_seeds(version)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(base_url=stack.operator_url, timeout=120) as http:
            return await http.post("/apply", json=version.document(room))

    return asyncio.create_task(post())


async def interrupted(task: asyncio.Task[httpx.Response], *, after: float) -> bool:
    """Wait `after` seconds or until the apply ends; whether it was still running."""
    done, _ = await asyncio.wait([task], timeout=after)
    return not done


async def settle(task: asyncio.Task[httpx.Response]) -> str:
    """The apply's answer (its status and code, and the run's id when accepted), or the error a kill gave."""
    try:
        answer = await task
    except httpx.HTTPError as exc:
        return type(exc).__name__
    body = answer.json()
    return f"{answer.status_code} {body.get('code')} {body.get('correlationId')}"


def accepted(answer: str) -> bool:
    return answer.startswith(("200", "202"))


def matches(state: dict[str, Any], history: list[Version]) -> bool:
    """The room holds exactly the last spec's entities, and its artifacts with their bytes."""
    entities = {e["id"] for e in state["entities"]}
    artifacts = {a["name"]: a["sha256"] for a in state["artifacts"]}
    wanted = {name: digest(data) for name, data in history[-1].artifacts.items()}
    return entities == {*history[-1].entities, MEMBER} and wanted.items() <= artifacts.items()


async def converged(stack: Stack, room: str, history: list[Version], *, within: float) -> None:
    """Wait until the room matches the last of `history` on the room server and the operator says it is
    Ready at that version; a reconcile is asked for now and then (past any failure backoff). Both are
    polled: convergence after faults has no single event to await."""
    version = history[-1]
    async with (
        stack.room_server() as rs,
        httpx.AsyncClient(base_url=stack.operator_url, timeout=10) as op,
    ):
        state: dict[str, Any] = {}
        view: dict[str, Any] = {}
        try:
            async with asyncio.timeout(within):
                for attempt in range(1_000_000):
                    state = (await rs.get(f"/room/{room}/state")).json()
                    view = (await op.get(f"/rooms/{room}")).json()
                    ready = [c for c in view.get("conditions", []) if c["type"] == "Ready"]
                    if (
                        matches(state, history)
                        and view.get("specVersion") == version.number
                        and ready
                        and ready[0]["status"] == "True"
                    ):
                        return
                    if attempt % 20 == 19:
                        await op.post(f"/rooms/{room}/reconcile")
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(
                f"room {room} did not converge to v{version.number}: {summary(state, view)}"
            ) from None


def summary(state: dict[str, Any], view: dict[str, Any]) -> str:
    """The room as the room server and the operator see it, in a line or two."""
    entities = sorted(e["id"] for e in state.get("entities", []))
    artifacts = {a["name"]: a["sha256"][:8] for a in state.get("artifacts", [])}
    run = view.get("lastRun") or {}
    conditions = [(c["type"], c["status"], c["reason"]) for c in view.get("conditions", [])]
    return (
        f"entities {entities}, artifacts {artifacts}; operator: specVersion {view.get('specVersion')},"
        f" {conditions}, last run {run.get('code')} {run.get('errors')} remaining {run.get('remaining')}"
    )


async def room_log(rs: httpx.AsyncClient, room: str) -> list[dict[str, Any]]:
    """Every event the room server stored for `room`, replayed from the start."""
    revision = (await rs.get(f"/room/{room}/state")).json()["revision"]
    found: list[dict[str, Any]] = []
    if revision == 0:
        return found
    headers = {"Last-Event-ID": "0"}
    async with rs.stream(
        "GET", "/events", params={"roomId": room}, headers=headers, timeout=httpx.Timeout(10, read=10)
    ) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: ") and (event := json.loads(line.removeprefix("data: "))).get("id"):
                found.append(event)
                if int(event["id"]) >= revision:
                    break
    return found


async def check_invariants(
    stack: Stack, room: str, history: list[Version], *, drifted: collections.Counter[str] | None = None
) -> dict[str, int]:
    """What every suite asserts once the room has converged to `history[-1]` (`drifted`: the entities
    the test removed on the room server behind the operator's back); returns what was counted."""
    drift = drifted or collections.Counter()
    async with (
        stack.room_server() as rs,
        httpx.AsyncClient(base_url=stack.operator_url, timeout=30) as op,
    ):
        state = (await rs.get(f"/room/{room}/state")).json()
        # The member's things are all there.
        assert MEMBER in {e["id"] for e in state["entities"]}
        assert MEMBER_NOTES in {a["name"] for a in state["artifacts"]}
        private = await rs.get(
            f"/rooms/{room}/entities/{MEMBER}/artifacts/{MEMBER_PRIVATE}", headers={"X-Entity-Id": MEMBER}
        )
        assert private.content == MEMBER_PRIVATE.encode()
        log = await room_log(rs, room)
        payloads = [e["payload"] for e in log]
        joins = collections.Counter(p["data"]["entity"]["id"] for p in payloads if p["kind"] == "ENTITY.JOIN")
        leaves = collections.Counter(p["data"]["entityId"] for p in payloads if p["kind"] == "ENTITY.LEAVE")
        # Kicks: only what a spec left out (one a spec, within the guardrail), never the member; the other
        # removals are the test's own drift.
        removed = set().union(*({*a.entities} - {*b.entities} for a, b in itertools.pairwise(history)))
        kicks = leaves - drift
        assert set(kicks) <= removed, f"kicked what no spec left out: {set(kicks) - removed}"
        # Every artifact version is new bytes: at-least-once delivery never stored the same bytes twice.
        versions_seen = 0
        for name in history[-1].artifacts:
            items = (await rs.get(f"/rooms/{room}/artifacts/{name}/versions")).json()["items"]
            hashes = [item["sha256"] for item in items]
            versions_seen += len(hashes)
            assert all(a != b for a, b in itertools.pairwise(hashes)), f"{name}: same bytes twice {hashes}"
            distinct = {digest(v.artifacts[name]) for v in history if name in v.artifacts}
            assert set(hashes) <= distinct, name
        # The audit is whole: one `entity.joined` for each join the operator made. A join retried after
        # an answer was lost is one entry saying how many attempts it took: when the test's drift removed
        # the entity between two attempts, both joined it (the room server logged two joins).
        params = {"roomId": room, "action": "entity.joined", "count": 10_000}
        audit = (await op.get("/audit", params=params)).json()["entries"]
        audited = collections.Counter(e["metadata"]["entityId"] for e in audit)
        retried = collections.Counter[str]()
        for entry in audit:
            retried[entry["metadata"]["entityId"]] += int(entry["metadata"].get("attempts", "1")) - 1
        operator_joins = {entity: n for entity, n in joins.items() if entity != MEMBER}
        made = collections.Counter(operator_joins)
        if any(not audited[e] <= made[e] <= audited[e] + retried[e] for e in {*made, *audited}):
            whole = (await op.get("/audit", params={"roomId": room, "count": 10_000})).json()["entries"]
            odd = {*(made - audited), *(audited - made)}
            told = [
                (e["timestamp"], e["action"], e["correlationId"][:8], e["metadata"])
                for e in whole
                if odd & {str(v) for v in e["metadata"].values()}
                or e["action"].startswith("reconcile.settled")
            ]
            logged = [
                (e["id"], p["kind"]) for e, p in zip(log, payloads, strict=True) if odd & {*map(str, _ids(p))}
            ]
            raise AssertionError(
                f"{room}: joins without an entry: {made - audited} (retries {retried});"
                f" entries without a join: {audited - made};"
                f" room-server events {logged}; audit {told}"
            )
        kicked = (await op.get("/audit", params={**params, "action": "entity.kicked"})).json()["entries"]
        assert collections.Counter(e["metadata"]["entityId"] for e in kicked) == kicks
    return {
        "events": len(log),
        "joins": sum(joins.values()),
        "kicks": sum(kicks.values()),
        "drift removals": sum(drift.values()),
        "versions": versions_seen,
    }


def _ids(payload: dict[str, Any]) -> list[object]:
    """The entity ids an event's payload names (its entity's, or its `entityId`)."""
    data = payload.get("data") or {}
    return [(data.get("entity") or {}).get("id"), data.get("entityId")]
