"""Crossed random intercepts with a sparse coupling start REML from moments of the residuals
(reml.moment_start) instead of lme4's start and the halving scan: the fit reaches the same optimum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers import reml, structure
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.modeling.modelframe import build_model_frame


def crossed_lmm(n: int = 3000, users: int = 200, movies: int = 60, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = rng.choice(users, n, p=(r := rng.lognormal(0, 1.0, users)) / r.sum())
    m = rng.choice(movies, n, p=(r := rng.lognormal(0, 1.0, movies)) / r.sum())
    x = rng.normal(size=n)
    y = 3.0 + 0.3 * x + rng.normal(0, 0.5, users)[u] + rng.normal(0, 0.7, movies)[m] + rng.normal(0, 0.9, n)
    return pd.DataFrame({"y": y, "x": x, "user": [f"u{v}" for v in u], "movie": [f"m{v}" for v in m]})


FORMULA = "y ~ x + (1 | user) + (1 | movie)"


def test_moment_start_is_near_the_optimum_and_the_fit_unchanged(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)  # the sparse coupling path at a small size
    df = crossed_lmm()
    mf = build_model_frame(df, FORMULA, family="gaussian")
    st = Structure(merge_terms(mf.terms))
    Xs = np.column_stack([np.ones(mf.n), df["x"].to_numpy()])
    beta0 = np.linalg.lstsq(Xs, mf.y, rcond=None)[0]
    start = reml.moment_start(st, Xs, mf.y, np.ones(mf.n), beta0)
    assert start is not None and start.shape == (2,)

    fit = glmmlab.glmm(FORMULA, df, family="gaussian").to_dict()
    monkeypatch.setattr(reml, "moment_start", lambda *a: None)  # lme4's start and the scan
    usual = glmmlab.glmm(FORMULA, df, family="gaussian").to_dict()

    theta = np.asarray(fit["optimization"]["final"], dtype=float)
    assert fit["optimization"]["start"] == pytest.approx(list(start), rel=1e-12)
    assert usual["optimization"]["start"] == [1.0, 1.0]
    # the moments land within a few per cent of the REML optimum, ...
    np.testing.assert_allclose(start, theta[[1, 0]] if st.blocks[0].component == "movie" else theta, rtol=0.1)
    # ... and the fit from there is the usual one
    assert fit["fit"]["log_likelihood"] == pytest.approx(usual["fit"]["log_likelihood"], abs=1e-6)
    np.testing.assert_allclose(theta, usual["optimization"]["final"], rtol=1e-5)
    assert_same_fixed_effects(fit, usual)
    assert fit["optimization"]["evaluations"] < usual["optimization"]["evaluations"]


def assert_same_fixed_effects(fit: dict, usual: dict) -> None:
    """Two fits' records (``to_dict``) with the same fixed effects and standard errors."""
    for a, b in zip(fit["fixed_effects"], usual["fixed_effects"]):
        assert a["estimate"] == pytest.approx(b["estimate"], rel=1e-7, abs=1e-9)
        assert a["std_error"] == pytest.approx(b["std_error"], rel=1e-6)


def test_no_moment_start_for_nested_factors_or_slopes(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    rng = np.random.default_rng(1)
    n = 400
    g, k = rng.integers(0, 40, n), rng.integers(0, 15, n)
    y = rng.normal(0, 1, 40)[g] + rng.normal(0, 1, 15)[k] + rng.normal(0, 1, 10)[g // 4] + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": rng.normal(size=n), "g": [f"g{v}" for v in g],
                       "h": [f"h{v // 4}" for v in g], "k": [f"k{v}" for v in k]})  # h: groups of 4 levels of g
    X = np.ones((n, 1))
    for formula, expected in (("y ~ 1 + (1 | g) + (1 | k)", True), ("y ~ 1 + (1 | g) + (1 | h)", False),
                              ("y ~ 1 + (0 + x | g) + (1 | k)", False)):
        mf = build_model_frame(df, formula, family="gaussian")
        st = Structure(merge_terms(mf.terms))
        assert not st.dense
        start = reml.moment_start(st, X, mf.y, np.ones(n), np.zeros(1))
        assert (start is not None) == expected, formula
