"""JSON property names on the operator's HTTP API match case-insensitively (the reference's ASP.NET Core web
defaults); spec files keep exact keys. Unit tests of `spec/keycase.py`, then the same over HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from roomoperator.service.bodies import McpLoadRequest
from roomoperator.spec.errors import SpecError
from roomoperator.spec.keycase import KeyCaseError, fold_keys
from roomoperator.spec.loading import load_text
from roomoperator.spec.models import RoomSpec
from tests.service.conftest import Operator, room_spec


def pascal(room_id: str, *, version: int = 1) -> dict[str, Any]:
    """A RoomSpec as the reference's .NET clients write it: every property name in PascalCase."""
    return {
        "ApiVersion": "v1",
        "Kind": "RoomSpec",
        "Metadata": {"Name": room_id, "Version": version, "Labels": {"Team": "Lab"}},
        "Spec": {
            "RoomId": room_id,
            "Entities": [
                {
                    "Id": "E-agent-1",
                    "Kind": "agent",
                    "DisplayName": "Agent One",
                    "Policy": {"Allow_Commands_From": "none", "SandboxMode": True},
                }
            ],
            "Policies": {"DmVisibilityDefault": "team", "MaxArtifactsPerEntity": 5},
        },
    }


def test_keys_fold_to_the_declared_names_down_the_model() -> None:
    folded = fold_keys(pascal("room-fold-01"), RoomSpec)
    assert list(folded) == ["apiVersion", "kind", "metadata", "spec"]
    entity = folded["spec"]["entities"][0]
    assert list(entity) == ["id", "kind", "displayName", "policy"]
    assert entity["policy"] == {"allow_commands_from": "none", "sandboxMode": True}
    assert folded["spec"]["policies"] == {"dmVisibilityDefault": "team", "maxArtifactsPerEntity": 5}
    # Free-form mappings hold the user's keys: never folded.
    assert folded["metadata"]["labels"] == {"Team": "Lab"}
    spec = RoomSpec.model_validate(folded)
    assert spec.spec.entities[0].policy.allow_commands_from == "none"


def test_free_form_config_keys_and_values_stay_as_sent() -> None:
    data = {
        "spec": {
            "roomId": "room-fold-02",
            "resources": [{"Name": "t", "Type": "mcp", "Config": {"URL": "x"}}],
        }
    }
    folded = fold_keys(data, RoomSpec)
    assert folded["spec"]["resources"][0] == {"name": "t", "type": "mcp", "config": {"URL": "x"}}


def test_unknown_keys_stay_unknown_and_scalars_pass_through() -> None:
    assert fold_keys({"RoomIdd": "x", "Kind": 3}, RoomSpec) == {"RoomIdd": "x", "kind": 3}
    assert fold_keys([1, "a"], RoomSpec) == [1, "a"]
    assert fold_keys({"Providers": [{"ID": "a", "Url": "u"}]}, McpLoadRequest) == {
        "providers": [{"id": "a", "url": "u"}]
    }


def test_two_keys_meaning_the_same_name_are_refused_naming_both() -> None:
    with pytest.raises(KeyCaseError) as refused:
        fold_keys({"metadata": {"name": "a", "Name": "b"}}, RoomSpec)
    assert str(refused.value) == "metadata: keys 'name' and 'Name' both mean 'name': send one of them"
    with pytest.raises(KeyCaseError, match="keys 'Spec' and 'SPEC' both mean 'spec'"):
        fold_keys({"Spec": {}, "SPEC": {}}, RoomSpec)


def test_spec_files_keep_exact_keys_with_their_hint() -> None:
    with pytest.raises(SpecError) as refused:
        load_text(json.dumps(pascal("room-fold-03")), source="pascal.json")
    assert "unknown key 'ApiVersion' (did you mean 'apiVersion'?)" in str(refused.value)


async def test_apply_takes_the_reference_clients_pascal_case(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    answer = await operator.http.post("/apply", json={"Spec": pascal("room-fold-04")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True
    state = (await admin.get("/room/room-fold-04/state")).json()
    [entity] = state["entities"]
    assert (entity["displayName"], entity["policy"]["allow_commands_from"]) == ("Agent One", "none")
    bare = await operator.http.post("/apply", json=pascal("room-fold-05"))  # no wrapper, same rule
    assert bare.status_code == 200, bare.text
    detail = (await operator.http.get("/rooms/room-fold-04")).json()
    assert detail["spec"]["spec"]["roomId"] == "room-fold-04"


async def test_apply_still_names_unknown_and_doubled_keys(operator: Operator) -> None:
    typo = pascal("room-fold-06")
    typo["Spec"]["Entities"][0]["DisplayNam"] = "x"
    answer = await operator.http.post("/apply", json=typo)
    assert answer.status_code == 400
    assert (
        "spec.entities[0].DisplayNam: unknown key 'DisplayNam' (did you mean 'displayName'?)" in answer.text
    )
    doubled = {"spec": room_spec("room-fold-07"), "Spec": room_spec("room-fold-07")}
    answer = await operator.http.post("/apply", json=doubled)
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_SPEC")
    assert answer.json()["errors"] == ["keys 'spec' and 'Spec' both mean 'spec': send one of them"]
    assert (await operator.http.get("/rooms/room-fold-07")).status_code == 404


async def test_mcp_load_and_rollback_bodies_fold_too(operator: Operator) -> None:
    loaded = await operator.http.post(
        "/mcp/load", json={"Providers": [{"Id": "tool-a", "URL": "http://127.0.0.1:9", "Token": "x"}]}
    )
    assert loaded.json() == {"message": "MCP providers loaded", "count": 1}
    assert (await operator.http.post("/apply", json=room_spec("room-fold-08"))).status_code == 200
    assert (
        await operator.http.post("/apply", json=room_spec("room-fold-08", version=2, entities=3))
    ).status_code == 200
    restored = await operator.http.post("/rooms/room-fold-08/rollback", json={"Revision": 1})
    assert restored.status_code == 200, restored.text
    assert restored.json()["revision"] == 3
    wrong = await operator.http.post("/rooms/room-fold-08/rollback", json={"Revision": 1, "REVISION": 2})
    assert wrong.status_code == 400
    assert "keys 'Revision' and 'REVISION' both mean 'revision'" in wrong.text
