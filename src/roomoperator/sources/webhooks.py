"""The git webhook (`POST /hooks/git`): whether a push's signature holds under a source's shared secret
(GitHub `X-Hub-Signature-256: sha256=<hex>`, Gitea `X-Gitea-Signature: <hex>`, both HMAC-SHA256 of the
body; GitLab `X-Gitlab-Token: <secret>`), and which branch it pushed (`ref` of the push payload). Pure."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

HEADS = "refs/heads/"


def signed(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """True when the request proves it knows `secret` (header names case-insensitive, as HTTP's)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if (github := lowered.get("x-hub-signature-256")) is not None:
        return hmac.compare_digest(github.strip().lower(), f"sha256={digest}")
    if (gitea := lowered.get("x-gitea-signature") or lowered.get("x-gogs-signature")) is not None:
        return hmac.compare_digest(gitea.strip().lower(), digest)
    if (gitlab := lowered.get("x-gitlab-token")) is not None:
        return hmac.compare_digest(gitlab.encode(), secret.encode())
    return False


def pushed_branch(body: bytes) -> str | None:
    """The branch a push payload names (`"ref": "refs/heads/<branch>"`); None for anything else (a tag, a
    ping, a body that is not a JSON object)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    ref = payload.get("ref") if isinstance(payload, dict) else None
    return ref.removeprefix(HEADS) if isinstance(ref, str) and ref.startswith(HEADS) else None
