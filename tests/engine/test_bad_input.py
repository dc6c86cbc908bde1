"""Bad input gets a clear refusal that names the column or option; degenerate data get named warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab import GlmmInputError


def _data(n=200, groups=10, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    eta = 0.3 + 0.5 * x + rng.normal(scale=0.7, size=groups)[g]
    return pd.DataFrame({
        "y": eta + rng.normal(size=n), "yb": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int),
        "yc": rng.poisson(np.exp(eta)), "x": x, "g": [f"G{k}" for k in g],
    })


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(family="binomial", link="log"),
     r"link 'log' is not available for the binomial family: choose one of logit, probit"),
    (dict(family="poisson", link="logit"), r"choose one of log, identity"),
    (dict(family="gamma", link="probit"), r"choose one of inverse, log, identity"),
    (dict(family="gaussian", link="logit"), r"choose one of identity, log, inverse"),
    (dict(family="quasipoisson"), r"unknown family .quasipoisson."),
    (dict(conf_level=0.4), r"conf_level must be between 0.5 and 0.9999"),
    (dict(conf_level=1.0), r"conf_level must be between 0.5 and 0.9999"),
    (dict(max_iter=0), r"max_iter must be an integer from 1 to 100000"),
    (dict(tol=0.0), r"tol must be a number between 0 and 1"),
    (dict(nagq=0), r"nagq must be an integer from 1"),
    (dict(nagq=5), r"nagq > 1 .* gaussian"),
    (dict(se="robust"), r"se must be 'working' or 'hessian'"),
])
def test_bad_options(kwargs, pattern):
    df = _data()
    y = {"binomial": "yb", "poisson": "yc"}.get(kwargs.get("family"), "y")
    with pytest.raises(GlmmInputError, match=pattern):
        glmmlab.fit_glmm(df, y, "g", ["x"], **kwargs)


def test_canonical_links_are_defaults():
    df = _data()
    df["ypos"] = np.exp(df["y"] / 3)
    for fam, y, link in [("gaussian", "y", "identity"), ("binomial", "yb", "logit"), ("poisson", "yc", "log"),
                         ("gamma", "ypos", "inverse")]:
        assert glmmlab.fit_glmm(df, y, "g", ["x"], family=fam).model["link"] == link


@pytest.mark.parametrize("family,value,pattern", [
    ("binomial", 2.0, r"response 'r' must lie between 0 and 1"),
    ("binomial", -1.0, r"response 'r' must lie between 0 and 1"),
    ("poisson", -3.0, r"response 'r' must be a non-negative count"),
    ("gamma", 0.0, r"response 'r' must be strictly positive"),
])
def test_response_range(family, value, pattern):
    df = _data()
    df["r"] = df["yb"].astype(float) + (df["yc"] if family != "binomial" else 0) + 0.5 * (family == "gamma")
    df.loc[3, "r"] = value
    with pytest.raises(GlmmInputError, match=pattern):
        glmmlab.fit_glmm(df, "r", "g", ["x"], family=family)


def test_missing_column_names_it():
    with pytest.raises(GlmmInputError,
                       match=r"fixed-effect column 'nope' is not in the data; available columns: y, yb"):
        glmmlab.fit_glmm(_data(), "y", "g", ["x", "nope"])


def test_text_column_as_predictor_becomes_a_factor():
    """A text fixed effect is a factor with treatment contrasts (the first level in sorted order is the
    reference), in the random-intercept form as in a formula, and both give the same fit."""
    df = _data()
    df["t"] = np.array(["b", "a", "c"])[np.arange(len(df)) % 3]
    res = glmmlab.fit_glmm(df, "y", "g", ["x", "t"])
    assert res.names == ["(Intercept)", "x", "tb", "tc"]
    same = glmmlab.glmm("y ~ x + t + (1 | g)", df)
    np.testing.assert_allclose(res.beta, same.beta, rtol=1e-10)


def test_grouping_factor_with_a_level_per_row_is_refused():
    df = _data()
    with pytest.raises(GlmmInputError, match=r"'x'"):
        glmmlab.fit_glmm(df, "y", "x", ["g"])


def test_one_group_is_refused():
    df = _data()
    df["g"] = "only"
    with pytest.raises(GlmmInputError, match=r"group variable 'g' has 1 group.*at least 2 groups"):
        glmmlab.fit_glmm(df, "y", "g", ["x"])


def test_same_column_twice_is_refused():
    with pytest.raises(GlmmInputError, match=r"'y' is the response and cannot also be a fixed effect"):
        glmmlab.fit_glmm(_data(), "y", "g", ["x", "y"])
    with pytest.raises(GlmmInputError, match=r"'g' is the group variable"):
        glmmlab.fit_glmm(_data(), "y", "g", ["g"])
    with pytest.raises(GlmmInputError, match=r"fixed effect 'x' is listed twice"):
        glmmlab.fit_glmm(_data(), "y", "g", ["x", "x"])


def test_all_rows_incomplete():
    df = _data()
    df["y"] = np.nan
    with pytest.raises(GlmmInputError, match=r"no complete rows"):
        glmmlab.fit_glmm(df, "y", "g", ["x"])


def test_listwise_deletion_counts_and_rows():
    df = _data()
    df["y"] = df["y"].astype(object)
    df.loc[2, "y"] = "n/a"          # non-numeric
    df.loc[5, "x"] = np.inf         # infinite
    df.loc[7, "g"] = None           # missing group
    df.loc[9, "y"] = np.nan         # missing
    res = glmmlab.fit_glmm(df, "y", "g", ["x"])
    assert res.n_excluded == 4 and res.n_obs == len(df) - 4
    assert set(range(len(df))) - set(res.rows.tolist()) == {2, 5, 7, 9}


def test_constant_predictor_is_dropped_with_a_named_warning():
    df = _data()
    df["c"] = 3.0
    res = glmmlab.fit_glmm(df, "y", "g", ["x", "c"])
    assert res.names == ["(Intercept)", "x"]
    assert any("'c' is constant" in w for w in res.warnings)


def test_collinear_predictor_is_dropped_with_a_named_warning():
    df = _data()
    df["x2"] = 2 * df["x"] + 1
    res = glmmlab.fit_glmm(df, "y", "g", ["x", "x2"])
    assert res.names == ["(Intercept)", "x"]
    assert any("'x2'" in w and "collinear" in w for w in res.warnings)


def test_huge_predictor_scale_fits_like_unit_scale():
    df = _data()
    df["xbig"] = df["x"] * 1e7
    a = glmmlab.fit_glmm(df, "yb", "g", ["x"], family="binomial")
    b = glmmlab.fit_glmm(df, "yb", "g", ["xbig"], family="binomial")
    assert b.converged and b.beta[1] * 1e7 == pytest.approx(a.beta[1], rel=1e-6)


def test_few_groups_warning_and_singular_fit():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(["a", "b", "c"], 20)})
    res = glmmlab.fit_glmm(df, "y", "g", ["x"])
    assert any("Only 3 groups" in w for w in res.warnings)
    if res.singular:
        assert any(w.startswith("Singular fit") for w in res.warnings)


def test_separation_is_warned_with_the_column():
    df = _data(n=400)
    df["sep"] = (df["yb"] == 1).astype(int)
    res = glmmlab.fit_glmm(df, "yb", "g", ["x", "sep"], family="binomial")
    assert any("separation" in w and "'sep'" in w for w in res.warnings)


def test_non_convergence_is_flagged_with_advice():
    df = _data()
    res = glmmlab.fit_glmm(df, "yb", "g", ["x"], family="binomial", max_iter=1)
    assert res.converged is False
    assert any("did not converge within 1 iterations" in w and "Max Iterations" in w for w in res.warnings)
    assert np.all(np.isfinite(res.beta))


@pytest.mark.parametrize("family,value", [("binomial", 0.0), ("binomial", 1.0), ("poisson", 0.0),
                                          ("gaussian", 2.5), ("gamma", 2.5)])
def test_constant_response_is_refused(family, value):
    df = _data()
    df["k"] = value
    with pytest.raises(GlmmInputError, match=r"response 'k' has the same value .* nothing to model"):
        glmmlab.fit_glmm(df, "k", "g", ["x"], family=family)


def test_numerical_breakdown_is_a_clear_refusal():
    """A log link cannot fit a response whose mean is negative: refused in words, not with a traceback."""
    df = _data()
    df["neg"] = -5.0 + df["y"]
    with pytest.raises(GlmmInputError, match=r"the fit broke down numerically.*gaussian family with the log link"):
        glmmlab.fit_glmm(df, "neg", "g", ["x"], family="gaussian", link="log")
