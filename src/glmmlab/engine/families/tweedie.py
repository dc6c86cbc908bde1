"""glmmTMB's tweedie family: the compound Poisson-gamma density by the series of Dunn and Smyth (2005), with its
derivatives in the family's parameters in closed form, and the log link's row state in closed form (the catalogue
and :mod:`glmmlab.engine.families.glmmtmb` give it with glmmTMB's other families)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import _TINY, Family, _positive
from glmmlab.engine.families.state import RowState

# -- Tweedie ------------------------------------------------------------------------------------------------------
LOG_TINY = float(np.log(_TINY))
SERIES_CELLS = 1_000_000  # terms of the series computed at once (rows x window)
SERIES_TABLE = 2_000_000  # the most terms j whose log-gammas are tabulated at once
SERIES_MEMO_ROWS = 200_000  # responses up to this many rows keep their last few series (SERIES_MEMO_SIZE)
SERIES_MEMO_SIZE = 8
_series_memo: OrderedDict = OrderedDict()


def tweedie_log_series(y: np.ndarray, phi: float, p: float) -> np.ndarray:
    """log W(y, phi, p) for y > 0 (:func:`tweedie_series_parts`)."""
    return tweedie_series_parts(y, phi, p)[0]


def tweedie_series_parts(y: np.ndarray, phi: float, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`series_sum` (log W and the moments of its derivatives), remembered for the last few (y, phi, p) of
    a small response: a member's response constants, its likelihood's saturated rows and the partials of the
    gradient, taken in different places of a fit, are one series."""
    y = np.asarray(y, dtype=float)
    if y.size > SERIES_MEMO_ROWS:
        return series_sum(y, phi, p)
    key = (float(phi), float(p), y.shape, hash(y.tobytes()))
    kept = _series_memo.get(key)
    if kept is not None and np.array_equal(kept[0], y):
        return kept[1]
    out = series_sum(y, phi, p)
    for a in out:
        a.flags.writeable = False  # shared by every caller of these (y, phi, p)
    _series_memo[key] = (y.copy(), out)
    while len(_series_memo) > SERIES_MEMO_SIZE:
        _series_memo.popitem(last=False)
    return out


