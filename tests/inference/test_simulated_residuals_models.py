"""Simulated residuals of glmmTMB's model classes: zero-inflation (with random effects in the zero model), hurdles
(a zero model with a zero-truncated count part) and dispersion models, on the breadth reference data
(../shared/reference/breadth): the simulations have the fit's means, zero probabilities and dispersions, the
truncated draws have no zeros, and the tests read the salamanders as glmmTMB users know them (a Poisson model lacks
zeros and is overdispersed; a zero-inflated NB2 is not)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families import catalogue, distributions
from glmmlab.engine.inference import simulate as S
from glmmlab.engine.inference import simulate_models as M
from tests.conftest import REFERENCE

BREADTH = REFERENCE / "breadth"


def case(name: str):
    path = BREADTH / f"{name}.csv"
    if not path.exists():
        pytest.fail(f"reference data missing: {path}")
    spec = json.loads((BREADTH / f"{name}.json").read_text())
    family = {"Gamma": "gamma"}.get(spec["family"], spec["family"])
    extra = {"reml": False} if family == "gaussian" else {}
    return glmmlab.glmm(spec["formula"], pd.read_csv(path), family=family, link=spec["link"], zi=spec["zi"],
                        disp=spec["disp"], **extra)


@pytest.fixture(scope="module")
def sal() -> pd.DataFrame:
    path = BREADTH / "salamanders_zinb2.csv"
    if not path.exists():
        pytest.fail(f"reference data missing: {path}")
    return pd.read_csv(path)


def conditional_draws(fit, k=4000):
    inputs = M.row_inputs(fit, fit.model_frame())
    return inputs, inputs.draw(np.random.default_rng(0), k, conditional=True)


def assert_means(fit, sims):
    """Each row's simulated mean within 5 standard errors of the fit's mean of y (zero model included)."""
    z = (sims.mean(axis=1) - fit.fitted) / (sims.std(axis=1) / np.sqrt(sims.shape[1]))
    assert np.max(np.abs(z)) < 5.0


@pytest.mark.parametrize("kw", [dict(family="poisson", zi="~ mined"), dict(family="nbinom2", zi="~ mined"),
                                dict(family="nbinom1", zi="~ mined"), dict(family="poisson", zi="~ 1 + (1 | site)"),
                                dict(family="truncated_poisson", zi="~ mined"),
                                dict(family="truncated_nbinom1", zi="~ mined"), dict(family="nbinom2", disp="~ mined")],
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_simulations_have_the_fits_means_and_zero_probabilities(sal, kw):
    fit = glmmlab.glmm("count ~ mined + (1 | site)", sal, **kw)
    inputs, sims = conditional_draws(fit)
    assert_means(fit, sims)
    if inputs.zero is not None:
        p = inputs.zero.link.linkinv(inputs.zero.eta_fixed + inputs.zero.eta_modes)
        np.testing.assert_allclose(p, fit.row_extras["zi_prob"], rtol=1e-10)
        if kw["family"].startswith("truncated"):  # a hurdle: a zero only from the zero model
            share = np.mean(sims == 0, axis=1)
            z = (share - p) / np.sqrt(p * (1 - p) / sims.shape[1])
            assert np.max(np.abs(z)) < 5.0


def test_the_salamanders_read_as_known(sal):
    pois = glmmlab.glmm("count ~ mined + (1 | site)", sal, family="poisson").simulate_residuals(250, seed=1)
    assert pois.test_zero_inflation().p_value < 0.01 and pois.test_zero_inflation().statistic > 1.2
    assert pois.test_uniformity().p_value < 0.01
    zip_ = glmmlab.glmm("count ~ mined + (1 | site)", sal, family="poisson", zi="~ mined")
    t = zip_.simulate_residuals(250, seed=1, conditional=True)
    assert t.test_zero_inflation().p_value > 0.5  # the zeros are modelled now ...
    assert t.test_dispersion().p_value < 0.01 and t.test_dispersion().statistic > 1.5  # ... the spread is not
    zinb = glmmlab.glmm("count ~ mined + (1 | site)", sal, family="nbinom2", zi="~ mined")
    sr = zinb.simulate_residuals(250, seed=1)
    assert sr.test_uniformity().p_value > 0.05 and sr.test_dispersion().p_value > 0.05
    assert sr.test_zero_inflation().p_value > 0.5


def test_zero_model_random_effects_are_drawn_with_their_own_variance(sal):
    fit = glmmlab.glmm("count ~ mined + (1 | site)", sal, family="poisson", zi="~ 1 + (1 | site)")
    var = {(r["component"], r.get("model", "cond")): r["variance"] for r in fit.random_effects_table()
           if r["term"] is not None}
    inputs = M.row_inputs(fit, fit.model_frame())
    (cond,), (zi,) = inputs.mean.random, inputs.zero.random
    assert cond.chol[0, 0] ** 2 == pytest.approx(var[("site", "cond")], rel=1e-10)
    assert zi.chol[0, 0] ** 2 == pytest.approx(var[("site", "zi")], rel=1e-10)
    assert var[("site", "cond")] != pytest.approx(var[("site", "zi")], rel=1e-3)


@pytest.mark.parametrize("name", ["sim_gaussian_disp", "sim_gamma_disp"])
def test_a_dispersion_model_gives_each_row_its_variance(name):
    fit = case(name)
    _, sims = conditional_draws(fit)
    assert_means(fit, sims)
    d = np.asarray(fit.row_extras["dispersion"])  # glmmTMB's sigma: the SD, or 1 / sqrt(shape) for the Gamma
    want = d ** 2 if name == "sim_gaussian_disp" else (fit.fitted * d) ** 2
    v = sims.var(axis=1)
    m4 = np.mean((sims - sims.mean(axis=1, keepdims=True)) ** 4, axis=1)
    z = (v - want) / np.sqrt((m4 - v ** 2) / sims.shape[1])  # the sample variance's standard error per row
    assert np.max(np.abs(z)) < 6.0  # a Gamma's sample variance is skewed: its largest z of 2,000 rows runs high
    # pooled over tenths of the rows by dispersion, the simulated variance is the model's to 2 %
    tenth = np.minimum((np.argsort(np.argsort(d)) * 10) // d.size, 9)
    ratio = np.bincount(tenth, weights=v) / np.bincount(tenth, weights=want)
    assert np.all(np.abs(ratio - 1) < 0.02), ratio
    assert case(name).simulate_residuals(250, seed=2, conditional=True).test_uniformity().p_value > 0.01


@pytest.mark.parametrize("name", ["owls_zinb1", "salamanders_hurdle_nb2"])
def test_reference_zero_models_simulate(name):
    fit = case(name)
    _, sims = conditional_draws(fit, 2000)
    assert_means(fit, sims)
    sr = fit.simulate_residuals(250, seed=3)
    assert sr.residuals.shape == (fit.n_obs,) and 0 <= sr.test_zero_inflation().p_value <= 1


@pytest.mark.parametrize("family, mu, extra", [("poisson", 0.3, {}), ("negbin", 0.8, {"theta": 1.5}),
                                               ("nbinom1", 2.0, {"phi": 2.0})])
def test_truncated_draws_have_the_truncated_mean(family, mu, extra):
    fam = catalogue.FAMILIES[family]
    if extra:
        fam = fam.with_parameters(tuple(extra.values()))
    k = 200_000
    m = np.full((1, k), mu)
    y = S.truncated_redraw(fam, np.random.default_rng(1), fam.sample(np.random.default_rng(0), m, np.ones((1, 1)), 1.0),
                           m)
    assert np.all(y >= 1)
    p0 = np.exp(S.log_zero_probability(fam, np.array([mu])))[0]
    want = mu / (1 - p0)
    assert y.mean() == pytest.approx(want, abs=4 * y.std() / np.sqrt(k))


def test_truncated_draws_take_a_dispersion_per_row():
    from dataclasses import replace

    theta = np.array([[0.5], [5.0]])  # a dispersion model's theta per row, as a column
    fam = replace(distributions.negbin_family(1.0), parameter=theta, parameters=(theta,))
    k = 200_000
    m = np.full((2, k), 0.4)
    y = S.truncated_redraw(fam, np.random.default_rng(1), fam.sample(np.random.default_rng(0), m, np.ones((2, 1)), 1),
                           m)
    assert np.all(y >= 1)
    for i, th in enumerate(theta[:, 0]):
        p0 = (th / (th + 0.4)) ** th
        assert y[i].mean() == pytest.approx(0.4 / (1 - p0), abs=4 * y[i].std() / np.sqrt(k))


@pytest.mark.parametrize("name", ["sim_zigamma", "sim_t_disp", "sim_beta_disp"])
def test_local_reference_models_simulate_their_means(name):
    """A Gamma hurdle (ziGamma: exact zeros from the zero model, no truncation) and t and beta dispersion models,
    on data drawn from them (tests/reference/breadth_local): the simulations' means are the fit's and the
    residuals are uniform."""
    from pathlib import Path

    local = Path(__file__).resolve().parents[1] / "reference" / "breadth_local"
    spec = json.loads((local / f"{name}.json").read_text())
    family = {"Gamma": "gamma"}.get(spec["family"], spec["family"])
    fit = glmmlab.glmm(spec["formula"], pd.read_csv(local / f"{name}.csv"), family=family, link=spec.get("link"),
                       zi=spec.get("zi"), disp=spec.get("disp"))
    _, sims = conditional_draws(fit, 3000)
    assert_means(fit, sims)
    assert fit.simulate_residuals(250, seed=1, conditional=True).test_uniformity().p_value > 0.01
