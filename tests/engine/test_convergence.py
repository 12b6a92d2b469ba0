"""Property against the real room server: from any starting room, one apply converges the room to any
spec, and applying it again reads once and writes nothing; an artifact somebody else wrote stays."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.settings import GuardrailSettings
from roomoperator.spec.models import RoomSpec
from tests.engine.conftest import fast_settings
from tests.engine.test_planning import artifact_specs, entity_specs
from tests.support.roomserver import RoomServerProcess, start_roomserver_process

ROOMS = itertools.count()
OPEN_GUARDRAILS = GuardrailSettings(
    max_entities_kick_per_cycle=100,
    max_artifacts_delete_per_cycle=100,
    change_threshold=1.0,
    allow_empty_room=True,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RoomServerProcess, Path]]:
    folder = tmp_path_factory.mktemp("convergence")
    (folder / "s1").write_text("first seed\n")
    (folder / "s2").write_text("second seed, other bytes\n")
    handle = start_roomserver_process(folder / "roomserver")
    try:
        yield handle, folder
    finally:
        handle.stop()


room_bodies = st.fixed_dictionaries(
    {
        "entities": st.lists(entity_specs, max_size=4, unique_by=lambda e: e["id"]),
        "artifacts": st.lists(artifact_specs, max_size=3, unique_by=lambda a: a["name"]),
        "policies": st.fixed_dictionaries(
            {
                "dmVisibilityDefault": st.sampled_from(["public", "team", "owner"]),
                "maxArtifactsPerEntity": st.integers(min_value=0, max_value=500),
            }
        ),
    }
)


def as_spec(room_id: str, body: dict[str, Any], version: int) -> RoomSpec:
    return RoomSpec.model_validate(
        {"metadata": {"name": "prop", "version": version}, "spec": {"roomId": room_id, **body}}
    )


async def converge(
    handle: RoomServerProcess, folder: Path, before: dict[str, Any], after: dict[str, Any]
) -> None:
    room_id = f"room-prop-{next(ROOMS)}"
    async with (
        RoomServerClient(handle.url, token=handle.token) as client,
        httpx.AsyncClient(
            base_url=handle.url, headers={"Authorization": f"Bearer {handle.admin_token}"}
        ) as other,
    ):
        reconciler = Reconciler(client, fast_settings(guardrails=OPEN_GUARDRAILS))
        start = await reconciler.reconcile(as_spec(room_id, before, 1), seed_root=folder)
        assert start.success, start.warnings
        files = {"spec": (None, '{"name": "notes", "type": "document"}'), "data": ("notes", b"by admin")}
        assert (await other.post(f"/rooms/{room_id}/artifacts", files=files)).status_code == 201
        result = await reconciler.reconcile(as_spec(room_id, after, 2), seed_root=folder)
        assert result.success, result.warnings
        assert result.converged, result.remaining
        assert result.plan is not None
        assert {"kind": "artifact", "name": "notes", "createdBy": "admin"} in result.plan["unmanaged"]
        assert "notes" in {a.name for a in (await client.get_state(room_id)).artifacts}
        again = await reconciler.reconcile(as_spec(room_id, after, 2), seed_root=folder)
        assert (again.requests, again.applied, again.converged) == (1, (), True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=room_bodies, after=room_bodies)
def test_any_room_converges_to_any_spec(
    server: tuple[RoomServerProcess, Path], before: dict[str, Any], after: dict[str, Any]
) -> None:
    handle, folder = server
    asyncio.run(converge(handle, folder, before, after))
