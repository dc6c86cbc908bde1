"""An approximate Hessian of :class:`~glmmlab.engine.solvers.joint_laplace.JointLaplace`'s deviance in x = (theta,
the mean's coefficients, the zero model's), from what an evaluation leaves (the rows' deviance gradient g_i and
Hessian W_i in the two predictors at the modes, the levels' H_j): the Newton steps' start metric in place of
L-BFGS-B's scaled identity (salamanders_zip_zire: its first steps overshot by a factor of ten).

With u fixed the rows' predictors are linear in x: eta_i = x_i' beta + theta_0 u_j0 and z_i = z_i' gamma + theta_1
u_j1, with Jacobian rows E_i (eta) and F_i (z). The penalised deviance P = sum dev_i + |u|^2 has, jointly in (x, u),
P_xx = sum_i [E_i; F_i]' W_i [E_i; F_i], P_xu_j = sum over the level's rows of [E_i; F_i]' W_i diag(theta) plus
sum g_i,k at (theta_k, u_jk) (eta_i's cross derivative in theta_k and u_jk is 1), and P_uu_j = 2 H_j; the deviance at
the modes then has P_xx - sum_j P_xu_j (2 H_j)^-1 P_ux_j (exact for P at its modes). The log-determinant's part
is taken in theta alone, with the levels' S_j = sum W_i held: log det(I + 1/2 diag(theta) S_j diag(theta)) in
closed form (the third derivatives through W are left out, as a Gauss-Newton step leaves out the second).
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.solvers.joint_levels import _inverse


def approximate_hessian(codes: np.ndarray, runs: np.ndarray, theta: np.ndarray, u: np.ndarray, H: np.ndarray,
                        rows_at_modes: tuple, designs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The approximation over (theta (2), the mean's coefficients, the zero model's) for one intercept per part on
    rows sorted by level (``runs`` where each level's rows start). ``rows_at_modes``: the rows' g (n, 2), W (n, 2,
    2) and their level sums (L, 6: g's two, then W's four); ``designs``: the mean's and the zero model's (n, p),
    (n, p_z) on the same rows."""
    g, W, sums = rows_at_modes
    X, Z = designs
    n, p, pz = X.shape[0], X.shape[1], Z.shape[1]
    nx = 2 + p + pz
    E = np.zeros((n, nx))
    F = np.zeros((n, nx))
    E[:, 0], E[:, 2:2 + p] = u[codes, 0], X
    F[:, 1], F[:, 2 + p:] = u[codes, 1], Z
    w00, w01, w11 = W[:, 0, 0, None], W[:, 0, 1, None], W[:, 1, 1, None]
    WE = w00 * E
    WE += w01 * F  # W_i [E_i; F_i]: its eta row
    WF = w01 * E
    WF += w11 * F  # and its z row
    Pxx = E.T @ WE + F.T @ WF
    C0 = np.add.reduceat(WE, runs, axis=0)  # (L, x): P_ux_j's row of u_j0, over theta_0
    C1 = np.add.reduceat(WF, runs, axis=0)
    C0 *= theta[0]
    C1 *= theta[1]
    C0[:, 0] += sums[:, 0]
    C1[:, 1] += sums[:, 1]
    K = _inverse(H)  # H_j^-1 (symmetric): P_xu_j (2 H_j)^-1 P_ux_j from its three entries, halved
    k00, k01, k11 = 0.5 * K[:, 0, 0, None], 0.5 * K[:, 0, 1, None], 0.5 * K[:, 1, 1, None]
    out = Pxx - C0.T @ (k00 * C0 + k01 * C1) - C1.T @ (k01 * C0 + k11 * C1)
    # sum_j log D_j, D_j = det(I + 1/2 diag(theta) S_j diag(theta)) = 1 + a t0^2 + d t1^2 + c t0^2 t1^2
    a, b, d = 0.5 * sums[:, 2], 0.5 * sums[:, 3], 0.5 * sums[:, 5]
    c = a * d - b * b
    t0, t1 = theta
    D = 1.0 + a * t0 * t0 + d * t1 * t1 + c * t0 * t0 * t1 * t1
    D0, D1 = 2.0 * t0 * (a + c * t1 * t1), 2.0 * t1 * (d + c * t0 * t0)
    D00, D11, D01 = 2.0 * (a + c * t1 * t1), 2.0 * (d + c * t0 * t0), 4.0 * c * t0 * t1
    out[0, 0] += float(np.sum(D00 / D - D0 * D0 / (D * D)))
    out[1, 1] += float(np.sum(D11 / D - D1 * D1 / (D * D)))
    cross = float(np.sum(D01 / D - D0 * D1 / (D * D)))
    out[0, 1] += cross
    out[1, 0] += cross
    return out
