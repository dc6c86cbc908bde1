"""Predictions for new rows (a mixin of :class:`~glmmlab.engine.inference.results.GlmmResult`): the mean or the
linear predictor with or without the random effects, Wald confidence intervals of the population-level prediction,
an ordinal model's category probabilities; a formula's design for new rows comes from the services (``predictor``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.families.modelled import HURDLE_BASE
from glmmlab.engine.model.options import OPTIONS


class Prediction:
    """``predict``; the record's fields are GlmmResult's."""

    names: list
    beta: Any
    vcov_matrix: Any
    model: dict
    ordinal: Any
    link: Any
    family: Any
    predictor: Any

    def random_intercepts_for(self, groups: np.ndarray) -> np.ndarray:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self, new_data: Any, include_random: bool | None = None, type: str = "response",
                interval: str | None = None, level: float = 0.95) -> Any:
        """Predict for new rows (anything indexable by column name: pandas, polars, a dict of arrays).

        ``type`` is "response" (the mean) or "link" (the linear predictor). Groups not seen in the fit, or
        ``include_random=False``, get the population-level prediction (random intercept 0).

        ``interval="confidence"`` returns a pandas DataFrame with columns ``prediction``, ``lower`` and ``upper``:
        the population-level prediction x' beta (+ offsets; lme4's ``re.form = NA``) and its Wald interval at
        ``level``, x' beta -/+ z sqrt(x' V x) with V the fixed effects' covariance, on the link scale and, for
        ``type="response"``, mapped through the inverse link (so the bounds stay inside the mean's range).
        Random effects are not part of it: ``include_random=True`` is refused there.
        """
        if type not in ("response", "link"):
            raise ValueError("type must be 'response' or 'link'")
        if self.ordinal is not None and self.predictor is not None and interval is None:
            # an ordinal model: "link" the linear predictor, "response" each category's probability
            eta_fixed, random_part = self.predictor(new_data)
            eta = eta_fixed + random_part if include_random is not False else eta_fixed
            return eta if type == "link" else self.ordinal.probabilities_frame(eta)
        if self.ordinal is not None:
            raise GlmmInputError("predict: an ordinal model predicts from a formula fit without intervals; "
                                 "type='response' gives each category's probability")
        if type == "response" and (self.model.get("zi") or self.model.get("disp")
                                   or self.family in HURDLE_BASE):
            raise GlmmInputError(
                "predicting the mean of new rows of a model with a zero or dispersion model is not available yet: "
                "type='link' gives the mean's linear predictor; the fitted rows' means, zero probabilities and "
                "dispersions are in the fit's diagnostics (fitted_values, fitted_conditional, zi_prob, dispersion)")
        if interval is not None:
            return self._predict_interval(new_data, include_random, type, interval, level)
        include_random = True if include_random is None else include_random
        if self.predictor is not None:  # a general model: the services layer rebuilds its design for new rows
            eta_fixed, random_part = self.predictor(new_data)
            eta = eta_fixed + random_part if include_random else eta_fixed
            return eta if type == "link" else LINKS[self.link].linkinv(eta)
        eta, n_rows = self._simple_design(new_data)
        groups = np.asarray(new_data[self.model["group"]]) if include_random else None
        if n_rows is None:
            n_rows = len(groups) if groups is not None else len(next(iter(new_data.values())))
        eta = np.broadcast_to(np.asarray(eta @ self.beta if eta.ndim == 2 else eta, dtype=float), (n_rows,)).copy()
        if groups is not None:  # include_random
            eta += self.random_intercepts_for(groups)
        if type == "link":
            return eta
        return LINKS[self.link].linkinv(eta)

    def _fixed_design(self, new_data: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """(X, offset) of the fixed part on new rows from the model frame's recipe (the fitted model rebuilds a
        formula's design), or None: the random-intercept form's columns are read directly."""
        return None

    def _simple_design(self, new_data: Any) -> tuple[np.ndarray, int | None]:
        """X of the random-intercept form over numeric columns (the columns named as the coefficients), or the
        intercept alone as a 0-d array when no column is named; and the number of rows (None: not known)."""
        cols: list[np.ndarray | None] = []
        n_rows: int | None = None
        for name in self.names:
            if name == "(Intercept)":
                cols.append(None)
                continue
            col = np.asarray(new_data[name], dtype=float)
            n_rows = col.shape[0]
            cols.append(col)
        if n_rows is None:
            return np.asarray(float(self.beta[0]) if len(self.beta) else 0.0), None
        return np.column_stack([np.ones(n_rows) if c is None else c for c in cols]), n_rows

    def _predict_interval(self, new_data: Any, include_random: bool | None, type: str, interval: str,
                          level: float):
        import pandas as pd

        if interval != "confidence":
            raise GlmmInputError(f"interval must be 'confidence' (or None); got {interval!r}")
        if include_random:
            raise GlmmInputError("interval='confidence' is the interval of the population-level prediction (the "
                                 "fixed effects, random effects 0, as lme4's re.form = NA); leave include_random "
                                 "out or set it to False")
        try:
            level = OPTIONS["conf_level"].check(level)
        except GlmmInputError as exc:
            raise GlmmInputError(str(exc).replace("conf_level", "level", 1)) from None
        design = self._fixed_design(new_data)
        if design is not None:
            X, offset = design
        else:
            X, n_rows = self._simple_design(new_data)
            if n_rows is None:
                n_rows = len(next(iter(new_data.values()))) if hasattr(new_data, "values") else 1
                X = np.ones((n_rows, 1))
            offset = np.zeros(X.shape[0])
        eta = X @ np.asarray(self.beta, dtype=float) + offset
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", X, np.asarray(self.vcov_matrix, dtype=float), X), 0.0))
        z = float(special.ndtri(0.5 + level / 2.0))
        lower, upper = eta - z * se, eta + z * se
        if type == "response":
            inv = LINKS[self.link].linkinv
            eta, a, b = inv(eta), inv(lower), inv(upper)
            lower, upper = np.minimum(a, b), np.maximum(a, b)  # a decreasing link (inverse) swaps the ends
        return pd.DataFrame({"prediction": eta, "lower": lower, "upper": upper})
