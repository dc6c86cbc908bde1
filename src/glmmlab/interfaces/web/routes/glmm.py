"""The GLMM tab's API: form options, background fits with progress and cancel, and (included from here) saved
models and reports.

A fit is a job: ``POST /api/glmm/fits`` checks the form (answering 422 with ``field`` naming the control when a
choice is invalid), then runs ``glmmlab.fit_glmm`` (the product page's random-intercept form) or, when the body
carries a ``formula`` (the general form: the Model section or a typed "Model formula"), ``fit_spec`` with a
:class:`glmmlab.ModelSpec`, in a thread pool; ``POST /api/glmm/formula`` checks a formula against the dataset with
the model frame builder before anything runs; poll ``GET /api/glmm/fits/{id}`` for ``state``
(queued, running, done, failed, cancelled), ``stage`` and ``fraction``; ``POST /api/glmm/fits/{id}/cancel`` stops
it. A finished fit is saved with ``POST /api/models`` (``{"fit_id", "name"}``).
"""

from __future__ import annotations

import math
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import glmmlab
from glmmlab.engine.families import FAMILIES as ALL_FAMILIES
from glmmlab.engine.options import OPTIONS
from glmmlab.engine.progress import FitCancelled
from glmmlab.interfaces.web.deps import workbench
from glmmlab.interfaces.web.encode import jsonable
from glmmlab.interfaces.web.routes import models as models_routes
from glmmlab.interfaces.web.routes import reports as reports_routes
from glmmlab.services import datasets, model_form, models, result_view
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.modelframe import build_model_frame

# The simple form offers the families of the product page; the general form (a formula) adds the negative
# binomial (issue 11).
FAMILIES = {k: v for k, v in ALL_FAMILIES.items() if k != "negbin"}
GENERAL_FAMILIES = dict(ALL_FAMILIES)

# The GLMM tab offers the families of the product page; the negative binomial comes to the form with the general
# model form (issue 11), until then through the command line and Python.
FAMILIES = {k: v for k, v in ALL_FAMILIES.items() if k != "negbin"}

_glmm = APIRouter(prefix="/api/glmm", tags=["glmm"])
scripts = ["glmm.js"]
styles = ["glmm.css"]

MAX_WORKERS = 4
FIELD_LABELS = {"dataset_id": "Dataset", "response": "Response Variable (Y)", "fixed": "Fixed Effects (X)",
                "group": "Group Variable (Random Intercept)", "family": "Distribution Family",
                "link": "Link Function", "conf_level": "Confidence Level", "max_iter": "Max Iterations",
                "tol": "Convergence Tolerance", "nagq": "Quadrature nodes", "name": "Model Name",
                "formula": "Model formula", "weights": "Weights", "offset": "Offset", "trials": "Trials",
                "reference_levels": "Reference level"}


class FitBody(BaseModel):
    dataset_id: Any = Field(description="The dataset to analyse.")
    response: Optional[str] = Field(None, description="Response Variable (Y): a numeric column.")
    fixed: list[str] = Field(default_factory=list, description="Fixed Effects (X): numeric columns.")
    group: Optional[str] = Field(None, description="Group Variable (Random Intercept): nominal, ordinal or string.")
    family: str = Field("gaussian", description="gaussian, binomial, poisson or gamma.")
    link: Optional[str] = Field(None, description="Default: the family's canonical link.")
    intercept: bool = True
    conf_level: Any = Field(0.95, description="A fraction between 0.5 and 0.9999 (the form shows percent).")
    max_iter: Any = 100
    tol: Any = 1e-6
    nagq: Any = 1
    formula: Optional[str] = Field(None, description="Model formula (lme4's language). When given, it is the model: "
                                                     "response, fixed and group are not used.")
    weights: Optional[str] = Field(None, description="Weights: a numeric column of prior weights (with a formula).")
    reference_levels: Optional[dict[str, str]] = Field(
        None, description="Reference level per factor column (with a formula), e.g. {\"f\": \"b\"}: R's relevel.")


class FormulaBody(BaseModel):
    dataset_id: Any = Field(description="The dataset the formula is checked against.")
    formula: Optional[str] = None
    family: str = "gaussian"
    weights: Optional[str] = None
    reference_levels: Optional[dict[str, str]] = None


