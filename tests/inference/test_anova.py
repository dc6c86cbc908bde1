"""glmmlab.anova and `glmmlab compare` against lme4's anova(): REML fits refitted by ML, GLMMs compared as fitted,
models refused with the reason when they cannot be compared.

Tolerances: Gaussian (profiled ML, the same optimum as lme4's): every column to 1e-6 relative. GLMMs (Laplace):
our log-likelihood is at least lme4's (lme4's optimizer can stop early) and within 1e-5 relative of it; AIC, BIC,
deviance to 1e-5 relative, Chisq to 1e-4 and Pr(>Chisq) to 1e-3 relative."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from tests.inference.conftest import REF, SHARED, read

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def _fits(case: dict) -> list:
    df = read(case["data"])
    return [glmmlab.glmm(f, df, family=case["family"]) for f in case["formulas"]]


@pytest.mark.parametrize("name", sorted(REF["anova"]))
def test_anova_matches_lme4(name):
    case = REF["anova"][name]
    fits = _fits(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = glmmlab.anova(*fits[::-1])  # given largest first: rows come back in order of npar
    assert list(table.columns) == COLUMNS
    expected = pd.DataFrame(case["columns"]).astype(float)
    assert list(table.index) == list(case["formulas"])  # rows named after the models' formulas (issue 19)
    gaussian = case["family"] == "gaussian"
    if gaussian:
        assert table.attrs["notes"] == ["refitting model(s) with ML (instead of REML)"]
        assert [str(w.message) for w in caught] == ["refitting model(s) with ML (instead of REML)"]
        assert all(f.method == "REML" for f in fits)  # the caller's fits are not changed
    else:
        assert table.attrs["notes"] == [] and not caught
    np.testing.assert_array_equal(table["npar"].to_numpy(), expected["npar"].to_numpy())
    np.testing.assert_array_equal(table["Df"].to_numpy(), expected["Df"].to_numpy())
    ours, lme4 = table["logLik"].to_numpy(), expected["logLik"].to_numpy()
    if gaussian:
        for col in ["AIC", "BIC", "logLik", "deviance", "Chisq", "Pr(>Chisq)"]:
            np.testing.assert_allclose(table[col].to_numpy(), expected[col].to_numpy(), rtol=1e-6, err_msg=col)
    else:
        assert np.all(ours >= lme4 - 1e-6), (ours, lme4)
        np.testing.assert_allclose(ours, lme4, rtol=1e-5)
        for col in ["AIC", "BIC", "deviance"]:
            np.testing.assert_allclose(table[col].to_numpy(), expected[col].to_numpy(), rtol=1e-5, err_msg=col)
        np.testing.assert_allclose(table["Chisq"].to_numpy(), expected["Chisq"].to_numpy(), rtol=1e-4)
        np.testing.assert_allclose(table["Pr(>Chisq)"].to_numpy(), expected["Pr(>Chisq)"].to_numpy(), rtol=1e-3)
    assert np.isnan(table["Chisq"].iloc[0]) and np.isnan(table["Pr(>Chisq)"].iloc[0])
    np.testing.assert_allclose(table["deviance"], -2 * table["logLik"], rtol=1e-15)


@pytest.mark.parametrize("name", sorted(REF["ml"]))
def test_ml_fit_matches_lmer_reml_false(name):
    """reml=False: lmer(REML = FALSE)'s log-likelihood to 1e-6 relative, fixed effects to 1e-6, standard errors and
    variance components to 1e-4 (they move with the flat optimum's last digits)."""
    case = REF["ml"][name]
    res = glmmlab.glmm(case["formula"], read(case["data"]), reml=False, ddf="none")
    assert res.method == "ML" and res.to_dict()["fit"]["log_likelihood_kind"] == "ML" and res.model["reml"] is False
    assert "ddf" not in res.model
    assert res.log_likelihood == pytest.approx(case["logLik"], rel=1e-6)
    np.testing.assert_allclose(res.beta, case["fixef"], rtol=1e-6)
    np.testing.assert_allclose(res.se, case["se"], rtol=1e-4)
    assert np.sqrt(res.var_residual) == pytest.approx(case["sigma"], rel=1e-4)
    ours = [r["variance"] for r in res.random_effects_table()]
    lme4 = [v for v in case["varcor"]]
    if res.correlations:  # lme4's as.data.frame(VarCorr) puts the covariance before the residual
        lme4 = lme4[:2] + lme4[3:]
    np.testing.assert_allclose(ours, lme4, rtol=1e-4)


def test_ml_front_doors_agree():
    """The ML fit of a random intercept is the same from the column form (no model frame), the formula and the
    engine called on the formula's frame."""
    from glmmlab.engine.families.catalogue import resolve
    from glmmlab.engine.solvers.fit import fit_frame

    df = read("sleep")
    a = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", df, reml=False)
    c = glmmlab.fit_glmm(df, "Reaction", "Subject", ["Days"], reml=False)
    b = fit_frame(a.frame, *resolve("gaussian", "identity"), dict(a.model))
    for other in (b, c):
        assert other.method == "ML"
        assert a.log_likelihood == pytest.approx(other.log_likelihood, rel=1e-12)
        np.testing.assert_allclose(a.se, other.se, rtol=1e-9)


def test_named_models_and_fit_glmm_results():
    df = read("sleep")
    m0 = glmmlab.fit_glmm(df, "Reaction", "Subject", [])  # the random-intercept fast path keeps its data too
    m1 = glmmlab.fit_glmm(df, "Reaction", "Subject", ["Days"])
    with pytest.warns(UserWarning, match="refitting model"):
        table = glmmlab.anova(full=m1, null=m0)
    assert list(table.index) == ["null", "full"]
    assert table.attrs["formulas"] == {"null": "Reaction ~ 1 + (1 | Subject)",
                                       "full": "Reaction ~ Days + (1 | Subject)"}
    ml = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", df, reml=False)
    assert table.loc["full", "logLik"] == pytest.approx(ml.log_likelihood, rel=1e-9)
    # ML fits are compared as they are, without a note
    ml0 = glmmlab.glmm("Reaction ~ 1 + (1 | Subject)", df, reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t2 = glmmlab.anova(ml0, ml)
    assert t2.attrs["notes"] == []
    assert t2.loc["Reaction ~ Days + (1 | Subject)", "Chisq"] == pytest.approx(table.loc["full", "Chisq"], rel=1e-8)
    same = glmmlab.anova(ml0, ml0)  # the same formula twice: m1, m2 in the order given
    assert list(same.index) == ["m1", "m2"]


def test_refusals_name_the_reason():
    sleep = read("sleep")
    m0 = glmmlab.glmm("Reaction ~ 1 + (1 | Subject)", sleep)
    m1 = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(GlmmInputError, match="at least two models"):
        glmmlab.anova(m1)
    with pytest.raises(GlmmInputError, match="not a fitted model"):
        glmmlab.anova(m1, "m0")
    other = glmmlab.glmm("Days ~ 1 + (1 | Subject)", sleep)
    with pytest.raises(GlmmInputError, match="different responses"):
        glmmlab.anova(m1, other)
    pois = glmmlab.glmm("Days ~ 1 + (1 | Subject)", sleep, family="poisson")
    with pytest.raises(GlmmInputError, match="different families or links"):
        glmmlab.anova(other, pois)
    holes = sleep.assign(Days2=sleep["Days"].where(sleep.index % 7 != 0))
    fewer = glmmlab.glmm("Reaction ~ Days2 + (1 | Subject)", holes)
    with pytest.raises(GlmmInputError, match="different numbers of rows"):
        glmmlab.anova(m0, fewer)
    changed = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=sleep["Reaction"] + 1.0))
    with pytest.raises(GlmmInputError, match="different data"):
        glmmlab.anova(m0, changed)
    kept_nothing = dataclasses.replace(glmmlab.glmm("Reaction ~ Days + (1 | Subject)", sleep),
                                       frame=None)  # as a Dask fit or a model loaded from a project
    with pytest.raises(GlmmInputError, match="keep no data"):
        glmmlab.anova(m0, kept_nothing)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "compare", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_compare_text_and_json():
    case = REF["anova"]["cbpp"]
    data = str(SHARED / case["data"])
    forms = [a for f in case["formulas"] for a in ("--formula", f)]
    p = _cli(data, *forms, "--family", "binomial", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["model"] for r in doc["rows"]] == ["m1", "m2"] and doc["notes"] == []
    assert doc["rows"][0]["Chisq"] is None and doc["rows"][1]["Df"] == 3
    assert doc["rows"][1]["Chisq"] == pytest.approx(case["columns"]["Chisq"][1], rel=1e-4)
    assert doc["reading"].startswith("The model m2 fits better than m1: χ²(3) = 25.61, p < 0.001")
    sleep = REF["anova"]["sleepstudy"]
    p = _cli(str(SHARED / sleep["data"]), *[a for f in sleep["formulas"] for a in ("--formula", f)])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:4] == ["Data: sleepstudy_gaussian.csv", "Models:", "m1: Reaction ~ Days + (1 | Subject)",
                         "m2: Reaction ~ Days + (Days | Subject)"]
    assert lines[4].split() == COLUMNS
    assert lines[6].split()[:9] == ["m2", "6", "1763.9", "1783.1", "-875.97", "1751.9", "42.139", "2", "7.072e-10"]
    assert "Note: refitting model(s) with ML (instead of REML)" in p.stdout


@pytest.mark.parametrize("args,words", [
    (["--formula", "Reaction ~ Days + (1 | Subject)"], "two or more models"),
    (["--formula", "Reaction ~ Days + (1 | Subject)", "--formula", "Days ~ 1 + (1 | Subject)"], "different responses"),
    (["--formula", "Reaction ~ Days + (1 | Subject)", "--formula", "Reaction ~ Nope + (1 | Subject)"], "Nope"),
    (["--formula", "Reaction ~ Days + (1 | Subject)", "--formula", "Reaction ~ 1 + (1 | Subject)", "--nagq", "0"],
     "nagq"),
])
def test_cli_compare_bad_input_exits_2(args, words):
    p = _cli(str(SHARED / "sleepstudy_gaussian.csv"), *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1 and words in p.stderr, p.stderr
