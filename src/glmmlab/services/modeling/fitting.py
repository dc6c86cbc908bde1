"""One way from a formula and a table to a fit, for every front door (Python API, command line, web app, Dask).

Every model is fitted by the general engine (:mod:`glmmlab.engine.solvers`; a single scalar random intercept
``(1 | g)`` is its fast special case): in memory by :func:`fit_frame_spec` once the model frame is built, on a
Dask DataFrame by :mod:`glmmlab.services.distributed.dask_fit`, whose actors run the same blocks. The front doors
reach it through :func:`fit_spec` (a formula in memory), :func:`fit_columns` (the random-intercept form
``response``/``group``/``fixed`` in memory: its model frame built from the columns, without the formula
machinery); on a Dask DataFrame through :mod:`glmmlab.services.distributed.fitting`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.spec import ModelSpec
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.threads import fit_heap, one_blas_thread
from glmmlab.services.modeling import frames
from glmmlab.services.modeling.modelframe import build_model_frame, level_label, plain_columns
from glmmlab.services.modeling.prediction import blups_by_component, make_predictor


def fit_formula(df: pd.DataFrame, formula: str, *, progress: ProgressFn = None, n_blocks: int | None = None,
                **options: Any) -> GlmmResult:
    """Fit an lme4 formula to a pandas DataFrame (``options``: those of :class:`ModelSpec`)."""
    return fit_spec(df, ModelSpec(formula, **options), progress=progress, n_blocks=n_blocks)


def fit_spec(df: pd.DataFrame, spec: ModelSpec, *, progress: ProgressFn = None,
             n_blocks: int | None = None) -> GlmmResult:
    """Fit a :class:`ModelSpec` to a pandas DataFrame: the one way every front door reaches a fit."""
    fam, lk = spec.check()
    start = time.perf_counter()
    for option, col in (("weights", spec.weights), ("offset", spec.offset)):
        if col is not None and col not in df.columns:
            raise GlmmInputError(f"{option} column '{col}' is not in the data; columns are: "
                                 + ", ".join(map(str, df.columns[:20])))
    # the engine's threads are its parallelism (BLAS threads would contend with them); the heap is kept for reuse
    with one_blas_thread(), fit_heap():
        report(progress, "Preparing data", 0.0)
        mf = build_model_frame(df, spec.parsed, family=fam.name, weights=spec.weights, offset=spec.offset,
                               reference_levels=spec.reference_levels, progress=progress)
        return fit_frame_spec(mf, spec, df=df, progress=progress, n_blocks=n_blocks, start=start)


def fit_columns(df: pd.DataFrame, response: str, group: str, fixed: Optional[Sequence[str]] = None, *,
                intercept: bool = True, family: str = "gaussian", link: Optional[str] = None,
                weights: Optional[str] = None, offset: Optional[str] = None,
                reference_levels: Optional[Mapping[str, Any]] = None, progress: ProgressFn = None,
                n_blocks: Optional[int] = None, **options: Any) -> GlmmResult:
    """Fit the random-intercept form ``response ~ fixed + (1 | group)`` to a pandas DataFrame (``options``: the
    fit options of :class:`ModelSpec`: conf_level, max_iter, tol, nagq, se, reml, ddf).

    When the fixed columns are plain numbers (no factors, weights, offset or reference levels), the model frame
    is built from the columns without the formula machinery (the formula's frame is built from ``df`` when first
    needed: refits, intervals, R²); every other model is :func:`fit_spec` of ``ModelSpec.random_intercept``, and
    so the same fit as the formula's."""
    fixed = list(fixed or [])
    frames.check_columns(df.columns, len(df), response, group, fixed)
    plain = not (weights is not None or offset is not None or reference_levels
                 or any(not _numeric(df[f]) for f in fixed))
    spec = ModelSpec.random_intercept(response, group, fixed, intercept, family=family, link=link,
                                      weights=weights, offset=offset, reference_levels=reference_levels, **options)
    if not plain:
        return fit_spec(df, spec, progress=progress, n_blocks=n_blocks)
    fam, lk = spec.check()
    start = time.perf_counter()
    # the engine's threads are its parallelism (BLAS threads would contend with them); the heap is kept for reuse
    with one_blas_thread(), fit_heap():
        report(progress, "Preparing data", 0.0)
        # rows in the order of the groups, except for a linear model in one block (see column_frame)
        grouped = not (fam.name == "gaussian" and lk.name == "identity" and (n_blocks or 1) <= 1)
        mf, order = frames.column_frame(df, response, group, fixed, intercept=intercept, family=fam,
                                        formula=spec.formula, grouped=grouped)
        # the column frame is this call's own: the scaled design takes the memory of its design (the formula's
        # frame is built from the table if a refit needs it)
        result = fit_frame_spec(mf, spec, df=df, progress=progress, n_blocks=n_blocks, start=start,
                                own_design=True)
    if order is not None:  # the frame's rows are in the order of the groups: per-row results back to input order
        for name in ("rows", "fitted", "deviance_residuals", "pearson_residuals", "row_random_effect"):
            a = np.asarray(getattr(result, name))
            back = np.empty_like(a)
            back[order] = a
            setattr(result, name, back)
    # refits (model comparison, profile and bootstrap intervals), R² and marginal means need the formula's model
    # frame (with its recipe): it is built from the same table when first needed
    result.frame = None
    result.frame_loader = frame_loader(df, spec, result.rows)
    return result


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def fit_frame_spec(mf: ModelFrame, spec: ModelSpec, *, df: pd.DataFrame | None = None, progress: ProgressFn = None,
                   n_blocks: int | None = None, start: float | None = None,
                   theta_start: np.ndarray | None = None, own_design: bool = False) -> GlmmResult:
    """Fit a :class:`ModelSpec` whose model frame is already built (``df``, the input table, is only used to
    tell whether the formula is the random-intercept form over plain numeric columns). ``theta_start``: where the
    optimiser starts in theta (a related fit's thetas); ``own_design``: the frame's design may be scaled in its own
    memory (the caller needs ``mf.X`` no more)."""
    fam, lk = spec.check()
    start = time.perf_counter() if start is None else start
    formula, se = spec.formula, spec.se
    if not mf.terms:
        raise GlmmInputError(
            f"the formula {formula.strip()!r} has no random-effects term: add one such as (1 | group), or "
            "(1 + x | group) for a random slope")
    fixed_cols, group_col = plain_columns(spec.parsed, df) if df is not None else (None, None)
    model = spec.document(mf.response, mf.intercept, fixed_cols, group_col, level_label)
    from glmmlab.engine.solvers.fit import fit_frame  # the general engine, imported when a model needs it

    result = fit_frame(mf, fam, lk, model, se=se, progress=progress, start=start, n_blocks=n_blocks,
                       theta_start=theta_start, own_design=own_design)
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
            mf = build_model_frame(df, spec.parsed, family=fam.name, weights=spec.weights, offset=spec.offset)
        except GlmmInputError:
            return None
        same = mf.n == len(rows) and np.array_equal(np.asarray(mf.rows), np.sort(np.asarray(rows)))
        return mf if same else None

    return load




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
