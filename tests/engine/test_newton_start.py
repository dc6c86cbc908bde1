"""The one-random-intercept Laplace fit's Newton steps (engine/solvers/newton.py) stop once the next step promises a
fall below FALL_TOL, and a binomial model's start over the GLM's attenuation (glm_start.attenuation) reaches the
same optimum as the GLM's own start."""

from __future__ import annotations

import numpy as np
import pandas as pd

import glmmlab
from glmmlab.engine.families.catalogue import resolve
from glmmlab.engine.solvers import glm_start, laplace_start, newton


def test_newton_steps_stop_where_the_next_promises_less_than_the_tolerance():
    # f = sum(exp(x) - 2 x), its optimum log 2 in every coordinate, the exact Hessian at the start: Newton's
    # quadratic convergence, so each point's promised fall is about the square of the one before
    points = []

    def fg(x):
        points.append(x.copy())
        return float(np.sum(np.exp(x) - 2.0 * x)), np.exp(x) - 2.0

    def fall(x):  # the next Newton step's promised fall, 0.5 g' H^-1 g
        g = np.exp(x) - 2.0
        return 0.5 * float(np.sum(g * g / np.exp(x)))

    x0 = np.array([2.0, -1.0, 0.5])
    x, f, steps = newton.newton_run(fg, x0, np.full(3, -np.inf), lambda x_: np.diag(np.exp(x_)), lambda x_: False)
    assert np.array_equal(points[-1], x) and np.array_equal(steps[-1][1], x)  # nothing evaluated after it
    assert fall(x) <= newton.FALL_TOL  # within sqrt(FALL_TOL) standard errors of the optimum
    assert all(fall(p) > newton.FALL_TOL for _, p in steps[:-1])  # and not before
    np.testing.assert_allclose(x, np.log(2.0), rtol=0, atol=1e-6)


def test_attenuation_of_the_binomial_links():
    logit, probit, poisson = resolve("binomial", "logit"), resolve("binomial", "probit"), resolve("poisson", "log")
    assert glm_start.attenuation(*probit, 0.75) == 1.0 / np.sqrt(1.0 + 0.75 ** 2)
    c2 = (16.0 * np.sqrt(3.0) / (15.0 * np.pi)) ** 2  # 0.346
    assert abs(glm_start.attenuation(*logit, 2.0) - 1.0 / np.sqrt(1.0 + 4.0 * c2)) < 1e-15
    assert glm_start.attenuation(*poisson, 2.0) == 1.0


def test_the_attenuated_start_reaches_the_glm_starts_optimum(monkeypatch):
    rng = np.random.default_rng(8)
    n, groups = 20_000, 200
    g = rng.integers(0, groups, n)
    x1, x2 = rng.normal(size=n), rng.uniform(size=n) < 0.4
    eta = -0.6 + 0.5 * x1 - 0.4 * x2 + rng.normal(0.0, 1.1, groups)[g]
    df = pd.DataFrame({"y": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float), "x1": x1,
                       "x2": x2.astype(float), "g": g})
    fits = {}
    for link in ("logit", "probit"):
        fits[link] = glmmlab.fit_glmm(df, "y", "g", ["x1", "x2"], family="binomial", link=link)
    with monkeypatch.context() as m:
        m.setattr(laplace_start, "attenuation", lambda fam, lk, sd: 1.0)  # the GLM's own start
        for link in ("logit", "probit"):
            plain = glmmlab.fit_glmm(df, "y", "g", ["x1", "x2"], family="binomial", link=link)
            a = fits[link]
            assert abs(a.log_likelihood - plain.log_likelihood) < 1e-8
            assert np.max(np.abs(a.beta - plain.beta) / plain.se) < 1e-5
            assert abs(a.theta[0] - plain.theta[0]) < 1e-5 * plain.theta[0]
            # nearer the optimum: its SD start is closer, and it takes no more evaluations
            sd = plain.theta[0]
            assert abs(a.optimization["start"][0] - sd) < abs(plain.optimization["start"][0] - sd)
            assert a.optimization["evaluations"] <= plain.optimization["evaluations"]


def test_the_first_mode_search_starts_one_step_from_zero(monkeypatch):
    # big data's blocks (here two, forced) start their first mode search from start_modes: one penalised IRLS step
    # from u = 0 at the GLM's predictor, the moment sums' own rows; the same fit as from u = 0, in fewer row states
    from glmmlab.engine.solvers import laplace

    rng = np.random.default_rng(3)
    n, groups = 30_000, 300
    g = np.sort(rng.integers(0, groups, n))
    x1 = rng.normal(size=n)
    eta = 0.3 + 0.5 * x1 + rng.normal(0.0, 0.9, groups)[g]
    df = pd.DataFrame({"y": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float), "x1": x1, "g": g})
    states = []
    real = laplace.GeneralLaplace._state

    def counted(self, *args):
        states.append(1)
        return real(self, *args)

    monkeypatch.setattr(laplace.GeneralLaplace, "_state", counted)
    a = glmmlab.fit_glmm(df, "y", "g", ["x1"], family="binomial", n_blocks=2)
    with_start = len(states)
    states.clear()
    monkeypatch.setattr(laplace_start, "start_modes", lambda sums, sd: np.zeros(sums["W"].size))
    b = glmmlab.fit_glmm(df, "y", "g", ["x1"], family="binomial", n_blocks=2)
    assert abs(a.log_likelihood - b.log_likelihood) < 1e-8
    assert np.max(np.abs(a.beta - b.beta) / b.se) < 1e-5
    assert with_start < len(states)
