"""One way from a formula and a table to a fit, for every front door (Python API, command line, web app).

The formula is turned into a :class:`~glmmlab.engine.terms.ModelFrame` (:mod:`glmmlab.services.modelframe`);
then the model picks its estimator: a single random intercept ``(1 | g)`` without prior weights or an offset
takes the engine's random-intercept path (blocks of whole groups, exact gradients, AGQ), every other model the
general path (:mod:`glmmlab.engine.general`). Both give the same numbers where both apply.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.fit import fit_prepared, nondefault_options, prepare_fit
from glmmlab.engine.formula import Name, parse_formula
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.results import GlmmResult
from glmmlab.engine.spec import ModelSpec
from glmmlab.engine.terms import ModelFrame
from glmmlab.services import bootstrap as _bootstrap  # noqa: F401  registers result.conf_int(method="boot")
from glmmlab.services import profiling as _profiling  # noqa: F401  and method="profile" on every core
from glmmlab.services import r2 as _r2  # noqa: F401  (registers GlmmResult.r2())
from glmmlab.services.modelframe import build_model_frame, level_label
from glmmlab.services.prediction import make_predictor


def _plain_columns(formula: str, df: pd.DataFrame) -> tuple[list[str] | None, str | None]:
    """(fixed columns, grouping column) when the formula is the random-intercept form over plain numeric
    columns (the contract fills ``model.fixed`` and ``model.group`` only then), else (None, None)."""
    try:
        f = parse_formula(formula)
    except GlmmInputError:
        return None, None
    if len(f.random) != 1 or f.fixed.offsets:
        return None, None
    r = f.random[0]
    if len(r.group) != 1 or not isinstance(r.group[0], Name) or r.lhs.terms or not r.lhs.intercept:
        return None, None
    fixed = []
    for t in f.fixed.terms:
        if len(t.variables) != 1 or not isinstance(t.variables[0], Name):
            return None, None
        name = t.variables[0].name
        if name not in df.columns or not pd.api.types.is_numeric_dtype(df[name]) \
                or pd.api.types.is_bool_dtype(df[name]):
            return None, None
        fixed.append(name)
    return fixed, r.component


def _random_intercept_only(mf: ModelFrame) -> bool:
    if len(mf.terms) != 1:
        return False
    t = mf.terms[0]
    return (t.q == 1 and t.names == ["(Intercept)"] and bool(np.all(t.Z[:, 0] == 1.0))
            and (mf.weights is None or bool(np.all(mf.weights == 1.0)))
            and (mf.offset is None or bool(np.all(mf.offset == 0.0))))


def fit_formula(df: pd.DataFrame, formula: str, *, progress: ProgressFn = None, n_blocks: int | None = None,
                **options: Any) -> GlmmResult:
    """Fit an lme4 formula to a pandas DataFrame (``options``: those of :class:`ModelSpec`)."""
    return fit_spec(df, ModelSpec(formula, **options), progress=progress, n_blocks=n_blocks)


def fit_spec(df: pd.DataFrame, spec: ModelSpec, *, progress: ProgressFn = None,
             n_blocks: int | None = None) -> GlmmResult:
    """Fit a :class:`ModelSpec` to a pandas DataFrame: the one way every front door reaches a fit."""
    fam, lk = spec.check()
    start = time.perf_counter()
    report(progress, "Preparing data", 0.0)
    for option, col in (("weights", spec.weights), ("offset", spec.offset)):
        if col is not None and col not in df.columns:
            raise GlmmInputError(f"{option} column '{col}' is not in the data; columns are: "
                                 + ", ".join(map(str, df.columns[:20])))
    mf = build_model_frame(df, spec.formula, family=fam.name, weights=spec.weights, offset=spec.offset,
                           reference_levels=spec.reference_levels)
    return fit_frame_spec(mf, spec, df=df, progress=progress, n_blocks=n_blocks, start=start)


def fit_frame_spec(mf: ModelFrame, spec: ModelSpec, *, df: pd.DataFrame | None = None, progress: ProgressFn = None,
                   n_blocks: int | None = None, start: float | None = None,
                   theta_start: np.ndarray | None = None) -> GlmmResult:
    """Fit a :class:`ModelSpec` whose model frame is already built (``df``, the input table, is only used to
    tell whether the formula is the random-intercept form over plain numeric columns). ``theta_start``: where a
    general model's optimiser starts in theta (a related fit's thetas; the random-intercept engine has its own
    moment start)."""
    fam, lk = spec.check()
    start = time.perf_counter() if start is None else start
    formula, weights, offset = spec.formula, spec.weights, spec.offset
    conf_level, max_iter, tol, nagq, se = spec.conf_level, spec.max_iter, spec.tol, spec.nagq, spec.se
    if not mf.terms:
        raise GlmmInputError(
            f"the formula {formula.strip()!r} has no random-effects term: add one such as (1 | group), or "
            "(1 + x | group) for a random slope")
    fixed_cols, group_col = _plain_columns(formula, df) if df is not None else (None, None)
    model: dict[str, Any] = {
        "response": mf.response, "fixed": fixed_cols, "group": group_col, "family": fam.name, "link": lk.name,
        "intercept": bool(mf.intercept), "conf_level": float(conf_level), "nagq": int(nagq),
        "max_iter": int(max_iter), "tol": float(tol), "formula": formula.strip(), "weights": weights,
        "offset": offset, **nondefault_options(spec.reml, spec.ddf, spec.dispersion),
    }
    if spec.reference_levels:  # only when asked for: a document without them keeps its keys
        model["reference_levels"] = {str(k): level_label(v) for k, v in spec.reference_levels.items()}
    # the random-intercept engine fits lme4's criteria; a family with a parameter of its own (the negative
    # binomial's theta) or a dispersion estimated with the other parameters (Gamma, Gaussian with another link;
    # not lme4's criterion) goes to the general engine
    lme4_criterion = not (fam.has_dispersion_parameter(lk) and spec.dispersion == "estimated")
    # the random-intercept engine has no inverse link for a mean on the whole line (the Gaussian's: the general
    # engine keeps its modes on the data's side of the pole)
    known_link = not (fam.name == "gaussian" and lk.name == "inverse")
    if fam.parameter is None and lme4_criterion and known_link and _random_intercept_only(mf):
        result = _fit_random_intercept(mf, model, fam.name, lk.name, se, progress, n_blocks)
    else:
        from glmmlab.engine.general import fit_frame  # the general engine, imported when a model needs it

        result = fit_frame(mf, fam, lk, model, se=se, progress=progress, start=start, n_blocks=n_blocks,
                           theta_start=theta_start)
    result.fit_seconds = time.perf_counter() - start
    result.warnings[:0] = [w for w in mf.warnings if w not in result.warnings]
    if mf.recipe is not None:
        result.predictor = make_predictor(mf.recipe, list(result.names), np.asarray(result.beta),
                                          blups_by_component(result))
    result.spec, result.frame = spec, mf
    return result


def refit(result: GlmmResult, *, y: np.ndarray | None = None, progress: ProgressFn = None,
          **spec_changes: Any) -> GlmmResult:
    """Fit ``result``'s model again on the same rows: with another response ``y`` (same length and scale as
    ``result.frame.y``; the bootstrap's simulated responses) and/or changed options (``spec_changes``, fields of
    :class:`ModelSpec`). Needs a fit made in memory (``result.frame`` is set by :func:`fit_spec`)."""
    if result.model_frame() is None or result.spec is None:
        raise GlmmInputError("this fit cannot be refitted: it was not made in memory by glmmlab.glmm/fit "
                             "(a Dask fit or a model loaded from a project keeps no data)")
    mf = result.model_frame()
    if y is not None:
        y = np.asarray(y, dtype=float)
        if y.shape != mf.y.shape:
            raise GlmmInputError(f"refit needs a response of {mf.y.shape[0]} values; got shape {y.shape}")
        mf = dataclasses.replace(mf, y=y, warnings=[])
    spec = dataclasses.replace(result.spec, **spec_changes) if spec_changes else result.spec
    out = fit_frame_spec(mf, spec, progress=progress)
    # the model's description (the fixed/group columns of the random-intercept form) is the original fit's
    out.model = dict(out.model, fixed=result.model.get("fixed"), group=result.model.get("group"))
    return out


def frame_loader(df: pd.DataFrame, spec: ModelSpec, rows: np.ndarray):
    """For a fit made from arrays (fit_glmm's random-intercept path keeps no model frame): a function that builds
    its frame from ``df`` when first needed (refits, intervals, R²). The fit holds ``df`` until then, as a
    statsmodels result holds its data. None when the frame does not reproduce the fit's rows."""

    def load() -> ModelFrame | None:
        fam, _ = spec.check()
        try:
            mf = build_model_frame(df, spec.formula, family=fam.name, weights=spec.weights, offset=spec.offset)
        except GlmmInputError:
            return None
        same = mf.n == len(rows) and np.array_equal(np.asarray(mf.rows), np.sort(np.asarray(rows)))
        return mf if same else None

    return load


def blups_by_component(result: GlmmResult) -> dict:
    """The conditional modes per grouping factor: {component: {"levels", "names", "values" (levels x q)}}."""
    if result.blup_rows is None:  # a random-intercept fit: one component, one term
        return {result.component: {"levels": list(result.group_labels), "names": ["(Intercept)"],
                                    "values": np.nan_to_num(np.asarray(result.blup, dtype=float)).reshape(-1, 1)}}
    out: dict = {}
    for b in result.blup_rows:  # the engine's rows (blup_table() would rank them for the document first)
        c = out.setdefault(b["component"], {"levels": [], "names": [], "cells": {}})
        if b["group"] not in c["cells"]:
            c["levels"].append(b["group"])
            c["cells"][b["group"]] = {}
        if b["term"] not in c["names"]:
            c["names"].append(b["term"])
        v = b["value"]
        c["cells"][b["group"]][b["term"]] = float(v) if v is not None and np.isfinite(v) else 0.0
    for c in out.values():
        c["values"] = np.array([[c["cells"][lv].get(t, 0.0) for t in c["names"]] for lv in c["levels"]])
        del c["cells"]
    return out


def _fit_random_intercept(mf: ModelFrame, model: dict, family: str, link: str, se: str, progress: ProgressFn,
                          n_blocks: int | None) -> GlmmResult:
    t = mf.terms[0]
    names = list(mf.x_names)
    cols = [mf.X[:, j] for j, nm in enumerate(names) if not (nm == "(Intercept)" and mf.intercept)]
    fixed_names = [nm for nm in names if not (nm == "(Intercept)" and mf.intercept)]
    prepared = prepare_fit(mf.y, cols, fixed_names, np.asarray(t.codes), list(t.levels), response=mf.response,
                           group_name=t.component, family=family, link=link, intercept=mf.intercept,
                           conf_level=model["conf_level"], max_iter=model["max_iter"], tol=model["tol"],
                           nagq=model["nagq"], se=se, reml=model.get("reml", True),
                           ddf=model.get("ddf", "none"), progress=progress)
    result = fit_prepared(prepared, progress=progress, n_blocks=n_blocks)
    # the design saw only the frame's rows: report input rows and the frame's own exclusions too
    result.rows = np.asarray(mf.rows)[np.asarray(result.rows)]
    result.n_excluded += mf.n_input - mf.n
    result.groups = {t.component: len(t.levels)}
    keep = {k: result.model[k] for k in ("response",)}
    result.model = dict(model, **keep)
    return result


def to_pandas(data: Any) -> pd.DataFrame:
    """Accept pandas, polars (eager or lazy), pyarrow Tables or a mapping of columns."""
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__
    if module.startswith("polars"):
        if hasattr(data, "collect"):
            data = data.collect()
        return data.to_pandas()
    if module.startswith("pyarrow"):
        return data.to_pandas()
    if isinstance(data, dict):
        return pd.DataFrame(data)
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    raise GlmmInputError(
        f"data must be a pandas, polars or Arrow table (or a dict of columns); got {type(data).__name__}"
    )
