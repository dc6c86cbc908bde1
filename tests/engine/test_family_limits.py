"""Family parameters at their limit: the negative binomials fitted to counts without overdispersion.

The limit of NB2 (theta -> infinity) and of NB1 (phi -> 0) is the Poisson, so on Poisson counts their maximum
likelihood is the Poisson model's: an independent evaluation of the log-likelihood the fit must reach (the Poisson
fit agrees with lme4 in the reference tests). Before the log-densities were written without cancellation and the
limit was tried explicitly, these fits stopped part of the way (a truncated NB2 hurdle 0.05 below the limit's
log-likelihood), wandered for minutes (a plain NB1: 182 s, not converged) or broke down (a zero-inflated NB2 at
theta = 5e15 reported a log-likelihood of +23,694). glmmTMB 1.1.5 reaches the same log-likelihoods on these data
with "false convergence" warnings (docs/guide/dispersion.md).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import special

import glmmlab
from glmmlab.engine.families.densities import NegBin2Density
from glmmlab.engine.families.distributions import negbin_family
from glmmlab.engine.families.gamma_functions import digamma_diff, lgamma_ratio
from glmmlab.engine.families.glmmtmb import nbinom1_family
from glmmlab.engine.families.response import Response


def _exact_ratio(y: int, s: float) -> float:
    """log Gamma(y + s) - log Gamma(s) - y log s = sum_{k < y} log(1 + k / s) for a whole y."""
    return math.fsum(math.log1p(k / s) for k in range(y))


def _exact_digamma(y: int, s: float) -> float:
    """psi(y + s) - psi(s) = sum_{k < y} 1 / (s + k) for a whole y."""
    return math.fsum(1.0 / (s + k) for k in range(y))


@pytest.mark.parametrize("s", [0.5, 3.0, 9.99, 10.0, 1e3, 1e5, 1e9, 1e15])
def test_log_gamma_differences_keep_their_digits(s):
    for y in (0, 1, 2, 7, 50, 1000):
        want, got = _exact_ratio(y, s), float(lgamma_ratio(float(y), s))
        # relative to the value, with an absolute floor of the rounding of y-sized terms
        assert abs(got - want) <= 1e-12 * abs(want) + 4e-16 * max(y, 1) * (1.0 + abs(math.log(s))), (y, s)
        want_d, got_d = _exact_digamma(y, s), float(digamma_diff(float(y), s))
        assert abs(got_d - want_d) <= 1e-11 * abs(want_d) + 1e-300, (y, s)
    # arrays, broadcasting and sizes on both sides of the series' threshold in one call
    ys = np.array([0.0, 3.0, 12.0])
    ss = np.array([2.0, 1e6, 40.0])
    np.testing.assert_allclose(lgamma_ratio(ys, ss), [_exact_ratio(int(a), b) for a, b in zip(ys, ss)],
                               rtol=1e-12, atol=1e-15)


def test_negative_binomials_reach_the_poisson_at_their_limit():
    y = np.array([0.0, 1.0, 2.0, 5.0, 11.0, 30.0])
    mu = np.array([0.3, 1.2, 2.0, 4.0, 9.5, 25.0])
    pois = special.xlogy(y, mu) - mu - special.gammaln(y + 1.0)
    # the distance to the Poisson is about ((y - mu)^2 - y) / (2 theta) (NB2), phi ((y - mu)^2 - y) / (2 mu) (NB1):
    # below 1e3 / theta and 1e3 phi here; before, the rounding of log Gamma(theta) alone was 1e-6 at theta = 1e8
    for theta in (1e8, 1e12, 1e15):
        np.testing.assert_allclose(negbin_family(theta).logpdf(y, mu, 1.0), pois, rtol=0, atol=1e3 / theta + 1e-13)
    for phi in (1e-8, 1e-12):
        np.testing.assert_allclose(nbinom1_family(phi).logpdf(y, mu, 1.0), pois, rtol=0, atol=1e3 * phi + 1e-13)


def test_nb2_density_of_the_modelled_families_at_a_large_theta():
    from glmmlab.engine.families.densities import _density

    y = np.array([0.0, 1.0, 4.0, 17.0])
    mu = np.array([0.5, 1.5, 3.0, 15.0])
    pois = special.xlogy(y, mu) - mu - special.gammaln(y + 1.0)
    base = _density("negbin")
    assert isinstance(base, NegBin2Density)
    for theta in (1e9, 1e15):
        member = replace(base, parameters=(theta,))
        resp = Response(y, member)
        ll = member.mu_terms(resp, mu, 1.0 - mu)[0]
        np.testing.assert_allclose(ll, pois, rtol=0, atol=1e3 / theta + 1e-13)


def _poisson_counts(seed: int, hurdle: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(30), 20)
    x = rng.normal(size=g.size)
    b = rng.normal(0.0, 0.5, 30)
    y = rng.poisson(np.exp((1.0 if hurdle else 0.5) + 0.4 * x + b[g]))
    if hurdle:
        y[rng.random(g.size) < 0.3] = 0
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"g{i}" for i in g]})


@pytest.mark.parametrize("family, limit, kwargs", [
    ("nbinom2", "poisson", {}),
    ("nbinom1", "poisson", {}),
    ("nbinom2", "poisson", {"zi": "~ 1"}),
    ("truncated_nbinom2", "truncated_poisson", {"zi": "~ 1"}),
    ("truncated_nbinom1", "truncated_poisson", {"zi": "~ 1"}),
])
@pytest.mark.parametrize("seed", [7, 8])
def test_a_negative_binomial_fit_to_poisson_counts_reaches_the_poisson_fit(family, limit, kwargs, seed):
    d = _poisson_counts(seed, hurdle=family.startswith("truncated"))
    at_limit = glmmlab.glmm("y ~ x + (1 | g)", d, family=limit, **kwargs)
    r = glmmlab.glmm("y ~ x + (1 | g)", d, family=family, **kwargs)
    assert r.converged
    # the Poisson model is the negative binomial's limit: its fit is never more than 1e-6 above the negative
    # binomial's (a sample can show a little overdispersion, and the optimum is then inside, higher)
    assert r.llf >= at_limit.llf - 1e-6
    warned = [w for w in r.warnings if "went to its limit" in w]
    if r.llf <= at_limit.llf + 1e-6:
        # at the limit: the limit model's fit, and said so
        assert any(limit in w and "no overdispersion" in w for w in warned), r.warnings
        se = at_limit.bse
        np.testing.assert_array_less(np.abs(r.fixef["cond"].values - at_limit.fixef["cond"].values),
                                     1e-3 * se.values)
        if family != "nbinom1":  # NB1's SEs come from the Hessian (glmmTMB's), the Poisson's from PIRLS (lme4's)
            np.testing.assert_allclose(r.bse.values, se.values, rtol=2e-3)
    else:
        assert not any("no overdispersion" in w for w in warned), r.warnings


def test_zero_inflation_at_its_limit_is_the_model_without_it():
    d = _poisson_counts(7)
    plain = glmmlab.glmm("y ~ x + (1 | g)", d, family="poisson")
    zip_ = glmmlab.glmm("y ~ x + (1 | g)", d, family="poisson", zi="~ 1")
    assert zip_.converged
    assert abs(zip_.llf - plain.llf) <= 1e-6
    assert any("zero-inflation probability went to its limit" in w for w in zip_.warnings), zip_.warnings
    np.testing.assert_array_less(np.abs(zip_.fixef["cond"].values - plain.fixef["cond"].values),
                                 1e-3 * plain.bse.values)


def test_a_beta_binomial_fit_to_binomial_counts_reaches_the_binomial_fit():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(30), 15)
    x = rng.normal(size=g.size)
    n = rng.integers(5, 20, size=g.size)
    p = special.expit(-0.3 + 0.5 * x + rng.normal(0.0, 0.6, 30)[g])
    k = rng.binomial(n, p)
    d = pd.DataFrame({"k": k, "f": n - k, "x": x, "g": [f"g{i}" for i in g]})
    binom = glmmlab.glmm("cbind(k, f) ~ x + (1 | g)", d, family="binomial")
    r = glmmlab.glmm("cbind(k, f) ~ x + (1 | g)", d, family="betabinomial")
    assert r.converged
    assert r.llf >= binom.llf - 1e-6
    if r.llf <= binom.llf + 1e-6:
        assert any("binomial" in w and "went to its limit" in w for w in r.warnings), r.warnings
        np.testing.assert_array_less(np.abs(r.fixef["cond"].values - binom.fixef["cond"].values),
                                     1e-3 * binom.bse.values)
