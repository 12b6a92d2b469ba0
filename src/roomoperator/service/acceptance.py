"""The operator's acceptance rules, in the one function every way desired state changes goes through:
`/apply` (and its dry runs), `roomop up SPEC`, reconcile-now of the stored spec, and restoring a revision.

An accepted spec becomes the room's next **revision** (per room, monotonic, like Kubernetes'
`generation`), written with the run that will apply it in one store transaction that compares-and-sets
the room's latest revision: two requests (or two operators on one store) can never both take the same
number, and the loser is judged again against the winner. The order of revisions is the order of
acknowledgment. `metadata.version` stays the author's label, judged by the version rule
(`spec/upgrade.py`, setting `reconciliation.upgrade`):

- identical content (the spec's canonical JSON plus the SHA-256 of every seed file it resolves, see
  `content_of`) makes no revision: the answer is `unchanged` with the existing revision;
- a changed spec at the same version is a new revision with a warning naming the version (`lenient`),
  or refused (`strict`, `SPEC_UPGRADE_REJECTED`);
- a lower version is refused (`SPEC_VERSION_REGRESSION`) unless forced or restoring a revision;
- `keep_stored` (`roomop up`): a spec no newer than a revision made through another path is not
  taken (`SPEC_KEPT`), so a restart never downgrades what the API applied.

Every offer says where it came from (`source`: a GitOps source's name and its revision there, None for
the API and `roomop up`). A source's first accepted revision of a room makes the source its owner (in the
same transaction); an offer from anywhere else for an owned room is refused (`SOURCE_CONFLICT`, naming the
owner) unless the owner allows manual overrides.

Reconcile-now needs a managed room. A refusal is `Refused`, which each edge turns into its own answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomoperator.engine.seeding import SeedFiles
from roomoperator.model.audit import utcnow
from roomoperator.model.codes import ApiCode
from roomoperator.service.rooms import RoomView
from roomoperator.service.runs import RunRequest
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.upgrade import UpgradeRule, check_upgrade
from roomoperator.store import RunRecord, SpecVersion, Store


class Refused(Exception):
    """A spec or request the operator does not accept; `errors` say why, in the reference's words.

    `offered` and `desired` are the versions compared; `revision` the room's revision kept.
    """

    def __init__(
        self,
        code: ApiCode,
        errors: list[str],
        *,
        room_id: str,
        offered: int | None = None,
        desired: int | None = None,
        revision: int | None = None,
        actor: str | None = None,
    ) -> None:
        super().__init__("; ".join(errors))
        self.code = code
        self.errors = errors
        self.room_id = room_id
        self.offered = offered
        self.desired = desired
        self.revision = revision
        self.actor = actor


@dataclass(frozen=True)
class Content:
    """A spec's identity for the version rule: the digest of its canonical form and its seeds' SHA-256s
    (None for a seed file that cannot be read)."""

    digest: str
    seeds: dict[str, str | None]


async def content_of(spec: RoomSpec, base_dir: Path, seed_files: SeedFiles) -> Content:
    """The canonical form of `spec`: its wire form as sorted-key JSON plus the SHA-256 of every seed file
    it resolves against `base_dir` (from the engine's caches when they know them, else read on a worker
    thread)."""
    local = seed_files.known_seeds(spec, base_dir)
    if local is None:
        local = await asyncio.to_thread(seed_files.local_seeds, spec, base_dir)
    seeds = {name: seed.digest.sha256 if seed.digest else None for name, seed in sorted(local.items())}
    canonical = json.dumps({"spec": spec.to_wire(), "seeds": seeds}, sort_keys=True, separators=(",", ":"))
    return Content(hashlib.sha256(canonical.encode()).hexdigest(), seeds)


@dataclass(frozen=True)
class Offer:
    """A spec offered for a room, and how: `force` skips the version rule's refusals, `restored_from` is
    the revision it restores (which skips them too), `keep_stored` keeps a revision made through another
    path when the offer is not newer (`roomop up`)."""

    spec: RoomSpec
    base_dir: Path
    content: Content
    actor: str | None = None
    confirm: bool = False
    force: bool = False
    restored_from: int | None = None
    keep_stored: bool = False
    expect: str | None = None
    """The digest of the plan the caller confirmed (`X-Expect-Plan`): a changed plan is not applied."""
    source: str | None = None
    """The GitOps source that offers the spec (None: the API, `roomop up`)."""
    source_revision: str | None = None
    """The source's revision the spec was read at (a commit)."""
    release: frozenset[str] = frozenset()
    """A prune of an open room: the entities its spec declared, removed when the operator joined them."""


@dataclass(frozen=True)
class Owner:
    """The source that owns a room, and whether it lets others change the room."""

    source: str
    overridable: bool = False


def check_owner(offer: Offer, owner: Owner | None) -> None:
    """Raise `Refused` (`SOURCE_CONFLICT`) when `offer` comes from elsewhere than the room's owner."""
    if owner is None or offer.source == owner.source or owner.overridable:
        return
    where = f"source {offer.source!r}" if offer.source else "outside any source"
    raise Refused(
        ApiCode.SOURCE_CONFLICT,
        [
            f"room {offer.spec.room_id} belongs to source {owner.source!r}, which allows no manual override:"
            f" change it there (this spec came from {where})"
        ],
        room_id=offer.spec.room_id,
    )


