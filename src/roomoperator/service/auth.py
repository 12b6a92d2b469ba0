"""Bearer-token authentication and scopes of the operator's API; the token's name is the actor.

Tokens come from `api.token` (`ROOMOP_API__TOKEN`, named `api`, a writer), `api.read_token`
(`ROOMOP_API__READ_TOKEN`, named `reader`, reads only) and `api.tokens_file` (the tokens document,
`roomcontract.tokens`). An entry of that file with `operator:read` and/or `operator:write` among its
scopes has exactly those (`operator:write` implies `operator:read`); an entry naming no `operator:` scope
is a writer, as every entry was before scopes existed. Auth is required when any token is configured, and
always when the API binds to a non-loopback address. When it is, every route needs a token with the
scope it names (reads `operator:read`, writes `operator:write`), except `/health` and `/metrics` while
`api.open_probes` is on, and the API description (`/openapi.json`, `/docs`).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from roomcontract.network import is_loopback
from roomcontract.scopes import OPERATOR_READ, OPERATOR_WRITE, OperatorScope
from roomcontract.tokens import TokenConfigError, TokenEntry, hash_token, read_tokens_file
from roomoperator.model.codes import ApiCode
from roomoperator.service.errors import ApiError, closing
from roomoperator.settings import ApiSettings

ANONYMOUS = "anonymous"
TOKEN_HINT = (
    ": send `Authorization: Bearer <operator API token>`, the operator's api.token (ROOMOP_API__TOKEN);"
    " `roomop up` keeps it in <data>/credentials.json (default .roomop/) as operator.apiToken"
)
"""Appended to every 401 message: where the token the caller lacks is."""
WRITER: frozenset[OperatorScope] = frozenset({OPERATOR_READ, OPERATOR_WRITE})
READER: frozenset[OperatorScope] = frozenset({OPERATOR_READ})


class AuthConfigError(ValueError):
    """The tokens file is unreadable, or a non-loopback bind has no token."""


@dataclass(frozen=True)
class Principal:
    """A known token: the caller's name and the operator scopes it holds."""

    name: str
    scopes: frozenset[OperatorScope]


@dataclass(frozen=True)
class Authenticator:
    """Maps presented bearer tokens (by SHA-256) to callers and their scopes."""

    digests: dict[str, Principal]
    required: bool
    open_probes: bool = True

    @classmethod
    def from_settings(cls, api: ApiSettings) -> Authenticator:
        digests: dict[str, Principal] = {}
        for secret, principal in (
            (api.token, Principal("api", WRITER)),
            (api.read_token, Principal("reader", READER)),
        ):
            if secret is not None and secret.get_secret_value():
                digests[hash_token(secret.get_secret_value())] = principal
        if api.tokens_file is not None:
            digests.update(_read_tokens_file(api.tokens_file))
        if not digests and not is_loopback(api.host):
            raise AuthConfigError(
                f"the API binds to {api.host}, not loopback: set ROOMOP_API__TOKEN or ROOMOP_API__TOKENS_FILE"
            )
        return cls(digests=digests, required=bool(digests), open_probes=api.open_probes)

    def caller(self, request: Request, *, scope: OperatorScope = OPERATOR_WRITE) -> str:
        """The caller's name; 401 when auth is required and the token is missing or unknown, 403 when the
        token lacks `scope`. The body, if any, is never read (a large one: the connection is closed)."""
        if not self.required:
            return ANONYMOUS
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refusal(request, 401, ApiCode.AUTH_REQUIRED, "a bearer token is required")
        principal = self._known(token.strip())
        if principal is None:
            raise _refusal(request, 401, ApiCode.AUTH_REQUIRED, "unknown bearer token")
        if scope not in principal.scopes:
            raise _refusal(
                request, 403, ApiCode.INSUFFICIENT_SCOPE, f"token {principal.name!r} lacks scope {scope}"
            )
        return principal.name

    def _known(self, token: str) -> Principal | None:
        presented = hash_token(token)
        for digest, principal in self.digests.items():
            if hmac.compare_digest(digest, presented):
                return principal
        return None


def _refusal(request: Request, status: int, code: ApiCode, message: str) -> ApiError:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    headers.update(closing(request))  # the body stays unread
    title = "Unauthorized" if status == 401 else "Forbidden"
    message += TOKEN_HINT if status == 401 else ""
    return ApiError.e1(status, title, code, message, **headers)


def _scopes_of(entry: TokenEntry) -> frozenset[OperatorScope]:
    named = {scope for scope in entry.scopes or () if scope in WRITER}
    if not named or OPERATOR_WRITE in named:
        return WRITER
    return READER


def _read_tokens_file(path: Path) -> dict[str, Principal]:
    try:
        entries = read_tokens_file(path, require_scopes=False)
    except TokenConfigError as exc:
        raise AuthConfigError(f"cannot read tokens file {exc}") from exc
    return {entry.digest(): Principal(entry.name, _scopes_of(entry)) for entry in entries}
