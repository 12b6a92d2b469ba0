"""A git source: one branch of a repository (a local path, `file://`, `https://` or `ssh://`, fetched
with the `git` command into a bare mirror of its own), each commit exported once into a folder named by
the commit (content-addressed), so a revision's specs and seeds are exactly that commit's content and an
older revision's seed folder stays as it was."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from roomoperator.sources.scanning import Snapshot, SourceUnavailable, scan

GIT_TIMEOUT_SECONDS = 120.0


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
        folder = await self._export(commit) / self.path
        if not folder.is_dir():
            raise SourceUnavailable(f"commit {commit[:12]} of {self.branch} has no folder {self.path}")
        return await asyncio.to_thread(scan, folder, revision=commit)

    async def _export(self, commit: str) -> Path:
        """The commit's tree as a folder `exports/<commit>` (made once, atomically)."""
        target = self.workdir / "exports" / commit
        if target.is_dir():
            return target
        archive = await self._git("--git-dir", str(self.mirror), "archive", "--format=tar", commit)
        await asyncio.to_thread(_extract, archive, target)
        return target


def _extract(archive: bytes, target: Path) -> None:
    """Unpack a tar archive into `target` through a temporary sibling folder and one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
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
