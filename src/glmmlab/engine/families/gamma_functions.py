"""The trigamma and tetragamma functions (the first and second derivatives of the digamma function) for arrays,
as the densities with log-gamma terms need them on every pass over the rows (scipy's ``polygamma`` goes through
the Hurwitz zeta function, about ten times slower). Where any argument is below SHIFT, every argument is moved up
by SHIFT whole steps by the recurrences psi1(x) = psi1(x + 1) + 1 / x^2 and psi2(x) = psi2(x + 1) - 2 / x^3 (the
same steps for all: one array operation over rows x steps, no per-row count), then the asymptotic series (Bernoulli
numbers) is summed to terms below 1e-15 of the value; the relative error is below 1e-13 for x > 0."""

from __future__ import annotations

import numpy as np

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
