"""Crossed random intercepts under the Laplace approximation start each factor's theta at its own moment estimate
and take Newton steps from there (laplace_start, crossed_modes.crossed_intercepts): the same optimum as L-BFGS-B
from lme4's start, in fewer evaluations, on the sparse coupling (the English Lexicon Project's shape) and the dense
one (VerbAgg's); and the REML Newton steps of crossed_newton stop with the criterion within their bound of the
optimum their further steps reach."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.solvers import crossed_modes, crossed_newton, laplace_start, structure
from glmmlab.engine.solvers.glm_start import moment_theta
from tests.engine.test_crossed_reml_start import FORMULA, crossed_lmm
from tests.engine.test_crossed_sparse_gradient import crossed, laplace

BINOMIAL = "y ~ x + (1 | item) + (1 | subject)"


def _fit(df, formula=BINOMIAL, family="binomial"):
    return glmmlab.glmm(formula, df, family=family).to_dict()


@pytest.mark.parametrize("sparse", [True, False])
def test_moment_start_and_newton_steps_reach_the_usual_optimum(sparse, monkeypatch):
    if sparse:
        monkeypatch.setattr(structure, "DENSE_COUPLING", 0)  # the sparse coupling path at a small size
    df = crossed(n=6000, items=800, subjects=120, seed=5)
    fit = _fit(df)
    monkeypatch.setattr(laplace_start, "crossed_intercepts", lambda st, crossing=None: False)
    usual = _fit(df)
    assert fit["optimization"]["start"][:2] != usual["optimization"]["start"][:2]  # lme4's start there: 1, 1
    assert fit["fit"]["log_likelihood"] == pytest.approx(usual["fit"]["log_likelihood"], abs=1e-7)
    np.testing.assert_allclose(fit["optimization"]["final"], usual["optimization"]["final"], rtol=1e-5, atol=1e-7)
    assert fit["optimization"]["evaluations"] < usual["optimization"]["evaluations"]


def test_the_start_is_each_factors_moment_estimate(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    df = crossed(n=6000, items=800, subjects=120, seed=6)
    st, lap, b0 = laplace(BINOMIAL, df, "binomial", "logit")
    assert crossed_modes.crossed_intercepts(st)
    fam, lk = FAMILIES["binomial"], LINKS["logit"]
    want = [moment_theta(lap.Xs, lap.y, lap.pw, lap.off, b0, fam, lk, np.asarray(b.codes, dtype=np.intp),
                         b.n_levels, False) for b in st.blocks]
    start = _fit(df)["optimization"]["start"][:2]
    np.testing.assert_allclose(start, want, rtol=1e-6)  # the GLM's beta the fit starts from: its own IRLS


def test_nested_factors_keep_lme4s_start():
    rng = np.random.default_rng(4)
    n, outer = 3000, 30
    g = rng.integers(0, outer, n)
    h = g * 10 + rng.integers(0, 10, n)  # h nests in g
    x = rng.normal(size=n)
    eta = 0.3 * x + rng.normal(0, 0.7, outer)[g] + rng.normal(0, 0.5, outer * 10)[h]
    df = pd.DataFrame({"y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float), "x": x,
                       "g": [f"g{v}" for v in g], "h": [f"h{v}" for v in h]})
    st, _, _ = laplace("y ~ x + (1 | g) + (1 | h)", df, "binomial", "logit")
    assert not crossed_modes.crossed_intercepts(st)


def test_reml_newton_steps_stop_within_their_bound(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    df = crossed_lmm(seed=11)
    bound = crossed_newton.REMAINING
    fit = _fit(df, FORMULA, "gaussian")
    monkeypatch.setattr(crossed_newton, "REMAINING", 0.0)  # on until a step is below DONE
    further = _fit(df, FORMULA, "gaussian")
    assert fit["optimization"]["optimizer"].startswith("Newton steps")
    assert further["optimization"]["evaluations"] >= fit["optimization"]["evaluations"]
    gap = 2.0 * (further["fit"]["log_likelihood"] - fit["fit"]["log_likelihood"])  # in -2 log L
    assert -1e-9 <= gap <= bound
