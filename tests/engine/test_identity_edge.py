"""Poisson with the identity link when fitted means sit at zero (issue 13, point 15).

Simulated data whose true means are max(0, ...): many rows have a mean of 0, so the likelihood's maximum lies on
the edge of the identity link's range. lme4 stops with NaN on such data. What must hold:
- the log-likelihood reported is the Laplace objective at the reported estimates, evaluated from scratch (cold
  modes), to 1e-9 relative, whatever the path of the optimiser (here: how the groups are cut into blocks);
- the conditional modes at a point do not depend on where the mode search starts;
- a fit either converges to a point at least as good as the GLM's own maximum (found independently here by a
  derivative-free search inside the feasible region), or says plainly that the maximum lies on the edge.
The objective is the general engine's Laplace deviance (:class:`GeneralLaplace`) on the rows in level order, in
the optimiser's coordinates (theta, then the coefficients of the scaled design).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import gammaln

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.terms import RandomTerm, merge_terms
from glmmlab.engine.solvers.blocked_cholesky import Structure
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.services.modeling.modelframe import build_model_frame


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n, G = 600, 30
    g = rng.integers(0, G, n)
    x = rng.uniform(0, 1, n)
    u = rng.normal(0, 0.3, G)
    mu = np.maximum(0.0, 0.02 + 3 * x + u[g] - 0.3)
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": g})


def _objective(data: pd.DataFrame) -> tuple[GeneralLaplace, np.ndarray]:
    """The Laplace deviance of y ~ x + (1 | g), Poisson identity, built from scratch; and T (beta = T gamma)."""
    mf = build_model_frame(data, "y ~ x + (1 | g)", family="poisson")
    t = mf.terms[0]
    order = np.argsort(np.asarray(t.codes), kind="stable")
    term = RandomTerm(t.component, np.asarray(t.codes)[order], t.levels, np.ones((mf.n, 1)), ["(Intercept)"])
    Xs, T, _, _ = scaled_design(mf.X[order], mf.x_names)
    ones, zeros = np.ones(mf.n), np.zeros(mf.n)
    lap = GeneralLaplace(Structure(merge_terms([term])), Xs, mf.y[order], ones, zeros, FAMILIES["poisson"],
                         LINKS["identity"])
    return lap, T


def _glm_max(data: pd.DataFrame) -> float:
    y, x = data["y"].to_numpy(float), data["x"].to_numpy(float)

    def nll(b: np.ndarray) -> float:
        mu = b[0] + b[1] * x
        return 1e300 if np.any(mu <= 0) else -float(np.sum(y * np.log(mu) - mu - gammaln(y + 1)))

    res = minimize(nll, [0.5, 1.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10,
                                                                   "maxiter": 5000})
    return -float(res.fun)


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_reported_value_is_the_objective_at_the_estimates(data, n_blocks):
    r = glmmlab.glmm("y ~ x + (1 | g)", data, family="poisson", link="identity", n_blocks=n_blocks)
    assert np.isfinite(r.log_likelihood)
    lap, _ = _objective(data)
    cold = -0.5 * lap.value(np.asarray(r.optimization["final"]))
    assert cold == pytest.approx(r.log_likelihood, rel=1e-9, abs=1e-9)
    if r.converged:
        assert r.log_likelihood >= _glm_max(data) - 1e-6
    else:
        assert any("edge of what the identity link allows" in w for w in r.warnings)
        assert not any("did not converge within" in w for w in r.warnings)


def test_modes_do_not_depend_on_the_start(data):
    lap, T = _objective(data)
    theta, gamma = np.array([0.05]), np.linalg.solve(T, np.array([1.33, 0.78]))
    cold = lap.pirls(theta, gamma, np.zeros(30))
    warm = lap.pirls(theta, gamma, np.full(30, 2.0))
    assert cold["converged"] and warm["converged"]
    np.testing.assert_allclose(cold["u"], warm["u"], rtol=1e-9, atol=1e-9)
