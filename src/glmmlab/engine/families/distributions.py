"""Families: unit deviance, log-density, variance function and its derivative, the response's range and
starting means, parameters of their own (the negative binomial's theta; glmmTMB's phi, sigma, df, power);
:func:`resolve` a family and link by name (glmmTMB's spellings too: ``nbinom2``, ``beta``, ``t``).

One module on purpose: every family is the same handful of pieces, which are checked best side by side."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.gamma_functions import tetragamma, trigamma
from glmmlab.engine.families.links import _EPS, _TINY, LINKS, Link, _same
from glmmlab.engine.families.state import (
    LOG_2PI,
    DensityState,
    RowState,
    _logit_state,
    _poisson_log_state,
    _probit_state,
)

LOG_PI = float(np.log(np.pi))
ICC_LATENT = {"logit": float(np.pi ** 2 / 3.0), "probit": 1.0}  # latent-scale level-1 variances


@dataclass(frozen=True)
class Family:
    """A distribution family; a member of it where the family has parameters of its own (:attr:`parameters`).

    ``variance(mu)`` is V(mu) with Var(Y | mu) = phi * V(mu); ``unit_deviance(y, mu)`` the deviance of one
    observation; ``logpdf(y, mu, phi)`` the log-density used for the likelihood. A family that is not of the
    exponential-dispersion kind at fixed parameters (``edm`` False: glmmTMB's NB1, beta, beta-binomial, t) gives its
    row state itself (:meth:`fast_state`).
    """

    name: str
    label: str
    links: tuple[str, ...]
    has_dispersion: bool
    variance: Callable[[np.ndarray], np.ndarray]
    variance_d1: Callable[[np.ndarray], np.ndarray]
    unit_deviance: Callable[[np.ndarray, np.ndarray], np.ndarray]
    logpdf: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    mu_valid: Callable[[np.ndarray], np.ndarray]
    parameter: float | None = None  # the negative binomial's theta; None for the others
    # the Laplace log-determinant uses the observed information (glmmTMB's convention for the negative binomial)
    observed_information: bool = False
    bounded_mean: bool = False  # a mean bounded on both sides (binomial): separation can occur
    mean_range: tuple[float, float] = (-np.inf, np.inf)  # the open interval of valid means
    # Parameters of the family's own, estimated with the others (glmmTMB's names: theta of nbinom2; phi of nbinom1,
    # beta_family and betabinomial; sigma and df of t_family; phi and power of tweedie), and their values in this
    # member. The engine optimises them on the scale of to_internal (glmmTMB's), with a member per point
    # (with_parameters).
    parameter_names: tuple[str, ...] = ()
    parameters: tuple[float, ...] = ()
    # the optimiser's scale of each: "log" (a positive parameter) or "power" (a Tweedie power in (1, 2), on
    # qlogis(power - 1): glmmTMB's psi)
    parameter_scales: tuple[str, ...] = ()
    # parameters held at their values in this member instead of estimated (a Tweedie power the user gives)
    fixed_parameters: tuple[str, ...] = ()
    # The score is the quasi-likelihood one, (y - mu) h1 / V (an exponential-dispersion member at fixed
    # parameters), so a Fisher-scoring step's working response is eta + (y - mu) / h1; otherwise it is
    # eta - dev_eta / (2 w) and the modes are found by Newton steps (glmmTMB's NB1, beta, beta-binomial, t).
    edm: bool = True
    # glmmTMB's conventions for the results: standard errors from the Hessian of the Laplace deviance over every
    # parameter (the family's own included), conditional variances from the observed information
    hessian_se: bool = False
    # The prior weights of a proportion are the trials of the density (the beta-binomial's n), not weights of its
    # rows: the fit hands them to the response (Response.trials) and weighs every row 1
    trials_from_weights: bool = False

    def eta_range(self, link: Link, y: np.ndarray | None = None) -> tuple[float, float]:
        """The open interval of linear predictors whose mean is valid under ``link`` (e.g. (0, inf) for a
        Poisson identity or a Gamma inverse link; the whole line for a log link). Where both ends of the means'
        range map to one point (the inverse link of a mean on the whole line: any linear predictor but 0) and
        the response ``y`` is given, the side of that pole where the mean of ``y`` lies: a mean cannot cross the
        pole continuously, and a mode on the far side is another stationary point."""
        with np.errstate(all="ignore"):
            ends = link.linkfun(np.array(self.mean_range, dtype=float))
        if np.any(np.isnan(ends)):
            return -np.inf, np.inf
        if ends[0] == ends[1]:
            if y is None or y.size == 0:
                return -np.inf, np.inf
            with np.errstate(all="ignore"):
                c = float(link.linkfun(np.array([np.mean(y)]))[0])
            pole = float(ends[0])
            return (pole, np.inf) if c > pole else (-np.inf, pole) if c < pole else (-np.inf, np.inf)
        return float(np.min(ends)), float(np.max(ends))

    def has_edge(self, link: Link, y: np.ndarray | None = None) -> bool:
        """Whether some linear predictor under ``link`` gives no valid mean (an end of :meth:`eta_range`), so a
        fit must keep its means inside and its maximum can lie on that edge."""
        return bool(np.isfinite(self.eta_range(link, y)).any())

    def has_dispersion_parameter(self, link: Link) -> bool:
        """Whether a mixed model of this family and ``link`` estimates a dispersion by Laplace or quadrature
        (Gamma; Gaussian with another link than the identity, whose linear mixed model is fitted by REML/ML)."""
        return self.has_dispersion and not (self.name == "gaussian" and link.name == "identity")

    @property
    def canonical_link(self) -> str:
        return self.links[0]

    # -- behaviour each family carries (overridden below) ---------------------------------------------------
    def check_response(self, y: np.ndarray, response: str) -> None:
        """Refuse a response outside the family's range, naming the column."""

    def start_mu(self, y: np.ndarray, link: str) -> np.ndarray:
        """Starting means for IRLS."""
        if link == "log" and np.any(y <= 0):
            return np.full_like(y, max(float(np.mean(y)), 1e-3))
        return y.copy()

    def saturated_rows(self, y: np.ndarray, pw: np.ndarray) -> np.ndarray | None:
        """log p(y_i | mu_i = y_i) with prior weights (families whose -2 log p is deviance - 2 sat), or None."""
        return None

    def minus2_loglik(self, dev: float, const: dict) -> tuple[float, float, float]:
        """(-2 log p(y | mu), its slope in the weighted total deviance, the dispersion) from the deviance and
        the data's constants (n, sum_w, sum_log_w, sum_w_log_y, sat); lme4's conventions."""
        return dev - 2.0 * const["sat"], 1.0, 1.0

    def row_loglik(self, resp, dev: np.ndarray, phi: float) -> np.ndarray:
        """log p(y_i | mu_i) from the unit deviances (no prior weights), for quadrature."""
        return resp.sat - 0.5 * dev

    def prepare_response(self, resp) -> None:
        """Per-row constants of the response that the fast paths and the likelihood need, computed once."""

    def fast_state(self, resp, eta: np.ndarray, link: str):
        """The row state at eta by a family-specific fast path for this link, or None for the generic one."""
        return None

    def has_fast_path(self, link: str) -> bool:
        """Whether :meth:`fast_state` handles this link (its means are then always in range)."""
        return False

    def icc_residual(self, link: str, var_residual: float | None) -> float | None:
        """The level-1 variance of the ICC on the latent scale, where the product page defines one."""
        return None

    def exp_label(self, link: str) -> str | None:
        """The column title of exp(estimate)."""
        return "exp(Est.)" if link == "log" else None

    def with_parameter(self, value: float) -> "Family":
        return self

    # -- the family's own parameters (see parameter_names) --------------------------------------------------
    def free_parameters(self) -> list[int]:
        """The positions of the parameters that are estimated (not in :attr:`fixed_parameters`)."""
        return [i for i, n in enumerate(self.parameter_names) if n not in self.fixed_parameters]

    def to_internal(self, values) -> np.ndarray:
        """The estimated parameters among ``values`` (all of :attr:`parameter_names`) on the optimiser's scale."""
        values = np.asarray(values, dtype=float)
        return np.array([_TO_SCALE[self.parameter_scales[i]](float(values[i])) for i in self.free_parameters()])

    def from_internal(self, x) -> tuple[float, ...]:
        """Every parameter, the estimated ones from the optimiser's scale ``x`` (the inverse of
        :meth:`to_internal`) and the fixed ones at this member's values."""
        out = list(self.parameters)
        for j, i in enumerate(self.free_parameters()):
            out[i] = _FROM_SCALE[self.parameter_scales[i]](float(x[j]))
        return tuple(out)

    def internal_range(self) -> tuple[float, float]:
        """The open box of the optimiser's scale outside which no member is evaluated."""
        return -20.0, 20.0

    def with_parameters(self, values) -> "Family":
        """The member with these values of :attr:`parameter_names` (the same ones held fixed)."""
        member = self._member(tuple(float(v) for v in values))
        return replace(member, fixed_parameters=self.fixed_parameters) if self.fixed_parameters else member

    def _member(self, values: tuple[float, ...]) -> "Family":
        return self

    def with_fixed(self, name: str, value: float) -> "Family":
        """The member with parameter ``name`` held at ``value`` (not estimated)."""
        if name not in self.parameter_names:
            raise GlmmInputError(f"the {self.name} family has no parameter {name!r}")
        values = tuple(float(value) if n == name else v for n, v in zip(self.parameter_names, self.parameters))
        return replace(self._member(values), fixed_parameters=tuple(sorted({*self.fixed_parameters, name})))

    def start_parameters(self, y: np.ndarray, pw: np.ndarray, trials: np.ndarray | None) -> tuple[float, ...]:
        """Starting values of the parameters from the response alone (its moments), for the GLM's profile."""
        return self.parameters

    def variance_d2(self, mu: np.ndarray) -> np.ndarray:
        """V''(mu): 0 for the Gaussian and Poisson variance functions (overridden where it is not)."""
        return np.zeros_like(mu)

    # -- a dispersion estimated with the other parameters (Gaussian and Gamma; glmmTMB's likelihood) ----------
    # With prior weights w_i the conditional log-density of a row is c(y_i, phi / w_i) - w_i d_i / (2 phi)
    # (d_i the unit deviance), so -2 log p(y | mu) = P / phi + K(phi) with P the weighted total deviance and
    # K(phi) = -2 sum_i c(y_i, phi / w_i): the Laplace criterion then has the same modes for every phi (see
    # glmmlab.engine.solvers.likelihood.Likelihood) and phi can be profiled out exactly.
    def dispersion_constants(self, y: np.ndarray, pw: np.ndarray) -> dict:
        """The sums over rows that K(phi) needs."""
        raise NotImplementedError(f"the {self.name} family has no dispersion parameter")

    def dispersion_minus2(self, P: float, phi: float, const: dict) -> float:
        """P / phi + K(phi)."""
        raise NotImplementedError(f"the {self.name} family has no dispersion parameter")

    def dispersion_profile(self, P: float, const: dict) -> tuple[float, float]:
        """(min over phi of P / phi + K(phi), the minimising phi)."""
        raise NotImplementedError(f"the {self.name} family has no dispersion parameter")

    def dispersion_slope(self, phi: float, const: dict) -> float:
        """K'(phi)."""
        raise NotImplementedError(f"the {self.name} family has no dispersion parameter")

    def loglik_rows(self, y: np.ndarray, dev: np.ndarray, phi: float, pw: np.ndarray) -> np.ndarray:
        """log p(y_i | mu_i) at dispersion phi from the unit deviances ``dev`` (prior weights ``pw``)."""
        raise NotImplementedError(f"the {self.name} family has no dispersion parameter")

    def sample(self, rng: np.random.Generator, mu: np.ndarray, pw: np.ndarray, phi: float) -> np.ndarray:
        """Draw responses with means ``mu``, prior weights ``pw`` and dispersion ``phi`` (the parametric
        bootstrap's simulation, on the scale the fit reads ``y``: a binomial proportion of ``pw`` trials)."""
        raise NotImplementedError(f"no sampler for the {self.name} family")


def _qlogis_power(p: float) -> float:
    return float(special.logit(p - 1.0))


def _plogis_power(x: float) -> float:
    return float(1.0 + special.expit(x))


# the optimiser's scales of the families' own parameters (Family.parameter_scales)
_TO_SCALE: dict[str, Callable[[float], float]] = {"log": np.log, "power": _qlogis_power}
_FROM_SCALE: dict[str, Callable[[float], float]] = {"log": np.exp, "power": _plogis_power}


def _gaussian_dev(y, mu):
    r = y - mu
    return r * r


def _gaussian_logpdf(y, mu, phi):
    return -0.5 * (np.log(2.0 * np.pi * phi) + (y - mu) ** 2 / phi)


# Near y = mu the textbook unit deviances cancel (y log(y/mu) - (y - mu) is a difference of two numbers much
# larger than itself), so a deviance residual there would carry only a few correct digits. They are written
# here through r = (y - mu) / mu and two functions that are computed by their Taylor series for small |r|.
_SERIES_R = 0.1


_SERIES_K = np.arange(2, 19, dtype=float)


def _series(r: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_k coef[k] r^(k+2), by Horner's rule."""
    acc = np.zeros_like(r)
    for c in coef[::-1]:
        acc = acc * r + c
    return acc * r * r


def xlog1p_minus(r: np.ndarray) -> np.ndarray:
    """(1 + r) log(1 + r) - r for r >= -1, without cancellation for small |r|."""
    r = np.asarray(r, dtype=float)
    out = special.xlog1py(1.0 + r, r) - r
    small = np.abs(r) < _SERIES_R
    if small.any():
        k = _SERIES_K
        out[small] = _series(r[small], (-1.0) ** k / (k * (k - 1.0)))
    return out


def minus_log1p(r: np.ndarray) -> np.ndarray:
    """r - log(1 + r) for r > -1, without cancellation for small |r|."""
    r = np.asarray(r, dtype=float)
    out = r - np.log1p(r)
    small = np.abs(r) < _SERIES_R
    if small.any():
        k = _SERIES_K
        out[small] = _series(r[small], (-1.0) ** k / k)
    return out


def _binomial_dev(y, mu):
    mu = np.clip(mu, _EPS, 1.0 - _EPS)
    # y log(y/mu) + (1-y) log((1-y)/(1-mu)) = mu B((y-mu)/mu) + (1-mu) B((mu-y)/(1-mu)), B(r) = (1+r)log(1+r) - r
    return 2.0 * (mu * xlog1p_minus((y - mu) / mu) + (1.0 - mu) * xlog1p_minus((mu - y) / (1.0 - mu)))


def _binomial_logpdf(y, mu, phi):
    mu = np.clip(mu, _EPS, 1.0 - _EPS)
    return special.xlogy(y, mu) + special.xlog1py(1.0 - y, -mu)


def _poisson_dev(y, mu):
    mu = np.maximum(mu, _TINY)
    return 2.0 * mu * xlog1p_minus((y - mu) / mu)


def _poisson_logpdf(y, mu, phi):
    mu = np.maximum(mu, _TINY)
    return special.xlogy(y, mu) - mu - special.gammaln(y + 1.0)


def _gamma_dev(y, mu):
    """2 [(y - mu)/mu - log(y/mu)]: by its series near y = mu, and with log(y/mu) = log y - log mu elsewhere, so a
    response far below its mean (y/mu = 1e-30) keeps every digit (log1p of r = y/mu - 1 near -1 would not)."""
    mu = np.maximum(mu, _TINY)
    r = (y - mu) / mu
    out = 2.0 * (r - (np.log(y) - np.log(mu)))
    small = np.abs(r) < _SERIES_R
    if np.any(small):
        out = np.where(small, 2.0 * minus_log1p(np.where(small, r, 0.0)), out)
    return out


def _gamma_logpdf(y, mu, phi):
    mu = np.maximum(mu, _TINY)
    shape = 1.0 / phi
    scale = mu * phi
    return (shape - 1.0) * np.log(y) - y / scale - shape * np.log(scale) - special.gammaln(shape)


@dataclass(frozen=True)
class Gaussian(Family):
    def minus2_loglik(self, dev, const):
        n = const["n"]
        phi = dev / n
        return n * (LOG_2PI + np.log(phi) + 1.0) + 2.0 - const.get("sum_log_w", 0.0), n / dev, phi

    def row_loglik(self, resp, dev, phi):
        return -0.5 * (LOG_2PI + np.log(phi)) - dev / (2.0 * phi)

    def dispersion_constants(self, y, pw):
        return {"n": float(y.shape[0]), "sum_log_w": float(np.sum(np.log(pw)))}

    def dispersion_minus2(self, P, phi, const):
        return float(P / phi + const["n"] * (LOG_2PI + np.log(phi)) - const["sum_log_w"])

    def dispersion_profile(self, P, const):
        phi = P / const["n"]
        return self.dispersion_minus2(P, phi, const), float(phi)

    def dispersion_slope(self, phi, const):
        return float(const["n"] / phi)

    def loglik_rows(self, y, dev, phi, pw):
        return -0.5 * (LOG_2PI + np.log(phi / pw)) - pw * dev / (2.0 * phi)

    def icc_residual(self, link, var_residual):
        return var_residual if link == "identity" else None

    def sample(self, rng, mu, pw, phi):
        return mu + np.sqrt(phi / pw) * rng.standard_normal(mu.shape)


@dataclass(frozen=True)
class Binomial(Family):
    def check_response(self, y, response):
        if np.any(y < 0) or np.any(y > 1):
            bad = y[(y < 0) | (y > 1)][0]
            raise GlmmInputError(
                f"response '{response}' must lie between 0 and 1 for the binomial family "
                f"(found {bad:g}); code the outcome as 0/1 or choose another family"
            )

    def start_mu(self, y, link):
        return (y + 0.5) / 2.0

    def saturated_rows(self, y, pw):
        k = pw * y  # successes
        lchoose = special.gammaln(pw + 1.0) - special.gammaln(k + 1.0) - special.gammaln(pw - k + 1.0)
        return lchoose + pw * (special.xlogy(y, y) + special.xlog1py(1.0 - y, -y))

    def prepare_response(self, resp):
        y = resp.y
        if np.all((y == 0.0) | (y == 1.0)):
            resp.ylogy = 0.0  # 0/1 data: zero in every row (a scalar saves a vector of the data's length)
        else:
            resp.ylogy = special.xlogy(y, y) + special.xlogy(1.0 - y, 1.0 - y)
        resp.sat = resp.ylogy  # log p(y | mu = y) per row

    def has_fast_path(self, link):
        return link in ("logit", "probit")

    def fast_state(self, resp, eta, link):
        if link == "logit":
            return _logit_state(resp, eta)
        if link == "probit":
            return _probit_state(resp, eta)
        return None

    def icc_residual(self, link, var_residual):
        return ICC_LATENT.get(link)

    def variance_d2(self, mu):
        return np.full_like(mu, -2.0)

    def exp_label(self, link):
        return "OR" if link == "logit" else None

    def sample(self, rng, mu, pw, phi):
        trials = np.maximum(np.rint(pw), 1.0)  # the trials of a proportion (1 for 0/1 rows)
        return rng.binomial(trials.astype(np.int64), np.clip(mu, 0.0, 1.0)) / trials


def _check_counts(y: np.ndarray, response: str, family: str) -> None:
    """A count family's response: no negative values."""
    if np.any(y < 0):
        bad = y[y < 0][0]
        raise GlmmInputError(
            f"response '{response}' must be a non-negative count for the {family} family "
            f"(found {bad:g}); choose another family or fix the data"
        )


@dataclass(frozen=True)
class Poisson(Family):
    def check_response(self, y, response):
        _check_counts(y, response, self.name)

    def start_mu(self, y, link):
        return y + 0.1

    def saturated_rows(self, y, pw):
        return pw * (special.xlogy(y, y) - y - special.gammaln(y + 1.0))

    def prepare_response(self, resp):
        y = resp.y
        resp.ylogy = special.xlogy(y, y)
        resp.sat = resp.ylogy - y - special.gammaln(y + 1.0)
        resp.pois_const = 2.0 * (resp.ylogy - y)

    def has_fast_path(self, link):
        return link == "log"

    def fast_state(self, resp, eta, link):
        return _poisson_log_state(resp, eta) if link == "log" else None

    def exp_label(self, link):
        return "IRR" if link == "log" else None

    def sample(self, rng, mu, pw, phi):
        return rng.poisson(np.maximum(mu, 0.0)).astype(float)


@dataclass(frozen=True)
class Gamma(Family):
    def check_response(self, y, response):
        if np.any(y <= 0):
            bad = y[y <= 0][0]
            raise GlmmInputError(
                f"response '{response}' must be strictly positive for the gamma family "
                f"(found {bad:g}); choose another family or remove those rows"
            )

    def start_mu(self, y, link):
        # halfway to the mean: a response far below its mean (y/mu = 1e-30 happens with shapes below 0.1) would
        # otherwise start IRLS at log(y) - 68 and send its first step to eta = 4,500
        return 0.5 * (np.maximum(y, 1e-8) + float(np.mean(y)))

    def minus2_loglik(self, dev, const):
        sw = const.get("sum_w", const["n"])
        phi = dev / sw
        A = (2.0 * const["sum_w_log_y"] + sw + 2.0 * sw * (1.0 + np.log(phi)) / phi
             + 2.0 * sw * special.gammaln(1.0 / phi) + 2.0)
        c = -2.0 * (np.log(phi) + special.digamma(1.0 / phi)) / (phi * phi)
        return float(A), float(c), phi

    def prepare_response(self, resp):
        resp.log_y = np.log(resp.y)
        resp.sum_log_y = float(np.sum(resp.log_y))

    def row_loglik(self, resp, dev, phi):
        return -resp.log_y - dev / (2.0 * phi) - (1.0 + np.log(phi)) / phi - special.gammaln(1.0 / phi)

    def variance_d2(self, mu):
        return np.full_like(mu, 2.0)

    def dispersion_constants(self, y, pw):
        w, counts = np.unique(pw, return_counts=True)
        return {"sum_log_y": float(np.sum(np.log(y))), "weights": w, "counts": counts.astype(float)}

    def dispersion_minus2(self, P, phi, const):
        # K(phi) = -2 sum_i [-log y_i - a_i + a_i log a_i - lgamma(a_i)] with shapes a_i = w_i / phi
        a = const["weights"] / phi
        c = const["counts"]
        return float(P / phi + 2.0 * const["sum_log_y"]
                     - 2.0 * float(np.sum(c * (-a + a * np.log(a) - special.gammaln(a)))))

    def dispersion_profile(self, P, const):
        # d/ds (P s + K(1/s)) = P - 2 sum_i w_i (log a_i - digamma(a_i)) with a_i = w_i s; log a - digamma(a)
        # falls from +inf to 0 as a grows, so the root in s is unique. Newton steps in t = log s, kept inside the
        # bracket found so far (bisection otherwise), from the large-shape approximation
        # log a - digamma(a) ~ 1 / (2a), i.e. s = n / P.
        w, c = const["weights"], const["counts"]
        if not (P > 0 and np.isfinite(P)):
            return np.inf, float("nan")

        def h(t):
            a = w * np.exp(t)
            return (float(np.sum(c * w * (np.log(a) - special.digamma(a)))) - 0.5 * P,
                    float(np.sum(c * w * (1.0 - a * trigamma(a)))))

        t = float(np.log(float(np.sum(c)) / P))
        lo, hi = -np.inf, np.inf
        for _ in range(200):
            f, d = h(t)
            if f == 0.0:
                break
            if f > 0:
                lo = t
            else:
                hi = t
            t_new = t - f / d if d < 0 else np.nan
            if not (lo < t_new < hi):
                t_new = 0.5 * (lo + hi) if np.isfinite(lo) and np.isfinite(hi) else t + (1.0 if f > 0 else -1.0)
            done = abs(t_new - t) <= 1e-14 * max(1.0, abs(t))
            t = t_new
            if done:
                break
        phi = float(np.exp(-t))
        return self.dispersion_minus2(P, phi, const), phi

    def dispersion_slope(self, phi, const):
        # dK/dphi = (2 / phi^2) sum_i w_i (log a_i - digamma(a_i)), a_i = w_i / phi
        a = const["weights"] / phi
        return float(2.0 / (phi * phi) * np.sum(const["counts"] * const["weights"]
                                                 * (np.log(a) - special.digamma(a))))

    def loglik_rows(self, y, dev, phi, pw):
        a = pw / phi
        return -np.log(y) - a + a * np.log(a) - special.gammaln(a) - 0.5 * a * dev

    def sample(self, rng, mu, pw, phi):
        shape = pw / phi  # prior weights scale the shape, as lme4's simulate uses them
        return rng.gamma(shape, mu / shape)


def _finite(mu):
    return np.isfinite(mu)


def _binomial_var(mu):
    return mu * (1.0 - mu)


def _binomial_var_d1(mu):
    return 1.0 - 2.0 * mu


def _in_unit_interval(mu):
    return (mu > 0) & (mu < 1)


def _positive(mu):
    return mu > 0


def _square(mu):
    return mu * mu


def _twice(mu):
    return 2.0 * mu


FAMILIES: dict[str, Family] = {
    "gaussian": Gaussian(
        "gaussian", "Gaussian (Normal)", ("identity", "log", "inverse"), True,
        np.ones_like, np.zeros_like, _gaussian_dev, _gaussian_logpdf,
        _finite,
    ),
    "binomial": Binomial(
        "binomial", "Binomial (Logistic)", ("logit", "probit"), False,
        _binomial_var, _binomial_var_d1, _binomial_dev, _binomial_logpdf,
        _in_unit_interval, bounded_mean=True, mean_range=(0.0, 1.0),
    ),
    "poisson": Poisson(
        "poisson", "Poisson (Count)", ("log", "identity"), False,
        _same, np.ones_like, _poisson_dev, _poisson_logpdf,
        _positive, mean_range=(0.0, np.inf),
    ),
    "gamma": Gamma(
        "gamma", "Gamma", ("inverse", "log", "identity"), True,
        _square, _twice, _gamma_dev, _gamma_logpdf,
        _positive, mean_range=(0.0, np.inf),
    ),
}


@dataclass(frozen=True)
class NegativeBinomial(Family):
    def check_response(self, y, response):
        _check_counts(y, response, self.name)

    def saturated_rows(self, y, pw):
        return pw * self.logpdf(y, np.maximum(y, 1e-300), 1.0)

    def prepare_response(self, resp):
        resp.sat = self.logpdf(resp.y, np.maximum(resp.y, 1e-300), 1.0)

    def exp_label(self, link):
        return "IRR" if link == "log" else None

    def with_parameter(self, value):
        return negbin_family(value)

    def _member(self, values):
        return negbin_family(values[0])

    def start_parameters(self, y, pw, trials):
        mean, var = float(np.mean(y)), float(np.var(y))
        return (mean * mean / (var - mean),) if var > mean * 1.01 else (100.0,)

    def variance_d2(self, mu):
        assert self.parameter is not None  # the negative binomial's theta
        return np.full_like(mu, 2.0 / float(self.parameter))

    def sample(self, rng, mu, pw, phi):
        assert self.parameter is not None  # the negative binomial's theta (one per row for a dispersion model)
        th = np.asarray(self.parameter, dtype=float)
        return rng.negative_binomial(th, th / (th + np.maximum(mu, 1e-300))).astype(float)


def _negbin_variance(mu, th):
    return mu + mu * mu / th


def _negbin_variance_d1(mu, th):
    return 1.0 + 2.0 * mu / th


def _negbin_unit_deviance(y, mu, th):
    mu = np.maximum(mu, _TINY)
    # 2 [y log(y / mu) - (y + theta) log((y + theta) / (mu + theta))], written through r = (y - mu) / mu
    # and r' = (y - mu) / (mu + theta) so that it does not cancel near y = mu
    r1 = (y - mu) / mu
    r2 = (y - mu) / (mu + th)
    return 2.0 * (mu * xlog1p_minus(r1) - (mu + th) * xlog1p_minus(r2))


def _negbin_logpdf(y, mu, phi, th):
    mu = np.maximum(mu, _TINY)
    return (special.gammaln(y + th) - special.gammaln(th) - special.gammaln(y + 1.0)
            + th * np.log(th / (th + mu)) + special.xlogy(y, mu / (th + mu)))


def negbin_family(theta: float) -> Family:
    """The negative binomial NB2 with size theta: Var(Y) = mu + mu^2 / theta (glmmTMB's nbinom2). Its
    theta-dependent functions are partials of module-level functions, so the family pickles."""
    th = float(theta)
    return NegativeBinomial("negbin", "Negative Binomial (NB2)", ("log", "identity"), False,
                            partial(_negbin_variance, th=th), partial(_negbin_variance_d1, th=th),
                            partial(_negbin_unit_deviance, th=th), partial(_negbin_logpdf, th=th), _positive, th,
                            observed_information=True, mean_range=(0.0, np.inf), parameter_names=("theta",),
                            parameters=(th,), parameter_scales=("log",))


FAMILIES["negbin"] = negbin_family(1.0)


# -- glmmTMB's families with parameters of their own -------------------------------------------------------------
# Each member (a family at fixed parameter values) gives the engine what it needs per row: the log-density and its
# first three derivatives in the linear predictor (the Laplace approximation uses the observed information, the exact
# Hessian of the joint log-density as glmmTMB does, and its gradient the third derivative), an expected information
# for the IRLS of the starting GLM, and Var(y) for Pearson residuals. Its parameters (glmmTMB's names, densities and
# optimiser scales: each constructor's docstring) are estimated with the others by the engine.
def _polygamma2(x: np.ndarray) -> np.ndarray:
    return tetragamma(x)


@dataclass(frozen=True)
class DensityFamily(Family):
    """A family fitted through its log-density's derivatives in the mean (not an exponential-dispersion member,
    so the quasi-likelihood score (y - mu) h1 / V is not its score)."""

    def mu_terms(self, resp, mu: np.ndarray, q: np.ndarray):
        """(log f, d/dmu, d2/dmu2 of log f, the expected information in mu, Var(y)) per row; ``q`` is 1 - mu
        computed without cancellation where the link allows (logit)."""
        raise NotImplementedError

    def mu_third(self, resp, mu: np.ndarray, q: np.ndarray) -> np.ndarray:
        """d3/dmu3 of log f per row."""
        raise NotImplementedError

    def safe_links(self) -> tuple[str, ...]:
        """The links whose means are always valid (the engine then skips the check over the rows)."""
        return ()

    def has_fast_path(self, link):
        return link in self.safe_links()

    def fast_state(self, resp, eta, link):
        return DensityState(self, resp, eta, link)

    def saturated_rows(self, y, pw):
        return pw * self._sat(y, None)

    def prepare_response(self, resp):
        self._prepare(resp)
        resp.sat = self._sat(resp.y, resp)

    def _prepare(self, resp) -> None:
        """Per-row constants of the response (its logs, log-gammas) for :meth:`mu_terms`."""

    def _sat(self, y: np.ndarray, resp) -> np.ndarray | float:
        """A per-row constant c_i free of mu: the engine's deviance of a row is 2 (c_i - log f(y_i | mu_i))."""
        raise NotImplementedError

    def exp_label(self, link):
        return None


# -- NB1 ----------------------------------------------------------------------------------------------------------
def _nb1_variance(mu, phi):
    return mu * (1.0 + phi)


def _nb1_variance_d1(mu, phi):
    return np.full_like(mu, 1.0 + phi)


def _nb1_logpdf(y, mu, disp, phi):
    s = np.maximum(mu, _TINY) / phi
    return (special.gammaln(y + s) - special.gammaln(s) - special.gammaln(y + 1.0) - s * np.log1p(phi)
            + y * np.log(phi / (1.0 + phi)))


def _nb1_unit_deviance(y, mu, phi):
    return 2.0 * (_nb1_logpdf(y, np.maximum(y, _TINY), 1.0, phi) - _nb1_logpdf(y, mu, 1.0, phi))


@dataclass(frozen=True)
class NegativeBinomial1(DensityFamily):
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
        ll = (special.gammaln(ys) - special.gammaln(s) - resp.lgamma_y1 - s * np.log1p(phi)
              + y * np.log(phi / (1.0 + phi)))
        l1 = (special.digamma(ys) - special.digamma(s) - np.log1p(phi)) / phi
        l2 = (trigamma(ys) - trigamma(s)) / (phi * phi)
        var = mu * (1.0 + phi)
        return ll, l1, l2, 1.0 / var, var

    def mu_third(self, resp, mu, q):
        phi = self.parameters[0]
        s = mu / phi
        return (_polygamma2(resp.y + s) - _polygamma2(s)) / phi ** 3

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


@dataclass(frozen=True)
class BetaFamily(DensityFamily):
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
        t1 = trigamma(a) + trigamma(b)
        return ll, l1, -phi * phi * t1, phi * phi * t1, mu * q / (1.0 + phi)

    def mu_third(self, resp, mu, q):
        phi = self.parameters[0]
        return -phi ** 3 * (_polygamma2(mu * phi) - _polygamma2(q * phi))

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
class BetaBinomial(DensityFamily):
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
        ka, nb = k + a, n - k + b
        ll = (resp.lchoose + special.gammaln(ka) + special.gammaln(nb) - special.gammaln(n + phi)
              + special.gammaln(phi) - special.gammaln(a) - special.gammaln(b))
        l1 = phi * (special.digamma(ka) - special.digamma(a) - special.digamma(nb) + special.digamma(b))
        l2 = phi * phi * (trigamma(ka) - trigamma(a) + trigamma(nb)
                          - trigamma(b))
        mq = np.maximum(mu * q, _TINY)
        info = n * (1.0 + phi) / ((n + phi) * mq)
        return ll, l1, l2, info, mq * (n + phi) / (n * (1.0 + phi))

    def mu_third(self, resp, mu, q):
        phi = self.parameters[0]
        n, k = resp.trials, resp.k
        a, b = mu * phi, q * phi
        return phi ** 3 * (_polygamma2(k + a) - _polygamma2(a) - _polygamma2(n - k + b) + _polygamma2(b))

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
    return (special.gammaln(0.5 * (df + 1.0)) - special.gammaln(0.5 * df) - 0.5 * (np.log(df) + LOG_PI)
            - np.log(sigma) - 0.5 * (df + 1.0) * np.log1p(z * z / df))


def _t_unit_deviance(y, mu, sigma, df):
    z = (y - mu) / sigma
    return (df + 1.0) * np.log1p(z * z / df)


@dataclass(frozen=True)
class StudentT(DensityFamily):
    def safe_links(self):
        return ("identity", "log")

    def start_mu(self, y, link):
        if link == "log" and np.any(y <= 0):
            return np.full_like(y, max(float(np.mean(y)), 1e-3))
        return y.copy()

    def _const(self):
        """The density's constant: a number, or one per row where sigma varies by row (a dispersion model)."""
        sigma, df = self.parameters
        c = special.gammaln(0.5 * (df + 1.0)) - special.gammaln(0.5 * df) - 0.5 * (np.log(df) + LOG_PI) - np.log(sigma)
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


# -- Tweedie ------------------------------------------------------------------------------------------------------
SERIES_CELLS = 1_000_000  # terms of the series computed at once (rows x window)


def tweedie_log_series(y: np.ndarray, phi: float, p: float) -> np.ndarray:
    """log W(y, phi, p) for y > 0: the series sum_j z^j / (j! Gamma(-alpha j)) of Dunn and Smyth (2005), alpha =
    (2 - p) / (1 - p), summed over a window about its largest term j_max = y^(2-p) / (phi (2 - p)). The terms fall
    off like a normal density in j of variance j (p - 1), so j_max -+ (10 + 10 sd) leaves out nothing above
    e^-50 of the largest. Rows go in bands of window widths rounded up to a power of two (one array per band and
    run of rows); a row's window then holds a few more of the series' terms, which only adds to its accuracy."""
    y = np.asarray(y, dtype=float)
    out = np.empty_like(y)
    if y.size == 0:
        return out
    alpha = (2.0 - p) / (1.0 - p)
    logz = -alpha * np.log(y) + alpha * np.log(p - 1.0) - (1.0 - alpha) * np.log(phi) - np.log(2.0 - p)
    jmax = np.maximum(1.0, y ** (2.0 - p) / (phi * (2.0 - p)))
    spread = 10.0 + 10.0 * np.sqrt(jmax * (p - 1.0))
    lo = np.maximum(1.0, np.floor(jmax - spread))
    width = np.ceil(jmax + spread) - lo + 1.0
    band = np.ceil(np.log2(width)).astype(np.int64)
    for b in np.unique(band):
        K = 1 << int(b)
        rows_b = np.flatnonzero(band == b)
        step = max(1, SERIES_CELLS // K)
        for a in range(0, rows_b.size, step):
            rows = rows_b[a:a + step]
            j = lo[rows][:, None] + np.arange(K, dtype=float)[None, :]
            terms = j * logz[rows][:, None]
            terms -= special.gammaln(j + 1.0)
            terms -= special.gammaln(-alpha * j)
            top = np.max(terms, axis=1)
            np.subtract(terms, top[:, None], out=terms)
            np.exp(terms, out=terms)
            out[rows] = top + np.log(np.sum(terms, axis=1))
    return out


def _tweedie_variance(mu, phi, p):
    return phi * np.power(mu, p)


def _tweedie_variance_d1(mu, phi, p):
    return phi * p * np.power(mu, p - 1.0)


def _tweedie_unit_deviance(y, mu, phi, p):
    """d(y, mu) / phi with d the Tweedie unit deviance 2 [y^(2-p) / ((1-p)(2-p)) - y mu^(1-p) / (1-p) +
    mu^(2-p) / (2-p)]."""
    mu = np.maximum(mu, _TINY)
    d = 2.0 * (np.power(y, 2.0 - p) / ((1.0 - p) * (2.0 - p)) - y * np.power(mu, 1.0 - p) / (1.0 - p)
               + np.power(mu, 2.0 - p) / (2.0 - p))
    return d / phi


def _tweedie_logpdf(y, mu, disp, phi, p):
    y = np.asarray(y, dtype=float)
    mu = np.broadcast_to(np.maximum(mu, _TINY), y.shape)
    kappa = np.power(mu, 2.0 - p) / (2.0 - p)
    out = -kappa / phi
    pos = y > 0
    if np.any(pos):
        yp = y[pos]
        theta = np.power(mu[pos], 1.0 - p) / (1.0 - p)
        out = np.array(out, dtype=float)
        out[pos] = tweedie_log_series(yp, phi, p) - np.log(yp) + (yp * theta - kappa[pos]) / phi
    return out


def tweedie_sample(rng: np.random.Generator, mu: np.ndarray, phi: float, p: float) -> np.ndarray:
    """Compound Poisson-gamma draws: N ~ Poisson(mu^(2-p) / (phi (2-p))) gamma summands of shape (2-p)/(p-1)
    and scale phi (p-1) mu^(p-1); y = 0 where N = 0."""
    mu = np.maximum(np.asarray(mu, dtype=float), _TINY)
    lam = np.power(mu, 2.0 - p) / (phi * (2.0 - p))
    shape = (2.0 - p) / (p - 1.0)
    scale = phi * (p - 1.0) * np.power(mu, p - 1.0)
    n = rng.poisson(lam)
    out = np.zeros_like(mu)
    pos = n > 0
    out[pos] = rng.gamma(n[pos] * shape, scale[pos])
    return out


@dataclass(frozen=True)
class Tweedie(Family):
    def check_response(self, y, response):
        if np.any(y < 0):
            raise GlmmInputError(
                f"response '{response}' must be >= 0 for the tweedie family (found {y[y < 0][0]:g}); choose "
                "another family or fix the data")

    def start_mu(self, y, link):
        return 0.5 * (y + float(np.mean(y))) + 1e-3

    def _sat(self, y):
        phi, p = self.parameters
        return _tweedie_logpdf(y, y, 1.0, phi, p)  # 0 where y = 0 (the limit mu -> 0)

    def prepare_response(self, resp):
        resp.sat = self._sat(resp.y)

    def saturated_rows(self, y, pw):
        return pw * self._sat(y)

    def variance_d2(self, mu):
        phi, p = self.parameters
        return phi * p * (p - 1.0) * np.power(mu, p - 2.0)

    def _member(self, values):
        return tweedie_family(*values)

    def start_parameters(self, y, pw, trials):
        m = float(np.average(y, weights=pw))
        v = float(np.average((y - m) ** 2, weights=pw))
        return (max(v / max(m, 1e-8) ** 1.5, 1e-3), 1.5)

    def exp_label(self, link):
        return "exp(Est.)" if link == "log" else None

    def sample(self, rng, mu, pw, phi):
        return tweedie_sample(rng, mu, *self.parameters)


def tweedie_family(phi: float, power: float) -> Family:
    """glmmTMB's tweedie: compound Poisson-gamma, Var = phi mu^power, 1 < power < 2, exact zeros with probability
    exp(-mu^(2-p) / (phi (2-p))); phi on the log scale, the power on qlogis(power - 1) (glmmTMB's psi). At fixed
    (phi, power) an exponential-dispersion member with V = phi mu^p (the engine's variance-function path); the y-only
    part of its density is the series of Dunn and Smyth (2005)."""
    phi, p = float(phi), float(power)
    return Tweedie("tweedie", "Tweedie", ("log",), False,
                   partial(_tweedie_variance, phi=phi, p=p), partial(_tweedie_variance_d1, phi=phi, p=p),
                   partial(_tweedie_unit_deviance, phi=phi, p=p), partial(_tweedie_logpdf, phi=phi, p=p), _positive,
                   observed_information=True, mean_range=(0.0, np.inf), parameter_names=("phi", "power"),
                   parameters=(phi, p), parameter_scales=("log", "power"), hessian_se=True)


# glmmTMB's families, by glmmTMB's names
FAMILIES.update({
    "nbinom1": nbinom1_family(1.0),
    "beta_family": beta_family(1.0),
    "betabinomial": betabinomial_family(1.0),
    "t_family": t_family(1.0, 10.0),
    "tweedie": tweedie_family(1.0, 1.5),
})
# glmmTMB's hurdle families: the count (or positive) part of a hurdle model, truncated at zero; fitted with their
# zero model by engine.families.modelled (these entries give their names, links and response checks)
FAMILIES.update({
    "truncated_poisson": replace(FAMILIES["poisson"], name="truncated_poisson", label="Truncated Poisson (hurdle)",
                                 links=("log",)),
    "truncated_nbinom2": replace(FAMILIES["negbin"], name="truncated_nbinom2",
                                 label="Truncated Negative Binomial (NB2, hurdle)", links=("log",)),
    "truncated_nbinom1": replace(FAMILIES["nbinom1"], name="truncated_nbinom1",
                                 label="Truncated Negative Binomial (NB1, hurdle)", links=("log",)),
    "ziGamma": replace(FAMILIES["gamma"], name="ziGamma", label="Gamma with exact zeros (hurdle)",
                       links=("log", "inverse")),
})


def dev_eta3(fam: Family, lk: Link, y: np.ndarray, rs: RowState) -> np.ndarray:
    """The third derivative in eta of a row's unit deviance: the gradient of a Laplace log-determinant that uses
    the observed information (the second derivative). Through the mean: with r = y - mu,
    d_mu = -2 r / V, d_mumu = 2 / V + 2 r V' / V^2, d_mumumu = -4 V' / V^2 + 2 r V'' / V^2 - 4 r V'^2 / V^3, and
    d_etaetaeta = d_mumumu h1^3 + 3 d_mumu h1 h2 + d_mu h3 (h the inverse link)."""
    if rs.dev_eta3 is not None:  # the family's own (glmmTMB's families)
        return rs.dev_eta3
    if lk.mu_eta3 is None:
        raise NotImplementedError(f"no third derivative for the {lk.name} link")
    mu, h1, h2, h3 = rs.mu, rs.h1, rs.h2, lk.mu_eta3(rs.eta)
    V, V1, V2 = fam.variance(mu), fam.variance_d1(mu), fam.variance_d2(mu)
    r = y - mu
    d1 = -2.0 * r / V
    d2 = 2.0 / V + 2.0 * r * V1 / (V * V)
    d3 = -4.0 * V1 / (V * V) + 2.0 * r * V2 / (V * V) - 4.0 * r * V1 * V1 / (V ** 3)
    return d3 * h1 ** 3 + 3.0 * d2 * h1 * h2 + d1 * h3


# glmmTMB's and R's other spellings of a family (the catalogue's keys are the canonical names)
ALIASES = {"nbinom2": "negbin", "negative_binomial": "negbin", "beta": "beta_family", "t": "t_family",
           "zigamma": "ziGamma"}


def family_key(family: str) -> str:
    """The canonical name of a family as a user may spell it (glmmTMB's ``nbinom2`` is ``negbin``)."""
    key = str(family).strip().lower()
    return ALIASES.get(key, key)


def resolve(family: str, link: str | None) -> tuple[Family, Link]:
    """Return the (family, link) pair, refusing names and pairs the GLMM tab does not offer."""
    fam_key = family_key(family)
    if fam_key not in FAMILIES:
        raise GlmmInputError(
            f"unknown family {family!r}: choose one of {', '.join(FAMILIES)}"
        )
    fam = FAMILIES[fam_key]
    if link is None:
        return fam, LINKS[fam.canonical_link]
    link_key = str(link).strip().lower()
    if link_key not in fam.links:
        raise GlmmInputError(
            f"link {link!r} is not available for the {fam.name} family: "
            f"choose one of {', '.join(fam.links)}"
        )
    return fam, LINKS[link_key]
