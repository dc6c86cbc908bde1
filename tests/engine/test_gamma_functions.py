"""The trigamma and tetragamma functions of the densities (engine.families.gamma_functions) against scipy's
polygamma, over small, moderate and large arguments, on both of their paths (all rows at once and row runs past
_AT_ONCE step by step) and for arrays of any shape."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy import special

from glmmlab.engine.families import gamma_functions as gf


@pytest.mark.parametrize("n", [7, gf._AT_ONCE + 5])
def test_against_polygamma(n):
    rng = np.random.default_rng(3)
    x = np.concatenate([10.0 ** rng.uniform(-8, 7, n), [gf.SHIFT, gf.SHIFT - 1e-12, 0.5, 1.0]])
    np.testing.assert_allclose(gf.trigamma(x), special.polygamma(1, x), rtol=1e-13)
    np.testing.assert_allclose(gf.tetragamma(x), special.polygamma(2, x), rtol=1e-13)


def test_shapes_and_large_arguments():
    x = np.array([[0.3, 4.0], [11.0, 250.0]])
    assert gf.trigamma(x).shape == (2, 2)
    np.testing.assert_allclose(gf.tetragamma(x), special.polygamma(2, x), rtol=1e-13)
    big = np.array([20.0, 1e6])  # no argument below SHIFT: the series alone
    np.testing.assert_allclose(gf.trigamma(big), special.polygamma(1, big), rtol=1e-13)


def test_count_runs_against_the_differences():
    """Integer counts' sums over their runs (CountRuns) give the same differences as the series and scipy's
    functions, for sizes from 1e-3 to the Poisson limit (1e9), zeros included; counts that are not integers, or
    total more than RUNS_PER_ROW per row, get none."""
    rng = np.random.default_rng(5)
    y = np.concatenate([rng.poisson(6.0, 300), [0, 0, 1, 40]]).astype(float)
    s = np.concatenate([10.0 ** rng.uniform(-3, 9, 300), [0.5, 1e9, 2.0, 3.0]])
    runs = gf.count_runs(y)
    assert runs is not None
    at = s[runs.rows]
    inv = 1.0 / (at + runs.k)
    # exact references: the sums in rational arithmetic (each s is a binary fraction)
    exact = [[sum((Fraction(1) / (Fraction(float(si)) + k)) ** p for k in range(int(yi))) for yi, si in zip(y, s)]
             for p in (1, 2, 3)]
    np.testing.assert_allclose(runs.sums(inv), [float(v) for v in exact[0]], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(-runs.sums(inv * inv), [-float(v) for v in exact[1]], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(2.0 * runs.sums(inv ** 3), [2.0 * float(v) for v in exact[2]], rtol=1e-14,
                               atol=1e-300)
    # the series' differences agree to their own accuracy (scipy's digamma difference below DIGAMMA_FROM: 1e-11)
    np.testing.assert_allclose(runs.sums(inv), gf.digamma_diff(y, s), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(-runs.sums(inv * inv), gf.trigamma_diff(y, s), rtol=1e-10, atol=1e-300)
    # (a count of 1 gives exactly 0 here, where Stirling's series leaves its rounding, some 1e-25)
    np.testing.assert_allclose(runs.sums(np.log1p(runs.k / at)), gf.lgamma_ratio(y, s), rtol=1e-12, atol=1e-20)
    small = s < 1e3  # where scipy's own differences keep their digits
    np.testing.assert_allclose(runs.sums(inv)[small], (special.digamma(y + s) - special.digamma(s))[small],
                               rtol=1e-10)
    assert runs.sums(inv)[y == 0].tolist() == [0.0] * int(np.sum(y == 0))
    assert gf.count_runs(y + 0.5) is None
    assert gf.count_runs(np.full(10, gf.RUNS_PER_ROW + 1.0)) is None
