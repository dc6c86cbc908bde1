"""The response vector with the constants of its family computed once.

Everything the likelihood needs beyond the unit deviances depends on y alone, so it is computed here once per
fit: the log-density at the saturated mean (binomial, Poisson), sum(log y) (Gamma). For all four families
the conditional log-density of a row is  sat_i(phi) - dev_i / (2 phi), so the Laplace objective and the
quadrature need only the unit deviances.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.distributions import Family

LOG_2PI = float(np.log(2.0 * np.pi))


def minus2_loglik(family: str, const: dict, dev_sum: float) -> tuple[float, float, float]:
    """(A, c, phi): minus twice the conditional log-likelihood given the total deviance, dA/d(dev_sum), and
    the dispersion (the family's own rule; Gaussian and Gamma use lme4's phi = dev_sum / n and its "+2").
    ``const`` holds the row sums of :meth:`Response.constants` (n, sum_sat, sum_log_y)."""
    c = {"n": const["n"], "sat": const["sum_sat"], "sum_w_log_y": const["sum_log_y"]}
    return FAMILIES[family].minus2_loglik(dev_sum, c)


def add_constants(parts: list[dict]) -> dict:
    return {k: sum(p[k] for p in parts) for k in ("n", "sum_sat", "sum_log_y")}


class Response:
    # a zero or dispersion model's per-row designs and the zero model's offset, where the model has them
    zi_X: np.ndarray
    zi_off: np.ndarray | None
    disp_X: np.ndarray

    def __init__(self, y: np.ndarray, family: Family, trials: np.ndarray | None = None,
                 data: dict | None = None):
        self.y = y
        self.family = family
        self.n = y.shape[0]
        if trials is not None:  # the beta-binomial's trials: data of its density (Family.trials_from_weights)
            self.trials = trials
        for key, value in (data or {}).items():  # per-row designs of a zero or dispersion model (zi_X, disp_X)
            setattr(self, key, value)
        family.prepare_response(self)
        sat = getattr(self, "sat", None)
        self.sum_sat = float(np.sum(sat)) if sat is not None and not np.isscalar(sat) else (
            float(sat) * self.n if sat is not None else 0.0)  # type: ignore[arg-type]  # a number here

    def part(self, rows: slice) -> "Response":
        """The response of a run of its rows, with the per-row constants sliced, not computed again (the
        log-gamma of a count costs more than a pass of the fit)."""
        out = object.__new__(Response)
        for key, value in vars(self).items():
            is_rows = isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == self.n
            setattr(out, key, value[rows] if is_rows else value)
        out.n = out.y.shape[0]
        sat = getattr(out, "sat", None)
        out.sum_sat = float(np.sum(sat)) if sat is not None and not np.isscalar(sat) else (
            float(sat) * out.n if sat is not None else 0.0)  # type: ignore[arg-type]
        log_y = getattr(out, "log_y", None)
        if isinstance(log_y, np.ndarray):
            out.sum_log_y = float(np.sum(log_y))  # type: ignore[attr-defined]
        return out

    def with_family(self, family: Family) -> "Response":
        """This response for another member whose per-row constants are the same (a zero or dispersion model's
        other coefficients): nothing is computed again."""
        out = object.__new__(Response)
        out.__dict__.update(self.__dict__)
        out.family = family
        return out

    def constants(self) -> dict:
        """The sums over rows the likelihood needs besides the deviance (they add over blocks of rows)."""
        return {"n": self.n, "sum_sat": self.sum_sat, "sum_log_y": getattr(self, "sum_log_y", 0.0)}

    def minus2_loglik(self, dev_sum: float) -> tuple[float, float, float]:
        return minus2_loglik(self.family.name, self.constants(), dev_sum)

    def row_loglik(self, dev: np.ndarray, phi: float) -> np.ndarray:
        """log p(y_i | mu_i) from the unit deviances, at dispersion phi (families with a free dispersion)."""
        return self.family.row_loglik(self, dev, phi)
