"""Adaptive Gauss-Hermite quadrature (nAGQ > 1) for the marginal log-likelihood of a random-intercept GLMM.

Each group's integral  I_j = int prod_i p(y_i | u) phi(u) du  over the spherical random effect u is taken with
the quadrature rule centred on the conditional mode u_j and scaled by s_j = (1 + theta^2 W_j)^(-1/2), the
conditional standard deviation from the expected information (see ``Block.agq``). With one node the rule reduces
exactly to the Laplace approximation. Unlike lme4 we keep every constant of the density, so for Poisson the value
is the proper marginal log-likelihood and comparable with the Laplace one. Families with a dispersion use lme4's
convention: phi fixed at its value at the modes, and the "+2" of its Laplace deviance.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.laplace import LaplaceObjective


def normal_nodes(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal density: sum w f(z) ~ E f(Z)."""
    x, w = np.polynomial.hermite.hermgauss(k)
    return x * np.sqrt(2.0), w / np.sqrt(np.pi)


class AgqObjective:
    """Minus twice the AGQ log-likelihood as a function of (theta, beta), over a set of blocks."""

    def __init__(self, laplace: LaplaceObjective, nodes: int, has_dispersion: bool):
        self.laplace = laplace
        self.z, self.w = normal_nodes(nodes)
        self.has_dispersion = has_dispersion

    def value(self, params: np.ndarray) -> float:
        theta, beta = float(params[0]), np.asarray(params[1:], dtype=float)
        phi = self.laplace.dispersion(theta, beta)  # also puts every block's modes at (theta, beta)
        total = sum(self.laplace.blocks.map("agq", theta, beta, phi, self.z, self.w))
        value = -2.0 * total + (2.0 if self.has_dispersion else 0.0)
        return value if np.isfinite(value) else np.inf
