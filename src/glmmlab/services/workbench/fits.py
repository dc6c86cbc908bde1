"""Fits for the workbench as background jobs (:mod:`glmmlab.services.workbench.jobs`).

:func:`start_fit` runs a spec checked by :mod:`glmmlab.services.workbench.glmm_form` as a job of kind ``"fit"``: the
random-intercept form by :func:`glmmlab.services.modeling.fitted.fit_columns`, the general form (a formula) by
:func:`glmmlab.services.modeling.fitted.fit_spec` on that formula; both fit on the general engine, as every front
door does. The finished job's result is the fit's JSON document without its per-row diagnostics, which wait on
disk (Parquet) until the fit is saved (:func:`full_result`) or forgotten. :func:`start_intervals` computes the
confidence intervals of a saved model as a job of kind ``"interval"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from glmmlab.engine.model.limits import LIMITS, shorten
from glmmlab.services.modeling.fitted import fit_columns
from glmmlab.services.project import catalogue
from glmmlab.services.project.store import Project
from glmmlab.services.views import result_view
from glmmlab.services.views.jsonable import jsonable
from glmmlab.services.workbench import models
from glmmlab.services.workbench.jobs import Job, JobRunner

MAX_RUNNING = 4  # fits at once; the others wait, queued
KEEP = 50  # finished fits kept in memory (their diagnostics on disk)


def runner_limits() -> dict[str, Any]:
    """What a :class:`JobRunner` serving fits is made with."""
    return {"limits": {"fit": MAX_RUNNING, "interval": LIMITS.interval_jobs}, "keep": {"fit": KEEP, "interval": KEEP}}


def fit_label(spec: dict[str, Any], dataset_name: str) -> str:
    if spec.get("formula"):
        return f"{shorten(spec['formula'])} on {dataset_name}"
    return f"{spec['response']} ~ {' + '.join(spec['fixed']) or '1'} + (1 | {spec['group']}) on {dataset_name}"


KEEP_FIT_ROWS = 1_000_000  # a finished fit up to this many rows stays in memory for its marginal means


def start_fit(runner: JobRunner, open_project: Callable[[], ContextManager[Project]], info: Any,
              spec: dict[str, Any], place: Callable[[str], Path], discard: Callable[[Path], None],
              project_key: str = "") -> Job:
    """Run the checked ``spec`` on dataset ``info`` as a background job (kind ``"fit"``).

    ``open_project()`` gives the project the fit belongs to (or refuses when another one is open now); ``place``
    gives a path for the per-row diagnostics file and ``discard`` removes it when the job is forgotten.
    """
    general = bool(spec.get("formula"))

    def work(job: Job) -> dict[str, Any]:
        job.report("Reading data", 0.0)
        with open_project() as project:
            frame = catalogue.read_frame(project, info.id, models.spec_columns(spec))
            dtypes = models.column_types(project, info.id, list(frame.columns))
        job.kept["data_fingerprint"] = models.data_fingerprint(frame, dtypes)
        job.check_cancelled()
        if general:
            result = models.fit_form(frame, spec, progress=job.report)
        else:
            result = fit_columns(
                frame, spec["response"], spec["group"], spec["fixed"], family=spec["family"],
                link=spec["link"], intercept=spec["intercept"], conf_level=spec["conf_level"],
                max_iter=spec["max_iter"], tol=spec["tol"], nagq=spec["nagq"], ddf=spec.get("ddf", "none"),
                **({"dispersion": spec["dispersion"]} if spec.get("dispersion") else {}), progress=job.report)
        document = jsonable(result.to_dict())
        if result.n_obs <= KEEP_FIT_ROWS:  # marginal means and effect plots of this fit without a refit
            job.kept["fit"] = result
        del result  # otherwise the arrays of the fit go now; the per-row diagnostics go to disk
        return _keep_diagnostics(job, document, place)

    def attach(job: Job) -> None:
        job.kept["project_key"] = project_key
        job.on_forget = lambda: _forget_diagnostics(job, discard)

    return runner.start("fit", fit_label(spec, info.name), work, info={"dataset_id": info.id, "spec": spec},
                        before_start=attach)


def _keep_diagnostics(job: Job, document: dict[str, Any], place: Callable[[str], Path]) -> dict[str, Any]:
    """The document without its per-row diagnostics, which go to a Parquet file at ``place(name)``."""
    diagnostics = document.pop("diagnostics", None)
    if diagnostics:
        path = place(f"fit-{job.id}.parquet")
        pq.write_table(pa.table({k: pa.array(v) for k, v in diagnostics.items()}), path)
        job.kept["diagnostics_path"] = path
    return document


def _forget_diagnostics(job: Job, discard: Callable[[Path], None]) -> None:
    path = job.kept.pop("diagnostics_path", None)
    if path is not None:
        discard(path)


def full_result(job: Job) -> Optional[dict[str, Any]]:
    """A finished fit's document with its per-row diagnostics, read back from disk."""
    if job.result is None:
        return None
    path = job.kept.get("diagnostics_path")
    if path is None:
        return job.result
    table = pq.read_table(path)
    return {**job.result, "diagnostics": {name: table.column(name).to_pylist() for name in table.column_names}}


