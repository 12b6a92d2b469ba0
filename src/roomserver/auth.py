"""Bearer tokens and scopes: the tokens document (YAML or JSON), look-up by SHA-256, scope checks.

Tokens are stored and compared as SHA-256 digests only, so a token value never sits in memory longer than
one request and never reaches a log line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from roomserver.errors import RoomServerError

Scope = Literal[
    "room:read", "room:entities:write", "room:artifacts:write", "room:policies:write", "room:admin"
]
ALL_SCOPES: Final[tuple[Scope, ...]] = (
    "room:read",
    "room:entities:write",
    "room:artifacts:write",
    "room:policies:write",
    "room:admin",
)


class TokenConfigError(ValueError):
    """The tokens document cannot be read or is invalid (the message names the entry, never the value)."""


class TokenEntry(BaseModel):
    """One token of the tokens document: a name, scopes, and either its SHA-256 or its plain value."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    scopes: tuple[Scope, ...]
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    token: str | None = Field(default=None, min_length=16, repr=False)

    @model_validator(mode="after")
    def _one_secret(self) -> TokenEntry:
        if (self.sha256 is None) == (self.token is None):
            raise ValueError("give exactly one of `sha256` and `token`")
        return self

    def digest(self) -> str:
        return self.sha256 or hash_token(self.token or "")


class TokensDocument(BaseModel):
    """`{"tokens": [TokenEntry, ...]}`."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry]


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and what it may do."""

    name: str
    scopes: frozenset[str]

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise RoomServerError(403, f"token lacks scope {scope}", code="INSUFFICIENT_SCOPE")


ANONYMOUS_ADMIN: Final = Principal(name="insecure-no-auth", scopes=frozenset(ALL_SCOPES))


def hash_token(token: str) -> str:
    """Lower-case hex SHA-256 of a token value (what the tokens file's `sha256` holds)."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, *, origin: str) -> list[TokenEntry]:
    """Parse a tokens document (YAML is a superset of JSON, so one parser reads both)."""
    try:
        raw: Any = YAML(typ="safe").load(text)
        return TokensDocument.model_validate(raw).tokens
    except YAMLError as exc:
        raise TokenConfigError(f"{origin}: not YAML or JSON ({exc.__class__.__name__})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        raise TokenConfigError(f"{origin}: {problems}") from None


class TokenRegistry:
    """The known tokens, by digest; `authenticate` turns an Authorization header into a Principal."""

    def __init__(self, entries: list[TokenEntry], *, insecure: bool = False):
        self._by_digest = {e.digest(): Principal(e.name, frozenset(e.scopes)) for e in entries}
        self._insecure = insecure

    @classmethod
    def load(cls, *, tokens_file: Path | None, tokens_json: str | None, insecure: bool) -> TokenRegistry:
        entries: list[TokenEntry] = []
        if tokens_file is not None:
            try:
                text = tokens_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenConfigError(f"{tokens_file}: {exc.strerror}") from None
            entries += parse_tokens(text, origin=str(tokens_file))
        if tokens_json:
            try:
                json.loads(tokens_json)
            except json.JSONDecodeError:
                raise TokenConfigError("ROOMSERVER_TOKENS: not JSON") from None
            entries += parse_tokens(tokens_json, origin="ROOMSERVER_TOKENS")
        return cls(entries, insecure=insecure)

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, authorization: str | None) -> Principal:
        if self._insecure:
            return ANONYMOUS_ADMIN
        if not authorization:
            raise RoomServerError(401, "bearer token required", code="AUTH_REQUIRED")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise RoomServerError(401, "Authorization must be 'Bearer <token>'", code="AUTH_REQUIRED")
        # Looked up by digest: timing reveals at most digest prefixes, never the token.
        principal = self._by_digest.get(hash_token(value.strip()))
        if principal is None:
            raise RoomServerError(401, "unknown bearer token", code="AUTH_REQUIRED")
        return principal
