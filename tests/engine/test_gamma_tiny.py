"""Gamma responses far below their fitted mean: y/mu down to 1e-30 happens with shapes below 0.1. The unit
deviance keeps its digits there, IRLS starts where its first step stays sane, and the fit converges to a
log-likelihood checked independently: for lme4's criterion scipy's Gamma density at the GLM (the boundary optimum),
for the model's likelihood an independent Laplace evaluation (tests/engine/independent_laplace.py)."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from tests.engine import independent_laplace

getcontext().prec = 60


def test_gamma_unit_deviance_far_below_the_mean():
    mu = np.array([1.0, 3.0, 0.5, 2.0, 7.0])
    y = mu * np.array([1e-7, 1e-12, 1e-20, 1e-30, 0.5])
    ref = [float(-2 * ((Decimal(a) / Decimal(b)).ln() - (Decimal(a) - Decimal(b)) / Decimal(b)))
           for a, b in zip(y, mu)]
    np.testing.assert_allclose(FAMILIES["gamma"].unit_deviance(y, mu), ref, rtol=1e-13)


def _tiny_gamma_data() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n, G = 800, 40
    g = rng.integers(0, G, n)
    x = rng.normal(size=n)
    mu = np.exp(1 + 0.3 * x + rng.normal(scale=0.4, size=G)[g])
    y = rng.gamma(0.08, mu / 0.08)
    assert np.min(y / mu) < 1e-20  # the case: responses 20 orders of magnitude below their mean
    return pd.DataFrame({"y": y, "x": x, "g": g})


@pytest.mark.parametrize("door", ["random-intercept", "formula"])
def test_lme4_criterion_with_tiny_responses_converges_to_an_independently_checked_optimum(door):
    data = _tiny_gamma_data()
    if door == "random-intercept":
        res = glmmlab.fit_glmm(data, "y", "g", ["x"], family="gamma", link="log", dispersion="lme4")
    else:
        res = glmmlab.glmm("y ~ x + (1 | g)", data, family="gamma", link="log", dispersion="lme4")
    assert res.converged and np.isfinite(res.log_likelihood)
    # Here the optimum of lme4's criterion is the boundary theta = 0 (lme4 1.1-31 stops at theta = 0.94 with a
    # log-likelihood of 4708.16, 51 below it): the value must then be the GLM's, computed here with scipy's Gamma
    # density at lme4's dispersion convention phi = deviance / n and its "+2" (log-likelihood = sum log p - 1).
    assert res.theta[0] < 1e-4 and res.singular
    mu = np.asarray(res.fitted)
    y = data["y"].to_numpy()
    dev = float(np.sum(FAMILIES["gamma"].unit_deviance(y, mu)))
    phi = dev / len(y)
    independent = float(np.sum(stats.gamma.logpdf(y, a=1 / phi, scale=mu * phi))) - 1.0
    assert res.log_likelihood == pytest.approx(independent, abs=1e-6)
    assert res.log_likelihood > 4708.16 + 50


@pytest.mark.parametrize("door", ["random-intercept", "formula"])
def test_gamma_likelihood_with_tiny_responses_is_checked_independently(door):
    """The default (the dispersion estimated, glmmTMB's likelihood) on the same data: the log-likelihood is an
    independent Laplace evaluation (scipy's densities, per-group modes) at the estimates, and the estimates are
    a stationary point of that independent function."""
    data = _tiny_gamma_data()
    if door == "random-intercept":
        res = glmmlab.fit_glmm(data, "y", "g", ["x"], family="gamma", link="log")
    else:
        res = glmmlab.glmm("y ~ x + (1 | g)", data, family="gamma", link="log")
    assert res.converged and not res.singular
    y, g = data["y"].to_numpy(), data["g"].to_numpy()
    X = np.column_stack([np.ones(len(y)), data["x"].to_numpy()])
    sd, sigma = float(np.sqrt(res.variances[0]["variance"])), float(np.sqrt(res.var_residual))
    beta = np.asarray(res.beta, dtype=float)

    def ll(v):  # (log sd, beta, log sigma)
        return independent_laplace.loglik("gamma", "log", y, X, g, v[1:3], float(np.exp(v[0])), float(np.exp(v[3])))

    v = np.concatenate([[np.log(sd)], beta, [np.log(sigma)]])
    assert res.log_likelihood == pytest.approx(ll(v), abs=1e-5)
    h = 1e-4
    grad = [(ll(v + h * e) - ll(v - h * e)) / (2 * h) for e in np.eye(v.size)]
    assert np.max(np.abs(grad)) < 1e-2, grad
