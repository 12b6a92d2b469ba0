"""MCP status and admin routes (reference R12–R14) over the provider supervisor (`roomserver.providers`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from roomserver.api.dependencies import ERRORS, Admin, Reader, Server
from roomserver.api.schemas import LoadBody, LoadOut, McpStatusOut
from roomserver.errors import bad_request
from roomserver.providers.supervisor import ProviderConfig

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
    """R14: register providers (for `roomId` only, when given) and answer at once; each connects in the
    background (the reference answered after every connection attempt)."""
    if not body.providers:
        return JSONResponse({"error": "No providers specified"}, status_code=400)
    for index, provider in enumerate(body.providers):
        name = server.providers.unknown_command(provider.url)
        if name is not None:
            raise bad_request(
                "INVALID_REQUEST",
                f"providers.{index}.url: stdio:{name} names no configured command (mcp_commands)",
            )
    configs = [ProviderConfig(p.id, p.url, p.visibility) for p in body.providers]
    count = server.providers.load(configs, room_id=body.roomId)
    return JSONResponse({"message": "MCP providers loading initiated", "count": count})
