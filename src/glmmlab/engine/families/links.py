"""Links: the inverse link and its first derivatives in eta, by name (:data:`LINKS`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special

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
    mu_eta3: Callable[[np.ndarray], np.ndarray] | None = None  # d3mu/deta3 (the observed information's gradient)


def _logit_inv(eta):
    return special.expit(eta)


def _logit_d1(eta):
    p = special.expit(eta)
    return np.maximum(p * (1.0 - p), _EPS)


def _logit_d2(eta):
    p = special.expit(eta)
    return p * (1.0 - p) * (1.0 - 2.0 * p)


def _logit_d3(eta):
    p = special.expit(eta)
    return p * (1.0 - p) * (1.0 - 6.0 * p * (1.0 - p))


def _probit_inv(eta):
    return np.clip(special.ndtr(eta), _EPS, 1.0 - _EPS)


def _probit_d1(eta):
    return np.maximum(np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), _EPS)


def _probit_d2(eta):
    return -eta * np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)


def _probit_d3(eta):
    return (eta * eta - 1.0) * np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi)


def _exp_capped(eta):
    return np.exp(np.minimum(eta, 700.0))


def _inverse_inv(eta):
    return 1.0 / eta


def _inverse_d1(eta):
    return -1.0 / (eta * eta)


def _inverse_d2(eta):
    return 2.0 / (eta * eta * eta)


def _inverse_d3(eta):
    e2 = eta * eta
    return -6.0 / (e2 * e2)


def _same(x):
    return x


def _reciprocal(mu):
    return 1.0 / mu


# Every function a Link or Family holds is a module-level function (or a functools.partial of one), never a
# lambda or closure: fitted results travel to worker processes (profile intervals, bootstrap) by pickling.
LINKS: dict[str, Link] = {
    "identity": Link("identity", _same, _same, np.ones_like, np.zeros_like, np.zeros_like),
    "log": Link("log", np.log, _exp_capped, _exp_capped, _exp_capped, _exp_capped),
    "logit": Link("logit", special.logit, _logit_inv, _logit_d1, _logit_d2, _logit_d3),
    "probit": Link("probit", special.ndtri, _probit_inv, _probit_d1, _probit_d2, _probit_d3),
    "inverse": Link("inverse", _reciprocal, _inverse_inv, _inverse_d1, _inverse_d2, _inverse_d3),
}


# the complementary log-log link (the ordinal family's third cumulative link): mu = 1 - exp(-exp(eta))
def _cloglog_fun(mu):
    return np.log(-np.log1p(-mu))


def _cloglog_inv(eta):
    return -np.expm1(-np.exp(np.minimum(eta, 700.0)))


def _cloglog_d1(eta):
    e = np.minimum(eta, 700.0)
    return np.exp(e - np.exp(e))


def _cloglog_d2(eta):
    e = np.minimum(eta, 700.0)
    return np.exp(e - np.exp(e)) * (1.0 - np.exp(e))


def _cloglog_d3(eta):
    e = np.minimum(eta, 700.0)
    x = np.exp(e)
    return np.exp(e - x) * ((1.0 - x) ** 2 - x)


LINKS["cloglog"] = Link("cloglog", _cloglog_fun, _cloglog_inv, _cloglog_d1, _cloglog_d2, _cloglog_d3)
