"""The parts of one running room server (storage, blobs, event feed, sessions, providers, tokens), opened and
closed together by the app's lifespan."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from roomserver.auth import TokenRegistry
from roomserver.domain.events import RoomEvent
from roomserver.domain.mcp import ProviderRegistry
from roomserver.domain.sessions import LiveSessions
from roomserver.eventfeed import EventFeed
from roomserver.settings import ServerSettings
from roomserver.storage import repository
from roomserver.storage.blobs import BlobStore
from roomserver.storage.database import Database


def token_registry(settings: ServerSettings) -> TokenRegistry:
    """The tokens of `--tokens` and `ROOMSERVER_TOKENS` (raises TokenConfigError when unreadable)."""
    return TokenRegistry.load(
        tokens_file=settings.tokens_file,
        tokens_json=settings.tokens.get_secret_value() if settings.tokens else None,
        insecure=settings.insecure_no_auth,
    )


def _lock_folder(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on the data folder: a second server on it would empty the first's `tmp/`."""
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"{path.parent} is in use by another roomserver process") from None
    return handle


class RoomServer:
    """Everything a request handler needs; one instance per app."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.tokens = token_registry(settings)
        self.db = Database(settings.data_dir / "roomserver.db")
        self.blobs = BlobStore(settings.data_dir)
        self.feed = EventFeed()
        self.sessions = LiveSessions()
        self.providers = ProviderRegistry()
        self._lock: IO[bytes] | None = None

    async def open(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_folder(self.settings.data_dir / "roomserver.lock")
        try:
            self.blobs.open()
            await self.db.open()
            self.feed.announce(await self.db.run(repository.last_seq))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self.feed.close()
        await self.db.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def publish(self, events: list[RoomEvent]) -> None:
        """Announce committed events to live subscribers."""
        if events:
            self.feed.announce(events[-1].seq)
