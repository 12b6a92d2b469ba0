"""Local seed files of a spec: where each `seedFrom` points (confined to the spec's folder) and its digest.

Resolving a path (following symlinks, checking it stays inside the folder) and hashing it are the two
costs of a no-op reconcile of a room with many artifacts. Both are cached: a resolution is reused while
the `seedFrom` path's own lstat (inode, mtime, mode) is unchanged, a digest while the resolved file keeps
its size and mtime (`hashing.HashCache`). `known_seeds` answers from those caches alone (a few stat
calls, fit for the event loop) and gives up when a file would have to be resolved or read.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from roomoperator.engine.hashing import HashCache
from roomoperator.model.seeds import LocalSeed
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.seeds import SeedPathError, check_seed_path, resolve_seed_path

LstatKey = tuple[int, int, int]


class _NotCached(Exception):
    """`known_seeds` met a seed file that is not resolved or digested yet."""


class SeedFiles:
    """Finds and digests the seed files of specs; safe to share between rooms and threads."""

    def __init__(self, *, hash_cache: HashCache | None = None, max_entries: int = 100_000) -> None:
        self.hash_cache = hash_cache or HashCache()
        self._resolved: dict[tuple[Path, str], tuple[str, LstatKey, Path]] = {}
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def _resolve(
        self, root: Path, seed_from: str, *, cached_only: bool = False
    ) -> tuple[Path, os.stat_result | None]:
        """The resolved path, and its stat when the lstat already is it (a regular file, not a link)."""
        with self._lock:
            cached = self._resolved.get((root, seed_from))
        if cached is None and cached_only:
            raise _NotCached
        joined = cached[0] if cached is not None else str(root / check_seed_path(seed_from))
        try:
            found = os.lstat(joined)
        except OSError:
            if cached_only:
                raise _NotCached from None
            return resolve_seed_path(root, seed_from), None  # missing: resolve (refusing escapes), no cache
        known = found if stat.S_ISREG(found.st_mode) else None
        signature = (found.st_ino, found.st_mtime_ns, found.st_mode)
        if cached is not None and cached[1] == signature:
            return cached[2], known
        if cached_only:
            raise _NotCached
        resolved = resolve_seed_path(root, seed_from)
        with self._lock:
            if len(self._resolved) >= self._max_entries:
                self._resolved.clear()
            self._resolved[(root, seed_from)] = (joined, signature, resolved)
        return resolved, known

    def known_seeds(self, spec: RoomSpec, seed_root: Path) -> dict[str, LocalSeed] | None:
        """What `local_seeds` would answer, when every seed file is resolved and digested already (and
        still as it was); None when one needs resolving or reading."""
        root = seed_root.resolve()
        seeds: dict[str, LocalSeed] = {}
        for artifact in spec.spec.artifacts:
            if artifact.seed_from is None or artifact.name in seeds:
                continue
            try:
                path, known = self._resolve(root, artifact.seed_from, cached_only=True)
                found = known or os.stat(path)
            except (_NotCached, OSError):
                return None
            digest = self.hash_cache.known(
                path,
                name=artifact.name,
                type_=artifact.type,
                workspace=artifact.workspace,
                tags=artifact.tags,
                stat=found,
            )
            if digest is None:
                return None
            seeds[artifact.name] = LocalSeed(path, digest)
        return seeds

    def local_seeds(self, spec: RoomSpec, seed_root: Path) -> dict[str, LocalSeed]:
        """For each artifact with `seedFrom`: its resolved file and digest, or the problem that blocks it."""
        root = seed_root.resolve()
        seeds: dict[str, LocalSeed] = {}
        for artifact in spec.spec.artifacts:
            if artifact.seed_from is None or artifact.name in seeds:
                continue
            try:
                path, known = self._resolve(root, artifact.seed_from)
            except SeedPathError as exc:
                seeds[artifact.name] = LocalSeed(
                    None, problem=f"Seed file refused: {artifact.seed_from}: {exc}"
                )
                continue
            try:
                digest = self.hash_cache.digest(
                    path,
                    name=artifact.name,
                    type_=artifact.type,
                    workspace=artifact.workspace,
                    tags=artifact.tags,
                    stat=known,
                )
            except FileNotFoundError:
                seeds[artifact.name] = LocalSeed(path, problem=f"Seed file not found: {path}")
            except OSError as exc:
                problem = f"Seed file not readable: {path}: {exc.strerror or exc}"
                seeds[artifact.name] = LocalSeed(path, problem=problem)
            else:
                seeds[artifact.name] = LocalSeed(path, digest)
        return seeds
