"""The state tags' rules, without a server: a body is served only under the mark it was built at and the
resources it showed, and the bodies kept stay within their byte budget."""

from __future__ import annotations

import pytest

from roomserver.domain import freshness
from roomserver.domain.freshness import StateTags

RESOURCES = b"digest-1"


def test_a_body_is_served_only_while_its_room_and_resources_are_unchanged() -> None:
    tags = StateTags()
    mark = tags.mark("room-a")
    tags.remember("room-a", mark, RESOURCES, '"1-aa"', b"{}")
    assert tags.body("room-a", RESOURCES) == ('"1-aa"', b"{}")
    assert tags.body("room-a", b"digest-2") is None  # a provider changed
    assert tags.body("room-b", RESOURCES) is None
    tags.changed("room-a")
    assert tags.body("room-a", RESOURCES) is None  # a commit or a presence change


def test_a_change_during_the_read_makes_its_body_stale() -> None:
    tags = StateTags()
    mark = tags.mark("room-a")
    tags.changed("room-a")  # lands while the read runs
    tags.remember("room-a", mark, RESOURCES, '"1-aa"', b"{}")
    assert tags.body("room-a", RESOURCES) is None


def test_bodies_stay_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freshness, "BODY_BUDGET", 10)
    tags = StateTags()
    for room in ("room-a", "room-b", "room-c"):
        tags.remember(room, tags.mark(room), RESOURCES, f'"{room}"', b"12345")
    assert tags.body("room-a", RESOURCES) is None  # the least recently used went first
    assert tags.body("room-c", RESOURCES) == ('"room-c"', b"12345")
    tags.remember("room-d", 0, RESOURCES, '"big"', b"x" * 11)  # larger than the budget: not kept
    assert tags.body("room-d", RESOURCES) is None
    assert tags.current("room-d", RESOURCES) == '"big"'  # its ETag still answers a 304
