"""Distribution families and link functions.

A link maps the mean mu to the linear predictor eta. The engine needs, for each link, the inverse
mu = h(eta) and its first two derivatives; for each family the variance function V(mu), its derivative,
the unit deviance and the log-density of one observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError

_EPS = np.finfo(float).eps
_TINY = 1e-300


@dataclass(frozen=True)
class Link:
    """A link function eta = g(mu), given by its inverse and the inverse's derivatives."""

    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]  # dmu/deta
    mu_eta2: Callable[[np.ndarray], np.ndarray]  # d2mu/deta2


def _logit_inv(eta):
    return special.expit(eta)


def _logit_d1(eta):
    p = special.expit(eta)
    return np.maximum(p * (1.0 - p), _EPS)


def _logit_d2(eta):
    p = special.expit(eta)
    return p * (1.0 - p) * (1.0 - 2.0 * p)


def _probit_inv(eta):
    return np.clip(special.ndtr(eta), _EPS, 1.0 - _EPS)


def _probit_d1(eta):
    return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), _EPS)


def _probit_d2(eta):
    return -eta * np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)


def _exp_capped(eta):
    return np.exp(np.minimum(eta, 700.0))


def _inverse_inv(eta):
    return 1.0 / eta


def _inverse_d1(eta):
    return -1.0 / (eta * eta)


def _inverse_d2(eta):
    return 2.0 / (eta * eta * eta)


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, np.ones_like, np.zeros_like),
    "log": Link("log", np.log, _exp_capped, _exp_capped, _exp_capped),
    "logit": Link("logit", special.logit, _logit_inv, _logit_d1, _logit_d2),
    "probit": Link("probit", special.ndtri, _probit_inv, _probit_d1, _probit_d2),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, _inverse_inv, _inverse_d1, _inverse_d2),
}


@dataclass(frozen=True)
class Family:
    """A distribution family of the exponential-dispersion kind.

    ``variance(mu)`` is V(mu) with Var(Y | mu) = phi * V(mu); ``unit_deviance(y, mu)`` the deviance of one
    observation; ``logpdf(y, mu, phi)`` the log-density used for the likelihood.
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

    @property
    def canonical_link(self) -> str:
        return self.links[0]


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
    mu = np.maximum(mu, _TINY)
    return 2.0 * minus_log1p((y - mu) / mu)


def _gamma_logpdf(y, mu, phi):
    mu = np.maximum(mu, _TINY)
    shape = 1.0 / phi
    scale = mu * phi
    return (shape - 1.0) * np.log(y) - y / scale - shape * np.log(scale) - special.gammaln(shape)


FAMILIES: dict[str, Family] = {
    "gaussian": Family(
        "gaussian", "Gaussian (Normal)", ("identity", "log"), True,
        np.ones_like, np.zeros_like, _gaussian_dev, _gaussian_logpdf,
        lambda mu: np.isfinite(mu),
    ),
    "binomial": Family(
        "binomial", "Binomial (Logistic)", ("logit", "probit"), False,
        lambda mu: mu * (1.0 - mu), lambda mu: 1.0 - 2.0 * mu, _binomial_dev, _binomial_logpdf,
        lambda mu: (mu > 0) & (mu < 1),
    ),
    "poisson": Family(
        "poisson", "Poisson (Count)", ("log", "identity"), False,
        lambda mu: mu, np.ones_like, _poisson_dev, _poisson_logpdf,
        lambda mu: mu > 0,
    ),
    "gamma": Family(
        "gamma", "Gamma", ("inverse", "log", "identity"), True,
        lambda mu: mu * mu, lambda mu: 2.0 * mu, _gamma_dev, _gamma_logpdf,
        lambda mu: mu > 0,
    ),
}


def negbin_family(theta: float) -> Family:
    """The negative binomial NB2 with size theta: Var(Y) = mu + mu^2 / theta (glmmTMB's nbinom2)."""
    th = float(theta)

    def variance(mu):
        return mu + mu * mu / th

    def variance_d1(mu):
        return 1.0 + 2.0 * mu / th

    def unit_deviance(y, mu):
        mu = np.maximum(mu, _TINY)
        # 2 [y log(y / mu) - (y + theta) log((y + theta) / (mu + theta))], written through r = (y - mu) / mu
        # and r' = (y - mu) / (mu + theta) so that it does not cancel near y = mu
        r1 = (y - mu) / mu
        r2 = (y - mu) / (mu + th)
        return 2.0 * (mu * xlog1p_minus(r1) - (mu + th) * xlog1p_minus(r2))

    def logpdf(y, mu, phi):
        mu = np.maximum(mu, _TINY)
        return (special.gammaln(y + th) - special.gammaln(th) - special.gammaln(y + 1.0)
                + th * np.log(th / (th + mu)) + special.xlogy(y, mu / (th + mu)))

    return Family("negbin", "Negative Binomial (NB2)", ("log", "identity"), False, variance, variance_d1,
                  unit_deviance, logpdf, lambda mu: mu > 0, th)


FAMILIES["negbin"] = negbin_family(1.0)


def resolve(family: str, link: str | None) -> tuple[Family, Link]:
    """Return the (family, link) pair, refusing names and pairs the GLMM tab does not offer."""
    fam_key = str(family).strip().lower()
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
