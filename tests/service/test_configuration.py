"""Settings sources (YAML file, ROOMOP_* env, reference env names), health states and API auth."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.requests import Request

from roomcontract.network import is_loopback
from roomoperator.model.codes import RunCode
from roomoperator.service.auth import ANONYMOUS, AuthConfigError, Authenticator
from roomoperator.service.errors import ApiError
from roomoperator.service.health import Health, HealthMonitor
from roomoperator.settings import ApiSettings, SettingsError, load_settings


def test_yaml_file_is_overridden_by_env_and_reference_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text("reconciliation:\n  interval_seconds: 5\n  parallel_rooms: 3\napi:\n  port: 9000\n")
    monkeypatch.setenv("ROOMOP_API__PORT", "9100")
    monkeypatch.setenv("ROOM_AUTH_TOKEN", "secret")
    monkeypatch.setenv("RoomServer__BaseUrl", "http://127.0.0.1:4999")
    settings = load_settings(config_file=config)
    assert settings.reconciliation.interval_seconds == 5
    assert settings.reconciliation.parallel_rooms == 3
    assert settings.api.port == 9100
    assert settings.room_server.base_url == "http://127.0.0.1:4999"
    assert settings.room_server.token is not None
    assert settings.room_server.token.get_secret_value() == "secret"


def test_config_env_names_the_file_and_placeholder_token_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text("guardrails:\n  require_confirm_header: false\n")
    monkeypatch.setenv("ROOMOP_CONFIG", str(config))
    monkeypatch.setenv("ROOM_AUTH_TOKEN", "${ROOM_AUTH_TOKEN}")
    settings = load_settings()
    assert settings.guardrails.require_confirm_header is False
    assert settings.room_server.token is None


@pytest.mark.parametrize(
    ("text", "message"), [("- a list\n", "must hold a mapping"), ("a: [\n", "cannot read")]
)
def test_bad_config_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config_file=config)


def test_health_moves_between_states() -> None:
    monitor = HealthMonitor()
    assert monitor.status is Health.HEALTHY
    monitor.stalled_rooms = 2
    assert monitor.status is Health.DEGRADED
    monitor.stalled_rooms = 0
    monitor.observe_probe(ok=True, started=time.perf_counter() - 2)
    assert monitor.status is Health.DEGRADED
    assert monitor.checks()["roomServer"]["status"] == "degraded"
    monitor.observe_run(RunCode.ROOM_SERVER_UNREACHABLE, ["connection refused"])
    assert monitor.status is Health.UNHEALTHY
    assert monitor.checks()["roomServer"]["lastError"] == "connection refused"
    monitor.observe_probe(ok=True, started=time.perf_counter())
    assert monitor.status is Health.HEALTHY
    monitor.observe_run(RunCode.UNAUTHORIZED, [])
    assert monitor.status is Health.UNHEALTHY
    monitor.observe_run(None, [])
    assert monitor.status is Health.HEALTHY


def request_with(header: str | None) -> Request:
    headers = [(b"authorization", header.encode())] if header else []
    return Request({"type": "http", "headers": headers, "method": "POST", "path": "/apply"})


def test_auth_is_off_on_loopback_without_tokens() -> None:
    auth = Authenticator.from_settings(ApiSettings())
    assert auth.caller(request_with(None)) == ANONYMOUS


def test_auth_names_the_caller_and_refuses_unknown_tokens(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    digest = hashlib.sha256(b"ci-token").hexdigest()
    tokens.write_text(
        f"tokens:\n  - name: ci\n    sha256: {digest}\n  - name: alice\n    token: alice-token-0123456789\n"
    )
    auth = Authenticator.from_settings(ApiSettings(token=SecretStr("api-token"), tokens_file=tokens))
    assert auth.caller(request_with("Bearer api-token")) == "api"
    assert auth.caller(request_with("Bearer ci-token")) == "ci"
    assert auth.caller(request_with("bearer alice-token-0123456789")) == "alice"
    for header in (None, "Bearer nope", "Basic abc"):
        with pytest.raises(ApiError) as refused:
            auth.caller(request_with(header))
        assert refused.value.status == 401
        assert refused.value.body["code"] == "AUTH_REQUIRED"


def test_tokens_file_scopes_name_readers_and_writers(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        "tokens:\n"
        "  - {name: dash, token: dash-token-0123456789, scopes: [operator:read]}\n"
        "  - {name: ci, token: ci-token-0123456789ab, scopes: [operator:write]}\n"
        "  - {name: old, token: old-token-0123456789, scopes: [room:read]}\n"
        "  - {name: bare, token: bare-token-012345678}\n"
    )
    auth = Authenticator.from_settings(ApiSettings(tokens_file=tokens, read_token=SecretStr("reader-t")))
    for token, name, writes in (
        ("dash-token-0123456789", "dash", False),
        ("reader-t", "reader", False),
        ("ci-token-0123456789ab", "ci", True),  # operator:write implies operator:read
        ("old-token-0123456789", "old", True),  # no operator: scope: a writer, as before scopes
        ("bare-token-012345678", "bare", True),
    ):
        assert auth.caller(request_with(f"Bearer {token}"), scope="operator:read") == name
        if writes:
            assert auth.caller(request_with(f"Bearer {token}"), scope="operator:write") == name
            continue
        with pytest.raises(ApiError) as refused:
            auth.caller(request_with(f"Bearer {token}"), scope="operator:write")
        assert (refused.value.status, refused.value.body["code"]) == (403, "INSUFFICIENT_SCOPE")
    tokens.write_text("tokens:\n  - {name: x, token: x-token-0123456789ab, scopes: [operator:admin]}\n")
    with pytest.raises(AuthConfigError, match=r"tokens\.0\.scopes\.0"):
        Authenticator.from_settings(ApiSettings(tokens_file=tokens))


def test_non_loopback_bind_needs_a_token(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(AuthConfigError, match="not loopback"):
        Authenticator.from_settings(ApiSettings(host="0.0.0.0"))
    with pytest.raises(AuthConfigError, match="cannot read tokens file"):
        Authenticator.from_settings(ApiSettings(tokens_file=tmp_path / "missing.yaml"))
    assert Authenticator.from_settings(ApiSettings(host="0.0.0.0", token=SecretStr("t"))).required
