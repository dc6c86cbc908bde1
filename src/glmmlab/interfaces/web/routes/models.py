"""Saved models: save a finished fit, read it (with the fixed effects at any confidence level), its diagnostic
plots, delete it, and add its tables or plots to a report. ``GET /api/models`` (the list) lives in catalog.py."""

from __future__ import annotations

import base64
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.options import INTERVAL_OPTIONS
from glmmlab.engine.progress import FitCancelled
from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.services import models, plots, reports, result_view
from glmmlab.services.errors import ServiceError


class SaveBody(BaseModel):
    fit_id: str = Field(description="The id of a finished fit (POST /api/glmm/fits).")
    name: str = Field(description="Model Name.")


class ToReportBody(BaseModel):
    report_id: Optional[int] = Field(None, description="Default: the newest report (one is created if none).")
    conf_level: Optional[float] = Field(None, description="Level of the fixed-effects intervals; default: saved.")


class IntervalsBody(BaseModel):
    method: str = Field("profile", description="Interval Method: wald, profile or boot.")
    conf_level: Optional[float] = Field(None, description="Confidence level; default: the model's saved level.")
    nsim: int = Field(INTERVAL_OPTIONS["nsim"].default, description="Bootstrap Samples (method boot).")
    seed: Optional[int] = Field(None, description="Random Seed of the bootstrap (method boot).")


@dataclass
class IntervalJob:
    """Confidence intervals of a saved model, computed in the background: the model is refitted on its dataset
    (a saved model keeps JSON only), then profiled or bootstrapped, with progress and cancel."""

    id: str
    model_id: int
    project_key: str
    method: str
    state: str = "queued"
    stage: str = "Waiting to start"
    fraction: float = 0.0
    error: Optional[str] = None
    intervals: Optional[dict[str, Any]] = None
    table: Optional[dict[str, Any]] = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.time)
    finished_at: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model_id": self.model_id, "method": self.method, "state": self.state,
                "stage": self.stage, "fraction": round(self.fraction, 4), "error": self.error,
                "intervals": self.intervals, "table": self.table,
                "elapsed_seconds": round((self.finished_at or time.time()) - self.started_at, 3)}


_INTERVAL_LOCK = threading.Lock()


def interval_jobs(request: Request) -> dict[str, IntervalJob]:
    state = request.app.state
    with _INTERVAL_LOCK:
        if not hasattr(state, "interval_jobs"):
            state.interval_jobs = {}
        return state.interval_jobs


def _interval_job(request: Request, model_id: int, job_id: str) -> IntervalJob:
    job = interval_jobs(request).get(job_id)
    if job is None or job.model_id != model_id:
        raise ServiceError(f"There is no interval computation '{job_id}' for model {model_id}.")
    return job


def _interval_field_error(name: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "message": message, "field": name}, status_code=422)


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


