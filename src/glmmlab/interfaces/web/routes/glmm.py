"""The GLMM tab's API, a thin view over :mod:`glmmlab.services.workbench.glmm_form` (form options and checks),
:mod:`~glmmlab.services.workbench.fits` (background fits with progress and cancel) and
:mod:`~glmmlab.services.workbench.fit_analyses` (omnibus tests, marginal means and effects of a fit), and (included
from here) saved models and reports.

A fit is a job of the workbench's one job runner: ``POST /api/glmm/fits`` checks the form (answering 422 with
``field`` naming the control when a choice is invalid) and starts it; ``POST /api/glmm/formula`` checks a formula
against the dataset with the model frame builder before anything runs; poll ``GET /api/glmm/fits/{id}`` for
``state`` (queued, running, done, failed, cancelled), ``stage`` and ``fraction``; ``POST
/api/glmm/fits/{id}/cancel`` stops it. A finished fit is saved with ``POST /api/models`` (``{"fit_id", "name"}``)."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.routes import models as models_routes
from glmmlab.interfaces.web.routes import reports as reports_routes
from glmmlab.interfaces.web.routes import residuals as residuals_routes
from glmmlab.services.errors import ServiceError
from glmmlab.services.workbench import fit_analyses, fits, glmm_form, models, plots, report_items, reports

_glmm = APIRouter(prefix="/api/glmm", tags=["glmm"])
scripts = ["glmm.js", "compare.js"]
styles = ["glmm.css"]


class FitBody(BaseModel):
    dataset_id: Any = Field(description="The dataset to analyse.")
    response: Optional[str] = Field(None, description="Response Variable (Y): a numeric column.")
    fixed: list[str] = Field(default_factory=list, description="Fixed Effects (X): numeric columns.")
    group: Optional[str] = Field(None, description="Group Variable (Random Intercept): any column; its "
                                                              "values are the groups (numeric identifiers too).")
    family: str = Field("gaussian", description="gaussian, binomial, poisson or gamma.")
    link: Optional[str] = Field(None, description="Default: the family's canonical link.")
    intercept: bool = True
    conf_level: Any = Field(0.95, description="A fraction between 0.5 and 0.9999 (the form shows percent).")
    max_iter: Any = 100
    tol: Any = 1e-6
    nagq: Any = 1
    ddf: str = Field("auto", description="Fixed-effect tests: auto (default: satterthwaite for Gaussian + identity, "
                                         "Wald z otherwise), none (Wald statistic, no df) or satterthwaite (t "
                                         "tests with Satterthwaite's df; Gaussian + identity only).")
    dispersion: str = Field("estimated", description="Gamma, and Gaussian with a log or inverse link: estimated (a "
                                                     "parameter of the likelihood, glmmTMB's) or lme4 (glmer's).")
    formula: Optional[str] = Field(None, description="Model formula (lme4's language). When given, it is the model: "
                                                     "response, fixed and group are not used.")
    weights: Optional[str] = Field(None, description="Weights: a numeric column of prior weights (with a formula).")
    reference_levels: Optional[dict[str, str]] = Field(
        None, description="Reference level per factor column (with a formula), e.g. {\"f\": \"b\"}: R's relevel.")
    zi: Optional[str] = Field(None, description="Zero-inflation / hurdle model (with a formula): a one-sided formula "
                                                "of the structural-zero probability (logit), e.g. '~ mined'; for a "
                                                "hurdle family the model of P(y = 0). glmmTMB's ziformula.")
    disp: Optional[str] = Field(None, description="Dispersion model (with a formula): a one-sided formula of the "
                                                  "family's dispersion on its log scale, e.g. '~ x'. glmmTMB's "
                                                  "dispformula.")
    form: Optional[dict[str, Any]] = Field(None, description="The page's record of every control of the form, kept "
                                                              "with a saved model to fill the form again.")
    levels: Optional[list[Any]] = Field(None, description="Ordinal family: the response's categories in order, "
                                                          "lowest first (default: the values sorted).")


class FormulaBody(BaseModel):
    dataset_id: Any = Field(description="The dataset the formula is checked against.")
    formula: Optional[str] = None
    family: str = "gaussian"
    weights: Optional[str] = None
    reference_levels: Optional[dict[str, str]] = None
    levels: Optional[list[Any]] = None


def field_error(exc: glmm_form.FieldError) -> JSONResponse:
    return JSONResponse({"error": f"{exc.label}: {exc}", "field": exc.field, "message": str(exc)}, status_code=422)


@_glmm.get("/options", summary="Families, their links (canonical first) and the form's defaults")
def options() -> dict[str, Any]:
    """``families`` are the simple form's; ``general_families`` add those offered with a Model formula."""
    return glmm_form.form_options()


