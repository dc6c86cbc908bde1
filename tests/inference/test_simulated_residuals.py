"""Simulation-based scaled residuals (DHARMa's ``simulateResiduals``): a stored case whose residuals and tests were
derived by hand (tests/reference/dharma/stored_case.json), a brute-force reference of the randomised ECDF, the
samplers' moments, and statistical checks on data simulated from the model: residuals uniform for a correct model,
and the zero-inflation and dispersion tests finding what they should."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families import catalogue, distributions, glmmtmb
from glmmlab.engine.inference import simulate as S
from glmmlab.engine.inference import simulate_models as M

CASE = json.loads((Path(__file__).resolve().parents[1] / "reference" / "dharma" / "stored_case.json").read_text())


def pit_stream(seed: int) -> np.random.Generator:
    """The residuals' randomisation stream of a seed (the second child of its SeedSequence)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])


# -- the stored case -------------------------------------------------------------------------------------------
def test_stored_case_residuals_lie_where_counted_by_hand():
    sim = S.create(CASE["simulated"], CASE["observed"], CASE["fitted"], seed=11)
    lower, upper = np.array(CASE["lower"]), np.array(CASE["upper"])
    u = pit_stream(11).random(lower.size)  # one draw per row, in row order
    expected = np.where(upper > lower, lower + u * (upper - lower), lower)
    np.testing.assert_allclose(sim.residuals, expected, rtol=0, atol=1e-12)
    assert np.all((sim.residuals >= lower) & (sim.residuals <= upper))
    # rows without ties are not randomised: above all (1), below all (0), a continuous value between (0.5)
    assert sim.residuals[2] == 1.0 and sim.residuals[3] == 0.0 and sim.residuals[4] == 0.5


def test_stored_case_tests_as_worked_by_hand():
    sim = S.create(CASE["simulated"], CASE["observed"], CASE["fitted"], seed=11)
    exp = CASE["expected"]
    assert sim.zeros_observed == exp["zeros_observed"]
    assert sim.zeros_simulated.tolist() == exp["zeros_simulated"]
    zi = S.zero_inflation_test(sim)
    assert zi.statistic == pytest.approx(3 / 1.8, rel=1e-12)
    assert zi.p_value == pytest.approx(exp["zero_inflation_p_two_sided"], abs=1e-12)
    # the dispersion statistic by a plain loop: var(observed - fitted) / mean_j var(simulated_j - fitted)
    obs, fit, sims = CASE["observed"], CASE["fitted"], CASE["simulated"]
    observed = statistics.variance([o - f for o, f in zip(obs, fit)])
    per_sim = [statistics.variance([sims[i][j] - fit[i] for i in range(len(obs))]) for j in range(len(sims[0]))]
    disp = S.dispersion_test(sim)
    assert disp.statistic == pytest.approx(observed / statistics.mean(per_sim), rel=1e-12)
    ge = sum(v >= observed for v in per_sim) / len(per_sim)
    le = sum(v <= observed for v in per_sim) / len(per_sim)
    assert disp.p_value == pytest.approx(min(1.0, 2 * min(ge, le)), abs=1e-12)


def brute_force_pit(sims: np.ndarray, obs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """DHARMa's PIT residuals row by row: the ECDF below and at the observed value, randomised between."""
    out = []
    for i in range(len(obs)):
        row = list(sims[i])
        below = sum(1 for v in row if v < obs[i]) / len(row)
        at_or_below = sum(1 for v in row if v <= obs[i]) / len(row)
        out.append(below + u[i] * (at_or_below - below) if at_or_below != below else below)
    return np.array(out)


def test_pit_matches_a_row_by_row_reference():
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.5, (60, 40)).astype(float)
    cont = rng.gamma(2.0, 1.0, (40, 40)) * (rng.random((40, 40)) > 0.3)  # continuous with exact zeros
    sims = np.vstack([counts, cont])
    obs = np.concatenate([rng.poisson(1.5, 60), np.where(rng.random(40) > 0.5, 0.0, rng.gamma(2.0, 1.0, 40))])
    got = S.pit_residuals(sims, obs, np.random.default_rng(9))
    want = brute_force_pit(sims, obs, np.random.default_rng(9).random(obs.size))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14)


