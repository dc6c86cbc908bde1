"""The cumulative-link (ordinal) family: ``ordinal::clmm``'s model for an ordered response of K categories.

P(Y_i <= j) = F(theta_j - eta_i), j = 1 .. K - 1, with F the link's distribution function (logistic, standard
normal, or the Gumbel minimum's 1 - exp(-exp(x)) for cloglog), eta_i = x_i'beta + the row's random effects and
ordered thresholds theta_1 < ... < theta_(K-1). The fixed part has no intercept: the thresholds take its place. A
positive slope moves a row towards the higher categories (clmm's sign).

The engine's response holds the category numbers 1 .. K (the front doors map an ordered factor to them). A row of
category c has the probability p = F(a) - F(b) with a = theta_c - eta (+inf for c = K) and b = theta_(c-1) - eta
(-inf for c = 1); the row state gives the Laplace machinery -2 log p and its first three derivatives in eta. With
log-concave F (all three links) log p is concave in eta, so the observed information is positive and is used
throughout (the mode search's Newton steps and the log-determinant, as clmm does).

The thresholds are the family's own parameters (:attr:`Family.parameters`, named ``"1|2"``, ``"2|3"``, ... after the
adjacent categories), estimated with the others on the optimiser's scale: the first threshold, then the logs of
the increments, so every point the optimiser tries keeps them ordered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.state import LOG_2PI, RowState

ORDINAL_LINKS = ("logit", "probit", "cloglog")
MAX_EXP = 700.0
# the latent-scale level-1 variance of each link (the ICC on the latent scale)
LATENT_VARIANCE = {"logit": float(np.pi ** 2 / 3.0), "probit": 1.0, "cloglog": float(np.pi ** 2 / 6.0)}


# -- the links' distribution functions, on the log scale where they can underflow -------------------------------
def log_cdf(link: str, x: np.ndarray) -> np.ndarray:
    """log F(x)."""
    if link == "logit":
        return -np.logaddexp(0.0, -x)
    if link == "probit":
        return special.log_ndtr(x)
    with np.errstate(divide="ignore"):  # far below: log(1 - exp(-e^x)) = x - e^x / 2 + O(e^2x), where 1 - ... is 0
        return np.where(x < -20.0, x - 0.5 * np.exp(np.minimum(x, -20.0)),
                        np.log(-np.expm1(-np.exp(np.minimum(x, MAX_EXP)))))


def log_sf(link: str, x: np.ndarray) -> np.ndarray:
    """log (1 - F(x))."""
    if link == "logit":
        return -np.logaddexp(0.0, x)
    if link == "probit":
        return special.log_ndtr(-x)
    with np.errstate(over="ignore"):  # -inf beyond 709 (and at +inf): exp(-e^x) is below every double there
        return -np.exp(x)


def log_pdf(link: str, x: np.ndarray) -> np.ndarray:
    """log f(x), f = F'."""
    if link == "logit":
        return -np.abs(x) - 2.0 * np.log1p(np.exp(-np.abs(x)))
    if link == "probit":
        return -0.5 * x * x - 0.5 * LOG_2PI
    return x - np.exp(np.minimum(x, MAX_EXP))


def cdf(link: str, x: np.ndarray) -> np.ndarray:
    """F(x)."""
    if link == "logit":
        return special.expit(x)
    if link == "probit":
        return special.ndtr(x)
    return -np.expm1(-np.exp(np.minimum(x, MAX_EXP)))


def quantile(link: str, p: np.ndarray) -> np.ndarray:
    """F^-1(p)."""
    if link == "logit":
        return special.logit(p)
    if link == "probit":
        return special.ndtri(p)
    return np.log(-np.log1p(-p))


