"""Data import: the upload is stored under the projects directory, then imported by a background job the page polls."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Literal, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from glmmlab.interfaces.web.deps import receive_upload, workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.schemas import ErrorBody, JobOut
from glmmlab.interfaces.web.state import Job, Workbench
from glmmlab.services.errors import ServiceError
from glmmlab.services.project import formats, importing

router = APIRouter(prefix="/api", tags=["import"])


@router.post("/datasets/import", status_code=202, response_model=JobOut,
             responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}},
             summary="Upload a CSV, TSV or Parquet file; answers with a job to poll at /api/jobs/{id}",
             openapi_extra={"requestBody": {"content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}}}}})
async def import_data(request: Request,
                      filename: Optional[str] = Query(None, description="The file's name; its extension picks the "
                                                                         "format unless 'format' is given"),
                      name: Optional[str] = Query(None, description="Dataset name; default: the file name without "
                                                                     "extension"),
                      format: Optional[Literal["csv", "tsv", "parquet"]] = Query(None)):
    wb = workbench(request)
    upload, filename = await receive_upload(request, wb, filename)
    try:
        fmt = format or formats.format_of_name(filename)
        if fmt is None:
            raise ServiceError(f"Say which format the file is in: the name should end in {formats.KNOWN}, "
                               "or give format=csv|tsv|parquet.")
        ds_name = (name or (PurePath(filename).stem if filename else "") or "").strip()
        if not ds_name:
            raise ServiceError("Give the dataset a name.")
    except Exception:
        wb.discard_upload(upload)
        raise
    job = start_import(wb, upload, ds_name, fmt, label=filename or ds_name)
    return JSONResponse(job.to_dict(), status_code=202)


def start_import(wb: Workbench, path: Path, name: str, fmt: str, label: str) -> Job:
    def work(job: Job) -> dict[str, Any]:
        job.report("Waiting for the project")
        with wb.project() as project, project.patient():  # a background job queues for the project's writer lock
            job.report("Importing")
            info = importing.import_dataset(project, path, name, fmt=fmt, progress=job.report)
        return {"dataset": jsonable(info)}

    return wb.start_job("import", label, work, cleanup=lambda: wb.discard_upload(path))


@router.get("/jobs/{id}", response_model=JobOut, responses={404: {"model": ErrorBody}},
            summary="A background job's state and progress")
def get_job(id: str, request: Request):
    return workbench(request).get_job(id).to_dict()


@router.get("/jobs", response_model=list[JobOut], summary="Running background jobs")
def list_jobs(request: Request):
    return [j.to_dict() for j in workbench(request).running_jobs()]