def test_simulation_p_value_is_dharmas_getp():
    sims = np.arange(1.0, 11.0)
    assert S.simulation_p_value(sims, 8.0) == pytest.approx(0.6)  # 3 of 10 >= 8, 8 of 10 <= 8
    assert S.simulation_p_value(sims, 11.0) == 0.0
    assert S.simulation_p_value(sims, 8.0, "greater") == pytest.approx(0.3)
    assert S.simulation_p_value(sims, 8.0, "less") == pytest.approx(0.8)
    with pytest.raises(glmmlab.GlmmInputError, match="alternative"):
        S.simulation_p_value(sims, 8.0, "both")


# -- the samplers ------------------------------------------------------------------------------------------------
MU = np.array([0.3, 2.0, 7.0])
PROB = np.array([0.2, 0.5, 0.9])
PW = np.array([1.0, 3.0, 1.0])


@pytest.mark.parametrize("name, family, mu, phi, var", [
    ("gaussian", catalogue.FAMILIES["gaussian"], MU, 2.0, 2.0 / PW),
    ("poisson", catalogue.FAMILIES["poisson"], MU, 1.0, MU),
    ("gamma", catalogue.FAMILIES["gamma"], MU, 0.5, 0.5 * MU ** 2 / PW),
    ("negbin", distributions.negbin_family(2.5), MU, 1.0, MU + MU ** 2 / 2.5),
    ("nbinom1", glmmtmb.nbinom1_family(1.5), MU, 1.0, MU * 2.5),
    ("tweedie", glmmtmb.tweedie_family(1.2, 1.4), MU, 1.0, 1.2 * MU ** 1.4),
    ("t_family", glmmtmb.t_family(0.7, 5.0), MU, 1.0, np.full(3, 0.49 * 5 / 3)),
    ("beta_family", glmmtmb.beta_family(8.0), PROB, 1.0, PROB * (1 - PROB) / 9.0),
    ("binomial", catalogue.FAMILIES["binomial"], PROB, 1.0, PROB * (1 - PROB) / np.rint(PW)),
    ("betabinomial", glmmtmb.betabinomial_family(4.0), PROB, 1.0,
     PROB * (1 - PROB) / np.rint(PW) * (np.rint(PW) + 4.0) / 5.0),
])
def test_samplers_draw_the_family_mean_and_variance(name, family, mu, phi, var):
    """Each family's sampler on an (n, k) matrix of means: its mean and variance per row within 4 standard errors
    of the family's (the variance's standard error from the draws' fourth moment)."""
    k = 200_000
    y = family.sample(np.random.default_rng(1), np.repeat(mu[:, None], k, axis=1), PW[:, None], phi)
    assert y.shape == (3, k)
    mean, v = y.mean(axis=1), y.var(axis=1)
    assert np.all(np.abs(mean - mu) < 4 * np.sqrt(var / k)), (mean, mu)
    m4 = np.mean((y - mean[:, None]) ** 4, axis=1)
    assert np.all(np.abs(v - var) < 4 * np.sqrt((m4 - v ** 2) / k)), (v, var)


def test_beta_samplers_take_a_mean_rounded_to_the_edge():
    rng = np.random.default_rng(0)
    edge = np.array([0.0, 1.0])
    assert np.all(np.isfinite(glmmtmb.beta_family(5.0).sample(rng, edge, np.ones(2), 1.0)))
    assert np.all(np.isfinite(glmmtmb.betabinomial_family(5.0).sample(rng, edge, np.full(2, 4.0), 1.0)))


# -- from a fit --------------------------------------------------------------------------------------------------
def data(family: str, n: int = 1500, groups: int = 40, seed: int = 1, zi: float = 0.0, size: float = 2.0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.5, groups)[g]
    mu, p = np.exp(eta), 1 / (1 + np.exp(-eta))
    y = {"poisson": lambda: rng.poisson(mu), "binomial": lambda: rng.binomial(1, p),
         "gaussian": lambda: eta + rng.normal(size=n),
         "negbin": lambda: rng.negative_binomial(size, size / (size + mu)),
         "beta_family": lambda: rng.beta(p * 10, (1 - p) * 10)}[family]()
    if zi:
        y = y * (rng.random(n) >= zi)
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"g{v}" for v in g]})


