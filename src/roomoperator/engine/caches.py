"""Every cache of the engine, in one place, under one policy: named, bounded, thread-safe, and each with
its key and the rule that makes an entry stale written next to it.

A converged room must cost one conditional state read and no planning, hashing or path resolution, so the
engine remembers the inputs and outputs of those steps. The policy for every cache:

- an entry is looked up by a key that names everything its value was computed from, or is checked by a
  validity predicate given at look-up (`get(key, valid=...)`); a stale entry is dropped, never served;
- each cache is bounded (least recently used entries go first), so a long-lived operator never grows
  without limit;
- hits and misses are counted (tests and benchmarks read them).

| cache | key | stale when |
|---|---|---|
| `seed_paths` | (spec folder, `seedFrom`) | the `seedFrom` path's lstat (inode, mtime, mode) changed |
| `seed_digests` | (resolved path, size, mtime_ns) | never: a changed file has another key |
| `seed_sets` | (room id, spec folder) | another spec object, or a seed file's (or link's) stat changed |
| `plans` | room id | the ETag, spec, protected or released names, seeds, server kind or operator changed |
| `renderings` | room id | the plan is not equal to the one rendered; dropped once its writes are made |

Outside the engine, two caches follow the same rules in their own layer: the room-server client keeps
each room's last state body by `ETag` (`clients/roomserver.py`), and the service keeps each room's
serialised status until the room's view changes (`service/`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cachetools import LRUCache

if TYPE_CHECKING:  # annotations only: hashing imports this module and stays light
    from roomoperator.model.changes import Plan
    from roomoperator.model.results import ReconcileDiff
    from roomoperator.model.seeds import LocalSeed, SeedDigest
    from roomoperator.spec.models import RoomSpec

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_ENTRIES = 100_000


def _always(_: object) -> bool:
    return True


class Cache(Generic[K, V]):
    """A named, bounded (LRU), thread-safe map that counts its hits and misses."""

    def __init__(self, name: str, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.name = name
        self._entries: LRUCache[K, V] = LRUCache(maxsize=max_entries)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, *, valid: Callable[[V], bool] = _always) -> V | None:
        """The entry for `key` when there is one and `valid(entry)`; a stale entry is dropped."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not valid(entry):
                del self._entries[key]
                entry = None
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value

    def discard(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)


SeedDigestKey = tuple[str, int, int]
LstatSignature = tuple[int, int, int]


@dataclass(frozen=True)
class ResolvedSeed:
    """A `seedFrom` path as joined to its folder, the lstat it had, and where it leads (links followed)."""

    joined: str
    signature: LstatSignature
    resolved: Path


@dataclass(frozen=True)
class FileCheck:
    """A file as a stat saw it (inode, size, mtime_ns, mode), `follow`ing links or not."""

    path: str
    signature: tuple[int, int, int, int]
    follow: bool = False

    @classmethod
    def of(cls, path: str, found: os.stat_result, *, follow: bool = False) -> FileCheck:
        return cls(path, (found.st_ino, found.st_size, found.st_mtime_ns, found.st_mode), follow)

    def holds(self) -> bool:
        try:
            found = os.stat(self.path) if self.follow else os.lstat(self.path)
        except OSError:
            return False
        return (found.st_ino, found.st_size, found.st_mtime_ns, found.st_mode) == self.signature


@dataclass(frozen=True)
class SeedSet:
    """A spec's seeds as `SeedFiles.known_seeds` last answered them, and the stats that answer rests on."""

    spec: RoomSpec
    checks: tuple[FileCheck, ...]
    seeds: dict[str, LocalSeed]

    def still(self) -> bool:
        """True while every file is as it was."""
        return all(check.holds() for check in self.checks)


@dataclass(frozen=True)
class PlanBasis:
    """What a room's plan depends on beyond its spec and the observed room: the local seeds, whether the
    server has the operator's endpoints, the protected names, the operator's token name on the room
    server and the entities released to a prune (`planning.planner.plan_room`)."""

    seeds: dict[str, LocalSeed]
    endpoints: bool
    protected: frozenset[str]
    operator: str | None
    release: frozenset[str]


@dataclass(frozen=True)
class PlanMemo:
    """The inputs of a room's last plan (the observed room by its ETag, the spec by identity) and the
    plan made from them."""

    etag: str
    spec: RoomSpec
    basis: PlanBasis
    plan: Plan

    def fits(self, spec: RoomSpec, etag: str | None, basis: PlanBasis) -> bool:
        return etag == self.etag and spec is self.spec and basis == self.basis


@dataclass(frozen=True)
class Rendering:
    """A plan, its JSON form and its reference diff lists (results share them; nobody changes them)."""

    plan: Plan
    json: dict[str, Any]
    diff: ReconcileDiff


@dataclass
class EngineCaches:
    """The engine's caches (see the table above); one set per engine, shared by every room it runs."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    seed_paths: Cache[tuple[str, str], ResolvedSeed] = field(init=False)
    seed_digests: Cache[SeedDigestKey, SeedDigest] = field(init=False)
    seed_sets: Cache[tuple[str, str], SeedSet] = field(init=False)
    plans: Cache[str, PlanMemo] = field(init=False)
    renderings: Cache[str, Rendering] = field(init=False)

    def __post_init__(self) -> None:
        self.seed_paths = Cache("seed_paths", max_entries=self.max_entries)
        self.seed_digests = Cache("seed_digests", max_entries=self.max_entries)
        self.seed_sets = Cache("seed_sets", max_entries=self.max_entries)
        self.plans = Cache("plans", max_entries=self.max_entries)
        self.renderings = Cache("renderings", max_entries=self.max_entries)
