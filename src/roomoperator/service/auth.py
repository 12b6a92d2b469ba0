"""Bearer-token authentication of the operator's mutating endpoints; the token's name is the actor.

Tokens come from `api.token` (`ROOMOP_API__TOKEN`, named `api`) and `api.tokens_file` (the room
server's tokens document, `roomcontract.tokens`, with `scopes` optional). Auth is required when any
token is configured, and always when the API binds to a non-loopback address.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from roomcontract.network import is_loopback
from roomcontract.tokens import TokenConfigError, hash_token, read_tokens_file
from roomoperator.model.codes import ApiCode
from roomoperator.service.errors import ApiError
from roomoperator.settings import ApiSettings

ANONYMOUS = "anonymous"


class AuthConfigError(ValueError):
    """The tokens file is unreadable, or a non-loopback bind has no token."""


@dataclass(frozen=True)
class Authenticator:
    """Maps presented bearer tokens (by SHA-256) to caller names."""

    digests: dict[str, str]
    required: bool

    @classmethod
    def from_settings(cls, api: ApiSettings) -> Authenticator:
        digests: dict[str, str] = {}
        if api.token is not None and api.token.get_secret_value():
            digests[hash_token(api.token.get_secret_value())] = "api"
        if api.tokens_file is not None:
            digests.update(_read_tokens_file(api.tokens_file))
        if not digests and not is_loopback(api.host):
            raise AuthConfigError(
                f"the API binds to {api.host}, not loopback: set ROOMOP_API__TOKEN or ROOMOP_API__TOKENS_FILE"
            )
        return cls(digests=digests, required=bool(digests))

    def caller(self, request: Request) -> str:
        """The caller's name; 401 when auth is required and the token is missing or unknown."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not self.required:
            return ANONYMOUS
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("a bearer token is required")
        presented = hash_token(token.strip())
        for digest, name in self.digests.items():
            if hmac.compare_digest(digest, presented):
                return name
        raise _unauthorized("unknown bearer token")


def _unauthorized(message: str) -> ApiError:
    return ApiError.e1(401, "Unauthorized", ApiCode.AUTH_REQUIRED, message, **{"WWW-Authenticate": "Bearer"})


def _read_tokens_file(path: Path) -> dict[str, str]:
    try:
        entries = read_tokens_file(path, require_scopes=False)
    except TokenConfigError as exc:
        raise AuthConfigError(f"cannot read tokens file {exc}") from exc
    return {entry.digest(): entry.name for entry in entries}
