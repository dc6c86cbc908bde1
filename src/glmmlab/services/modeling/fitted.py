"""The fitted model every front door returns: the engine's record of the estimates (:class:`GlmmResult`) with what
the services add to it, the :class:`ModelSpec`, the model frame (or the function that builds it when first
needed), the predictor of a formula's design for new rows and the time the fit took, and the methods that need
them: R², omnibus tests, marginal means and effects, profile and bootstrap intervals, prediction with intervals,
refits and the text of the result view.

:class:`FittedModel` subclasses the frozen record rather than wrapping it: everything a record reads (the JSON
document, the tables, the statsmodels- and lme4-style accessors) is defined once, on the record, and a fitted
model is a record with a few more fields; a wrapper would have to pass each of those forty-odd names on. The record
declares what the services add (``spec``, ``predictor``, ``fit_seconds``, ``model_frame()``) as None; here they are
the fitted model's fields. Like the record, a fitted model is frozen: it is built once, by :meth:`FittedModel.of`;
R², computed when first asked for, is kept in its cache, a frame built from the table by its loader.

The functions below are the front doors' ways to a fit: they build the model frame and get the engine's record
through :mod:`glmmlab.services.modeling.fitting`, and hand it out as a fitted model. The services the methods use
(R², the bootstrap) refit through :mod:`glmmlab.services.modeling.fitting`, never through this module, so the
imports run one way.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.deferred import raw_fields
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.spec import ModelSpec
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.threads import fit_heap, one_blas_thread
from glmmlab.services.modeling import fitting, frames, prediction, simulated_residuals

# R², the omnibus tests and marginal means, profile and bootstrap intervals and the text views are imported when a
# method first asks for them: a fit does not use them, and their modules (the bootstrap's process pool and
# multiprocessing, the text view's html) held some 0.7 MB of a fresh process that only fits

Predictor = Callable[[Any], "tuple[np.ndarray, np.ndarray]"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class FittedModel(GlmmResult):
    """A fit as users get it from ``glmmlab.glmm``, ``fit_glmm``, ``fit``, the command line and the web: the
    engine's estimates (every field of :class:`GlmmResult`) with what the services add."""

    spec: ModelSpec | None = None  # what was fitted (refits change it); None for a Dask fit of columns
    # the model frame the engine fitted (refits, intervals, R², marginal means); None when the fit keeps no data
    # (a Dask fit) or builds it when first needed (``frame_loader``, which then keeps it: fit_glmm over plain
    # numeric columns)
    frame: ModelFrame | None = None
    frame_loader: Callable[[], ModelFrame | None] | None = None
    predictor: Predictor | None = None  # new rows -> (eta without random effects, random-effects contribution)
    fit_seconds: float | None = None  # the time the fit took, after the data were read

    @classmethod
    def of(cls, record: GlmmResult, *, spec: ModelSpec | None = None, frame: ModelFrame | None = None,
           frame_loader: Callable[[], ModelFrame | None] | None = None, predictor: Predictor | None = None,
           fit_seconds: float | None = None) -> "FittedModel":
        """The fitted model of the engine's ``record`` (the same field values, no copy of the arrays) and what the
        services add."""
        fields = raw_fields(record, GlmmResult)  # a pending value (Satterthwaite's df) stays pending
        return cls(**fields, spec=spec, frame=frame, frame_loader=frame_loader, predictor=predictor,
                   fit_seconds=fit_seconds)

    @property
    def record(self) -> GlmmResult:
        """The engine's record of the estimates alone (the same field values, no copy of the arrays)."""
        return GlmmResult(**raw_fields(self, GlmmResult))

    def model_frame(self) -> ModelFrame | None:
        if self.frame is None and self.frame_loader is not None:
            return self.frame_loader()  # built once, then kept by the loader (which lets go of the table)
        return self.frame

    model_frame.__doc__ = GlmmResult.model_frame.__doc__

    def require_frame(self, what: str = "this") -> ModelFrame:
        frame = self.model_frame()
        if frame is None:
            raise GlmmInputError(
                f"{what} intervals need the model's data: this fit was not made in memory (a Dask fit or a "
                "model loaded from a project keeps no data); fit it in memory with glmmlab.glmm or fit_glmm")
        return frame

    require_frame.__doc__ = GlmmResult.require_frame.__doc__

    def refit(self, *, y: np.ndarray | None = None, progress: ProgressFn = None,
              **spec_changes: Any) -> "FittedModel":
        """This model fitted again on the same rows: with another response ``y`` (same length and scale as the
        model frame's; the bootstrap's simulated responses) and/or changed options (``spec_changes``, fields of
        :class:`~glmmlab.engine.model.spec.ModelSpec`, e.g. ``reml=False``). Needs a fit made in memory."""
        return refit(self, y=y, progress=progress, **spec_changes)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {"refit", "simulate_residuals"})

    def simulate_residuals(self, n_sim: int = 250, seed: int | None = simulated_residuals.DEFAULT_SEED,
                           conditional: bool = True) -> simulated_residuals.SimulatedResiduals:
        """Simulation-based scaled residuals as R's DHARMa computes them (``simulateResiduals``): ``n_sim``
        responses simulated from the fit, each row's observed value read against its simulations (uniform on (0, 1)
        under a correct model, for every family). The random effects are held at their fitted modes (the default,
        DHARMa's since 0.5.0: residuals of one group are then not tied together by a shared redrawn effect), or
        drawn afresh from their estimated covariance with ``conditional=False``; ``seed`` (default 123, as DHARMa's)
        makes them reproducible. The answer has ``.residuals``, ``.test_dispersion()``, ``.test_zero_inflation()``,
        ``.test_uniformity()``, ``.test_outliers()``, ``.plot_qq()`` and ``.plot_vs_predicted()``
        (:class:`~glmmlab.services.modeling.simulated_residuals.SimulatedResiduals`). Needs a fit made in memory."""
        return simulated_residuals.simulate_residuals(self, n_sim=n_sim, seed=seed, conditional=conditional)

    def r2(self) -> dict:
        if "r2" not in self._memo:
            from glmmlab.services.modeling import r2 as r2_service

            self._memo["r2"] = r2_service.nakagawa(self)
        return dict(self._memo["r2"])

    r2.__doc__ = GlmmResult.r2.__doc__

    def anova(self, intercept: bool = False):
        from glmmlab.services.modeling import marginal

        return marginal.anova_terms(self, intercept=intercept)

    def emmeans(self, term: str, by: str | None = None, type: str = "response", level: float | None = None,
                at: Any = None, n_grid: int = 20):
        from glmmlab.services.modeling import marginal

        return marginal.emmeans(self, term, by=by, type=type, level=level, at=at, n_grid=n_grid)

    def pairs(self, term: str, by: str | None = None, adjust: str = "tukey", type: str = "link"):
        from glmmlab.services.modeling import marginal

        return marginal.pairs(self, term, by=by, adjust=adjust, type=type)

    def effects(self, term: str, by: str | None = None, level: float | None = None, n_grid: int = 20):
        from glmmlab.services.modeling import marginal

        return marginal.effects(self, term, by=by, level=level, n_grid=n_grid)

    anova.__doc__ = GlmmResult.anova.__doc__
    emmeans.__doc__ = GlmmResult.emmeans.__doc__
    pairs.__doc__ = GlmmResult.pairs.__doc__
    effects.__doc__ = GlmmResult.effects.__doc__

    def anova_terms_document(self) -> dict | None:
        from glmmlab.engine.inference.results import _num
        from glmmlab.services.modeling import marginal

        if not len(self.names):
            return None
        try:
            table = marginal.anova_terms(self)
        except GlmmInputError:
            return None
        if not len(table):
            return None
        f = table.attrs["test"] == "F"
        rows = [{"term": str(t), "df": int(r["Df"]), **({"den_df": _num(r["DenDF"])} if f else {}),
                 "statistic": _num(r["F"] if f else r["Chisq"]), "p_value": _num(r["p"])}
                for t, r in table.iterrows()]
        return {"test": table.attrs["test"], "type": table.attrs["type"], "contrasts": table.attrs["contrasts"],
                "note": table.attrs["note"], "rows": rows}

    anova_terms_document.__doc__ = GlmmResult.anova_terms_document.__doc__

    def summary(self) -> str:
        from glmmlab.services.views import text

        return text.summary(self)

    summary.__doc__ = GlmmResult.summary.__doc__

    def _repr_html_(self) -> str:
        from glmmlab.services.views import text

        return text.render_html(self)

    def _refit_intervals(self, method: str, level: float, nsim: int, seed: int | None,
                         progress: Callable[[str, float], None] | None) -> tuple[list[str], Any, Any, dict]:
        if method == "profile":
            from glmmlab.services.modeling import profiling

            return profiling.profile(self, level, nsim, seed, progress)
        from glmmlab.services.modeling import bootstrap

        return bootstrap.boot_intervals(self, level, nsim, seed, progress)

    def _fixed_design(self, new_data: Any) -> tuple[np.ndarray, np.ndarray] | None:
        frame = self.model_frame()
        if frame is None or frame.recipe is None:
            return None
        return prediction.fixed_design(self, new_data)


