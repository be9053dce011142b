"""`/v1/webhooks/default/secret`: the key that signs this server's webhooks."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..services import Services, services

router = APIRouter()


@router.get("/webhooks/default/secret")
async def webhook_secret(s: Services = Depends(services)) -> dict:
    return {"key": s.webhooks.secret}
