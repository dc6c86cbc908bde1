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
The M term is linear in M, so each block of rows returns sum_j P_j (x) W_j (an m x m stack of q x q matrices,
m = p + 1) and the blocks' sums are contracted with the whole data's M: one pass over the levels per evaluation.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.solvers import structured
from glmmlab.engine.solvers.batched import batched_cholesky, batched_inverse_lower
from glmmlab.engine.solvers.optimizer import OptimizationRecord, minimize
from glmmlab.engine.solvers.row_blocks import reml_criterion
from glmmlab.engine.solvers.structure import CrossProducts, Structure


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
    its S part sum_j F_j' W_j, sum_j A_j Lambda H_j^-1 (q x q) and sum_j P_j (x) W_j ((m, m, q, q))."""
    Lam = st.lambdas(theta)[0]
    A, E = cp.A11, cp.E1
    n_lev, q, m = E.shape
    AL = (A.reshape(n_lev * q, q) @ Lam).reshape(n_lev, q, q)  # A_j Lambda, every level in one product
    H = np.matmul(Lam.T, AL)
    H[:, np.arange(q), np.arange(q)] += 1.0
    C = batched_cholesky(H)
    Ci = batched_inverse_lower(C)
    Hinv = np.matmul(np.swapaxes(Ci, 1, 2), Ci)
    F = np.matmul(Lam.T, E)
    W = np.matmul(Hinv, F)
    P = E - np.matmul(AL, W)
    return {"logdet": 2.0 * float(np.sum(np.log(np.diagonal(C, axis1=1, axis2=2)))),
            "FW": np.tensordot(F, W, axes=([0, 1], [0, 1])),
            "ALH": np.tensordot(AL, Hinv, axes=([0, 2], [0, 1])),
            "PW": np.einsum("jak,jcl->klac", P, W)}


def value_and_grad(obj, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """The criterion of ``obj`` (a :class:`~glmmlab.engine.solvers.row_blocks.BlockedProfiledLmm` of a model
    :func:`gradient_ok` takes) and its gradient in theta; (inf, 0) where it is not defined (a ``toep`` point whose
    correlation matrix is not positive definite)."""
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
    G = 2.0 * (sum(p["ALH"] for p in parts) - np.tensordot(M, sum(p["PW"] for p in parts), axes=([0, 1], [0, 1])))
    return float(dev), structured.matrix_to_theta(obj.units[0].st.blocks[0], theta, G)


def fit(obj, st: Structure, lower: np.ndarray, model: dict) -> tuple[np.ndarray, OptimizationRecord]:
    """Minimise the criterion by quasi-Newton steps with its exact gradient (L-BFGS-B, then Newton steps with a
    finite-difference Hessian of the gradient to rounding level: :func:`~glmmlab.engine.solvers.optimizer.minimize`)
    from the structure's start."""
    return minimize(lambda x: value_and_grad(obj, x), st.theta_start(), lower, max_iter=model["max_iter"],
                    tol=model["tol"], handover=True, forward_hessian=True)
