"""Adaptive quadrature for families with a dispersion (issue 13, point 14): the rule is centred and scaled on the
integrand actually integrated, exp(-sum dev / (2 phi) - u^2 / 2), so its value agrees with an accurate integral
(a fine trapezoid grid over each group's random effect) at the same (theta, beta, phi)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from glmmlab.engine.blocks import LocalBlocks, split_design
from glmmlab.engine.design import prepare
from glmmlab.engine.families import FAMILIES, LINKS
from glmmlab.engine.laplace import LaplaceObjective
from glmmlab.engine.pirls import row_state
from glmmlab.engine.quadrature import AgqObjective
from tests.conftest import REFERENCE


def _accurate(d, resp, link, theta, beta, phi) -> float:
    """-2 sum_j log int prod_i p(y_i | u) N(u; 0, 1) du (+2, lme4's convention) on a grid of 40,001 points."""
    grid = np.linspace(-20.0, 20.0, 40001)
    eta_fixed = d.X @ beta
    total = 0.0
    for j in range(d.n_groups):
        rows = slice(d.starts[j], d.starts[j] + d.counts[j])
        eta = (eta_fixed[rows][:, None] + theta * grid[None, :]).ravel()
        ys = np.repeat(d.y[rows], grid.size)  # row-major: each row's values over the grid
        sub = type(resp)(ys, resp.family)
        ll = sub.row_loglik(row_state(sub, eta, link).dev, phi).reshape(-1, grid.size).sum(axis=0)
        f = ll - 0.5 * grid * grid - 0.5 * np.log(2 * np.pi)
        m = f.max()
        total += m + np.log(np.trapezoid(np.exp(f - m), grid))
    return -2.0 * total + 2.0


@pytest.mark.parametrize("nodes", [5, 15])
def test_gamma_agq_equals_an_accurate_integral(nodes):
    ref = json.loads((REFERENCE / "sim_gamma_log.json").read_text())
    data = pd.read_csv(REFERENCE / "sim_gamma_log.csv")
    data = data[data["grp"].isin(sorted(data["grp"].unique())[:12])]  # 12 groups keep the grid integral quick
    fam, link = FAMILIES["gamma"], LINKS["log"]
    codes, levels = pd.factorize(data["grp"], sort=True)
    d = prepare(data["y"].to_numpy(float), [data[c].to_numpy(float) for c in ref["fixed"]], list(ref["fixed"]),
                codes, [str(v) for v in levels], fam, response="y", group_name="grp", intercept=True)
    blocks = LocalBlocks(split_design(d, "gamma", "log", 1))
    try:
        lap = LaplaceObjective(blocks, "gamma")
        agq = AgqObjective(lap, nodes, True)
        theta, beta = 0.6, np.array([0.9, 0.15, -0.1])  # scaled-design coefficients
        value = agq.value(np.concatenate([[theta], beta]))
        phi = lap.dispersion(theta, beta)
        assert phi < 0.6  # a dispersion far from 1: centring without it would miss
        accurate = _accurate(d, blocks.blocks[0].resp, link, theta, beta, phi)
        assert value == pytest.approx(accurate, rel=1e-9 if nodes == 15 else 1e-6)
    finally:
        blocks.close()
