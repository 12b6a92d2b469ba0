"""The parts of one running room server (storage, blobs, event feed, sessions, providers, tokens, the rooms'
state tags), opened and closed together by the app's lifespan. Every commit reports its rooms here
(`_committed`): their state tags move and their events are announced."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

from roomserver.auth import TokenRegistry
from roomserver.domain.freshness import StateTags
from roomserver.domain.sessions import LiveSessions
from roomserver.eventfeed import EventFeed
from roomserver.providers.supervisor import Providers
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
        self.state_tags = StateTags()
        self.db = Database(settings.data_dir / "roomserver.db", on_commit=self._committed)
        self.blobs = BlobStore(settings.data_dir)
        self.feed = EventFeed()
        self.sessions = LiveSessions(changed=self.state_tags.changed)
        self.providers = Providers(settings)
        self._lock: IO[bytes] | None = None

    async def open(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_folder(self.settings.data_dir / "roomserver.lock")
        try:
            self.blobs.open()
            await self.db.open()
            self.feed.announce(await self.db.run(repository.last_seq))
            self.providers.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.providers.close()
        self.feed.close()
        await self.db.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _committed(self, rooms: dict[str, int]) -> None:
        """After each group commit, before its writers are answered: the rooms whose events it appended
        (room -> last sequence) have changed, and their events are announced."""
        for room_id in rooms:
            self.state_tags.changed(room_id)
        self.feed.announce(max(rooms.values()))
