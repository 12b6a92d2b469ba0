"""A git source end to end, against real local bare repositories: a commit becomes a revision that records
it (seeds read from the same commit), a push webhook with a valid signature syncs at once (an invalid one
is refused), a force-push is followed, and a branch that disappears changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
from pathlib import Path

import httpx

from tests.service.conftest import Operator
from tests.sources.conftest import git, operator_with, synced, write_spec
from tests.support.roomserver import RoomServerHandle

ROOM = "room-gitops-01"
SECRET = "s3cret-hook"


def repository(tmp_path: Path) -> tuple[Path, Path]:
    """A bare `origin.git` and a clone of it to commit in (branch `live`)."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", str(origin))
    git(tmp_path, "init", "--quiet", "-b", "live", str(work))
    git(work, "remote", "add", "origin", str(origin))
    return origin, work


def commit(work: Path, message: str) -> str:
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", message)
    git(work, "push", "--quiet", "--force", "origin", "live")
    return git(work, "rev-parse", "HEAD")


def git_source(origin: Path, **fields: object) -> dict[str, object]:
    return {
        "name": "repo",
        "git": f"file://{origin}",
        "branch": "live",
        "path": "rooms",
        "interval_seconds": 60,  # every sync below comes from the start or the webhook
        "webhook_secret": SECRET,
        **fields,
    }


async def push_hook(operator: Operator, *, secret: str = SECRET, branch: str = "live") -> httpx.Response:
    body = json.dumps({"ref": f"refs/heads/{branch}", "after": "0" * 40}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "X-GitHub-Event": "push", "Content-Type": "application/json"}
    return await operator.http.post("/hooks/git", content=body, headers=headers)


async def test_commits_webhooks_and_force_pushes(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    origin, work = repository(tmp_path)
    (work / "rooms" / "seeds").mkdir(parents=True)
    (work / "rooms" / "seeds" / "project-plan.md").write_text("plan one\n", encoding="utf-8")
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1, artifacts=1)
    first = commit(work, "first")
    async with operator_with(roomserver, tmp_path, git_source(origin)) as operator:
        state = await synced(operator, "repo", lambda state: state.applied_revision == first)
        assert state.rooms == {ROOM: "lab.room.yaml"}

        (work / "rooms" / "seeds" / "project-plan.md").write_text("plan two\n", encoding="utf-8")
        write_spec(work / "rooms" / "lab.room.yaml", ROOM, version=2, entities=2, artifacts=1)
        second = commit(work, "second")
        refused = await push_hook(operator, secret="wrong")
        assert refused.status_code == 401
        other = await push_hook(operator, branch="elsewhere")
        assert other.status_code == 202
        assert other.json()["triggered"] == []
        answer = await push_hook(operator)
        assert answer.status_code == 202
        assert answer.json() == {"triggered": ["repo"], "branch": "live"}
        await synced(operator, "repo", lambda state: state.applied_revision == second)

        history = await operator.app.state.store.history(ROOM)
        assert [(v.source, v.source_revision) for v in history] == [("repo", first), ("repo", second)]
        # Each revision's seeds are its own commit's: the older export is untouched.
        assert (Path(history[0].base_dir) / "seeds" / "project-plan.md").read_text() == "plan one\n"
        assert (Path(history[1].base_dir) / "seeds" / "project-plan.md").read_text() == "plan two\n"
        content = await admin.get(f"/rooms/{ROOM}/artifacts/doc-0")
        assert content.text == "plan two\n"

        git(work, "reset", "--quiet", "--hard", first)
        git(work, "push", "--quiet", "--force", "origin", "live")
        assert (await push_hook(operator)).status_code == 202
        await synced(operator, "repo", lambda state: state.applied_revision == first)
        view = operator.controller.room(ROOM)
        assert view is not None
        assert view.revision == 3
        assert view.spec_version == 1
        listed = (await operator.http.get("/sources")).json()["items"][0]
        assert listed["lastAppliedRevision"] == listed["lastAttemptedRevision"] == first


async def test_a_branch_that_disappears_changes_nothing(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    origin, work = repository(tmp_path)
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=2)
    first = commit(work, "first")
    async with operator_with(roomserver, tmp_path, git_source(origin)) as operator:
        await synced(operator, "repo", lambda state: state.applied_revision == first)
        git(tmp_path, "--git-dir", str(origin), "branch", "--quiet", "-D", "live")
        assert (await push_hook(operator)).status_code == 202
        state = await synced(operator, "repo", lambda state: bool(state.errors))
        assert "cannot fetch branch live" in state.errors[0]["message"]
        assert state.applied_revision == first
        assert state.rooms == {ROOM: "lab.room.yaml"}
        view = operator.controller.room(ROOM)
        assert view is not None
        assert view.managed
        assert view.revision == 1
        listed = (await operator.http.get("/sources")).json()["items"][0]
        assert listed["conditions"][0]["reason"] == "SyncFailed"


async def test_gitlab_and_gitea_hooks(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    origin, work = repository(tmp_path)
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1)
    commit(work, "first")
    async with operator_with(roomserver, tmp_path, git_source(origin)) as operator:
        body = json.dumps({"ref": "refs/heads/live"}).encode()
        gitlab = await operator.http.post("/hooks/git", content=body, headers={"X-Gitlab-Token": SECRET})
        assert gitlab.json()["triggered"] == ["repo"]
        bad = await operator.http.post("/hooks/git", content=body, headers={"X-Gitlab-Token": "nope"})
        assert bad.status_code == 401
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        gitea = await operator.http.post("/hooks/git", content=body, headers={"X-Gitea-Signature": signature})
        assert gitea.json()["triggered"] == ["repo"]
        unsigned = await operator.http.post("/hooks/git", content=body)
        assert unsigned.status_code == 401


async def test_roomop_sources_shows_the_table_and_json(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    origin, work = repository(tmp_path)
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1)
    first = commit(work, "first")
    async with operator_with(roomserver, tmp_path, git_source(origin)) as operator:
        await synced(operator, "repo", lambda state: state.applied_revision == first)
        for output in ("json", "text"):
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "roomop"),
                "sources",
                "--operator",
                operator.url,
                "--output",
                output,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            if output == "json":
                assert json.loads(out)["items"][0]["lastAppliedRevision"] == first
            else:
                assert "repo" in out.decode()
                assert first[:12] in out.decode()