def make_router(fit_jobs: Callable[[Request], Any]) -> APIRouter:
    router = APIRouter(prefix="/api/models", tags=["models"])

    @router.post("", status_code=201, summary="Save a finished fit as a model, with its diagnostics dataset")
    def save(body: SaveBody, request: Request):
        job = fit_jobs(request).get(body.fit_id)
        if job.state != "done" or job.result is None:
            raise ServiceError("Only a finished fit can be saved; this one is " + job.state + ".")
        if not body.name or not body.name.strip():
            return JSONResponse({"error": "Model Name: give the model a name.", "field": "name"}, status_code=422)
        with workbench(request).project_for(job.project_key, "This fit") as project:
            model = models.save_model(project, body.name, job.dataset_id, job.spec, job.full_result())
        return JSONResponse(jsonable(_summary(model)), status_code=201)

    @router.get("/{model_id}", summary="A saved model: spec, result and the fixed effects at conf_level")
    def get(model_id: int, request: Request, conf_level: Optional[float] = Query(None),
            diagnostics: bool = False) -> dict[str, Any]:
        with workbench(request).project() as project:
            model = models.get_model(project, model_id)
        result = model["result"]
        if not diagnostics:
            result = {k: v for k, v in result.items() if k != "diagnostics"}
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
            project_key = wb.project_key()
        level = model["result"]["model"]["conf_level"] if body.conf_level is None \
            else models.check_conf_level(body.conf_level)
        job = IntervalJob(id=uuid.uuid4().hex[:16], model_id=model["id"], project_key=project_key, method=method)
        jobs = interval_jobs(request)
        with _INTERVAL_LOCK:
            jobs[job.id] = job
            finished = sorted((j for j in jobs.values() if j.finished_at), key=lambda j: j.finished_at or 0.0)
            for old in finished[:-50]:
                jobs.pop(old.id, None)

        def step(lo: float, hi: float):
            def progress(stage: str, fraction: float) -> None:
                if job.cancel.is_set():
                    raise FitCancelled()
                job.stage = stage
                job.fraction = max(job.fraction, lo + (hi - lo) * min(1.0, float(fraction)))
            return progress

        def work() -> None:
            try:
                job.state, job.stage = "running", "Reading data"
                with wb.project_for(job.project_key) as project:
                    refit_share = 0.0 if method == "wald" else 0.1
                    if method == "wald":
                        result = None
                    else:
                        result = models.refit_model(project, model, progress=step(0.0, refit_share))
                if result is None:
                    doc = _wald_document(model["result"], level)
                else:
                    ci = result.conf_int(level=level, method=method, nsim=nsim, seed=seed,
                                         progress=step(refit_share, 1.0))
                    doc = result_view.intervals_document(ci)
                job.intervals, job.table = doc, result_view.intervals_table(doc)
                job.fraction, job.stage, job.state = 1.0, "Done", "done"
            except FitCancelled:
                job.state, job.stage, job.error = "cancelled", "Cancelled", "The computation was cancelled."
            except (GlmmInputError, ServiceError) as exc:
                job.state, job.error = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - the page gets a sentence, the log the traceback
                traceback.print_exc()
                job.state, job.error = "failed", f"The intervals failed unexpectedly ({type(exc).__name__}: {exc})."
            finally:
                job.finished_at = time.time()

        threading.Thread(target=work, name=f"glmmlab-intervals-{job.id}", daemon=True).start()
        return JSONResponse(jsonable(job.to_dict()), status_code=202)

    @router.get("/{model_id}/intervals/{job_id}", summary="An interval computation's state and progress; the table "
                                                          "when done")
    def get_intervals(model_id: int, job_id: str, request: Request) -> dict[str, Any]:
        return jsonable(_interval_job(request, model_id, job_id).to_dict())

    @router.post("/{model_id}/intervals/{job_id}/cancel", summary="Ask an interval computation to stop")
    def cancel_intervals(model_id: int, job_id: str, request: Request) -> dict[str, Any]:
        job = _interval_job(request, model_id, job_id)
        if job.state in ("queued", "running"):
            job.cancel.set()
            job.stage = "Cancelling"
        return jsonable(job.to_dict())

    @router.delete("/{model_id}", summary="Delete a model and its diagnostics dataset")
    def delete(model_id: int, request: Request) -> dict[str, Any]:
        with workbench(request).project() as project:
            return jsonable(models.delete_model(project, model_id))

    @router.get("/{model_id}/diagnostics", summary="The diagnostics dataset and the plots of a model")
    def diagnostics(model_id: int, request: Request) -> dict[str, Any]:
        with workbench(request).project() as project:
            model = models.get_model(project, model_id)
        return {"model_id": model["id"], "name": model["name"], "dataset_id": model["diagnostics_dataset_id"],
                "display_size": list(plots.DISPLAY_SIZE),
                "plots": [{"kind": k, "title": t, "url": f"/api/models/{model['id']}/plots/{k}.png"}
                          for k, t in plots.titles(model["result"]).items()]}

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

    return router


def _wald_document(result: dict[str, Any], level: float) -> dict[str, Any]:
    """The Wald intervals of a saved result (no refit: its estimates and standard errors)."""
    rows = result_view.fixed_effects_at(result, level)
    return {"method": "wald", "level": level,
            "rows": [{"parameter": r["variable"], "lower": r["lower"], "upper": r["upper"]} for r in rows]}


def _target(project, report_id: Optional[int]) -> dict[str, Any]:
    return reports.get_report(project, report_id) if report_id is not None else reports.default_report(project)


def _summary(model: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if k != "result"}
