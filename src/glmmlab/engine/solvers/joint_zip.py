"""A zero-inflated Poisson's rows under the log link for :class:`~glmmlab.engine.solvers.joint_laplace.JointLaplace`'s
evaluations, in one pass: the deviance, its gradient and Hessian in the two predictors (eta the mean's, z the zero
model's) and, when asked, its third derivatives, from closed forms in eta and z. On a small fit's distinct rows a
numpy call costs about as much as its arithmetic, so the family's generic pieces (the row state, the mixture's
shares, the zero model's partials, each kept on the response) cost several times this (salamanders' 128 distinct
rows: 49 us a row state with its derivatives, about three per evaluation; a value and gradient evaluation 1.07 ->
0.60 ms CPU, each fit's own points replayed, at a load of 6.5).

With mu = exp(eta), p = plogis(z) and s = z + mu: a positive count has log f = y eta - mu - log y! - log(1 + e^z),
whose eta-derivatives are y - mu, -mu, -mu and z-derivatives -p, -p (1 - p), -p (1 - p) (1 - 2 p) (no cross
terms); a zero has log f = log(p + (1 - p) e^-mu) = softplus(s) - softplus(z) - mu, so with q = plogis(s) (the
structural zero's share of P(y = 0)), k = q (1 - q) and j = k (1 - 2 q) its derivatives add, to the positive
count's at y = 0, q mu (eta), q (z), k mu^2 + q mu (eta eta), k mu (eta z), k (z z), and the third ones
j mu^3 + 3 k mu^2 + q mu, j mu^2 + k mu, j mu, j (eta eta eta, eta eta z, eta z z, z z z).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.families.densities import PoissonDensity


def zip_rows(fam: Any, lk: Any, y: np.ndarray, pw: np.ndarray, codes: np.ndarray) -> "ZipRows | None":
    """The fused rows where they apply: a zero-inflated Poisson (no dispersion model, no other parameter) under the
    log link; None otherwise."""
    if getattr(fam, "kind", "") != "zi" or not isinstance(getattr(fam, "base", None), PoissonDensity) \
            or fam.n_disp or fam.rest_names or getattr(lk, "name", lk) != "log":
        return None
    return ZipRows(y, pw, codes)


class ZipRows:
    """The rows' constants (response, prior weights, each row's level) and the state at given predictors."""

    def __init__(self, y: np.ndarray, pw: np.ndarray, codes: np.ndarray):
        self.y, self.codes = y, codes
        self.zf = (y == 0).astype(float)
        self.lgy = special.gammaln(y + 1.0)
        self.m2w = -2.0 * np.broadcast_to(np.asarray(pw, dtype=float), y.shape)  # log f -> the deviance's scale
        self._m2w_col = self.m2w[:, None]

    def state(self, theta: np.ndarray, eta_f: np.ndarray, z_f: np.ndarray | float, u: np.ndarray):
        """At the effects ``u`` (L, 2) scaled by ``theta``: (the penalised deviance P = sum w dev + |u|^2, the
        rows' prior-weighted deviance gradient and Hessian in (eta, z) side by side (n, 6: g_eta, g_z, W_ee,
        W_ez, W_ze, W_zz), the pieces :meth:`thirds` reads)."""
        ur = u[self.codes]
        D, B, pieces = self.rows(eta_f + theta[0] * ur[:, 0], z_f + theta[1] * ur[:, 1])
        return D + float(np.vdot(u, u)), B, pieces

    def rows(self, eta: np.ndarray, z: np.ndarray):
        """At the predictors themselves: (the deviance sum w dev, :meth:`state`'s B and pieces)."""
        mu = np.exp(eta)
        p = special.expit(z)
        s = z + mu
        q = special.expit(s)
        zf = self.zf
        # log(1 + e^x) by logaddexp: one call (densities.softplus's five cost more on a small fit's rows)
        ll = self.y * eta - self.lgy - np.logaddexp(0.0, z) - mu + zf * np.logaddexp(0.0, s)
        D = float(self.m2w @ ll)
        qz = zf * q
        k = qz * (1.0 - q)  # (0 at a positive count)
        kmu = k * mu
        qm1 = qz - 1.0
        B = np.empty((eta.shape[0], 6))
        B[:, 0] = qm1 * mu + self.y
        B[:, 1] = qz - p
        B[:, 2] = (kmu + qm1) * mu
        B[:, 3] = B[:, 4] = kmu
        B[:, 5] = k - p * (1.0 - p)
        B *= self._m2w_col
        return D, B, (eta, mu, p, q, k)

    def thirds(self, pieces: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The prior-weighted deviance's third derivatives (eta eta eta, eta eta z, eta z z, z z z) per row, at
        :meth:`state`'s ``pieces``."""
        _, mu, p, q, k = pieces
        j = k * (1.0 - 2.0 * q)
        jmu = j * mu
        m2w = self.m2w
        eee = (((jmu + 3.0 * k) * mu + self.zf * q - 1.0) * mu) * m2w
        eez = (jmu + k) * mu * m2w
        ezz = jmu * m2w
        zzz = (j - p * (1.0 - p) * (1.0 - 2.0 * p)) * m2w
        return eee, eez, ezz, zzz

    def glm_functions(self, X: np.ndarray, Z: np.ndarray, off: np.ndarray, z_off: np.ndarray | float,
                      psi_range: tuple[float, float]):
        """The model without random effects (theta = 0) on these rows for modelled_glm.glm_stage, as its
        ``glm_fg`` and ``glm_hessian``: -2 log L and its gradient in (the mean's coefficients, the zero model's)
        (glm_objective's sums: inf outside ``psi_range``), and its Hessian from the rows' second derivatives
        (glm_start_hessian's blocks; every parameter has one)."""
        p = X.shape[1]
        lo, hi = psi_range

        def at(zv: np.ndarray):
            psi = zv[p:]
            if not np.all((lo < psi) & (psi < hi)):
                return None
            with np.errstate(all="ignore"):
                return self.rows(X @ zv[:p] + off, Z @ psi + z_off)

        def fg(zv: np.ndarray) -> tuple[float, np.ndarray]:
            found = at(zv)
            if found is None or not np.isfinite(found[0]):
                return np.inf, np.zeros_like(zv)
            B = found[1]
            return found[0], np.concatenate([X.T @ B[:, 0], Z.T @ B[:, 1]])

        def hessian(zv: np.ndarray, g: np.ndarray, wanted: np.ndarray) -> np.ndarray:
            found = at(zv)
            B = found[1] if found is not None else np.full((self.y.shape[0], 6), np.nan)
            H = np.empty((zv.size, zv.size))
            H[:p, :p] = X.T @ (X * B[:, 2, None])
            H[:p, p:] = X.T @ (Z * B[:, 3, None])
            H[p:, :p] = H[:p, p:].T
            H[p:, p:] = Z.T @ (Z * B[:, 5, None])
            return H

        return fg, hessian

