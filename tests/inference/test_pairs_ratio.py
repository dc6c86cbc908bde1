"""Pairwise comparisons on the response scale (issue 19, point 5) against R's emmeans: with a logit link the odds
ratios of the means, with a log link their ratios ("a / b", exp of the link-scale difference, the delta method's SE,
the link scale's z and p), as ``pairs(emmeans(fit, ~ f, type = "response"))`` gives them. References:
tests/reference/inference/pairs_ratio.json, made by make_pairs_ratio.R (emmeans 1.8.4-1, lme4 1.1-31). Tolerances as
tests/inference/test_terms.py's GLMMs: 1e-3 relative (Laplace: lme4's optimum differs slightly from ours); p-values
at emmeans' own z to 1e-4, ours to 1e-2."""

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
from glmmlab.services.modeling.marginal import pairs
from tests.inference.conftest import read

REF = json.loads((Path(__file__).resolve().parents[1] / "reference" / "inference" / "pairs_ratio.json").read_text())
CASES = [k for k, v in REF.items() if isinstance(v, dict)]


def frame(case: str) -> pd.DataFrame:
    df = read(REF[case]["data"])
    if case == "ticks_year":  # the year as a factor, made from the file's two indicator columns as the R script does
        df["year"] = np.where(df["YEAR96"] == 1, "y96", np.where(df["YEAR97"] == 1, "y97", "y95"))
    return df


@lru_cache(maxsize=None)
def fit(case: str):
    c = REF[case]
    return glmmlab.glmm(c["formula"], frame(case), family=c["family"])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("adjust", ["tukey", "holm"])
def test_ratios_and_odds_ratios_match_emmeans(case, adjust):
    c, res = REF[case], fit(case)
    theirs = pd.DataFrame(c[adjust])
    ours = pairs(res, c["term"], adjust=adjust, type="response")
    scale = "odds ratio" if c["family"] == "binomial" else "ratio"
    assert ours.attrs["scale"] == scale and f"{scale}s of the means" in ours.attrs["note"]
    assert list(ours.columns) == ["contrast", "estimate", "SE", "df", "statistic", "p"]
    assert ours["contrast"].tolist() == theirs["contrast"].tolist()  # "P1 / P2"
    np.testing.assert_allclose(ours["estimate"], theirs[scale.replace(" ", ".")], rtol=1e-3)
    np.testing.assert_allclose(ours["SE"], theirs["SE"], rtol=1e-3)
    np.testing.assert_allclose(ours["statistic"], theirs["z.ratio"], rtol=1e-3)
    assert np.all(np.isinf(ours["df"])) and theirs["df"].isna().all()
    z = np.asarray(theirs["z.ratio"], dtype=float)
    raw = 2 * stats.norm.sf(np.abs(z))
    k = len(res.emmeans(c["term"]))
    if adjust == "tukey":
        at_r = stats.studentized_range.sf(np.abs(z) * np.sqrt(2), k, np.inf)
    else:
        order = np.argsort(raw)
        at_r = np.empty_like(raw)
        at_r[order] = np.minimum(1, np.maximum.accumulate((len(raw) - np.arange(len(raw))) * raw[order]))
    np.testing.assert_allclose(at_r, theirs["p.value"], rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(ours["p"], theirs["p.value"], rtol=1e-2, atol=1e-12)


def test_the_link_scale_stays_the_default_and_other_links_keep_differences():
    res = fit("cbpp_period")
    link = pairs(res, "period")
    ratio = pairs(res, "period", type="response")
    assert link.attrs["scale"] == "difference" and link["contrast"][0] == "P1 - P2"
    np.testing.assert_allclose(np.exp(link["estimate"]), ratio["estimate"], rtol=1e-12)
    np.testing.assert_allclose(link["p"], ratio["p"], rtol=1e-12)
    probit = glmmlab.glmm(REF["cbpp_period"]["formula"], frame("cbpp_period"), family="binomial", link="probit")
    kept = pairs(probit, "period", type="response")  # no ratio on a probit scale: emmeans keeps the differences
    assert kept.attrs["scale"] == "difference" and kept["contrast"][0] == "P1 - P2"
    with pytest.raises(GlmmInputError, match="type must be 'response' or 'link'"):
        pairs(res, "period", type="odds")


def test_the_result_method_passes_the_scale_on():
    """``result.pairs(term, type="response")`` is the service's ratio table (the method once dropped ``type``)."""
    c, res = REF[CASES[0]], fit(CASES[0])
    via_method = res.pairs(c["term"], type="response")
    pd.testing.assert_frame_equal(via_method, pairs(res, c["term"], type="response"))
    assert via_method.attrs["scale"] in ("ratio", "odds ratio")
