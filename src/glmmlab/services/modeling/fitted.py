"""The fitted model every front door returns: the engine's estimates (:class:`GlmmResult`) with what needs the
services: R², omnibus tests, marginal means and effects, profile and bootstrap intervals, prediction intervals of
a formula's design, and the text of the result view.

:class:`FittedModel` subclasses the engine's result, so everything a result reads (the JSON document, the pandas
accessors) stays where it is; the methods here call the services directly. The functions at the end are the
front doors' ways to a fit (:mod:`glmmlab.services.modeling.fitting` fits, this module hands the fit out as a fitted
model); the services the methods use refit through :mod:`glmmlab.services.modeling.fitting`, never through this
module, so the imports run one way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from glmmlab.engine.inference.results import GlmmResult
from glmmlab.services.modeling import bootstrap, fitting, marginal, prediction, profiling
from glmmlab.services.modeling import r2 as r2_service
from glmmlab.services.views import text


@dataclasses.dataclass(repr=False)
class FittedModel(GlmmResult):
    """A fit as users get it from ``glmmlab.glmm``, ``fit_glmm``, ``fit``, the command line and the web."""

    @classmethod
    def of(cls, result: GlmmResult) -> "FittedModel":
        """``result`` as a fitted model (the same field values, no copy of the arrays)."""
        if isinstance(result, cls):
            return result
        return cls(**{f.name: getattr(result, f.name) for f in dataclasses.fields(GlmmResult)})

    def r2(self) -> dict:
        if self.r2_values is None:
            self.r2_values = r2_service.nakagawa(self)
        return dict(self.r2_values)

    r2.__doc__ = GlmmResult.r2.__doc__

    def anova(self, intercept: bool = False):
        return marginal.anova_terms(self, intercept=intercept)

    def emmeans(self, term: str, by: str | None = None, type: str = "response", level: float | None = None,
                at: Any = None, n_grid: int = 20):
        return marginal.emmeans(self, term, by=by, type=type, level=level, at=at, n_grid=n_grid)

    def pairs(self, term: str, by: str | None = None, adjust: str = "tukey", type: str = "link"):
        return marginal.pairs(self, term, by=by, adjust=adjust, type=type)

    def effects(self, term: str, by: str | None = None, level: float | None = None, n_grid: int = 20):
        return marginal.effects(self, term, by=by, level=level, n_grid=n_grid)

    anova.__doc__ = GlmmResult.anova.__doc__
    emmeans.__doc__ = GlmmResult.emmeans.__doc__
    pairs.__doc__ = GlmmResult.pairs.__doc__
    effects.__doc__ = GlmmResult.effects.__doc__

    def anova_terms_document(self) -> dict | None:
        from glmmlab.engine.errors import GlmmInputError
        from glmmlab.engine.inference.results import _num

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
        return text.summary(self)

    summary.__doc__ = GlmmResult.summary.__doc__

    def _repr_html_(self) -> str:
        return text.render_html(self)

    def _refit_intervals(self, method: str, level: float, nsim: int, seed: int | None,
                         progress: Callable[[str, float], None] | None) -> tuple[list[str], Any, Any, dict]:
        if method == "profile":
            return profiling.profile(self, level, nsim, seed, progress)
        return bootstrap.boot_intervals(self, level, nsim, seed, progress)

    def _fixed_design(self, new_data: Any) -> tuple[np.ndarray, np.ndarray] | None:
        return prediction.fixed_design(self, new_data)


def fitted(result: GlmmResult) -> FittedModel:
    """``result`` as the fitted model users get."""
    return FittedModel.of(result)


def fit_spec(*args: Any, **kwargs: Any) -> FittedModel:
    """:func:`glmmlab.services.modeling.fitting.fit_spec`, as a fitted model."""
    return fitted(fitting.fit_spec(*args, **kwargs))


def fit_columns(*args: Any, **kwargs: Any) -> FittedModel:
    """:func:`glmmlab.services.modeling.fitting.fit_columns`, as a fitted model."""
    return fitted(fitting.fit_columns(*args, **kwargs))


def fit_frame_spec(*args: Any, **kwargs: Any) -> FittedModel:
    """:func:`glmmlab.services.modeling.fitting.fit_frame_spec`, as a fitted model."""
    return fitted(fitting.fit_frame_spec(*args, **kwargs))


def refit(result: GlmmResult, **kwargs: Any) -> FittedModel:
    """:func:`glmmlab.services.modeling.fitting.refit`, as a fitted model."""
    return fitted(fitting.refit(result, **kwargs))
