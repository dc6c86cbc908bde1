"""The base densities of the zero and dispersion models (engine.families.modelled) in the form whose dispersion
may vary by row (Poisson, NB2, Gaussian with its variance, Gamma with its shape; glmmTMB's own families are that
form already), with what the zero and dispersion models need of them: log f(0 | mu) and its mu-derivatives, and the
derivatives of log f and of its mu-derivatives in the log of the dispersion."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from scipy import special

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.distributions import DensityFamily, Family, minus_log1p
from glmmlab.engine.families.gamma_functions import digamma_diff, lgamma_ratio
from glmmlab.engine.families.glmmtmb import NegativeBinomial1
from glmmlab.engine.families.state import LOG_2PI, kept_on


# -- base densities whose dispersion may vary by row --------------------------------------------------------------
# Each gives log f(y | mu, d) and its mu-derivatives with d = parameters[0] a number or a per-row array.
@dataclass(frozen=True)
class RowDensity(DensityFamily):
    """A base density of these models: its deviance is -2 log f itself (no saturated constant)."""

    def _sat(self, y, resp):
        return 0.0


@dataclass(frozen=True)
class CountDensity(RowDensity):
    """A count density under the log link: log y! kept per row."""

    def safe_links(self):
        return ("log",)

    def _prepare(self, resp):
        resp.lgamma_y1 = special.gammaln(resp.y + 1.0)


@dataclass(frozen=True)
class PoissonDensity(CountDensity):
    def mu_terms(self, resp, mu, q):
        y = resp.y
        ll = y * np.log(mu) - mu - resp.lgamma_y1  # mu > 0 under the log link: y log mu is 0 at y = 0
        return ll, y / mu - 1.0, -y / (mu * mu), 1.0 / mu, mu

    def mu_third(self, resp, mu, q):
        return 2.0 * resp.y / _cube(mu)

    def sample(self, rng, mu, pw, phi):
        return rng.poisson(np.maximum(mu, 0.0)).astype(float)


@dataclass(frozen=True)
class NegBin2Density(CountDensity):
    """NB2 with size theta = parameters[0]: Var = mu + mu^2 / theta."""

    def mu_terms(self, resp, mu, q):
        th = self.parameters[0]
        y = resp.y
        mt = mu + th
        yt = y + th
        ll = _nb2_constant(resp, th) + y * np.log(mu) - yt * np.log1p(mu / th)  # - y log theta in the constant
        return ll, y / mu - yt / mt, -y / (mu * mu) + yt / (mt * mt), th / (mu * mt), mu + mu * mu / th

    def mu_third(self, resp, mu, q):
        th = self.parameters[0]
        return 2.0 * resp.y / _cube(mu) - 2.0 * (resp.y + th) / _cube(mu + th)

    def sample(self, rng, mu, pw, phi):
        th = self.parameters[0]
        return rng.negative_binomial(th, th / (th + np.maximum(mu, 1e-300))).astype(float)


def _nb2_constant(resp, th):
    """log Gamma(y + theta) - log Gamma(theta) - y log theta - log y! per row, without cancellation near the
    Poisson limit (gamma_functions.lgamma_ratio): kept for the last scalar theta (a mode search and the gradient's
    differences in the zero model evaluate one theta many times)."""
    if np.ndim(th):
        return lgamma_ratio(resp.y, th) - resp.lgamma_y1
    cached = getattr(resp, "_nb2_const", None)
    if cached is None or cached[0] != th:
        value = lgamma_ratio(resp.y, th) - resp.lgamma_y1
        cached = (th, value)
        resp._nb2_const = cached
    return cached[1]


@dataclass(frozen=True)
class GaussianDensity(RowDensity):
    """N(mu, v) with the variance v = parameters[0]."""

    def safe_links(self):
        return ("identity", "log", "inverse")

    def mu_terms(self, resp, mu, q):
        v = self.parameters[0]
        r = resp.y - mu
        ll = -0.5 * (LOG_2PI + np.log(v)) - 0.5 * r * r / v
        inv = 1.0 / v + np.zeros_like(mu)
        return ll, r / v, -inv, inv, v + np.zeros_like(mu)

    def mu_third(self, resp, mu, q):
        return np.zeros_like(mu)

    def sample(self, rng, mu, pw, phi):
        return mu + np.sqrt(self.parameters[0]) * rng.standard_normal(mu.shape)


@dataclass(frozen=True)
class GammaDensity(RowDensity):
    """Gamma with shape a = parameters[0] and scale mu / a: Var = mu^2 / a."""

    def safe_links(self):
        return ("log",)

    def _prepare(self, resp):
        y = resp.y
        resp.log_y_safe = np.log(np.where(y > 0, y, 1.0))

    def mu_terms(self, resp, mu, q):
        a = self.parameters[0]
        y = resp.y
        # log f = [-log Gamma(a) + a log a + (a - 1) log y] - a log mu - a y / mu, the bracket kept for this member
        c = kept_on(resp, "_density_parts", (self, y),
                    lambda: -special.gammaln(a) + a * np.log(a) + (a - 1.0) * resp.log_y_safe)
        ll = c - a * (np.log(mu) + y / mu)
        return ll, a * (y - mu) / (mu * mu), a * (mu - 2.0 * y) / _cube(mu), a / (mu * mu), mu * mu / a

    def mu_third(self, resp, mu, q):
        a = self.parameters[0]
        return (-2.0 * a + 6.0 * a * resp.y / mu) / _cube(mu)

    def sample(self, rng, mu, pw, phi):
        a = self.parameters[0]
        return rng.gamma(a, mu / a)


def _cube(x):
    return x * x * x  # numpy's x ** 3 goes through pow(), several times slower


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow (numpy's logaddexp(0, x) is several times slower on large arrays)."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def log_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(exp(a) + exp(b))."""
    return np.maximum(a, b) + np.log1p(np.exp(-np.abs(a - b)))


