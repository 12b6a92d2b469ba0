"""Fuzzing multipart bodies (issue 13): the operator's `POST /apply` (a spec part and its seed parts) and
the room server's artifact upload, both as child processes on 127.0.0.1.

Bodies are drawn part by part: names (the expected ones, unknown ones, empty, repeated, header-breaking),
order, sizes (empty to 256 KiB), bytes (valid specs, near-valid ones, invalid UTF-8, noise), and then the
framing is broken or not: the header's boundary differs from the body's, the closing boundary is missing,
the body is cut short, lines end in LF alone, a preamble or a part without headers. The properties: never
a 5xx; every refusal a 4xx error object; nothing stored on a refusal (no room revision, no version, no
file in the servers' blob, seed or temporary folders).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import RUNS, Operator, examples, files_under
from tests.service.conftest import room_spec
from tests.support.roomserver import RoomServerProcess

APPLY_ROOM = "room-fuzz-apply"
UPLOAD_ROOM = "room-fuzz-upload"
SEED = "seeds/project-plan.md"
MEMBER = "E-human-fuzz"


@dataclass(frozen=True)
class Part:
    name: str | None  # None: no Content-Disposition at all
    payload: bytes
    filename: str | None = None
    media: str | None = None


def apply_spec(version: int, *, seed: str = SEED) -> dict[str, Any]:
    """The fuzzed room with one agent and one artifact seeded from `seed`."""
    document = room_spec(APPLY_ROOM, version=version, entities=1, artifacts=1)
    document["spec"]["artifacts"][0]["seedFrom"] = seed
    return document


noise = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [b"\xff\xfe\xfd", b"\xc3\x28", b"[" * 10_000, b"{" * 100, b"\r\n--", b"--b\r\n", b"\x00"]
    ),
    st.integers(0, 256 * 1024).map(lambda size: b"x" * size),
)


def yaml_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=1).encode()  # JSON text is YAML too


spec_payloads = st.one_of(
    st.integers(1, 4).map(lambda v: json.dumps(apply_spec(v)).encode()),
    st.integers(1, 4).map(lambda v: yaml_of(apply_spec(v))),
    st.integers(1, 4).map(lambda v: json.dumps(apply_spec(v, seed="seeds/other.md")).encode()),
    st.integers(1, 4).map(lambda v: json.dumps(apply_spec(v, seed="../escape.md")).encode()),
    st.integers(1, 4).map(lambda v: json.dumps(apply_spec(v)).encode()[: v * 40]),
    noise,
)
header_names = st.sampled_from(['sp"ec', "spec\r\nX-Evil: 1", "spec; name=data", "é", "\x00", "a" * 600])


@st.composite
def parts(draw: st.DrawFn, names: list[str], payloads: dict[str, st.SearchStrategy[bytes]]) -> list[Part]:
    """The expected parts in any order, some left out, some twice, and strangers."""
    chosen = draw(st.lists(st.sampled_from(names), max_size=5))
    extra = draw(st.lists(st.one_of(st.text(max_size=12), header_names, st.none()), max_size=2))
    drawn = [
        Part(
            name,
            draw(payloads.get(name or "", noise)),
            filename=draw(st.sampled_from([None, "f.bin", "../../f", 'q"uote'])),
            media=draw(
                st.sampled_from([None, "application/json", "application/yaml", "text/plain", "a/b;c"])
            ),
        )
        for name in [*chosen, *extra]
    ]
    return draw(st.permutations(drawn))


def disposition(part: Part) -> bytes:
    words = f'form-data; name="{part.name}"'
    if part.filename is not None:
        words += f'; filename="{part.filename}"'
    return f"Content-Disposition: {words}\r\n".encode("utf-8", "surrogateescape")


@st.composite
def bodies(
    draw: st.DrawFn, drawn_parts: st.SearchStrategy[list[Part]]
) -> tuple[dict[str, bytes], bytes, str]:
    """Headers and bytes of one multipart body, its framing maybe broken; and how it was broken."""
    boundary = draw(st.sampled_from(["b0undary", "x" * 70, "a b", "--", "é"]))
    body = b""
    if draw(st.booleans()):
        body += b"preamble\r\n"
    for part in draw(drawn_parts):
        body += f"--{boundary}\r\n".encode()
        if part.name is not None:
            body += disposition(part)
        if part.media is not None:
            body += f"Content-Type: {part.media}\r\n".encode()
        body += b"\r\n" + part.payload + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    breakage = draw(
        st.sampled_from(
            ["none", "none", "none", "other boundary", "no boundary", "no close", "cut", "lf", "type"]
        )
    )
    header = f"multipart/form-data; boundary={boundary}"
    if breakage == "other boundary":
        header = "multipart/form-data; boundary=another"
    elif breakage == "no boundary":
        header = "multipart/form-data"
    elif breakage == "no close":
        body = body[: -len(f"--{boundary}--\r\n")]
    elif breakage == "cut":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif breakage == "lf":
        body = body.replace(b"\r\n", b"\n")
    elif breakage == "type":
        header = draw(
            st.sampled_from(["multipart/mixed; boundary=b0undary", "text/plain", "multipart/form-data;"])
        )
    return {"Content-Type": header.encode()}, body, breakage


def error_object(answer: httpx.Response) -> bool:
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and any(isinstance(body.get(key), str) for key in ("code", "error"))


@dataclass
class Tally:
    statuses: collections.Counter[int]
    failures: list[str]

    @classmethod
    def new(cls) -> Tally:
        return cls(collections.Counter(), [])

    def check(self, answer: httpx.Response, what: str, *, stored: bool) -> None:
        self.statuses[answer.status_code] += 1
        if answer.status_code >= 500 or (answer.status_code >= 400 and not error_object(answer)):
            self.failures.append(f"{what}: {answer.status_code} {answer.text[:200]}")
        elif answer.status_code >= 400 and stored:
            self.failures.append(f"{what}: refused {answer.status_code} but stored something")


def well_formed(
    spec: st.SearchStrategy[bytes], seed: str, *, media: str | None = None
) -> st.SearchStrategy[list[Part]]:
    """A spec part and its one seed part, in either order, with any bytes as the seed."""
    pair = st.tuples(spec, st.binary(max_size=4096)).map(
        lambda drawn: [Part("spec", drawn[0], media=media), Part(seed, drawn[1], filename="plan.md")]
    )
    return pair.flatmap(st.permutations)


APPLY_PARTS = st.one_of(
    well_formed(
        st.integers(1, 4).map(lambda v: json.dumps(apply_spec(v)).encode()), SEED, media="application/json"
    ),
    parts(["spec", SEED, "./" + SEED, "seeds/other.md"], {"spec": spec_payloads}),
)


@pytest.mark.parametrize("count", RUNS)
def test_apply_multipart_bodies_are_served_or_refused_with_nothing_stored(
    count: int, fuzz_operator: Operator, op_client: httpx.Client
) -> None:
    tally = Tally.new()
    seeds = fuzz_operator.data_dir / "seeds"

    def history() -> Any:
        answer = op_client.get(f"/rooms/{APPLY_ROOM}/history")
        return answer.json().get("items") if answer.status_code == 200 else answer.status_code

    @examples(count)
    @given(bodies(APPLY_PARTS))
    def check(body: tuple[dict[str, bytes], bytes, str]) -> None:
        headers, content, breakage = body
        files, revisions = files_under(seeds), history()
        answer = op_client.post("/apply", headers=headers, content=content)
        added = sorted(str(path.relative_to(seeds)) for path in files_under(seeds) - files)
        stored = bool(added) or history() != revisions
        what = f"/apply ({breakage}, {len(content)} bytes, added {added})"
        tally.check(answer, what, stored=stored)

    check()
    print(f"\nfuzz /apply multipart: {count} bodies, {dict(tally.statuses)}")
    assert tally.failures == [], tally.failures[:10]


UPLOAD_SPEC = st.one_of(
    st.sampled_from(["a", "b", "c"]).map(lambda n: json.dumps({"name": n, "type": "document"}).encode()),
    st.dictionaries(
        st.sampled_from(["name", "type", "tags", "metadata", "workspace"]), st.text(max_size=8)
    ).map(lambda d: json.dumps(d).encode()),
    noise,
)
UPLOAD_PARTS = st.one_of(
    well_formed(UPLOAD_SPEC, "data"),
    parts(
        ["spec", "data", "parents", "port", "fingerprint"],
        {"spec": UPLOAD_SPEC, "parents": st.sampled_from([b"[]", b'["a"]', b"[1]", b"x"])},
    ),
)


@pytest.mark.parametrize("count", RUNS)
def test_artifact_uploads_are_stored_or_refused_with_nothing_stored(
    count: int, fuzz_roomserver: RoomServerProcess, rs_client: httpx.Client
) -> None:
    tally = Tally.new()
    joined = rs_client.post(f"/room/{UPLOAD_ROOM}/join", json={"entityId": MEMBER, "kind": "human"})
    assert joined.status_code in (201, 409), joined.text
    folders = [fuzz_roomserver.data_dir / "blobs", fuzz_roomserver.data_dir / "tmp"]

    def stored_files() -> set[Any]:
        return set().union(*(files_under(folder) for folder in folders))

    def revision() -> int:
        return int(rs_client.get(f"/room/{UPLOAD_ROOM}/state").json()["revision"])

    @examples(count)
    @given(bodies(UPLOAD_PARTS), st.booleans())
    def check(body: tuple[dict[str, bytes], bytes, str], private: bool) -> None:
        headers, content, breakage = body
        path = f"/rooms/{UPLOAD_ROOM}/artifacts"
        if private:
            path, headers = (
                f"/rooms/{UPLOAD_ROOM}/entities/{MEMBER}/artifacts",
                {**headers, "X-Entity-Id": MEMBER.encode()},
            )
        files, before = stored_files(), revision()
        answer = rs_client.post(path, headers=headers, content=content)
        stored = stored_files() != files or revision() != before
        tally.check(answer, f"upload ({breakage}, {len(content)} bytes)", stored=stored)

    check()
    print(f"\nfuzz artifact upload: {count} bodies, {dict(tally.statuses)}")
    assert tally.failures == [], tally.failures[:10]


def test_a_refused_apply_keeps_none_of_its_seeds(fuzz_operator: Operator, op_client: httpx.Client) -> None:
    room = "room-fuzz-refused"
    document = apply_spec(5)
    document["metadata"]["name"] = document["spec"]["roomId"] = room

    def send(version: int, seed: bytes) -> httpx.Response:
        document["metadata"]["version"] = version
        files = {"spec": (None, json.dumps(document), "application/json"), SEED: ("plan.md", seed)}
        return op_client.post("/apply", files=files)

    assert send(5, b"first").status_code == 200
    seeds = fuzz_operator.data_dir / "seeds"
    before = files_under(seeds)
    refused = send(4, b"bytes of a refused apply")
    assert refused.status_code == 409, refused.text
    assert files_under(seeds) == before


def test_an_artifact_name_that_is_a_list_is_a_400_on_apply(op_client: httpx.Client) -> None:
    document = apply_spec(1)
    document["spec"]["artifacts"][0]["name"] = []
    answer = op_client.post("/apply", json=document)
    assert answer.status_code == 400, answer.text
