"""Seed-file hashing: the content SHA-256 and the reference fingerprint, in one streaming pass.

The room server compares artifacts by the SHA-256 of their bytes; the reference operator recorded a
composite fingerprint, `sha256("name|type|workspace|tag1,tag2|" + base64(content))` (lower-case hex,
`docs/contract.md`), which we keep for audit entries and plan output. Both digests come from one read of
the file in fixed-size chunks, so a seed is never held whole in memory. `HashCache` remembers digests by
(path, size, mtime_ns, labels) in `caches.seed_digests`, so an unchanged seed is not read again on the
next reconcile.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from roomoperator.engine.caches import Cache, SeedDigestKey
from roomoperator.model.seeds import SeedDigest, SeedLabels

# A multiple of 3, so that every chunk but the last base64-encodes without padding.
CHUNK_SIZE = 3 * 256 * 1024


@functools.cache
def _helpers() -> ThreadPoolExecutor:
    """Where content hashing runs while the caller's thread builds the fingerprint: made on the first
    file of more than one chunk, then shared by every digest of the process (threads start on use)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed-hash")


def _fingerprint_prefix(name: str, type_: str, workspace: str, tags: Sequence[str]) -> bytes:
    return f"{name}|{type_}|{workspace}|{','.join(tags)}|".encode()


def fingerprint(*, name: str, type_: str, workspace: str, tags: Sequence[str], content: bytes) -> str:
    """The reference fingerprint of `content` (`ArtifactsClient.BuildFingerprint`)."""
    digest = hashlib.sha256(_fingerprint_prefix(name, type_, workspace, tags))
    digest.update(base64.b64encode(content))
    return digest.hexdigest()


def digest_file(path: Path, *, name: str, type_: str, workspace: str, tags: Sequence[str]) -> SeedDigest:
    """Stream `path` once and return its content SHA-256, reference fingerprint and size.

    The content hash of each chunk runs on a helper thread (hashlib releases the GIL) while this thread
    base64-encodes the chunk into the fingerprint, so the two digests cost about one pass of wall time.
    Memory: two chunks and one encoded chunk, whatever the file size.
    """
    content = hashlib.sha256()
    composite = hashlib.sha256(_fingerprint_prefix(name, type_, workspace, tags))
    size = 0
    carry = b""
    with path.open("rb") as stream:
        pending: Future[None] | None = None
        while chunk := stream.read(CHUNK_SIZE):
            size += len(chunk)
            if pending is not None:
                pending.result()
            pending = _helpers().submit(content.update, chunk)
            block = memoryview(carry + chunk if carry else chunk)
            whole = len(block) - len(block) % 3
            composite.update(base64.b64encode(block[:whole]))
            carry = bytes(block[whole:])
        if pending is not None:
            pending.result()
    composite.update(base64.b64encode(carry))
    return SeedDigest(sha256=content.hexdigest(), fingerprint=composite.hexdigest(), size=size)


class HashCache:
    """Digests of seed files, reused while a file keeps its path, size and mtime_ns (`seed_digests`)."""

    def __init__(
        self, *, cache: Cache[SeedDigestKey, SeedDigest] | None = None, max_entries: int = 100_000
    ) -> None:
        self._cache = cache if cache is not None else Cache("seed_digests", max_entries=max_entries)

    @property
    def hits(self) -> int:
        return self._cache.hits

    @property
    def misses(self) -> int:
        """Look-ups that found nothing: with `digest`, the files that were read."""
        return self._cache.misses

    def digest(self, path: Path, labels: SeedLabels, *, stat: os.stat_result | None = None) -> SeedDigest:
        """The digest of `path` (an absolute, resolved path), read only when the file changed since.
        `stat`, when the caller already has it, saves a system call."""
        stat = stat or os.stat(path)
        cached = self.known(path, labels, stat=stat)
        if cached is not None:
            return cached
        result = digest_file(
            path, name=labels.name, type_=labels.type, workspace=labels.workspace, tags=labels.tags
        )
        self._cache.put(_key(path, stat, labels), result)
        return result

    def known(self, path: Path, labels: SeedLabels, *, stat: os.stat_result) -> SeedDigest | None:
        """The cached digest of `path` as `stat` describes it, or None (never reads the file)."""
        return self._cache.get(_key(path, stat, labels))


def _key(path: Path, stat: os.stat_result, labels: SeedLabels) -> SeedDigestKey:
    return (str(path), stat.st_size, stat.st_mtime_ns, labels)
