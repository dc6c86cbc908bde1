"""The conditional modes' change in (theta, beta) for crossed scalar terms held sparse, by the implicit function
theorem at the last modes: PIRLS at the next point starts from the last modes moved along it (an error of the
order of the step squared: one mode-search step fewer per evaluation, each a pass over the rows and the coupled
block's Schur complement), as it does for one grouping factor (``GeneralLaplace._predicted_modes``).

At the modes Lambda' s = u, with s = Z' W (y - mu) / h1 the score per random effect (W the working weights), so
(I + Lambda' Z'WZ Lambda) du = dLambda' s - Lambda' Z'WZ dLambda u - Lambda' Z'W X dbeta: one solve with the last
factor. s itself comes from the last step's cross-products of the working response r = Z Lambda u + (y - mu) / h1:
Z'W r = Z'WZ Lambda u + s.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.solvers.structure import CrossProducts, Structure


def crossed_sparse(st: Structure) -> bool:
    """Whether the structure is crossed scalar terms held sparse (its cross-products by
    :meth:`~glmmlab.engine.solvers.structure.Structure.scalar_coupling`)."""
    return bool(st.rest) and st.all_scalar and not st.dense


def lambda_vector(st: Structure, lams: list[np.ndarray]) -> np.ndarray:
    """Lambda's diagonal (scalar terms): the leading factor's SD per level, then each coupled factor's."""
    return np.concatenate([np.full(st.L1, float(lams[0][0, 0]))]
                          + [np.full(b.n_levels, float(L[0, 0])) for b, L in zip(st.rest, lams[1:])])


def _times_a(cp: CrossProducts, v: np.ndarray, L1: int) -> np.ndarray:
    """Z'WZ v from the cross-products (the leading factor's diagonal, the coupling A21, the coupled block A22)."""
    assert cp.A21 is not None and cp.A22 is not None  # a crossed structure
    v1, v2 = v[:L1], v[L1:]
    return np.concatenate([cp.A11[:, 0, 0] * v1 + cp.A21.T @ v2, cp.A21 @ v1 + cp.A22 @ v2])


def mode_change(st: Structure, last: dict, theta: np.ndarray, eta_f: np.ndarray) -> np.ndarray:
    """du from the last modes to those at (theta, beta) (see the module's docstring). ``last``: the last point's
    modes ``u``, factor ``F``, cross-products ``cp`` of the working response with its weights ``w``, Lambda's
    diagonal ``lam`` and X beta + offset ``eta_f``; ``eta_f``: the new point's."""
    cp, u, lam, L1 = last["cp"], last["u"], last["lam"], st.L1
    assert cp.E2 is not None  # a crossed structure's cross-products
    dlam = lambda_vector(st, st.lambdas(theta)) - lam
    score = np.concatenate([cp.E1[:, 0, 0], cp.E2[:, 0]]) - _times_a(cp, lam * u, L1)
    rhs = dlam * score - lam * _times_a(cp, dlam * u, L1)
    xb = eta_f - last["eta_f"]
    if np.any(xb != 0.0):
        xb *= last["w"]
        rhs -= lam * np.concatenate([st.lead_sums_z(xb)[0][:, 0], st.scalar_coupling().z2_sums(xb)])
    return last["F"].solve(rhs)
