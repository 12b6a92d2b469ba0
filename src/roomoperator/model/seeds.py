"""What the engine knows of a spec's seed files: the digests of a file's content, and where it was found.

The engine computes these (`engine/hashing.py`, `engine/seeding.py`); the planner compares them with the
artifacts the room server reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SeedLabels:
    """The artifact labels a seed's reference fingerprint covers besides its bytes."""

    name: str
    type: str
    workspace: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeedDigest:
    """One local seed file: its content SHA-256 and size in bytes; the reference fingerprint only where it
    was computed (an upload records it; planning leaves it None)."""

    sha256: str
    size: int
    fingerprint: str | None = None


@dataclass(frozen=True)
class LocalSeed:
    """A spec artifact's seed file: its resolved path and digest, or why it cannot be read."""

    path: Path | None
    digest: SeedDigest | None = None
    problem: str | None = None
