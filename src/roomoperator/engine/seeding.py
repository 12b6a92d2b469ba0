"""Local seed files of a spec: where each `seedFrom` points (confined to the spec's folder) and its digest.

Resolving a path (following symlinks, checking it stays inside the folder) and hashing it are the two
costs of a no-op reconcile of a room with many artifacts. Both are cached (`engine/caches.py`): a
resolution is reused while the `seedFrom` path's own lstat (inode, mtime, mode) is unchanged, a digest
while the resolved file keeps its size and mtime. `known_seeds` answers from those caches alone (a few
stat calls, fit for the event loop) and gives up when a file would have to be resolved or read;
`local_seeds` does the work (on a worker thread).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from roomoperator.engine.caches import Cache, EngineCaches, FileCheck, ResolvedSeed, SeedSet
from roomoperator.engine.hashing import HashCache
from roomoperator.model.seeds import LocalSeed
from roomoperator.spec.models import ArtifactSpec, RoomSpec
from roomoperator.spec.seeds import SeedPathError, check_seed_path, resolve_seed_path


class _NotCached(Exception):
    """`known_seeds` met a seed file that is not resolved or digested yet."""


def _seeded(spec: RoomSpec) -> Iterator[tuple[ArtifactSpec, str]]:
    """Each artifact with a `seedFrom` (the first of a repeated name) and its `seedFrom`."""
    seen: set[str] = set()
    for artifact in spec.spec.artifacts:
        if artifact.seed_from is not None and artifact.name not in seen:
            seen.add(artifact.name)
            yield artifact, artifact.seed_from


class SeedFiles:
    """Finds and digests the seed files of specs; safe to share between rooms and threads."""

    def __init__(self, *, caches: EngineCaches | None = None, hash_cache: HashCache | None = None) -> None:
        caches = caches or EngineCaches()
        self.hash_cache = hash_cache or HashCache(cache=caches.seed_digests)
        self._resolved: Cache[tuple[str, str], ResolvedSeed] = caches.seed_paths
        self._sets: Cache[tuple[str, str], SeedSet] = caches.seed_sets

    def _resolve(
        self, root: Path, seed_from: str, *, cached_only: bool = False
    ) -> tuple[Path, os.stat_result | None, str]:
        """The resolved path, its stat when the lstat already is it (a regular file, not a link), and
        the path as joined to the folder."""
        key = (str(root), seed_from)
        cached = self._resolved.get(key)
        if cached is None and cached_only:
            raise _NotCached
        joined = cached.joined if cached is not None else str(root / check_seed_path(seed_from))
        try:
            found = os.lstat(joined)
        except OSError:
            if cached_only:
                raise _NotCached from None
            # missing: resolve (refusing escapes), no cache
            return resolve_seed_path(root, seed_from), None, joined
        known = found if stat.S_ISREG(found.st_mode) else None
        signature = (found.st_ino, found.st_mtime_ns, found.st_mode)
        if cached is not None and cached.signature == signature:
            return cached.resolved, known, joined
        if cached_only:
            raise _NotCached
        resolved = resolve_seed_path(root, seed_from)
        self._resolved.put(key, ResolvedSeed(joined, signature, resolved))
        return resolved, known, joined

    def known_seeds(self, spec: RoomSpec, seed_root: Path) -> dict[str, LocalSeed] | None:
        """What `local_seeds` would answer, when every seed file is resolved and digested already (and
        still as it was); None when one needs resolving or reading. The spec's last answer is checked
        first (`seed_sets`): one stat per file when nothing changed."""
        if not any(artifact.seed_from is not None for artifact in spec.spec.artifacts):
            return {}  # nothing to look at (not even the folder)
        root = seed_root.resolve()
        key = (spec.room_id, str(root))
        last = self._sets.get(key, valid=lambda known: known.spec is spec)
        if last is not None and last.still():
            return last.seeds
        seeds: dict[str, LocalSeed] = {}
        checks: list[FileCheck] = []
        for artifact, seed_from in _seeded(spec):
            try:
                path, known, joined = self._resolve(root, seed_from, cached_only=True)
                found = known or os.stat(path)
            except (_NotCached, OSError):
                return None
            digest = self.hash_cache.known(path, stat=found)
            if digest is None:
                return None
            seeds[artifact.name] = LocalSeed(path, digest)
            checks.append(FileCheck.of(joined, os.lstat(joined) if known is None else found))
            if known is None:  # a link: its target too
                checks.append(FileCheck.of(str(path), found, follow=True))
        self._sets.put(key, SeedSet(spec, tuple(checks), seeds))
        return seeds

    def local_seeds(self, spec: RoomSpec, seed_root: Path) -> dict[str, LocalSeed]:
        """For each artifact with `seedFrom`: its resolved file and digest, or the problem that blocks it."""
        root = seed_root.resolve()
        return {
            artifact.name: self._local_seed(root, artifact, seed_from)
            for artifact, seed_from in _seeded(spec)
        }

    def _local_seed(self, root: Path, artifact: ArtifactSpec, seed_from: str) -> LocalSeed:
        try:
            path, known, _ = self._resolve(root, seed_from)
        except SeedPathError as exc:
            return LocalSeed(None, problem=f"Seed file refused: {seed_from}: {exc}")
        try:
            return LocalSeed(path, self.hash_cache.digest(path, stat=known))
        except FileNotFoundError:
            return LocalSeed(path, problem=f"Seed file not found: {path}")
        except OSError as exc:
            return LocalSeed(path, problem=f"Seed file not readable: {path}: {exc.strerror or exc}")
