"""result.predict(new, interval="confidence"): the population-level prediction with its Wald interval.

Against a direct computation (x' beta -/+ z sqrt(x' V x), inverse link) to 1e-12, and against R for the cbpp model:
predict(re.form = NA) with lme4's working-weights covariance (vcov(use.hessian = FALSE)), to 1e-3 relative (lme4's
Laplace optimum is 2e-4 below ours in log-likelihood, so the estimates differ in the fourth digit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from tests.inference.conftest import REF, read


def test_cbpp_against_r():
    case = REF["predict"]["cbpp"]
    res = glmmlab.glmm(case["formula"], read(case["data"]), family="binomial")
    new = pd.DataFrame({"period": case["period"]})
    out = res.predict(new, interval="confidence")
    assert list(out.columns) == ["prediction", "lower", "upper"]
    np.testing.assert_allclose(out["prediction"], case["prediction"], rtol=1e-3)
    np.testing.assert_allclose(out["lower"], case["lower"], rtol=1e-3)
    np.testing.assert_allclose(out["upper"], case["upper"], rtol=1e-3)
    link = res.predict(new, interval="confidence", type="link")
    np.testing.assert_allclose(link["prediction"], case["eta"], rtol=1e-3)
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose((link["upper"] - link["lower"]) / (2 * z), case["se"], rtol=1e-3)
    np.testing.assert_allclose(out["lower"], special.expit(link["lower"]), rtol=1e-14)
    # without an interval: what predict returned before (with BLUPs by default)
    assert isinstance(res.predict(new.assign(herd=1)), np.ndarray)


def _direct(res, X, level, inv=lambda e: e):
    eta = X @ res.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, res.vcov, X))
    z = stats.norm.ppf(0.5 + level / 2)
    a, b = inv(eta - z * se), inv(eta + z * se)
    return inv(eta), np.minimum(a, b), np.maximum(a, b)


@pytest.mark.parametrize("how", ["formula-slope", "fit_glmm"])
def test_gaussian_against_direct_computation(how):
    df = read("sleep")
    if how == "fit_glmm":
        res = glmmlab.fit_glmm(df, "Reaction", "Subject", ["Days"])
    else:
        res = glmmlab.glmm("Reaction ~ Days + (Days | Subject)", df)
    new = pd.DataFrame({"Days": [0.0, 2.5, 9.0]})  # no Subject column: the fixed part needs none
    out = res.predict(new, interval="confidence", level=0.9)
    X = np.column_stack([np.ones(3), new["Days"]])
    for col, ref in zip(["prediction", "lower", "upper"], _direct(res, X, 0.9)):
        np.testing.assert_allclose(out[col], ref, rtol=1e-12)


def test_offset_factor_and_decreasing_link():
    mm = read("models/mmmec_offset.csv")
    res = glmmlab.glmm("deaths ~ uvb + offset(log(expected)) + (1 | region)", mm, family="poisson")
    new = mm.head(4)
    out = res.predict(new, interval="confidence", type="link")
    X = np.column_stack([np.ones(4), new["uvb"]])
    np.testing.assert_allclose(out["prediction"], X @ res.beta + np.log(new["expected"]), rtol=1e-12)
    gam = glmmlab.glmm("y ~ x1 + x2 + (1 | grp)", read("sim_gamma_log.csv"), family="gamma", link="inverse")
    new = read("sim_gamma_log.csv").head(5)
    out = gam.predict(new, interval="confidence")
    X = np.column_stack([np.ones(5), new["x1"], new["x2"]])
    for col, ref in zip(["prediction", "lower", "upper"], _direct(gam, X, 0.95, lambda e: 1 / e)):
        np.testing.assert_allclose(out[col], ref, rtol=1e-12)
    assert np.all(out["lower"] < out["prediction"]) and np.all(out["prediction"] < out["upper"])


def test_bad_arguments():
    res = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", read("sleep"))
    new = pd.DataFrame({"Days": [1.0]})
    with pytest.raises(GlmmInputError, match="interval must be 'confidence'"):
        res.predict(new, interval="prediction")
    with pytest.raises(GlmmInputError, match="include_random"):
        res.predict(new, interval="confidence", include_random=True)
    with pytest.raises(GlmmInputError, match="level must be between 0.5 and 0.9999"):
        res.predict(new, interval="confidence", level=95)
