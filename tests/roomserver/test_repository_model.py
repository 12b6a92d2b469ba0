"""Model-based test of the storage rules: any sequence of writes, deletes, promotes, joins and kicks leaves
the stored room equal to a simple in-memory model (consecutive versions, tombstones, no-op repeats)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from roomserver.domain.artifacts import ArtifactDraft
from roomserver.domain.entities import make_entity
from roomserver.storage import repository
from roomserver.storage.database import SCHEMA

ROOM = "room-ai-lab-01"
NAMES = st.sampled_from(["plan", "notes", "data"])
CONTENTS = st.sampled_from([b"a", b"b", b"c"])
ENTITIES = st.sampled_from(["E-one", "E-two", "E-three"])


@dataclass
class ModelArtifact:
    versions: list[str] = field(default_factory=list)  # sha256 per version
    promoted: set[int] = field(default_factory=set)
    tags: tuple[str, ...] = ()
    deleted: bool = False


class RoomModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.executescript(SCHEMA)
        self.artifacts: dict[str, ModelArtifact] = {}
        self.roster: set[str] = set()
        self.revision = 0

    def _changed(self, events: list[object] | None) -> None:
        self.revision += len(events or [])

    @rule(name=NAMES, content=CONTENTS, tagged=st.booleans())
    def write(self, name: str, content: bytes, tagged: bool) -> None:
        tags = ("t",) if tagged else ()
        sha = hashlib.sha256(content).hexdigest()
        draft = ArtifactDraft(name=name, type="doc", workspace="shared", tags=tags)
        written = repository.write_artifact(self.conn, ROOM, "", draft, sha, len(content))
        model = self.artifacts.setdefault(name, ModelArtifact())
        repeat = not model.deleted and model.versions and model.versions[-1] == sha and model.tags == tags
        assert written.changed is not repeat
        if not repeat:
            model.versions.append(sha)
            model.tags, model.deleted = tags, False
        assert written.manifest.version == len(model.versions)
        self._changed(written.events)

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        events = repository.delete_artifact(self.conn, ROOM, name)
        model = self.artifacts.get(name)
        assert (events is None) == (model is None or model.deleted)
        if model is not None:
            model.deleted = True
        self._changed(events)

    @rule(name=NAMES)
    def promote(self, name: str) -> None:
        written = repository.promote(self.conn, ROOM, name)
        model = self.artifacts.get(name)
        if model is None or model.deleted:
            assert written is None
            return
        assert written is not None
        latest = len(model.versions)
        assert written.changed is (latest not in model.promoted)
        model.promoted.add(latest)
        self._changed(written.events)

    @rule(entity=ENTITIES)
    def join(self, entity: str) -> None:
        result = repository.declare_entity(self.conn, ROOM, make_entity(entity, "agent"))
        assert (result is None) == (entity in self.roster)
        self.roster.add(entity)
        self._changed(result[1] if result else None)

    @rule(entity=ENTITIES)
    def kick(self, entity: str) -> None:
        events = repository.remove_entity(self.conn, ROOM, entity)
        assert (events is None) == (entity not in self.roster)
        self.roster.discard(entity)
        self._changed(events)

    @invariant()
    def state_matches_the_model(self) -> None:
        state = repository.read_state(self.conn, ROOM)
        assert state.revision == self.revision
        assert [entity_id for entity_id, _ in state.entities] == sorted(self.roster)
        live = {n: m for n, m in self.artifacts.items() if not m.deleted}
        got = [json.loads(a) for a in state.artifacts]
        assert [a["name"] for a in got] == sorted(live)
        for entry in got:
            model = live[entry["name"]]
            assert (entry["version"], entry["sha256"]) == (len(model.versions), model.versions[-1])
            assert entry["promoted"] is (len(model.versions) in model.promoted)
            assert tuple(entry["tags"]) == model.tags
        for name, model in self.artifacts.items():
            found = repository.list_versions(self.conn, ROOM, "", name)
            assert found is not None
            versions, deleted = found
            assert [v.version for v in versions] == list(range(1, len(model.versions) + 1))
            assert [v.sha256 for v in versions] == model.versions
            assert deleted is model.deleted

    def teardown(self) -> None:
        self.conn.close()


RoomModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestRoomModel = RoomModel.TestCase
