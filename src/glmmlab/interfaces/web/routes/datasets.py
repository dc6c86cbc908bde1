"""Datasets: list (as a lineage tree), rows by page, column types and scales, rename, dependents, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from glmmlab.interfaces.web.deps import dataset_id, dataset_tree, workbench
from glmmlab.interfaces.web.encode import jsonable, rows_jsonable
from glmmlab.interfaces.web.schemas import ColumnChange, ErrorBody, RenameBody
from glmmlab.services.errors import ServiceError
from glmmlab.services.project import catalogue, column_types, editing, lineage, samples

router = APIRouter(prefix="/api", tags=["datasets"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 404: {"model": ErrorBody},
                                           409: {"model": ErrorBody}}
MAX_PAGE = 5000
DUMMY_ACTIONS = (("exclude", "Not included"), ("as_is", "Include as-is"),
                 ("dummy_drop", "Dummy code, drop the original"), ("dummy_keep", "Dummy code, keep the original"))


@router.get("/vocabulary", summary="Column types, measurement scales and dummy-coding actions the API accepts")
def vocabulary() -> dict[str, Any]:
    return {"dtypes": list(column_types.DTYPES), "scales": list(column_types.SCALES),
            "scales_by_dtype": {k: list(v) for k, v in column_types.SCALES_BY_DTYPE.items()},
            "dummy_actions": [{"value": v, "label": label} for v, label in DUMMY_ACTIONS]}


@router.get("/datasets", summary="All datasets, each primary one followed by those derived from it")
def list_datasets(request: Request) -> dict[str, list[dict[str, Any]]]:
    with workbench(request).project() as project:
        return {"datasets": dataset_tree(catalogue.list_datasets(project))}


@router.get("/datasets/{id}", responses=ERRORS, summary="One dataset: name, row count, columns, lineage")
def get_dataset(id: str, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(catalogue.get_dataset(project, dataset_id(id)))


@router.get("/datasets/{id}/rows", responses=ERRORS, summary="A page of rows")
def read_rows(id: str, request: Request, offset: int = Query(0, ge=0),
              limit: int = Query(100, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
    with workbench(request).project() as project:
        info = jsonable(catalogue.get_dataset(project, dataset_id(id)))
        page = catalogue.read_rows(project, dataset_id(id), offset, limit)
    return {"dataset_id": info["id"], "name": info["name"], "read_only": info.get("read_only", False),
            "columns": info["columns"], "rows": rows_jsonable(page["rows"]), "total": int(page["total"]),
            "offset": offset, "limit": limit}


@router.patch("/datasets/{id}", responses=ERRORS, summary="Rename a dataset")
def rename_dataset(id: str, body: RenameBody, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(editing.rename_dataset(project, dataset_id(id), body.name)
                        or catalogue.get_dataset(project, dataset_id(id)))


@router.patch("/datasets/{id}/columns", responses=ERRORS,
              summary="Change a column's type and/or measurement scale (primary datasets only)")
def change_column(id: str, body: ColumnChange, request: Request) -> dict[str, Any]:
    if body.dtype is None and body.scale is None:
        raise ServiceError("Say what to change: give 'dtype', 'scale' or both.")
    with workbench(request).project() as project:
        did = dataset_id(id)
        if body.dtype is not None:
            editing.set_column_type(project, did, body.column, body.dtype, invalid=body.invalid)
        if body.scale is not None:
            editing.set_column_scale(project, did, body.column, body.scale)
        out = jsonable(catalogue.get_dataset(project, did))
        if body.dtype is not None:
            out["undo"] = editing.column_undo(project, did)
        return out


@router.get("/datasets/{id}/columns/undo", responses=ERRORS,
            summary="The last column type change that can be undone (null when there is none)")
def column_undo(id: str, request: Request) -> dict[str, Any]:
    """``{"undo": {"column", "dtype" (before), "scale" (before), "to_dtype" (now), "made_missing"} | null}``."""
    with workbench(request).project() as project:
        return {"undo": editing.column_undo(project, dataset_id(id))}


@router.post("/datasets/{id}/columns/undo", responses=ERRORS,
             summary="Undo the last column type change: the column's values and type as they were")
def undo_column_type(id: str, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(editing.undo_column_type(project, dataset_id(id)))


@router.get("/datasets/{id}/dependents", responses=ERRORS,
            summary="What would be deleted with this dataset: derived datasets and models")
def dependents(id: str, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(lineage.dependents(project, dataset_id(id)))


@router.delete("/datasets/{id}", responses=ERRORS,
               summary="Delete a dataset; with dependents, only when cascade=true, and then together with them")
def delete_dataset(id: str, request: Request,
                   cascade: bool = Query(False, description="Also delete the derived datasets and models.")):
    with workbench(request).project() as project:
        did = dataset_id(id)
        deps = jsonable(lineage.dependents(project, did))
        if not cascade and (deps.get("datasets") or deps.get("models")):
            return _conflict(deps)
        result = lineage.delete_dataset(project, did)
    return {"deleted": jsonable(result) if result is not None else deps, "id": did}


def _conflict(deps: dict[str, Any]):
    names = [d.get("name", str(d.get("id"))) for d in deps.get("datasets", [])]
    names += [m.get("name", str(m.get("id"))) for m in deps.get("models", [])]
    return JSONResponse({"error": "Other things depend on this dataset: " + ", ".join(names)
                         + ". Delete with cascade=true to remove them together.", "dependents": deps},
                        status_code=409)


@router.post("/samples", responses=ERRORS, status_code=201, summary="Add glmmlab's sample datasets to the project")
def add_samples(request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        created = samples.create_sample_datasets(project)
    return {"datasets": jsonable(created or [])}
