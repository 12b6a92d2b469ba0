"""The drift soak (issue 13): many rooms under continuous spec changes and direct drift, with faults on
20 % of the requests between the operator and the room server; then the faults stop and every room must
converge within a bound, with the invariants of `stack.check_invariants` holding for each.

Workers (one per slice of the rooms, so each room's specs go out in order) apply spec after spec, each
adding an agent and leaving the oldest out (one kick, within the guardrails) and changing an artifact's
bytes; before half of them an operator-declared entity is removed on the room server directly (drift).
At the end: the last spec of each room is sent again where it was never accepted, the faults stop, and
every room converges (no room stuck); every answered apply's run is readable; the member's things are
all there; no kick but of what a spec left out; no artifact stored the same bytes twice; the audit holds
one entry per join and kick. Short (`make test`): 10 rooms for 20 s; `make soak`: 50 rooms for
`DRIFT_SOAK_MINUTES` (default 5) minutes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.suites.faults import FaultRates
from tests.suites.stack import (
    SHARED_LOOP,
    Stack,
    Version,
    accepted,
    add_member_content,
    apply,
    check_invariants,
    converged,
    settle,
)

pytestmark = [SHARED_LOOP, pytest.mark.slow]

AGENTS = 30
WORKERS = 5
CONVERGE_WITHIN = 60.0
"""Seconds every room has, once the faults stop, to hold its last spec and be Ready at it."""
PACE = (0.3, 1.2)
"""Seconds a worker waits between two specs: a steady stream of changes, not a flood (the operator may
fall behind a room by several specs, and a jump over many would pass the change-ratio guardrail)."""


@dataclass(frozen=True)
class Run:
    rooms: int
    seconds: float


RUNS = [
    pytest.param(Run(10, 20), id="short"),
    pytest.param(
        Run(50, float(os.environ.get("DRIFT_SOAK_MINUTES", "5")) * 60),
        id="soak",
        marks=pytest.mark.soak,
    ),
]


def version(room: str, number: int) -> Version:
    """The room's spec `number`: a window of agents sliding by one, and new bytes for `plan` each time
    (for `notes` every second time); bytes carry the room's name, so no two rooms share a seed."""
    agents = [f"E-agent-{index}" for index in range(number - 1, number - 1 + AGENTS)]
    artifacts = {
        "plan": f"{room} plan v{number}\n".encode(),
        "notes": f"{room} notes v{(number + 1) // 2}\n".encode(),
    }
    return Version(number, agents, artifacts)


@dataclass
class Ledger:
    history: dict[str, list[Version]] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)
    drifted: dict[str, collections.Counter[str]] = field(default_factory=dict)

    def room(self, room: str) -> None:
        self.history[room], self.answers[room], self.drifted[room] = [], [], collections.Counter()


async def worker(stack: Stack, ledger: Ledger, rooms: list[str], rng: random.Random, deadline: float) -> None:
    async with stack.room_server() as rs:
        while time.monotonic() < deadline:
            room = rng.choice(rooms)
            history = ledger.history[room]
            if history and rng.random() < 0.5:  # drift: an entity the operator declared, removed directly
                entity = rng.choice(history[-1].entities)
                removed = await rs.delete(f"/room/{room}/entities/{entity}")
                assert removed.status_code in (204, 404), removed.text
                ledger.drifted[room][entity] += removed.status_code == 204
            history.append(version(room, len(history) + 1))
            ledger.answers[room].append(await settle(await apply(stack, room, history[-1])))
            await asyncio.sleep(rng.uniform(*PACE))  # pacing the stream of changes, not awaiting an event


@pytest.mark.timeout(900)
@pytest.mark.parametrize("run", RUNS)
async def test_rooms_under_changes_drift_and_faults_all_converge_with_every_invariant(
    run: Run, running: Stack
) -> None:
    stack, rng = running, random.Random(run.rooms)
    rooms = [f"room-drift-{run.rooms}-{index:02d}" for index in range(run.rooms)]
    ledger = Ledger()
    async with stack.room_server() as rs:
        for room in rooms:
            ledger.room(room)
            await add_member_content(rs, room)
    faults_before = collections.Counter(stack.proxy.counts)
    stack.proxy.rates = FaultRates.uniform(0.2, delay_seconds=2.0)
    started = time.monotonic()
    deadline = started + run.seconds
    await asyncio.gather(
        *(
            worker(stack, ledger, rooms[index::WORKERS], random.Random(rng.random()), deadline)
            for index in range(WORKERS)
        )
    )
    stack.proxy.rates = FaultRates()
    faults = stack.proxy.counts - faults_before
    for room in rooms:  # a last spec refused under faults was never accepted: the client sends it again
        if not accepted(ledger.answers[room][-1]):
            ledger.answers[room].append(await settle(await apply(stack, room, ledger.history[room][-1])))
            assert accepted(ledger.answers[room][-1]), ledger.answers[room]
    calm = time.monotonic()
    await asyncio.gather(
        *(converged(stack, room, ledger.history[room], within=CONVERGE_WITHIN) for room in rooms)
    )
    settled_in = time.monotonic() - calm
    totals: collections.Counter[str] = collections.Counter()
    for room in rooms:
        totals.update(await check_invariants(stack, room, ledger.history[room], drifted=ledger.drifted[room]))
    async with httpx.AsyncClient(base_url=stack.operator_url, timeout=30) as op:
        runs = [answer.split()[-1] for room in rooms for answer in ledger.answers[room] if accepted(answer)]
        for run_id in runs:
            assert (await op.get(f"/runs/{run_id}")).status_code == 200, run_id
        for room in rooms:
            conditions = {c["type"]: c for c in (await op.get(f"/rooms/{room}")).json()["conditions"]}
            assert conditions.get("Stalled", {}).get("status") != "True", conditions
    applies = sum(len(answers) for answers in ledger.answers.values())
    refused = sum(not accepted(answer) for answers in ledger.answers.values() for answer in answers)
    print(
        f"\ndrift soak: {run.rooms} rooms for {run.seconds:.0f} s: {applies} applies ({refused} not accepted"
        f" under faults), {sum(sum(d.values()) for d in ledger.drifted.values())} drifted entities,"
        f" faults {dict(faults)} ({sum(faults.values())}); all converged {settled_in:.1f} s after the faults"
        f" stopped; {len(runs)} runs readable; {dict(totals)}"
    )
    assert sum(faults.values()) > 0


async def test_a_revision_whose_run_failed_is_still_the_one_converged_to(running: Stack) -> None:
    stack, room = running, "room-drift-failed-run"
    async with stack.room_server() as rs:
        await add_member_content(rs, room)
    first, second = version(room, 1), version(room, 2)
    assert accepted(await settle(await apply(stack, room, first)))
    await converged(stack, room, [first], within=60)
    stack.proxy.script = ["status"] * 12  # every request of the next run answered 500 by the proxy
    answer = await settle(await apply(stack, room, second))
    stack.calm()
    async with httpx.AsyncClient(base_url=stack.operator_url, timeout=30) as op:
        history = (await op.get(f"/rooms/{room}/history")).json()["items"]
        assert [item["specVersion"] for item in history][-1] == 2, (answer, history)
    await converged(stack, room, [first, second], within=30)