@_glmm.post("/formula", summary="Check a Model formula against a dataset before anything runs")
def check_formula_route(body: FormulaBody, request: Request):
    """200 with the formula's response, fixed-effect columns and random terms, its factors (levels and reference),
    its ``signature`` and ``form`` (how the form's controls express it; null with ``not_form`` saying why, see
    :mod:`glmmlab.services.workbench.model_form`), or 422 with ``field`` (formula, weights, reference_levels, family or
    dataset_id) and a sentence explaining what is wrong."""
    try:
        with workbench(request).project() as project:
            return glmm_form.check_formula_on(project, body.dataset_id, body.formula, body.family, body.weights,
                                              body.reference_levels, levels=body.levels)
    except glmm_form.FieldError as exc:
        return field_error(exc)


@_glmm.post("/fits", status_code=202, summary="Check the form and start a fit in the background")
def start_fit(body: FitBody, request: Request):
    wb = workbench(request)
    try:
        with wb.project() as project:
            info, spec = glmm_form.check_form(project, glmm_form.Form(body.model_dump()))
            key = wb.project_key()
    except glmm_form.FieldError as exc:
        return field_error(exc)
    job = fits.start_fit(wb.jobs, lambda: wb.project_for(key), info, spec, wb.new_upload_path, wb.discard_upload,
                         project_key=key)
    return JSONResponse(jsonable(fits.fit_view(job)), status_code=202)


@_glmm.get("/fits", summary="Fits of this session, newest first (without results)")
def list_fits(request: Request) -> dict[str, Any]:
    return {"fits": [{k: v for k, v in j.to_dict().items() if k != "result"}
                     for j in workbench(request).jobs.jobs("fit")]}


@_glmm.get("/fits/{fit_id}", summary="A fit's state, stage and progress; with the result when done")
def get_fit(fit_id: str, request: Request, diagnostics: bool = False) -> dict[str, Any]:
    return jsonable(fits.fit_view(workbench(request).jobs.get(fit_id, "fit"), diagnostics=diagnostics))


@_glmm.get("/fits/{fit_id}/plots", summary="The plots of a finished fit (not saved): kind, title and urls")
def fit_plots(fit_id: str, request: Request) -> dict[str, Any]:
    """Caterpillar plots, residuals (binned for a binomial model, which has no Normal Q-Q here) and observed
    against fitted, each as PNG and SVG, right after a run."""
    job = workbench(request).jobs.get(fit_id, "fit")
    if job.result is None:
        return {"plots": []}
    return {"plots": [{"kind": k, "title": t, "url": f"/api/glmm/fits/{fit_id}/plots/{k}.png",
                       "svg_url": f"/api/glmm/fits/{fit_id}/plots/{k}.svg"}
                      for k, t in plots.run_titles(job.result).items()]}


@_glmm.get("/fits/{fit_id}/plots/{kind}.{fmt}", summary="A plot of a finished fit as PNG or SVG",
           response_class=Response, responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}})
def fit_plot(fit_id: str, kind: str, fmt: str, request: Request):
    wb = workbench(request)
    job = wb.jobs.get(fit_id, "fit")
    result = fits.full_result(job)
    if result is None:
        raise ServiceError("This fit has not finished; its plots come when it is done.")
    with wb.project() as project:
        data = plots.fit_plot(project, "", job.info["dataset_id"], result, kind, fmt)
    return Response(data, media_type="image/svg+xml" if fmt == "svg" else "image/png",
                    headers={"Cache-Control": "no-store"})


@_glmm.post("/fits/{fit_id}/cancel", summary="Ask a running fit to stop (it stops at its next progress report)")
def cancel_fit(fit_id: str, request: Request) -> dict[str, Any]:
    return jsonable(fits.fit_view(workbench(request).jobs.cancel(fit_id, "fit")))


@_glmm.get("/fits/{fit_id}/anova", summary="Omnibus tests per model term of a finished fit (type III, R's "
                                            "treatment contrasts)")
def fit_anova(fit_id: str, request: Request) -> dict[str, Any]:
    """``{"anova_terms": {"test": "F" | "Chisq", "type", "contrasts", "note", "rows": [{"term", "df", "den_df" (F
    tests), "statistic", "p_value"}]}, "table": <the Omnibus Tests table of the result view>}``."""
    return jsonable(fit_analyses.fit_anova(workbench(request).jobs.get(fit_id, "fit")))


@_glmm.get("/fits/{fit_id}/emmeans", summary="Estimated marginal means, pairwise comparisons and effect-plot data "
                                             "of a term of a finished fit")