class FieldError(ServiceError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class FitJob:
    id: str
    label: str
    dataset_id: int
    spec: dict[str, Any]
    project_key: str = ""  # the project the fit belongs to (Workbench.project_key); only it may read or save it
    diagnostics_path: Optional[Path] = None  # the per-row diagnostics, kept on disk (Parquet), not in memory
    discard: Optional[Callable[[Path], None]] = None
    state: str = "queued"
    stage: str = "Waiting to start"
    fraction: float = 0.0
    error: Optional[str] = None
    result: Optional[dict[str, Any]] = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.time)
    finished_at: Optional[float] = None

    def full_result(self) -> Optional[dict[str, Any]]:
        """The result with its per-row diagnostics, read back from disk."""
        if self.result is None:
            return None
        if self.diagnostics_path is None:
            return self.result
        table = pq.read_table(self.diagnostics_path)
        return {**self.result, "diagnostics": {name: table.column(name).to_pylist() for name in table.column_names}}

    def keep_result(self, result: dict[str, Any], place: Callable[[str], Path]) -> None:
        """Keep ``result`` without its per-row diagnostics, which go to a Parquet file at ``place(name)``."""
        diagnostics = result.pop("diagnostics", None)
        if diagnostics:
            path = place(f"fit-{self.id}.parquet")
            pq.write_table(pa.table({k: pa.array(v) for k, v in diagnostics.items()}), path)
            self.diagnostics_path = path
        self.result = result

    def forget(self) -> None:
        if self.diagnostics_path is not None and self.discard is not None:
            self.discard(self.diagnostics_path)
            self.diagnostics_path = None

    def to_dict(self, diagnostics: bool = False) -> dict[str, Any]:
        result = self.full_result() if diagnostics else self.result
        return {"id": self.id, "kind": "glmm", "label": self.label, "state": self.state, "stage": self.stage,
                "phase": self.stage, "fraction": round(self.fraction, 4), "error": self.error,
                "dataset_id": self.dataset_id, "spec": self.spec, "result": result,
                "display": display(self.result) if self.result else None,
                "elapsed_seconds": round((self.finished_at or time.time()) - self.started_at, 3)}


class FitJobs:
    """The fits of one app: at most MAX_WORKERS run at once (the rest wait, queued), each in a daemon thread so a
    long fit never holds up the server's shutdown."""

    def __init__(self) -> None:
        self.slots = threading.BoundedSemaphore(MAX_WORKERS)
        self.jobs: dict[str, FitJob] = {}
        self.lock = threading.Lock()

    def get(self, job_id: str) -> FitJob:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"There is no fit '{job_id}'; fits are kept in memory until the server stops.")
        return job

    def add(self, job: FitJob) -> None:
        with self.lock:
            self.jobs[job.id] = job
            finished = sorted((j for j in self.jobs.values() if j.finished_at), key=lambda j: j.finished_at or 0.0)
            for old in finished[:-50]:
                self.jobs.pop(old.id, None)
                old.forget()


def fit_jobs(request: Request) -> FitJobs:
    state = request.app.state
    with _JOBS_LOCK:
        if not hasattr(state, "glmm_fits"):
            state.glmm_fits = FitJobs()
        return state.glmm_fits


_JOBS_LOCK = threading.Lock()


def display(result: dict[str, Any], conf_level: float | None = None) -> dict[str, Any]:
    """What the page shows for a result: labels, warnings and every table, numbers already written
    (:func:`glmmlab.services.result_view.view`)."""
    return result_view.view(result, conf_level)


def _number(value: Any, field: str, kind=float) -> Any:
    try:
        x = kind(value)
        if isinstance(value, bool) or (isinstance(x, float) and not math.isfinite(x)):
            raise ValueError
        if kind is int and float(value) != int(value):
            raise ValueError
        return x
    except (TypeError, ValueError, OverflowError):
        raise FieldError(field, f"{FIELD_LABELS[field]} must be {'a whole number' if kind is int else 'a number'}; "
                                f"got {value!r}.") from None