def series_sum(y: np.ndarray, phi: float, p: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log W(y, phi, p) for y > 0, with E[j] and E[j psi(-alpha j)] under the series' terms as weights (the
    derivatives of log W in phi and p follow from them: :func:`tweedie_sat_partials`). W is the series
    sum_j z^j / (j! Gamma(-alpha j)) of Dunn and Smyth (2005), alpha = (2 - p) / (1 - p), summed over a window
    about its largest term j_max = y^(2-p) / (phi (2 - p)). The terms fall off like a normal density in j of
    variance j (p - 1), so j_max -+ (10 + 10 sd) leaves out nothing above e^-50 of the largest. Rows go in bands
    of window widths rounded up to a power of two (one array per band and run of rows); a row's window then holds a
    few more of the series' terms, which only adds to its accuracy."""
    y = np.asarray(y, dtype=float)
    out, e_j, e_jd = np.empty_like(y), np.empty_like(y), np.empty_like(y)
    if y.size == 0:
        return out, e_j, e_jd
    alpha = (2.0 - p) / (1.0 - p)
    logz = -alpha * np.log(y) + alpha * np.log(p - 1.0) - (1.0 - alpha) * np.log(phi) - np.log(2.0 - p)
    jmax = np.maximum(1.0, y ** (2.0 - p) / (phi * (2.0 - p)))
    spread = 10.0 + 10.0 * np.sqrt(jmax * (p - 1.0))
    lo = np.maximum(1.0, np.floor(jmax - spread))
    width = np.ceil(jmax + spread) - lo + 1.0
    band = np.ceil(np.log2(width)).astype(np.int64)
    # log j! + log Gamma(-alpha j) and j psi(-alpha j) depend on j alone (alpha is the member's): tables over every
    # j any window reaches, read by index, instead of special functions per term
    j0 = float(np.min(lo))
    top_j = float(np.max(lo + np.exp2(band.astype(float)))) + 1.0
    table = table_d = None
    if top_j - j0 <= SERIES_TABLE:
        grid = np.arange(j0, top_j)
        table = special.gammaln(grid + 1.0) + special.gammaln(-alpha * grid)
        table_d = grid * special.digamma(-alpha * grid)
    # the terms go down the columns (window position x rows): the reductions over a row's window are then sums
    # and maxima of whole contiguous rows, several times faster than along short rows
    for b in np.unique(band):
        K = 1 << int(b)
        rows_b = np.flatnonzero(band == b)
        step = max(1, SERIES_CELLS // K)
        for a in range(0, rows_b.size, step):
            rows = rows_b[a:a + step]
            lo_r = lo[rows]
            if table is not None and table_d is not None and lo_r[0] == lo_r[-1] and np.all(lo_r == lo_r[0]):
                # one window for every row (small means: it starts at j = 1): the tables' slice, no gathers
                at = int(lo_r[0] - j0)
                j1 = np.arange(lo_r[0], lo_r[0] + K)
                terms = np.multiply.outer(j1, logz[rows])
                terms -= table[at:at + K, None]
                window: tuple[np.ndarray, np.ndarray] | None = (j1, table_d[at:at + K])
            else:
                j = np.arange(K, dtype=float)[:, None] + lo_r[None, :]
                terms = j * logz[rows][None, :]
                if table is not None and table_d is not None:
                    idx = np.arange(K, dtype=np.int64)[:, None] + (lo_r - j0).astype(np.int64)[None, :]
                    terms -= table[idx]
                    jd = table_d[idx]
                else:  # windows spread over more terms than the table holds: the special functions term by term
                    terms -= special.gammaln(j + 1.0)
                    terms -= special.gammaln(-alpha * j)
                    jd = j * special.digamma(-alpha * j)
                window = None
            top = np.max(terms, axis=0)
            terms -= top
            np.exp(terms, out=terms)
            total = np.sum(terms, axis=0)
            out[rows] = top + np.log(total)
            if window is not None:  # the same j for every row: products with the window's vectors
                e_j[rows] = (window[0] @ terms) / total
                e_jd[rows] = (window[1] @ terms) / total
            else:
                e_j[rows] = np.einsum("ij,ij->j", terms, j) / total
                e_jd[rows] = np.einsum("ij,ij->j", terms, jd) / total
    return out, e_j, e_jd


def tweedie_sat_partials(y: np.ndarray, phi: float, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the derivatives of the saturated log-density c(y) = log W - log y + y^(2-p) / ((1-p)(2-p) phi)
    (0 at y = 0) in log phi and in p. With log z = -alpha log y + alpha log(p - 1) - (1 - alpha) log phi -
    log(2 - p) and a term's log j log z - log j! - log Gamma(-alpha j): d log W / d log phi = -(1 - alpha) E[j],
    d log W / dp = E[j] d log z / dp + alpha' E[j psi(-alpha j)], alpha' = 1 / (1 - p)^2."""
    y = np.asarray(y, dtype=float)
    d_phi, d_p = np.zeros_like(y), np.zeros_like(y)
    pos = y > 0
    if not np.any(pos):
        return d_phi, d_p
    yp = y[pos]
    _, e_j, e_jd = tweedie_series_parts(yp, phi, p)
    alpha = (2.0 - p) / (1.0 - p)
    d_alpha = 1.0 / (1.0 - p) ** 2
    log_y = np.log(yp)
    u = (1.0 - p) * (2.0 - p)
    g = yp ** (2.0 - p) / u
    d_logz = d_alpha * (-log_y + np.log(p - 1.0) + np.log(phi)) + alpha / (p - 1.0) + 1.0 / (2.0 - p)
    d_phi[pos] = -(1.0 - alpha) * e_j - g / phi
    d_p[pos] = d_logz * e_j + d_alpha * e_jd + g * (-log_y + (3.0 - 2.0 * p) / u) / phi
    return d_phi, d_p


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

    def fast_state(self, resp, eta, link):
        """The log link's row state in closed form: with m = mu^(1-p) = exp((1 - p) eta) and mu^(2-p) = mu m, the
        variance function's derivatives reduce to dev = 2 (y^(2-p) / ((1-p)(2-p)) - y m / (1-p) + mu m / (2-p)) /
        phi, dev_eta = -2 (y - mu) m / phi, dev_eta2 = 2 (mu m + (p - 1)(y - mu) m) / phi, w = mu m / phi and
        w_eta = (2 - p) mu m / phi (the generic path's values with two exponentials instead of five powers)."""
        if link != "log":
            return None
        phi, p = self.parameters
        y = resp.y
        e = np.clip(eta, LOG_TINY, 700.0)  # the means' floor of the unit deviance (_TINY) and the log link's cap
        mu = np.exp(e)
        m = np.exp((1.0 - p) * e)
        mu2 = mu * m
        r = y - mu
        if getattr(resp, "tweedie_p", None) != p:  # y^(2-p) / ((1-p)(2-p)), kept for this power
            resp.tweedie_y = np.power(y, 2.0 - p) / ((1.0 - p) * (2.0 - p))
            resp.tweedie_p = p
        dev = 2.0 * (resp.tweedie_y - y * m / (1.0 - p) + mu2 / (2.0 - p)) / phi
        return RowState(eta=eta, mu=mu, h1=mu, h2=mu, var=np.maximum(phi * mu / m, 1e-300), dev=dev,
                        dev_eta=-2.0 * r * m / phi, dev_eta2=2.0 * (mu2 + (p - 1.0) * r * m) / phi, w=mu2 / phi,
                        w_eta=(2.0 - p) * mu2 / phi)

    def sat_partials(self, y: np.ndarray) -> list[np.ndarray]:
        """Per row, the derivatives of the response's constant (:meth:`_sat`, the only part of log f besides the
        unit deviance that moves with the parameters) in each estimated parameter on the optimiser's scale (log
        phi; the power's qlogis(power - 1)), in closed form from the series (:func:`tweedie_sat_partials`)."""
        phi, p = self.parameters
        d_phi, d_p = tweedie_sat_partials(y, phi, p)
        by_name = {"phi": d_phi, "power": d_p * (p - 1.0) * (2.0 - p)}
        return [by_name[self.parameter_names[i]] for i in self.free_parameters()]

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
