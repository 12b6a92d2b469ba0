"""The pure planner: every change kind, ordering, blocked items, reference diff lists, properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from roomoperator.cli.rendering import plan_summary
from roomoperator.model.changes import Fields, Kind, Op, Unmanaged, payload_json
from roomoperator.model.codes import BlockCode
from roomoperator.model.observed import ObservedRoom
from roomoperator.model.seeds import LocalSeed, SeedDigest
from roomoperator.planning.difflists import diff_lists
from roomoperator.planning.ordering import dependency_order
from roomoperator.planning.planjson import FORMAT_VERSION, plan_to_json
from roomoperator.planning.planner import plan_room
from roomoperator.spec.models import RoomSpec
from tests.engine.planning_model import apply_plan


def make_spec(**body: Any) -> RoomSpec:
    return RoomSpec.model_validate(
        {"metadata": {"name": "lab", "version": 1}, "spec": {"roomId": "room-test-1", **body}}
    )


def room(**state: Any) -> ObservedRoom:
    return ObservedRoom.model_validate({"roomId": "room-test-1", "revision": 3, **state})


def seed(sha: str = "a" * 64, size: int = 3) -> LocalSeed:
    return LocalSeed(path=Path("/seeds/x"), digest=SeedDigest(sha256=sha, fingerprint="f" * 64, size=size))


AGENT = {"id": "E-agent-1", "kind": "agent", "displayName": "Agent", "capabilities": ["read_artifacts"]}
OBSERVED_AGENT = {
    "id": "E-agent-1",
    "kind": "agent",
    "displayName": "Agent",
    "visibility": "team",
    "capabilities": ["read_artifacts"],
    "policy": {"allow_commands_from": "any", "sandbox_mode": False, "env_whitelist": [], "scopes": []},
}
DOC = {"name": "doc", "type": "document", "workspace": "shared", "tags": ["t"], "seedFrom": "seeds/x"}
OPERATOR = "operator"
OBSERVED_DOC = {
    "name": "doc",
    "type": "document",
    "workspace": "shared",
    "tags": ["t"],
    "sha256": "a" * 64,
    "version": 2,
    "createdBy": OPERATOR,
    "updatedBy": OPERATOR,
}


def test_empty_room_gets_joins_seeds_and_promotes_in_order() -> None:
    spec = make_spec(
        entities=[AGENT],
        artifacts=[{**DOC, "promoteAfterSeed": True}],
        policies={"dmVisibilityDefault": "public"},
    )
    plan = plan_room(spec, room(), seeds={"doc": seed()})
    assert [(c.op, c.name) for c in plan] == [
        (Op.JOIN, "E-agent-1"),
        (Op.SEED, "doc"),
        (Op.PROMOTE, "doc"),
        (Op.SET_POLICY, "dmVisibilityDefault"),
    ]
    join = plan.changes[0]
    assert payload_json(join.after)["policy"] == {
        "allow_commands_from": "any",
        "sandbox_mode": False,
        "env_whitelist": [],
        "scopes": [],
    }
    diff = diff_lists(plan)
    assert diff.to_join == ["E-agent-1"]
    assert diff.to_seed == ["doc"]
    assert diff.to_promote == ["doc"]
    assert diff.to_apply == ["policy:dmVisibilityDefault=public"]


def test_converged_room_plans_nothing() -> None:
    spec = make_spec(entities=[AGENT], artifacts=[DOC])
    plan = plan_room(spec, room(entities=[OBSERVED_AGENT], artifacts=[OBSERVED_DOC]), seeds={"doc": seed()})
    assert plan.empty
    assert plan_summary(plan_to_json(plan)) == "No changes. The room matches its spec."
    empty = diff_lists(plan_room(make_spec(), room(), seeds={}))
    assert diff_lists(plan).model_dump(exclude={"to_ensure"}) == empty.model_dump(exclude={"to_ensure"})
    assert diff_lists(plan).to_ensure == ["E-agent-1"]


def test_update_lists_only_differing_fields() -> None:
    observed = {**OBSERVED_AGENT, "displayName": "Old", "capabilities": ["x", "read_artifacts"]}
    plan = plan_room(make_spec(entities=[AGENT]), room(entities=[observed]), seeds={})
    (change,) = plan.changes
    assert change.op is Op.UPDATE
    assert change.before == Fields({"displayName": "Old", "capabilities": ["read_artifacts", "x"]})
    assert change.after == Fields({"displayName": "Agent", "capabilities": ["read_artifacts"]})
    assert (diff_lists(plan).to_update, diff_lists(plan).to_ensure) == (["E-agent-1"], ["E-agent-1"])


def test_capability_order_is_not_a_difference() -> None:
    spec = make_spec(entities=[{**AGENT, "capabilities": ["b", "a"]}])
    plan = plan_room(spec, room(entities=[{**OBSERVED_AGENT, "capabilities": ["a", "b"]}]), seeds={})
    assert plan.empty


def test_kick_and_delete_what_is_not_declared_unless_protected() -> None:
    observed = room(entities=[OBSERVED_AGENT, {**OBSERVED_AGENT, "id": "E-keep"}], artifacts=[OBSERVED_DOC])
    plan = plan_room(make_spec(), observed, seeds={}, protected=frozenset({"E-keep"}), operator=OPERATOR)
    assert [(c.op, c.name, c.blocked.code if c.blocked else None) for c in plan] == [
        (Op.KICK, "E-agent-1", None),
        (Op.KICK, "E-keep", BlockCode.PROTECTED),
        (Op.DELETE_ARTIFACT, "doc", None),
    ]
    diff = diff_lists(plan)
    assert (diff.to_kick, diff.to_delete_artifacts, diff.blocked) == (["E-agent-1"], ["doc"], ["E-keep"])


def test_only_what_the_operator_wrote_is_deleted_the_rest_is_unmanaged() -> None:
    artifacts = [
        {**OBSERVED_DOC, "name": "mine"},
        {**OBSERVED_DOC, "name": "meeting-notes", "createdBy": "E-human-owner", "updatedBy": "E-human-owner"},
        {**OBSERVED_DOC, "name": "edited", "updatedBy": "E-human-owner"},  # a member wrote the latest
        {**OBSERVED_DOC, "name": "old", "createdBy": None, "updatedBy": None},  # before authors were kept
        {**OBSERVED_DOC, "name": "admins", "createdBy": "admin", "updatedBy": "admin"},
    ]
    plan = plan_room(make_spec(), room(artifacts=artifacts), seeds={}, operator=OPERATOR)
    assert [(c.op, c.name) for c in plan] == [(Op.DELETE_ARTIFACT, "mine")]
    assert plan.unmanaged == (
        Unmanaged(Kind.ARTIFACT, "meeting-notes", "E-human-owner"),
        Unmanaged(Kind.ARTIFACT, "edited", OPERATOR),
        Unmanaged(Kind.ARTIFACT, "old", None),
        Unmanaged(Kind.ARTIFACT, "admins", "admin"),
    )
    assert diff_lists(plan).to_delete_artifacts == ["mine"]
    body = plan_to_json(plan)
    assert body["unmanaged"][0] == {"kind": "artifact", "name": "meeting-notes", "createdBy": "E-human-owner"}
    assert body["summary"]["total"] == 1
    # without the operator's name nothing counts as its own
    assert [c.name for c in plan_room(make_spec(), room(artifacts=artifacts), seeds={})] == []


def test_open_membership_keeps_undeclared_members_as_unmanaged() -> None:
    observed = room(entities=[OBSERVED_AGENT, {**OBSERVED_AGENT, "id": "E-guest"}])
    closed = plan_room(make_spec(entities=[AGENT]), observed, seeds={})
    assert [(c.op, c.name) for c in closed] == [(Op.KICK, "E-guest")]
    opened = plan_room(make_spec(entities=[AGENT], membership="open"), observed, seeds={})
    assert opened.empty
    assert opened.unmanaged == (Unmanaged(Kind.ENTITY, "E-guest"),)
    assert plan_to_json(opened)["unmanaged"] == [{"kind": "entity", "name": "E-guest", "createdBy": None}]


def test_an_open_room_kicks_only_the_released_entities() -> None:
    ids = ("E-agent-a", "E-agent-b", "E-member", "E-kept")
    observed = room(entities=[{**OBSERVED_AGENT, "id": entity} for entity in ids])
    plan = plan_room(
        make_spec(membership="open"),
        observed,
        seeds={},
        release=frozenset({"E-agent-a", "E-kept", "E-gone"}),  # E-gone: released, not in the room
        protected=frozenset({"E-kept"}),
    )
    assert [(c.op, c.name, c.blocked.code if c.blocked else None) for c in plan] == [
        (Op.KICK, "E-agent-a", None),
        (Op.KICK, "E-kept", BlockCode.PROTECTED),
    ]
    assert plan.changes[0].reason == "joined by the operator, no longer declared in the spec"
    assert plan.unmanaged == (Unmanaged(Kind.ENTITY, "E-agent-b"), Unmanaged(Kind.ENTITY, "E-member"))
    # a declared entity is never kicked, released or not; a closed room kicks every undeclared one
    declared = plan_room(
        make_spec(entities=[{**AGENT, "id": "E-agent-a"}], membership="open"),
        room(entities=[{**OBSERVED_AGENT, "id": "E-agent-a"}]),
        seeds={},
        release=frozenset({"E-agent-a"}),
    )
    assert [c.op for c in declared] == []
    closed = plan_room(make_spec(), observed, seeds={}, release=frozenset({"E-agent-a"}))
    assert [c.name for c in closed if c.op is Op.KICK] == list(ids)


def test_reseed_on_content_or_metadata_change_and_promote_of_new_version() -> None:
    spec = make_spec(artifacts=[{**DOC, "promoteAfterSeed": True}])
    observed = room(artifacts=[{**OBSERVED_DOC, "promoted": True}])
    content = plan_room(spec, observed, seeds={"doc": seed(sha="b" * 64)})
    assert (content.changes[0].op, content.changes[0].reason) == (Op.RESEED, "content differs")
    assert payload_json(content.changes[0].before)["version"] == 2
    assert content.changes[1].op is Op.PROMOTE
    tags = plan_room(make_spec(artifacts=[{**DOC, "tags": ["u"]}]), observed, seeds={"doc": seed()})
    assert [(c.op, c.reason) for c in tags] == [(Op.RESEED, "differs: tags")]


def test_promote_only_when_not_promoted() -> None:
    spec = make_spec(artifacts=[{**DOC, "promoteAfterSeed": True}])
    assert [c.op for c in plan_room(spec, room(artifacts=[OBSERVED_DOC]), seeds={"doc": seed()})] == [
        Op.PROMOTE
    ]
    done = room(artifacts=[{**OBSERVED_DOC, "promoted": True}])
    assert plan_room(spec, done, seeds={"doc": seed()}).empty


def test_missing_seed_blocks_the_seed_and_its_promote() -> None:
    spec = make_spec(artifacts=[{**DOC, "promoteAfterSeed": True}])
    missing = LocalSeed(path=Path("/seeds/x"), problem="Seed file not found: /seeds/x")
    plan = plan_room(spec, room(), seeds={"doc": missing})
    assert [(c.op, c.blocked.code if c.blocked else None) for c in plan] == [
        (Op.SEED, BlockCode.SEED_FILE_MISSING),
        (Op.PROMOTE, BlockCode.SEED_FILE_MISSING),
    ]
    assert plan.changes[0].blocked is not None
    assert plan.changes[0].blocked.message == "Seed file not found: /seeds/x"
    diff = diff_lists(plan)
    assert (diff.to_seed, diff.to_promote, diff.blocked) == ([], [], ["doc"])


def test_artifacts_follow_depends_on() -> None:
    spec = make_spec(
        artifacts=[
            {**DOC, "name": "c", "dependsOn": ["b"]},
            {**DOC, "name": "b", "dependsOn": ["a"]},
            {**DOC, "name": "a"},
        ]
    )
    assert [a.name for a in dependency_order(spec.spec.artifacts)] == ["a", "b", "c"]
    plan = plan_room(spec, room(), seeds={n: seed() for n in "abc"})
    assert [c.name for c in plan] == ["a", "b", "c"]


def test_unsupported_server_blocks_entity_policy_and_delete_changes() -> None:
    spec = make_spec(entities=[AGENT], artifacts=[DOC], policies={"dmVisibilityDefault": "public"})
    plan = plan_room(spec, room(), seeds={"doc": seed()}, operator_endpoints=False)
    assert [(c.op, c.blocked.code if c.blocked else None) for c in plan] == [
        (Op.JOIN, BlockCode.UNSUPPORTED),
        (Op.SEED, None),
        (Op.SET_POLICY, BlockCode.UNSUPPORTED),
    ]


def test_resources_behind_the_flag() -> None:
    resource = {"name": "tool", "type": "mcp-tool", "config": {"endpoint": "http://127.0.0.1:9/mcp"}}
    spec = make_spec(resources=[resource])
    assert plan_room(spec, room(), seeds={}).empty
    (ensure,) = plan_room(spec, room(), seeds={}, resources=True).changes
    assert (ensure.op, payload_json(ensure.after)) == (
        Op.ENSURE_RESOURCE,
        {"id": "tool", "url": "http://127.0.0.1:9/mcp"},
    )
    pending = room(
        resources=[{"name": "tool", "status": "connecting", "config": {"endpoint": "http://127.0.0.1:9/mcp"}}]
    )
    (blocked,) = plan_room(spec, pending, seeds={}, resources=True).changes
    assert blocked.blocked is not None
    assert blocked.blocked.code is BlockCode.PENDING
    connected = room(
        resources=[{"name": "tool", "status": "connected", "config": {"endpoint": "http://127.0.0.1:9/mcp"}}]
    )
    assert plan_room(spec, connected, seeds={}, resources=True).empty


def test_resource_without_endpoint_fails() -> None:
    spec = make_spec(resources=[{"name": "tool", "type": "mcp-tool"}])
    (change,) = plan_room(spec, room(), seeds={}, resources=True).changes
    assert change.blocked is not None
    assert (change.blocked.code, change.blocked.fatal) == (BlockCode.NO_ENDPOINT, True)


def test_resource_dependencies() -> None:
    base = {
        "name": "tool",
        "type": "mcp-tool",
        "config": {"endpoint": "http://x"},
        "dependsOn": ["E-agent-1"],
    }
    skip = plan_room(make_spec(resources=[base]), room(), seeds={}, resources=True).changes[0]
    assert skip.blocked is not None
    assert (skip.blocked.code, skip.blocked.fatal) == (BlockCode.DEPENDENCY_MISSING, False)
    fail = plan_room(
        make_spec(resources=[{**base, "onMissingDependency": "fail"}]), room(), seeds={}, resources=True
    )
    assert fail.changes[0].blocked is not None
    assert fail.changes[0].blocked.fatal
    joined_now = plan_room(make_spec(entities=[AGENT], resources=[base]), room(), seeds={}, resources=True)
    assert [c.blocked for c in joined_now] == [None, None]


def test_plan_json_is_versioned() -> None:
    plan = plan_room(make_spec(entities=[AGENT]), room(), seeds={})
    body = plan_to_json(plan)
    assert body["formatVersion"] == FORMAT_VERSION
    assert body["summary"]["join"] == 1
    assert body["summary"]["total"] == 1
    assert body["changes"][0]["scope"] == "room:entities:write"
    assert body["diff"]["toJoin"] == ["E-agent-1"]


# ---- properties ------------------------------------------------------------------------------------

IDS = [f"E-{n}" for n in ("a1", "b2", "c3", "d4")]
NAMES = ["n1", "n2", "n3"]
SHAS = ["1" * 64, "2" * 64]

entity_specs = st.fixed_dictionaries(
    {
        "id": st.sampled_from(IDS),
        "kind": st.sampled_from(["human", "agent", "npc", "orchestrator"]),
        "displayName": st.none() | st.sampled_from(["A", "B"]),
        "visibility": st.sampled_from(["public", "team"]),
        "capabilities": st.lists(st.sampled_from(["x", "y", "z"]), max_size=3),
        "policy": st.fixed_dictionaries(
            {"sandbox_mode": st.booleans(), "scopes": st.lists(st.sampled_from(["s"]), max_size=1)}
        ),
    }
)
artifact_specs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES),
        "type": st.sampled_from(["document", "dataset"]),
        "workspace": st.sampled_from(["shared", "analysis"]),
        "tags": st.lists(st.sampled_from(["p", "q"]), max_size=2),
        "seedFrom": st.sampled_from(["s1", "s2"]),
        "promoteAfterSeed": st.booleans(),
    }
)
specs = st.builds(
    lambda entities, artifacts, dm: make_spec(
        entities=entities, artifacts=artifacts, policies={"dmVisibilityDefault": dm}
    ),
    st.lists(entity_specs, max_size=4, unique_by=lambda e: e["id"]),
    st.lists(artifact_specs, max_size=3, unique_by=lambda a: a["name"]),
    st.sampled_from(["public", "team", "owner"]),
)
observed_rooms = st.builds(
    lambda entities, artifacts, dm: room(
        entities=[{**e, "policy": {"sandbox_mode": e["policy"]["sandbox_mode"]}} for e in entities],
        artifacts=[
            {
                "name": a["name"],
                "type": a["type"],
                "workspace": a["workspace"],
                "tags": a["tags"],
                "sha256": sha,
                "promoted": p,
                "createdBy": author,
                "updatedBy": author,
            }
            for a, sha, p, author in artifacts
        ],
        policies={"dmVisibilityDefault": dm, "maxArtifactsPerEntity": 7},
    ),
    st.lists(entity_specs, max_size=4, unique_by=lambda e: e["id"]),
    st.lists(
        st.tuples(
            artifact_specs, st.sampled_from(SHAS), st.booleans(), st.sampled_from([OPERATOR, "E-m1", None])
        ),
        max_size=3,
        unique_by=lambda t: t[0]["name"],
    ),
    st.sampled_from(["public", "team"]),
)
local_seeds = st.fixed_dictionaries(
    {name: st.sampled_from(SHAS).map(lambda sha: seed(sha=sha)) for name in NAMES}
)


@settings(max_examples=200, deadline=None)
@given(spec=specs, observed=observed_rooms, seeds=local_seeds)
def test_planning_after_apply_is_empty(
    spec: RoomSpec, observed: ObservedRoom, seeds: dict[str, LocalSeed]
) -> None:
    plan = plan_room(spec, observed, seeds=seeds, operator=OPERATOR)
    assert not plan.blocked
    after = apply_plan(plan, observed, operator=OPERATOR)
    again = plan_room(spec, after, seeds=seeds, operator=OPERATOR)
    assert again.empty
    # nothing the operator did not write is ever removed, and what it leaves is reported
    kept = {a.name for a in observed.artifacts if a.created_by != OPERATOR}
    assert kept <= {a.name for a in after.artifacts}
    declared = {a.name for a in spec.spec.artifacts}
    assert {u.name for u in again.unmanaged} == kept - declared


@settings(max_examples=100, deadline=None)
@given(spec=specs, observed=observed_rooms, seeds=local_seeds)
def test_planning_is_deterministic(
    spec: RoomSpec, observed: ObservedRoom, seeds: dict[str, LocalSeed]
) -> None:
    first = plan_room(spec, observed, seeds=seeds, operator=OPERATOR)
    assert first == plan_room(spec, observed, seeds=seeds, operator=OPERATOR)
    assert plan_to_json(first) == plan_to_json(plan_room(spec, observed, seeds=seeds, operator=OPERATOR))


def test_to_ensure_keeps_the_reference_meaning() -> None:
    """Every declared entity present on both sides, even unchanged (the reference's unit test: one
    matching entity, one entry); updates and provider loads have lists of their own."""
    plan = plan_room(make_spec(entities=[AGENT]), room(entities=[OBSERVED_AGENT]), seeds={})
    diff = diff_lists(plan)
    assert plan.empty
    assert (diff.to_ensure, diff.to_update, diff.to_load) == (["E-agent-1"], [], [])
    assert list(diff.model_dump(by_alias=True))[:8] == [
        "toJoin",
        "toKick",
        "toEnsure",
        "toSeed",
        "toPromote",
        "toApply",
        "toDeleteArtifacts",
        "blocked",
    ]
