"""Reference fingerprint vectors (operator.md §7.1); the streaming digest against hashlib on whole bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomoperator.engine import hashing
from roomoperator.engine.hashing import HashCache, digest_file, fingerprint
from roomoperator.model.seeds import SeedLabels

SEEDS = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "seeds"
)  # byte-identical to the reference


@pytest.mark.parametrize(
    ("name", "type_", "workspace", "tags", "content", "expected"),
    [
        ("test-artifact", "document", "shared", ["tag1", "tag2"], b"test content",
         "9a0a3c3661175e6a9e486b9fa0e94482fc9c1d4d5083cd6b2232f58b9709b22f"),
        ("test-artifact", "document", "shared", ["tag1"], b"same content",
         "3937cddef1c26c6b5b83b796610d00008574ce7450b0f914c10da4e5c8d84508"),
        ("a", "b", "c", [], b"", "a5e4393b1cd795ddd87bd9500c2bd604f363b926986384c14391bab747ea2828"),
    ],
)  # fmt: skip
def test_reference_vectors(
    name: str, type_: str, workspace: str, tags: list[str], content: bytes, expected: str
) -> None:
    assert fingerprint(name=name, type_=type_, workspace=workspace, tags=tags, content=content) == expected


@pytest.mark.parametrize(
    ("file", "name", "type_", "workspace", "tag", "expected"),
    [
        ("project-plan.md", "project-plan", "document", "shared", "planning",
         "a0095df98f38ca286faeefc40d870e7b6fe5a15044faa4af832da09c03339f67"),
        ("research-data.json", "research-data", "dataset", "analysis", "data",
         "183e885e53709accb132ca9b6fea1a6edcbc466a6c2afaf0055a38110c581469"),
    ],
)  # fmt: skip
def test_reference_seed_vectors(
    file: str, name: str, type_: str, workspace: str, tag: str, expected: str
) -> None:
    path = SEEDS / file
    digest = digest_file(path, name=name, type_=type_, workspace=workspace, tags=[tag])
    assert digest.fingerprint == expected
    assert digest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.size == path.stat().st_size


def test_fingerprint_depends_on_tags_and_content() -> None:
    base = {"name": "n", "type_": "t", "workspace": "w"}
    assert fingerprint(**base, tags=["tag1"], content=b"x") != fingerprint(
        **base, tags=["tag1", "tag2"], content=b"x"
    )
    assert fingerprint(**base, tags=[], content=b"x") != fingerprint(**base, tags=[], content=b"y")
    assert fingerprint(**base, tags=[], content=b"x") == fingerprint(**base, tags=[], content=b"x")


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=4000), chunk=st.integers(min_value=1, max_value=64))
def test_streaming_equals_whole(tmp_path_factory: pytest.TempPathFactory, content: bytes, chunk: int) -> None:
    path = tmp_path_factory.mktemp("h") / "seed"
    path.write_bytes(content)
    original = hashing.CHUNK_SIZE
    hashing.CHUNK_SIZE = chunk  # odd chunk sizes exercise the base64 carry
    try:
        digest = digest_file(path, name="n", type_="t", workspace="w", tags=["a", "b"])
    finally:
        hashing.CHUNK_SIZE = original
    assert digest.sha256 == hashlib.sha256(content).hexdigest()
    assert digest.fingerprint == fingerprint(
        name="n", type_="t", workspace="w", tags=["a", "b"], content=content
    )


def test_cache_reuses_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "seed.txt"
    path.write_bytes(b"one")
    cache = HashCache()
    first = cache.digest(path, SeedLabels("n", "t", "w"))
    again = cache.digest(path, SeedLabels("n", "t", "w"))
    assert again == first
    assert (cache.hits, cache.misses) == (1, 1)
    path.write_bytes(b"two!")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    changed = cache.digest(path, SeedLabels("n", "t", "w"))
    assert changed.sha256 == hashlib.sha256(b"two!").hexdigest()
    assert cache.misses == 2
    renamed = cache.digest(path, SeedLabels("other", "t", "w"))
    assert renamed.fingerprint != changed.fingerprint


def test_cache_is_bounded(tmp_path: Path) -> None:
    cache = HashCache(max_entries=2)
    for i in range(3):
        (tmp_path / f"f{i}").write_bytes(b"x")
        cache.digest(tmp_path / f"f{i}", SeedLabels("n", "t", "w"))
    cache.digest(tmp_path / "f0", SeedLabels("n", "t", "w"))
    assert cache.misses == 4
