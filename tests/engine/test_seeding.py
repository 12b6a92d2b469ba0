"""Seed files of a spec: confined to its folder, resolved and hashed once while unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from roomoperator.engine.seeding import SeedFiles
from roomoperator.spec.models import RoomSpec
from tests.engine.conftest import room_spec


def spec_with(*seed_from: str) -> RoomSpec:
    artifacts = [
        {"name": f"a{i}", "type": "document", "workspace": "shared", "seedFrom": s}
        for i, s in enumerate(seed_from)
    ]
    return room_spec(artifacts=artifacts)


def test_problems_are_named(tmp_path: Path) -> None:
    (tmp_path / "spec" / "dir").mkdir(parents=True)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (tmp_path / "spec" / "link.txt").symlink_to(outside)
    seeds = SeedFiles().local_seeds(spec_with("missing.txt", "dir", "link.txt"), tmp_path / "spec")
    assert seeds["a0"].problem == f"Seed file not found: {(tmp_path / 'spec' / 'missing.txt').resolve()}"
    assert seeds["a1"].problem is not None
    assert seeds["a1"].problem.startswith("Seed file not readable:")
    assert seeds["a2"].problem is not None
    assert seeds["a2"].problem.startswith("Seed file refused: link.txt:")
    assert all(seed.digest is None for seed in seeds.values())


def test_resolution_and_digest_follow_changes(tmp_path: Path) -> None:
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "one.txt").write_text("one")
    (folder / "two.txt").write_text("two")
    (folder / "current.txt").symlink_to("one.txt")
    files = SeedFiles()
    spec = spec_with("current.txt")
    first = files.local_seeds(spec, folder)["a0"]
    again = files.local_seeds(spec, folder)["a0"]
    assert first == again
    assert first.digest is not None
    assert first.digest.sha256 == hashlib.sha256(b"one").hexdigest()
    assert files.hash_cache.hits == 1
    (folder / "current.txt").unlink()
    (folder / "current.txt").symlink_to("two.txt")
    os.utime(
        folder / "current.txt", ns=(1, 1), follow_symlinks=False
    )  # a different lstat even on coarse clocks
    moved = files.local_seeds(spec, folder)["a0"]
    assert moved.path == (folder / "two.txt").resolve()
    assert moved.digest is not None
    assert moved.digest.sha256 == hashlib.sha256(b"two").hexdigest()


def test_known_seeds_answer_from_the_caches_only(tmp_path: Path) -> None:
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "one.txt").write_text("one")
    files, spec = SeedFiles(), spec_with("one.txt")
    assert files.known_seeds(spec, folder) is None  # never resolved nor read: the thread's job
    assert files.hash_cache.misses == 0
    assert files.known_seeds(spec, folder) is None
    seeds = files.local_seeds(spec, folder)
    assert files.known_seeds(spec, folder) == seeds
    (folder / "one.txt").write_text("changed")
    os.utime(folder / "one.txt", ns=(1, 1))
    assert files.known_seeds(spec, folder) is None
    assert files.local_seeds(spec, folder) != seeds