def _shape(link: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f'/f, f''/f) at finite x."""
    if link == "logit":
        t = -np.tanh(0.5 * x)  # 1 - 2F
        return t, 1.5 * t * t - 0.5  # f''/f = t^2 - 2f with f = (1 - t^2) / 4
    if link == "probit":
        return -x, x * x - 1.0
    e = np.exp(np.minimum(x, MAX_EXP))
    g = 1.0 - e
    return g, g * g - e


def _log1mexp(d: np.ndarray) -> np.ndarray:
    """log(1 - exp(d)) for d <= 0 (-inf at 0). Near d = -inf, log(-expm1(d)) keeps an absolute error below
    exp(d), all that a log-probability needs."""
    with np.errstate(divide="ignore"):
        return np.log(-np.expm1(np.minimum(d, 0.0)))


def _row_parts(link: str, thresholds: np.ndarray, codes: np.ndarray, eta: np.ndarray):
    """Per row: log p, f(a)/p, f(b)/p, and f'/f, f''/f at a and at b (0 at an infinite end), with a = theta_c -
    eta, b = theta_(c-1) - eta and p = F(a) - F(b) computed on the side of F or of 1 - F where it does not cancel
    (for the symmetric links 1 - F(x) = F(-x): two log-CDFs a row)."""
    ext = np.concatenate([[-np.inf], np.asarray(thresholds, dtype=float), [np.inf]])
    a = ext[codes] - eta
    b = ext[codes - 1] - eta
    upper = a + b > 0.0  # both ends in the upper half: 1 - F(b) - (1 - F(a)) does not cancel
    if link == "logit":
        out = _logit_parts(a, b, upper)
        if out is not None:
            return out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # the discarded branches of where
        if link in ("logit", "probit"):
            hi, lo = np.where(upper, -b, a), np.where(upper, -a, b)  # p = F(hi) - F(lo)
            l_hi = log_cdf(link, hi)
            lp = l_hi + _log1mexp(log_cdf(link, lo) - l_hi)
        else:
            lo_a, lo_b = log_cdf(link, a), log_cdf(link, b)
            up_a, up_b = log_sf(link, a), log_sf(link, b)
            lp = np.where(upper, up_b + _log1mexp(up_a - up_b), lo_a + _log1mexp(lo_b - lo_a))
        fin_a, fin_b = np.isfinite(a), np.isfinite(b)
        a0, b0 = np.where(fin_a, a, 0.0), np.where(fin_b, b, 0.0)
        ra = np.where(fin_a, np.exp(log_pdf(link, a0) - lp), 0.0)  # f(a) / p
        rb = np.where(fin_b, np.exp(log_pdf(link, b0) - lp), 0.0)  # f(b) / p
    ga, ha = _shape(link, a0)
    gb, hb = _shape(link, b0)
    return lp, ra, rb, ga, gb, ha, hb


def _logit_parts(a: np.ndarray, b: np.ndarray, upper: np.ndarray):
    """:func:`_row_parts` for the logit link without logarithms of the CDF (two logistic functions a row): on the
    side where it does not cancel, p = F(hi) - F(lo) with hi + lo <= 0, and the logistic's f = F (1 - F), f'/f =
    1 - 2F, f''/f = 1.5 (1 - 2F)^2 - 0.5 follow from the same two values. None when some row's p underflows
    (an end 700 units beyond the linear predictor): the logarithmic path then takes every row."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        f_hi = special.expit(np.where(upper, -b, a))
        f_lo = special.expit(np.where(upper, -a, b))
        p = f_hi - f_lo
        if not np.all(p > 1e-300):
            return None
        lp = np.log(p)
        d_hi, d_lo = f_hi * (1.0 - f_hi) / p, f_lo * (1.0 - f_lo) / p  # f / p at the two ends (f is even)
        ra, rb = np.where(upper, d_lo, d_hi), np.where(upper, d_hi, d_lo)
        ga = np.where(upper, 2.0 * f_lo - 1.0, 1.0 - 2.0 * f_hi)  # 1 - 2F(a), F(a) = 1 - F(-a)
        gb = np.where(upper, 2.0 * f_hi - 1.0, 1.0 - 2.0 * f_lo)
    return lp, ra, rb, ga, gb, 1.5 * ga * ga - 0.5, 1.5 * gb * gb - 0.5


def row_terms(link: str, thresholds: np.ndarray, codes: np.ndarray, eta: np.ndarray, third: bool = False):
    """Per row of category ``codes`` (1 .. K) at linear predictors ``eta``: (log p, d/deta, d2/deta2 of log p,
    and the third derivative if ``third``), p = F(theta_c - eta) - F(theta_(c-1) - eta)."""
    lp, ra, rb, ga, gb, ha, hb = _row_parts(link, thresholds, codes, eta)
    l1 = rb - ra  # p'/p (d a / d eta = -1)
    p2 = ga * ra - gb * rb  # p''/p
    l2 = p2 - l1 * l1
    if not third:
        return lp, l1, l2
    p3 = hb * rb - ha * ra  # p'''/p
    l3 = p3 - 3.0 * l1 * p2 + 2.0 * l1 ** 3
    return lp, l1, l2, l3


def threshold_terms(link: str, thresholds: np.ndarray, codes: np.ndarray, eta: np.ndarray):
    """The derivatives of (log p, d/deta log p, d2/deta2 log p) in the row's upper end a = theta_c - eta and in its
    lower end b = theta_(c-1) - eta: ((dlp/da, dl1/da, dl2/da), (dlp/db, dl1/db, dl2/db)), exactly. A threshold
    moves the ends of the rows of its two categories, so these are the rows' derivatives in the thresholds."""
    lp, ra, rb, ga, gb, ha, hb = _row_parts(link, thresholds, codes, eta)
    l1 = rb - ra
    l1_a = ra * (ra - rb - ga)
    l1_b = rb * (gb + rb - ra)
    p2_a = ha * ra - ga * ra * ra + gb * ra * rb
    p2_b = ga * ra * rb - hb * rb - gb * rb * rb
    return (ra, l1_a, p2_a - 2.0 * l1 * l1_a), (-rb, l1_b, p2_b - 2.0 * l1 * l1_b)


def category_probabilities(link: str, thresholds: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """P(Y_i = k) for every row and category (n x K), at linear predictors ``eta``."""
    eta = np.asarray(eta, dtype=float)
    th = np.asarray(thresholds, dtype=float)
    cum = cdf(link, th[None, :] - eta[:, None])
    lower = np.concatenate([np.zeros((eta.size, 1)), cum], axis=1)
    upper = np.concatenate([cum, np.ones((eta.size, 1))], axis=1)
    return np.maximum(upper - lower, 0.0)


class OrdinalState(RowState):
    """The row state of a member at linear predictors eta: the deviance of a row is -2 log p; its first two
    derivatives in eta now, the third (the gradient's) when first read. The working weights are the observed
    information (positive: log p is concave in eta). ``mu`` is the expected category number E[Y] = 1 + sum_j
    P(Y > j) and ``var`` Var(Y), so y - mu and the Pearson residuals are on the scale of the category numbers;
    they are computed when first read (only the results read them)."""

    def __init__(self, fam: "OrdinalFamily", resp, eta: np.ndarray):
        self.eta = eta
        self._fam, self._codes = fam, resp.codes
        lp, l1, l2 = row_terms(fam.link_name(), fam.thresholds, resp.codes, eta)
        self.dev = -2.0 * lp
        self.dev_eta = -2.0 * l1
        self.dev_eta2 = -2.0 * l2
        self.w = np.maximum(-l2, 1e-300)

    @cached_property
    def dev_eta3(self) -> np.ndarray:  # type: ignore[override]
        fam = self._fam
        return -2.0 * row_terms(fam.link_name(), fam.thresholds, self._codes, self.eta, third=True)[3]

    @property
    def w_eta(self) -> np.ndarray:  # type: ignore[override]
        return 0.5 * self.dev_eta3

    @cached_property
    def _probs(self) -> np.ndarray:
        return category_probabilities(self._fam.link_name(), self._fam.thresholds, self.eta)

    @cached_property
    def mu(self) -> np.ndarray:  # type: ignore[override]
        k = np.arange(1, self._probs.shape[1] + 1, dtype=float)
        return self._probs @ k

    @cached_property
    def var(self) -> np.ndarray:  # type: ignore[override]
        k = np.arange(1, self._probs.shape[1] + 1, dtype=float)
        return np.maximum(self._probs @ (k * k) - self.mu ** 2, 1e-300)

    @cached_property
    def h1(self) -> np.ndarray:  # type: ignore[override]
        # dE[Y]/deta = sum_j f(theta_j - eta)
        x = self._fam.thresholds[None, :] - self.eta[:, None]
        return np.exp(log_pdf(self._fam.link_name(), x)).sum(axis=1)

    @cached_property
    def h2(self) -> np.ndarray:  # type: ignore[override]
        x = self._fam.thresholds[None, :] - self.eta[:, None]
        return -(np.exp(log_pdf(self._fam.link_name(), x)) * _shape(self._fam.link_name(), x)[0]).sum(axis=1)


def _no_deviance(y, mu):
    raise NotImplementedError("the ordinal family's deviance needs its thresholds: see OrdinalState")


def _no_logpdf(y, mu, phi):
    raise NotImplementedError("the ordinal family's density needs its thresholds: see OrdinalState")


def _score_variance(mu):
    return np.ones_like(mu)


@dataclass(frozen=True)
class OrdinalFamily(Family):
    """A cumulative-link family; a member holds its categories (``levels``), its link and its thresholds
    (:attr:`parameters`, by :attr:`parameter_names`). The template in ``FAMILIES`` has no categories yet:
    :meth:`for_levels` gives the member of a response."""

    levels: tuple[str, ...] = ()
    link: str = ""  # the member's link ("" for the template: the fit's link is the engine's Link)

    def link_name(self) -> str:
        return self.link or "logit"

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.parameters, dtype=float)

    def for_levels(self, levels, link: str) -> "OrdinalFamily":
        """The member for a response with these categories (in order) under ``link``, at evenly spaced
        thresholds (the fit starts from the fixed-effects model's)."""
        levels = tuple(str(v) for v in levels)
        if len(levels) < 2:
            raise GlmmInputError("an ordinal response needs two or more categories")
        if link not in ORDINAL_LINKS:
            raise GlmmInputError(f"link {link!r} is not available for the ordinal family: choose one of "
                                 f"{', '.join(ORDINAL_LINKS)}")
        names = tuple(f"{lo}|{hi}" for lo, hi in zip(levels[:-1], levels[1:]))
        start = tuple(float(v) for v in np.arange(len(names)) - 0.5 * (len(names) - 1))
        return replace(self, levels=levels, link=link, parameter_names=names, parameters=start,
                       parameter_scales=("threshold",) * len(names))

    # -- the thresholds on the optimiser's scale: the first, then the logs of the increments --------------------
    def to_internal(self, values) -> np.ndarray:
        th = np.asarray(values, dtype=float)
        with np.errstate(divide="ignore"):
            return np.concatenate([th[:1], np.log(np.maximum(np.diff(th), 1e-300))])

    def from_internal(self, x) -> tuple[float, ...]:
        x = np.asarray(x, dtype=float)
        return tuple(float(v) for v in np.cumsum(np.concatenate([x[:1], np.exp(x[1:])])))

    def internal_jacobian(self, x) -> np.ndarray:
        """d thresholds / d internal (K - 1 square, lower triangular)."""
        x = np.asarray(x, dtype=float)
        m = x.size
        J = np.zeros((m, m))
        J[:, 0] = 1.0
        for i in range(1, m):
            J[i:, i] = np.exp(x[i])
        return J

    def internal_range(self) -> tuple[float, float]:
        return -60.0, 60.0

    def _member(self, values):
        return replace(self, parameters=tuple(float(v) for v in values))

    def start_parameters(self, y, pw, trials):
        """The thresholds of the model without predictors: F^-1 of the cumulative proportions."""
        K = len(self.levels)
        counts = np.bincount(np.asarray(y, dtype=np.intp), weights=pw, minlength=K + 1)[1:]
        cum = np.cumsum(counts)[:-1] / max(float(np.sum(counts)), 1e-300)
        th = quantile(self.link_name(), np.clip(cum, 1e-6, 1.0 - 1e-6))
        return tuple(float(v) for v in np.maximum.accumulate(th + 1e-6 * np.arange(th.size)))

    # -- what the engine reads of a family ----------------------------------------------------------------------
    def check_response(self, y, response):
        K = len(self.levels)
        if K and (np.any(y < 1) or np.any(y > K) or np.any(y != np.round(y))):
            raise GlmmInputError(f"response '{response}' must hold the category numbers 1 to {K} of an ordinal "
                                 "response")

    def start_mu(self, y, link):
        return y.copy()

    def prepare_response(self, resp):
        resp.codes = np.asarray(resp.y, dtype=np.intp)
        resp.sat = 0.0  # the deviance of a row is -2 log p itself

    def saturated_rows(self, y, pw):
        return np.zeros_like(np.asarray(y, dtype=float))

    def has_fast_path(self, link):
        return link in ORDINAL_LINKS

    def fast_state(self, resp, eta, link):
        return OrdinalState(self if self.link else replace(self, link=link), resp, eta)

    def icc_residual(self, link, var_residual):
        return LATENT_VARIANCE.get(link)

    def exp_label(self, link):
        return "OR" if link == "logit" else None

    def sample(self, rng, mu, pw, phi):
        """Category numbers drawn at linear predictors ``mu``: an ordinal model has no mean, so its simulations
        hand the sampler eta itself (:func:`glmmlab.engine.inference.simulate_models.row_inputs` gives it the
        identity link). The latent eta + e, e with the link's distribution F, falls between two thresholds:
        P(Y <= j) = F(theta_j - eta)."""
        eta = np.asarray(mu, dtype=float)
        link = self.link_name()
        if link == "logit":
            e = rng.logistic(size=eta.shape)
        elif link == "probit":
            e = rng.standard_normal(eta.shape)
        else:
            e = np.log(rng.exponential(size=eta.shape))  # P(e <= x) = 1 - exp(-exp(x))
        return 1.0 + np.searchsorted(self.thresholds, eta + e).astype(float)

    # -- the model without random effects: the fit's start ----------------------------------------------------
    def fixed_effects_fit(self, Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray
                          ) -> tuple[np.ndarray, "OrdinalFamily", float]:
        """The cumulative-link model without random effects by maximum likelihood (L-BFGS-B with the exact
        gradient, thresholds on the optimiser's scale): (coefficients, the member at its thresholds, -2
        log-likelihood)."""
        from scipy.optimize import minimize

        codes = np.asarray(y, dtype=np.intp)
        link = self.link_name()
        m = len(self.parameter_names)
        K = m + 1
        p = Xs.shape[1]

        def fg(z):
            x, beta = z[:m], z[m:]
            th = np.asarray(self.from_internal(x))
            if not np.all(np.isfinite(th)):
                return np.inf, np.zeros_like(z)
            eta = (Xs @ beta if p else np.zeros(codes.size)) + off
            lp, ra, rb = _row_parts(link, th, codes, eta)[:3]  # d log p / d theta_c = ra, / d theta_(c-1) = -rb
            l1 = rb - ra
            f = -float(np.sum(pw * lp))
            if not np.isfinite(f):
                return np.inf, np.zeros_like(z)
            g_th = (np.bincount(codes, weights=pw * ra, minlength=K + 1)
                    - np.bincount(codes - 1, weights=pw * rb, minlength=K + 1))[1:m + 1]
            g_x = self.internal_jacobian(x).T @ g_th
            g_beta = Xs.T @ (pw * l1) if p else np.zeros(0)
            return f, -np.concatenate([g_x, g_beta])

        z0 = np.concatenate([self.to_internal(self.start_parameters(y, pw, None)), np.zeros(p)])
        lo, hi = self.internal_range()
        bounds = [(lo, hi)] * m + [(None, None)] * p
        res = minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 500, "ftol": 1e-13, "gtol": 1e-8})
        z = np.asarray(res.x, dtype=float)
        member = self.with_parameters(self.from_internal(z[:m]))
        return z[m:], member, 2.0 * float(fg(z)[0])  # type: ignore[return-value]


def ordinal_family() -> OrdinalFamily:
    """The template of the ordinal family (no categories yet; see :meth:`OrdinalFamily.for_levels`)."""
    return OrdinalFamily("ordinal", "Ordinal (cumulative link)", ORDINAL_LINKS, False, _score_variance,
                         np.zeros_like, _no_deviance, _no_logpdf, np.isfinite, observed_information=True,
                         edm=False)


def _is_category(v) -> bool:
    return isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)) or (isinstance(v, str) and v != "")


def check_levels(levels: object, family: str) -> None:
    """The ``levels`` option: None, or (the ordinal family) a list of two or more categories (text or numbers)."""
    if levels is None:
        return
    if family != "ordinal":
        raise GlmmInputError(f"levels orders the categories of an ordinal response; this model is {family}: "
                             "leave levels out, or use family='ordinal'")
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence):
        raise GlmmInputError("levels must list the ordinal response's categories in order, lowest first, e.g. "
                             f"['low', 'mid', 'high']; got {levels!r}")
    if len(levels) < 2:
        raise GlmmInputError(f"levels must list two or more categories; got {list(levels)!r}")
    for v in levels:
        if not _is_category(v):
            raise GlmmInputError(f"levels: each category is a value of the response (text or a number); got {v!r}")