@pytest.mark.parametrize("family", ["poisson", "binomial", "gaussian", "negbin", "beta_family"])
@pytest.mark.parametrize("conditional", [False, True])
def test_residuals_are_uniform_for_the_true_model(family, conditional):
    fit = glmmlab.glmm("y ~ x + (1 | g)", data(family), family=family)
    sr = fit.simulate_residuals(250, seed=5, conditional=conditional)
    assert sr.residuals.shape == (1500,)
    assert sr.test_uniformity().p_value > 0.01
    assert sr.test_dispersion().p_value > 0.01


def test_integer_residuals_need_the_randomisation():
    """Without the randomisation the residuals of counts are not uniform (the check above can fail)."""
    fit = glmmlab.glmm("y ~ x + (1 | g)", data("poisson"), family="poisson")
    inputs = M.row_inputs(fit, fit.model_frame())
    sim = S.simulate(inputs, fit.model_frame().y, 250, seed=5, keep=True)
    obs = sim.observed[:, None]
    plain = np.mean(sim.simulated <= obs, axis=1)  # the ECDF at the value, no randomisation
    assert S.uniformity_test(plain).p_value < 1e-6
    assert S.uniformity_test(sim.residuals).p_value > 0.01


def test_zero_inflation_test_finds_zero_inflated_poisson():
    zip_fit = glmmlab.glmm("y ~ x + (1 | g)", data("poisson", zi=0.25), family="poisson")
    t = zip_fit.simulate_residuals(250, seed=2).test_zero_inflation()
    assert t.p_value < 0.01 and t.statistic > 1
    plain = glmmlab.glmm("y ~ x + (1 | g)", data("poisson"), family="poisson")
    assert plain.simulate_residuals(250, seed=2).test_zero_inflation().p_value > 0.01


def test_dispersion_test_finds_overdispersion():
    fit = glmmlab.glmm("y ~ x + (1 | g)", data("negbin", size=1.0), family="poisson")
    t = fit.simulate_residuals(250, seed=3, conditional=True).test_dispersion()
    assert t.p_value < 0.01 and t.statistic > 1.5
    # the same data under the family that generated them
    nb = glmmlab.glmm("y ~ x + (1 | g)", data("negbin", size=1.0), family="nbinom2")
    assert nb.simulate_residuals(250, seed=3, conditional=True).test_dispersion().p_value > 0.01


def test_the_same_seed_gives_the_same_residuals():
    fit = glmmlab.glmm("y ~ x + (1 | g)", data("poisson", n=400), family="poisson")
    a, b = fit.simulate_residuals(100, seed=7), fit.simulate_residuals(100, seed=7)
    np.testing.assert_array_equal(a.residuals, b.residuals)
    assert a.test_dispersion() == b.test_dispersion()
    assert not np.array_equal(a.residuals, fit.simulate_residuals(100, seed=8).residuals)


def test_the_run_reads_its_own_simulations():
    """The residuals and the tests' statistics of a run equal those recomputed by brute force from the simulated
    matrix it kept, with the seed's randomisation stream."""
    fit = glmmlab.glmm("y ~ x + (1 | g)", data("negbin", n=300), family="nbinom2")
    sr = fit.simulate_residuals(60, seed=4)
    sims, obs = sr.simulated, sr.simulation.observed
    np.testing.assert_allclose(sr.residuals, brute_force_pit(sims, obs, pit_stream(4).random(obs.size)), atol=1e-14)
    fitted = sr.predicted
    spread = [statistics.variance(list(sims[:, j] - fitted)) for j in range(sims.shape[1])]
    np.testing.assert_allclose(sr.simulation.spread_simulated, spread, rtol=1e-10)
    assert sr.simulation.zeros_simulated.tolist() == [int(np.sum(sims[:, j] == 0)) for j in range(sims.shape[1])]


def test_conditional_simulations_centre_on_the_fitted_means():
    fit = glmmlab.glmm("y ~ x + (1 | g)", data("poisson", n=200), family="poisson")
    inputs = M.row_inputs(fit, fit.model_frame())
    sims = inputs.draw(np.random.default_rng(0), 4000, conditional=True)
    z = (sims.mean(axis=1) - fit.fitted) / np.sqrt(fit.fitted / 4000)
    assert np.max(np.abs(z)) < 4.5
    # unconditional: a new random intercept b ~ N(0, s^2) per draw, so the mean is exp(eta_fixed + s^2 / 2)
    uncond = inputs.draw(np.random.default_rng(0), 4000)
    s2 = fit.random_effects_table()[0]["variance"]
    want = np.exp(inputs.mean.eta_fixed + s2 / 2)
    z = (uncond.mean(axis=1) - want) / (uncond.std(axis=1) / np.sqrt(4000))
    assert np.max(np.abs(z)) < 4.5
    assert np.max(np.abs((sims.mean(axis=1) - want) / (sims.std(axis=1) / np.sqrt(4000)))) > 10  # not the same


