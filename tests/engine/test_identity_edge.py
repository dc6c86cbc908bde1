"""Poisson with the identity link when fitted means sit at zero (issue 13, point 15).

Simulated data whose true means are max(0, ...): many rows have a mean of 0, so the likelihood's maximum lies on
the edge of the identity link's range. lme4 stops with NaN on such data. What must hold:
- the log-likelihood reported is the Laplace objective at the reported estimates, evaluated from scratch (cold
  modes), to 1e-9 relative, whatever the path of the optimiser (here: how the groups are cut into blocks);
- the conditional modes at a point do not depend on where the mode search starts;
- a fit either converges to a point at least as good as the GLM's own maximum (found independently here by a
  derivative-free search inside the feasible region), or says plainly that the maximum lies on the edge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import gammaln

import glmmlab
from glmmlab.engine.blocks import LocalBlocks, split_design
from glmmlab.engine.fit import prepare_fit
from glmmlab.engine.laplace import LaplaceObjective
from glmmlab.engine.pirls import find_modes


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n, G = 600, 30
    g = rng.integers(0, G, n)
    x = rng.uniform(0, 1, n)
    u = rng.normal(0, 0.3, G)
    mu = np.maximum(0.0, 0.02 + 3 * x + u[g] - 0.3)
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "g": g})


def _objective(data: pd.DataFrame) -> LaplaceObjective:
    codes, levels = pd.factorize(data["g"], sort=True)
    p = prepare_fit(data["y"].to_numpy(float), [data["x"].to_numpy(float)], ["x"], codes,
                    [str(v) for v in levels], family="poisson", link="identity")
    return LaplaceObjective(LocalBlocks(split_design(p.design, "poisson", "identity", 1)), "poisson")


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
    cold = -0.5 * _objective(data).value(np.asarray(r.optimization["final"]))
    assert cold == pytest.approx(r.log_likelihood, rel=1e-9, abs=1e-9)
    if r.converged:
        assert r.log_likelihood >= _glm_max(data) - 1e-6
    else:
        assert any("edge of what the identity link allows" in w for w in r.warnings)
        assert not any("did not converge within" in w for w in r.warnings)


def test_modes_do_not_depend_on_the_start(data):
    lap = _objective(data)
    blk = lap.blocks.blocks[0]
    theta, beta = 0.05, np.array([1.33, 0.78])
    eta_fixed = blk.X @ beta
    cold = find_modes(blk, blk.resp, blk.link, theta, eta_fixed, None)
    warm = find_modes(blk, blk.resp, blk.link, theta, eta_fixed, np.full(blk.n_groups, 2.0))
    assert cold[2] and warm[2]
    np.testing.assert_allclose(cold[0], warm[0], rtol=1e-9, atol=1e-9)


def test_a_mode_pinned_at_the_edge_makes_the_point_infeasible(data):
    # at the GLM's coefficients and theta = 0.13 some group's penalised deviance keeps falling towards the
    # edge (a row with y = 0 whose mean goes to 0): the Laplace deviance is +inf there, not a finite value
    # from modes that never converged
    lap = _objective(data)
    assert lap.value(np.array([0.13, 0.94394716, 0.55617587])) == np.inf
    assert np.isfinite(lap.value(np.array([0.01, 0.94394716, 0.55617587])))
