"""What an ordinal (cumulative-link) fit reports beyond the other families: the thresholds with their standard
errors, the SE of each random term's log SD (``ordinal::clmm``'s variance parameter), and per row the category
probabilities at the conditional modes and the fitted probability of the observed category (clmm's fitted
values).

Every row's linear predictor at the modes is kept (x'beta + offset + the random effects), so the probabilities
are computed from it when asked for, not stored."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import special

from glmmlab.engine.families.ordinal import category_probabilities
from glmmlab.engine.inference.wald import wald


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True, eq=False)
class OrdinalFit:
    """The ordinal part of a fit's record."""

    link: str
    levels: list[str]  # the response's categories, lowest first
    names: list[str]  # the thresholds' names: "1|2", "2|3", ... (clmm's)
    thresholds: np.ndarray
    vcov: np.ndarray  # the thresholds' covariance (clmm's vcov block: the inverse Hessian over every parameter)
    se_log_sd: dict  # {grouping factor: SE of log SD} of each scalar random term (None where not defined)
    codes: np.ndarray  # each row's category number, 1 .. K, in the frame's order
    eta: np.ndarray  # each row's linear predictor at the modes, in the frame's order

    def reordered(self, order: np.ndarray) -> "OrdinalFit":
        """The same with its per-row arrays put back in the frame's order (``order``: the position in the frame
        of each row as the fit ran them)."""
        def back(a: np.ndarray) -> np.ndarray:
            out = np.empty_like(a)
            out[order] = a
            return out

        return replace(self, codes=back(self.codes), eta=back(self.eta))

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.vcov), 0.0))

    def category_probabilities(self) -> np.ndarray:
        """P(Y_i = k) at the modes: rows x categories."""
        return category_probabilities(self.link, self.thresholds, self.eta)

    def fitted_probabilities(self) -> np.ndarray:
        """P(Y_i = y_i) at the modes (clmm's fitted values)."""
        probs = self.category_probabilities()
        return probs[np.arange(probs.shape[0]), self.codes - 1]

    def probabilities_frame(self, eta: np.ndarray):
        """A DataFrame of P(Y = k) at linear predictors ``eta`` (new rows): one column per category."""
        import pandas as pd

        return pd.DataFrame(category_probabilities(self.link, self.thresholds, np.asarray(eta, dtype=float)),
                            columns=list(self.levels))

    def table(self, conf_level: float) -> list[dict]:
        """The thresholds' table: name, estimate, std_error, statistic (z), p_value, lower, upper (Wald)."""
        se = self.se
        lower, upper = wald(self.thresholds, se, conf_level)
        rows = []
        for k, name in enumerate(self.names):
            z = self.thresholds[k] / se[k] if se[k] > 0 else np.nan
            rows.append({"threshold": name, "estimate": _num(self.thresholds[k]), "std_error": _num(se[k]),
                         "statistic": _num(z), "p_value": _num(2.0 * special.ndtr(-abs(z))) if np.isfinite(z)
                         else None, "lower": _num(lower[k]), "upper": _num(upper[k])})
        return rows

    def document(self, diagnostics: bool = True) -> dict:
        """The JSON document's ``ordinal`` block: the categories and link, the log SDs' SEs and, with the
        diagnostics, the per-row probabilities."""
        out: dict = {"levels": list(self.levels), "link": self.link,
                     "se_log_sd": {k: _num(v) for k, v in self.se_log_sd.items()}}
        if diagnostics:
            probs = self.category_probabilities()
            out["linear_predictor"] = [_num(v) for v in self.eta]
            out["fitted_probability"] = [_num(v) for v in probs[np.arange(probs.shape[0]), self.codes - 1]]
            out["category_probabilities"] = [[_num(v) for v in row] for row in probs]
        return out
