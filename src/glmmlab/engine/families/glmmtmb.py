"""glmmTMB's families with parameters of their own (its densities, names and scales): ``nbinom1``,
``beta_family``, ``betabinomial``, ``t_family`` and ``tweedie``. Each member (a family at fixed parameter values)
gives the engine the log-density's derivatives in the mean (:class:`~glmmlab.engine.families.distributions
.DensityFamily`), an expected information for the starting GLM and Var(y) for Pearson residuals; its parameters are
estimated with the others (the Tweedie, with its series, lives in :mod:`glmmlab.engine.families.tweedie` and is
given here too). The catalogue of every family is :mod:`glmmlab.engine.families.catalogue`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import (
    _TINY,
    LOG_PI,
    DensityFamily,
    Family,
    _check_counts,
    _in_unit_interval,
    _polygamma2,
    _positive,
)
from glmmlab.engine.families.gamma_functions import (
    count_runs,
    digamma_diff,
    lgamma_ratio,
    tetragamma_diff,
    trigamma,
    trigamma_diff,
)
from glmmlab.engine.families.links import _EPS
from glmmlab.engine.families.state import kept_on
from glmmlab.engine.families.tweedie import (  # noqa: F401 - glmmTMB's tweedie, given here with the others
    Tweedie,
    tweedie_family,
    tweedie_log_series,
    tweedie_sample,
    tweedie_sat_partials,
)


class CompleteDensity:
    """glmmTMB's families fitted through their log-density (NB1, beta, beta-binomial, t): a row state's deviance
    2 (c - log f) carries log f whole, and a response's constants other than c (logs, log-gammas of y) do not
    depend on the parameters, so one response serves every member and differences of the row states in the
    parameters are those of log f itself: the constant c has no partials to add (see
    laplace_gradient._psi_gradient, glm_start.profile_slope)."""

    def sat_partials(self: Any, y: np.ndarray) -> list[np.ndarray]:  # self: the Family it is mixed into
        return [np.zeros_like(y) for _ in self.free_parameters()]


# -- NB1 ----------------------------------------------------------------------------------------------------------
def _nb1_variance(mu, phi):
    return mu * (1.0 + phi)


def _nb1_variance_d1(mu, phi):
    return np.full_like(mu, 1.0 + phi)


def _nb1_logpdf(y, mu, disp, phi):
    mu = np.maximum(mu, _TINY)
    s = mu / phi
    # log Gamma(y + s) - log Gamma(s) - log y! - s log(1 + phi) + y log(phi / (1 + phi)), the parts of size log s
    # cancelled by hand (gamma_functions.lgamma_ratio): every digit also near the Poisson limit phi -> 0
    return lgamma_ratio(y, s) - special.gammaln(y + 1.0) + special.xlogy(y, mu) - (s + y) * np.log1p(phi)


def _nb1_unit_deviance(y, mu, phi):
    return 2.0 * (_nb1_logpdf(y, np.maximum(y, _TINY), 1.0, phi) - _nb1_logpdf(y, mu, 1.0, phi))


@dataclass(frozen=True)
class NegativeBinomial1(CompleteDensity, DensityFamily):
    def safe_links(self):
        return ("log",)

    def check_response(self, y, response):
        _check_counts(y, response, self.name)

    def start_mu(self, y, link):
        return y + 0.1

    def _prepare(self, resp):
        resp.lgamma_y1 = special.gammaln(resp.y + 1.0)

    def _sat(self, y, resp):
        return _nb1_logpdf(y, np.maximum(y, _TINY), 1.0, self.parameters[0])

    def mu_terms(self, resp, mu, q):
        phi = self.parameters[0]
        y = resp.y
        s = mu / phi
        ys = y + s
        lp = np.log1p(phi)
        runs = self._runs(resp)
        ratio = lgamma_ratio(y, s) if runs is None else runs.sums(np.log1p(runs.k / self._run_sizes(resp, mu)))
        ll = ratio - resp.lgamma_y1 + y * np.log(mu) - ys * lp  # as _nb1_logpdf
        l1 = (self.size_diffs(resp, mu, 0) - lp) / phi
        l2 = self.size_diffs(resp, mu, 1) / (phi * phi)
        var = mu * (1.0 + phi)
        return ll, l1, l2, 1.0 / var, var

    def mu_third(self, resp, mu, q):
        phi = self.parameters[0]
        return self.size_diffs(resp, mu, 2) / phi ** 3

    def size_diffs(self, resp, mu: np.ndarray, order: int) -> np.ndarray:
        """psi^(order)(y + s) - psi^(order)(s) per row (order 0, 1 or 2; s = mu / phi, the size), kept on the
        response for this member and these means: a row state, the gradient's third derivatives and the
        dispersion model's partials take them at the same means (each trigamma or tetragamma difference costs
        as much as the rest of the row state)."""
        kept = kept_on(resp, "_nb1_size_diffs", (self, mu, resp.y), dict)
        if order not in kept:
            runs = self._runs(resp)
            if runs is None:
                kept[order] = (digamma_diff, trigamma_diff, tetragamma_diff)[order](resp.y, mu / self.parameters[0])
            else:  # (integer counts: sums of 1 / (s + k)^(order + 1) over each count's run, the powers shared)
                if "inv" not in kept:
                    kept["inv"] = 1.0 / (self._run_sizes(resp, mu) + runs.k)
                inv = kept["inv"]
                if order == 0:
                    kept[order] = runs.sums(inv)
                else:
                    if "inv2" not in kept:
                        kept["inv2"] = inv * inv
                    kept[order] = -runs.sums(kept["inv2"]) if order == 1 else 2.0 * runs.sums(kept["inv2"] * inv)
        return kept[order]

    @staticmethod
    def _runs(resp):
        """The counts' :class:`~glmmlab.engine.families.gamma_functions.CountRuns` (or None), kept per y."""
        return kept_on(resp, "_count_runs", (resp.y,), lambda: count_runs(resp.y))

    def _run_sizes(self, resp, mu: np.ndarray) -> np.ndarray:
        """The size s = mu / phi at each pair of the counts' runs, kept for this member and these means."""
        return kept_on(resp, "_nb1_run_sizes", (self, mu, resp.y),
                       lambda: (mu / self.parameters[0])[self._runs(resp).rows])

    def _member(self, values):
        return nbinom1_family(*values)

    def start_parameters(self, y, pw, trials):
        mean, var = float(np.average(y, weights=pw)), float(np.average((y - np.average(y, weights=pw)) ** 2,
                                                                          weights=pw))
        return (min(max(var / max(mean, 1e-8) - 1.0, 0.1), 1e3),)

    def exp_label(self, link):
        return "IRR" if link == "log" else None

    def sample(self, rng, mu, pw, phi):
        size = np.maximum(mu, _TINY) / self.parameters[0]
        return rng.negative_binomial(size, 1.0 / (1.0 + self.parameters[0])).astype(float)


