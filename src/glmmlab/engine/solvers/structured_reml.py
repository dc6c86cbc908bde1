"""The exact gradient of the profiled REML (or ML) criterion of a linear mixed model with one grouping factor whose
term has a covariance structure (``cs``, ``ar1``, ``toep``, ``ou``: :mod:`glmmlab.engine.model.covstruct`), and the
quasi-Newton fit that uses it in place of the derivative-free search.

Per level j of the factor, with A_j = Z_j' W Z_j and E_j = Z_j' W [X, z] (the cross-products of
:class:`~glmmlab.engine.solvers.structure.CrossProducts`), H_j = Lambda' A_j Lambda + I, F_j = Lambda' E_j and
W_j = H_j^-1 F_j, the criterion is

    d = sum_j log det H_j + g(S),   S = E'WE - sum_j F_j' W_j   (the Schur complement of [X, z]),

with g(S) = log det S + (n - p - 1) log r (REML) or n log r (ML), r = 1 / (S^-1)_zz the penalised RSS. Its
derivative in S is M = [S^-1 +] c r v v' (v = S^-1 e_z, c = n - p - 1 or n), and

    dd / dLambda = 2 sum_j [A_j Lambda H_j^-1 - P_j M W_j'],   P_j = E_j - A_j Lambda W_j,

which :func:`glmmlab.engine.solvers.structured.to_theta` takes to the structure's parameters by the chain rule.
M depends on the whole data's S, so each block of rows returns its P_j and W_j with its sums, and the M term is
contracted from them once S is summed: one factorisation of the levels per evaluation.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.solvers import structured
from glmmlab.engine.solvers.optimizer import OptimizationRecord, fd_hessian, minimize
from glmmlab.engine.solvers.row_blocks import reml_criterion
from glmmlab.engine.solvers.structure import CrossProducts, Structure
from glmmlab.engine.solvers.structured_start import moment_start


def gradient_ok(st: Structure, obj) -> bool:
    """Whether :func:`fit` takes this model: one grouping factor (one factor block) with a structured term, its
    blocks of rows in this process (each with its cross-products). Not ``toep``: its optimum often lies on the
    edge of the region where its correlation matrix is positive definite, where the criterion is infinite beyond
    and nearly singular before; a quasi-Newton run from the gradient stalls there (bootstrap refits of
    sim_longitudinal_ar1's first four occasions: 33 of 40 not converged, one broken down), the derivative-free
    search does not."""
    b = st.blocks[0]
    return (len(st.blocks) == 1 and b.structured and all(s is None or s.kind != "toep" for s in b.structures or [])
            and all(hasattr(u, "cp") for u in obj.units))


def level_parts(st: Structure, cp: CrossProducts, theta: np.ndarray) -> dict:
    """One block of rows' share of the criterion and its gradient at theta: log det H (summed over its levels),
    its S part sum_j F_j' W_j, sum_j A_j Lambda H_j^-1 (q x q), and W_j and P_j per level (the M term's
    factors, contracted once M is known)."""
    Lam = st.lambdas(theta)[0]
    A, E = cp.A11, cp.E1
    n_lev, q, m = E.shape
    AL = (A.reshape(n_lev * q, q) @ Lam).reshape(n_lev, q, q)  # A_j Lambda, every level in one product
    H = np.matmul(Lam.T, AL)
    H[:, np.arange(q), np.arange(q)] += 1.0
    C = np.linalg.cholesky(H)  # log det H (H >= I: positive definite)
    Hinv = np.linalg.inv(H)
    F = np.matmul(Lam.T, E)
    W = np.matmul(Hinv, F)
    P = E - np.matmul(AL, W)
    return {"logdet": 2.0 * float(np.sum(np.log(np.diagonal(C, axis1=1, axis2=2)))),
            "FW": F.reshape(n_lev * q, m).T @ W.reshape(n_lev * q, m),
            "ALH": np.einsum("jab,jbc->ac", AL, Hinv), "P": P, "W": W}


def value_and_grad(obj, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """The criterion of ``obj`` (a :class:`~glmmlab.engine.solvers.row_blocks.BlockedProfiledLmm` of a model
    :func:`gradient_ok` takes) and its gradient in theta; (inf, 0) where it is not defined."""
    theta = np.asarray(theta, dtype=float)
    try:
        parts = obj.map(lambda b: level_parts(b.st, b.cp, theta))
        EE = sum(b.cp.EE for b in obj.units)
        S = EE - sum(p["FW"] for p in parts)
        logdet = float(sum(p["logdet"] for p in parts))
        dev, pwrss = reml_criterion(logdet, S, obj.n, obj.sum_log_w, obj.reml)
    except (np.linalg.LinAlgError, ValueError):
        return np.inf, np.zeros(theta.size)
    if not np.isfinite(dev):
        return np.inf, np.zeros(theta.size)
    m = S.shape[0]
    Sinv = np.linalg.inv(S)
    v = Sinv[:, m - 1]
    n_sub = obj.n - (m - 1) - 1 if obj.reml else obj.n
    M = n_sub * pwrss * np.outer(v, v)
    if obj.reml:
        M += Sinv
    G = sum(p["ALH"] - np.einsum("jak,jck->ac", p["P"] @ M, p["W"]) for p in parts)
    return float(dev), structured.matrix_to_theta(obj.units[0].st.blocks[0], theta, 2.0 * G)


def fit(obj, st: Structure, lower: np.ndarray, model: dict) -> tuple[np.ndarray, OptimizationRecord]:
    """Minimise the criterion with its exact gradient. From the moments' start
    (:func:`~glmmlab.engine.solvers.structured_start.moment_start`), where it has a lower criterion than the usual
    start (or the caller's): Newton steps from a forward-difference Hessian of the gradient, updated by BFGS
    (:func:`~glmmlab.engine.solvers.newton.newton_run`; the evaluations: ovary_ar1 16 -> 10, sleepstudy_cs 28 ->
    11); else L-BFGS-B, then Newton steps with that Hessian to rounding level. Either way
    :func:`~glmmlab.engine.solvers.optimizer.minimize` runs them; the record's evaluations count the two values
    that chose the start too."""
    x0 = st.theta_start()
    moments = moment_start(st.blocks[0], [u.cp for u in obj.units], obj.n, x0)
    fg = lambda x: value_and_grad(obj, x)  # noqa: E731
    if moments is None:
        return minimize(fg, x0, lower, max_iter=model["max_iter"], tol=model["tol"], handover=True,
                        forward_hessian=True)
    if obj.value(moments) < obj.value(x0):
        taken: list[bool] = []

        def hessian_once(x: np.ndarray, fg_) -> np.ndarray:
            # the start's Hessian only: near the moments' start its BFGS updates serve to the end, where a second
            # one (newton_run's refresh once the gradient has fallen twentyfold) cost k more gradients for one
            # step saved; a non-finite answer keeps the updated one
            if taken:
                return np.full((x.size, x.size), np.nan)
            taken.append(True)
            return fd_hessian(fg_, x, lower, forward=True)

        theta, record = minimize(fg, moments, lower, max_iter=model["max_iter"], tol=model["tol"], newton=True,
                                 approx_hessian=hessian_once)
    else:
        theta, record = minimize(fg, x0, lower, max_iter=model["max_iter"], tol=model["tol"], handover=True,
                                 forward_hessian=True)
    record.evaluations += 2
    return theta, record