def test_new_random_effects_have_the_fitted_covariance():
    rng = np.random.default_rng(4)
    n, groups = 3000, 60
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    b0, b1 = rng.multivariate_normal([0, 0], [[0.4, 0.1], [0.1, 0.2]], groups).T
    y = rng.poisson(np.exp(0.2 + 0.3 * x + b0[g] + b1[g] * x))
    fit = glmmlab.glmm("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g}), family="poisson")
    (part,) = M.random_parts(fit, fit.model_frame().terms)
    cov = part.chol @ part.chol.T
    vc = {r["term"]: r["variance"] for r in fit.random_effects_table() if r["component"] == "g"}
    cor = fit.correlations[0]["correlation"]
    np.testing.assert_allclose(np.diag(cov), [vc["(Intercept)"], vc["x"]], rtol=1e-10)
    assert cov[1, 0] == pytest.approx(cor * np.sqrt(vc["(Intercept)"] * vc["x"]), rel=1e-10)
    i = int(np.argmax(np.abs(x)))  # the row with the largest |x|, on its own
    one = S.RandomPart(part.codes[i:i + 1], np.asarray(part.Z)[i:i + 1], part.chol, part.n_levels)
    draws = one.draw(np.random.default_rng(1), 50_000)[0]  # its contribution b0 + b1 x_i in each draw
    want = cov[0, 0] + 2 * x[i] * cov[1, 0] + x[i] ** 2 * cov[1, 1]
    assert draws.var() == pytest.approx(want, rel=0.03)  # the variance's relative SE is sqrt(2 / 50,000) = 0.006


def test_bad_simulation_settings_are_refused():
    fit = glmmlab.glmm("y ~ x + (1 | g)", data("poisson", n=200), family="poisson")
    with pytest.raises(glmmlab.GlmmInputError, match="n_sim"):
        fit.simulate_residuals(1)
    with pytest.raises(glmmlab.GlmmInputError, match="seed"):
        fit.simulate_residuals(50, seed=-3)
    with pytest.raises(glmmlab.GlmmInputError, match="n x n_sim"):
        S.create(np.zeros((3, 4)), np.zeros(2), np.zeros(2))


def test_a_model_of_structural_zeros_plugs_in_as_a_second_linear_part():
    """A zero-inflated Poisson given as RowInputs with a ``zero`` part (what a zero-inflation model supplies): its
    draws have the ZIP's share of zeros and mean, and the zero-inflation test accepts ZIP data under it and finds
    them under the Poisson part alone."""
    from glmmlab.engine.families.links import LINKS

    rng = np.random.default_rng(6)
    n = 3000
    x = rng.normal(size=n)
    mean = S.LinearPart(LINKS["log"], 0.4 + 0.3 * x)
    zero = S.LinearPart(LINKS["logit"], np.full(n, -1.0))  # P(structural zero) = expit(-1) = 0.269
    zip_inputs = S.RowInputs(catalogue.FAMILIES["poisson"], mean, np.ones(n), zero=zero)
    mu, pi = mean.population(), 1 / (1 + np.exp(1.0))
    draws = zip_inputs.draw(np.random.default_rng(1), 400)
    p0 = pi + (1 - pi) * np.exp(-mu)
    z = (np.mean(draws == 0, axis=1) - p0) / np.sqrt(p0 * (1 - p0) / 400)
    assert np.abs(z).max() < 4.5 and abs(np.mean(z)) < 4.5 / np.sqrt(n) * 3
    np.testing.assert_allclose(zip_inputs.fitted(), (1 - pi) * mu, rtol=1e-12)
    y = zip_inputs.draw(np.random.default_rng(2), 1)[:, 0]
    assert S.zero_inflation_test(S.simulate(zip_inputs, y, 250, seed=3)).p_value > 0.01
    poisson_only = S.RowInputs(catalogue.FAMILIES["poisson"], mean, np.ones(n))
    t = S.zero_inflation_test(S.simulate(poisson_only, y, 250, seed=3))
    assert t.p_value < 0.01 and t.statistic > 1
