"""Adaptive quadrature in the one engine: the rule is centred on the modes and scaled by the conditional SD of the
integrand actually integrated, exp(log p(y | u, phi) - u^2 / 2) with the dispersion phi a parameter, so its value
agrees with an accurate integral (a fine trapezoid grid over each group's random effect) at the same
(theta, beta, phi), with few nodes for a dispersion far from 1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmlab.engine.families.catalogue import resolve
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers.blocked_cholesky import Structure
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.quadrature import normal_nodes
from glmmlab.services.modeling.modelframe import build_model_frame
from tests.conftest import REFERENCE


def _accurate(mf, fam, lk, sd: float, beta: np.ndarray, phi: float) -> float:
    """sum_j log int prod_i p(y_i | x_i' beta + sd u) N(u; 0, 1) du on a grid of 20,001 points per group."""
    grid = np.linspace(-15.0, 15.0, 20001)
    eta_fixed = mf.X @ beta
    codes = np.asarray(mf.terms[0].codes)
    total = 0.0
    for j in range(len(mf.terms[0].levels)):
        rows = np.flatnonzero(codes == j)
        eta = eta_fixed[rows][:, None] + sd * grid[None, :]
        y = np.repeat(mf.y[rows][:, None], grid.size, axis=1)
        mu = lk.linkinv(eta)
        dev = fam.unit_deviance(y.ravel(), mu.ravel())
        ll = fam.loglik_rows(y.ravel(), dev, phi, np.ones(y.size)).reshape(y.shape).sum(axis=0)
        f = ll - 0.5 * grid * grid - 0.5 * np.log(2 * np.pi)
        m = f.max()
        total += m + np.log(np.trapezoid(np.exp(f - m), grid))
    return float(total)


@pytest.mark.parametrize("nodes", [5, 15])
def test_gamma_agq_equals_an_accurate_integral(nodes):
    data = pd.read_csv(REFERENCE / "sim_gamma_log.csv")
    data = data[data["grp"].isin(sorted(data["grp"].unique())[:12])]  # 12 groups keep the grid integral quick
    mf = build_model_frame(data, "y ~ x1 + x2 + (1 | grp)", family="gamma")
    fam, lk = resolve("gamma", "log")
    st = Structure(merge_terms(mf.terms))
    n = mf.n
    lap = GeneralLaplace(st, np.asarray(mf.X, dtype=float), mf.y, np.ones(n), np.zeros(n), fam, lk, "estimated")
    theta, beta, phi = 1.2, np.array([-0.2, 0.15, -0.1]), 0.09  # theta relative to sqrt(phi): an SD of 0.36
    z, w = normal_nodes(nodes)
    value = lap.agq(np.array([theta]), beta, z, w, phi)
    accurate = _accurate(mf, fam, lk, theta * np.sqrt(phi), beta, phi)
    assert value == pytest.approx(accurate, rel=1e-9 if nodes == 15 else 1e-6)
