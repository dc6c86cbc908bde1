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
from glmmlab.engine.families.gamma_functions import lgamma_ratio, tetragamma, trigamma
from glmmlab.engine.families.links import _EPS, _TINY, Link, _same
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


# Family parameters whose limit is a simpler family (families/parameter_limits.py fits and reports them there).
# family name -> (parameter, +1 if its limit is +infinity on the log scale, -1 if 0; the limit model's family,
# what the data show there)
LIMITS = {
    "negbin": ("theta", 1.0, "poisson", "no overdispersion beyond the Poisson"),
    "nbinom1": ("phi", -1.0, "poisson", "no overdispersion beyond the Poisson"),
    "betabinomial": ("phi", 1.0, "binomial", "no overdispersion beyond the binomial"),
    "t_family": ("df", 1.0, "gaussian", "tails no heavier than the normal's"),
}
# the optimiser's box of these families (Family.internal_range; the others' is (-20, 20)): their log-densities keep
# their digits out to 1e15, so the limit can be held where the limit model differs by 1e-13 of a log-likelihood
LIMIT_RANGE = (-36.0, 36.0)


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

    def saturated_rows(self, y: np.ndarray, pw: np.ndarray) -> np.ndarray | float | None:
        """log p(y_i | mu_i = y_i) with prior weights (families whose -2 log p is deviance - 2 sat; a number when
        it is the same in every row), or None."""
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
        """The open box of the optimiser's scale outside which no member is evaluated: wider for a family whose
        parameter has a simpler family at its limit (families/parameter_limits.py), so the limit can be held."""
        return LIMIT_RANGE if self.name in LIMITS else (-20.0, 20.0)

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
        if bool(np.all(pw == 1.0)) and bool(np.all((y == 0.0) | (y == 1.0))):
            return 0.0  # 0/1 data: log p(y | mu = y) = log 1 in every row (no log-gamma passes, no n-vector)
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


# lme4's families (and the negative binomial, below); every family by name: engine.families.catalogue
BASE_FAMILIES: dict[str, Family] = {
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
    # log Gamma(y + th) - log Gamma(th) - log y! + th log(th / (th + mu)) + y log(mu / (th + mu)), with the parts of
    # size log th cancelled by hand (see gamma_functions.lgamma_ratio): every digit also near the Poisson limit
    return (lgamma_ratio(y, th) - special.gammaln(y + 1.0) + special.xlogy(y, mu)
            - (y + th) * np.log1p(mu / th))


def negbin_family(theta: float) -> Family:
    """The negative binomial NB2 with size theta: Var(Y) = mu + mu^2 / theta (glmmTMB's nbinom2). Its
    theta-dependent functions are partials of module-level functions, so the family pickles."""
    th = float(theta)
    return NegativeBinomial("negbin", "Negative Binomial (NB2)", ("log", "identity"), False,
                            partial(_negbin_variance, th=th), partial(_negbin_variance_d1, th=th),
                            partial(_negbin_unit_deviance, th=th), partial(_negbin_logpdf, th=th), _positive, th,
                            observed_information=True, mean_range=(0.0, np.inf), parameter_names=("theta",),
                            parameters=(th,), parameter_scales=("log",))


BASE_FAMILIES["negbin"] = negbin_family(1.0)


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

    def mu_core(self, resp, mu: np.ndarray, q: np.ndarray):
        """(log f, d/dmu, d2/dmu2 of log f, a function giving (the expected information, Var(y))): :meth:`mu_terms`
        whose last two a row state computes when it reads them."""
        ll, l1, l2, info, var = self.mu_terms(resp, mu, q)
        return ll, l1, l2, lambda: (info, var)

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
