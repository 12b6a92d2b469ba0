"""One pydantic-settings tree for the operator, the engine and the CLI.

Sources, highest priority first: keyword arguments, `ROOMOP_*` environment variables (`__` for nesting,
`ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER=false`), the reference's `ROOM_AUTH_TOKEN` and
`RoomServer__BaseUrl` (and `ROOMOP_API_TOKEN`), a YAML file (`--config FILE` or `ROOMOP_CONFIG`,
same nesting, snake_case keys), then defaults. Every key mirrors a key of the reference's
appsettings (`Operator:Retry:*`, `Operator:Reconciliation:Guardrails:*`, ...) where one exists.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

CONFIG_ENV = "ROOMOP_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("roomop_config_file", default=None)


class SettingsError(ValueError):
    """The configuration file cannot be read or is not a mapping."""


class RoomServerSettings(BaseModel):
    """Where the room server is and how to talk to it (reference `RoomServer:*`, `Auth:Token`)."""

    base_url: str = "http://127.0.0.1:5000"
    token: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class RetrySettings(BaseModel):
    """Per-item retry of transient failures (reference `Operator:Retry:*`).

    `max_attempts` counts retries after the first call, as the reference's Polly did (3 = 4 calls).
    """

    max_attempts: int = Field(default=3, ge=0)
    initial_delay_ms: int = Field(default=100, ge=0)
    max_delay_ms: int = Field(default=5000, ge=0)
    jitter_factor: float = Field(default=0.2, ge=0, le=1)
    max_total_seconds: float = Field(default=30.0, gt=0)


class GuardrailSettings(BaseModel):
    """Safety limits per reconcile cycle (reference `Operator:Reconciliation:Guardrails:*`)."""

    max_entities_kick_per_cycle: int = Field(default=5, ge=0)
    max_artifacts_delete_per_cycle: int = Field(default=10, ge=0)
    change_threshold: float = 0.5
    require_confirm_header: bool = True
    allow_empty_room: bool = False


class ReconciliationSettings(BaseModel):
    """The continuous loop (reference `Operator:Reconciliation:*`, `ConvergenceTracking:*`)."""

    interval_seconds: float = Field(default=2.0, gt=0)
    jitter_percent: float = Field(default=10.0, ge=0, le=100)
    parallel_rooms: int = Field(default=16, ge=1)
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    stale_tolerance_seconds: float = Field(default=5.0, ge=0)
    max_cycles_until_converged: int = Field(default=10, ge=1)
    failure_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    failure_backoff_max_seconds: float = Field(default=60.0, gt=0)
    rollback: Literal["never", "on-failure"] = "never"
    """Default ROLLBACK mode for every room; a spec's own `spec.rollback: on-failure` also turns it on."""
    upgrade: Literal["lenient", "strict"] = "lenient"
    """The version rule of a changed spec: `lenient` takes the same `metadata.version` (with a warning) and
    refuses a lower one; `strict` (the reference validator's rule) needs a greater one."""


class FeatureSettings(BaseModel):
    """Feature flags (reference `Operator:Features:*`)."""

    resources: bool = False


class ApiSettings(BaseModel):
    """The operator's own HTTP API (reference `HttpApi:*`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    """The writer's token (`operator:write`, which implies `operator:read`), named `api` in the audit."""
    read_token: SecretStr | None = None
    """A token that may only read (`operator:read`), named `reader`: for dashboards and `roomop status`."""
    tokens_file: Path | None = None
    open_probes: bool = True
    """`/health` and `/metrics` answer without a token even when auth is on (for probes and scrapers)."""
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """Time a client has to send a request's line and headers, from its first byte (or from connecting)."""
    body_idle_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest pause between two parts of a request body before the connection is closed."""
    body_timeout_seconds: float = Field(default=300.0, gt=0)
    """Time a client has to send a whole request body (a large multipart `/apply` with seeds included)."""
    keep_alive_seconds: int = Field(default=5, ge=1)
    """How long an idle keep-alive connection stays open between requests."""


class StoreSettings(BaseModel):
    """Durable store: SQLite by default, PostgreSQL by URL (`sqlite:///path`, `postgresql://...`)."""

    url: str = "sqlite+aiosqlite:///.roomop/operator.db"
    schema_name: str | None = None
    audit_replay: int = Field(default=100, ge=0)


class EventsSettings(BaseModel):
    """Room-server events followed for drift, and the operator's own `GET /events` (reference `Events:*`)."""

    follow_room_server: bool = True
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    subscriber_buffer: int = Field(default=256, ge=1)


