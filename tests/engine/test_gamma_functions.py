"""The trigamma and tetragamma functions of the densities (engine.families.gamma_functions) against scipy's
polygamma, over small, moderate and large arguments, on both of their paths (all rows at once and row runs past
_AT_ONCE step by step) and for arrays of any shape."""

from __future__ import annotations

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
