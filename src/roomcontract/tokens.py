"""The tokens document both services read: `tokens: [{name, scopes, token | sha256}]`, YAML or JSON.

Tokens are kept and compared as SHA-256 digests only, so a token value never reaches a log line. The
room server requires `scopes` on every entry; the operator's API tokens name callers and may omit them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from roomcontract.identifiers import ENTITY_ID, SHA256_HEX
from roomcontract.scopes import OperatorScope, Scope


class TokenConfigError(ValueError):
    """The tokens document cannot be read or is invalid (the message names the entry, never the value)."""


class TokenEntry(BaseModel):
    """One token of the tokens document: a name, scopes, and either its SHA-256 or its plain value."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    scopes: tuple[Scope | OperatorScope, ...] | None = None
    sha256: str | None = Field(default=None, pattern=SHA256_HEX)
    token: str | None = Field(default=None, min_length=16, repr=False)
    entity: str | None = Field(default=None, pattern=ENTITY_ID)
    """The room server's hub: the one entity this token may join as (any entity when unset)."""

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


def hash_token(token: str) -> str:
    """Lower-case hex SHA-256 of a token value (what the tokens document's `sha256` holds)."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, *, origin: str, require_scopes: bool = True) -> list[TokenEntry]:
    """Parse a tokens document (YAML is a superset of JSON, so one parser reads both); `origin` names it
    in errors."""
    try:
        raw: Any = YAML(typ="safe").load(text)
        entries = TokensDocument.model_validate(raw).tokens
    except YAMLError as exc:
        raise TokenConfigError(f"{origin}: not YAML or JSON ({exc.__class__.__name__})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        raise TokenConfigError(f"{origin}: {problems}") from None
    missing = [f"tokens.{i}.scopes: Field required" for i, e in enumerate(entries) if e.scopes is None]
    if require_scopes and missing:
        raise TokenConfigError(f"{origin}: {'; '.join(missing)}")
    return entries


def read_tokens_file(path: Path, *, require_scopes: bool = True) -> list[TokenEntry]:
    """The entries of the tokens document in `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenConfigError(f"{path}: {exc.strerror or exc}") from None
    return parse_tokens(text, origin=str(path), require_scopes=require_scopes)
