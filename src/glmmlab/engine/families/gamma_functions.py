"""The trigamma and tetragamma functions (the first and second derivatives of the digamma function) for arrays,
as the densities with log-gamma terms need them on every pass over the rows (scipy's ``polygamma`` goes through
the Hurwitz zeta function, about ten times slower). Where any argument is below SHIFT, every argument is moved up
by SHIFT whole steps by the recurrences psi1(x) = psi1(x + 1) + 1 / x^2 and psi2(x) = psi2(x + 1) - 2 / x^3 (the
same steps for all: one array operation over rows x steps, no per-row count), then the asymptotic series (Bernoulli
numbers) is summed to terms below 1e-15 of the value; the relative error is below 1e-13 for x > 0.

The negative binomials' log-densities need log Gamma(y + s) - log Gamma(s) and psi(y + s) - psi(s) for sizes s that
grow without bound as the dispersion goes to its Poisson limit (NB2's theta -> inf, NB1's mu / phi with phi -> 0):
written as differences of scipy's values they lose every digit there (log Gamma(1e9) is 2e10, its rounding 4e-6),
which makes the dispersion's gradient noise and sends the optimiser wandering along the limit. :func:`lgamma_ratio`
and :func:`digamma_diff` give them through Stirling's series with the large parts cancelled by hand."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

SHIFT = 10.0
_STEPS = np.arange(SHIFT)[:, None]  # the recurrence's steps 0 .. SHIFT - 1, down a column
_AT_ONCE = 1 << 16  # rows whose steps are taken as one (steps x rows) array; more go step by step (memory)


def _shifted(x, power: int, sign: float):
    """(x + SHIFT, the recurrence's sum sign * sum_k 1 / (x + k)^power over k = 0 .. SHIFT - 1), or (x, 0) where
    every argument is at SHIFT or above already."""
    x = np.asarray(x, dtype=float)
    if x.size == 0 or float(np.min(x)) >= SHIFT:
        return x, 0.0
    flat = x.reshape(-1)
    if flat.size <= _AT_ONCE:
        acc = _inverse_power(_STEPS + flat[None, :], power).sum(axis=0)
    else:
        acc = np.zeros_like(flat)
        for k in range(int(SHIFT)):
            acc += _inverse_power(flat + float(k), power)
    return x + SHIFT, sign * acc.reshape(x.shape)


def _inverse_power(t: np.ndarray, power: int) -> np.ndarray:
    """1 / t^power for a power of 2 or 3, by multiplications (not a power)."""
    t2 = t * t
    if power == 3:
        t2 *= t
    np.reciprocal(t2, out=t2)
    return t2


def trigamma(x) -> np.ndarray:
    """psi'(x) for x > 0."""
    x, acc = _shifted(x, 2, 1.0)
    r = 1.0 / x
    r2 = r * r
    series = r2 * (1.0 / 6 + r2 * (-1.0 / 30 + r2 * (1.0 / 42 + r2 * (-1.0 / 30 + r2 * (5.0 / 66 + r2 * (
        -691.0 / 2730 + r2 * 7.0 / 6))))))
    return acc + r + 0.5 * r2 + r * series


def tetragamma(x) -> np.ndarray:
    """psi''(x) for x > 0."""
    x, acc = _shifted(x, 3, -2.0)
    r = 1.0 / x
    r2 = r * r
    series = r2 * (1.0 / 6 + r2 * (-1.0 / 6 + r2 * (3.0 / 10 + r2 * (-5.0 / 6 + r2 * (691.0 / 210 + r2 * (
        -35.0 / 2))))))
    return acc - r2 - r2 * r - 0.5 * r2 * r2 + r2 * r2 * series


STIRLING_FROM = 10.0  # sizes from which lgamma_ratio uses Stirling's series (its next term below 3e-17 there)
DIGAMMA_FROM = 1e4  # and digamma_diff its asymptotic series (next term below 1e-25; scipy's difference below it
# keeps 1e-11 of the result)


def _stirling_tail(x):
    """log Gamma(x) - [(x - 1/2) log x - x + log(2 pi) / 2] for x >= STIRLING_FROM (terms to x^-13); an array or
    one number."""
    r = 1.0 / x
    r2 = r * r
    return r * (1.0 / 12 + r2 * (-1.0 / 360 + r2 * (1.0 / 1260 + r2 * (-1.0 / 1680 + r2 * (
        1.0 / 1188 + r2 * (-691.0 / 360360 + r2 / 156))))))


def _split(y, s, at: float, big_fn, small_fn) -> np.ndarray:
    """big_fn where s >= at, small_fn elsewhere (arrays broadcast), without masks when one side takes every row
    (always for a scalar s: one dispersion for all rows)."""
    if isinstance(s, (float, int)) or np.ndim(s) == 0:
        s = float(s)
        return big_fn(np.asarray(y, dtype=float), s) if s >= at else small_fn(np.asarray(y, dtype=float), s)
    y, s = np.broadcast_arrays(np.asarray(y, dtype=float), np.asarray(s, dtype=float))
    big = s >= at
    if big.all():
        return big_fn(y, s)
    if not big.any():
        return small_fn(y, s)
    out = np.empty(y.shape)
    out[big] = big_fn(y[big], s[big])
    small = ~big
    out[small] = small_fn(y[small], s[small])
    return out


def _x_minus_log1p(x: np.ndarray) -> np.ndarray:
    """x - log(1 + x) for x >= 0, by its series below 0.01 (12 terms: below 1e-26 of the value)."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 0:
        x = x.reshape(1)
        return _x_minus_log1p(x)[0]
    out = x - np.log1p(x)
    small = x < 0.01
    if small.any():
        xs = x[small]
        acc = np.zeros_like(xs)
        for k in range(13, 1, -1):
            acc = acc * xs + (1.0 if k % 2 == 0 else -1.0) / k
        out[small] = acc * xs * xs
    return out


def _x_minus_log1p_number(x: float) -> float:
    """:func:`_x_minus_log1p` of one number, in Python floats (the same operations, no arrays)."""
    if x >= 0.01:
        return x - math.log1p(x)
    acc = 0.0
    for k in range(13, 1, -1):
        acc = acc * x + (1.0 if k % 2 == 0 else -1.0) / k
    return acc * x * x


def _lgamma_ratio_big(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    x = y / s
    return (y - 0.5) * x - (s + y - 0.5) * _x_minus_log1p(x) + (_stirling_tail(s + y) - _stirling_tail(s))


def _lgamma_ratio_small(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return special.gammaln(y + s) - special.gammaln(s) - y * np.log(s)


def lgamma_ratio(y, s) -> np.ndarray | float:
    """log Gamma(y + s) - log Gamma(s) - y log s for y >= 0, s > 0 (arrays broadcast), accurate to rounding of
    the result also for s of 1e15: for s >= STIRLING_FROM by Stirling's series, (y - 1/2) x - (s + y - 1/2)
    (x - log1p(x)) with x = y / s, plus the series' tails' difference."""
    if isinstance(y, (float, int)) and isinstance(s, (float, int)):  # one number (the t's constant): no arrays
        yf, sf = float(y), float(s)
        if sf < STIRLING_FROM:
            return math.lgamma(yf + sf) - math.lgamma(sf) - yf * math.log(sf)
        x = yf / sf
        return (yf - 0.5) * x - (sf + yf - 0.5) * _x_minus_log1p_number(x) + (_stirling_tail(sf + yf)
                                                                              - _stirling_tail(sf))
    return _split(y, s, STIRLING_FROM, _lgamma_ratio_big, _lgamma_ratio_small)


def _digamma_diff_big(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    t = s + y
    return (np.log1p(y / s) + y / (2.0 * s * t) + y * (s + t) / (12.0 * (s * t) ** 2)
            - (1.0 / t ** 4 - 1.0 / s ** 4) / 120.0)


def _digamma_diff_small(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    return special.digamma(y + s) - special.digamma(s)


def digamma_diff(y, s) -> np.ndarray:
    """psi(y + s) - psi(s) for y >= 0, s > 0 (arrays broadcast), accurate to rounding of the result for large s:
    log1p(y / s) + y / (2 s (s + y)) + y (2 s + y) / (12 s^2 (s + y)^2) - the next term's difference."""
    return _split(y, s, DIGAMMA_FROM, _digamma_diff_big, _digamma_diff_small)


def _trigamma_diff_big(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    # psi1(x) = 1/x + 1/(2x^2) + 1/(6x^3) - 1/(30x^5) + ...: each power's difference with its factor y taken out
    t = s + y
    st = s * t
    return -y * (1.0 / st + (s + t) / (2.0 * st * st) + (t * t + st + s * s) / (6.0 * st ** 3))


def _tetragamma_diff_big(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    # psi2(x) = -1/x^2 - 1/x^3 - 1/(2x^4) + 1/(6x^6) + ...
    t = s + y
    st = s * t
    return y * ((s + t) / (st * st) + (t * t + st + s * s) / st ** 3 + (s + t) * (s * s + t * t) / (2.0 * st ** 4))


def _pair_difference(fn, a: np.ndarray, b) -> np.ndarray:
    """fn(a + b) - fn(b) (``a`` an array, ``b`` one like it or a number): both arguments in one call of ``fn`` where
    b is an array, so the recurrence's steps and the series pass over them together (600 rows: one call of twice
    the rows costs 0.7 of two)."""
    if np.ndim(b) == 0:
        return fn(a + b) - fn(b)
    n = a.size
    both = fn(np.concatenate([(a + b).reshape(-1), np.reshape(b, -1)]))
    return (both[:n] - both[n:]).reshape(a.shape)


def trigamma_diff(y, s) -> np.ndarray:
    """psi1(y + s) - psi1(s) (y >= 0, s > 0), accurate to rounding of the result also for large s, where the
    difference of the two values (each about 1 / s) would keep few digits of it (about y / s^2)."""
    return _split(y, s, DIGAMMA_FROM, _trigamma_diff_big, lambda a, b: _pair_difference(trigamma, a, b))


def tetragamma_diff(y, s) -> np.ndarray:
    """psi2(y + s) - psi2(s) (y >= 0, s > 0), accurate to rounding of the result also for large s."""
    return _split(y, s, DIGAMMA_FROM, _tetragamma_diff_big, lambda a, b: _pair_difference(tetragamma, a, b))


# -- integer counts: the differences as sums over each count's run ---------------------------------------------
# counts whose total is at most this many per row use CountRuns (a pass over sum(y) entries): its temporaries (the
# pairs' sizes and powers) then hold at most 16 n numbers, fewer than the recurrence's SHIFT x 2n
RUNS_PER_ROW = 16


class CountRuns:
    """The pairs (i, k), k = 0 .. y_i - 1, of integer counts y as flat arrays (``rows``, ``k``), so that a sum
    over k of a function of (s_i, k) is one pass over sum(y) entries and one segmented sum: psi(y + s) - psi(s) =
    sum 1 / (s + k), psi1(y + s) - psi1(s) = -sum 1 / (s + k)^2, psi2(y + s) - psi2(s) = 2 sum 1 / (s + k)^3 and
    log Gamma(y + s) - log Gamma(s) - y log s = sum log1p(k / s). Each is a sum of terms of one sign, so it is
    accurate to rounding for every s (no cancellation near the Poisson limit either), and at the small totals of
    count data it costs less than the recurrences and series above (owls, 599 rows, sum(y) 4,000: a row state's
    three differences 170 -> 40 us)."""

    def __init__(self, y: np.ndarray):
        counts = y.astype(np.intp)
        self.n = int(y.shape[0])
        self.rows = np.repeat(np.arange(self.n), counts)
        first = np.cumsum(counts) - counts
        self.k = (np.arange(self.rows.size) - np.repeat(first, counts)).astype(float)
        self.nonzero = np.flatnonzero(counts > 0)
        self.starts = first[self.nonzero]

    def sums(self, terms: np.ndarray) -> np.ndarray:
        """Per row, the sum of ``terms`` (one per pair) over its run (0 for a count of 0)."""
        out = np.zeros(self.n)
        if terms.size:
            out[self.nonzero] = np.add.reduceat(terms, self.starts)
        return out


def count_runs(y) -> CountRuns | None:
    """:class:`CountRuns` of ``y`` where it is a vector of integer counts totalling at most RUNS_PER_ROW per row,
    else None."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0 or not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y != np.floor(y)):
        return None
    if float(np.sum(y)) > RUNS_PER_ROW * y.size:
        return None
    return CountRuns(y)
