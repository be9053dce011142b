"""`/v1/deployments`: the host's named deployments (list, get) and predictions created on one."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ..http_helpers import json_body
from ..services import Services, services
from .predictions import check_body, start_prediction

router = APIRouter()


@router.get("/deployments")
async def list_deployments(s: Services = Depends(services)) -> dict:
    # One page holds them all: a server has the few its command line names.
    return {"next": None, "previous": None,
            "results": [deployment.deployment_object() for deployment in s.deployments.values()]}


@router.get("/deployments/{owner}/{name}")
async def get_deployment(owner: str, name: str, s: Services = Depends(services)) -> dict:
    return s.deployment(owner, name).deployment_object()


@router.post("/deployments/{owner}/{name}/predictions", status_code=201)
async def create_deployment_prediction(owner: str, name: str, request: Request,
                                       s: Services = Depends(services)) -> JSONResponse:
    deployment = s.deployment(owner, name)
    body = await json_body(request)
    check_body(body, with_version=False)
    return await start_prediction(request, body, model=deployment.model,
                                  version=deployment.model.latest, s=s, deployment=deployment.ref)