def check_form(project, body: FitBody) -> tuple[Any, dict[str, Any]]:
    """Check the form against the dataset; returns (dataset info, fit spec) or raises FieldError."""
    if body.formula is not None:
        return check_general_form(project, body)
    info = _dataset(project, body.dataset_id)
    cols = {c.name: c for c in info.columns}
    if not body.response:
        raise FieldError("response", "Choose a Response Variable (Y).")
    if body.response not in cols:
        raise FieldError("response", f"Dataset '{info.name}' has no column '{body.response}'.")
    family = str(body.family or "").lower()
    if cols[body.response].dtype == "boolean":
        if family != "binomial":
            raise FieldError("response", f"'{body.response}' is boolean: it can be the response of the Binomial "
                                         "family (true = 1, false = 0); choose Binomial (Logistic).")
    elif not cols[body.response].numeric:
        raise FieldError("response", f"Response Variable (Y) must be numeric or boolean; '{body.response}' is "
                                     f"{cols[body.response].dtype}. Only numeric columns are available.")
    if len(set(body.fixed)) != len(body.fixed):
        raise FieldError("fixed", "Each Fixed Effects (X) column can be chosen once.")
    for f in body.fixed:
        if f not in cols:
            raise FieldError("fixed", f"Dataset '{info.name}' has no column '{f}'.")
        if not cols[f].numeric:
            raise FieldError("fixed", f"Fixed Effects (X) must be numeric; '{f}' is {cols[f].dtype}. "
                                      "Convert categorical columns with Data > Dummy Coding first.")
    if body.response in body.fixed:
        raise FieldError("fixed", f"'{body.response}' is the Response Variable (Y); it cannot also be a fixed effect.")
    if not body.group:
        raise FieldError("group", "Choose a Group Variable (Random Intercept): a GLMM needs groups.")
    if body.group not in cols:
        raise FieldError("group", f"Dataset '{info.name}' has no column '{body.group}'.")
    if not cols[body.group].categorical:
        raise FieldError("group", f"The Group Variable must be a nominal, ordinal or string column; '{body.group}' "
                                  f"is {cols[body.group].dtype} · {cols[body.group].scale}. Set its scale to nominal "
                                  "in the dataset tab to use it.")
    if body.group == body.response or body.group in body.fixed:
        raise FieldError("group", f"'{body.group}' is already the response or a fixed effect.")
    if not body.intercept and not body.fixed:
        raise FieldError("fixed", "Without an intercept, choose at least one Fixed Effects (X) column.")
    family, link, options = check_options(body, FAMILIES)
    spec = {"response": body.response, "fixed": list(body.fixed), "group": body.group, "family": family,
            "link": link, "intercept": bool(body.intercept), **options}
    return info, spec


def check_options(body: FitBody, families: dict) -> tuple[str, str, dict[str, Any]]:
    """The family, link and fit options of the form, checked (FieldError names the control)."""
    family = str(body.family or "").lower()
    if family not in families:
        extra = (" (Negative Binomial is offered with a Model formula: open the Model section or type one)"
                 if family == "negbin" else "")
        raise FieldError("family", f"Distribution Family must be one of {', '.join(families)}; got "
                                   f"{body.family!r}{extra}.")
    links = families[family].links
    link = str(body.link).lower() if body.link else links[0]
    if link not in links:
        raise FieldError("link", f"The {families[family].label} family offers the links {', '.join(links)}; "
                                 f"not {body.link!r}.")
    # the limits are the options' one declaration (glmmlab.engine.options), in the form's words
    lv, it, tl, nq = OPTIONS["conf_level"], OPTIONS["max_iter"], OPTIONS["tol"], OPTIONS["nagq"]
    assert lv.low is not None and lv.high is not None  # a number option has both bounds
    level = _number(body.conf_level, "conf_level")
    if not lv.low <= level <= lv.high:
        raise FieldError("conf_level", f"Confidence Level must be between {lv.low * 100:g} and {lv.high * 100:g} (%); "
                                       f"got {level * 100:g}.")
    max_iter = _number(body.max_iter, "max_iter", int)
    if not it.low <= max_iter <= it.high:
        raise FieldError("max_iter", f"Max Iterations must be between {it.low:g} and {it.high:g}.")
    tol = _number(body.tol, "tol")
    if not tl.low < tol < tl.high:
        raise FieldError("tol", "Convergence Tolerance must be greater than 0 and less than 1 (for example 1e-6).")
    nagq = _number(body.nagq, "nagq", int)
    if not nq.low <= nagq <= nq.high:
        raise FieldError("nagq", f"Quadrature nodes must be between {nq.low:g} and {nq.high:g} (1 is the Laplace "
                                 "approximation).")
    return family, link, {"conf_level": level, "max_iter": max_iter, "tol": tol, "nagq": nagq}


_NAME = re.compile(r"`([^`]+)`|([A-Za-z.][A-Za-z0-9._]*)")


def formula_columns(formula: str, info) -> list[str]:
    """The dataset's columns a formula names (in the dataset's order): all that the model frame needs."""
    named = {a or b for a, b in _NAME.findall(formula)}
    return [c.name for c in info.columns if c.name in named]


def _dataset(project, dataset_id):
    if dataset_id in (None, ""):
        raise FieldError("dataset_id", "Choose a Dataset.")
    try:
        return datasets.get_dataset(project, dataset_id)
    except (NotFound, ServiceError):
        raise FieldError("dataset_id", f"There is no dataset {dataset_id!r}; choose one from the list.") from None


