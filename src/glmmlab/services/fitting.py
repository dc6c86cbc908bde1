"""One way from a formula and a table to a fit, for every front door (Python API, command line, web app, Dask).

In memory every model is fitted by the general engine (:mod:`glmmlab.engine.general`), whose single scalar random
intercept is its fast special case: :func:`fit_spec` (a formula), :func:`fit_columns` (the random-intercept form
``response``/``group``/``fixed``: over numeric columns without a formula's model frame, see
:func:`glmmlab.services.frames.column_frame`). On a Dask DataFrame (:func:`fit_spec_dask`, :func:`fit_columns_dask`)
:func:`choose_engine` still sends the random-intercept form over numeric columns to the first engine's Dask path
while that path moves to the general engine; every other model runs the general engine's blocks as actors. The
fits returned here are the engine's; :mod:`glmmlab.services.fitted` hands them to users as fitted models.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families import resolve
from glmmlab.engine.fit import fit_prepared, prepare_fit
from glmmlab.engine.formula import Name, parse_formula
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.results import GlmmResult
from glmmlab.engine.spec import ModelSpec, random_intercept_formula
from glmmlab.engine.terms import ModelFrame
from glmmlab.engine.threads import one_blas_thread
from glmmlab.services import frames
from glmmlab.services.modelframe import build_model_frame, level_label, plain_columns
from glmmlab.services.prediction import blups_by_component, make_predictor

# -- which engine fits a model: decided here, and only here --------------------------------------------------
RANDOM_INTERCEPT = "random-intercept"
GENERAL = "general"

#: The (family, link) pairs the random-intercept engine fits with the general engine's criterion (the same
#: likelihood, so the same estimates). The others (the negative binomial, whose theta is estimated; Gamma with
#: every link; Gaussian with a link other than identity, whose dispersion is estimated) are the general engine's.
RANDOM_INTERCEPT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("gaussian", "identity"), ("binomial", "logit"), ("binomial", "probit"), ("poisson", "log"),
    ("poisson", "identity")})


@dataclasses.dataclass(frozen=True)
class Route:
    """Where a model is fitted: ``engine`` (:data:`RANDOM_INTERCEPT` or :data:`GENERAL`), in memory or on Dask."""

    engine: str
    dask: bool = False

    @property
    def random_intercept(self) -> bool:
        return self.engine == RANDOM_INTERCEPT


def choose_engine(family: Any, link: Any, *, random_intercept: bool, weighted: bool = False, offset: bool = False,
                  dask: bool = False) -> Route:
    """The one decision of which engine fits a model, for every front door.

    ``random_intercept``: the random-effects part is a single scalar random intercept ``(1 | g)`` (Z all ones);
    ``weighted``: there are prior weights other than 1; ``offset``: there is an offset other than 0; ``dask``: the
    data are a Dask DataFrame. The random-intercept engine fits the model when it is a single random intercept
    without weights or an offset, in a family and link of :data:`RANDOM_INTERCEPT_PAIRS`; the general engine
    fits every other model. Unknown family or link names are refused here (GlmmInputError naming the choices)."""
    fam, lk = resolve(family, link)
    ri = dask and random_intercept and not weighted and not offset and (fam.name, lk.name) in RANDOM_INTERCEPT_PAIRS
    return Route(RANDOM_INTERCEPT if ri else GENERAL, bool(dask))


def _scalar_intercept(mf: ModelFrame) -> bool:
    """Whether the model frame's random-effects part is one scalar random intercept whose Z is all ones."""
    if len(mf.terms) != 1:
        return False
    t = mf.terms[0]
    return t.q == 1 and t.names == ["(Intercept)"] and bool(np.all(t.Z[:, 0] == 1.0))


def route_frame(mf: ModelFrame, family: Any, link: Any) -> Route:
    """:func:`choose_engine` for a model frame built in memory (weights all 1 and an offset all 0 count as none)."""
    return choose_engine(family, link, random_intercept=_scalar_intercept(mf),
                         weighted=mf.weights is not None and not bool(np.all(mf.weights == 1.0)),
                         offset=mf.offset is not None and not bool(np.all(mf.offset == 0.0)))


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
    with one_blas_thread():  # the engine's threads are its parallelism: BLAS threads would contend with them
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

    When :func:`choose_engine` gives the model to the random-intercept engine and the fixed columns are plain
    numbers (no factors, weights, offset or reference levels), the engine gets the columns directly and no model
    frame is built (it is built from ``df`` when first needed: refits, intervals, R²); every other model is
    :func:`fit_spec` of ``ModelSpec.random_intercept``, and so the same fit as the formula's."""
    fixed = list(fixed or [])
    frames.check_columns(df.columns, len(df), response, group, fixed)
    plain = not (weights is not None or offset is not None or reference_levels
                 or any(not _numeric(df[f]) for f in fixed))
    spec = ModelSpec.random_intercept(response, group, fixed, intercept, family=family, link=link,
                                      weights=weights, offset=offset, reference_levels=reference_levels, **options)
    if not plain:
        return fit_spec(df, spec, progress=progress, n_blocks=n_blocks)
    fam, _ = spec.check()
    start = time.perf_counter()
    with one_blas_thread():  # the engine's threads are its parallelism: BLAS threads would contend with them
        report(progress, "Preparing data", 0.0)
        mf, order = frames.column_frame(df, response, group, fixed, intercept=intercept, family=fam,
                                        formula=spec.formula)
        result = fit_frame_spec(mf, spec, df=df, progress=progress, n_blocks=n_blocks, start=start)
    # the frame's rows are in the order of the groups: the per-row results go back to input order
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


