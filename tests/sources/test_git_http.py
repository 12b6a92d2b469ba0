"""A git source over a real network transport: git's smart HTTP protocol (`git http-backend` behind a
local HTTP server on 127.0.0.1, `git_http.py`), with a password in the URL, tested like the `file://`
one: a commit becomes a revision recording it, a pushed commit is applied on the webhook, a force-push
back is followed; the fetches went over HTTP; the password appears in no state, error or listing."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.sources.conftest import git, operator_with, synced, write_spec
from tests.sources.git_http import git_http
from tests.sources.test_git import ROOM, SECRET, commit, push_hook, repository
from tests.support.roomserver import RoomServerHandle

PASSWORD = "pa55-w0rd-in-url"


async def test_a_git_source_over_http_follows_commits_and_force_pushes(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    origin, work = repository(tmp_path)
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1)
    first = commit(work, "first")
    with git_http(tmp_path, credentials=f"reader:{PASSWORD}") as server:
        url = f"{server.url.replace('http://', f'http://reader:{PASSWORD}@')}/{origin.name}"
        source = {
            "name": "web",
            "git": url,
            "branch": "live",
            "path": "rooms",
            "interval_seconds": 60,
            "webhook_secret": SECRET,
        }
        async with operator_with(roomserver, tmp_path, source) as operator:
            await synced(operator, "web", lambda state: state.applied_revision == first)
            write_spec(work / "rooms" / "lab.room.yaml", ROOM, version=2, entities=2)
            second = commit(work, "second")
            assert (await push_hook(operator)).status_code == 202
            await synced(operator, "web", lambda state: state.applied_revision == second)
            state = (await admin.get(f"/room/{ROOM}/state")).json()
            assert {e["id"] for e in state["entities"]} == {"E-agent-0", "E-agent-1"}

            git(work, "reset", "--quiet", "--hard", first)
            git(work, "push", "--quiet", "--force", "origin", "live")
            assert (await push_hook(operator)).status_code == 202
            await synced(operator, "web", lambda state: state.applied_revision == first)
            history = await operator.app.state.store.history(ROOM)
            assert [v.source_revision for v in history] == [first, second, first]
            listed = (await operator.http.get("/sources")).text
        assert any(request.endswith("/git-upload-pack") for request in server.requests), server.requests
    assert PASSWORD not in listed
    assert "http://***@127.0.0.1" in listed  # the location as shown: credentials left out


async def test_a_wrong_password_is_a_sync_error_that_does_not_show_it(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    origin, work = repository(tmp_path)
    write_spec(work / "rooms" / "lab.room.yaml", ROOM, entities=1)
    commit(work, "first")
    with git_http(tmp_path, credentials=f"reader:{PASSWORD}") as server:
        url = f"{server.url.replace('http://', 'http://reader:wrong-secret-77@')}/{origin.name}"
        source = {"name": "web", "git": url, "branch": "live", "path": "rooms", "interval_seconds": 60}
        async with operator_with(roomserver, tmp_path, source) as operator:
            state = await synced(operator, "web", lambda state: bool(state.errors))
            listed = (await operator.http.get("/sources")).text
    assert "cannot fetch branch live" in state.errors[0]["message"]
    assert "wrong-secret-77" not in listed
    assert operator.controller.room(ROOM) is None
