"""The fault suite: the real operator and room server as processes, the TCP fault proxy between them.

While specs change (and, as drift, an entity the operator declared is removed on the room server behind
its back), the proxy delays requests past the operator's timeout, resets connections, cuts answers
mid-body and answers 500/503/429 with `Retry-After` itself, at a configured rate; the room server is
killed (`kill -9`) during an apply and restarted, then the operator is, and for a while every connection
to the room server is refused. Then the faults stop, and the invariants of `stack.check_invariants` must
hold: the room converged to the last spec (the drifted entities restored), nothing a member made was
removed, no kick but of what a spec left out, no artifact stored the same bytes twice, and one audit
entry per join and per kick the room server logged. The short run applies 4 specs (one of each
disaster); `make soak` 16 at a 20 % fault rate.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass

import pytest

from tests.suites.faults import FAULTS, FaultRates
from tests.suites.stack import (
    SHARED_LOOP,
    Stack,
    accepted,
    add_member_content,
    apply,
    check_invariants,
    converged,
    interrupted,
    settle,
    versions,
)

pytestmark = [SHARED_LOOP, pytest.mark.slow]


@dataclass(frozen=True)
class Run:
    specs: int
    rate: float


RUNS = [pytest.param(Run(4, 0.25), id="short"), pytest.param(Run(16, 0.2), id="soak", marks=pytest.mark.soak)]


@pytest.mark.parametrize("run", RUNS)
async def test_faults_and_kills_between_operator_and_room_server_break_no_invariant(
    run: Run, running: Stack
) -> None:
    stack, rng = running, random.Random(run.specs)
    room = f"room-faults-{run.specs}"  # each run its own room of the shared stack
    kills_before, faults_before = collections.Counter(stack.kills), collections.Counter(stack.proxy.counts)
    async with stack.room_server() as rs:
        await add_member_content(rs, room)
    history = versions(run.specs)
    stack.proxy.rates = FaultRates.uniform(run.rate, delay_seconds=2.0)
    stack.proxy.script = list(FAULTS)  # one of each for certain, then drawn at the rate
    cut_short, answers, drifted = 0, [], collections.Counter[str]()
    for index, version in enumerate(history):
        if index > 0:  # drift: an entity the operator declared is removed on the room server directly
            entity = rng.choice(history[index - 1].entities)
            async with stack.room_server() as rs:
                removed = await rs.delete(f"/room/{room}/entities/{entity}")
            assert removed.status_code in (204, 404), removed.text
            drifted[entity] += removed.status_code == 204
        task = await apply(stack, room, version)
        if index % 3 == 1:  # the room server dies under the apply
            cut_short += await interrupted(task, after=rng.uniform(0.01, 0.15))
            stack.kill_roomserver()
            stack.start_roomserver()
            answers.append(await settle(task))
        elif index % 3 == 2:  # the operator dies under the apply, and resumes it on restart
            cut_short += await interrupted(task, after=rng.uniform(0.01, 0.15))
            stack.kill_operator()
            answers.append(await settle(task))
            stack.start_operator()
        elif index > 0:  # the room server refuses every connection for a while
            stack.proxy.down = True
            await interrupted(task, after=rng.uniform(0.2, 1.0))
            stack.proxy.down = False
            answers.append(await settle(task))
        else:
            answers.append(await settle(task))
    stack.proxy.rates = FaultRates()
    if not accepted(answers[-1]):  # refused under faults, so never accepted: sent again
        answers.append(await settle(await apply(stack, room, history[-1])))
        assert accepted(answers[-1]), answers
    await converged(stack, room, history, within=90)
    counted = await check_invariants(stack, room, history, drifted=drifted)
    kills, faults = stack.kills - kills_before, stack.proxy.counts - faults_before
    injected = sum(faults.values())
    print(
        f"\nfault suite: {run.specs} specs, faults {dict(faults)}, kills {dict(kills)},"
        f" applies cut short {cut_short}, answers {answers}, {counted}"
    )
    assert injected >= len(FAULTS)
    assert kills["roomserver"] >= 1
    assert kills["operator"] >= 1