def nbinom1_family(phi: float) -> Family:
    """glmmTMB's nbinom1: the negative binomial of size mu / phi, Var(Y) = mu (1 + phi); phi on the log scale."""
    phi = float(phi)
    return NegativeBinomial1("nbinom1", "Negative Binomial (NB1)", ("log", "identity"), False,
                             partial(_nb1_variance, phi=phi), partial(_nb1_variance_d1, phi=phi),
                             partial(_nb1_unit_deviance, phi=phi), partial(_nb1_logpdf, phi=phi), _positive,
                             observed_information=True, mean_range=(0.0, np.inf), parameter_names=("phi",),
                             parameters=(phi,), parameter_scales=("log",), edm=False, hessian_se=True)


# -- beta ---------------------------------------------------------------------------------------------------------
def _beta_variance(mu, phi):
    return mu * (1.0 - mu) / (1.0 + phi)


def _beta_variance_d1(mu, phi):
    return (1.0 - 2.0 * mu) / (1.0 + phi)


def _beta_logpdf(y, mu, disp, phi):
    a, b = mu * phi, (1.0 - mu) * phi
    return (special.gammaln(phi) - special.gammaln(a) - special.gammaln(b) + (a - 1.0) * np.log(y)
            + (b - 1.0) * np.log1p(-y))


