"""Artifacts: the upload `spec` part, manifests (the reference's shape plus our fields) and the no-op rule.

A workspace is the room's (`owner=None`) or one entity's private one (`owner="E-..."`). Each write of a
name makes the next version; every version's bytes stay in the content-addressed blob store. An upload
whose bytes and metadata equal the latest live version is a no-op (the operator's idempotent seeding).
Each version records who wrote it (`createdBy`: the member of `X-Entity-Id`, else the token's name), so the
operator can tell what it created from what members did (it deletes only its own artifacts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roomcontract.limits import MAX_CAPABILITY_LENGTH, MAX_TAGS
from roomserver.domain.identifiers import CAPABILITY, SHA256_HEX, TAG, WORKSPACE_LABEL, check_artifact_name
from roomserver.domain.limits import (
    MAX_PARENT_LENGTH,
    MAX_PARENTS,
    InputError,
    check_list,
    check_metadata,
    load_json,
)
from roomserver.errors import artifact_error


def _invalid_spec(message: str) -> Exception:
    return artifact_error(400, "InvalidSpec", message)


@dataclass(frozen=True)
class ArtifactDraft:
    """What a write says about a new version (everything but the version number, time and promotion)."""

    name: str
    type: str
    workspace: str
    tags: tuple[str, ...] = ()
    fingerprint: str | None = None
    metadata: dict[str, Any] | None = None
    parents: tuple[str, ...] | None = None
    port: str | None = None
    origin_entity: str = "E-SERVICE"
    created_by: str | None = None

    def matches(self, manifest: Manifest) -> bool:
        """True when storing this draft with `manifest`'s bytes would repeat `manifest` exactly (who writes
        it aside: repeating a version's bytes and labels keeps the version, and its author)."""
        return (
            self.name,
            self.type,
            self.workspace,
            self.tags,
            self.fingerprint,
            self.metadata,
            self.parents,
            self.port,
            self.origin_entity,
        ) == (
            manifest.name,
            manifest.type,
            manifest.workspace,
            manifest.tags,
            manifest.fingerprint,
            manifest.metadata,
            manifest.parents,
            manifest.port,
            manifest.origin_entity,
        )


@dataclass(frozen=True)
class Manifest:
    """One stored version of an artifact."""

    room_id: str
    owner: str | None
    name: str
    version: int
    type: str
    sha256: str
    size: int
    workspace: str
    tags: tuple[str, ...]
    fingerprint: str | None
    metadata: dict[str, Any] | None
    parents: tuple[str, ...] | None
    port: str | None
    origin_entity: str
    promoted: bool
    ts: str
    created_by: str | None
    """Who wrote this version: the member (`X-Entity-Id`) or the token's name; None before it was kept."""

    def location(self) -> str:
        if self.owner is None:
            return f"/rooms/{self.room_id}/artifacts/{self.name}"
        return f"/rooms/{self.room_id}/entities/{self.owner}/artifacts/{self.name}"

    def to_wire(self) -> dict[str, Any]:
        """The reference manifest plus `workspace` label, `tags`, `promoted`, `fingerprint`, `createdBy`."""
        return {
            "name": self.name,
            "type": self.type,
            "path": f"blobs/{self.sha256}",
            "size": self.size,
            "sha256": self.sha256,
            "origin": {
                "room": self.room_id,
                "entity": self.origin_entity,
                "port": self.port,
                "workspace": "room" if self.owner is None else "entity",
                "channel": None,
            },
            "version": self.version,
            "parents": None if self.parents is None else list(self.parents),
            "metadata": self.metadata,
            "ts": self.ts,
            "workspace": self.workspace,
            "tags": list(self.tags),
            "promoted": self.promoted,
            "fingerprint": self.fingerprint,
            "createdBy": self.created_by,
        }


def parse_upload_spec(
    raw: bytes, *, default_workspace: str
) -> tuple[str, str, str, tuple[str, ...], str | None, dict[str, Any] | None]:
    """Parse the multipart `spec` part: `(name, type, workspace, tags, fingerprint, metadata)`.

    Errors are the reference's E2 `InvalidSpec` / `InvalidArtifactName`, each naming the field.
    """
    try:
        spec = load_json(raw, field="spec")
    except InputError as exc:
        raise _invalid_spec(str(exc)) from None
    if not isinstance(spec, dict):
        raise _invalid_spec("spec must be a JSON object")
    unknown = sorted(set(spec) - {"name", "type", "workspace", "tags", "fingerprint", "metadata"})
    if unknown:
        raise _invalid_spec(f"spec has unknown field(s): {', '.join(unknown)}")
    name, kind = spec.get("name"), spec.get("type")
    if not isinstance(name, str) or not name.strip() or not isinstance(kind, str) or not kind.strip():
        raise _invalid_spec("spec must include name and type")
    if len(kind) > 128:
        raise _invalid_spec("spec.type must be at most 128 characters")
    workspace = spec.get("workspace") or default_workspace
    if not isinstance(workspace, str) or not WORKSPACE_LABEL.fullmatch(workspace):
        raise _invalid_spec(f"spec.workspace must match pattern: {WORKSPACE_LABEL.pattern}")
    tags = spec.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and TAG.fullmatch(t) for t in tags):
        raise _invalid_spec(f"spec.tags must be an array of strings matching {TAG.pattern}")
    if len(tags) > MAX_TAGS:
        raise _invalid_spec(f"spec.tags must have at most {MAX_TAGS} items (got {len(tags)})")
    fingerprint = spec.get("fingerprint")
    if fingerprint is not None and (
        not isinstance(fingerprint, str) or not SHA256_HEX.fullmatch(fingerprint)
    ):
        raise _invalid_spec("spec.fingerprint must be 64 lower-case hex characters")
    try:
        metadata = check_metadata(spec.get("metadata"), field="spec.metadata")
    except InputError as exc:
        raise _invalid_spec(str(exc)) from None
    return check_artifact_name(name), kind, workspace, tuple(tags), fingerprint, metadata


def parse_parents(raw: bytes | None) -> tuple[str, ...] | None:
    """The optional `parents` part: a JSON array of strings (reference E2 `InvalidParents`)."""
    if raw is None:
        return None
    try:
        parents = load_json(raw, field="parents")
    except InputError:
        parents = None
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise artifact_error(400, "InvalidParents", "parents must be an array of strings")
    try:
        check_list(parents, field="parents", max_items=MAX_PARENTS, max_length=MAX_PARENT_LENGTH)
    except InputError as exc:
        raise artifact_error(400, "InvalidParents", str(exc)) from None
    return tuple(parents)


def parse_port(raw: bytes | None) -> str | None:
    """The optional `port` part: a capability id."""
    if raw is None or not raw.strip():
        return None
    port = raw.decode("utf-8", errors="replace").strip()
    if len(port) > MAX_CAPABILITY_LENGTH:
        raise artifact_error(400, "InvalidPort", f"port must be at most {MAX_CAPABILITY_LENGTH} characters")
    if not CAPABILITY.fullmatch(port):
        raise artifact_error(400, "InvalidPort", f"port must match pattern: {CAPABILITY.pattern}")
    return port
