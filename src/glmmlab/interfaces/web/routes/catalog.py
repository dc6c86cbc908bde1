"""Saved models and reports, as the sidebar lists them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.services.workbench import models, reports

router = APIRouter(prefix="/api", tags=["project"])


def list_models(project: Any) -> list[dict[str, Any]]:
    return [jsonable(m) for m in models.list_models(project)]


def list_reports(project: Any) -> list[dict[str, Any]]:
    return [jsonable(r) for r in reports.list_reports(project)]


@router.get("/models", summary="Saved models in the open project")
def get_models(request: Request) -> dict[str, list[dict[str, Any]]]:
    with workbench(request).project() as project:
        return {"models": list_models(project)}


@router.get("/reports", summary="Reports in the open project")
def get_reports(request: Request) -> dict[str, list[dict[str, Any]]]:
    with workbench(request).project() as project:
        return {"reports": list_reports(project)}