def _beta_unit_deviance(y, mu, phi):
    return 2.0 * (_beta_logpdf(y, y, 1.0, phi) - _beta_logpdf(y, mu, 1.0, phi))


def check_unit_interval(y: np.ndarray, response: str, family: str) -> None:
    """A response strictly between 0 and 1 (the beta family has no density at 0 or 1)."""
    bad = (y <= 0) | (y >= 1) | ~np.isfinite(y)
    if np.any(bad):
        raise GlmmInputError(
            f"response '{response}' must lie strictly between 0 and 1 for the {family} family (found "
            f"{y[bad][0]:g}); a proportion with exact 0s or 1s needs another model (e.g. betabinomial with the "
            "trials, or a transformation such as (y (n - 1) + 0.5) / n)")


def _pair_sum(fn, a: np.ndarray, b: np.ndarray, sign: float) -> np.ndarray:
    """fn(a) + sign fn(b) with both in one call of ``fn`` (the polygamma recurrences and series pass over them
    together: 1,800 rows' trigamma pair 169 -> 122 us)."""
    if np.ndim(a) != 1 or np.shape(a) != np.shape(b):
        return fn(a) + sign * fn(b)
    both = fn(np.concatenate([a, b]))
    n = a.shape[0]
    return both[:n] + both[n:] if sign > 0 else both[:n] - both[n:]


@dataclass(frozen=True)
class BetaFamily(CompleteDensity, DensityFamily):
    def safe_links(self):
        return ("logit", "probit")

    def check_response(self, y, response):
        check_unit_interval(y, response, self.name)

    def start_mu(self, y, link):
        return 0.5 * (y + float(np.mean(y)))

    def _prepare(self, resp):
        resp.log_y = np.log(resp.y)
        resp.log_1my = np.log1p(-resp.y)

    def _sat(self, y, resp):
        return _beta_logpdf(y, y, 1.0, self.parameters[0])

    def mu_terms(self, resp, mu, q):
        phi = self.parameters[0]
        a, b = mu * phi, q * phi
        ll = (special.gammaln(phi) - special.gammaln(a) - special.gammaln(b) + (a - 1.0) * resp.log_y
              + (b - 1.0) * resp.log_1my)
        l1 = phi * (resp.log_y - resp.log_1my - special.digamma(a) + special.digamma(b))
        t1 = _pair_sum(trigamma, a, b, 1.0)
        return ll, l1, -phi * phi * t1, phi * phi * t1, mu * q / (1.0 + phi)

    def mu_third(self, resp, mu, q):
        phi = self.parameters[0]
        return -phi ** 3 * _pair_sum(_polygamma2, mu * phi, q * phi, -1.0)

    def _member(self, values):
        return beta_family(*values)

    def start_parameters(self, y, pw, trials):
        m = float(np.average(y, weights=pw))
        v = float(np.average((y - m) ** 2, weights=pw))
        return (min(max(m * (1.0 - m) / max(v, 1e-12) - 1.0, 0.5), 1e4),)

    def exp_label(self, link):
        return "OR" if link == "logit" else None

    def sample(self, rng, mu, pw, phi):
        p = self.parameters[0]
        m = np.clip(mu, _EPS, 1.0 - _EPS)  # a logit link's mean rounds to 0 or 1 far out: no beta there
        return rng.beta(m * p, (1.0 - m) * p)


def beta_family(phi: float) -> Family:
    """glmmTMB's beta_family: Beta(mu phi, (1 - mu) phi), Var = mu (1 - mu) / (1 + phi); the precision phi on the
    log scale."""
    phi = float(phi)
    return BetaFamily("beta_family", "Beta", ("logit", "probit"), False,
                      partial(_beta_variance, phi=phi), partial(_beta_variance_d1, phi=phi),
                      partial(_beta_unit_deviance, phi=phi), partial(_beta_logpdf, phi=phi), _in_unit_interval,
                      observed_information=True, mean_range=(0.0, 1.0), parameter_names=("phi",),
                      parameters=(phi,), parameter_scales=("log",), edm=False, hessian_se=True)


