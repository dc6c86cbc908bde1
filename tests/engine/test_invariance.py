"""Fits must not depend on row order, on how groups are labelled, or on the units of a predictor."""

from __future__ import annotations

import numpy as np
import pytest

import glmmlab
from tests.conftest import load_case

CASES = ["exam_gaussian", "cbpp_binomial_logit", "grouseticks_poisson_log", "sim_gamma_log", "sim_binomial_probit"]


def _fit(ref, data, **kw):
    return glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], family=ref["family"].lower(),
                            link=ref["link"], **kw)


@pytest.mark.parametrize("case", CASES)
def test_row_order(case):
    ref, data = load_case(case)
    a = _fit(ref, data)
    perm = np.random.default_rng(1).permutation(len(data))
    b = _fit(ref, data.iloc[perm].reset_index(drop=True))
    assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-5, atol=1e-6 * np.max(a.se))
    assert b.variances[0]["variance"] == pytest.approx(a.variances[0]["variance"], rel=1e-5, abs=1e-9)
    # diagnostics follow the rows: row i of b is input row perm[i] of a
    fa = dict(zip(a.rows, a.fitted))
    np.testing.assert_allclose(b.fitted, [fa[perm[r]] for r in b.rows], rtol=1e-5, atol=1e-6 * np.std(a.fitted))


@pytest.mark.parametrize("case", CASES)
def test_group_relabelling(case):
    ref, data = load_case(case)
    a = _fit(ref, data)
    relabelled = data.copy()
    g = ref["group"]
    levels = sorted(relabelled[g].astype(str).unique())
    mapping = {lv: f"zz{len(levels) - i:04d}" for i, lv in enumerate(levels)}  # reverses the sort order
    relabelled[g] = relabelled[g].astype(str).map(mapping)
    b = _fit(ref, relabelled)
    assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-5, atol=1e-6 * np.max(a.se))
    blup_a = dict(zip(a.modes[0].levels, a.modes[0].values[:, 0]))
    blup_b = dict(zip(b.modes[0].levels, b.modes[0].values[:, 0]))
    for lv, new in mapping.items():
        assert blup_b[new] == pytest.approx(blup_a[lv], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("factor", [1e7, 1e-6])
def test_predictor_units(case, factor):
    """Multiplying a predictor by 1e7 (or 1e-6) divides its coefficient and SE by the same factor."""
    ref, data = load_case(case)
    x = ref["fixed"][-1]
    a = _fit(ref, data)
    scaled = data.copy()
    scaled[x] = scaled[x] * factor
    b = _fit(ref, scaled)
    k = a.names.index(x)
    assert b.beta[k] * factor == pytest.approx(a.beta[k], rel=1e-5)
    assert b.se[k] * factor == pytest.approx(a.se[k], rel=1e-5)
    assert b.variances[0]["variance"] == pytest.approx(a.variances[0]["variance"], rel=1e-5)
    if a.method == "REML":
        # REML's log-likelihood carries log|X'V^-1X|, which moves by -log(factor) exactly (as lme4's would).
        assert b.log_likelihood == pytest.approx(a.log_likelihood - np.log(factor), rel=1e-9)
    else:
        assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=1e-9, abs=1e-7)


def test_integer_coded_groups_match_string_groups():
    ref, data = load_case("sleepstudy_gaussian")
    a = _fit(ref, data)
    codes = data.copy()
    codes[ref["group"]] = data[ref["group"]].astype(str).str.extract(r"(\d+)")[0].astype(int)
    b = _fit(ref, codes)
    assert b.log_likelihood == pytest.approx(a.log_likelihood, rel=1e-10)
    assert all(label.isdigit() for label in b.modes[0].levels)
