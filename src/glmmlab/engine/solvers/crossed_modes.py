"""The conditional modes' change in (theta, beta) for crossed scalar terms held sparse, by the implicit function
theorem at the last modes: PIRLS at the next point starts from the last modes moved along it (an error of the
order of the step squared: one mode-search step fewer per evaluation, each a pass over the rows and the coupled
block's Schur complement), as it does for one grouping factor (``GeneralLaplace._predicted_modes``).

At the modes Lambda' s = u, with s = Z' W (y - mu) / h1 the score per random effect (W the working weights), so
(I + Lambda' Z'WZ Lambda) du = dLambda' s - Lambda' Z'WZ dLambda u - Lambda' Z'W X dbeta: one solve with the last
factor. s itself comes from the last step's cross-products of the working response r = Z Lambda u + (y - mu) / h1:
Z'W r = Z'WZ Lambda u + s.

:class:`ChordModes` is the mode search's steps for them: a step's system is factored (the coupled block's Schur
complement, a sum over the pairs of entries within each leading level: most of a step's cost) only where the last
factor no longer serves. Otherwise the step is a chord step, du = H_F^-1 (Lambda' s - u) with the gradient at the
current modes and H_F the last factor's matrix (the last evaluation's, at first): it converges linearly, at a rate
of the relative change of H since that factor, which near an optimum is small. A chord step below the search's
tolerance is taken, and the system factored at the modes it reaches: the search's last factor is exact there (the
step that finds the modes converged is Newton's), and the log-determinant and the gradient use it
(elp_crossed_sub10 from lme4's start: 33 factors and 63 chord steps in 21 evaluations, from the moment start 19
factors in 14; the search with a factor at every step took about three per evaluation).
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.solvers.blocked_cholesky import Factor, factor
from glmmlab.engine.solvers.mode_search import STEP_TOL, RowModes
from glmmlab.engine.solvers.row_blocks import outer_factor
from glmmlab.engine.solvers.structure import CrossProducts, Structure

CHORD_RATE = 0.1  # a chord step that shrinks by less than this factor has the system factored again


def crossed_sparse(st: Structure) -> bool:
    """Whether the structure is crossed scalar terms held sparse (its cross-products by
    :meth:`~glmmlab.engine.solvers.structure.Structure.scalar_coupling`)."""
    return bool(st.rest) and st.all_scalar and not st.dense


def crossed_intercepts(st: Structure, crossing: bool | None = None) -> bool:
    """Whether the structure is random intercepts of crossed (or partially crossed) grouping factors, none nested
    in another: each factor's theta then has a moment start of its own (the between-level variance of its levels'
    mean working residuals, :func:`~glmmlab.engine.solvers.glm_start.moment_theta`, as for one random intercept),
    and the Laplace fit takes Newton steps from it (``laplace_fit._laplace_run``). ``crossing``: whether the
    factors cross, where ``st`` holds no rows to tell (the Dask driver's: its first pass over the data found it)."""
    return (bool(st.rest) and st.all_scalar and all(st.ones1) and all(st.rest_ones)
            and (outer_factor(st.blocks) is None if crossing is None else crossing))


def lambda_vector(st: Structure, lams: list[np.ndarray]) -> np.ndarray:
    """Lambda's diagonal (scalar terms): the leading factor's SD per level, then each coupled factor's."""
    return np.concatenate([np.full(st.L1, float(lams[0][0, 0]))]
                          + [np.full(b.n_levels, float(L[0, 0])) for b, L in zip(st.rest, lams[1:])])


def times_a(cp: CrossProducts, v: np.ndarray, L1: int) -> np.ndarray:
    """Z'WZ v from the cross-products (the leading factor's diagonal, the coupling A21, the coupled block A22)."""
    assert cp.A21 is not None and cp.A22 is not None  # a crossed structure
    v1, v2 = v[:L1], v[L1:]
    return np.concatenate([cp.A11[:, 0, 0] * v1 + cp.A21.T @ v2, cp.A21 @ v1 + cp.A22 @ v2])


def coupled_score(cp: CrossProducts, lam: np.ndarray, u: np.ndarray, L1: int) -> np.ndarray:
    """s = Z'W r - Z'WZ Lambda u from the cross-products of the working response r (see the module's docstring)."""
    assert cp.E2 is not None  # a crossed structure's cross-products
    return np.concatenate([cp.E1[:, 0, 0], cp.E2[:, 0]]) - times_a(cp, lam * u, L1)


def mode_change(st: Structure, last: dict, theta: np.ndarray, eta_f: np.ndarray) -> np.ndarray:
    """du from the last modes to those at (theta, beta) (see the module's docstring). ``last``: the last point's
    modes ``u``, factor ``F``, cross-products ``cp`` of the working response with its weights ``w``, Lambda's
    diagonal ``lam`` and X beta + offset ``eta_f``; ``eta_f``: the new point's."""
    cp, u, lam, L1 = last["cp"], last["u"], last["lam"], st.L1
    dlam = lambda_vector(st, st.lambdas(theta)) - lam
    score = coupled_score(cp, lam, u, L1)
    rhs = dlam * score - lam * times_a(cp, dlam * u, L1)
    xb = eta_f - last["eta_f"]
    if np.any(xb != 0.0):
        xb *= last["w"]
        rhs -= lam * np.concatenate([st.lead_sums_z(xb)[0][:, 0], st.scalar_coupling().z2_sums(xb)])
    return last["F"].solve(rhs)


class ChordModes(RowModes):
    """:class:`~glmmlab.engine.solvers.mode_search.RowModes` with chord steps (see the module's docstring) for
    crossed scalar terms held sparse and the working weights (no edge, no Newton weights). ``F``: a factor to
    start from (the last evaluation's), or None."""

    def __init__(self, lap, theta: np.ndarray, lams: list[np.ndarray], eta_f: np.ndarray, u: np.ndarray,
                 re: np.ndarray, rs, F: Factor | None):
        super().__init__(lap, theta, lams, eta_f, u, re, rs)
        self.F = F
        self.exact = False  # whether F is the factor of cp (the weights at the current modes)
        self.lam = lambda_vector(self.st, lams)
        self.last_size = np.inf
        self.factors = 0

    def factor(self, newton: bool) -> bool:
        self._products()
        self.exact = False
        if self.F is None:
            self._refactor()
        return True

    def _products(self) -> None:
        """The working weights and the cross-products of the working response at the current modes."""
        lap = self.lap
        self.w = lap._weighted(self.rs.w)
        self.cp = self.st.crossprods(self.w, lap._working_response(self.rs, self.re)[:, None])

    def _refactor(self) -> None:
        self.F = factor(self.st, self.cp, self.theta)
        self.exact = True
        self.factors += 1

    def step(self) -> float:
        assert self.F is not None and self.cp is not None
        if not self.exact:
            lam, u = self.lam, self.u
            self.delta = self.F.solve(lam * coupled_score(self.cp, lam, u, self.st.L1) - u)
            size = float(np.max(np.abs(self.delta), initial=0.0))
            if size >= STEP_TOL and size <= CHORD_RATE * self.last_size:
                self.last_size = size
                return size
            if size < STEP_TOL:
                # the modes are found: this last chord step is taken (its error, linear in the last one's, is not
                # of the order of its square as a Newton step's), and the system factored at the modes it reaches
                # (the log-determinant and the gradient use that factor), whose Newton step the search then tests
                self.u = self.u + self.delta
                self.re, self.rs, _ = self.lap._state(self.eta_f, self.u, self.lams)
                self._products()
            self._refactor()  # at the modes, or where the chord steps are too slow
        self.delta = self.F.solve_u(0) - self.u
        self.last_size = float(np.max(np.abs(self.delta), initial=0.0))
        return self.last_size

    def finish(self) -> None:
        """The factor of the current modes' weights, where the search stopped after a chord step."""
        if not self.exact and self.cp is not None:
            self._refactor()
