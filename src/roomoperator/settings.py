"""One pydantic-settings tree for the operator, the engine and the CLI.

Sources, highest priority first: keyword arguments, `ROOMOP_*` environment variables (`__` for nesting,
`ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER=false`), the reference's `ROOM_AUTH_TOKEN` and
`RoomServer__BaseUrl` (and `ROOMOP_API_TOKEN`), a YAML file (`--config FILE` or `ROOMOP_CONFIG`,
same nesting, snake_case keys), then defaults. Every key mirrors a key of the reference's
appsettings (`Operator:Retry:*`, `Operator:Reconciliation:Guardrails:*`, ...) where one exists.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from roomoperator.model.codes import NotificationKind

CONFIG_ENV = "ROOMOP_CONFIG"
_config_file: ContextVar[Path | None] = ContextVar("roomop_config_file", default=None)


class SettingsError(ValueError):
    """The configuration file cannot be read or is not a mapping."""


class RoomServerSettings(BaseModel):
    """Where the room server is and how to talk to it (reference `RoomServer:*`, `Auth:Token`)."""

    base_url: str = "http://127.0.0.1:5000"
    token: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    batch: bool = True
    """Send a run's writes through `POST /room/{roomId}/batch` when the server announces `batch.v1`;
    false: always the single endpoints."""


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

    interval_seconds: float = Field(default=60.0, gt=0)
    """The safety net: with the room server's event stream followed, drift is corrected from events
    within about a second whatever this is (`docs/operator.md`, "Interval, events and cost")."""
    jitter_percent: float = Field(default=10.0, ge=0, le=100)
    parallel_rooms: int = Field(default=16, ge=1)
    parallel_uploads: int = Field(default=8, ge=1)
    """A run's calls made at once: its seed uploads (whose fsyncs the room server's group commit shares),
    and against a server without `batch.v1` its single writes."""
    rate_limit_per_second: float = Field(default=500.0, gt=0)
    """Room-server write requests a second, whole operator (a batch request and an upload count once):
    a room converges from empty in a few requests, so 500/s converges 1,000 rooms of 20 entities and 5
    seeds in about 15 s of the limiter's time, below what the room server's group commit absorbs."""
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
    page_size: int = Field(default=100, ge=1, le=1000)
    """Rooms in a page of `GET /status` and `GET /rooms` when the request gives no `limit`."""
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """Time a client has to send a request's line and headers, from its first byte (or from connecting)."""
    body_idle_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest pause between two parts of a request body before the connection is closed."""
    body_timeout_seconds: float = Field(default=300.0, gt=0)
    """Time a client has to send a whole request body (a large multipart `/apply` with seeds included)."""
    keep_alive_seconds: int = Field(default=5, ge=1)
    """How long an idle keep-alive connection stays open between requests."""


class RuntimeSettings(BaseModel):
    """The Python runtime of a serving operator (`roomop serve`, `roomop up`)."""

    gc_thresholds: tuple[int, int, int] = (10_000, 10, 10)
    """The garbage collector's thresholds (`gc.set_threshold`). Python's (700, 10, 10) make a full pass
    over a large heap several times a minute while rooms converge (`service/collector.py`)."""

    @model_validator(mode="after")
    def _positive(self) -> RuntimeSettings:
        if min(self.gc_thresholds) < 1:
            raise ValueError(
                "runtime.gc_thresholds: three whole numbers of at least 1 (0 would turn the collector off)"
            )
        return self


class StoreSettings(BaseModel):
    """Durable store: SQLite by default, PostgreSQL by URL (`sqlite:///path`, `postgresql://...`)."""

    url: str = "sqlite+aiosqlite:///.roomop/operator.db"
    schema_name: str | None = None
    audit_replay: int = Field(default=100, ge=0)


def _default_replica_id() -> str:
    """`<hostname>-<pid>-<4 random hex digits>`: unique per process, readable in `/status`."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class ReplicaSettings(BaseModel):
    """Several operator replicas on one PostgreSQL store (`docs/operator.md`, "Running replicas"): each
    room is owned by one replica through a lease (controller-runtime's 15 s / 10 s / 2 s by default)."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    replica_id: str = Field(default_factory=_default_replica_id, min_length=1, max_length=128)
    """This replica's name in the leases and on `/status` (unique among the replicas of one store)."""
    lease_seconds: float = Field(default=15.0, gt=0)
    """How long a lease holds without renewal: a dead replica's rooms move after at most this long."""
    renew_deadline_seconds: float = Field(default=10.0, gt=0)
    """A replica that could not renew for this long stops its rooms' runs (before its leases expire)."""
    retry_seconds: float = Field(default=2.0, gt=0)
    """How often a replica heartbeats, renews its leases, takes free rooms and hands back others."""
    max_rooms: int | None = Field(default=None, ge=1)
    """At most this many rooms owned by this replica (None: no cap)."""

    @model_validator(mode="after")
    def _deadline_inside_lease(self) -> ReplicaSettings:
        if not self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "replicas: retrySeconds < renewDeadlineSeconds < leaseSeconds is required (got"
                f" {self.retry_seconds}, {self.renew_deadline_seconds}, {self.lease_seconds})"
            )
        return self


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


