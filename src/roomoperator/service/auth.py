"""Bearer-token authentication of the operator's mutating endpoints; the token's name is the actor.

Tokens come from `api.token` (`ROOMOP_API__TOKEN`, named `api`) and `api.tokens_file` (the room
server's tokens file format: `tokens: [{name, token | sha256}]`). Auth is required when any token is
configured, and always when the API binds to a non-loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from roomoperator.service.errors import ApiError
from roomoperator.settings import ApiSettings

ANONYMOUS = "anonymous"


class AuthConfigError(ValueError):
    """The tokens file is unreadable, or a non-loopback bind has no token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Authenticator:
    """Maps presented bearer tokens (by SHA-256) to caller names."""

    digests: dict[str, str]
    required: bool

    @classmethod
    def from_settings(cls, api: ApiSettings) -> Authenticator:
        digests: dict[str, str] = {}
        if api.token is not None and api.token.get_secret_value():
            digests[_digest(api.token.get_secret_value())] = "api"
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
        presented = _digest(token.strip())
        for digest, name in self.digests.items():
            if hmac.compare_digest(digest, presented):
                return name
        raise _unauthorized("unknown bearer token")


def _unauthorized(message: str) -> ApiError:
    return ApiError.e1(401, "Unauthorized", "AUTH_REQUIRED", message, **{"WWW-Authenticate": "Bearer"})


def _read_tokens_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else YAML(typ="safe").load(text)
        digests = {}
        for item in data["tokens"]:
            digest = item.get("sha256") or _digest(str(item["token"]))
            digests[str(digest).lower()] = str(item["name"])
    except (OSError, ValueError, YAMLError, KeyError, TypeError) as exc:
        raise AuthConfigError(f"cannot read tokens file {path}: {exc}") from exc
    return digests