# -- the front doors' ways to a fit ---------------------------------------------------------------------------
def fit_spec(df: pd.DataFrame, spec: ModelSpec, *, progress: ProgressFn = None,
             n_blocks: int | None = None) -> FittedModel:
    """Fit a :class:`ModelSpec` to a pandas DataFrame: the one way every front door reaches a fit in memory."""
    spec.check()
    start = time.perf_counter()
    # the engine's threads are its parallelism (BLAS threads would contend with them); the heap is kept for reuse
    with one_blas_thread(), fit_heap():
        mf = fitting.spec_frame(df, spec, progress=progress)
        return fit_frame_spec(mf, spec, df=df, progress=progress, n_blocks=n_blocks, start=start)


def fit_columns(df: pd.DataFrame, response: str, group: str, fixed: Optional[Sequence[str]] = None, *,
                intercept: bool = True, family: str = "gaussian", link: Optional[str] = None,
                weights: Optional[str] = None, offset: Optional[str] = None,
                reference_levels: Optional[Mapping[str, Any]] = None, progress: ProgressFn = None,
                n_blocks: Optional[int] = None, **options: Any) -> FittedModel:
    """Fit the random-intercept form ``response ~ fixed + (1 | group)`` to a pandas DataFrame (``options``: the
    fit options of :class:`ModelSpec`: conf_level, max_iter, tol, nagq, se, reml, ddf).

    When the fixed columns are plain numbers (no factors, weights, offset or reference levels), the model frame
    is built from the columns without the formula machinery (the formula's frame is built from ``df`` when first
    needed: refits, intervals, R²); every other model is :func:`fit_spec` of ``ModelSpec.random_intercept``, and
    so the same fit as the formula's."""
    fixed = list(fixed or [])
    frames.check_columns(df.columns, len(df), response, group, fixed)
    spec = ModelSpec.random_intercept(response, group, fixed, intercept, family=family, link=link,
                                      weights=weights, offset=offset, reference_levels=reference_levels, **options)
    if not fitting.plain(df, fixed, weights, offset, reference_levels) or spec.check()[0].name == "ordinal":
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
        record = fitting.fit_frame_spec(mf, spec, df=df, progress=progress, n_blocks=n_blocks, own_design=True)
    seconds = time.perf_counter() - start
    if order is not None:  # the frame's rows are in the order of the groups: per-row results back to input order
        record = fitting.in_input_order(record, order)
    # refits (model comparison, profile and bootstrap intervals), R² and marginal means need the formula's model
    # frame (with its recipe): it is built from the same table when first needed
    return FittedModel.of(record, spec=spec, frame_loader=fitting.frame_loader(df, spec, record.rows),
                          fit_seconds=seconds)


