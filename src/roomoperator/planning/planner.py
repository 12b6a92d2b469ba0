"""The pure planner: `plan_room(spec, observed, ...)` -> `Plan`. No I/O; the seed digests are given.

Order is deterministic: entities (join/update in spec order, then kicks in room order), artifacts in
`dependsOn` order (seed or reseed, then promote; then deletes in room order), policies (fixed key order),
resources (spec order). After a successful apply, planning again gives an empty plan.

What the spec does not declare is removed only when it is the operator's (as Flux's inventory and Argo
CD's tracking do): an undeclared artifact is deleted only when the operator wrote its first and latest
version (`createdBy`, `updatedBy` of the room state equal the operator's token name); any other is listed
as unmanaged and left alone. Undeclared entities are kicked (the spec is the roster) unless the spec says
`membership: open`, which lists them as unmanaged instead; only the ones named in `release` (a prune: the
entities the operator itself joined, as the room's event log says) are kicked from an open room.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from roomoperator.model.changes import (
    Change,
    EntityBody,
    Fields,
    Kind,
    Op,
    Plan,
    Provider,
    SeedContent,
    SeedSource,
    Skipped,
    Unmanaged,
)
from roomoperator.model.codes import BlockCode
from roomoperator.model.observed import ObservedArtifact, ObservedEntity, ObservedRoom
from roomoperator.model.seeds import LocalSeed, SeedDigest
from roomoperator.planning.ordering import dependency_order
from roomoperator.spec.models import ArtifactSpec, EntitySpec, ResourceSpec, RoomSpec

POLICY_KEYS = ("dmVisibilityDefault", "allowResourceCreation", "maxArtifactsPerEntity")
UNSUPPORTED = "the room server has no operator endpoints (reference .NET server): {what} cannot be made"
RESOURCES_OFF = "features.resources is off: MCP resources are not loaded (set it to true to load them)"


def _same(entity: EntitySpec, current: ObservedEntity) -> bool:
    """Fast check (no dicts built) that a declared entity needs no update."""
    wanted, have = entity.policy, current.policy
    return (
        entity.kind == current.kind
        and entity.display_name == current.display_name
        and entity.visibility == current.visibility
        and entity.owner_user_id == current.owner_user_id
        and wanted.allow_commands_from == have.allow_commands_from
        and wanted.sandbox_mode == have.sandbox_mode
        and set(entity.capabilities) == set(current.capabilities)
        and set(wanted.env_whitelist) == set(have.env_whitelist)
        and set(wanted.scopes) == set(have.scopes)
    )


def _entity_changes(
    spec: RoomSpec,
    observed: ObservedRoom,
    protected: Collection[str],
    unmanaged: list[Unmanaged],
    *,
    release: Collection[str],
) -> list[Change]:
    present = {e.id: e for e in observed.entities}
    changes: list[Change] = []
    first: dict[str, EntitySpec] = {}
    for entity in spec.spec.entities:
        first.setdefault(entity.id, entity)
    for entity in first.values():
        current = present.get(entity.id)
        if current is None:
            changes.append(
                Change(
                    Op.JOIN, entity.id, "declared in the spec, not in the room", after=EntityBody.of(entity)
                )
            )
            continue
        if _same(entity, current):
            continue
        have, want = EntityBody.of(current).comparable(), EntityBody.of(entity).comparable()
        differing = [key for key in want if have[key] != want[key]]
        if differing:
            changes.append(
                Change(
                    Op.UPDATE,
                    entity.id,
                    f"differs: {', '.join(differing)}",
                    before=Fields({key: have[key] for key in differing}),
                    after=Fields({key: want[key] for key in differing}),
                )
            )
    for current in observed.entities:
        if current.id in first:
            continue
        reason = "in the room, not declared in the spec"
        if spec.spec.membership == "open":
            if current.id not in release:
                unmanaged.append(Unmanaged(Kind.ENTITY, current.id))
                continue
            reason = "joined by the operator, no longer declared in the spec"
        kick = Change(Op.KICK, current.id, reason, before=EntityBody.of(current))
        if current.id in protected:
            kick = kick.block(BlockCode.PROTECTED, f"entity {current.id} is protected (protect: true)")
        changes.append(kick)
    return changes


def _seed_after(artifact: ArtifactSpec, seed_from: str, digest: SeedDigest) -> SeedContent:
    return SeedContent(
        type=artifact.type,
        workspace=artifact.workspace,
        tags=tuple(artifact.tags),
        sha256=digest.sha256,
        size=digest.size,
        fingerprint=digest.fingerprint,
        seed_from=seed_from,
    )


def _artifact_content_changes(
    artifact: ArtifactSpec, current: ObservedArtifact | None, seed: LocalSeed | None
) -> Change | None:
    if artifact.seed_from is None:
        return None  # not ours to write: it only keeps a same-named room artifact from deletion
    if seed is None or seed.digest is None:
        op = Op.SEED if current is None else Op.RESEED
        problem = (seed.problem if seed else None) or f"Seed file not found: {artifact.seed_from}"
        return Change(
            op, artifact.name, "content cannot be compared", after=SeedSource(artifact.seed_from)
        ).block(BlockCode.SEED_FILE_MISSING, problem)
    digest = seed.digest
    if (
        current is not None
        and current.sha256 == digest.sha256
        and (current.type, current.workspace, current.tags)
        == (artifact.type, artifact.workspace, artifact.tags)
    ):
        return None
    after = _seed_after(artifact, artifact.seed_from, digest)
    if current is None:
        return Change(
            Op.SEED, artifact.name, "declared with seedFrom, not in the room", after=after, source=seed.path
        )
    have = {
        "type": current.type,
        "workspace": current.workspace,
        "tags": list(current.tags),
        "sha256": current.sha256,
    }
    wanted = after.to_json()
    differing = [key for key in have if have[key] != wanted[key]]
    if not differing:
        return None
    reason = "content differs" if differing == ["sha256"] else f"differs: {', '.join(differing)}"
    before = Fields(
        {
            **{key: have[key] for key in differing},
            "version": current.version,
            "fingerprint": current.fingerprint,
        }
    )
    return Change(Op.RESEED, artifact.name, reason, before=before, after=after, source=seed.path)


def is_operators(artifact: ObservedArtifact, operator: str | None) -> bool:
    """True when `operator` (its token's name) wrote the artifact's first and latest version, so deleting
    it loses nobody else's work. Unknown authors (an older server) count as somebody else."""
    return operator is not None and artifact.created_by == operator and artifact.updated_by == operator


def _artifact_changes(
    spec: RoomSpec,
    observed: ObservedRoom,
    seeds: Mapping[str, LocalSeed],
    protected: Collection[str],
    *,
    operator: str | None,
    unmanaged: list[Unmanaged],
) -> list[Change]:
    present = {a.name: a for a in observed.artifacts}
    changes: list[Change] = []
    for artifact in dependency_order(spec.spec.artifacts):
        current = present.get(artifact.name)
        content = _artifact_content_changes(artifact, current, seeds.get(artifact.name))
        if content is not None:
            changes.append(content)
        if not artifact.promote_after_seed:
            continue
        if content is not None:
            promote = Change(
                Op.PROMOTE,
                artifact.name,
                "promoteAfterSeed: the new version must be promoted",
                after=Fields({"promoted": True}),
            )
            if content.blocked is not None:
                promote = promote.block(
                    content.blocked.code, f"waits for its {content.op}: {content.blocked.message}"
                )
            changes.append(promote)
        elif current is not None and not current.promoted:
            changes.append(
                Change(
                    Op.PROMOTE,
                    artifact.name,
                    "promoteAfterSeed: the latest version is not promoted",
                    before=Fields({"promoted": False, "version": current.version}),
                    after=Fields({"promoted": True}),
                )
            )
    declared = {a.name for a in spec.spec.artifacts}
    for current in observed.artifacts:
        if current.name in declared:
            continue
        if not is_operators(current, operator):
            unmanaged.append(Unmanaged(Kind.ARTIFACT, current.name, current.created_by))
            continue
        before = Fields(
            {
                "type": current.type,
                "workspace": current.workspace,
                "version": current.version,
                "sha256": current.sha256,
            }
        )
        delete = Change(
            Op.DELETE_ARTIFACT, current.name, "in the room, not declared in the spec", before=before
        )
        if current.name in protected:
            message = f"artifact {current.name} is protected (protect: true)"
            delete = delete.block(BlockCode.PROTECTED, message)
        changes.append(delete)
    return changes


def _policy_changes(spec: RoomSpec, observed: ObservedRoom) -> list[Change]:
    wanted = spec.spec.policies.model_dump(by_alias=True)
    have = observed.policies.model_dump(by_alias=True)
    return [
        Change(
            Op.SET_POLICY,
            key,
            f"room has {have[key]!r}, spec wants {wanted[key]!r}",
            before=have[key],
            after=wanted[key],
        )
        for key in POLICY_KEYS
        if have[key] != wanted[key]
    ]


def provider_of(resource: ResourceSpec) -> Provider:
    """The MCP provider (`POST /admin/mcp/load`) a resource maps to."""
    return Provider(
        id=resource.name,
        url=resource.config.get("endpoint") or resource.config.get("url"),
        visibility=resource.config.get("visibility"),
    )


def _resource_changes(spec: RoomSpec, observed: ObservedRoom, planned: list[Change]) -> list[Change]:
    present = {r.name: r for r in observed.resources}
    available = (
        {e.id for e in observed.entities}
        | {a.name for a in observed.artifacts}
        | {c.name for c in planned if c.op in (Op.JOIN, Op.SEED) and c.blocked is None}
    )
    changes: list[Change] = []
    for resource in spec.spec.resources:
        provider = provider_of(resource)
        current = present.get(resource.name)
        missing = [d for d in resource.depends_on if d not in available]
        if current is not None and current.config.get("endpoint") == provider.url:
            if current.status != "connected":
                change = Change(
                    Op.ENSURE_RESOURCE, resource.name, f"provider is {current.status}", after=provider
                )
                changes.append(
                    change.block(
                        BlockCode.PENDING, f"provider {resource.name} is {current.status}, not connected"
                    )
                )
            continue
        before = (
            None
            if current is None
            else Fields({"url": current.config.get("endpoint"), "status": current.status})
        )
        reason = "not loaded on the room server" if current is None else "endpoint differs"
        change = Change(Op.ENSURE_RESOURCE, resource.name, reason, before=before, after=provider)
        if not provider.url:
            message = f"resource {resource.name} has no config.endpoint: no MCP provider URL to load"
            change = change.block(BlockCode.NO_ENDPOINT, message, fatal=True)
        elif missing:
            fatal = resource.on_missing_dependency == "fail"
            policy = resource.on_missing_dependency
            message = f"missing dependencies: {', '.join(missing)} (onMissingDependency: {policy})"
            change = change.block(BlockCode.DEPENDENCY_MISSING, message, fatal=fatal)
        changes.append(change)
    return changes


def _block_unsupported(change: Change) -> Change:
    if change.blocked is not None or change.op in (Op.SEED, Op.RESEED, Op.ENSURE_RESOURCE):
        return change
    return change.block(BlockCode.UNSUPPORTED, UNSUPPORTED.format(what=f"{change.op} {change.name}"))


def plan_room(
    spec: RoomSpec,
    observed: ObservedRoom,
    *,
    seeds: Mapping[str, LocalSeed],
    resources: bool = False,
    operator_endpoints: bool = True,
    protected: Collection[str] = frozenset(),
    operator: str | None = None,
    release: Collection[str] = frozenset(),
) -> Plan:
    """Every change that brings `observed` to `spec`.

    `seeds` maps artifact names to their local seed files; `resources` enables MCP resources (a feature
    flag; while it is off the spec's resources are listed in `skipped`);
    `operator_endpoints=False` (a reference server) blocks what such a server cannot do; `protected` names
    items (protect: true in the last applied spec) that must never be removed; `operator` is the name the
    room server records for the operator's writes (its token's name; None: unknown, nothing is its own);
    `release` names entities kicked when undeclared even though the spec says `membership: open` (a prune
    gives the ones the operator joined itself: `engine/releasing.py`).
    """
    unmanaged: list[Unmanaged] = []
    changes = _entity_changes(spec, observed, protected, unmanaged, release=release)
    changes += _artifact_changes(spec, observed, seeds, protected, operator=operator, unmanaged=unmanaged)
    changes += _policy_changes(spec, observed)
    skipped: tuple[Skipped, ...] = ()
    if resources:
        changes += _resource_changes(spec, observed, changes)
    else:
        skipped = tuple(
            Skipped(Kind.RESOURCE, r.name, BlockCode.FEATURE_DISABLED, RESOURCES_OFF)
            for r in spec.spec.resources
        )
    if not operator_endpoints:
        changes = [_block_unsupported(c) for c in changes]
    in_room = {e.id for e in observed.entities}
    return Plan(
        room_id=spec.room_id,
        spec_name=spec.metadata.name,
        spec_version=spec.metadata.version,
        observed_revision=observed.revision,
        changes=tuple(changes),
        present=tuple(dict.fromkeys(e.id for e in spec.spec.entities if e.id in in_room)),
        unmanaged=tuple(unmanaged),
        skipped=skipped,
    )
