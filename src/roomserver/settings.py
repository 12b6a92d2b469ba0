"""Settings of one room server process (`roomserver serve` flags, `ROOMSERVER_*` environment variables)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roomcontract.batch import MAX_BATCH_BYTES
from roomcontract.network import is_loopback

MIB = 1024 * 1024


class McpServerSetting(BaseModel):
    """A provider the server connects at start (`ROOMSERVER_MCP_SERVERS`, a JSON list): `url`, or `command`
    (standard MCP over stdio). Only the settings name commands: `/admin/mcp/load` takes URLs, and its
    `stdio:<name>` names a command of `mcp_commands`."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$")
    url: str | None = Field(default=None, max_length=2048, pattern=r"^(wss?|https?)://\S+$")
    command: list[str] | None = Field(default=None, min_length=1)
    visibility: str = "room"

    @model_validator(mode="after")
    def _url_or_command(self) -> McpServerSetting:
        if (self.url is None) == (self.command is None):
            raise ValueError(f"MCP server {self.id}: give exactly one of url and command")
        return self


class ServerSettings(BaseSettings):
    """Where the server listens and keeps its data, who may call it, and its limits.

    `tokens` holds a tokens document as JSON (env `ROOMSERVER_TOKENS`); `tokens_file` names a YAML or JSON
    file with the same document. Both may be given: their tokens are merged.
    """

    model_config = SettingsConfigDict(env_prefix="ROOMSERVER_", extra="forbid")

    data_dir: Path = Path(".roomserver")
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    tokens_file: Path | None = None
    tokens: SecretStr | None = None
    insecure_no_auth: bool = False
    max_upload_bytes: int = Field(default=100 * MIB, ge=0)
    max_form_field_bytes: int = Field(default=1 * MIB, ge=1)
    max_body_bytes: int = Field(default=1 * MIB, ge=1)
    """Largest body of every route but the two artifact uploads and the batch (JSON bodies, promote)."""
    max_batch_body_bytes: int = Field(default=MAX_BATCH_BYTES, ge=1)
    """Largest body of `POST /room/{roomId}/batch`."""
    sse_ping_seconds: float = Field(default=10.0, gt=0)
    hub_keepalive_seconds: float = Field(default=15.0, gt=0)  # the hub's ping (ASP.NET KeepAliveInterval)
    hub_client_timeout_seconds: float = Field(default=30.0, gt=0)  # ClientTimeoutInterval
    hub_handshake_timeout_seconds: float = Field(default=15.0, gt=0)  # HandshakeTimeout
    hub_long_poll_timeout_seconds: float = Field(default=90.0, gt=0)  # LongPolling.PollTimeout
    """A long poll with nothing to send answers 200, empty, after this time (the client polls again)."""
    hub_disconnect_timeout_seconds: float = Field(default=15.0, gt=0)  # DisconnectTimeout
    """A long-polling connection with no poll outstanding for this time is closed and its session leaves."""
    hub_max_queued_bytes: int = Field(default=4 * MIB, ge=1024)
    """Outgoing frames one hub connection may have waiting; past it it is closed with the reason."""
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """A connection must send a whole request head (line and headers) within this time, else it is closed."""
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    """A body of up to `max_body_bytes` must arrive whole within this time; an upload may not pause longer."""
    keep_alive_seconds: int = Field(default=5, ge=1)
    """An idle keep-alive connection is closed after this time."""
    max_connections: int = Field(default=1000, ge=1)
    """HTTP connections and requests in flight at once; past it a request is answered 503 at once. Hub
    connections are counted apart (`hub_max_connections`), so live members never starve the API."""
    hub_max_connections: int = Field(default=1000, ge=1)
    """Open hub connections (every transport) at once; past it negotiate and a new connection are refused
    503 `HUB_FULL`. uvicorn's own limit is `max_connections + hub_max_connections`."""
    mcp_servers: list[McpServerSetting] = Field(default_factory=list)
    mcp_connect_timeout_seconds: float = Field(default=10.0, gt=0)  # connect and list the tools
    mcp_call_timeout_seconds: float = Field(default=30.0, gt=0)  # every call and liveness probe
    mcp_retry_initial_seconds: float = Field(default=0.5, gt=0)  # first wait after a failed attempt
    mcp_retry_max_seconds: float = Field(default=60.0, gt=0)  # the waits double up to this
    mcp_health_seconds: float = Field(default=15.0, gt=0)  # liveness probe of a connected provider
    mcp_commands: dict[str, list[str]] = Field(default_factory=dict)
    """Command lines a load may start by name: a provider URL `stdio:<name>` runs `mcp_commands[name]`
    (standard MCP over stdio). A load names a configured command, never a command line."""
    mcp_max_result_bytes: int = Field(default=1 * MIB, ge=1)
    """Largest tool result (its JSON text) `CallTool` answers; a bigger one is `RESULT_TOO_LARGE`."""

    @property
    def max_upload_body_bytes(self) -> int:
        """Largest multipart body of an upload: the `data` part plus the small parts and their framing."""
        return self.max_upload_bytes + 8 * self.max_form_field_bytes

    @model_validator(mode="after")
    def _commands_are_named_command_lines(self) -> ServerSettings:
        for name, command in self.mcp_commands.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or not command:
                raise ValueError(
                    f"mcp_commands: {name!r} must be a name (letters, digits, '.', '_', '-') "
                    "with a non-empty command line"
                )
        return self

    @model_validator(mode="after")
    def _insecure_only_on_loopback(self) -> ServerSettings:
        if self.insecure_no_auth and not is_loopback(self.host):
            raise ValueError(f"--insecure-no-auth is refused on non-loopback host {self.host!r}")
        return self
