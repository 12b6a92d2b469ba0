"""Liveness routes (reference R1, R2): plain text, no token needed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

router = APIRouter(tags=["health"])


@router.get("/", response_class=PlainTextResponse)
async def alive() -> str:
    """R1."""
    return "RoomServer alive"


@router.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    """R2: `Healthy` as text, as the reference answers."""
    return "Healthy"
