"""The operator's own copy of the seed files that specs posted over HTTP use, so a revision keeps its bytes.

Bytes are kept content-addressed under `<data>/seeds/sha256/<hex>` (written to a temporary file in
`<data>/seeds/tmp/`, fsynced, then renamed, read-only). A spec's seeds are then laid out in a folder of
their own, `<data>/seeds/trees/<hex>/`, whose paths are the spec's `seedFrom` paths (hard links to the
kept bytes, copies where the file system has none): a run reads its seeds there (its `base_dir`), the
engine hashes exactly those bytes. The tree's name is the SHA-256 of its manifest (each path and its
bytes' digest), so an identical apply resolves to the same folder.

What one request adds (a blob, a tree) is its `Claim`'s until the apply is decided: accepted, it stays
for good (`Claim.commit`); refused, it is removed again (`Claim.release`), unless another request of this
process still holds it or took it first. A blob or tree that was there before the request, or that an
accepted apply committed, is never removed, so a revision can always be run again with its own bytes.
The claims are per process (one operator per data folder); a request the process never decided (it
ended mid-way) leaves its additions in place, as kept bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar

from roomoperator.settings import OperatorSettings


class SeedTooLarge(Exception):
    """An incoming seed file grew past its limit; `limit` is the byte count it may not exceed."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class Incoming:
    """One seed file arriving: written to a temporary file of the store while its SHA-256 is computed."""

    def __init__(self, folder: Path, *, limit: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=folder, prefix="incoming-")
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(descriptor, "wb")
        self._hash = hashlib.sha256()
        self._limit = limit
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append `data`; raises `SeedTooLarge` (nothing written) when the file would exceed its limit."""
        if self.size + len(data) > self._limit:
            raise SeedTooLarge(self._limit)
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> str:
        """Flush and fsync the file; its SHA-256 (hex)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Close and remove the temporary file (a refused request keeps nothing)."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@dataclass
class _Undecided:
    """The blobs and trees of one store added by requests not yet decided, each with the claims holding it
    (the one that added it, and every later one that found it there). Guarded by `lock`: a path is looked
    at, added, held or removed under it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    holders: dict[Path, set[Claim]] = field(default_factory=dict)


class Claim:
    """What one request added to the store, or found there still undecided, until its apply is decided."""

    def __init__(self, undecided: _Undecided) -> None:
        self._undecided = undecided
        self._held: list[Path] = []

    def take(self, path: Path, place: Callable[[], bool]) -> bool:
        """Under the store's lock: `path` is there already (held too when still undecided), or `place()`
        puts it there and this claim holds it (False: it did not, another process may have); whether
        `path` is there now."""
        with self._undecided.lock:
            holders = self._undecided.holders.get(path)
            if holders is None:
                if path.exists():
                    return True  # kept for good already
                if not place():
                    return path.exists()
                holders = self._undecided.holders[path] = set()
            holders.add(self)
            self._held.append(path)
            return True

    def commit(self) -> None:
        """The apply was accepted: everything held stays for good."""
        with self._undecided.lock:
            for path in self._held:
                self._undecided.holders.pop(path, None)
        self._held.clear()

    def release(self) -> None:
        """The apply was refused: what no other claim holds any longer is removed (trees before the
        blobs they link to)."""
        with self._undecided.lock:
            for path in reversed(self._held):
                holders = self._undecided.holders.get(path)
                if holders is None:
                    continue  # committed by another claim
                holders.discard(self)
                if not holders:
                    del self._undecided.holders[path]
                    _remove(path)
        self._held.clear()


class SeedStore:
    """Seed bytes and per-content seed folders under `folder` (`<data>/seeds`). One instance per folder
    and process (`of`), so the claims of concurrent requests see each other."""

    _open: ClassVar[dict[Path, SeedStore]] = {}
    _named: ClassVar[dict[Path, SeedStore]] = {}
    """By the folder as the settings name it: `of` resolves a name (a system call a component) once."""
    _opening: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self._blobs = self.folder / "sha256"
        self._trees = self.folder / "trees"
        self._tmp = self.folder / "tmp"
        self._undecided = _Undecided()

    @classmethod
    def of(cls, settings: OperatorSettings) -> SeedStore:
        named = (settings.data_folder() / "seeds").absolute()
        with cls._opening:
            if (known := cls._named.get(named)) is None:
                folder = named.resolve()
                if (known := cls._open.get(folder)) is None:
                    known = cls._open[folder] = cls(folder)
                cls._named[named] = known
            return known

    def claim(self) -> Claim:
        """A new request's claim: pass it to `copy_in`, `keep` and `tree`, then `commit` or `release` it."""
        return Claim(self._undecided)

    def incoming(self, *, limit: int) -> Incoming:
        """A temporary file for one seed of at most `limit` bytes; `keep` it or `discard` it."""
        return Incoming(self._tmp, limit=limit)

    def copy_in(self, source: Path, *, limit: int, claim: Claim) -> str:
        """Keep the bytes of the file `source` (at most `limit`) for `claim`; their SHA-256. Bytes kept
        already (the same seed in another apply) are only read: no copy, no fsync."""
        digest, size = hashlib.sha256(), 0
        with source.open("rb") as stream:
            while chunk := stream.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise SeedTooLarge(limit)
                digest.update(chunk)
        if claim.take(self.blob(digest.hexdigest()), lambda: False):  # held, when still undecided
            return digest.hexdigest()
        incoming = self.incoming(limit=limit)
        try:
            with source.open("rb") as stream:
                while chunk := stream.read(1 << 16):
                    incoming.write(chunk)
            return self.keep(incoming, claim=claim)
        finally:
            incoming.discard()

    def keep(self, incoming: Incoming, *, claim: Claim) -> str:
        """Move a finished incoming file to its content address (once per content) for `claim`; its
        SHA-256."""
        digest = incoming.finish()
        target = self.blob(digest)

        def place() -> bool:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(incoming.path, 0o444)
            os.replace(incoming.path, target)
            _fsync_folder(target.parent)
            return True

        claim.take(target, place)
        incoming.discard()  # a no-op once placed
        return digest

    def blob(self, digest: str) -> Path:
        return self._blobs / digest

    def tree_of(self, manifest: Mapping[str, str]) -> Path:
        """Where `tree(manifest)` is (`tree_of({})`: the seed folder of a spec that names no seed)."""
        canonical = json.dumps(dict(sorted(manifest.items())), separators=(",", ":"))
        return self._trees / hashlib.sha256(canonical.encode()).hexdigest()

    def tree(self, manifest: Mapping[str, str], *, claim: Claim) -> Path:
        """The folder holding each kept file of `manifest` (a `seedFrom` path -> its SHA-256, kept for
        `claim`) at its path; the same folder for the same manifest. The paths are checked `seedFrom`
        paths (relative, inside)."""
        target = self.tree_of(manifest)
        if claim.take(target, lambda: False):  # held, when still undecided
            return target
        self._trees.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=self._trees, prefix=".building-"))
        try:
            for relative, digest in manifest.items():
                placed = building / relative
                placed.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(self.blob(digest), placed)
                except OSError:  # no hard links here (another file system, a FAT volume): a copy
                    shutil.copyfile(self.blob(digest), placed)

            def place() -> bool:
                try:
                    os.rename(building, target)
                except OSError:
                    if not target.is_dir():
                        raise
                    return False  # another process built the same tree at the same time
                return True

            claim.take(target, place)  # or found it there, made meanwhile
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return target


def _remove(path: Path) -> None:
    """Remove a blob or a tree a refused request added."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
