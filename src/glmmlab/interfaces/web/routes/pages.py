"""The workbench page: one HTML page; the tabs inside it are built by static/workbench.js from the JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from glmmlab.interfaces.web.deps import dataset_tree, workbench
from glmmlab.interfaces.web.routes.catalog import list_models, list_reports
from glmmlab.interfaces.web.security import human_bytes
from glmmlab.services import datasets

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def workbench_page(request: Request):
    wb = workbench(request)
    with wb.project() as project:
        tree = dataset_tree(datasets.list_datasets(project))
        models = list_models(project)
        reports = list_reports(project)
    context = {
        "project": wb.project_info(),
        "csrf_token": wb.csrf_token,
        "datasets": tree,
        "models": models,
        "reports": reports,
        "max_upload_bytes": wb.max_upload_bytes,
        "max_upload_human": human_bytes(wb.max_upload_bytes),
        "scripts": request.app.state.scripts,
        "styles": request.app.state.styles,
        "version": request.app.version,
    }
    return request.app.state.templates.TemplateResponse(request, "workbench.html", context)
