"""Fits for the workbench: the GLMM form's checks, the form's options, and fits run as background jobs.

The form comes as a plain dict (the web app's body). :func:`check_form` checks it against the dataset and returns
the fit's ``spec`` or raises :class:`FieldError` naming the control; the random-intercept form (``response``,
``fixed``, ``group``) runs :func:`glmmlab.services.modeling.fitted.fit_columns` (``y ~ x + (1 | g)`` as the product
page describes it), and the general form (a ``formula``: the roles and builders' formula or a typed "Model formula")
:func:`glmmlab.services.modeling.fitted.fit_spec` on that formula; both fit on the general engine, as every front door
does.
:func:`start_fit` runs a checked spec as a job of :mod:`glmmlab.services.workbench.jobs` (kind ``"fit"``); the finished
job's result is the fit's JSON document without its per-row diagnostics, which wait on disk (Parquet) until the
fit is saved (:func:`full_result`) or forgotten.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, ContextManager, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import FAMILIES as ALL_FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.formula import parse_formula
from glmmlab.engine.model.limits import LIMITS, shorten
from glmmlab.engine.model.options import OPTIONS
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.modeling import marginal
from glmmlab.services.modeling.fitted import fit_columns
from glmmlab.services.modeling.modelframe import build_model_frame
from glmmlab.services.project import catalogue
from glmmlab.services.project.store import Project
from glmmlab.services.views import result_view
from glmmlab.services.views.jsonable import jsonable
from glmmlab.services.workbench import model_form, models
from glmmlab.services.workbench.jobs import Job, JobRunner

# The simple form offers the families of the product page; the general form (a formula) adds those with parameters
# of their own: the negative binomial (issue 11) and glmmTMB's families (issue 20).
FAMILIES = {k: v for k, v in ALL_FAMILIES.items() if not v.parameter_names and k != "ordinal"}  # the simple form's
GENERAL_FAMILIES = dict(ALL_FAMILIES)
MAX_RUNNING = 4  # fits at once; the others wait, queued
KEEP = 50  # finished fits kept in memory (their diagnostics on disk)

FIELD_LABELS = {"dataset_id": "Dataset", "response": "Response Variable (Y)", "fixed": "Fixed Effects (X)",
                "group": "Group Variable (Random Intercept)", "family": "Distribution Family",
                "link": "Link Function", "conf_level": "Confidence Level", "max_iter": "Max Iterations",
                "tol": "Convergence Tolerance", "nagq": "Quadrature nodes", "name": "Model Name",
                "formula": "Model formula", "weights": "Weights", "offset": "Offset", "trials": "Trials",
                "reference_levels": "Reference level", "ddf": "Fixed-effect tests", "dispersion": "Dispersion",
                "levels": "Category order"}


class FieldError(ServiceError):
    """A choice of the form that cannot be used; ``field`` names the control."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field)


class Form:
    """The GLMM form's values (a dict from the page) with the defaults of the options."""

    def __init__(self, body: dict[str, Any]):
        self.dataset_id = body.get("dataset_id")
        self.response: Optional[str] = body.get("response")
        self.fixed: list[str] = list(body.get("fixed") or [])
        self.group: Optional[str] = body.get("group")
        self.family: str = body.get("family") or "gaussian"
        self.link: Optional[str] = body.get("link")
        self.intercept = bool(body.get("intercept", True))
        self.conf_level = body.get("conf_level", 0.95)
        self.max_iter = body.get("max_iter", 100)
        self.tol = body.get("tol", 1e-6)
        self.nagq = body.get("nagq", 1)
        self.ddf = body.get("ddf") or "auto"
        self.dispersion = body.get("dispersion") or "estimated"
        self.formula: Optional[str] = body.get("formula")
        self.weights: Optional[str] = body.get("weights")
        self.reference_levels: Optional[dict[str, str]] = body.get("reference_levels")
        self.form: Optional[dict[str, Any]] = body.get("form")
        self.levels: Optional[list[Any]] = body.get("levels") or None  # an ordinal response's order


