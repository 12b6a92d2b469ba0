"""Bearer tokens and scopes of the room server: the known tokens by SHA-256, the caller, scope checks.

The tokens document and the scope names are the shared contract's (`roomcontract.tokens`,
`roomcontract.scopes`). Tokens are stored and compared as SHA-256 digests only, so a token value never
sits in memory longer than one request and never reaches a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from roomcontract.scopes import ALL_SCOPES, Scope
from roomcontract.tokens import TokenConfigError, TokenEntry, hash_token, parse_tokens, read_tokens_file
from roomserver.errors import RoomServerError


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and what it may do."""

    name: str
    scopes: frozenset[str]
    entity: str | None = None  # the only entity the token may be on the hub (tokens document `entity`)

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise RoomServerError(403, f"token lacks scope {scope}", code="INSUFFICIENT_SCOPE")


ANONYMOUS_ADMIN: Final = Principal(name="insecure-no-auth", scopes=frozenset(ALL_SCOPES))


class TokenRegistry:
    """The known tokens, by digest; `authenticate` turns an Authorization header into a Principal."""

    def __init__(self, entries: list[TokenEntry], *, insecure: bool = False):
        self._by_digest = {
            e.digest(): Principal(e.name, frozenset(e.scopes or ()), e.entity) for e in entries
        }
        self._insecure = insecure

    @classmethod
    def load(cls, *, tokens_file: Path | None, tokens_json: str | None, insecure: bool) -> TokenRegistry:
        entries: list[TokenEntry] = []
        if tokens_file is not None:
            entries += read_tokens_file(tokens_file)
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
