"""Crash loops: `kill -9` of the operator, and separately of the room server, at random points of
applies, again and again; after each restart the room converges and nothing is torn or lost.

Each iteration applies a new spec and kills the target at a random point within the time an apply takes
(the last one that ended before its kill; 150 ms until one did; the first kill within 15 ms, so that one
lands inside an apply however fast the run is), restarts it on the same data, and sends the spec again
(a client whose request was cut off does; unchanged, it is a no-op). Then: the room converged to that
spec, the invariants of `stack.check_invariants` hold (the member's things kept, no kick but of what a
spec left out, no bytes stored twice, one audit entry per join and per kick), every answered apply's
revision is in the history and its run is readable. The short run kills the operator once and the room
server once; `make soak` the operator 50 times and, separately, the room server 20 times.
"""

from __future__ import annotations

import collections
import random
import time

import httpx
import pytest

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

RUNS = [
    pytest.param(("operator", "roomserver"), 2, id="short"),
    pytest.param(("operator",), 50, id="operator-soak", marks=pytest.mark.soak),
    pytest.param(("roomserver",), 20, id="roomserver-soak", marks=pytest.mark.soak),
]

pytestmark = [SHARED_LOOP, pytest.mark.slow]


def restart(stack: Stack, target: str) -> None:
    """`kill -9` the target, and start it again on the same data."""
    if target == "operator":
        stack.kill_operator()
        stack.start_operator()
    else:
        stack.kill_roomserver()
        stack.start_roomserver()


@pytest.mark.parametrize(("targets", "kills"), RUNS)
async def test_kill_9_at_random_points_of_applies_loses_nothing(
    running: Stack, targets: tuple[str, ...], kills: int
) -> None:
    stack, rng = running, random.Random(kills)
    room = f"room-crash-{'-'.join(targets)}-{kills}"  # each run its own room of the shared stack
    kills_before = collections.Counter(stack.kills)
    async with stack.room_server() as rs:
        await add_member_content(rs, room)
    history = versions(kills)
    acked: list[tuple[int, str]] = []  # (spec version, run id) of every apply answered before a kill
    cut_short, span = 0, 0.15
    for index, version in enumerate(history):
        task, sent = await apply(stack, room, version), time.perf_counter()
        # The first kill comes within 15 ms, inside the apply on any machine; each other one at a random
        # point within the time the last apply that ended before its kill took (150 ms until one did).
        if await interrupted(task, after=rng.uniform(0.0, 0.015 if index == 0 else span)):
            cut_short += 1
        else:
            span = max(0.015, time.perf_counter() - sent)
        restart(stack, targets[index % len(targets)])
        for answer in (await settle(task), await settle(await apply(stack, room, version))):
            if accepted(answer):
                acked.append((version.number, answer.split()[-1]))
        assert acked[-1][0] == version.number, "the spec sent again after the restart was accepted"
        await converged(stack, room, history[: index + 1], within=60)
        counted = await check_invariants(stack, room, history[: index + 1])
    async with httpx.AsyncClient(base_url=stack.operator_url, timeout=10) as op:
        revisions = (await op.get(f"/rooms/{room}/history")).json()["items"]
        assert {number for number, _ in acked} <= {item["specVersion"] for item in revisions}
        for _, run in acked:
            assert (await op.get(f"/runs/{run}")).status_code == 200, run
    print(f"\ncrash loop: {dict(stack.kills - kills_before)} kills, applies cut short {cut_short}, {counted}")
    assert cut_short >= 1, "no kill landed inside an apply"
