"""The operator's own copy of the seed files that specs posted over HTTP use, so a revision keeps its bytes.

Bytes are kept content-addressed under `<data>/seeds/sha256/<hex>` (written to a temporary file in
`<data>/seeds/tmp/`, fsynced, then renamed, read-only). A spec's seeds are then laid out in a folder of
their own, `<data>/seeds/trees/<hex>/`, whose paths are the spec's `seedFrom` paths (hard links to the
kept bytes, copies where the file system has none): a run reads its seeds there (its `base_dir`), the
engine hashes exactly those bytes. The tree's name is the SHA-256 of its manifest (each path and its
bytes' digest), so an identical apply resolves to the same folder.

Nothing here is removed: a revision can always be run again with its own bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

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


class SeedStore:
    """Seed bytes and per-content seed folders under `folder` (`<data>/seeds`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self._blobs = self.folder / "sha256"
        self._trees = self.folder / "trees"
        self._tmp = self.folder / "tmp"

    @classmethod
    def of(cls, settings: OperatorSettings) -> SeedStore:
        return cls(settings.data_folder() / "seeds")

    def incoming(self, *, limit: int) -> Incoming:
        """A temporary file for one seed of at most `limit` bytes; `keep` it or `discard` it."""
        return Incoming(self._tmp, limit=limit)

    def copy_in(self, source: Path, *, limit: int) -> str:
        """Keep the bytes of the file `source` (at most `limit`); their SHA-256. Bytes kept already (the
        same seed in another apply) are only read: no copy, no fsync."""
        digest, size = hashlib.sha256(), 0
        with source.open("rb") as stream:
            while chunk := stream.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise SeedTooLarge(limit)
                digest.update(chunk)
        if self.blob(digest.hexdigest()).exists():
            return digest.hexdigest()
        incoming = self.incoming(limit=limit)
        try:
            with source.open("rb") as stream:
                while chunk := stream.read(1 << 16):
                    incoming.write(chunk)
            return self.keep(incoming)
        finally:
            incoming.discard()

    def keep(self, incoming: Incoming) -> str:
        """Move a finished incoming file to its content address (once per content); its SHA-256."""
        digest = incoming.finish()
        target = self.blob(digest)
        if target.exists():
            incoming.discard()
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(incoming.path, 0o444)
        os.replace(incoming.path, target)
        _fsync_folder(target.parent)
        return digest

    def blob(self, digest: str) -> Path:
        return self._blobs / digest

    def tree_of(self, manifest: Mapping[str, str]) -> Path:
        """Where `tree(manifest)` is (`tree_of({})`: the seed folder of a spec that names no seed)."""
        canonical = json.dumps(dict(sorted(manifest.items())), separators=(",", ":"))
        return self._trees / hashlib.sha256(canonical.encode()).hexdigest()

    def tree(self, manifest: Mapping[str, str]) -> Path:
        """The folder holding each kept file of `manifest` (a `seedFrom` path -> its SHA-256) at its path;
        the same folder for the same manifest. The paths are checked `seedFrom` paths (relative, inside)."""
        target = self.tree_of(manifest)
        if target.is_dir():
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
            try:
                os.rename(building, target)
            except OSError:
                if not target.is_dir():  # not another request building the same tree at the same time
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return target


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
