"""A git source: one branch of a repository (a local path, `file://`, `https://` or `ssh://`, fetched
with the `git` command into a bare mirror of its own), each commit exported once into a folder named by
the commit (content-addressed), so a revision's specs and seeds are exactly that commit's content and an
older revision's seed folder stays as it was.

Exports are kept only while needed (`GitSource.retain`, which the syncer calls after its syncs): the
newest fetched commit's and those the store still refers to as a seed folder; every other entry of `exports/`
goes, and so does a half-made export (its temporary `.export-*` folder) older than
`STAGING_MAX_AGE_SECONDS`. An export is removed by renaming it to `.removing-*` first, so a crash midway
never leaves a partial `exports/<commit>/` that a later fetch would take for a whole one.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Collection
from pathlib import Path, PurePosixPath

import structlog

from roomoperator.sources.scanning import Snapshot, SourceUnavailable, scan

log = structlog.get_logger(__name__)
GIT_TIMEOUT_SECONDS = 120.0
STAGING_PREFIX = ".export-"
"""The temporary sibling folder an export is unpacked into before its one rename."""
REMOVING_PREFIX = ".removing-"
"""An export being removed: renamed out of `exports/<commit>` first, then deleted."""
STAGING_MAX_AGE_SECONDS = 3600.0
"""A temporary export folder older than this is a crashed export's, and removed."""


class GitSource:
    """`branch` of the repository at `url`, its spec files under `path`; `workdir` holds the mirror and
    the exported commits."""

    kind = "git"

    def __init__(self, url: str, *, branch: str, path: str, workdir: Path, shown: str | None = None) -> None:
        self.url = url
        self.shown = shown or url
        """The URL as messages show it (credentials left out)."""
        self.branch = branch
        self.path = PurePosixPath(path)
        if self.path.is_absolute() or ".." in self.path.parts:
            raise ValueError(f"the path {path!r} must be relative to the repository and stay inside it")
        self.workdir = workdir
        self.mirror = workdir / "repo.git"
        self.exports = workdir / "exports"
        self.head: str | None = None
        """The branch's commit as last fetched (None: not fetched by this process yet)."""
        self.exported = 0
        """How many commits this process exported (a new one may make older exports removable)."""

    async def _git(self, *args: str) -> bytes:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
        )
        try:
            async with asyncio.timeout(GIT_TIMEOUT_SECONDS):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SourceUnavailable(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS:.0f} s") from None
        if process.returncode != 0:
            lines = err.decode(errors="replace").replace(self.url, self.shown).strip().splitlines()
            raise SourceUnavailable(f"git {args[0]} failed: {lines[-1] if lines else process.returncode}")
        return out

    async def fetch(self) -> Snapshot:
        """Fetch the branch (a force-push replaces it) and read its head commit's spec files."""
        if not (self.mirror / "HEAD").exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            await self._git("init", "--quiet", "--bare", str(self.mirror))
        ref = f"refs/heads/{self.branch}"
        try:
            await self._git(
                "--git-dir",
                str(self.mirror),
                "fetch",
                "--quiet",
                "--force",
                "--no-tags",
                self.url,
                f"+{ref}:{ref}",
            )
        except SourceUnavailable as exc:
            raise SourceUnavailable(f"cannot fetch branch {self.branch} of {self.shown}: {exc}") from None
        commit = (
            (await self._git("--git-dir", str(self.mirror), "rev-parse", "--verify", ref)).decode().strip()
        )
        self.head = commit
        folder = await self._export(commit) / self.path
        if not folder.is_dir():
            raise SourceUnavailable(f"commit {commit[:12]} of {self.branch} has no folder {self.path}")
        return await asyncio.to_thread(scan, folder, revision=commit)

    async def _export(self, commit: str) -> Path:
        """The commit's tree as a folder `exports/<commit>` (made once, atomically)."""
        target = self.exports / commit
        if target.is_dir():
            return target
        archive = await self._git("--git-dir", str(self.mirror), "archive", "--format=tar", commit)
        await asyncio.to_thread(_extract, archive, target)
        self.exported += 1
        return target

    def export_prefix(self) -> str:
        """The real path of `exports/` ending in the separator: every seed folder a revision of this
        source records (a resolved path, `exports/<commit>/...`) starts with it."""
        return os.path.join(self.exports.resolve(), "")

    async def retain(self, needed: Collection[str]) -> int:
        """Remove every entry of `exports/` but the exports of the commits `needed` (and temporary export
        folders younger than `STAGING_MAX_AGE_SECONDS`); the number removed. Called under the syncer's
        lock, so no sync of this source is using an export meanwhile but the one that just finished (its
        commit is among `needed`). Nothing outside `exports/` is touched: a symlink is never followed."""
        return await asyncio.to_thread(_remove_unneeded, self.exports, frozenset(needed))


def _remove_unneeded(exports: Path, needed: frozenset[str]) -> int:
    """`GitSource.retain`'s file system part (blocking)."""
    if exports.is_symlink():
        log.warning("source exports folder is a symlink: nothing removed", folder=str(exports))
        return 0
    try:
        entries = sorted(exports.iterdir())
    except FileNotFoundError:
        return 0
    root = exports.resolve()
    stale = time.time() - STAGING_MAX_AGE_SECONDS
    removed = 0
    for entry in entries:
        name = entry.name
        if name in needed:
            continue
        try:
            if entry.is_symlink():
                if not entry.resolve().is_relative_to(root):
                    log.warning("source export is a symlink out of its folder: left", entry=str(entry))
                    continue
                entry.unlink()
            elif name.startswith(STAGING_PREFIX) and entry.lstat().st_mtime > stale:
                continue  # an export being made now
            elif entry.is_dir():
                doomed = entry
                if not name.startswith(REMOVING_PREFIX):
                    doomed = Path(tempfile.mkdtemp(prefix=REMOVING_PREFIX, dir=root))
                    entry.rename(doomed / name)  # atomic: no partial exports/<commit>/ is ever seen
                shutil.rmtree(doomed)
            else:
                entry.unlink()
        except OSError as exc:
            log.warning("source export could not be removed", entry=str(entry), error=str(exc))
            continue
        removed += 1
    return removed


def _extract(archive: bytes, target: Path) -> None:
    """Unpack a tar archive into `target` through a temporary sibling folder and one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # another fetch exported the same commit first: theirs is identical
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
