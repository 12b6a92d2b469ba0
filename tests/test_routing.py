"""`roomcontract.routing`: ASP.NET's route tolerances as a pure path rewrite."""

from __future__ import annotations

from roomcontract.routing import canonical_path, templates

ROUTES = templates(
    ["/status", "/status/rooms/{roomId}", "/rooms/{roomId}", "/rooms/{roomId}/history", "/files/{p:path}"]
)


def test_literals_take_the_declared_spelling_and_parameters_keep_theirs() -> None:
    assert canonical_path("/STATUS/Rooms/room-ABC123/", ROUTES) == "/status/rooms/room-ABC123"
    assert canonical_path("/Rooms/room-x/HISTORY", ROUTES) == "/rooms/room-x/history"


def test_exact_unknown_and_root_paths_are_left_as_they_are() -> None:
    assert canonical_path("/status", ROUTES) == "/status"
    assert canonical_path("/nowhere/at/all", ROUTES) == "/nowhere/at/all"
    assert canonical_path("/", ROUTES) == "/"
    assert canonical_path("/status/", ROUTES) == "/status"


def test_a_parameter_that_looks_like_a_literal_is_not_rewritten() -> None:
    routes = templates(["/rooms/{roomId}", "/rooms/history"])
    assert canonical_path("/rooms/History", routes) == "/rooms/History"  # two routes fit: leave it
    assert canonical_path("/rooms/history", routes) == "/rooms/history"
