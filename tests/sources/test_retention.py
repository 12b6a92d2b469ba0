"""A git source keeps only the exports it needs (issue 15), against real local bare repositories and a
real store: after its syncs only the newest fetched commit's export and those a revision refers to
remain, a rollback after that still reads the old revision's own seed bytes, and a crashed export's
temporary folder older than an hour goes, while a fresh one, a symlink out of the folder (and what it
points to) and everything outside `exports/` stay."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx

from roomoperator.model.audit import utcnow
from roomoperator.settings import SourceSettings
from roomoperator.sources.git import STAGING_MAX_AGE_SECONDS, STAGING_PREFIX
from roomoperator.sources.scanning import Declared
from roomoperator.sources.syncing import Syncer, source_of
from roomoperator.store import Store
from roomoperator.store.records import SpecVersion
from roomoperator.store.sources import seed_folders_under
from tests.sources.conftest import operator_with, synced, syncer_of, write_spec
from tests.sources.test_git import ROOM, commit, git_source, repository
from tests.store.conftest import store
from tests.support.roomserver import RoomServerHandle

__all__ = ["store"]  # the store fixture: SQLite and the local PostgreSQL


def exported(exports: Path) -> list[str]:
    return sorted(entry.name for entry in exports.iterdir())


async def test_only_the_newest_and_the_referred_exports_remain(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    origin, work = repository(tmp_path)
    seed = work / "rooms" / "seeds" / "project-plan.md"
    seed.parent.mkdir(parents=True)
    seed.write_text("plan one\n", encoding="utf-8")
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1, artifacts=1)
    first = commit(work, "first")
    exports = tmp_path / "data" / "sources" / "repo" / "exports"
    async with operator_with(roomserver, tmp_path, git_source(origin, allow_overrides=True)) as operator:
        syncer = syncer_of(operator, "repo")
        await synced(operator, "repo", lambda state: state.applied_revision == first)
        for index in range(3):  # commits that change no room's spec or seeds: no revision refers to them
            (work / "README.md").write_text(f"note {index}\n", encoding="utf-8")
            noted = commit(work, f"note {index}")
            assert (await syncer.sync()).applied_revision == noted
            assert exported(exports) == sorted([first, noted])
        seed.write_text("plan two\n", encoding="utf-8")
        write_spec(work / "rooms" / "lab.room.yaml", ROOM, version=2, entities=1, artifacts=1)
        second = commit(work, "second")
        await syncer.sync()
        await operator.controller.wait_idle()
        (work / "README.md").write_text("last\n", encoding="utf-8")
        newest = commit(work, "last")
        assert (await syncer.sync()).applied_revision == newest
        assert exported(exports) == sorted([first, second, newest])
        history = await operator.app.state.store.history(ROOM)
        assert [version.source_revision for version in history] == [first, second]
        assert (await admin.get(f"/rooms/{ROOM}/artifacts/doc-0")).text == "plan two\n"

        restored = await operator.http.post(f"/rooms/{ROOM}/rollback", json={"revision": 1})
        assert (restored.status_code, restored.json()["revision"]) == (200, 3)
        await operator.controller.wait_idle()
        assert (await admin.get(f"/rooms/{ROOM}/artifacts/doc-0")).text == "plan one\n"
        (work / "README.md").write_text("after\n", encoding="utf-8")
        after = commit(work, "after")
        await syncer.sync()
        # The restored revision reads its seeds from the first commit's export, kept with the others.
        assert exported(exports) == sorted([first, second, after])
        assert (exports / first / "rooms" / "seeds" / "project-plan.md").read_text() == "plan one\n"


class TakingSink:
    """Takes every declaration without a revision (the store's revisions are written by the test)."""

    async def declare(self, declared: Declared, *, source: str, revision: str) -> str | None:
        return None

    async def release(self, room_id: str, *, source: str, prune: bool) -> None:
        raise AssertionError(room_id)

    async def failed(self, source: str, errors: list[str]) -> None:
        raise AssertionError(errors)


async def revision_in(store: Store, room_id: str, base_dir: Path) -> None:
    version = SpecVersion(
        room_id=room_id,
        revision=1,
        spec_version=1,
        spec={},
        actor="test",
        correlation_id=f"c-{room_id}",
        diff=None,
        applied_at=utcnow(),
        base_dir=str(base_dir),
    )
    assert await store.accept_revision(version)


async def test_leftovers_go_and_nothing_outside_the_exports(tmp_path: Path, store: Store) -> None:
    origin, work = repository(tmp_path)
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1)
    head = commit(work, "first")
    settings = SourceSettings(name="repo_1", git=f"file://{origin}", branch="live", path="rooms")
    workdir = tmp_path / "data" / "sources"
    exports = workdir / "repo_1" / "exports"
    exports.mkdir(parents=True)
    crashed = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=exports))  # a crashed export, long ago
    (crashed / "rooms").mkdir()
    (crashed / "rooms" / "half.room.yaml").write_text("apiVersion: v1\n", encoding="utf-8")
    long_ago = time.time() - 2 * STAGING_MAX_AGE_SECONDS
    os.utime(crashed, (long_ago, long_ago))
    fresh = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=exports))  # maybe an export being made
    for old in ("0" * 40, "1" * 40, "2" * 40):
        (exports / old / "rooms").mkdir(parents=True)
        (exports / old / "rooms" / "seed.md").write_text(old, encoding="utf-8")
    (exports / "stray.txt").write_text("stray\n", encoding="utf-8")
    outside = tmp_path / "outside"
    (outside / "rooms").mkdir(parents=True)
    (outside / "rooms" / "keep.md").write_text("mine\n", encoding="utf-8")
    (exports / "elsewhere").symlink_to(outside, target_is_directory=True)
    (workdir / "repoX1" / "exports" / ("2" * 40)).mkdir(parents=True)
    # A revision refers to the first old export; another source's folder with a near-same name does not count.
    await revision_in(store, "room-kept-01", (exports / ("0" * 40) / "rooms").resolve())
    await revision_in(store, "room-other-01", (workdir / "repoX1" / "exports" / ("1" * 40)).resolve())

    syncer = Syncer(settings, source_of(settings, workdir=workdir), TakingSink(), store)
    state = await syncer.sync()

    assert (state.applied_revision, state.errors) == (head, [])
    assert exported(exports) == sorted([head, "0" * 40, fresh.name, "elsewhere"])
    assert (outside / "rooms" / "keep.md").read_text() == "mine\n"
    assert (exports / ("0" * 40) / "rooms" / "seed.md").read_text() == "0" * 40
    assert (workdir / "repoX1" / "exports" / ("2" * 40)).is_dir()
    prefix = os.path.join(exports.resolve(), "")
    assert await seed_folders_under(store, prefix) == {str((exports / ("0" * 40) / "rooms").resolve())}
