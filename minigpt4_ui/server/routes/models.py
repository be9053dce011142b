"""`/v1/models/{owner}/{name}` and its versions: the hosted models and their OpenAPI schemas."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..catalog import served_schema
from ..problems import not_found
from ..services import Services, hosted, services

router = APIRouter()


@router.get("/models/{owner}/{name}")
async def get_model(owner: str, name: str) -> dict:
    return hosted(owner, name).model_object()


@router.get("/models/{owner}/{name}/versions/{version_id}")
async def get_version(owner: str, name: str, version_id: str,
                      s: Services = Depends(services)) -> dict:
    model = hosted(owner, name)
    if version_id not in model.versions:
        raise not_found()
    _, document = served_schema(model, s.openapi_schema())
    return {**model.version_object(version_id), "openapi_schema": document}
