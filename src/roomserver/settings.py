"""Settings of one room server process (`roomserver serve` flags, `ROOMSERVER_*` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roomcontract.network import is_loopback

MIB = 1024 * 1024


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
    sse_ping_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _insecure_only_on_loopback(self) -> ServerSettings:
        if self.insecure_no_auth and not is_loopback(self.host):
            raise ValueError(f"--insecure-no-auth is refused on non-loopback host {self.host!r}")
        return self