def runner_limits() -> dict[str, Any]:
    """What a :class:`JobRunner` serving fits is made with."""
    return {"limits": {"fit": MAX_RUNNING, "interval": LIMITS.interval_jobs}, "keep": {"fit": KEEP, "interval": KEEP}}


def form_options() -> dict[str, Any]:
    """Families, their links (canonical first), the form's defaults and the options' limits. ``families`` are the
    simple form's; ``general_families`` add those offered with a Model formula."""
    return {"families": [{"value": k, "label": f.label, "links": list(f.links), "canonical_link": f.links[0]}
                         for k, f in FAMILIES.items()],
            "general_families": [{"value": k, "label": f.label, "links": list(f.links),
                                  "canonical_link": f.links[0],
                                  "dispersion_links": [lk for lk in f.links if f.has_dispersion_parameter(LINKS[lk])]}
                                 for k, f in GENERAL_FAMILIES.items()],
            "dispersion": {"choices": list(OPTIONS["dispersion"].choices), "default": OPTIONS["dispersion"].default,
                           "label": OPTIONS["dispersion"].label, "help": OPTIONS["dispersion"].help},
            "defaults": {"intercept": True} | {o.name: o.default for o in OPTIONS.values()
                                               if o.name in ("family", "conf_level", "max_iter", "tol", "nagq")},
            "conf_level_range": [OPTIONS["conf_level"].low, OPTIONS["conf_level"].high],
            "limits": {o.name: {"low": o.low, "high": o.high, "label": o.label, "rule": o.rule()}
                       for o in OPTIONS.values() if o.kind in ("int", "float")}}


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


def check_form(project: Project, body: Form) -> tuple[Any, dict[str, Any]]:
    """Check the form against the dataset; returns (dataset info, fit spec) or raises FieldError. The page's own
    record of the form (``form``: every control, the roles and builders' model) goes into the spec as it is, so a
    saved model can fill the form again."""
    info, spec = check_general_form(project, body) if body.formula is not None else _check_simple_form(project, body)
    if isinstance(body.form, dict):
        spec["form"] = body.form
    return info, spec


def _check_simple_form(project: Project, body: Form) -> tuple[Any, dict[str, Any]]:
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
    # any column can hold the groups (numeric identifiers included): its values are the groups' labels, a factor
    if body.group == body.response or body.group in body.fixed:
        raise FieldError("group", f"'{body.group}' is already the response or a fixed effect.")
    if not body.intercept and not body.fixed:
        raise FieldError("fixed", "Without an intercept, choose at least one Fixed Effects (X) column.")
    family, link, options = check_options(body, FAMILIES)
    spec = {"response": body.response, "fixed": list(body.fixed), "group": body.group, "family": family,
            "link": link, "intercept": bool(body.intercept), **options}
    return info, spec


def check_options(body: Form, families: dict) -> tuple[str, str, dict[str, Any]]:
    """The family, link and fit options of the form, checked (FieldError names the control)."""
    family = str(body.family or "").lower()
    if family not in families:
        extra = (f" ({ALL_FAMILIES[family].label} is fitted from a Model formula: send the formula)"
                 if family in ALL_FAMILIES else "")
        raise FieldError("family", f"Distribution Family must be one of {', '.join(families)}; got "
                                   f"{body.family!r}{extra}.")
    links = families[family].links
    link = str(body.link).lower() if body.link else links[0]
    if link not in links:
        raise FieldError("link", f"The {families[family].label} family offers the links {', '.join(links)}; "
                                 f"not {body.link!r}.")
    # the limits are the options' one declaration (glmmlab.engine.model.options), in the form's words
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
    ddf = str(body.ddf or "auto").strip().lower()
    if ddf not in OPTIONS["ddf"].choices:
        raise FieldError("ddf", f"Fixed-effect tests must be one of {', '.join(OPTIONS['ddf'].choices)}; "
                                f"got {body.ddf!r}.")
    if ddf == "satterthwaite" and (family, link) != ("gaussian", "identity"):
        raise FieldError("ddf", "Satterthwaite t tests are for the Gaussian family with the identity link; choose Wald "
                                "z tests.")
    dispersion = str(body.dispersion or "estimated").strip().lower()
    if dispersion not in OPTIONS["dispersion"].choices:
        raise FieldError("dispersion", f"Dispersion must be one of {', '.join(OPTIONS['dispersion'].choices)}; "
                                       f"got {body.dispersion!r}.")
    options: dict[str, Any] = {"conf_level": level, "max_iter": max_iter, "tol": tol, "nagq": nagq, "ddf": ddf}
    if dispersion != "estimated":
        if not families[family].has_dispersion_parameter(LINKS[link]):
            raise FieldError("dispersion", "Dispersion 'lme4' is for the Gamma family and the Gaussian family with a "
                                           "log or inverse link; this model has no dispersion to estimate.")
        options["dispersion"] = dispersion
    return family, link, options