# -- beta-binomial ------------------------------------------------------------------------------------------------
def _betabinomial_variance(mu, phi):
    return mu * (1.0 - mu)


def _betabinomial_variance_d1(mu, phi):
    return 1.0 - 2.0 * mu


def _betabinomial_unit_deviance(y, mu, phi):
    raise NotImplementedError("the beta-binomial's deviance needs the trials: see BetaBinomial.mu_terms")


def _betabinomial_logpdf(y, mu, disp, phi):
    raise NotImplementedError("the beta-binomial's density needs the trials: see BetaBinomial.mu_terms")


@dataclass(frozen=True)
class BetaBinomial(CompleteDensity, DensityFamily):
    def safe_links(self):
        return ("logit", "probit")

    def check_response(self, y, response):
        if np.any(y < 0) or np.any(y > 1):
            bad = y[(y < 0) | (y > 1)][0]
            raise GlmmInputError(
                f"response '{response}' must be a proportion between 0 and 1 for the betabinomial family "
                f"(found {bad:g}); write it as cbind(successes, failures)")

    def start_mu(self, y, link):
        return (y + 0.5) / 2.0

    def _prepare(self, resp):
        n = getattr(resp, "trials", None)
        n = np.ones_like(resp.y) if n is None else n
        resp.trials = n
        k = np.rint(resp.y * n)
        resp.k = k
        resp.lchoose = special.gammaln(n + 1.0) - special.gammaln(k + 1.0) - special.gammaln(n - k + 1.0)

    def _sat(self, y, resp):
        return 0.0  # -2 log f of a count is >= 0: the deviance of a row is -2 log f itself

    def mu_terms(self, resp, mu, q):
        phi = self.parameters[0]
        n, k = resp.trials, resp.k
        a, b = mu * phi, q * phi
        # log Gamma(k + a) - log Gamma(a) + log Gamma(n - k + b) - log Gamma(b) - log Gamma(n + phi) + log Gamma(phi)
        # with the parts of size log phi cancelled by hand (gamma_functions.lgamma_ratio): every digit also near
        # the binomial limit phi -> inf
        ll = (resp.lchoose + lgamma_ratio(k, a) + lgamma_ratio(n - k, b) - lgamma_ratio(n, phi)
              + special.xlogy(k, mu) + special.xlogy(n - k, q))
        l1 = phi * (digamma_diff(k, a) - digamma_diff(n - k, b))
        l2 = phi * phi * (trigamma_diff(k, a) + trigamma_diff(n - k, b))
        mq = np.maximum(mu * q, _TINY)
        info = n * (1.0 + phi) / ((n + phi) * mq)
        return ll, l1, l2, info, mq * (n + phi) / (n * (1.0 + phi))

    def mu_third(self, resp, mu, q):
        phi = self.parameters[0]
        n, k = resp.trials, resp.k
        a, b = mu * phi, q * phi
        return phi ** 3 * (tetragamma_diff(k, a) - tetragamma_diff(n - k, b))

    def _member(self, values):
        return betabinomial_family(*values)

    def start_parameters(self, y, pw, trials):
        n = np.ones_like(y) if trials is None else trials
        m = float(np.average(y, weights=n))
        v = float(np.mean((y - m) ** 2))
        inv_n = float(np.mean(1.0 / n))
        rho = (v / max(m * (1.0 - m), 1e-12) - inv_n) / max(1.0 - inv_n, 1e-12)
        rho = min(max(rho, 0.01), 0.9)
        return (1.0 / rho - 1.0,)

    def exp_label(self, link):
        return "OR" if link == "logit" else None

    def sample(self, rng, mu, pw, phi):
        p = self.parameters[0]
        trials = np.maximum(np.rint(pw), 1.0)
        m = np.clip(mu, _EPS, 1.0 - _EPS)  # a logit link's mean rounds to 0 or 1 far out: no beta there
        return rng.binomial(trials.astype(np.int64), rng.beta(m * p, (1.0 - m) * p)) / trials