def fit_view(job: Job, diagnostics: bool = False) -> dict[str, Any]:
    """A fit job as the page polls it: state, stage and fraction, and when done the result and its ``display``
    (:func:`glmmlab.services.views.result_view.view`)."""
    out = job.to_dict()
    if diagnostics:
        out["result"] = full_result(job)
    out["display"] = result_view.view(job.result) if job.result else None
    return out


# -- confidence intervals of a saved model: a job too (a saved model keeps JSON only, so it is fitted again) --------

def start_intervals(runner: JobRunner, open_project: Callable[[], ContextManager[Project]], model: dict[str, Any],
                    method: str, level: float, nsim: int, seed: Optional[int]) -> Job:
    """Wald intervals from the saved estimates, or profile/bootstrap intervals of the model fitted again on its
    dataset, as a background job (kind ``"interval"``) with progress and cancel."""

    def work(job: Job) -> dict[str, Any]:
        job.report("Reading data", 0.0)
        if method == "wald":
            doc = wald_document(model["result"], level)
        else:
            refit_share = 0.1
            with open_project() as project:
                result = models.refit_model(project, model, progress=_share(job, 0.0, refit_share))
            ci = result.conf_int(level=level, method=method, nsim=nsim, seed=seed,
                                 progress=_share(job, refit_share, 1.0))
            doc = result_view.intervals_document(ci)
        return {"intervals": doc,
                "table": result_view.intervals_table(doc, (model["result"].get("model") or {}).get("family"))}

    return runner.start("interval", f"{method} intervals of {model['name']}", work,
                        info={"model_id": model["id"], "method": method})


def _share(job: Job, lo: float, hi: float) -> Callable[[str, float], None]:
    """A progress callback that maps a step's own 0..1 onto ``lo``..``hi`` of the job."""
    return lambda stage, fraction: job.report(stage, lo + (hi - lo) * min(1.0, float(fraction)))


def intervals_view(job: Job) -> dict[str, Any]:
    """An interval job as the page polls it: with ``intervals`` and ``table`` when done."""
    out = {k: v for k, v in job.to_dict().items() if k != "result"}
    out.update(intervals=(job.result or {}).get("intervals"), table=(job.result or {}).get("table"))
    return out


def wald_document(result: dict[str, Any], level: float) -> dict[str, Any]:
    """The Wald intervals of a saved result (no refit: its estimates and standard errors)."""
    rows = result_view.fixed_effects_at(result, level)
    return {"method": "wald", "level": level,
            "rows": [{"parameter": r["variable"], "lower": r["lower"], "upper": r["upper"]} for r in rows]}

