"""Unit deviances: accurate near y = mu, where the textbook forms cancel (deviance residuals of well-fitted
rows depend on it). References are computed with 50-digit decimal arithmetic."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.distributions import minus_log1p, xlog1p_minus

getcontext().prec = 50
R = np.concatenate([-np.logspace(-9, np.log10(0.99), 150), np.logspace(-9, 1, 150), [-0.1, 0.1, -0.0999, 0.1001]])


def _ln(x: Decimal) -> Decimal:
    return x.ln()


def _xlog1p_minus_exact(r: float) -> float:
    d = Decimal(r)
    return float((1 + d) * _ln(1 + d) - d)


def _minus_log1p_exact(r: float) -> float:
    d = Decimal(r)
    return float(d - _ln(1 + d))


def test_xlog1p_minus_to_rounding():
    ref = np.array([_xlog1p_minus_exact(r) for r in R])
    np.testing.assert_allclose(xlog1p_minus(R), ref, rtol=1e-13)
    assert xlog1p_minus(np.array([-1.0]))[0] == pytest.approx(1.0)


def test_minus_log1p_to_rounding():
    ref = np.array([_minus_log1p_exact(r) for r in R])
    np.testing.assert_allclose(minus_log1p(R), ref, rtol=1e-13)


def _exact_dev(family: str, y: float, mu: float) -> float:
    Y, M = Decimal(y), Decimal(mu)

    def xlog(a: Decimal, b: Decimal) -> Decimal:  # a log(a / b), 0 when a = 0
        return a * _ln(a / b) if a != 0 else Decimal(0)

    if family == "binomial":
        return float(2 * (xlog(Y, M) + xlog(1 - Y, 1 - M)))
    if family == "poisson":
        return float(2 * (xlog(Y, M) - (Y - M)))
    return float(-2 * (_ln(Y / M) - (Y - M) / M))


@pytest.mark.parametrize("family", ["binomial", "poisson", "gamma"])
def test_unit_deviance_to_rounding_near_and_far_from_the_mean(family):
    rng = np.random.default_rng(1)
    n = 300
    mu = rng.uniform(0.05, 0.95, n) if family == "binomial" else rng.uniform(0.5, 20, n)
    y = rng.uniform(0.0, 1.0, n) if family == "binomial" else rng.uniform(0.1, 40, n)
    if family == "binomial":
        y[:50] = np.round(y[:50])
    if family == "poisson":
        y = np.floor(y)
    # rows right next to their mean, where the textbook form loses most of its digits
    near = slice(n - 60, n)
    y[near] = mu[near] * (1 + np.logspace(-9, -2, 60) * rng.choice([-1, 1], 60))
    if family == "poisson":
        mu[near] = np.round(y[near]) / (1 + np.logspace(-9, -2, 60))
        y[near] = np.round(y[near])
    ref = np.array([_exact_dev(family, a, b) for a, b in zip(y, mu)])
    np.testing.assert_allclose(FAMILIES[family].unit_deviance(y, mu), ref, rtol=1e-11)


@pytest.mark.parametrize("case", ["binary", "proportions", "far", "separated"])
def test_logit_deviance_sum_by_parts(case):
    # the binomial logit's fast state sums its deviance by parts (a log per run of rows, one dot product): within
    # the rounding of 1 + exp(-|eta|) per row (which the per-row logarithms carry too) of the exact sum, also where
    # most rows contribute almost nothing
    from math import fsum

    from glmmlab.engine.families.links import LINKS
    from glmmlab.engine.families.response import Response
    from glmmlab.engine.families.state import LOG_RUN, row_state

    rng = np.random.default_rng(7)
    n = 7 * LOG_RUN + 13  # runs of LOG_RUN rows and a rest
    eta = rng.normal(size=n) * (40.0 if case == "far" else 2.0)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    if case == "proportions":
        y = rng.integers(0, 6, size=n) / 5.0
    if case == "separated":  # most rows far on the side of their response (deviances of about 1e-13 each)
        eta = np.where(y == 1.0, 30.0, -30.0) + rng.normal(size=n)
        eta[::50] = rng.normal(size=eta[::50].size)
    resp = Response(y, FAMILIES["binomial"])
    rs = row_state(resp, eta, LINKS["logit"])
    total = rs.dev_sum()
    ylogy = np.broadcast_to(resp.ylogy, (n,))
    exact = 2 * sum(Decimal(c) + _ln(1 + (-abs(Decimal(e))).exp()) + max(Decimal(e), Decimal(0))
                    - Decimal(v) * Decimal(e) for c, e, v in zip(ylogy, eta, y))
    # the rounding of 1 + exp(-|eta|) and of a run's product, at most an ulp of 1 each per row, and a dot product's;
    # the sums of max(eta, 0) and of y eta apart: off by 4.4e-12 here ("separated"), 1.7e-12 ("far")
    bound = 4e-15 * abs(float(exact)) + 2 * n * 2.2e-16
    assert abs(total - float(exact)) <= bound
    assert abs(fsum(rs.dev) - float(exact)) <= bound  # the per-row deviances (made when first read) alike
    w = rng.uniform(0.5, 2.0, size=n)
    assert rs.dev_sum(w) == pytest.approx(fsum(w * rs.dev), rel=1e-12)