@dataclass(frozen=True)
class Accepted:
    """What to run (`spec` None: the room's stored desired spec) as revision `revision` (None: a dry run
    of a spec that is not a revision), whether it is `unchanged` (no new revision), and the warnings for
    the caller."""

    spec: RoomSpec | None
    revision: int | None
    base_dir: Path | None = None
    unchanged: bool = False
    warnings: list[str] = field(default_factory=list)
    recorded: SpecVersion | None = None
    """The revision this acceptance wrote."""


def judge(offer: Offer, base: SpecVersion | None, *, rule: UpgradeRule) -> Accepted:
    """The version rule for `offer` against the room's latest revision `base` (None: nothing to compare
    with); raises `Refused`. The answer's `revision` is the base's when unchanged, else None."""
    if base is None:
        return Accepted(spec=offer.spec, revision=None, base_dir=offer.base_dir)
    if base.digest == offer.content.digest:
        return Accepted(spec=offer.spec, revision=base.revision, base_dir=offer.base_dir, unchanged=True)
    current = RoomSpec.model_validate(base.spec)
    offered, kept = offer.spec.metadata.version, current.metadata.version

    def refused(code: ApiCode, errors: list[str]) -> Refused:
        return Refused(
            code,
            errors,
            room_id=offer.spec.room_id,
            offered=offered,
            desired=kept,
            revision=base.revision,
            actor=base.actor,
        )

    if offer.keep_stored and base.actor != offer.actor and offered <= kept and not offer.force:
        by = base.actor or "unknown"
        raise refused(
            ApiCode.SPEC_KEPT, [f"revision {base.revision} (v{kept}, by {by}) is kept over v{offered}"]
        )
    forced = offer.force or offer.restored_from is not None
    report = check_upgrade(current, offer.spec, rule=rule, force=forced)
    if not report.ok:
        raise refused(report.code or ApiCode.SPEC_UPGRADE_REJECTED, report.errors)
    return Accepted(spec=offer.spec, revision=None, base_dir=offer.base_dir, warnings=report.warnings)


def _run(offer: Offer, correlation_id: str, revision: int, *, wire: dict[str, Any]) -> RunRecord:
    """The queued run of `offer` (`wire`: its spec's JSON form, shared with its revision's row)."""
    return RunRecord(
        correlation_id=correlation_id,
        room_id=offer.spec.room_id,
        trigger="apply",
        status="queued",
        created_at=utcnow(),
        confirm=offer.confirm,
        actor=offer.actor,
        spec=wire,
        base_dir=str(offer.base_dir),
        revision=revision,
    )


async def accept(
    store: Store,
    view: RoomView,
    offer: Offer | None,
    *,
    rule: UpgradeRule,
    correlation_id: str,
    dry_run: bool = False,
    record_run: bool = True,
    owner: Owner | None = None,
) -> Accepted:
    """Accept `offer` for the room `view` shows (owned by `owner`), or raise `Refused`.

    A new revision is written (with its queued run `correlation_id`) in one compare-and-set transaction;
    when another writer took the number first, the offer is judged again against that revision. An
    unchanged offer writes its queued run alone. `offer` None asks to run the desired spec again, which
    only a managed room has; `dry_run` judges and writes nothing; `record_run` False writes no run row
    (the run has one already). Updates `view`'s latest revision.
    """
    room_id = view.room_id
    if offer is None:
        if view.pending is not None:  # the run goes towards the pending revision (`RoomView.pending`)
            pending = view.pending
            return Accepted(spec=None, revision=pending.revision, base_dir=pending.base_dir, unchanged=True)
        if not view.managed or view.spec is None:
            raise Refused(ApiCode.NOT_FOUND, [f"Room {room_id} not found"], room_id=room_id)
        return Accepted(spec=None, revision=view.revision, base_dir=view.base_dir, unchanged=True)
    check_owner(offer, owner)
    wire = offer.spec.to_wire()
    while True:
        verdict = judge(offer, view.latest, rule=rule)
        if dry_run:
            return verdict
        if verdict.unchanged:
            assert verdict.revision is not None
            if record_run:
                await store.add_run(_run(offer, correlation_id, verdict.revision, wire=wire))
            return verdict
        number = view.latest_revision + 1
        version = SpecVersion(
            room_id=room_id,
            revision=number,
            spec_version=offer.spec.metadata.version,
            spec=wire,
            actor=offer.actor,
            correlation_id=correlation_id,
            diff=None,
            applied_at=utcnow(),
            digest=offer.content.digest,
            seeds=dict(offer.content.seeds),
            base_dir=str(offer.base_dir),
            confirmed=offer.confirm,
            restored_from=offer.restored_from,
            source=offer.source,
            source_revision=offer.source_revision,
        )
        run = _run(offer, correlation_id, number, wire=wire) if record_run else None
        if await store.accept_revision(version, run=run):
            view.latest_revision, view.latest = number, version
            return Accepted(
                spec=offer.spec,
                revision=number,
                base_dir=offer.base_dir,
                warnings=verdict.warnings,
                recorded=version,
            )
        room = await store.get_room(room_id)  # another writer won: judge the offer against its revision
        moved = room.latest_revision if room is not None else 0
        if moved == view.latest_revision:
            raise RuntimeError(f"revision {number} of room {room_id} could not be written")
        view.latest_revision, view.latest = moved, await store.revision(room_id, moved)


