"""Reading a folder of spec files into a `Snapshot`: every `*.room.yaml` / `*.room.yml` / `*.room.json`
under it (multi-document files allowed) declares rooms; a file that fails validation is reported with
file:line:col and declares nothing (its rooms keep their last good revision, `syncing.py`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from roomoperator.spec.errors import SpecError, SpecIssue
from roomoperator.spec.loading import load_file
from roomoperator.spec.models import RoomSpec

SPEC_SUFFIXES = (".room.yaml", ".room.yml", ".room.json")
SKIPPED_FOLDERS = frozenset({".git"})


class SourceUnavailable(Exception):
    """A source could not be read (a missing folder, a failed fetch, a branch that disappeared)."""


def is_spec_file(name: str) -> bool:
    return name.endswith(SPEC_SUFFIXES)


@dataclass(frozen=True)
class Declared:
    """A room a source declares: its spec, the file (relative to the source's folder) and the folder its
    `seedFrom` paths resolve against."""

    spec: RoomSpec
    file: str
    base_dir: Path


@dataclass(frozen=True)
class Snapshot:
    """Everything one revision of a source declares. `failed` holds the files that could not be read or
    validated (their issues in `issues`); a room declared by two files is declared by neither."""

    revision: str
    rooms: dict[str, Declared] = field(default_factory=dict)
    failed: frozenset[str] = frozenset()
    issues: tuple[SpecIssue, ...] = ()


def walk(root: Path) -> Iterator[Path]:
    """Every file under `root`, in a stable order (hidden `.git` folders skipped)."""
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(name for name in folders if name not in SKIPPED_FOLDERS)
        for name in sorted(files):
            yield Path(folder) / name


def scan(root: Path, *, revision: str | None = None) -> Snapshot:
    """Read every spec file under `root`; `revision` names what was read (default: `sha256:` and 20 hex
    digits of the digest of every file's name, of each spec file's bytes and of each other file's size
    and modification time, so a changed seed file is a new revision too)."""
    digest = hashlib.sha256()
    rooms: dict[str, Declared] = {}
    owners: dict[str, str] = {}
    failed: set[str] = set()
    issues: list[SpecIssue] = []
    for path in walk(root):
        relative = path.relative_to(root).as_posix()
        digest.update(relative.encode() + b"\0")
        if not is_spec_file(path.name):
            with contextlib.suppress(OSError):
                signature = path.stat()
                digest.update(f"{signature.st_size}:{signature.st_mtime_ns}\0".encode())
            continue
        try:
            digest.update(path.read_bytes() + b"\0")
            loaded = load_file(path)
        except (OSError, SpecError) as exc:
            failed.add(relative)
            found = exc.issues if isinstance(exc, SpecError) else [SpecIssue(relative, "", str(exc))]
            issues.extend(_relative(issue, relative) for issue in found)
            continue
        for item in loaded:
            room_id = item.spec.room_id
            if room_id in owners:
                failed.update((relative, owners[room_id]))
                issues.append(
                    SpecIssue(
                        relative, "spec.roomId", f"room {room_id!r} is also declared by {owners[room_id]}"
                    )
                )
                rooms.pop(room_id, None)
                continue
            owners[room_id] = relative
            rooms[room_id] = Declared(item.spec, relative, item.base_dir or path.parent)
    return Snapshot(
        revision=revision or f"sha256:{digest.hexdigest()[:20]}",
        rooms=rooms,
        failed=frozenset(failed),
        issues=tuple(issues),
    )


def _relative(issue: SpecIssue, relative: str) -> SpecIssue:
    """The issue with the file named relative to the source's folder."""
    return SpecIssue(relative, issue.path, issue.message, issue.line, issue.col)
