"""Saved models: save a finished fit, read it (with the fixed effects at any confidence level), its diagnostic
plots, delete it, and add its tables or plots to a report. ``GET /api/models`` (the list) lives in catalog.py."""

from __future__ import annotations

import base64
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.limits import shorten
from glmmlab.engine.options import INTERVAL_OPTIONS
from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.services import comparison, fits, models, plots, reports, result_view
from glmmlab.services.errors import NotFound, ServiceError


class SaveBody(BaseModel):
    fit_id: str = Field(description="The id of a finished fit (POST /api/glmm/fits).")
    name: str = Field(description="Model Name.")


class IntervalsBody(BaseModel):
    method: str = Field("profile", description="Interval Method: wald, profile or boot.")
    conf_level: Optional[float] = Field(None, description="Confidence level; default: the model's saved level.")
    # Any: the option's own check refuses true/false and 2.0 (an int field would take them as 1 and 2)
    nsim: Any = Field(INTERVAL_OPTIONS["nsim"].default, description="Bootstrap Samples (method boot).")
    seed: Any = Field(None, description="Random Seed of the bootstrap (method boot).")


def _interval_field_error(name: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "message": message, "field": name}, status_code=422)


class RenameBody(BaseModel):
    name: str = Field(description="The new Model Name.")


class CompareBody(BaseModel):
    model_ids: list[int] = Field(description="Two or more saved models of one dataset.")


class ToReportBody(BaseModel):
    report_id: Optional[int] = Field(None, description="Default: the newest report (one is created if none).")
    conf_level: Optional[float] = Field(None, description="Level of the fixed-effects intervals; default: saved.")


def fixed_effects_view(result: dict[str, Any], conf_level: float) -> dict[str, Any]:
    """The Fixed Effects table at ``conf_level`` (values, written cells, headers) and the saved level."""
    table = result_view.fixed_effects_table(result, models.check_conf_level(conf_level))
    rows = [dict(zip(table["keys"], values)) for values in table["rows"]]
    return dict(table, values=table["rows"], rows=rows, headers=table["columns"],
                level_text=result_view.level_text(conf_level), saved_conf_level=result["model"]["conf_level"])


def report_tables(model: dict[str, Any], conf_level: float) -> list[dict[str, Any]]:
    """Every table of the model (as Model Detail shows them, fixed effects at ``conf_level``) as report items; the
    first carries the model line and the warnings as its note."""
    result = model["result"]
    items: list[dict[str, Any]] = []
    for t in result_view.result_tables(result, conf_level):
        note = t["note"] or ""
        if not items:
            warnings = result_view.warnings_of(result)
            note = " ".join([result_view.summary_line(result) + "."] + [f"Warning: {w}" for w in warnings]
                            + ([note] if note else []))
        items.append({"kind": "table", "title": f"{model['name']}: {t['title']}",
                      "payload": {"columns": t["columns"], "rows": t["rows"], "kinds": t["kinds"],
                                  "note": note}})
    return items


router = APIRouter(prefix="/api/models", tags=["models"])


@router.post("", status_code=201, summary="Save a finished fit as a model, with its diagnostics dataset")
def save(body: SaveBody, request: Request):
    wb = workbench(request)
    job = wb.jobs.get(body.fit_id, "fit")
    result = fits.full_result(job)
    if job.state != "done" or result is None:
        raise ServiceError("Only a finished fit can be saved; this one is " + job.state + ".")
    if not body.name or not body.name.strip():
        return JSONResponse({"error": "Model Name: give the model a name.", "field": "name"}, status_code=422)
    with wb.project_for(job.kept["project_key"], "This fit") as project:
        model = models.save_model(project, body.name, job.info["dataset_id"], job.info["spec"], result)
    return JSONResponse(jsonable(_summary(model)), status_code=201)


@router.post("/compare", summary="Compare saved models of one dataset by likelihood-ratio tests (lme4's anova); "
                                  "each is refitted from its dataset, REML fits by ML")
