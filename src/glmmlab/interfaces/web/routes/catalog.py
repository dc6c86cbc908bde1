"""Saved models and reports, as the sidebar lists them.

The services that store models and reports arrive with the GLMM tab; until a ``list_models``/``list_reports``
function exists in ``glmmlab.services.workbench.models``/``glmmlab.services.workbench.reports`` these lists are empty.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import APIRouter, Request

from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable

router = APIRouter(prefix="/api", tags=["project"])


def _optional(module: str, function: str):
    try:
        return getattr(importlib.import_module(f"glmmlab.services.{module}"), function, None)
    except ModuleNotFoundError as exc:
        if exc.name == f"glmmlab.services.{module}":
            return None
        raise


def list_models(project: Any) -> list[dict[str, Any]]:
    fn = _optional("models", "list_models")
    return [jsonable(m) for m in fn(project)] if fn else []


def list_reports(project: Any) -> list[dict[str, Any]]:
    fn = _optional("reports", "list_reports")
    return [jsonable(r) for r in fn(project)] if fn else []


@router.get("/models", summary="Saved models in the open project")
def get_models(request: Request) -> dict[str, list[dict[str, Any]]]:
    with workbench(request).project() as project:
        return {"models": list_models(project)}


@router.get("/reports", summary="Reports in the open project")
def get_reports(request: Request) -> dict[str, list[dict[str, Any]]]:
    with workbench(request).project() as project:
        return {"reports": list_reports(project)}
