"""Gauss-Hermite rules for adaptive quadrature (nAGQ > 1): the general engine's :meth:`GeneralLaplace.agq` centres
and scales them per group on the conditional modes."""

from __future__ import annotations

import numpy as np


def normal_nodes(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal density: sum w f(z) ~ E f(Z)."""
    x, w = np.polynomial.hermite.hermgauss(k)
    return x * np.sqrt(2.0), w / np.sqrt(np.pi)
