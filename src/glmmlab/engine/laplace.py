"""The Laplace approximation to the GLMM log-likelihood and its exact gradient over (theta, beta).

The objective is lme4's ``glmer(nAGQ = 1)`` deviance (minus twice the approximate log-likelihood):

    D(theta, beta) = A(mu) + sum_j u_j^2 + sum_j log(1 + theta^2 W_j)

at the conditional modes u = u(theta, beta), with A(mu) = -2 log p(y | mu) for the family (for Gaussian with a
non-identity link and for Gamma, lme4's dispersion convention phi = deviance / n and its "+2"; A then depends on
the rows only through the total deviance) and W_j = sum_i h'(eta_i)^2 / V(mu_i) the group's expected-information
weight.

The gradient follows the modes through the implicit function theorem: u_j solves
G_j = theta * sum_i d dev_i / d eta_i + 2 u_j = 0, so du_j / d phi = -(dG_j / d phi) / (dG_j / du_j), one scalar
per group. The blocks (:mod:`glmmlab.engine.blocks`) compute their shares; this module adds them up.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.response import add_constants, minus2_loglik


class LaplaceObjective:
    """D(theta, beta) and its gradient over a set of blocks (``blocks.map(method, *args)``)."""

    def __init__(self, blocks, family: str):
        self.blocks = blocks
        self.family = family
        self.const = add_constants(blocks.map("constants"))
        self.evaluations = 0
        self.modes_converged = True

    def parts(self, theta: float, beta: np.ndarray, gradient: bool) -> tuple[float, float, list[dict]]:
        parts = self.blocks.map("laplace", float(theta), np.asarray(beta, dtype=float), gradient)
        self.evaluations += 1
        D = sum(p["dev_sum"] for p in parts)
        self.modes_converged = all(p["modes_converged"] for p in parts)
        A, c, _ = minus2_loglik(self.family, self.const, D)
        dev = A + sum(p["uu"] for p in parts) + sum(p["logdet"] for p in parts)
        return float(dev), float(c), parts

    def value(self, params: np.ndarray) -> float:
        dev, _, _ = self.parts(params[0], params[1:], False)
        return dev if np.isfinite(dev) else np.inf

    def value_and_grad(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        dev, _, grad = self._value_c_grad(params)
        return dev, grad

    def _value_c_grad(self, params: np.ndarray) -> tuple[float, float, np.ndarray]:
        """D, c = dA/d(total deviance) and the gradient of D."""
        dev, c, parts = self.parts(params[0], params[1:], True)
        if not np.isfinite(dev):
            return np.inf, c, np.zeros_like(params)
        g_beta = c * sum(p["grad_beta_c"] for p in parts) + sum(p["grad_beta_0"] for p in parts)
        g_theta = c * sum(p["grad_theta_c"] for p in parts) + sum(p["grad_theta_0"] for p in parts)
        return dev, c, np.concatenate([[g_theta], g_beta])

    def dispersion(self, theta: float, beta: np.ndarray) -> float:
        """lme4's phi = total deviance / n at the modes (1 for binomial and Poisson)."""
        _, _, parts = self.parts(theta, beta, False)
        _, _, phi = minus2_loglik(self.family, self.const, sum(p["dev_sum"] for p in parts))
        return float(phi)

    def approx_hessian(self, params: np.ndarray) -> np.ndarray:
        """An approximation of the Hessian of D for the final Newton polish: over beta, 2 c times the
        working-weight precision at the modes (c = dA/d total deviance); the theta row and column by a forward
        difference of the exact gradient. Costs one pass for the precision and one gradient evaluation."""
        theta, beta = float(params[0]), np.asarray(params[1:], dtype=float)
        _, c, g0 = self._value_c_grad(params)
        P = sum(p["precision"] for p in self.blocks.map("final", theta, beta))
        h = 1e-5 * max(abs(theta), 0.1)
        step = params.copy()
        step[0] += h
        col = (self.value_and_grad(step)[1] - g0) / h
        H = np.empty((params.size, params.size))
        H[1:, 1:] = 2.0 * c * P
        H[:, 0] = col
        H[0, :] = col
        return H
