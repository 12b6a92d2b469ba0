"""One pydantic-settings tree for the operator, the engine and the CLI.

Environment variables use the `ROOMOP_` prefix with `__` for nesting
(`ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER=false`). The reference's `ROOM_AUTH_TOKEN` and
`RoomServer__BaseUrl` are honoured too. Every key mirrors a key of the reference's appsettings
(`Operator:Retry:*`, `Operator:Reconciliation:Guardrails:*`, ...) where one exists.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    """The continuous loop (reference `Operator:Reconciliation:*`, `StateConsistency:*`, `ConvergenceTracking:*`)."""

    interval_seconds: float = Field(default=2.0, gt=0)
    jitter_percent: float = Field(default=10.0, ge=0, le=100)
    parallel_rooms: int = Field(default=16, ge=1)
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    stale_tolerance_seconds: float = Field(default=5.0, ge=0)
    max_cycles_until_converged: int = Field(default=10, ge=1)
    failure_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    failure_backoff_max_seconds: float = Field(default=60.0, gt=0)


class FeatureSettings(BaseModel):
    """Feature flags (reference `Operator:Features:*`)."""

    resources: bool = False


class ApiSettings(BaseModel):
    """The operator's own HTTP API (reference `HttpApi:*`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    tokens_file: Path | None = None


class StoreSettings(BaseModel):
    """Durable store: SQLite by default, PostgreSQL by URL."""

    url: str = "sqlite+aiosqlite:///.roomop/operator.db"


class OperatorSettings(BaseSettings):
    """Every setting of the operator, the engine and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="ROOMOP_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    version: str = "0.1.0"
    seed_root: Path = Path()
    room_server: RoomServerSettings = RoomServerSettings()
    retry: RetrySettings = RetrySettings()
    guardrails: GuardrailSettings = GuardrailSettings()
    reconciliation: ReconciliationSettings = ReconciliationSettings()
    features: FeatureSettings = FeatureSettings()
    api: ApiSettings = ApiSettings()
    store: StoreSettings = StoreSettings()