DASK_OPTIONS = ("conf_level", "max_iter", "tol", "nagq", "se", "dispersion")  # the fit options of the Dask paths


def fit_columns_dask(data: Any, response: str, group: str, fixed: Optional[Sequence[str]] = None, *,
                     intercept: bool = True, family: str = "gaussian", link: Optional[str] = None,
                     progress: ProgressFn = None, client: Any = None, scheduler: Optional[str] = None,
                     **options: Any) -> GlmmResult:
    """The random-intercept form on a Dask DataFrame (``options``: :data:`DASK_OPTIONS`): the random-intercept
    engine's Dask path (:func:`glmmlab.services.distributed.fit_dask`) when :func:`choose_engine` says so, else
    the general engine's (:func:`glmmlab.services.distributed_general.fit_formula_dask`) on its formula."""
    fixed = list(fixed or [])
    frames.check_columns(data.columns, None, response, group, fixed)
    _dask_options(options)
    if choose_engine(family, link, random_intercept=True, dask=True).random_intercept:
        from glmmlab.services.distributed import fit_dask  # scale-out paths, imported only when used

        options.pop("dispersion", None)  # no family of the random-intercept engine has a dispersion to estimate
        return fit_dask(data, response, group, fixed, family=family, link=link, intercept=intercept,
                        progress=progress, client=client, scheduler=scheduler, **options)
    from glmmlab.services.distributed_general import fit_formula_dask

    return fit_formula_dask(data, random_intercept_formula(response, group, fixed, intercept), family=family,
                            link=link, progress=progress, client=client, scheduler=scheduler, **options)


def fit_spec_dask(data: Any, spec: ModelSpec, *, progress: ProgressFn = None, client: Any = None,
                  scheduler: Optional[str] = None) -> GlmmResult:
    """A :class:`ModelSpec` on a Dask DataFrame: the random-intercept form over numeric columns (without weights or
    an offset, in a family and link of the random-intercept engine: :func:`choose_engine`) on the
    random-intercept engine's Dask path, every other model on the general engine's (models whose grouping
    factors nest; others are refused there with the reason). Maximum likelihood, Satterthwaite's df and
    reference levels need a fit in memory (the caller refuses them with its own words; here they are refused
    too)."""
    fam, lk = spec.check()
    if spec.reference_levels or spec.reml is not True or spec.ddf not in ("none", "auto"):
        raise GlmmInputError("reference_levels, reml=False and ddf='satterthwaite' need a fit in memory (a pandas, "
                             "polars or Arrow table)")
    form = _random_intercept_form(spec.formula, data._meta)
    route = choose_engine(fam.name, lk.name, random_intercept=form is not None,
                          weighted=spec.weights is not None, offset=spec.offset is not None, dask=True)
    options = {k: getattr(spec, k) for k in DASK_OPTIONS}
    if route.random_intercept:
        assert form is not None  # the route is the random-intercept engine's only for that form
        response, group, fixed, intercept = form
        return fit_columns_dask(data, response, group, fixed, intercept=intercept, family=fam.name, link=lk.name,
                                progress=progress, client=client, scheduler=scheduler, **options)
    from glmmlab.services.distributed_general import fit_formula_dask  # scale-out path, imported when used

    return fit_formula_dask(data, spec.formula, family=fam.name, link=lk.name, weights=spec.weights,
                            offset=spec.offset, progress=progress, client=client, scheduler=scheduler, **options)


def _dask_options(options: dict) -> None:
    extra = sorted(set(options) - set(DASK_OPTIONS))
    if extra:
        raise GlmmInputError(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not available on a Dask "
                             "DataFrame; fit in memory (a pandas, polars or Arrow table)")


def _random_intercept_form(formula: str, df: pd.DataFrame) -> tuple[str, str, list[str], bool] | None:
    """(response, group, fixed columns, intercept) when ``formula`` is ``y ~ x1 + x2 + (1 | g)`` over plain
    numeric columns of ``df`` (a column-named response too), else None."""
    fixed, group = plain_columns(formula, df)
    if fixed is None or group is None or group not in df.columns:
        return None
    f = parse_formula(formula)
    if not isinstance(f.response, Name) or f.response.name not in df.columns:
        return None
    return f.response.name, group, fixed, bool(f.fixed.intercept)


def fit_frame_spec(mf: ModelFrame, spec: ModelSpec, *, df: pd.DataFrame | None = None, progress: ProgressFn = None,
                   n_blocks: int | None = None, start: float | None = None,
                   theta_start: np.ndarray | None = None) -> GlmmResult:
    """Fit a :class:`ModelSpec` whose model frame is already built (``df``, the input table, is only used to
    tell whether the formula is the random-intercept form over plain numeric columns). ``theta_start``: where a
    general model's optimiser starts in theta (a related fit's thetas; the random-intercept engine has its own
    moment start)."""
    fam, lk = spec.check()
    start = time.perf_counter() if start is None else start
    formula, se = spec.formula, spec.se
    if not mf.terms:
        raise GlmmInputError(
            f"the formula {formula.strip()!r} has no random-effects term: add one such as (1 | group), or "
            "(1 + x | group) for a random slope")
    fixed_cols, group_col = plain_columns(spec.parsed, df) if df is not None else (None, None)
    model = spec.document(mf.response, mf.intercept, fixed_cols, group_col, level_label)
    if route_frame(mf, fam.name, lk.name).random_intercept:
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
            mf = build_model_frame(df, spec.parsed, family=fam.name, weights=spec.weights, offset=spec.offset)
        except GlmmInputError:
            return None
        same = mf.n == len(rows) and np.array_equal(np.asarray(mf.rows), np.sort(np.asarray(rows)))
        return mf if same else None

    return load


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