def betabinomial_family(phi: float) -> Family:
    """glmmTMB's betabinomial: k successes of n trials with success probabilities ~ Beta(mu phi, (1 - mu) phi), log
    choose(n, k) included; phi on the log scale. The trials come from the prior weights of a proportion (cbind(k,
    n - k) gives them), so the rows are not weighted."""
    phi = float(phi)
    return BetaBinomial("betabinomial", "Beta-binomial", ("logit", "probit"), False,
                        partial(_betabinomial_variance, phi=phi), partial(_betabinomial_variance_d1, phi=phi),
                        partial(_betabinomial_unit_deviance, phi=phi), partial(_betabinomial_logpdf, phi=phi),
                        _in_unit_interval, observed_information=True, bounded_mean=True, mean_range=(0.0, 1.0),
                        parameter_names=("phi",), parameters=(phi,), parameter_scales=("log",), edm=False,
                        hessian_se=True, trials_from_weights=True)


# -- Student t ----------------------------------------------------------------------------------------------------
def _t_variance(mu, sigma, df):
    """The inverse of the mean's expected information, sigma^2 (df + 3) / (df + 1): the working variance of the
    IRLS start (Var(y), sigma^2 df / (df - 2), is infinite for df <= 2)."""
    return np.full_like(mu, sigma * sigma * (df + 3.0) / (df + 1.0))


def _t_logpdf(y, mu, disp, sigma, df):
    z = (y - mu) / sigma
    return _t_constant(sigma, df) - 0.5 * (df + 1.0) * np.log1p(z * z / df)


def _t_constant(sigma, df):
    """log Gamma((df + 1) / 2) - log Gamma(df / 2) - log(df pi) / 2 - log sigma, without cancellation at large df
    (gamma_functions.lgamma_ratio: the first two differ by log(df / 2) / 2 + lgamma_ratio(1/2, df / 2))."""
    if isinstance(sigma, float) and isinstance(df, float):  # one member's number: no arrays
        return lgamma_ratio(0.5, 0.5 * df) - 0.5 * (math.log(2.0) + LOG_PI) - math.log(sigma)
    return lgamma_ratio(0.5, 0.5 * df) - 0.5 * (np.log(2.0) + LOG_PI) - np.log(sigma)


def _t_unit_deviance(y, mu, sigma, df):
    z = (y - mu) / sigma
    return (df + 1.0) * np.log1p(z * z / df)


