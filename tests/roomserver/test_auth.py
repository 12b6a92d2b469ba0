"""Tokens and scopes: the tokens document, 401/403 bodies, ROOMSERVER_TOKENS, loopback-only insecure mode."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from roomcontract.scopes import ALL_SCOPES
from roomcontract.tokens import TokenConfigError, hash_token, parse_tokens
from roomserver.auth import TokenRegistry
from roomserver.errors import RoomServerError
from roomserver.settings import ServerSettings
from tests.support.roomserver import running_roomserver

SECRET = "a-long-enough-test-token-value"


def test_yaml_document_with_plain_and_hashed_tokens() -> None:
    text = f"""
tokens:
  - name: operator
    token: {SECRET}
    scopes: [room:read, room:admin]
  - name: reader
    sha256: {hash_token("another-long-token-value")}
    scopes: [room:read]
"""
    registry = TokenRegistry(parse_tokens(text, origin="t.yaml"))
    assert registry.authenticate(f"Bearer {SECRET}").name == "operator"
    assert registry.authenticate("bearer another-long-token-value").scopes == frozenset({"room:read"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: [{name: x, scopes: [room:read]}]", "exactly one of"),
        ("tokens: [{name: x, scopes: [room:everything], token: aaaaaaaaaaaaaaaaaaaa}]", "scopes"),
        ("tokens: [{name: x, scopes: [], sha256: nothex}]", "sha256"),
        ("tokens: [{name: x, scopes: [], token: short}]", "token"),
        ("{tokens: [", "not YAML or JSON"),
        ("[]", "Input should be"),
    ],
)
def test_bad_tokens_documents_are_refused_without_echoing_values(text: str, message: str) -> None:
    with pytest.raises(TokenConfigError) as caught:
        parse_tokens(text, origin="tokens.yaml")
    assert message in str(caught.value)
    assert "aaaaaaaaaaaaaaaaaaaa" not in str(caught.value)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", f"Bearer {SECRET}x"])
def test_missing_or_unknown_tokens_are_401(header: str | None) -> None:
    registry = TokenRegistry(
        parse_tokens(f'{{"tokens":[{{"name":"a","token":"{SECRET}","scopes":[]}}]}}', origin="j")
    )
    with pytest.raises(RoomServerError) as caught:
        registry.authenticate(header)
    assert caught.value.status == 401
    assert caught.value.body()["code"] == "AUTH_REQUIRED"


def test_missing_scope_is_403_naming_it() -> None:
    registry = TokenRegistry(
        parse_tokens(f'{{"tokens":[{{"name":"a","token":"{SECRET}","scopes":[]}}]}}', origin="j")
    )
    with pytest.raises(RoomServerError) as caught:
        registry.authenticate(f"Bearer {SECRET}").require("room:entities:write")
    assert caught.value.body() == {
        "error": "Forbidden",
        "code": "INSUFFICIENT_SCOPE",
        "message": "token lacks scope room:entities:write",
    }


def test_env_tokens_and_file_tokens_merge(tmp_path: Path) -> None:
    file = tmp_path / "tokens.json"
    file.write_text(json.dumps({"tokens": [{"name": "f", "token": SECRET, "scopes": ["room:read"]}]}))
    env = json.dumps({"tokens": [{"name": "e", "token": SECRET + "-env", "scopes": ["room:admin"]}]})
    registry = TokenRegistry.load(tokens_file=file, tokens_json=env, insecure=False)
    assert len(registry) == 2
    assert registry.authenticate(f"Bearer {SECRET}-env").name == "e"
    with pytest.raises(TokenConfigError, match="ROOMSERVER_TOKENS: not JSON"):
        TokenRegistry.load(tokens_file=None, tokens_json="tokens: []", insecure=False)
    with pytest.raises(TokenConfigError, match=r"missing\.json"):
        TokenRegistry.load(tokens_file=tmp_path / "missing.json", tokens_json=None, insecure=False)


def test_settings_read_roomserver_tokens_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROOMSERVER_TOKENS", '{"tokens": []}')
    settings = ServerSettings(data_dir=tmp_path)
    assert settings.tokens is not None
    assert settings.tokens.get_secret_value() == '{"tokens": []}'
    assert SECRET not in repr(ServerSettings(data_dir=tmp_path, tokens=SECRET))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_insecure_mode_is_refused_off_loopback(host: str) -> None:
    with pytest.raises(ValidationError, match="refused on non-loopback"):
        ServerSettings(host=host, insecure_no_auth=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_insecure_mode_on_loopback_holds_every_scope(host: str) -> None:
    settings = ServerSettings(host=host, insecure_no_auth=True)
    registry = TokenRegistry.load(tokens_file=None, tokens_json=None, insecure=settings.insecure_no_auth)
    assert registry.authenticate(None).scopes == frozenset(ALL_SCOPES)


async def test_routes_enforce_their_scope(tmp_path: Path) -> None:
    async with (
        running_roomserver(tmp_path, scopes=("room:read",)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        auth = {"Authorization": f"Bearer {server.token}"}
        assert (await http.get("/room/room-ai-lab-01/state")).status_code == 401
        assert (await http.get("/room/room-ai-lab-01/state", headers=auth)).status_code == 200
        refused = await http.post(
            "/room/room-ai-lab-01/join", json={"entityId": "E-a1", "kind": "agent"}, headers=auth
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "INSUFFICIENT_SCOPE"
        for method, path in [
            ("PUT", "/rooms/room-ai-lab-01/policies"),
            ("DELETE", "/rooms/room-ai-lab-01/artifacts/x"),
            ("POST", "/admin/mcp/load"),
            ("DELETE", "/room/room-ai-lab-01/entities/E-a1"),
        ]:
            answer = await http.request(method, path, headers=auth, json={})
            assert answer.status_code == 403, (method, path)
        who = await http.get("/auth/whoami", headers=auth)
        assert who.json() == {
            "name": "test",
            "scopes": ["room:read"],
            "features": ["batch.v1", "fencing.v1", "events.actor.v1"],
        }
        assert (await http.get("/health")).status_code == 200


async def test_insecure_server_needs_no_token(tmp_path: Path) -> None:
    async with (
        running_roomserver(tmp_path, insecure=True) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        who = (await http.get("/auth/whoami")).json()
        assert who["scopes"] == sorted(ALL_SCOPES)
