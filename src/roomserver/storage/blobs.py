"""Content-addressed artifact bytes: `blobs/<sha256>`, written by streaming to `tmp/`, fsync, then rename
(an upload of at most `MEMORY_BYTES` is held in memory instead, and not written at all when its blob is
already stored).

A blob is durable (file and directory entry fsynced) before any manifest row naming it commits, so after a
crash a manifest never points at a missing or torn blob; at worst an unreferenced blob is left behind.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Final

from roomserver.errors import RoomServerError

MEMORY_BYTES: Final = 1024 * 1024
"""An upload up to this size is hashed in memory and written (once, if its blob is new) when committed."""


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
    """One upload hashed as it streams: held in memory up to `MEMORY_BYTES`, then in a temporary file.

    Blocking once past `MEMORY_BYTES` (`holds` says when a write is not, `stored` when committing is not):
    call from a worker thread. A small
    upload whose blob is already stored (the same seed sent to many rooms) never touches the disk.
    """

    def __init__(self, store: BlobStore, *, limit: int):
        self._store = store
        self._limit = limit
        self._path: Path | None = None
        self._file: BinaryIO | None = None
        self._held: list[bytes] = []
        self._hash = hashlib.sha256()
        self.size = 0

    def holds(self, extra: int) -> bool:
        """Whether writing `extra` more bytes keeps the upload in memory (no I/O: fine on the event loop)."""
        return self._file is None and self.size + extra <= MEMORY_BYTES

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limit:
            raise UploadTooLarge(self._limit)
        self._hash.update(chunk)
        if self._file is None and self.size <= MEMORY_BYTES:
            self._held.append(chunk)
            return
        self._spill().write(chunk)

    def _spill(self) -> BinaryIO:
        """The temporary file, created with the bytes held so far."""
        if self._file is None:
            self._path = self._store.tmp_dir / f"upload-{uuid.uuid4().hex}"
            self._file = self._path.open("xb")
            self._file.write(b"".join(self._held))
            self._held = []
        return self._file

    def stored(self) -> str | None:
        """The digest when the upload is held in memory and its blob is stored already: committing it needs
        no I/O but one stat (fine on the event loop); else None (`commit` it on a worker thread)."""
        if self._file is not None:
            return None
        digest = self._hash.hexdigest()
        if not self._store.path(digest).exists():
            return None
        self._held = []
        return digest

    def commit(self) -> str:
        """Make the bytes durable under their SHA-256 and return it (a known blob is kept as it is)."""
        known = self.stored()
        if known is not None:
            return known
        digest = self._hash.hexdigest()
        target = self._store.path(digest)
        file = self._spill()
        file.flush()
        os.fsync(file.fileno())
        file.close()
        assert self._path is not None
        if target.exists():
            self._path.unlink()
        else:
            os.replace(self._path, target)
            _fsync_dir(self._store.blob_dir)
        return digest

    def discard(self) -> None:
        self._held = []
        if self._file is not None and self._path is not None:
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