def compare(body: CompareBody, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        loaded = comparison.load_saved(project, body.model_ids)
    return jsonable(comparison.compare_loaded(loaded))


@router.get("/{model_id}", summary="A saved model: spec, result and the fixed effects at conf_level")
def get(model_id: int, request: Request, conf_level: Optional[float] = Query(None),
        diagnostics: bool = False) -> dict[str, Any]:
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
        result = {k: v for k, v in model["result"].items() if k != "diagnostics"}
        if diagnostics:
            result["diagnostics"] = models.diagnostics_of(project, model)
    level = result["model"]["conf_level"] if conf_level is None else models.check_conf_level(conf_level)
    out = dict(model, result=result)
    out["fixed_effects"] = fixed_effects_view(result, level)
    out["saved_conf_level"] = result["model"]["conf_level"]
    out["display"] = result_view.view(result, level)
    return jsonable(out)


@router.get("/{model_id}/fixed-effects", summary="The fixed effects recomputed at another confidence level "
                                                 "(the saved level does not change)")
def fixed_effects(model_id: int, request: Request, conf_level: float = Query(...)) -> dict[str, Any]:
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
    return jsonable(fixed_effects_view(model["result"], models.check_conf_level(conf_level)))


@router.post("/{model_id}/intervals", status_code=202,
             summary="Start confidence intervals of a saved model (wald, profile or boot) in the background")
def start_intervals(model_id: int, body: IntervalsBody, request: Request):
    try:
        method = INTERVAL_OPTIONS["ci"].check(body.method)
        nsim = INTERVAL_OPTIONS["nsim"].check(body.nsim)
        seed = None if body.seed is None else INTERVAL_OPTIONS["seed"].check(body.seed)
    except GlmmInputError as exc:
        name = str(exc).split(" ", 1)[0]
        return _interval_field_error({"ci": "method"}.get(name, name), str(exc).replace("ci ", "method ", 1))
    wb = workbench(request)
    with wb.project() as project:
        model = models.get_model(project, model_id)
        key = wb.project_key()
    level = model["result"]["model"]["conf_level"] if body.conf_level is None \
        else models.check_conf_level(body.conf_level)
    job = fits.start_intervals(wb.jobs, lambda: wb.project_for(key), model, method, level, nsim, seed)
    return JSONResponse(jsonable(fits.intervals_view(job)), status_code=202)


@router.get("/{model_id}/intervals/{job_id}", summary="An interval computation's state and progress; the table "
                                                      "when done")
def get_intervals(model_id: int, job_id: str, request: Request) -> dict[str, Any]:
    return jsonable(fits.intervals_view(_interval_job(request, model_id, job_id)))


@router.post("/{model_id}/intervals/{job_id}/cancel", summary="Ask an interval computation to stop")
def cancel_intervals(model_id: int, job_id: str, request: Request) -> dict[str, Any]:
    job = _interval_job(request, model_id, job_id)
    return jsonable(fits.intervals_view(workbench(request).jobs.cancel(job.id)))


def _interval_job(request: Request, model_id: int, job_id: str):
    try:
        job = workbench(request).jobs.get(job_id, "interval")
    except ServiceError:
        job = None
    if job is None or job.info.get("model_id") != model_id:
        raise NotFound(f"There is no interval computation '{shorten(job_id)}' for model {model_id}.")
    return job


@router.patch("/{model_id}", summary="Rename a model (names are unique in a project)")
def rename(model_id: int, body: RenameBody, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(_summary(models.rename_model(project, model_id, body.name)))


@router.delete("/{model_id}", summary="Delete a model and its diagnostics dataset")
def delete(model_id: int, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        return jsonable(models.delete_model(project, model_id))


@router.get("/{model_id}/diagnostics", summary="The diagnostics dataset and the plots of a model")
def diagnostics(model_id: int, request: Request) -> dict[str, Any]:
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
    available = models.has_diagnostics(model)
    return {"model_id": model["id"], "name": model["name"], "dataset_id": model["diagnostics_dataset_id"],
            "display_size": list(plots.DISPLAY_SIZE),
            "note": None if available else "The per-row diagnostics were deleted with the diagnostics dataset; "
                                           "run the model again to see its plots.",
            "plots": [{"kind": k, "title": t, "url": f"/api/models/{model['id']}/plots/{k}.png"}
                      for k, t in plots.titles(model["result"]).items()] if available else []}


@router.get("/{model_id}/plots/{kind}.png", summary="A diagnostic plot as PNG",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def plot(model_id: int, kind: str, request: Request):
    with workbench(request).project() as project:
        png = plots.plot_png(project, model_id, kind)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/{model_id}/report", summary="Add every table of the model (Random Effects, ICC, Fixed Effects, "
                                           "Model Fit, GLM comparison, BLUP) to a report")
def tables_to_report(model_id: int, request: Request, body: Optional[ToReportBody] = None) -> dict[str, Any]:
    body = body or ToReportBody()
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
        level = model["result"]["model"]["conf_level"] if body.conf_level is None \
            else models.check_conf_level(body.conf_level)
        report = _target(project, body.report_id)
        return jsonable(reports.add_items(project, report["id"], report_tables(model, level)))


@router.post("/{model_id}/plots/{kind}/report", summary="Add a diagnostic plot to a report")
def plot_to_report(model_id: int, kind: str, request: Request,
                   body: Optional[ToReportBody] = None) -> dict[str, Any]:
    body = body or ToReportBody()
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
        png = plots.plot_png(project, model_id, kind)
        report = _target(project, body.report_id)
        item = {"kind": "plot", "title": f"{model['name']}: {plots.titles(model['result'])[kind]}",
                "payload": {"png_base64": base64.b64encode(png).decode("ascii")}}
        return jsonable(reports.add_items(project, report["id"], [item]))



def _target(project, report_id: Optional[int]) -> dict[str, Any]:
    return reports.get_report(project, report_id) if report_id is not None else reports.default_report(project)


def _summary(model: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if k != "result"}