@dataclass(frozen=True)
class StudentT(CompleteDensity, DensityFamily):
    def safe_links(self):
        return ("identity", "log")

    def start_mu(self, y, link):
        if link == "log" and np.any(y <= 0):
            return np.full_like(y, max(float(np.mean(y)), 1e-3))
        return y.copy()

    def _const(self):
        """The density's constant: a number, or one per row where sigma varies by row (a dispersion model)."""
        sigma, df = self.parameters
        c = _t_constant(sigma, df)
        return float(c) if np.ndim(c) == 0 else c

    def _sat(self, y, resp):
        return np.full_like(y, self._const())

    def prepare_response(self, resp):
        resp.sat = self._const()  # one number for every row

    def saturated_rows(self, y, pw):
        return pw * self._const()

    def mu_terms(self, resp, mu, q):
        sigma, df = self.parameters
        z = (resp.y - mu) / sigma
        r2 = z * z
        D = df + r2
        ll = self._const() - 0.5 * (df + 1.0) * np.log1p(r2 / df)
        l1 = (df + 1.0) * z / (sigma * D)
        l2 = (df + 1.0) * (r2 - df) / (sigma * sigma * D * D)
        info = np.full_like(mu, (df + 1.0) / ((df + 3.0) * sigma * sigma))
        var = np.full_like(mu, sigma * sigma * df / (df - 2.0) if df > 2.0 else np.nan)
        return ll, l1, l2, info, var

    def parameter_partials(self, resp, rs) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per row, the derivatives of (log f, dev_eta, dev_eta2) at the row state ``rs`` in each estimated
        parameter on the optimiser's scale (log sigma, log df), in closed form (the gradient's differences of
        row states otherwise). With r = y - mu, M = df sigma^2 + r^2 and N = r^2 - df sigma^2: l1 = (df + 1) r / M,
        l2 = (df + 1) N / M^2; in log sigma d log f = (df + 1) r^2 / M - 1, d l1 = -2 df sigma^2 l1 / M,
        d l2 = -2 df sigma^2 (df + 1) (M + 2 N) / M^3; in log df (times df) d log f = (psi((df + 1) / 2) -
        psi(df / 2) - 1 / df - log1p(r^2 / (df sigma^2)) + (df + 1) r^2 / (df M)) / 2, d l1 = r / M - (df + 1) r
        sigma^2 / M^2, d l2 = N / M^2 - (df + 1) sigma^2 / M^2 - 2 (df + 1) N sigma^2 / M^3."""
        sigma, df = self.parameters
        r = resp.y - rs.mu
        r2 = r * r
        s2 = sigma * sigma
        M = df * s2 + r2
        N = r2 - df * s2
        nu1 = df + 1.0
        inv_m = 1.0 / M
        inv_m2 = inv_m * inv_m
        l1 = nu1 * r * inv_m
        by_name = {
            "sigma": (nu1 * r2 * inv_m - 1.0, -2.0 * df * s2 * l1 * inv_m,
                      -2.0 * df * s2 * nu1 * (M + 2.0 * N) * inv_m2 * inv_m),
            "df": (0.5 * df * (float(digamma_diff(0.5, 0.5 * df)) - 1.0 / df - np.log1p(r2 / (df * s2))
                               + nu1 * r2 * inv_m / df),
                   df * (r * inv_m - nu1 * r * s2 * inv_m2),
                   df * (N * inv_m2 - nu1 * s2 * inv_m2 - 2.0 * nu1 * N * s2 * inv_m2 * inv_m)),
        }
        h1, h2 = rs.h1, rs.h2
        return [(d_ll, -2.0 * d1 * h1, -2.0 * (d2 * h1 * h1 + d1 * h2))
                for d_ll, d1, d2 in (by_name[self.parameter_names[i]] for i in self.free_parameters())]

    def mu_third(self, resp, mu, q):
        sigma, df = self.parameters
        z = (resp.y - mu) / sigma
        r2 = z * z
        return -2.0 * (df + 1.0) * z * (3.0 * df - r2) / (sigma ** 3 * (df + r2) ** 3)

    def _member(self, values):
        return t_family(*values)

    def start_parameters(self, y, pw, trials):
        r = y - np.median(y)
        mad = float(np.median(np.abs(r - np.median(r))))
        return (max(1.4826 * mad, 1e-6 * max(1.0, float(np.max(np.abs(y))))), 10.0)

    def sample(self, rng, mu, pw, phi):
        sigma, df = self.parameters
        return mu + sigma * rng.standard_t(df, mu.shape)


def t_family(sigma: float, df: float) -> Family:
    """glmmTMB's t_family: y = mu + sigma T, T ~ Student t with df degrees of freedom (both estimated, on the log
    scale: log df is glmmTMB's psi); log f = log dt((y - mu) / sigma, df) - log sigma."""
    sigma, df = float(sigma), float(df)
    return StudentT("t_family", "Student t", ("identity", "log"), False,
                    partial(_t_variance, sigma=sigma, df=df), np.zeros_like,
                    partial(_t_unit_deviance, sigma=sigma, df=df), partial(_t_logpdf, sigma=sigma, df=df),
                    np.isfinite, observed_information=True, parameter_names=("sigma", "df"),
                    parameters=(sigma, df), parameter_scales=("log", "log"), edm=False, hessian_se=True)
