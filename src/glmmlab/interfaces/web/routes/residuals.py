"""Simulation-based (DHARMa) residuals in the workbench: the tests' table and the two plots of a finished fit (the
GLMM tab's run) or of a saved model (its Diagnostics tab; the model is fitted again on its dataset, as for its
marginal means). Settings come as query parameters: ``n_sim`` (Simulations, default 250), ``seed`` (Random Seed,
default 123) and ``conditional`` (hold the random effects at their fitted modes).

``GET .../simulated-residuals`` answers ``{"settings", "tests", "table", "plots": [{"kind", "title", "url",
"svg_url"}]}``; ``GET .../simulated-residuals/{kind}.{png|svg}`` draws one plot with the same settings;
``POST .../simulated-residuals/report`` adds the table and both plots to a report (body as the other Add to Report
calls: ``report_id`` or ``new_report``; default the newest report)."""

from __future__ import annotations

from typing import Any, Callable, Optional
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.routes.models import ToReportBody, report_target
from glmmlab.services.workbench import fit_analyses, models, plots, reports

router = APIRouter(tags=["glmm"])


def _answer(base: str, fitted: Callable[[], Any], n_sim: Optional[str], seed: Optional[str],
            conditional: Optional[str]) -> dict[str, Any]:
    n, s, cond = plots.simulation_settings(n_sim, seed, conditional)
    view = plots.simulated_view(plots.simulated(fitted(), n, s, cond))
    query = urlencode({"n_sim": n, "seed": s, "conditional": str(cond).lower()})
    view["plots"] = [{"kind": k, "title": t, "url": f"{base}/{k}.png?{query}", "svg_url": f"{base}/{k}.svg?{query}"}
                     for k, t in plots.SIMULATED_PLOTS.items()]
    return jsonable(view)


def _image(fitted: Callable[[], Any], kind: str, fmt: str, name: str, n_sim: Optional[str], seed: Optional[str],
           conditional: Optional[str]) -> Response:
    n, s, cond = plots.simulation_settings(n_sim, seed, conditional)
    data = plots.simulated_png(plots.simulated(fitted(), n, s, cond), kind, name, fmt)
    return Response(data, media_type="image/svg+xml" if fmt == "svg" else "image/png",
                    headers={"Cache-Control": "no-store"})


def _to_report(request: Request, fitted: Callable[[], Any], name: str, owner: str, body: Optional[ToReportBody],
               n_sim: Optional[str], seed: Optional[str], conditional: Optional[str]) -> Any:
    n, s, cond = plots.simulation_settings(n_sim, seed, conditional)
    items = plots.simulated_report_items(plots.simulated(fitted(), n, s, cond), name, owner)
    with workbench(request).project() as project:
        report = report_target(project, body or ToReportBody())
        if isinstance(report, JSONResponse):
            return report
        return jsonable(reports.add_items(project, report["id"], items))


def _fit_of_job(request: Request, fit_id: str) -> Callable[[], Any]:
    wb = workbench(request)
    job = wb.jobs.get(fit_id, "fit")
    key = job.kept.get("project_key") or wb.project_key()
    return lambda: fit_analyses.fit_result_of_job(job, lambda: wb.project_for(key))


def _saved(request: Request, model_id: int) -> tuple[Callable[[], Any], str]:
    wb = workbench(request)
    with wb.project() as project:
        name = models.get_model(project, model_id)["name"]

    def fitted() -> Any:
        with wb.project() as project:
            return fit_analyses.saved_fit(project, models.get_model(project, model_id), wb.project_key())

    return fitted, name


@router.get("/api/glmm/fits/{fit_id}/simulated-residuals",
            summary="Simulated (DHARMa) residuals of a finished fit: tests and plot urls")
def fit_simulated(fit_id: str, request: Request, n_sim: Optional[str] = None, seed: Optional[str] = None,
                  conditional: Optional[str] = None) -> dict[str, Any]:
    return _answer(f"/api/glmm/fits/{fit_id}/simulated-residuals", _fit_of_job(request, fit_id), n_sim, seed,
                   conditional)


@router.get("/api/glmm/fits/{fit_id}/simulated-residuals/{kind}.{fmt}", response_class=Response,
            summary="A plot of the simulated residuals of a finished fit (PNG or SVG)",
            responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}})
def fit_simulated_plot(fit_id: str, kind: str, fmt: str, request: Request, n_sim: Optional[str] = None,
                       seed: Optional[str] = None, conditional: Optional[str] = None):
    return _image(_fit_of_job(request, fit_id), kind, fmt, "", n_sim, seed, conditional)


@router.get("/api/models/{model_id}/simulated-residuals",
            summary="Simulated (DHARMa) residuals of a saved model (fitted again on its dataset): tests and plot urls")
def model_simulated(model_id: int, request: Request, n_sim: Optional[str] = None, seed: Optional[str] = None,
                    conditional: Optional[str] = None) -> dict[str, Any]:
    fitted, _ = _saved(request, model_id)
    return _answer(f"/api/models/{model_id}/simulated-residuals", fitted, n_sim, seed, conditional)


@router.get("/api/models/{model_id}/simulated-residuals/{kind}.{fmt}", response_class=Response,
            summary="A plot of the simulated residuals of a saved model (PNG or SVG)",
            responses={200: {"content": {"image/png": {}, "image/svg+xml": {}}}})
def model_simulated_plot(model_id: int, kind: str, fmt: str, request: Request, n_sim: Optional[str] = None,
                         seed: Optional[str] = None, conditional: Optional[str] = None):
    fitted, name = _saved(request, model_id)
    return _image(fitted, kind, fmt, name, n_sim, seed, conditional)


@router.post("/api/glmm/fits/{fit_id}/simulated-residuals/report",
             summary="Add the simulated residuals' tests and plots of a finished fit to a report")
def fit_simulated_to_report(fit_id: str, request: Request, body: Optional[ToReportBody] = None,
                            n_sim: Optional[str] = None, seed: Optional[str] = None, conditional: Optional[str] = None,
                            name: Optional[str] = None):
    job = workbench(request).jobs.get(fit_id, "fit")
    return _to_report(request, _fit_of_job(request, fit_id), (name or "").strip() or job.label, f"fit:{fit_id}", body,
                      n_sim, seed, conditional)


@router.post("/api/models/{model_id}/simulated-residuals/report",
             summary="Add the simulated residuals' tests and plots of a saved model to a report")
def model_simulated_to_report(model_id: int, request: Request, body: Optional[ToReportBody] = None,
                              n_sim: Optional[str] = None, seed: Optional[str] = None,
                              conditional: Optional[str] = None):
    fitted, name = _saved(request, model_id)
    return _to_report(request, fitted, name, f"model:{model_id}", body, n_sim, seed, conditional)
