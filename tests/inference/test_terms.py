"""Omnibus tests per model term (result.anova()) and estimated marginal means (result.emmeans(), pairs()) against R:
tests/reference/inference/terms.json, made by make_terms.R (lmerTest 3.1-3, car 3.1-1, emmeans 1.8.4-1, lme4 1.1-31).

Tolerances (relative): Gaussian-identity fits (REML, the same optimum as lme4's) 1e-4 on every column, Satterthwaite's
df included; binomial (Laplace: lme4's optimum differs slightly from ours) 1e-3 on statistics, estimates, SEs and
bounds. p-values below 1e-300 are compared as "below 1e-300"; Tukey p-values also to 1e-10 absolute (R's ptukey);
binomial p-values at R's own statistic (see the tests: a p-value moves several times as fast as its statistic).

Type III: glmmlab tests each term's coefficients (R's treatment contrasts) given all others, as car::Anova(type = 3);
for Gaussian fits that is lmerTest::contestMD on the term's columns. lmerTest's anova() agrees with it for every term
of these models but a covariate's main effect inside an interaction with a factor (standLRT in standLRT * sex, age in
age * livch), which lmerTest averages over the factor's levels: test_lmertest_differs_only_there pins that down."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from tests.inference.conftest import read

REF = json.loads((Path(__file__).resolve().parents[1] / "reference" / "inference" / "terms.json").read_text())
RTOL = {"gaussian": 1e-4, "binomial": 1e-3}
TINY = 1e-300


def table(cols: dict) -> pd.DataFrame:
    """A table of the JSON (jsonlite writes a one-row table's columns as scalars)."""
    return pd.DataFrame({k: v if isinstance(v, list) else [v] for k, v in cols.items()})


@lru_cache(maxsize=None)
def fit(case: str):
    c = REF["anova"][case]
    return glmmlab.glmm(c["formula"], read(c["data"]), family=c["family"])


def close(ours, theirs, rtol, what, atol=0.0):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    tiny = (np.abs(theirs) < TINY) & (np.abs(ours) < TINY)
    np.testing.assert_allclose(ours[~tiny], theirs[~tiny], rtol=rtol, atol=atol, err_msg=what)


GAUSSIAN = [k for k, v in REF["anova"].items() if v["family"] == "gaussian"]
GLMM = [k for k, v in REF["anova"].items() if v["family"] != "gaussian"]


@pytest.mark.parametrize("case", GAUSSIAN)
def test_gaussian_f_tests_match_contestmd(case):
    res, ref = fit(case), table(REF["anova"][case]["columns"])
    a = res.anova()
    assert list(a.columns) == ["Df", "DenDF", "F", "p"] and a.index.name == "term"
    assert list(a.index) == list(ref["rows"])
    assert a["Df"].tolist() == ref["NumDF"].astype(int).tolist()
    for ours, theirs in (("DenDF", "DenDF"), ("F", "F value"), ("p", "Pr(>F)")):
        close(a[ours], ref[theirs], RTOL["gaussian"], f"{case} {ours}")
    assert a.attrs["test"] == "F" and a.attrs["type"] == "III" and "treatment contrasts" in a.attrs["note"]
    # the same hypotheses as car::Anova(type = 3)'s Wald chi-square (F * Df)
    car = table(REF["anova"][case]["car"]).set_index("rows")
    close(a["F"] * a["Df"], car.loc[a.index, "Chisq"], RTOL["gaussian"], f"{case} car")


@pytest.mark.parametrize("case", GAUSSIAN)
def test_lmertest_differs_only_there(case):
    """lmerTest's anova() (its own type III contrasts) equals ours on every term but a covariate's main effect in an
    interaction with a factor."""
    res, lt = fit(case), table(REF["anova"][case]["lmerTest"]).set_index("rows")
    cols = table(REF["anova"][case]["columns"]).set_index("rows")
    same = np.isclose(lt["F value"], cols.loc[lt.index, "F value"], rtol=1e-8)
    expected_differ = {"exam_interaction": {"standLRT"}, "contraception_lpm": {"age"}}.get(case, set())
    assert set(lt.index[~same]) == expected_differ
    a = res.anova()
    agree = lt.index[same]
    close(a.loc[agree, "F"], lt.loc[agree, "F value"], RTOL["gaussian"], case)
    close(a.loc[agree, "DenDF"], lt.loc[agree, "DenDF"], RTOL["gaussian"], case)
    for term in expected_differ:
        assert not np.isclose(a.loc[term, "F"], lt.loc[term, "F value"], rtol=1e-2)


@pytest.mark.parametrize("case", GLMM)
def test_glmm_wald_chisq_matches_car(case):
    res, car = fit(case), table(REF["anova"][case]["car"])
    a = res.anova(intercept=True)
    assert list(a.columns) == ["Df", "Chisq", "p"] and list(a.index) == list(car["rows"])
    assert a["Df"].tolist() == car["Df"].astype(int).tolist()
    close(a["Chisq"], car["Chisq"], RTOL["binomial"], f"{case} Chisq")
    # p: a chi-square of 25 on 3 df moves its p-value 0.46 times as fast (relative) as its absolute value, so the
    # optimum's 1e-3 shows as 6e-3 there; the method is checked at car's own statistic instead (to 1e-10)
    close(stats.chi2.sf(car["Chisq"], a["Df"]), car["Pr(>Chisq)"], 1e-10, f"{case} p at car's Chisq")
    np.testing.assert_allclose(a["p"], stats.chi2.sf(a["Chisq"], a["Df"]), rtol=1e-10)
    assert list(res.anova().index) == list(car["rows"])[1:]  # without the intercept by default
    if case == "cbpp":
        assert a.loc["period", "Df"] == 3  # the example: one row for a 4-level factor


# -- estimated marginal means --------------------------------------------------------------------------------------
EST = ("emmean", "prob", "response")
LOWER, UPPER = ("lower.CL", "asymp.LCL"), ("upper.CL", "asymp.UCL")


def _spec(specs: str) -> tuple[str, str | None]:
    rhs = specs.strip().lstrip("~").strip()
    term, _, by = rhs.partition("|")
    return term.strip(), by.strip() or None


def _col(ref: pd.DataFrame, names) -> pd.Series:
    return ref[next(n for n in names if n in ref.columns)]


@pytest.mark.parametrize("name", sorted(REF["emmeans"]))
def test_emmeans_match_r(name):
    case = REF["emmeans"][name]
    res = fit(case["case"])
    family = REF["anova"][case["case"]]["family"]
    term, by = _spec(case["specs"])
    ref = table(case["emmeans"])
    at = None
    if ref[term].dtype.kind == "f":  # a covariate grid: the same values as R's seq(min, max, length.out = 20)
        at = sorted(set(ref[term]))
        lo, hi = res.model_frame().recipe.covariates[term][0], res.model_frame().recipe.covariates[term][2]
        np.testing.assert_allclose(at, np.linspace(lo, hi, 20), rtol=1e-12)
    em = res.emmeans(term, by=by, type=case["type"])
    keys = [term] + ([by] if by else [])
    ours = em.sort_values(keys).reset_index(drop=True)
    theirs = ref.sort_values(keys).reset_index(drop=True)
    if at is None:
        assert ours[keys].astype(str).values.tolist() == theirs[keys].astype(str).values.tolist()
    rtol = RTOL[family]
    close(ours["estimate"], _col(theirs, EST), rtol, f"{name} estimate")
    close(ours["SE"], theirs["SE"], rtol, f"{name} SE")
    close(ours["lower"], _col(theirs, LOWER), rtol, f"{name} lower")
    close(ours["upper"], _col(theirs, UPPER), rtol, f"{name} upper")
    if family == "gaussian":
        close(ours["df"], theirs["df"], rtol, f"{name} df")
    else:
        assert np.all(np.isinf(ours["df"])) and theirs["df"].isna().all()
    for adjust in ("tukey", "holm", "none"):
        if adjust not in case:
            continue
        pr = table(case[adjust])
        pp = res.pairs(term, by=by, adjust=adjust)
        assert list(pp.columns) == ([by] if by else []) + ["contrast", "estimate", "SE", "df", "statistic", "p"]
        if by:
            pr = pr.sort_values([by, "contrast"]).reset_index(drop=True)
            pp = pp.sort_values([by, "contrast"]).reset_index(drop=True)
        assert pp["contrast"].tolist() == pr["contrast"].tolist()
        close(pp["estimate"], pr["estimate"], rtol, f"{name} {adjust} estimate")
        close(pp["SE"], pr["SE"], rtol, f"{name} {adjust} SE")
        stat = _col(pr, ("t.ratio", "z.ratio"))
        close(pp["statistic"], stat, rtol, f"{name} {adjust} statistic")
        if family == "gaussian":
            # R's ptukey gives the upper tail as 1 - P(lower): about 1e-10 absolute (3.5e-11 where scipy's
            # studentized range, integrated directly, gives 5.2e-12)
            close(pp["p"], pr["p.value"], rtol, f"{name} {adjust} p", atol=1e-10 if adjust == "tukey" else 0.0)
            close(pp["df"], pr["df"], rtol, f"{name} {adjust} df")
        else:
            # z of 3.2 moves its Tukey p-value 3 times as fast as itself: the optimum's 1e-3 would show as 3e-3.
            # The adjustment is checked at emmeans' own z (scipy's studentized range to 1e-4 of R's ptukey)
            k = len(set(ref[term]))
            raw = 2 * stats.norm.sf(np.abs(stat))
            at_r = {"none": raw, "holm": _holm(raw),
                    "tukey": stats.studentized_range.sf(np.abs(stat) * np.sqrt(2), k, np.inf)}[adjust]
            close(at_r, pr["p.value"], 1e-4, f"{name} {adjust} p at emmeans' z", atol=1e-10)
            close(pp["p"], pr["p.value"], 1e-2, f"{name} {adjust} p")


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adj = np.minimum(1, np.maximum.accumulate((m - np.arange(m)) * np.asarray(p)[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def test_effects_data_for_plots():
    res = fit("contraception")
    line = res.effects("age", by="urban")
    assert line.attrs["kind"] == "line" and list(line.columns) == ["x", "by", "estimate", "lower", "upper", "SE"]
    assert len(line) == 40 and set(line["by"]) == {"N", "Y"}
    assert np.all((line["lower"] < line["estimate"]) & (line["estimate"] < line["upper"]))
    assert np.all((line["lower"] > 0) & (line["upper"] < 1))  # the response scale: probabilities
    pts = res.effects("livch")
    assert pts.attrs["kind"] == "points" and pts["x"].tolist() == ["0", "1", "2", "3+"]
    np.testing.assert_allclose(pts["estimate"], res.emmeans("livch")["estimate"], rtol=1e-12)


def test_bad_input_names_the_argument():
    res = fit("cbpp")
    with pytest.raises(GlmmInputError, match="term 'perod' is not a factor or covariate.*'period'"):
        res.emmeans("perod")
    with pytest.raises(GlmmInputError, match="type must be 'response' or 'link'"):
        res.emmeans("period", type="odds")
    with pytest.raises(GlmmInputError, match="adjust must be one of tukey, holm"):
        res.pairs("period", adjust="scheffe")
    with pytest.raises(GlmmInputError, match="level must be"):
        res.emmeans("period", level=95)
    with pytest.raises(GlmmInputError, match="intercept must be True or False"):
        res.anova(intercept="yes")
    with pytest.raises(GlmmInputError, match="'age' is a covariate"):
        fit("contraception").pairs("age")


def test_a_numeric_column_made_a_factor_in_the_formula_is_that_factor():
    """``emmeans("period")`` on a fit of ``factor(period)`` gives the factor's levels, as emmeans does, not the
    numeric column as a covariate at its mean (a flat line)."""
    rng = np.random.default_rng(11)
    n = 400
    df = pd.DataFrame({"period": rng.integers(1, 5, n), "g": rng.integers(0, 20, n)})
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-(df["period"] == 3) * 1.2 + 0.3))).astype(int)
    res = glmmlab.glmm("y ~ factor(period) + (1 | g)", df, family="binomial")
    em = res.emmeans("period")
    assert len(em) == 4 and em["estimate"].nunique() == 4
    np.testing.assert_allclose(em["estimate"].to_numpy(), res.emmeans("factor(period)")["estimate"].to_numpy())
