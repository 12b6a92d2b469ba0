"""Reading a folder into a snapshot (multi-document files, duplicates, invalid files with positions,
revisions that follow seeds) and the webhook's signature rules: pure parts, no servers."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from roomoperator.settings import SourceSettings
from roomoperator.sources.scanning import scan
from roomoperator.sources.webhooks import pushed_branch, signed
from tests.service.conftest import room_spec


def test_multi_document_files_duplicates_and_errors(tmp_path: Path) -> None:
    documents = [json.dumps(room_spec(f"room-scan-0{index}")) for index in (1, 2)]
    (tmp_path / "two.room.yaml").write_text("\n---\n".join(documents) + "\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "again.room.json").write_text(json.dumps(room_spec("room-scan-02")))
    (tmp_path / "bad.room.yaml").write_text("spec:\n  roomId: room-scan-09\n  entities: 3\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.room.yaml").write_text("not read")
    snapshot = scan(tmp_path)
    assert sorted(snapshot.rooms) == ["room-scan-01"]  # room-scan-02 is declared twice: by neither
    assert snapshot.failed == {"bad.room.yaml", "sub/again.room.json", "two.room.yaml"}
    places = [str(issue) for issue in snapshot.issues]
    assert any(place.startswith("bad.room.yaml:1:1") for place in places)
    assert any("also declared by two.room.yaml" in place for place in places)


def test_a_seed_change_changes_the_revision(tmp_path: Path) -> None:
    (tmp_path / "a.room.yaml").write_text(json.dumps(room_spec("room-scan-01")))
    seed = tmp_path / "seed.md"
    seed.write_text("one")
    first = scan(tmp_path).revision
    assert scan(tmp_path).revision == first
    seed.write_text("two!")
    os.utime(seed, ns=(1, 1))
    assert scan(tmp_path).revision != first
    assert scan(tmp_path, revision="abc").revision == "abc"


def test_webhook_signatures() -> None:
    body, secret = b'{"ref": "refs/heads/main"}', "s"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert signed({"X-Hub-Signature-256": f"sha256={digest}"}, body, secret)
    assert not signed({"X-Hub-Signature-256": f"sha256={digest}"}, body + b" ", secret)
    assert signed({"x-gitea-signature": digest}, body, secret)
    assert signed({"X-Gitlab-Token": "s"}, body, secret)
    assert not signed({"X-Gitlab-Token": "t"}, body, secret)
    assert not signed({}, body, secret)
    assert pushed_branch(body) == "main"
    assert pushed_branch(b'{"ref": "refs/tags/v1"}') is None
    assert pushed_branch(b"[1]") is None
    assert pushed_branch(b"{") is None


def test_a_source_needs_exactly_one_location() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        SourceSettings(name="x")
    with pytest.raises(ValidationError, match="exactly one of"):
        SourceSettings(name="x", folder=Path("."), git="file:///tmp/r")
    assert SourceSettings(name="x", git="https://u:secret@example.com/r.git").location.startswith(
        "https://***@example.com/r.git"
    )
