"""The response vector with the constants of its family computed once.

Everything the likelihood needs beyond the unit deviances depends on y alone, so it is computed here once per
fit: the log-density at the saturated mean (binomial, Poisson), sum(log y) (Gamma). For all four families
the conditional log-density of a row is  sat_i(phi) - dev_i / (2 phi), so the Laplace objective and the
quadrature need only the unit deviances.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from glmmlab.engine.families import Family

LOG_2PI = float(np.log(2.0 * np.pi))


def minus2_loglik(family: str, const: dict, dev_sum: float) -> tuple[float, float, float]:
    """(A, c, phi): minus twice the conditional log-likelihood given the total deviance, dA/d(dev_sum), and
    the dispersion. Gaussian and Gamma use lme4's convention phi = dev_sum / n and add 2, as lme4 does.
    ``const`` holds the row sums of :meth:`Response.constants` (n, sum_sat, sum_log_y)."""
    n = const["n"]
    if family == "gaussian":
        phi = dev_sum / n
        return n * (LOG_2PI + np.log(phi) + 1.0) + 2.0, n / dev_sum, phi
    if family == "gamma":
        phi = dev_sum / n
        A = (2.0 * const["sum_log_y"] + n + 2.0 * n * (1.0 + np.log(phi)) / phi
             + 2.0 * n * special.gammaln(1.0 / phi) + 2.0)
        c = -2.0 * (np.log(phi) + special.digamma(1.0 / phi)) / (phi * phi)
        return float(A), float(c), phi
    return dev_sum - 2.0 * const["sum_sat"], 1.0, 1.0


def add_constants(parts: list[dict]) -> dict:
    return {k: sum(p[k] for p in parts) for k in ("n", "sum_sat", "sum_log_y")}


class Response:
    def __init__(self, y: np.ndarray, family: Family):
        self.y = y
        self.family = family
        self.n = y.shape[0]
        name = family.name
        if name == "binomial":
            if np.all((y == 0.0) | (y == 1.0)):
                self.ylogy = 0.0  # 0/1 data: zero in every row (a scalar saves a vector of the data's length)
            else:
                self.ylogy = special.xlogy(y, y) + special.xlogy(1.0 - y, 1.0 - y)
            self.sat = self.ylogy  # log p(y | mu = y) per row
        elif name == "poisson":
            self.ylogy = special.xlogy(y, y)
            self.sat = self.ylogy - y - special.gammaln(y + 1.0)
            self.pois_const = 2.0 * (self.ylogy - y)
        elif name == "gamma":
            self.log_y = np.log(y)
            self.sum_log_y = float(np.sum(self.log_y))
        self.sum_sat = float(np.sum(self.sat)) if hasattr(self, "sat") else 0.0

    def constants(self) -> dict:
        """The sums over rows the likelihood needs besides the deviance (they add over blocks of rows)."""
        return {"n": self.n, "sum_sat": self.sum_sat, "sum_log_y": getattr(self, "sum_log_y", 0.0)}

    def minus2_loglik(self, dev_sum: float) -> tuple[float, float, float]:
        return minus2_loglik(self.family.name, self.constants(), dev_sum)

    def row_loglik(self, dev: np.ndarray, phi: float) -> np.ndarray:
        """log p(y_i | mu_i) from the unit deviances, at dispersion phi (families with a free dispersion)."""
        name = self.family.name
        if name == "gamma":
            return -self.log_y - dev / (2.0 * phi) - (1.0 + np.log(phi)) / phi - special.gammaln(1.0 / phi)
        if name == "gaussian":
            return -0.5 * (LOG_2PI + np.log(phi)) - dev / (2.0 * phi)
        return self.sat - 0.5 * dev