class SourceSettings(BaseModel):
    """One GitOps source of desired state: a `folder` of spec files, or a `git` repository's `branch`
    (its spec files under `path`). Every `*.room.yaml` / `*.room.json` file is rooms' desired state.

    `prune`: a room whose spec file is deleted loses what the operator made in it (under the guardrails);
    otherwise the operator only stops managing it. `allow_overrides`: `POST /apply` and other sources may
    change the source's rooms (the source's next change wins again); otherwise they are refused (409).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    folder: Path | None = None
    git: str | None = None
    """A repository URL the `git` command can fetch: a local path, `file://`, `https://`, `ssh://`."""
    branch: str = "main"
    path: str = "."
    """The folder of the repository that holds the spec files."""
    interval_seconds: float = Field(default=60.0, gt=0)
    """A full rescan of a folder (a safety net beside its file watch), a poll of a git repository."""
    debounce_ms: int = Field(default=200, ge=0)
    """File changes of a folder are gathered this long before one rescan."""
    prune: bool = False
    allow_overrides: bool = False
    confirm: bool = False
    """The source's specs count as confirmed (`X-Confirm`: a reviewed commit needs no second confirmation
    of a high change ratio); the kick and delete limits still apply."""
    webhook_secret: SecretStr | None = None
    """The shared secret of `POST /hooks/git` for this repository (GitHub and Gitea sign the body with it,
    GitLab sends it as `X-Gitlab-Token`); no secret: the webhook is refused."""

    @model_validator(mode="after")
    def _one_location(self) -> SourceSettings:
        if (self.folder is None) == (self.git is None):
            raise ValueError(f"source {self.name!r} needs exactly one of `folder` or `git`")
        return self

    @property
    def kind(self) -> Literal["folder", "git"]:
        return "folder" if self.folder is not None else "git"

    @property
    def location(self) -> str:
        """Where the source reads, for people (a URL's password or token left out)."""
        if self.folder is not None:
            return str(self.folder)
        url = re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]+@", r"\1***@", self.git or "", flags=re.IGNORECASE)
        return f"{url}#{self.branch}:{self.path}"


class NotificationTarget(BaseModel):
    """One webhook receiver and what it subscribes to: event `kinds` (all by default) in rooms matching
    one of `rooms` (shell globs; a source's failures match every pattern). Each body is signed with
    `secret` (`X-RoomOp-Signature`); `format: slack` sends a Slack incoming-webhook body instead."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    kinds: list[NotificationKind] = list(NotificationKind)
    rooms: list[str] = ["*"]
    format: Literal["roomop", "slack"] = "roomop"
    timeout_seconds: float = Field(default=10.0, gt=0)


class NotificationSettings(BaseModel):
    """Webhook notifications: targets, and how long a failing delivery is retried (the one backoff
    formula, from `retry_initial_seconds` doubling up to `retry_max_seconds`, `max_attempts` in all)."""

    targets: list[NotificationTarget] = []
    max_attempts: int = Field(default=10, ge=1)
    retry_initial_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)


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
    replicas: ReplicaSettings = ReplicaSettings()
    events: EventsSettings = EventsSettings()
    logging: LoggingSettings = LoggingSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    sources: list[SourceSettings] = []
    notifications: NotificationSettings = NotificationSettings()
    """GitOps sources (`roomop serve --specs DIR`, `--git URL`), each with a unique name."""

    @model_validator(mode="after")
    def _unique_source_names(self) -> OperatorSettings:
        names = [source.name for source in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"sources: every source needs its own name (got {', '.join(names)})")
        return self

    @model_validator(mode="after")
    def _seed_roots_outside_data(self) -> OperatorSettings:
        """No seed root may hold the data folder or the store (their tokens and bytes), nor lie inside
        the data folder."""
        private = [("the data folder", self.data_folder().resolve())]
        if (database := sqlite_file(self.store.url)) is not None:
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
        database = sqlite_file(self.store.url)
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


def sqlite_file(url: str) -> Path | None:
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