def check_formula(project, info, formula: Optional[str], family: str, weights: Optional[str],
                  reference_levels: Optional[dict[str, str]] = None):
    """Build the formula's model frame on the dataset (the fit's own builder): the model frame, or FieldError
    naming the Model formula (or the Weights column) with the builder's explanation."""
    text = (formula or "").strip()
    if not text:
        raise FieldError("formula", "Type a Model formula such as y ~ x + (1 | g), or build one with the form.")
    cols = {c.name: c for c in info.columns}
    if weights:
        if weights not in cols:
            raise FieldError("weights", f"Dataset '{info.name}' has no column '{weights}'.")
        if not cols[weights].numeric:
            raise FieldError("weights", f"Weights must be a numeric column; '{weights}' is {cols[weights].dtype}.")
    names = list(dict.fromkeys(formula_columns(text, info) + ([weights] if weights else [])))
    frame = datasets.read_frame(project, info.id, names) if names else pd.DataFrame(index=range(info.n_rows))
    try:
        return build_model_frame(frame, text, family=family, weights=weights or None,
                                 reference_levels=reference_levels or None), names
    except glmmlab.GlmmInputError as exc:
        message = str(exc)
        field = "weights" if weights and message.startswith("weights") else \
            "reference_levels" if message.startswith("reference_levels") else "formula"
        raise FieldError(field, message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")) from None


def check_general_form(project, body: FitBody) -> tuple[Any, dict[str, Any]]:
    """The general form (a formula): dataset, family and options, then the formula on the data."""
    info = _dataset(project, body.dataset_id)
    family, link, options = check_options(body, GENERAL_FAMILIES)
    weights = (body.weights or "").strip() or None
    mf, columns = check_formula(project, info, body.formula, family, weights, body.reference_levels)
    spec = {"formula": (body.formula or "").strip(), "response": mf.response, "fixed": None, "group": None,
            "family": family, "link": link, "intercept": bool(mf.intercept), "weights": weights,
            "reference_levels": body.reference_levels or None, "columns": columns, **options}
    return info, spec


def field_error(exc: FieldError) -> JSONResponse:
    return JSONResponse({"error": f"{FIELD_LABELS.get(exc.field, exc.field)}: {exc}", "field": exc.field,
                         "message": str(exc)}, status_code=422)


@_glmm.get("/options", summary="Families, their links (canonical first) and the form's defaults")
def options() -> dict[str, Any]:
    """``families`` are the simple form's; ``general_families`` add those offered with a Model formula."""
    return {"families": [{"value": k, "label": f.label, "links": list(f.links), "canonical_link": f.links[0]}
                         for k, f in FAMILIES.items()],
            "general_families": [{"value": k, "label": f.label, "links": list(f.links),
                                  "canonical_link": f.links[0]} for k, f in GENERAL_FAMILIES.items()],
            "defaults": {"intercept": True} | {o.name: o.default for o in OPTIONS.values()
                                               if o.name in ("family", "conf_level", "max_iter", "tol", "nagq")},
            "conf_level_range": [OPTIONS["conf_level"].low, OPTIONS["conf_level"].high],
            "limits": {o.name: {"low": o.low, "high": o.high, "label": o.label, "rule": o.rule()}
                       for o in OPTIONS.values() if o.kind in ("int", "float")}}


@_glmm.post("/formula", summary="Check a Model formula against a dataset before anything runs")
def check_formula_route(body: FormulaBody, request: Request):
    """200 with the formula's response, fixed-effect columns and random terms, its factors (levels and reference),
    its ``signature`` and ``form`` (how the form's controls express it; null with ``not_form`` saying why, see
    :mod:`glmmlab.services.model_form`), or 422 with ``field`` (formula, weights, reference_levels, family or
    dataset_id) and a sentence explaining what is wrong."""
    wb = workbench(request)
    try:
        with wb.project() as project:
            info = _dataset(project, body.dataset_id)
            family = str(body.family or "").lower()
            if family not in GENERAL_FAMILIES:
                raise FieldError("family", f"Distribution Family must be one of {', '.join(GENERAL_FAMILIES)}; "
                                           f"got {body.family!r}.")
            mf, _ = check_formula(project, info, body.formula, family, (body.weights or "").strip() or None,
                                  body.reference_levels)
    except FieldError as exc:
        return field_error(exc)
    assert mf.recipe is not None  # build_model_frame always records one
    parsed = mf.recipe.formula
    form, why = model_form.form_of(parsed, mf, info.columns, family)
    return {"ok": True, "formula": (body.formula or "").strip(), "response": mf.response, "n_obs": int(mf.n),
            "n_excluded": int(mf.n_input - mf.n), "fixed_effects": list(mf.x_names),
            "random_terms": [{"component": t.component, "terms": list(t.names), "levels": len(t.levels),
                              "correlated": bool(t.correlated)} for t in mf.terms],
            "warnings": list(mf.warnings), "factors": model_form.factor_levels(mf),
            "signature": model_form.signature(parsed), "form": form, "not_form": why}


@_glmm.post("/fits", status_code=202, summary="Check the form and start a fit in the background")
def start_fit(body: FitBody, request: Request):
    wb = workbench(request)
    try:
        with wb.project() as project:
            info, spec = check_form(project, body)
            project_key = wb.project_key()
    except FieldError as exc:
        return field_error(exc)
    jobs = fit_jobs(request)
    if spec.get("formula"):
        label = f"{spec['formula']} on {info.name}"
    else:
        label = f"{spec['response']} ~ {' + '.join(spec['fixed']) or '1'} + (1 | {spec['group']}) on {info.name}"
    job = FitJob(id=uuid.uuid4().hex[:16], label=label, dataset_id=info.id, spec=spec, project_key=project_key,
                 discard=wb.discard_upload)
    jobs.add(job)

    def progress(stage: str, fraction: float) -> None:
        if job.cancel.is_set():
            raise FitCancelled()
        job.stage = stage
        job.fraction = max(job.fraction, min(1.0, float(fraction)))

    def run() -> None:
        with jobs.slots:
            work()

    def work() -> None:
        try:
            if job.cancel.is_set():
                raise FitCancelled()
            job.state = "running"
            job.stage = "Reading data"
            general = bool(spec.get("formula"))
            with wb.project_for(job.project_key) as project:
                frame = datasets.read_frame(project, info.id, models.spec_columns(spec))
            if job.cancel.is_set():
                raise FitCancelled()
            if general:
                result = models.fit_form(frame, spec, progress=progress)
            else:
                result = glmmlab.fit_glmm(
                    frame, spec["response"], spec["group"], spec["fixed"], family=spec["family"],
                    link=spec["link"], intercept=spec["intercept"], conf_level=spec["conf_level"],
                    max_iter=spec["max_iter"], tol=spec["tol"], nagq=spec["nagq"], progress=progress)
            document = jsonable(result.to_dict())
            del result  # the arrays of the fit go now; the per-row diagnostics go to disk
            job.keep_result(document, wb.new_upload_path)
            job.fraction, job.stage, job.state = 1.0, "Done", "done"
        except FitCancelled:
            job.state, job.stage, job.error = "cancelled", "Cancelled", "The fit was cancelled."
        except (glmmlab.GlmmInputError, ServiceError) as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - the page gets a sentence, the log the traceback
            traceback.print_exc()
            job.state, job.error = "failed", f"The fit failed unexpectedly ({exc.__class__.__name__}: {exc})."
        finally:
            job.finished_at = time.time()

    threading.Thread(target=run, name=f"glmmlab-fit-{job.id}", daemon=True).start()
    return JSONResponse(job.to_dict(), status_code=202)


@_glmm.get("/fits", summary="Fits of this session, newest first (without results)")
def list_fits(request: Request) -> dict[str, Any]:
    jobs = fit_jobs(request)
    with jobs.lock:
        items = sorted(jobs.jobs.values(), key=lambda j: -j.started_at)
    return {"fits": [{k: v for k, v in j.to_dict().items() if k not in ("result", "display")} for j in items]}


@_glmm.get("/fits/{fit_id}", summary="A fit's state, stage and progress; with the result when done")
def get_fit(fit_id: str, request: Request, diagnostics: bool = False) -> dict[str, Any]:
    return fit_jobs(request).get(fit_id).to_dict(diagnostics=diagnostics)


@_glmm.post("/fits/{fit_id}/cancel", summary="Ask a running fit to stop (it stops at its next progress report)")
def cancel_fit(fit_id: str, request: Request) -> dict[str, Any]:
    job = fit_jobs(request).get(fit_id)
    if job.state in ("queued", "running"):
        job.cancel.set()
        job.stage = "Cancelling"
    return job.to_dict()


router = APIRouter()
router.include_router(_glmm)
router.include_router(models_routes.make_router(fit_jobs))
router.include_router(reports_routes.router)