def fit_frame_spec(mf: ModelFrame, spec: ModelSpec, *, df: pd.DataFrame | None = None,
                   columns: tuple[list[str] | None, str | None] | None = None, progress: ProgressFn = None,
                   n_blocks: int | None = None, start: float | None = None,
                   theta_start: np.ndarray | None = None) -> FittedModel:
    """Fit a :class:`ModelSpec` whose model frame is already built (``df`` and ``columns`` as
    :func:`glmmlab.services.modeling.fitting.fit_frame_spec` reads them; ``start``: when the fit began, for its
    time; ``theta_start``: where the optimiser starts in theta)."""
    start = time.perf_counter() if start is None else start
    record = fitting.fit_frame_spec(mf, spec, df=df, columns=columns, progress=progress, n_blocks=n_blocks,
                                    theta_start=theta_start)
    seconds = time.perf_counter() - start
    predictor = None
    if mf.recipe is not None:
        recipe = mf.recipe
        predictor = prediction.OnFirstCall(lambda: prediction.make_predictor(
            recipe, list(record.names), np.asarray(record.beta), prediction.blups_by_component(record)))
    return FittedModel.of(record, spec=spec, frame=mf, predictor=predictor, fit_seconds=seconds)


def refit(result: GlmmResult, *, y: np.ndarray | None = None, progress: ProgressFn = None,
          **spec_changes: Any) -> FittedModel:
    """Fit ``result``'s model again on the same rows: with another response ``y`` (same length and scale as its
    model frame's ``y``; the bootstrap's simulated responses) and/or changed options (``spec_changes``, fields of
    :class:`ModelSpec`). Needs a fit made in memory (a fitted model with its spec and model frame)."""
    mf = result.model_frame()
    if mf is None or result.spec is None:
        raise GlmmInputError("this fit cannot be refitted: it was not made in memory by glmmlab.glmm/fit "
                             "(a Dask fit or a model loaded from a project keeps no data)")
    if y is not None:
        y = np.asarray(y, dtype=float)
        if y.shape != mf.y.shape:
            raise GlmmInputError(f"refit needs a response of {mf.y.shape[0]} values; got shape {y.shape}")
        mf = dataclasses.replace(mf, y=y, warnings=[])
    spec = dataclasses.replace(result.spec, **spec_changes) if spec_changes else result.spec
    # the model's description (the fixed/group columns of the random-intercept form) is the original fit's
    return fit_frame_spec(mf, spec, columns=(result.model.get("fixed"), result.model.get("group")),
                          progress=progress)
