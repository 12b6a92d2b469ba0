"""Seeds of specs posted over HTTP, against the real operator and room server: a plain spec names no file
of the operator's disk outside the configured seed roots (and nothing is opened when it tries); a
multipart `POST /apply` brings the spec with its seed files, kept content-addressed by the operator."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from roomoperator.settings import OperatorSettings
from tests.service.conftest import EXAMPLES, operator_settings, room_spec, running_operator
from tests.support.roomserver import RoomServerHandle

AI_LAB = EXAMPLES / "ai-lab.room.yaml"
AI_LAB_SEEDS = ("./seeds/project-plan.md", "./seeds/research-data.json")

_opened: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | Path):
        _opened.append(str(Path(args[0]).resolve()))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only while `opened_files` runs


@pytest.fixture
def opened_files() -> Iterator[list[str]]:
    """Every file this process opens during the test (the operator runs in the test's process)."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def spec_seeding(room_id: str, *seeds: str) -> dict[str, Any]:
    spec = room_spec(room_id)
    spec["spec"]["artifacts"] = [
        {"name": f"doc-{index}", "type": "document", "workspace": "shared", "seedFrom": seed}
        for index, seed in enumerate(seeds)
    ]
    return spec


def multipart(spec: dict[str, Any] | str, seeds: dict[str, bytes]) -> dict[str, Any]:
    """httpx `files=` for a multipart apply: the spec part, then one part per seed named by its path."""
    text = spec if isinstance(spec, str) else json.dumps(spec)
    media = "application/yaml" if isinstance(spec, str) else "application/json"
    parts: list[tuple[str, tuple[str, bytes, str]]] = [("spec", ("spec", text.encode(), media))]
    parts += [(name, (Path(name).name, data, "application/octet-stream")) for name, data in seeds.items()]
    return {"files": parts}


async def test_a_plain_spec_names_no_file_outside_the_seed_roots_and_nothing_is_opened(
    roomserver: RoomServerHandle,
    tmp_path: Path,
    admin: httpx.AsyncClient,
    opened_files: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default layout: the operator runs in a project folder, its data in `.roomop/` there.
    monkeypatch.chdir(tmp_path)
    data = tmp_path / ".roomop"
    credentials = data / "credentials.json"
    data.mkdir()
    credentials.write_text('{"operator": {"apiToken": "secret"}}')
    root = tmp_path / "seed-root"
    root.mkdir()
    (root / "leak.json").symlink_to(credentials)
    outside = tmp_path / "x"
    outside.write_text("outside")
    store = {"url": f"sqlite:///{data / 'operator.db'}"}
    settings = operator_settings(roomserver, data, store=store, seeds={"roots": [root]})
    cases = {
        ".roomop/credentials.json": "is not a file under the seed roots",
        "leak.json": "leads out of the seed root",
        "../x": "escapes it with '..'",
        str(outside): "absolute path",
    }
    opened_files.clear()  # what the test itself wrote above
    async with running_operator(settings) as op:
        for index, (seed, rule) in enumerate(cases.items()):
            answer = await op.http.post("/apply", json=spec_seeding(f"room-leak-{index}", seed))
            body = answer.json()
            assert answer.status_code == 400, body
            assert body["errors"][0].startswith("spec.artifacts[0].seedFrom: "), body
            assert rule in body["errors"][0], body
            assert (await admin.get(f"/room/room-leak-{index}/state")).json()["artifacts"] == []
            assert (await op.http.get(f"/rooms/room-leak-{index}")).status_code == 404
    assert not {str(credentials.resolve()), str(outside.resolve())} & set(opened_files)


async def test_without_seed_roots_a_plain_spec_names_no_file_at_all(
    roomserver: RoomServerHandle, tmp_path: Path, opened_files: list[str]
) -> None:
    settings = operator_settings(roomserver, tmp_path, seeds={"roots": []})
    async with running_operator(settings) as op:
        answer = await op.http.post("/apply", json=spec_seeding("room-noroot-1", "seeds/project-plan.md"))
        body = answer.json()
        assert (answer.status_code, body["code"]) == (400, "SEED_REFUSED")
        assert "spec.artifacts[0].seedFrom: 'seeds/project-plan.md'" in body["errors"][0]
        assert "multipart POST /apply" in body["errors"][0]
        assert (await op.http.get("/rooms/room-noroot-1")).status_code == 404
    assert str((EXAMPLES / "seeds" / "project-plan.md").resolve()) not in opened_files


async def test_the_shipped_example_posted_with_its_seeds_converges(
    roomserver: RoomServerHandle, tmp_path: Path, admin: httpx.AsyncClient
) -> None:
    settings = operator_settings(roomserver, tmp_path, seeds={"roots": []})
    seeds = {name: (EXAMPLES / name).read_bytes() for name in AI_LAB_SEEDS}
    async with running_operator(settings) as op:
        answer = await op.http.post("/apply", **multipart(AI_LAB.read_text(), seeds))
        body = answer.json()
        assert answer.status_code == 200, body
        assert (body["success"], body["converged"]) == (True, True), body
        state = (await admin.get("/room/room-ai-lab-01/state")).json()
        digests = {artifact["name"]: artifact["sha256"] for artifact in state["artifacts"]}
        assert digests == {
            "project-plan": hashlib.sha256(seeds["./seeds/project-plan.md"]).hexdigest(),
            "research-data": hashlib.sha256(seeds["./seeds/research-data.json"]).hexdigest(),
        }
        for data in seeds.values():  # the operator keeps the bytes, content-addressed
            assert (tmp_path / "seeds" / "sha256" / hashlib.sha256(data).hexdigest()).read_bytes() == data
        first = (await op.http.get("/rooms/room-ai-lab-01")).json()["seedRoot"]
        assert (Path(first) / "seeds" / "project-plan.md").read_bytes() == seeds["./seeds/project-plan.md"]
        # The same content resolves to the same seed folder.
        await op.http.post("/apply", headers={"X-Dry-Run": "true"}, **multipart(AI_LAB.read_text(), seeds))
        again = await op.http.post("/apply", **multipart(AI_LAB.read_text(), seeds))
        assert again.status_code == 200, again.text
        assert (await op.http.get("/rooms/room-ai-lab-01")).json()["seedRoot"] == first


async def test_multipart_parts_must_be_exactly_the_specs_seeds(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    settings = operator_settings(roomserver, tmp_path, seeds={"roots": []})
    spec = spec_seeding("room-parts-1", "./a.md", "b/c.md")
    async with running_operator(settings) as op:
        missing = await op.http.post("/apply", **multipart(spec, {"a.md": b"a"}))
        assert (missing.status_code, missing.json()["code"]) == (400, "SEEDS_MISMATCH")
        assert missing.json()["errors"] == [
            "spec.artifacts[1].seedFrom: 'b/c.md' was not sent: add a part named 'b/c.md' with the file"
        ]
        extra = await op.http.post("/apply", **multipart(spec, {"./a.md": b"a", "b/c.md": b"c", "d": b"d"}))
        assert extra.status_code == 400
        assert extra.json()["errors"][0].startswith("part 'd': names no seedFrom of the spec")
        no_spec = await op.http.post("/apply", files=[("a.md", ("a.md", b"a", "text/plain"))])
        assert (no_spec.status_code, no_spec.json()["code"]) == (400, "INVALID_BODY")
        assert (await op.http.get("/rooms/room-parts-1")).status_code == 404
        assert not list((tmp_path / "seeds" / "tmp").iterdir())  # refused bodies leave nothing behind
        assert not (tmp_path / "seeds" / "sha256").exists()


async def test_multipart_limits_are_checked_while_the_body_streams(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    limits = {"roots": [], "max_part_bytes": 3000, "max_total_bytes": 5000, "max_parts": 3}
    settings = operator_settings(roomserver, tmp_path, seeds=limits)
    spec = spec_seeding("room-limits-1", "a.md", "b.md")

    async def chunked(parts: dict[str, Any]) -> httpx.Response:
        request = op.http.build_request("POST", "/apply", **parts)
        body = request.read()

        async def stream() -> Any:  # no Content-Length: only the streamed bytes are counted
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        headers = {"Content-Type": request.headers["Content-Type"]}
        return await op.http.post("/apply", content=stream(), headers=headers)

    async with running_operator(settings) as op:
        big = await chunked(multipart(spec, {"a.md": b"x" * 3001, "b.md": b"b"}))
        assert (big.status_code, big.json()["code"]) == (413, "BODY_TOO_LARGE")
        assert big.json()["errors"] == ["part 'a.md': larger than 3000 bytes (seeds.max_part_bytes)"]
        total = await chunked(multipart(spec, {"a.md": b"x" * 3000, "b.md": b"y" * 2500}))
        assert total.json()["errors"] == ["body: larger than 5000 bytes (seeds.max_total_bytes)"]
        many = await chunked(multipart(spec, {"a.md": b"a", "b.md": b"b", "c.md": b"c"}))
        assert many.json()["errors"] == ["body: more than 3 parts (seeds.max_parts)"]
        declared = await op.http.post("/apply", **multipart(spec, {"a.md": b"x" * 6000}))
        assert declared.json()["errors"] == ["body: larger than 5000 bytes (seeds.max_total_bytes)"]
        fits = await chunked(multipart(spec, {"a.md": b"a" * 3000, "b.md": b"b"}))
        assert fits.status_code == 200, fits.text
        assert not list((tmp_path / "seeds" / "tmp").iterdir())


def test_a_seed_root_holding_the_data_folder_or_the_store_is_refused_at_start_up(tmp_path: Path) -> None:
    store = {"url": f"sqlite:///{tmp_path / 'data' / 'operator.db'}"}
    for root in (tmp_path, tmp_path / "data", tmp_path / "data" / "seeds"):
        with pytest.raises(ValidationError, match=r"seeds.roots\[0\] .* overlaps the data folder"):
            OperatorSettings(store=store, seeds={"roots": [root]})
    database = {"url": f"sqlite:///{tmp_path / 'shared' / 'operator.db'}"}
    roots = [tmp_path / "other", tmp_path / "shared"]
    with pytest.raises(ValidationError, match=r"seeds.roots\[1\] .* overlaps the store"):
        OperatorSettings(data_dir=tmp_path / "data", store=database, seeds={"roots": roots})
    assert OperatorSettings(store=store, seeds={"roots": [EXAMPLES]}).data_folder() == tmp_path / "data"