_NAME = re.compile(r"`([^`]+)`|([A-Za-z.][A-Za-z0-9._]*)")


def formula_columns(formula: str, info) -> list[str]:
    """The dataset's columns a formula names (in the dataset's order): all that the model frame needs."""
    named = {a or b for a, b in _NAME.findall(formula)}
    return [c.name for c in info.columns if c.name in named]


def _dataset(project, dataset_id):
    if dataset_id in (None, ""):
        raise FieldError("dataset_id", "Choose a Dataset.")
    try:
        return catalogue.get_dataset(project, dataset_id)
    except (NotFound, ServiceError):
        raise FieldError("dataset_id", f"There is no dataset {dataset_id!r}; choose one from the list.") from None


def check_formula(project, info, formula: Optional[str], family: str, weights: Optional[str],
                  reference_levels: Optional[dict[str, str]] = None, levels: Optional[list[Any]] = None):
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
    try:
        parse_formula(text)  # the formula's limits (length, nesting, terms) before the data are read
        names = list(dict.fromkeys(formula_columns(text, info) + ([weights] if weights else [])))
        frame = catalogue.read_frame(project, info.id, names) if names else pd.DataFrame(index=range(info.n_rows))
        return build_model_frame(frame, text, family=family, weights=weights or None,
                                 reference_levels=reference_levels or None, response_levels=levels,
                                 known_columns=[c.name for c in info.columns]), names
    except GlmmInputError as exc:
        message = str(exc)
        field = "weights" if weights and message.startswith("weights") else \
            "reference_levels" if message.startswith("reference_levels") else \
            "levels" if message.startswith("levels") else "formula"
        raise FieldError(field, message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")) from None


def check_general_form(project: Project, body: Form) -> tuple[Any, dict[str, Any]]:
    """The general form (a formula): dataset, family and options, then the formula on the data."""
    info = _dataset(project, body.dataset_id)
    family, link, options = check_options(body, GENERAL_FAMILIES)
    weights = (body.weights or "").strip() or None
    mf, columns = check_formula(project, info, body.formula, family, weights, body.reference_levels, body.levels)
    spec = {"formula": (body.formula or "").strip(), "response": mf.response, "fixed": None, "group": None,
            "family": family, "link": link, "intercept": bool(mf.intercept), "weights": weights,
            "reference_levels": body.reference_levels or None, "columns": columns, **options,
            **({"levels": list(body.levels)} if body.levels and family == "ordinal" else {})}
    return info, spec


def check_formula_on(project: Project, dataset_id: Any, formula: Optional[str], family: str,
                     weights: Optional[str], reference_levels: Optional[dict[str, str]] = None,
                     levels: Optional[list[Any]] = None) -> dict[str, Any]:
    """The "Model formula" check before anything runs: the formula's response, fixed-effect columns and random
    terms on the dataset, its factors (levels and reference), its ``signature`` and ``form`` (how the form's
    controls express it; None with ``not_form`` saying why, see :mod:`glmmlab.services.workbench.model_form`), or
    FieldError (formula, weights, reference_levels, family or dataset_id)."""
    info = _dataset(project, dataset_id)
    family = str(family or "").lower()
    if family not in GENERAL_FAMILIES:
        raise FieldError("family", f"Distribution Family must be one of {', '.join(GENERAL_FAMILIES)}; "
                                   f"got {family!r}.")
    mf, _ = check_formula(project, info, formula, family, (weights or "").strip() or None, reference_levels,
                          levels if family == "ordinal" else None)
    assert mf.recipe is not None  # build_model_frame always records one
    parsed = mf.recipe.formula
    form, why = model_form.form_of(parsed, mf, info.columns, family)
    return {"ok": True, "formula": (formula or "").strip(), "response": mf.response, "n_obs": int(mf.n),
            "n_excluded": int(mf.n_input - mf.n), "fixed_effects": list(mf.x_names),
            "random_terms": [{"component": t.component, "terms": list(t.names), "levels": len(t.levels),
                              "correlated": bool(t.correlated)} for t in mf.terms],
            "warnings": list(mf.warnings), "factors": model_form.factor_levels(mf),
            "signature": model_form.signature(parsed), "form": form, "not_form": why,
            # an ordinal response's categories in the order the fit uses (the page shows them and may reorder)
            **({"response_levels": list(mf.recipe.response_levels)} if mf.recipe.response_levels else {})}


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


# -- omnibus tests, marginal means, pairwise comparisons and effect plots of a fit or a saved model ----------------
_REFITS: dict[tuple, Any] = {}  # the last few saved models fitted again for their marginal means
_REFITS_KEPT = 4


def anova_view(document: dict[str, Any]) -> dict[str, Any]:
    """The omnibus tests per term of a fit's document: ``anova_terms`` (test, type, contrasts, note, rows of term,
    df, den_df, statistic, p_value) and ``table`` (the Omnibus Tests table as the result view shows it; null when
    the fit has no term to test)."""
    return {"anova_terms": document.get("anova_terms"), "table": result_view.omnibus_table(document)}


def fit_anova(job: Job) -> dict[str, Any]:
    return anova_view(_done(job))


def _done(job: Job) -> dict[str, Any]:
    if job.result is None:
        raise ServiceError(f"The fit '{job.id}' has no result ({job.state}); wait until it is done.")
    return job.result


def fit_result_of_job(job: Job, open_project: Callable[[], ContextManager[Project]]) -> Any:
    """The fitted model of a finished fit job: kept in memory, or fitted again on its dataset (large fits)."""
    _done(job)
    kept = job.kept.get("fit")
    if kept is not None:
        return kept
    spec = job.info["spec"]
    with open_project() as project:
        frame = catalogue.read_frame(project, job.info["dataset_id"], models.spec_columns(spec))
    result = models.fit_form(frame, spec)
    job.kept["fit"] = result
    return result


def saved_fit(project: Project, model: dict[str, Any], key: Any = None) -> Any:
    """A saved model fitted again on its dataset (a model keeps JSON only); the last few are kept."""
    frame = models.model_data(project, model)  # checked each time: a kept refit is of the data as saved
    k = (key, model["id"], repr(model.get("spec")), (model.get("result") or {}).get("n_obs"))
    if k in _REFITS:
        return _REFITS[k]
    result = models.refit_model(project, model, frame=frame)
    _REFITS[k] = result
    while len(_REFITS) > _REFITS_KEPT:
        _REFITS.pop(next(iter(_REFITS)))
    return result


def saved_anova(project: Project, model: dict[str, Any], key: Any = None) -> dict[str, Any]:
    """The omnibus tests of a saved model: from its document, or (a model saved before they existed) refitted."""
    document = model.get("result") or {}
    if document.get("anova_terms") is None:
        document = dict(document, anova_terms=saved_fit(project, model, key).anova_terms_document())
    return anova_view(document)


def marginal_view(result: Any, term: Any, by: Any = None, type: str = "response", level: Any = None,
                  adjust: str = "tukey") -> dict[str, Any]:
    """Estimated marginal means of ``term`` (by ``by``), their pairwise comparisons (a factor term) and the effect
    plot's data, JSON-clean (no NaN: infinite df, as for GLMMs, are null)::

        {"term", "by", "type", "level", "kind": "line" | "points", "response",
         "emmeans": {"columns", "rows": [{<variables>, "estimate", "SE", "df", "lower", "upper"}], "note"},
         "pairs": {"adjust", "scale" ("difference", or with type "response" and a log / logit link "ratio" /
                   "odds ratio"), "columns", "rows": [{<by>, "contrast", "estimate", "SE", "df", "statistic", "p"}],
                   "note"} | null,
         "effects": {"kind", "x", "by", "rows": [{"x", "by"?, "estimate", "lower", "upper", "SE"}]},
         "tables": [the Marginal Means and Pairwise Comparisons tables, formatted as the result view's]}

    Bad choices raise :class:`FieldError` naming the field (term, by, type, level, adjust)."""
    term = term if term is None else str(term)
    by = None if by in (None, "") else str(by)
    try:
        em = result.emmeans(term, by=by, type=type, level=level)
        eff = result.effects(term, by=by, level=level)
        pr = marginal.pairs(result, term, by=by, adjust=adjust, type=type) if eff.attrs["kind"] == "points" else None
    except GlmmInputError as exc:
        raise FieldError(_field_of(str(exc)), str(exc)) from None
    keys = [c for c in em.columns if c not in ("estimate", "SE", "df", "lower", "upper")]
    out = {
        "term": em.attrs["term"], "by": by, "type": em.attrs["type"], "level": em.attrs["level"],
        "kind": eff.attrs["kind"], "response": eff.attrs.get("response"),
        "emmeans": {"columns": list(em.columns), "rows": em.to_dict(orient="records"), "note": em.attrs["note"]},
        "pairs": None if pr is None else {"adjust": pr.attrs["adjust"], "scale": pr.attrs["scale"],
                                          "columns": list(pr.columns),
                                          "rows": pr.to_dict(orient="records"), "note": pr.attrs["note"]},
        "effects": {"kind": eff.attrs["kind"], "x": eff.attrs["x"], "by": by,
                    "rows": eff.to_dict(orient="records")},
    }
    lv = result_view.level_text(em.attrs["level"])
    tables = [result_view._table(
        "emmeans", f"Estimated Marginal Means: {em.attrs['term']}" + (f" by {by}" if by else ""),
        keys + ["Estimate", "SE", "df", f"Lower {lv}", f"Upper {lv}"],
        ["text"] * len(keys) + ["decimal", "decimal", "df", "decimal", "decimal"],
        [[r[k] for k in keys] + [r["estimate"], r["SE"], r["df"], r["lower"], r["upper"]]
         for r in out["emmeans"]["rows"]], note=em.attrs["note"])]
    if pr is not None:
        bys = [c for c in pr.columns if c not in ("contrast", "estimate", "SE", "df", "statistic", "p")]
        tables.append(result_view._table(
            "pairs", f"Pairwise Comparisons: {em.attrs['term']} ({pr.attrs['adjust']})",
            bys + ["Contrast", {"ratio": "Ratio", "odds ratio": "Odds ratio"}.get(pr.attrs["scale"], "Estimate"), "SE",
                   "df", "t" if result.link == "identity" and
                   result.family == "gaussian" else "z", "p"],
            ["text"] * (len(bys) + 1) + ["decimal", "decimal", "df", "decimal", "p"],
            [[r[k] for k in bys] + [r["contrast"], r["estimate"], r["SE"], r["df"], r["statistic"], r["p"]]
             for r in out["pairs"]["rows"]], note=pr.attrs["note"]))
    out["tables"] = tables
    return jsonable(out)


def _field_of(message: str) -> str:
    first = message.split(" ", 1)[0]
    return first if first in ("term", "by", "type", "level", "adjust", "at", "n_grid") else "term"
