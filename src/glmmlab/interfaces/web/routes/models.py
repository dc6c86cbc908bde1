"""Saved models: save a finished fit, read it (with the fixed effects at any confidence level), its diagnostic
plots, delete it, and add its tables or plots to a report. ``GET /api/models`` (the list) lives in catalog.py."""

from __future__ import annotations

import base64
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.limits import shorten
from glmmlab.engine.model.options import INTERVAL_OPTIONS
from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.views import result_view
from glmmlab.services.workbench import comparison, fit_analyses, fits, glmm_form, models, plots, report_items, reports


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
    new_report: Optional[str] = Field(None, description="The name of a new report to add to (instead of report_id).")
    conf_level: Optional[float] = Field(None, description="Level of the fixed-effects intervals; default: saved.")
    items: Optional[list[str]] = Field(None, description="The choices to add (keys of GET .../report-items, e.g. "
                                                         "'table:fixed-effects', 'plot:qq', 'effects?term=x'); "
                                                         "default: every table.")


def report_target(project, body: ToReportBody):
    """The report an Add to Report goes to, or a 422 naming ``new_report`` when the new name is not valid."""
    try:
        return reports.target_report(project, body.report_id, body.new_report)
    except ServiceError as exc:
        if body.new_report is None or isinstance(exc, reports.NotFound):
            raise
        return JSONResponse({"error": f"New report name: {exc}", "field": "new_report", "message": str(exc)},
                            status_code=422)


def add_chosen(project, body: ToReportBody, items_of) -> Any:
    """Build the chosen items (``items_of(keys)``), then add them to the target report (nothing is created when a
    choice is bad); 422 with ``field: "items"`` for a bad choice."""
    try:
        items = items_of(body.items)
    except glmm_form.FieldError as exc:
        return JSONResponse({"error": f"{exc.label}: {exc}", "field": exc.field, "message": str(exc)},
                            status_code=422)
    except ServiceError as exc:
        if isinstance(exc, reports.NotFound):
            raise
        return JSONResponse({"error": f"Items: {exc}", "field": "items", "message": str(exc)}, status_code=422)
    report = report_target(project, body)
    if isinstance(report, JSONResponse):
        return report
    return jsonable(reports.add_items(project, report["id"], items))


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
        model = models.save_model(project, body.name, job.info["dataset_id"], job.info["spec"], result,
                                  data=job.kept.get("data_fingerprint"))
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
        if method != "wald":  # a refit: refused now, not in the job, when the data changed since the save
            models.model_data(project, model)
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


@router.get("/{model_id}/anova", summary="Omnibus tests per model term of a saved model (as /api/glmm/fits/{id}/anova)")
def anova(model_id: int, request: Request) -> dict[str, Any]:
    wb = workbench(request)
    with wb.project() as project:
        model = models.get_model(project, model_id)
        return jsonable(fit_analyses.saved_anova(project, model, wb.project_key()))


@router.get("/{model_id}/emmeans", summary="Estimated marginal means, pairwise comparisons and effect-plot data of a "
                                           "saved model (as /api/glmm/fits/{id}/emmeans; the model is fitted again "
                                           "on its dataset)")
def emmeans(model_id: int, request: Request, term: str = Query(...), by: Optional[str] = None,
            type: str = "response", level: Optional[float] = None, adjust: str = "tukey"):
    wb = workbench(request)
    try:
        with wb.project() as project:
            model = models.get_model(project, model_id)
            result = fit_analyses.saved_fit(project, model, wb.project_key())
        return fit_analyses.marginal_view(result, term, by=by, type=type, level=level, adjust=adjust)
    except glmm_form.FieldError as exc:
        return JSONResponse({"error": f"{exc.label}: {exc}", "field": exc.field, "message": str(exc)},
                            status_code=422)


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


@router.get("/{model_id}/plots/{kind}.svg", summary="A diagnostic plot as SVG",
            response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
def plot_svg(model_id: int, kind: str, request: Request):
    with workbench(request).project() as project:
        svg = plots.plot_png(project, model_id, kind, "svg")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/{model_id}/report-items", summary="The tables and plots of a saved model that can go into a report")
def report_choices(model_id: int, request: Request, conf_level: Optional[float] = Query(None)) -> dict[str, Any]:
    """``{"items": [{key, kind, title, checked}], "reports": [...]}``: the keys to POST to .../report."""
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
        level = None if conf_level is None else models.check_conf_level(conf_level)
        plot_titles = plots.titles(model["result"]) if models.has_diagnostics(model) else {}
        return jsonable({"items": report_items.catalog(model["result"], plot_titles, level),
                         "reports": reports.list_reports(project)})


@router.get("/{model_id}/effects.{fmt}", summary="The effect plot of a term of a saved model (PNG or SVG)",
            response_class=Response, responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}})
def effects_plot(model_id: int, fmt: str, request: Request, term: str = Query(...), by: Optional[str] = None,
                 level: Optional[float] = None):
    wb = workbench(request)
    try:
        with wb.project() as project:
            model = models.get_model(project, model_id)
            view = fit_analyses.marginal_view(fit_analyses.saved_fit(project, model, wb.project_key()), term, by=by,
                                              level=level)
    except glmm_form.FieldError as exc:
        return JSONResponse({"error": f"{exc.label}: {exc}", "field": exc.field, "message": str(exc)},
                            status_code=422)
    title = f"Effect of {view['term']}" + (f" by {by}" if by else "") + f" — {model['name']}"
    return Response(plots.effect_plot(view, title, fmt), media_type="image/svg+xml" if fmt == "svg" else "image/png",
                    headers={"Cache-Control": "no-store"})


@router.post("/{model_id}/report", summary="Add the chosen tables and plots of the model (default: every table) "
                                           "to a report; an item the report holds already is not added again")
def tables_to_report(model_id: int, request: Request, body: Optional[ToReportBody] = None):
    body = body or ToReportBody()
    wb = workbench(request)
    with wb.project() as project:
        model = models.get_model(project, model_id)
        level = model["result"]["model"]["conf_level"] if body.conf_level is None \
            else models.check_conf_level(body.conf_level)
        if body.items is None:
            return add_chosen(project, body, lambda _: report_tables(model, level))

        def items_of(keys):
            return report_items.build(
                keys, owner=f"model:{model['id']}", name=model["name"], result=model["result"], conf_level=level,
                plot_png=lambda kind: plots.plot_png(project, model["id"], kind),
                marginal=lambda term, by, adjust: fit_analyses.marginal_view(
                    fit_analyses.saved_fit(project, model, wb.project_key()), term, by=by, adjust=adjust),
                effect_png=lambda view, title: plots.effect_plot(view, title))
        return add_chosen(project, body, items_of)


@router.post("/{model_id}/plots/{kind}/report", summary="Add a diagnostic plot to a report")
def plot_to_report(model_id: int, kind: str, request: Request,
                   body: Optional[ToReportBody] = None):
    body = body or ToReportBody()
    with workbench(request).project() as project:
        model = models.get_model(project, model_id)
        png = plots.plot_png(project, model_id, kind)
        report = report_target(project, body)
        if isinstance(report, JSONResponse):
            return report
        item = {"kind": "plot", "title": f"{model['name']}: {plots.title_of(model['result'], kind)}",
                "payload": {"png_base64": base64.b64encode(png).decode("ascii"),
                            "source": f"model:{model['id']}:plot:{kind}"}}
        return jsonable(reports.add_items(project, report["id"], [item]))



def _summary(model: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if k != "result"}
