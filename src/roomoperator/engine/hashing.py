"""Seed-file hashing: the content SHA-256 a plan compares, and the reference fingerprint an upload records.

The room server compares artifacts by the SHA-256 of their bytes, so planning computes only that
(`content_digest`: one streaming pass at the disk's speed, a fixed buffer whatever the file size).
`HashCache` remembers digests by (path, size, mtime_ns) in `caches.seed_digests`, so an unchanged seed
is not read again on the next reconcile.

The reference operator recorded a composite fingerprint, `sha256("name|type|workspace|tag1,tag2|" +
base64(content))` (lower-case hex, `docs/contract.md`), which we keep for the room server's manifest and
the audit entry of a seed. It costs a base64 pass over the whole content, so it is computed where it is
recorded: while the seed is uploaded (`Fingerprint`, fed each chunk the client sends), never when
planning.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from roomoperator.engine.caches import Cache, SeedDigestKey
from roomoperator.model.seeds import SeedDigest, SeedLabels

CHUNK_SIZE = 1024 * 1024
"""Bytes read at once when hashing a seed file."""


def _fingerprint_prefix(name: str, type_: str, workspace: str, tags: Sequence[str]) -> bytes:
    return f"{name}|{type_}|{workspace}|{','.join(tags)}|".encode()


def fingerprint(*, name: str, type_: str, workspace: str, tags: Sequence[str], content: bytes) -> str:
    """The reference fingerprint of `content` (`ArtifactsClient.BuildFingerprint`)."""
    digest = hashlib.sha256(_fingerprint_prefix(name, type_, workspace, tags))
    digest.update(base64.b64encode(content))
    return digest.hexdigest()


class Fingerprint:
    """The reference fingerprint of a seed, fed its bytes in chunks of any size (the upload's): the same
    digest as `fingerprint` over the whole content. Memory: one chunk and its encoding."""

    def __init__(self, labels: SeedLabels) -> None:
        self._digest = hashlib.sha256(
            _fingerprint_prefix(labels.name, labels.type, labels.workspace, labels.tags)
        )
        self._carry = b""

    def update(self, chunk: bytes) -> None:
        """Take the next bytes; all but the last 0-2 of them are base64-encoded into the digest (a
        multiple of 3 encodes without padding, so the chunks' encodings join into the whole's)."""
        block = self._carry + chunk if self._carry else chunk
        whole = len(block) - len(block) % 3
        self._digest.update(base64.b64encode(memoryview(block)[:whole]))
        self._carry = bytes(block[whole:])

    def hexdigest(self) -> str:
        """The fingerprint of every byte given so far."""
        final = self._digest.copy()
        final.update(base64.b64encode(self._carry))
        return final.hexdigest()


def content_digest(path: Path) -> SeedDigest:
    """The SHA-256 and size of `path`'s bytes, read once in `CHUNK_SIZE` pieces (hashlib releases the
    GIL while it hashes)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    size = 0
    with path.open("rb", buffering=0) as stream:
        while read := stream.readinto(buffer):
            digest.update(view[:read])
            size += read
    return SeedDigest(sha256=digest.hexdigest(), size=size)


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

    def digest(self, path: Path, *, stat: os.stat_result | None = None) -> SeedDigest:
        """The digest of `path` (an absolute, resolved path), read only when the file changed since.
        `stat`, when the caller already has it, saves a system call."""
        stat = stat or os.stat(path)
        cached = self.known(path, stat=stat)
        if cached is not None:
            return cached
        result = content_digest(path)
        self._cache.put(_key(path, stat), result)
        return result

    def known(self, path: Path, *, stat: os.stat_result) -> SeedDigest | None:
        """The cached digest of `path` as `stat` describes it, or None (never reads the file)."""
        return self._cache.get(_key(path, stat))


def _key(path: Path, stat: os.stat_result) -> SeedDigestKey:
    return (str(path), stat.st_size, stat.st_mtime_ns)
