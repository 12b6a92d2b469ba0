"""Reference fingerprint vectors (operator.md §7.1); the streaming digests against hashlib on whole bytes;
planning computes no fingerprint (an upload does)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine import hashing
from roomoperator.engine.hashing import Fingerprint, HashCache, content_digest, fingerprint
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.seeds import SeedLabels
from tests.engine.conftest import ListSink, fast_settings, room_spec
from tests.support.roomserver import RoomServerHandle

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
    streamed = Fingerprint(SeedLabels(name, type_, workspace, (tag,)))
    streamed.update(path.read_bytes())
    assert streamed.hexdigest() == expected
    digest = content_digest(path)
    assert digest.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest.size == path.stat().st_size
    assert digest.fingerprint is None


def test_fingerprint_depends_on_tags_and_content() -> None:
    base = {"name": "n", "type_": "t", "workspace": "w"}
    assert fingerprint(**base, tags=["tag1"], content=b"x") != fingerprint(
        **base, tags=["tag1", "tag2"], content=b"x"
    )
    assert fingerprint(**base, tags=[], content=b"x") != fingerprint(**base, tags=[], content=b"y")
    assert fingerprint(**base, tags=[], content=b"x") == fingerprint(**base, tags=[], content=b"x")


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=4000), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_streaming_equals_whole(content: bytes, cuts: list[int]) -> None:
    labels = SeedLabels("n", "t", "w", ("a", "b"))
    streamed = Fingerprint(labels)
    edges = [0, *sorted(c for c in cuts if c <= len(content)), len(content)]
    for start, end in itertools.pairwise(edges):  # odd chunk sizes exercise the base64 carry
        streamed.update(content[start:end])
    assert streamed.hexdigest() == fingerprint(
        name="n", type_="t", workspace="w", tags=["a", "b"], content=content
    )


@settings(max_examples=30, deadline=None)
@given(content=st.binary(max_size=5000), chunk=st.integers(min_value=1, max_value=64))
def test_content_digest_equals_whole(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, chunk: int
) -> None:
    path = tmp_path_factory.mktemp("h") / "seed"
    path.write_bytes(content)
    original = hashing.CHUNK_SIZE
    hashing.CHUNK_SIZE = chunk
    try:
        digest = content_digest(path)
    finally:
        hashing.CHUNK_SIZE = original
    assert (digest.sha256, digest.size) == (hashlib.sha256(content).hexdigest(), len(content))


def test_cache_reuses_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "seed.txt"
    path.write_bytes(b"one")
    cache = HashCache()
    first = cache.digest(path)
    again = cache.digest(path)
    assert again == first
    assert (cache.hits, cache.misses) == (1, 1)
    path.write_bytes(b"two!")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    changed = cache.digest(path)
    assert changed.sha256 == hashlib.sha256(b"two!").hexdigest()
    assert cache.misses == 2


def test_cache_is_bounded(tmp_path: Path) -> None:
    cache = HashCache(max_entries=2)
    for i in range(3):
        (tmp_path / f"f{i}").write_bytes(b"x")
        cache.digest(tmp_path / f"f{i}")
    cache.digest(tmp_path / "f0")
    assert cache.misses == 4


class _CountingBase64:
    """`hashing`'s base64 module, counting the encodings (the fingerprint's only cost)."""

    def __init__(self) -> None:
        self.calls = 0

    def b64encode(self, data: bytes | memoryview) -> bytes:
        self.calls += 1
        return base64.b64encode(data)


async def test_planning_computes_no_fingerprint_the_upload_records_it(
    roomserver: RoomServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingBase64()
    monkeypatch.setattr(hashing, "base64", counting)
    spec = room_spec(
        artifacts=[
            {
                "name": "project-plan",
                "type": "document",
                "workspace": "shared",
                "tags": ["planning"],
                "seedFrom": "project-plan.md",
            }
        ]
    )
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings(), audit=(sink := ListSink()))
        dry = await reconciler.reconcile(spec, seed_root=SEEDS, dry_run=True)
        assert dry.plan is not None
        assert dry.plan["changes"][0]["after"]["fingerprint"] is None
        assert (
            dry.plan["changes"][0]["after"]["sha256"]
            == hashlib.sha256((SEEDS / "project-plan.md").read_bytes()).hexdigest()
        )
        assert counting.calls == 0
        applied = await reconciler.reconcile(spec, seed_root=SEEDS)
        assert applied.success, applied.errors
        assert counting.calls > 0
        vector = "a0095df98f38ca286faeefc40d870e7b6fe5a15044faa4af832da09c03339f67"
        seeded = [e for e in sink.entries if e.action == "artifact.seeded"]
        assert [e.metadata["hash"] for e in seeded] == [vector]
        state = await client.get_state(spec.room_id)
        assert [a.fingerprint for a in state.artifacts] == [vector]
        calls = counting.calls
        again = await reconciler.reconcile(spec, seed_root=SEEDS)
        assert (again.requests, counting.calls) == (1, calls)
