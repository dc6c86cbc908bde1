"""Projects: which one is open, new/open by name inside the projects directory, export to one file, import."""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any, Optional
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from glmmlab.interfaces.web.deps import receive_upload, workbench
from glmmlab.interfaces.web.schemas import (
    ErrorBody,
    NewProjectBody,
    OpenProjectBody,
    ProjectEntry,
    ProjectInfo,
    TokenBody,
)
from glmmlab.services.errors import ServiceError
from glmmlab.services.project import samples
from glmmlab.services.workbench import project_io

router = APIRouter(prefix="/api", tags=["project"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 403: {"model": ErrorBody},
                                           404: {"model": ErrorBody}, 409: {"model": ErrorBody},
                                           413: {"model": ErrorBody}}


@router.get("/token", response_model=TokenBody, summary="The token to send as X-CSRF-Token")
def token(request: Request):
    return {"csrf_token": workbench(request).csrf_token}


@router.get("/project", response_model=ProjectInfo, summary="The open project")
def current_project(request: Request):
    return workbench(request).project_info()


@router.get("/projects", response_model=list[ProjectEntry], summary="Projects in the projects directory")
def list_projects(request: Request):
    return workbench(request).list_projects()


@router.post("/projects/new", response_model=ProjectInfo, responses=ERRORS, status_code=201,
             summary="Create a project and open it")
def new_project(body: NewProjectBody, request: Request):
    wb = workbench(request)
    path = wb.confine(body.name)
    if path.exists():
        raise ServiceError(f"A project named '{wb.display_name(path)}' already exists; open it instead.")
    wb.switch(path, create=True, setup=samples.create_sample_datasets if body.samples else None)
    return wb.project_info()


@router.post("/projects/open", response_model=ProjectInfo, responses=ERRORS, summary="Open an existing project")
def open_project(body: OpenProjectBody, request: Request):
    wb = workbench(request)
    wb.switch(wb.confine(body.name), create=False)
    return wb.project_info()


@router.get("/project/export", responses=ERRORS, summary="Download the open project as one file",
            response_class=FileResponse)
def export_project(request: Request):
    wb = workbench(request)
    with wb.project() as project:
        name = wb.display_name(Path(project.path)).replace("/", "_")
        dest = wb.new_upload_path(f"{name}.glmmlab")
        try:
            summary = project_io.export_project(project, dest, work_dir=dest.parent)
        except Exception:
            wb.discard_upload(dest)
            raise
    headers = {"X-Glmmlab-Left-Out": quote("; ".join(summary["left_out"]))} if summary.get("left_out") else None
    return FileResponse(dest, filename=dest.name, media_type="application/octet-stream", headers=headers,
                        background=BackgroundTask(wb.discard_upload, dest))


@router.post("/projects/import", response_model=ProjectInfo, responses=ERRORS, status_code=201,
             summary="Import a project file (as exported) under a new name and open it",
             openapi_extra={"requestBody": {"content": {"application/octet-stream": {"schema": {
                 "type": "string", "format": "binary"}}}}})
async def import_project(request: Request,
                         name: Optional[str] = Query(None, description="Name of the new project; default: the "
                                                                         "file's name"),
                         filename: Optional[str] = Query(None, description="The uploaded file's name")):
    wb = workbench(request)
    upload, filename = await receive_upload(request, wb, filename)
    try:
        stem = name or (PurePath(filename).stem if filename else "")
        stem = re.sub(r"\.duckdb$", "", stem or "")
        if not stem:
            raise ServiceError("Give the imported project a name.")
        dest = wb.confine(stem)
        await run_in_threadpool(wb.switch, dest, False, None,
                                lambda path: project_io.import_project(upload, path, work_dir=upload.parent))
    finally:
        wb.discard_upload(upload)
    return wb.project_info()
