"""Content-addressed artifact bytes: `blobs/<sha256>`, written by streaming to `tmp/`, fsync, then rename.

A blob is durable (file and directory entry fsynced) before any manifest row naming it commits, so after a
crash a manifest never points at a missing or torn blob; at worst an unreferenced blob is left behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from roomserver.errors import RoomServerError


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class UploadTooLarge(RoomServerError):
    """The bytes passed the upload limit while streaming (413)."""

    def __init__(self, limit: int):
        super().__init__(413, f"data exceeds the upload limit of {limit} bytes", error="PayloadTooLarge")


class BlobUpload:
    """One upload streamed to a temporary file, hashed as it goes. Blocking: call from a worker thread."""

    def __init__(self, store: BlobStore, *, limit: int):
        self._store = store
        self._limit = limit
        self._path = store.tmp_dir / f"upload-{uuid.uuid4().hex}"
        self._file = self._path.open("xb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise UploadTooLarge(self._limit)
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> str:
        """Make the bytes durable under their SHA-256 and return it (a known blob is kept as it is)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        target = self._store.path(digest)
        if target.exists():
            self._path.unlink()
        else:
            os.replace(self._path, target)
            _fsync_dir(self._store.blob_dir)
        return digest

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


class BlobStore:
    """`<data>/blobs/<sha256>` (immutable) and `<data>/tmp/` (uploads in flight, emptied at start)."""

    def __init__(self, data_dir: Path):
        self.blob_dir = data_dir / "blobs"
        self.tmp_dir = data_dir / "tmp"

    def open(self) -> None:
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink()

    def path(self, sha256: str) -> Path:
        return self.blob_dir / sha256

    def start_upload(self, *, limit: int) -> BlobUpload:
        return BlobUpload(self, limit=limit)
