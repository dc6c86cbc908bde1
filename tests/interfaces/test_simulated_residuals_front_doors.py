"""Simulated (DHARMa) residuals at the front doors: ``result.simulate_residuals()`` for every family the engine fits
(with its tests and both plots), the random-intercept form, a fit without data, and ``glmmlab fit
--simulated-residuals N``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import glmmlab
from glmmlab.engine.families.glmmtmb import tweedie_sample
from glmmlab.interfaces.cli import main
from glmmlab.services.modeling.fitted import FittedModel
from glmmlab.services.modeling.simulated_residuals import SimulatedResiduals


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.4 * x + rng.normal(0, 0.4, 20)[g]
    mu, p = np.exp(eta), 1 / (1 + np.exp(-eta))
    trials = rng.integers(1, 12, n)
    return pd.DataFrame({
        "x": x, "g": [f"s{v}" for v in g], "trials": trials,
        "gaussian": eta + rng.normal(size=n), "binary": rng.binomial(1, p), "succ": rng.binomial(trials, p),
        "count": rng.poisson(mu), "positive": rng.gamma(3.0, mu / 3.0), "nb": rng.negative_binomial(2, 2 / (2 + mu)),
        "prop": rng.beta(p * 12, (1 - p) * 12), "heavy": eta + 0.5 * rng.standard_t(5, n),
        "semi": tweedie_sample(rng, mu, 1.0, 1.5)})


FAMILIES = [
    ("gaussian ~ x + (1 | g)", "gaussian", None),
    ("binary ~ x + (1 | g)", "binomial", None),
    ("cbind(succ, trials - succ) ~ x + (1 | g)", "binomial", None),
    ("count ~ x + (1 | g)", "poisson", None),
    ("positive ~ x + (1 | g)", "gamma", "log"),
    ("nb ~ x + (1 | g)", "nbinom2", None),
    ("nb ~ x + (1 | g)", "nbinom1", None),
    ("prop ~ x + (1 | g)", "beta_family", None),
    ("cbind(succ, trials - succ) ~ x + (1 | g)", "betabinomial", None),
    ("heavy ~ x + (1 | g)", "t_family", None),
    ("semi ~ x + (1 | g)", "tweedie", None),
]


@pytest.mark.parametrize("formula, family, link", FAMILIES, ids=[f"{f}:{m.split()[0]}" for m, f, _ in FAMILIES])
def test_every_family_has_simulated_residuals_tests_and_plots(formula, family, link):
    fit = glmmlab.glmm(formula, frame(), family=family, link=link)
    sr = fit.simulate_residuals(120, seed=1)
    assert isinstance(sr, SimulatedResiduals)
    r = sr.residuals
    assert r.shape == (fit.n_obs,) and np.all((r >= 0) & (r <= 1))
    assert sr.test_uniformity().p_value > 0.001  # each data set was drawn from the model fitted
    tests = sr.tests()
    assert set(tests) == {"uniformity", "dispersion", "zero_inflation", "outliers"}
    assert all(0 <= t.p_value <= 1 for t in tests.values())
    doc = json.loads(json.dumps(sr.to_dict(residuals=True), allow_nan=False))
    assert doc["n_sim"] == 120 and doc["seed"] == 1 and len(doc["residuals"]) == fit.n_obs
    qq, vp = sr.plot_qq(), sr.plot_vs_predicted()
    assert isinstance(qq, Figure) and isinstance(vp, Figure)
    corner = [t.get_text() for t in qq.axes[0].texts]
    assert any(t.startswith("KS test: p") for t in corner) and any(t.startswith("Dispersion test: p") for t in corner)
    assert vp.axes[0].get_xlabel() == "Model predictions (rank transformed)"
    if "cbind" in formula:  # DHARMa reads a binomial with trials as counts of successes
        assert np.array_equal(sr.simulation.observed, frame()["succ"].to_numpy(dtype=float))


def test_random_intercept_form_reads_its_frame_when_needed():
    df = frame()
    fit = glmmlab.fit_glmm(df, "count", "g", ["x"], family="poisson")
    formula_fit = glmmlab.glmm("count ~ x + (1 | g)", df, family="poisson")
    a, b = fit.simulate_residuals(80, seed=2), formula_fit.simulate_residuals(80, seed=2)
    np.testing.assert_allclose(a.residuals, b.residuals, atol=1e-12)
    assert list(a.series().index) == list(range(len(df)))


def test_a_fit_without_data_is_refused_with_advice():
    fit = glmmlab.glmm("count ~ x + (1 | g)", frame(), family="poisson")
    bare = FittedModel.of(fit.record)  # as a Dask fit or a model loaded from a project: no model frame
    with pytest.raises(glmmlab.GlmmInputError, match="fit it in memory"):
        bare.simulate_residuals()


def test_user_simulations_are_read_as_dharmas_createDHARMa():
    sims = np.tile(np.arange(10.0), (3, 1))
    sr = SimulatedResiduals.from_simulations(sims, [4.5, -1.0, 20.0], [4.5, 4.5, 4.5], seed=0)
    np.testing.assert_array_equal(sr.residuals, [0.5, 0.0, 1.0])


def test_cli_writes_the_tests_into_the_json(tmp_path, capsys):
    df = frame()
    rng = np.random.default_rng(5)
    df["zi"] = df["count"] * (rng.random(len(df)) > 0.3)  # zero-inflated counts
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    plots = tmp_path / "res"
    code = main(["fit", str(path), "--formula", "zi ~ x + (1 | g)", "--family", "poisson", "--format", "json",
                 "--diagnostics", "none", "--simulated-residuals", "200", "--seed", "9", "--residual-plots",
                 str(plots)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)["simulated_residuals"]
    assert doc["n_sim"] == 200 and doc["seed"] == 9 and doc["conditional"] is True  # the modes held: DHARMa's default
    assert set(doc["tests"]) == {"uniformity", "dispersion", "zero_inflation", "outliers"}
    assert doc["tests"]["zero_inflation"]["statistic"] > 1  # more zeros than a Poisson model expects
    fit = glmmlab.glmm("zi ~ x + (1 | g)", df, family="poisson")
    same = fit.simulate_residuals(200, seed=9).to_dict()
    assert doc["tests"] == json.loads(json.dumps(same["tests"]))
    for name in ("qq", "predicted"):
        assert (tmp_path / f"res-{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["fit", str(path), "--formula", "zi ~ x + (1 | g)", "--family", "poisson",
                 "--simulated-residuals", "50", "--unconditional-residuals"]) == 0
    text = capsys.readouterr().out
    assert "Simulated residuals (DHARMa): 50 simulations, seed 123, random effects drawn afresh" in text
    assert "Zero-inflation" in text


@pytest.mark.parametrize("args, message", [
    (["--simulated-residuals", "1"], "--simulated-residuals must be a whole number from 2"),
    (["--unconditional-residuals"], "need --simulated-residuals N"),
    (["--residual-plots", "p"], "need --simulated-residuals N"),
])
def test_cli_refuses_bad_residual_options(tmp_path, capsys, args, message):
    path = tmp_path / "d.csv"
    frame().to_csv(path, index=False)
    assert main(["fit", str(path), "--formula", "count ~ x + (1 | g)", "--family", "poisson", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_few_distinct_predictions_get_a_box_each():
    df = frame()
    df["grp"] = np.where(df["x"] > 0, "hi", "lo")
    fit = glmmlab.glmm("count ~ grp + (1 | g)", df, family="poisson")
    sr = fit.simulate_residuals(100, seed=1)
    bins = sr.quantile_deviations()
    assert bins["by_value"] and len(bins["x"]) == 2
    ax = sr.plot_vs_predicted().axes[0]
    assert ax.get_xlabel() == "Model predictions"
    values = np.unique(sr.predicted)
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{v:.3g}" for v in values]