class SeedSettings(BaseModel):
    """Seed files of specs posted over HTTP: where they may come from and how much a request may send.

    A spec posted as JSON or YAML resolves `seedFrom` only under `roots` (none by default: such a spec
    names no file of the operator's disk); a multipart `POST /apply` sends the files themselves, each
    part at most `max_part_bytes`, all at most `max_total_bytes`, at most `max_parts` parts.
    """

    roots: list[Path] = []
    max_part_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    max_total_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_parts: int = Field(default=100, ge=2)


class LoggingSettings(BaseModel):
    """Structured logs: JSON when stderr is not a terminal, unless `json` says otherwise."""

    level: str = "info"
    json_output: bool | None = None


class _LegacyEnvSource(PydanticBaseSettingsSource):
    """The reference's environment names `ROOM_AUTH_TOKEN` and `RoomServer__BaseUrl`, and the short
    `ROOMOP_API_TOKEN` (same as `ROOMOP_API__TOKEN`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        room_server: dict[str, Any] = {}
        if (token := os.environ.get("ROOM_AUTH_TOKEN")) is not None and token != "${ROOM_AUTH_TOKEN}":
            room_server["token"] = token or None
        if base_url := os.environ.get("RoomServer__BaseUrl"):  # noqa: SIM112  (the reference name)
            room_server["base_url"] = base_url
        found: dict[str, Any] = {"room_server": room_server} if room_server else {}
        if api_token := os.environ.get("ROOMOP_API_TOKEN"):
            found["api"] = {"token": api_token}
        return found


class _YamlFileSource(PydanticBaseSettingsSource):
    """The YAML configuration file named by `load_settings(config_file=...)` or `ROOMOP_CONFIG`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get() or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
        if path is None:
            return {}
        try:
            data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, YAMLError) as exc:
            raise SettingsError(f"cannot read configuration file {path}: {exc}") from exc
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise SettingsError(f"configuration file {path} must hold a mapping of settings")
        return data


class OperatorSettings(BaseSettings):
    """Every setting of the operator, the engine and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="ROOMOP_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    version: str = "0.1.0"
    data_dir: Path | None = None
    """The operator's data folder (the seeds HTTP applies sent); default: the SQLite store's folder."""
    seeds: SeedSettings = SeedSettings()
    room_server: RoomServerSettings = RoomServerSettings()
    retry: RetrySettings = RetrySettings()
    guardrails: GuardrailSettings = GuardrailSettings()
    reconciliation: ReconciliationSettings = ReconciliationSettings()
    features: FeatureSettings = FeatureSettings()
    api: ApiSettings = ApiSettings()
    store: StoreSettings = StoreSettings()
    events: EventsSettings = EventsSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _seed_roots_outside_data(self) -> OperatorSettings:
        """No seed root may hold the data folder or the store (their tokens and bytes), nor lie inside
        the data folder."""
        private = [("the data folder", self.data_folder().resolve())]
        if (database := _sqlite_file(self.store.url)) is not None:
            private.append(("the store", database.resolve()))
        for index, root in enumerate(self.seeds.roots):
            resolved = root.resolve()
            for name, path in private:
                if path.is_relative_to(resolved) or (
                    name == "the data folder" and resolved.is_relative_to(path)
                ):
                    raise ValueError(
                        f"seeds.roots[{index}] ({root}) overlaps {name} ({path}): seed roots are served to "
                        "specs posted over HTTP, so they must hold none of the operator's own files"
                    )
        return self

    def data_folder(self) -> Path:
        """`data_dir`, else the folder of the SQLite store, else `.roomop`."""
        if self.data_dir is not None:
            return self.data_dir
        database = _sqlite_file(self.store.url)
        return database.parent if database is not None else Path(".roomop")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _LegacyEnvSource(settings_cls), _YamlFileSource(settings_cls))


def _sqlite_file(url: str) -> Path | None:
    """The database file of a `sqlite:///path` URL (any driver); None for other stores and `:memory:`."""
    scheme, _, rest = url.partition(":///")
    if scheme.split("+")[0] != "sqlite" or not rest:
        return None
    path = rest.split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def load_settings(*, config_file: Path | None = None, **overrides: Any) -> OperatorSettings:
    """Settings from every source; `config_file` (else `ROOMOP_CONFIG`) names the YAML file."""
    token = _config_file.set(config_file)
    try:
        return OperatorSettings(**overrides)
    finally:
        _config_file.reset(token)
