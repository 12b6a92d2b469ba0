"""Fixtures of the suites: the whole stack as processes (`stack.py`), started once for the session.

Starting `roomserver serve` and `roomop serve` costs seconds of imports each, so the fault, crash-loop
and load tests share one stack, each in its own room; they run in the session's event loop (the proxy
is served there), and each finds the stack calm (no faults) and both processes up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from tests.suites.stack import Stack, running_stack


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture
def running(shared_stack: Stack) -> Iterator[Stack]:
    """Room server, fault proxy (no faults) and operator, as processes on 127.0.0.1."""
    shared_stack.calm()
    yield shared_stack
    shared_stack.calm()
    if shared_stack.operator is None or shared_stack.operator.poll() is not None:
        shared_stack.start_operator()  # a test that failed between a kill and its restart
    if shared_stack.roomserver is None or shared_stack.roomserver.process.poll() is not None:
        shared_stack.start_roomserver()
