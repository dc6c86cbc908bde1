"""Dummy coding: preview the encoding, then create the derived (read-only) dataset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.schemas import DummyBody, ErrorBody
from glmmlab.services.project import dummy

router = APIRouter(prefix="/api", tags=["dummy coding"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}}


def _spec(body: DummyBody) -> list[dict[str, Any]]:
    return [s.model_dump(exclude_none=True) for s in body.spec]


@router.post("/dummy/preview", responses=ERRORS, summary="Show the encoding a spec would produce, without creating")
def preview(body: DummyBody, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(dummy.preview_dummy_coding(project, _coerce_id(body.dataset_id), _spec(body)))


@router.post("/dummy", responses=ERRORS, status_code=201, summary="Create the dummy-coded derived dataset")
def create(body: DummyBody, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        info = dummy.create_dummy_coded(project, _coerce_id(body.dataset_id), _spec(body), name=body.name)
    return {"dataset": jsonable(info)}


def _coerce_id(raw: Any) -> Any:
    return int(raw) if isinstance(raw, str) and raw.isdigit() else raw
