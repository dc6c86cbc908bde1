"""Data import: the upload is stored under the projects directory, then imported by a background job the page polls."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Literal, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from glmmlab.interfaces.web.deps import receive_upload, upload_suffix, workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.schemas import ErrorBody, JobOut
from glmmlab.interfaces.web.state import Job, Workbench
from glmmlab.services import datasets
from glmmlab.services.errors import ServiceError

router = APIRouter(prefix="/api", tags=["import"])
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}


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
        fmt = format or FORMATS.get(upload_suffix(filename))
        if fmt is None:
            raise ServiceError("Say which format the file is in: the name should end in .csv, .tsv or .parquet, "
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
        job.phase = "waiting for the project"
        with wb.project() as project, project.patient():  # a background job queues for the project's writer lock
            job.phase = "importing"
            info = datasets.import_dataset(project, path, name, fmt=fmt, progress=_reporter(job))
        return {"dataset": jsonable(info)}

    return wb.start_job("import", label, work, cleanup=lambda: wb.discard_upload(path))


def _reporter(job: Job):
    """A progress callback that accepts the usual shapes: (fraction), (done, total), (phase, fraction) or keywords."""

    def report(*args: Any, **kwargs: Any) -> None:
        numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        words = [a for a in args if isinstance(a, str)]
        fraction = kwargs.get("fraction")
        if fraction is None and "done" in kwargs and kwargs.get("total"):
            fraction = kwargs["done"] / kwargs["total"]
        if fraction is None and len(numbers) >= 2 and numbers[1]:
            fraction = numbers[0] / numbers[1]
        elif fraction is None and len(numbers) == 1:
            fraction = numbers[0]
        if fraction is not None:
            job.fraction = max(0.0, min(1.0, float(fraction)))
        phase = kwargs.get("phase") or kwargs.get("stage") or (words[0] if words else None)
        if phase:
            job.phase = phase

    return report


@router.get("/jobs/{id}", response_model=JobOut, responses={404: {"model": ErrorBody}},
            summary="A background job's state and progress")
def get_job(id: str, request: Request):
    return workbench(request).get_job(id).to_dict()


@router.get("/jobs", response_model=list[JobOut], summary="Running background jobs")
def list_jobs(request: Request):
    return [j.to_dict() for j in workbench(request).running_jobs()]