def fit_emmeans(fit_id: str, request: Request, term: str = Query(..., description="A factor or covariate of the "
                                                                                   "fixed part"),
                by: Optional[str] = None, type: str = "response", level: Optional[float] = None,
                adjust: str = "tukey"):
    """See :func:`glmmlab.services.workbench.fit_analyses.marginal_view` for the answer; 422 with ``field`` for a bad
    choice."""
    wb = workbench(request)
    job = wb.jobs.get(fit_id, "fit")
    key = job.kept.get("project_key") or wb.project_key()
    try:
        result = fit_analyses.fit_result_of_job(job, lambda: wb.project_for(key))
        return fit_analyses.marginal_view(result, term, by=by, type=type, level=level, adjust=adjust)
    except glmm_form.FieldError as exc:
        return field_error(exc)


@_glmm.get("/fits/{fit_id}/effects.{fmt}", summary="The effect plot of a term of a finished fit (PNG or SVG)",
           response_class=Response, responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}})
def fit_effects_plot(fit_id: str, fmt: str, request: Request, term: str = Query(...), by: Optional[str] = None,
                     level: Optional[float] = None, name: str = ""):
    """Predicted values on the response scale over a covariate (lines with confidence bands) or a factor's levels
    (points with intervals), by ``by`` when given; other covariates at their means, factors averaged (emmeans)."""
    wb = workbench(request)
    job = wb.jobs.get(fit_id, "fit")
    key = job.kept.get("project_key") or wb.project_key()
    try:
        view = fit_analyses.marginal_view(fit_analyses.fit_result_of_job(job, lambda: wb.project_for(key)), term, by=by,
                                          level=level)
    except glmm_form.FieldError as exc:
        return field_error(exc)
    title = f"Effect of {view['term']}" + (f" by {by}" if by else "") + (f" — {name}" if name else "")
    return Response(plots.effect_plot(view, title, fmt), media_type="image/svg+xml" if fmt == "svg" else "image/png",
                    headers={"Cache-Control": "no-store"})


class FitToReport(models_routes.ToReportBody):
    name: Optional[str] = Field(None, description="What the items' titles call the run (the Model Name field).")


@_glmm.get("/fits/{fit_id}/report-items", summary="The tables and plots of a finished fit that can go into a report")
def fit_report_choices(fit_id: str, request: Request) -> dict[str, Any]:
    wb = workbench(request)
    result = fits.full_result(wb.jobs.get(fit_id, "fit"))
    if result is None:
        raise ServiceError("This fit has not finished; its tables come when it is done.")
    with wb.project() as project:
        return jsonable({"items": report_items.catalog(result, plots.run_titles(result)),
                         "reports": reports.list_reports(project)})


@_glmm.post("/fits/{fit_id}/report", summary="Add the chosen tables and plots of a finished fit (not saved) to a "
                                             "report; an item the report holds already is not added again")
def fit_to_report(fit_id: str, body: FitToReport, request: Request):
    wb = workbench(request)
    job = wb.jobs.get(fit_id, "fit")
    result = fits.full_result(job)
    if result is None:
        raise ServiceError("This fit has not finished; its tables come when it is done.")
    key = job.kept.get("project_key") or wb.project_key()
    name = (body.name or "").strip() or job.label
    with wb.project() as project:
        level = result["model"]["conf_level"] if body.conf_level is None else models.check_conf_level(body.conf_level)

        def items_of(keys):
            return report_items.build(
                keys if keys is not None else [c["key"] for c in report_items.catalog(result, {}) if c["checked"]],
                owner=f"fit:{job.id}", name=name, result=result, conf_level=level,
                plot_png=lambda kind: plots.fit_plot(project, name, job.info["dataset_id"], result, kind),
                marginal=lambda term, by, adjust: fit_analyses.marginal_view(
                    fit_analyses.fit_result_of_job(job, lambda: wb.project_for(key)), term, by=by, adjust=adjust),
                effect_png=lambda view, title: plots.effect_plot(view, title))
        return models_routes.add_chosen(project, body, items_of)


@_glmm.delete("/fits/{fit_id}", summary="Remove a fit from this session (a running one is cancelled first); its "
                                       "result can no longer be saved")
def forget_fit(fit_id: str, request: Request) -> dict[str, Any]:
    job = workbench(request).jobs.forget(fit_id, "fit")
    return {"id": job.id, "state": job.state, "removed": True}


router = APIRouter()
router.include_router(_glmm)
router.include_router(models_routes.router)
router.include_router(reports_routes.router)
router.include_router(residuals_routes.router)