def request_of(offer: Offer, accepted: Accepted, correlation_id: str) -> RunRequest:
    """The run that applies an accepted offer."""
    return RunRequest.of(
        offer.spec.room_id,
        "apply",
        actor=offer.actor,
        spec=offer.spec,
        base_dir=offer.base_dir,
        confirm=offer.confirm,
        revision=accepted.revision,
        correlation_id=correlation_id,
        expect=offer.expect,
        release=offer.release,
    )


class Acceptor:
    """The acceptance as the controller uses it: offers made from specs (their content digests read
    through the engine's seed files), judged under the configured rule and the rooms' owners, written to
    `store`. `overridable` names the sources that allow manual overrides."""

    def __init__(
        self,
        store: Store,
        seed_files: SeedFiles,
        *,
        rule: UpgradeRule,
        seed_root: Path,
        overridable: Collection[str] = (),
    ) -> None:
        self._store = store
        self._seed_files = seed_files
        self._rule = rule
        self._seed_root = seed_root
        self._overridable = frozenset(overridable)
        self._owners: dict[str, str] = {}
        """Room id -> the source that owns it, as the store's rooms say."""

    def own(self, room_id: str, source: str | None) -> None:
        """`source` owns `room_id` now (None: no source does), as the store recorded."""
        if source is None:
            self._owners.pop(room_id, None)
        else:
            self._owners[room_id] = source

    def owner(self, room_id: str) -> Owner | None:
        source = self._owners.get(room_id)
        return None if source is None else Owner(source, overridable=source in self._overridable)

    async def offer(
        self,
        spec: RoomSpec,
        *,
        base_dir: Path | None,
        confirm: bool,
        actor: str | None,
        force: bool = False,
        keep_stored: bool = False,
        restored_from: int | None = None,
        expect: str | None = None,
        source: str | None = None,
        source_revision: str | None = None,
    ) -> Offer:
        """`spec` as the acceptance judges it (`base_dir` None: the default seed folder)."""
        folder = base_dir or self._seed_root
        return Offer(
            spec=spec,
            base_dir=folder,
            content=await content_of(spec, folder, self._seed_files),
            actor=actor,
            confirm=confirm,
            force=force,
            restored_from=restored_from,
            keep_stored=keep_stored,
            expect=expect,
            source=source,
            source_revision=source_revision,
        )

    async def accept(
        self,
        view: RoomView,
        offer: Offer | None,
        *,
        correlation_id: str,
        dry_run: bool = False,
        record_run: bool = True,
    ) -> Accepted:
        """`accept` under the configured rule and the room's owner; a source's first revision of a room
        makes it the owner (the store claimed it in the same transaction)."""
        accepted = await accept(
            self._store,
            view,
            offer,
            rule=self._rule,
            correlation_id=correlation_id,
            dry_run=dry_run,
            record_run=record_run,
            owner=self.owner(view.room_id),
        )
        if accepted.recorded is not None and offer is not None and offer.source is not None:
            self._owners.setdefault(view.room_id, offer.source)
        return accepted

    async def adopt(self, view: RoomView, request: RunRequest) -> None:
        """A run accepted before revisions were numbered (an older store) gets its revision now."""
        if request.trigger != "apply" or request.spec is None or request.revision is not None:
            return
        offer = await self.offer(
            request.spec, base_dir=request.base_dir, confirm=request.confirm, actor=request.actor, force=True
        )
        accepted = await self.accept(view, offer, correlation_id=request.correlation_id, record_run=False)
        request.revision = accepted.revision

    async def restoring(
        self, room_id: str, revision: int, *, confirm: bool, actor: str | None
    ) -> tuple[Offer, list[str]]:
        """The offer that restores revision `revision` (its spec, its recorded seed folder), with a warning
        when a seed file no longer has the bytes the revision recorded; raises `Refused` (404)."""
        stored = await self._store.revision(room_id, revision)
        if stored is None:
            raise Refused(ApiCode.NOT_FOUND, [f"Room {room_id} has no revision {revision}"], room_id=room_id)
        offer = await self.offer(
            RoomSpec.model_validate(stored.spec),
            base_dir=Path(stored.base_dir) if stored.base_dir else None,
            confirm=confirm,
            actor=actor,
            restored_from=revision,
        )
        seeds = offer.content.seeds
        changed = sorted(name for name, sha in (stored.seeds or {}).items() if seeds.get(name) != sha)
        warnings = [f"Seed files changed since revision {revision}: {', '.join(changed)}"] if changed else []
        return offer, warnings
