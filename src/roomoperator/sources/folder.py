"""A folder source: the spec files under one folder, read again on every change (watched with
`watchfiles`, debounced) and on a periodic full rescan (`Syncer`), so a lost file event costs at most one
interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import watchfiles

from roomoperator.sources.scanning import Snapshot, SourceUnavailable, scan


class FolderSource:
    """The spec files under `root`; a revision is the digest of their names and bytes."""

    kind = "folder"

    def __init__(self, root: Path, *, debounce_ms: int = 200) -> None:
        self.root = root.resolve()
        self.debounce_ms = debounce_ms

    async def fetch(self) -> Snapshot:
        """The folder as it is now (read on a worker thread)."""
        if not self.root.is_dir():
            raise SourceUnavailable(f"the folder {self.root} does not exist")
        return await asyncio.to_thread(scan, self.root)

    async def changes(self) -> AsyncIterator[None]:
        """One item per burst of changes under the folder (any file: a seed counts as much as a spec)."""
        async for _ in watchfiles.awatch(
            self.root, debounce=self.debounce_ms, step=min(50, max(self.debounce_ms, 1)), recursive=True
        ):
            yield None
