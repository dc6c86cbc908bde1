"""The workbench page: one HTML page; the tabs inside it are built by static/workbench.js from the JSON API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.interfaces.web.deps import dataset_tree, workbench
from glmmlab.interfaces.web.routes.catalog import list_models, list_reports
from glmmlab.interfaces.web.security import human_bytes
from glmmlab.services.project import catalogue, formats

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def workbench_page(request: Request):
    wb = workbench(request)
    with wb.project() as project:
        tree = dataset_tree(catalogue.list_datasets(project))
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
        "data_suffixes": ",".join(formats.SUFFIXES),  # the file dialog offers what the importer reads
        "scripts": request.app.state.scripts,
        "styles": request.app.state.styles,
        "version": request.app.version,
        # what Help > About says the workbench fits: the engine's families with their links
        "families": [f"{f.label} ({', '.join(f.links)})" for f in FAMILIES.values()],
    }
    return request.app.state.templates.TemplateResponse(request, "workbench.html", context)


@router.get("/api-reference", response_class=HTMLResponse)
def api_reference(request: Request):
    """The JSON API as a plain page built from the OpenAPI document (works offline, unlike /docs)."""
    spec = request.app.openapi()
    endpoints = []
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            params = [{"name": p["name"], "where": p["in"], "required": p.get("required", False),
                       "description": p.get("description") or p.get("schema", {}).get("description", "")}
                      for p in op.get("parameters", [])]
            body = op.get("requestBody", {}).get("content", {})
            body_types = []
            for media, content in body.items():
                ref = content.get("schema", {}).get("$ref", "")
                body_types.append(f"{media}: {ref.rsplit('/', 1)[-1]}" if ref else media)
            endpoints.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                              "description": op.get("description", ""), "tag": (op.get("tags") or ["other"])[0],
                              "params": params, "body": ", ".join(body_types)})
    schemas = [{"name": name, "fields": [{"name": f, "type": _type_text(s), "description": s.get("description", "")}
                                         for f, s in schema.get("properties", {}).items()]}
               for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items())
               if not name.startswith(("HTTPValidationError", "ValidationError"))]
    return request.app.state.templates.TemplateResponse(request, "api_reference.html", {
        "title": spec["info"]["title"], "version": spec["info"]["version"], "endpoints": endpoints,
        "schemas": schemas, "styles": []})


def _type_text(schema: dict) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_text(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type_text(schema.get('items', {}))}"
    return str(schema.get("type", "any"))