def _rows_member(member, rows: np.ndarray):
    """The member at a subset of rows (its per-row dispersion taken at those rows)."""
    params = tuple(v[rows] if np.ndim(v) else v for v in member.parameters)
    return replace(member, parameters=params) if params else member


def _density(key: str) -> Family:
    """The base density of family ``key`` in the form whose dispersion may vary by row."""
    base = FAMILIES[key]
    common = {f.name: getattr(base, f.name) for f in fields(Family)}
    common.update(edm=False, observed_information=True, hessian_se=True)
    if key == "poisson":
        return PoissonDensity(**common)
    if key == "negbin":
        return NegBin2Density(**dict(common, parameter_names=("theta",), parameters=(1.0,),
                                     parameter_scales=("log",)))
    if key == "gaussian":
        return GaussianDensity(**dict(common, has_dispersion=False, parameter_names=("variance",),
                                      parameters=(1.0,), parameter_scales=("log",)))
    if key == "gamma":
        return GammaDensity(**dict(common, has_dispersion=False, parameter_names=("shape",), parameters=(1.0,),
                                   parameter_scales=("log",)))
    return base  # glmmTMB's own families are densities already (nbinom1, beta_family, betabinomial, t_family)


def zero_terms(base: Family, mu: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """log f(0 | mu) and its first three mu-derivatives for a count family (None for a continuous one, which has
    no mass at 0)."""
    if isinstance(base, PoissonDensity):
        z = np.zeros_like(mu)
        return -mu, z - 1.0, z, z
    if isinstance(base, NegBin2Density):
        th = base.parameters[0]
        mt = mu + th
        return -th * np.log1p(mu / th), -th / mt, th / (mt * mt), -2.0 * th / _cube(mt)
    if base.name == "nbinom1":
        phi = base.parameters[0]
        z = np.zeros_like(mu)
        return -mu * np.log1p(phi) / phi, z - np.log1p(phi) / phi, z, z
    return None


def disp_partials(base: Family, resp, mu: np.ndarray, first_only: bool = False) -> tuple | None:
    """The derivatives of (log f, its first and second mu-derivatives) in the log of the base's dispersion
    parameter d (NB2's theta, NB1's phi, the Gaussian's variance, the Gamma's shape), per row; None for a base
    without them here (differences are taken).
    NB2: d log f / d theta = psi(y + theta) - psi(theta) + log theta + 1 - log(mu + theta) - (y + theta) /
    (mu + theta), d l1 / d theta = (y - mu) / (mu + theta)^2, d l2 / d theta = (mu - theta - 2 y) / (mu + theta)^3.
    NB1 (size s = mu / phi, ds / dphi = -s / phi): d log f / d phi = -(psi(y + s) - psi(s) - log(1 + phi)) s / phi
    - s / (1 + phi) + y / (phi (1 + phi)), d l1 / d phi = -((psi1(y + s) - psi1(s)) s / phi + 1 / (1 + phi)) / phi -
    l1 / phi, d l2 / d phi = -(psi2(y + s) - psi2(s)) s / phi^3 - 2 l2 / phi; each times d (the log scale).
    Gaussian in the log variance v: (r^2 / v - 1) / 2, -r / v, 1 / v (r = y - mu). Gamma in the log shape a:
    a (log(a / mu) + 1 - psi(a) + log y - y / mu), and l1, l2 themselves (both are a times a function of mu).
    ``first_only``: the first alone where the others cost more (NB1's trigamma and tetragamma differences), as
    (d log f, None, None)."""
    y = resp.y
    if isinstance(base, GaussianDensity):
        v = base.parameters[0]
        r = y - mu
        q = r / v
        return 0.5 * (q * r - 1.0), -q, 1.0 / v + np.zeros_like(mu)
    if isinstance(base, GammaDensity):
        a = base.parameters[0]
        ym = y / mu
        ll_a = np.log(a / mu) + 1.0 - special.digamma(a) + resp.log_y_safe - ym
        l1 = a * (ym - 1.0) / mu
        l2 = a * (1.0 - 2.0 * ym) / (mu * mu)
        return a * ll_a, l1, l2
    if isinstance(base, NegBin2Density):
        th = base.parameters[0]
        mt = mu + th
        dll = digamma_diff(y, th) - np.log1p(mu / th) + (mu - y) / mt
        return th * dll, th * (y - mu) / (mt * mt), th * (mu - th - 2.0 * y) / _cube(mt)
    if isinstance(base, NegativeBinomial1):
        phi = base.parameters[0]
        sz = mu / phi
        lp = np.log1p(phi)
        dg = base.size_diffs(resp, mu, 0)  # (the row state's and the third derivative's at these means)
        if first_only:
            return phi * (-(dg - lp) * sz / phi - sz / (1.0 + phi) + y / (phi * (1.0 + phi))), None, None
        tg = base.size_diffs(resp, mu, 1)
        l1 = (dg - lp) / phi
        l2 = tg / (phi * phi)
        dll = -(dg - lp) * sz / phi - sz / (1.0 + phi) + y / (phi * (1.0 + phi))
        dl1 = -(tg * sz / phi + 1.0 / (1.0 + phi)) / phi - l1 / phi
        dl2 = -base.size_diffs(resp, mu, 2) * sz / _cube(phi) - 2.0 * l2 / phi
        return phi * dll, phi * dl1, phi * dl2
    return None


def zero_disp_partials(base: Family, mu: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """The derivatives of (log f(0 | mu), its first and second mu-derivatives) in the log of the dispersion."""
    if isinstance(base, NegBin2Density):
        th = base.parameters[0]
        mt = mu + th
        x = mu / th  # log(theta / mt) + mu / mt = (x - log1p(x)) - x^2 / (1 + x), without cancellation
        return th * (minus_log1p(x) - x * x / (1.0 + x)), -th * mu / (mt * mt), th * (mu - th) / _cube(mt)
    if base.name == "nbinom1":
        phi = base.parameters[0]
        lp = np.log1p(phi)
        z = np.zeros_like(mu)
        return phi * (mu * lp / (phi * phi) - mu / (phi * (1.0 + phi))), \
            phi * (lp / (phi * phi) - 1.0 / (phi * (1.0 + phi))) + z, z
    return None
