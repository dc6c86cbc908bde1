"""From a table to the engine's record: the model frame of a spec (:func:`spec_frame`; the random-intercept form
over plain numeric columns builds its own from the columns, :func:`glmmlab.services.modeling.frames.column_frame`)
and the engine's fit of it (:func:`fit_frame_spec`).

Every model is fitted by the general engine (:mod:`glmmlab.engine.solvers`; a single scalar random intercept
``(1 | g)`` is its fast special case): in memory here, on a Dask DataFrame by
:mod:`glmmlab.services.distributed.dask_fit`, whose actors run the same blocks. The front doors reach it through
:mod:`glmmlab.services.modeling.fitted`, which hands the record out as the fitted model with what the services add
(the spec, the frame, the predictor for new rows, the time); the services that refit a model (the bootstrap, R²'s
null model) take the record from here. The engine's solvers are imported with this module (when a front door's
fitting function is first looked up), not inside the first fit: their import (some 8 ms) was a fifth of a small
model's first fit in a fresh process.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.deferred import raw_fields
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.spec import ModelSpec
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.assemble import PER_ROW
from glmmlab.engine.solvers.fit import fit_frame
from glmmlab.engine.solvers.threads import THREADED_ROWS, in_threads
from glmmlab.services.modeling.levels import level_label
from glmmlab.services.modeling.modelframe import build_model_frame, plain_columns


def spec_frame(df: pd.DataFrame, spec: ModelSpec, *, progress: ProgressFn = None) -> ModelFrame:
    """The model frame of a :class:`ModelSpec` on a pandas DataFrame (the weights and offset columns checked)."""
    fam, _ = spec.check()
    for option, col in (("weights", spec.weights), ("offset", spec.offset)):
        if col is not None and col not in df.columns:
            raise GlmmInputError(f"{option} column '{col}' is not in the data; columns are: "
                                 + ", ".join(map(str, df.columns[:20])))
    report(progress, "Preparing data", 0.0)
    return build_model_frame(df, spec.parsed, family=fam.name, weights=spec.weights, offset=spec.offset,
                             reference_levels=spec.reference_levels, progress=progress, zi=spec.zi, disp=spec.disp,
                             response_levels=spec.levels)


def plain(df: pd.DataFrame, fixed: Sequence[str], weights: str | None, offset: str | None,
          reference_levels: Mapping[str, Any] | None) -> bool:
    """Whether the random-intercept form's model frame can be built from the columns
    (:func:`glmmlab.services.modeling.frames.column_frame`): no factors, weights, offset or reference levels."""
    return not (weights is not None or offset is not None or reference_levels
                or any(not _numeric(df[f]) for f in fixed))


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def fit_frame_spec(mf: ModelFrame, spec: ModelSpec, *, df: pd.DataFrame | None = None,
                   columns: tuple[list[str] | None, str | None] | None = None, progress: ProgressFn = None,
                   n_blocks: int | None = None, theta_start: np.ndarray | None = None,
                   own_design: bool = False) -> GlmmResult:
    """The engine's record of a :class:`ModelSpec` whose model frame is already built. The model's description
    names the fixed and grouping columns of the random-intercept form over plain numeric columns: ``columns``
    (fixed, group), or read from ``df`` (the input table) when not given. ``theta_start``: where the optimiser
    starts in theta (a related fit's theta); ``own_design``: the frame's design may be scaled in its own memory (the
    caller needs ``mf.X`` no more)."""
    fam, lk = spec.check()
    formula, se = spec.formula, spec.se
    if not mf.terms:
        raise GlmmInputError(
            f"the formula {formula.strip()!r} has no random-effects term: add one such as (1 | group), or "
            "(1 + x | group) for a random slope")
    if columns is None:
        columns = plain_columns(spec.parsed, df) if df is not None else (None, None)
    model = spec.document(mf.response, mf.intercept, columns[0], columns[1], level_label)

    levels = getattr(mf.recipe, "response_levels", ())
    if fam.name == "ordinal" and levels:  # the family's member names its thresholds after the categories
        fam = fam.for_levels(levels, lk.name)  # type: ignore[attr-defined]

    return fit_frame(mf, fam, lk, model, se=se, progress=progress, n_blocks=n_blocks, theta_start=theta_start,
                     own_design=own_design)


def in_input_order(record: GlmmResult, order: np.ndarray) -> GlmmResult:
    """``record`` of a frame whose rows were in another order (``frames.column_frame``'s, ``order`` the position of
    each of its rows in input order) with its per-row results in input order: a changed copy."""
    def back(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[order] = a
        return out

    names = [name for name in PER_ROW if name != "rows"]
    # a large fit's arrays in threads, one per core (each scatter is one pass of random writes)
    arrays = [np.asarray(getattr(record, name)) for name in names]
    arrays = in_threads(back, arrays) if order.size >= THREADED_ROWS else [back(a) for a in arrays]
    per_row: dict[str, Any] = dict(zip(names, arrays))
    # the rows themselves in input order are the input row numbers used, ascending: with none left out, 0 .. n-1
    per_row["rows"] = np.arange(record.n_obs) if record.n_excluded == 0 else back(np.asarray(record.rows))
    return type(record)(**{**raw_fields(record, type(record)), **per_row})  # a pending df stays pending


def frame_loader(df: pd.DataFrame, spec: ModelSpec, rows: np.ndarray):
    """For a fit made from arrays (fit_glmm's random-intercept path keeps no model frame): a function that builds
    its frame from ``df`` when first needed (refits, intervals, R²) and then keeps it, not ``df``. The fit holds
    ``df`` until then, as a statsmodels result holds its data. The frame is None when it does not reproduce the
    fit's rows."""
    held: dict[str, Any] = {"df": df}

    def load() -> ModelFrame | None:
        if "frame" not in held:
            fam, _ = spec.check()
            try:
                mf = build_model_frame(held["df"], spec.parsed, family=fam.name, weights=spec.weights,
                                       offset=spec.offset, response_levels=spec.levels)
            except GlmmInputError:
                mf = None
            same = mf is not None and mf.n == len(rows) \
                and np.array_equal(np.asarray(mf.rows), np.sort(np.asarray(rows)))
            held["frame"] = mf if same else None
            del held["df"]
        return held["frame"]

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
