"""The notification webhooks' HTTP client: one POST of a signed body to a receiver, answered with the
status code or the error that kept it from answering (never raised), over one aiohttp session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from roomoperator.clients.http import SessionClient


@dataclass(frozen=True)
class WebhookAnswer:
    """The receiver's status code, or `error` (None when it answered)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookClient(SessionClient):
    """POSTs notification bodies; each call bounded by its own `seconds`."""

    def __init__(self) -> None:
        super().__init__(timeout=10.0, headers={"User-Agent": "roomoperator-notifications"})

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], seconds: float
    ) -> WebhookAnswer:
        try:
            async with self._open().post(
                url, data=body, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=seconds)
            ) as response:
                await response.read()
                return WebhookAnswer(response.status)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return WebhookAnswer(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
