"""MCP status and admin routes (reference R12–R14), correct with zero providers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from roomserver.api.dependencies import ERRORS, Admin, Reader, Server
from roomserver.api.schemas import LoadBody, LoadOut, McpStatusOut

router = APIRouter(tags=["mcp"], responses=ERRORS)


@router.get("/status/mcp", response_model=McpStatusOut)
@router.get("/admin/mcp/status", response_model=McpStatusOut)
async def status_mcp(server: Server, _: Reader) -> dict[str, Any]:
    """R12 and R13 (identical): every provider's connection state."""
    return {"providers": server.providers.statuses()}


@router.post(
    "/admin/mcp/load", responses={200: {"model": LoadOut}, 400: {"description": "No providers specified"}}
)
async def load(body: LoadBody, server: Server, _: Admin) -> JSONResponse:
    """R14: register providers; answers at once (the reference waited for every connection attempt)."""
    if not body.providers:
        return JSONResponse({"error": "No providers specified"}, status_code=400)
    count = server.providers.load([(p.id, p.url, p.visibility) for p in body.providers])
    return JSONResponse({"message": "MCP providers loading initiated", "count": count})
