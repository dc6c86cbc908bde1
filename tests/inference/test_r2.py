"""result.r2() against performance::r2_nakagawa 0.10.2 (insight 0.19.0), stored by make_inference.R.

Tolerances: Gaussian fits (REML; the same optimum as lme4's) and glmmTMB's fits (the negative binomial; the Gamma
with the dispersion estimated, whose random-effect variance is on the link scale) 1e-5 relative. Laplace fits
(binomial, Poisson, Gamma with lme4's criterion) 1e-3 relative: lme4's optimizer stops up to 2e-4 below our
log-likelihood on these data, and the R² follows the variance estimates (the largest difference seen is 6.2e-4).
(Days || Subject) is not compared: performance 0.10.2 drops the slope's VarCorr block there (see
services/modeling/r2.py); test_uncorrelated_terms_count checks ours by hand."""

from __future__ import annotations

import numpy as np
import pytest

import glmmlab
from glmmlab.services.views.result_view import view
from tests.inference.conftest import REF, read

FAMILY = {"Gamma": "gamma", "nbinom2": "negbin"}
EXACT = {"gaussian", "nbinom2"}
CASES = sorted(k for k in REF["r2"] if k != "sleep_uncorrelated")


def _fit(case):
    return glmmlab.glmm(case["formula"], read(case["data"]), family=FAMILY.get(case["family"], case["family"]),
                        link=case["link"], dispersion=case.get("dispersion", "estimated"))


@pytest.mark.parametrize("name", CASES)
def test_r2_matches_performance(name):
    case = REF["r2"][name]
    res = _fit(case)
    r2 = res.r2()
    rtol = 1e-5 if case["family"] in EXACT or case.get("engine") == "glmmTMB" else 1e-3
    assert set(r2) == {"marginal", "conditional"}
    assert r2["marginal"] == pytest.approx(case["marginal"], rel=rtol, abs=1e-12)
    assert r2["conditional"] == pytest.approx(case["conditional"], rel=rtol)
    doc = res.to_dict(diagnostics=False)
    assert doc["r2"] == pytest.approx(r2)
    fit_table = next(t for t in view(doc)["tables"] if t["name"] == "model-fit")
    assert fit_table["rows"][-2:] == [["Marginal R² (Nakagawa)", r2["marginal"]],
                                      ["Conditional R² (Nakagawa)", r2["conditional"]]]


def test_uncorrelated_terms_count():
    """(Days || Subject): both variances count, the covariance is 0 (Nakagawa 2017's mean of z' Sigma z)."""
    df = read("sleep")
    res = glmmlab.glmm("Reaction ~ Days + (Days || Subject)", df)
    v = {r["term"]: r["variance"] for r in res.random_effects_table()}
    vf = np.var(res.beta[0] + res.beta[1] * df["Days"], ddof=1)
    vr = v["(Intercept)"] + v["Days"] * np.mean(df["Days"] ** 2)
    total = vf + vr + res.var_residual
    assert res.r2() == pytest.approx({"marginal": vf / total, "conditional": (vf + vr) / total}, rel=1e-12)


def test_undefined_and_singular_say_why():
    pois = glmmlab.glmm("y ~ x1 + x2 + (1 | grp)", read("sim_poisson_identity.csv"), family="poisson",
                        link="identity")
    r2 = pois.r2()
    assert r2["marginal"] is None and r2["conditional"] is None and "identity link" in r2["reason"]
    fit_table = next(t for t in view(pois.to_dict(diagnostics=False))["tables"] if t["name"] == "model-fit")
    assert fit_table["cells"][-1][-1] == "N/A" and "identity link" in fit_table["note"]
    sing = glmmlab.glmm("Yield ~ 1 + (1 | Batch)", read("dyestuff2_singular.csv"))
    assert sing.singular
    r2 = sing.r2()
    assert r2["conditional"] is None and "singular" in r2["reason"] and r2["marginal"] == pytest.approx(0.0, abs=1e-12)
    assert "Conditional R² (Nakagawa)" in sing.summary()
