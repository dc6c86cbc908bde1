"""The conditional modes' search: penalised IRLS with step halving, one loop for every place that runs it.

:func:`search` is the loop (the Newton or working-weight step, its halving until the penalised deviance falls, the
edge tests, the stopping rules); what it does to the rows is asked of a :class:`ModeSteps`: :class:`RowModes`
in memory (:meth:`~glmmlab.engine.solvers.laplace.GeneralLaplace.pirls`, the rows at hand), and the Dask
driver's crossed fit (:class:`~glmmlab.services.distributed.coupled_fit.CoupledUnit`, each operation one round of
calls to the actors holding the rows, the coupled block factored on the driver).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from glmmlab.engine.solvers.blocked_cholesky import factor

# a mode whose linear predictor comes within this fraction of the scale of the row effects of the edge of the link's
# range (a mean of 0 under an identity link) is on that edge: see GeneralLaplace.pirls
EDGE_GAP = 1e-8
EDGE_STEPS = 3  # steps in a row at the edge that put a mode on it
STEP_TOL = 1e-10  # a step of the modes below this (largest entry) ends the search: they are found
MAX_PREDICTED_STEP = 0.5  # largest change of a spherical mode that PIRLS starts from by prediction
# under a link with an edge the mode search's curvature of a row with no observed curvature (y = 0 under the
# identity link): this fraction of the expected information, so the steps do not crawl towards the edge
# (GeneralLaplace._edge_working)
EDGE_CURVATURE = 1e-3


class ModeSteps(Protocol):
    """What :func:`search` asks of the rows (their modes, row state and the candidate of a step kept inside)."""

    def factor(self, newton: bool) -> bool:
        """Factor the penalised system at the current modes: ``newton`` with Newton's weights (the observed
        curvature; False, nothing kept, where that system is not positive definite), else the mode search's
        working weights (True)."""

    def step(self) -> float:
        """Solve for the full step to the next modes (kept); its largest change of a mode."""

    def edge_step(self) -> float:
        """The fraction of the step that stays inside the link's range (with an edge only)."""

    def try_step(self, t: float) -> float:
        """The penalised deviance at the modes moved by ``t`` times the step (the candidate, kept)."""

    def accept(self) -> bool:
        """Move to the last candidate; with an edge, whether some row is on it (see :data:`EDGE_GAP`)."""



def search(ops: ModeSteps, pdev: float, newton_first: bool, edge: bool, estimated: bool, max_iter: int = 200
           ) -> tuple[float, bool, bool, bool]:
    """Penalised IRLS from the modes ``ops`` holds (their penalised deviance ``pdev``): (the final penalised
    deviance, converged, at the edge, the iterations exhausted).

    ``newton_first``: Newton steps with the observed curvature first (where glmmTMB's likelihood is fitted: its
    log-determinant uses that curvature too; quadratic convergence, so the modes are at rounding level when the
    steps stop), the working weights where that system is not positive definite. ``edge``: the link's
    predictors have an edge: a step is cut to stay inside, and a mode that stays at the edge EDGE_STEPS steps in
    a row is on it. ``estimated``: the dispersion is a parameter (a small full Newton step then does not stop
    the search)."""
    converged = at_edge = exhausted = False
    near = 0
    for _ in range(max_iter):
        newton_step = newton_first and ops.factor(True)
        if not newton_step:
            ops.factor(False)
        size = ops.step()
        if size < STEP_TOL:
            converged = True
            break
        t = ops.edge_step() if edge else 1.0
        for _h in range(30):
            pdev_c = ops.try_step(t)
            if pdev_c <= pdev + 1e-12 * abs(pdev):
                break
            t *= 0.5
        else:
            converged = True  # no descent left at rounding level
            break
        pdev = pdev_c
        on_edge = ops.accept()
        if newton_step and t == 1.0 and size < 1e-6 and not estimated:
            # a full Newton step (quadratic convergence) this small: the next is of its square's order, below
            # the test above; the caller's factors are taken at these modes, so none is lost
            converged = True
            break
        # a mode that stays at the edge for EDGE_STEPS steps in a row is on it (a start next to the edge may touch
        # it on the way)
        near = near + 1 if edge and on_edge else 0
        if near >= EDGE_STEPS:
            at_edge = True
            break
    else:
        exhausted = True
    return pdev, converged, at_edge, exhausted


def valid_start(state, u0: np.ndarray, last: np.ndarray, size: int) -> tuple[np.ndarray, tuple]:
    """The mode search's start: the first of ``u0``, the last modes ``last`` (when u0 is not them) and zeros (of
    ``size``) whose row state has a finite penalised deviance; ``state(u)`` gives (..., pdev). Returns (u,
    state(u)); the caller tries further (or refuses) when even zeros give none."""
    u = u0.copy()
    out = state(u)
    for fallback in ((last,) if u0 is not last else ()) + (np.zeros(size),):
        if np.isfinite(out[-1]):
            break
        u = fallback.copy()
        out = state(u)
    return u, out


class RowModes:
    """:class:`ModeSteps` of a :class:`~glmmlab.engine.solvers.laplace.GeneralLaplace` on its own rows: the modes
    ``u`` with their row effects ``re`` and row state ``rs`` at (theta, X beta + offset ``eta_f``), and the last
    factor ``F`` with its cross-products ``cp`` and weights ``w``."""

    def __init__(self, lap: Any, theta: np.ndarray, lams: list[np.ndarray], eta_f: np.ndarray, u: np.ndarray,
                 re: np.ndarray, rs: Any):
        self.lap, self.st, self.theta, self.lams, self.eta_f = lap, lap.st, theta, lams, eta_f
        self.u, self.re, self.rs = u, re, rs
        self.cp: Any = None
        self.F: Any = None
        self.w: np.ndarray | None = None

    def factor(self, newton: bool) -> bool:
        lap, st = self.lap, self.st
        if newton:  # Newton's own step, with the observed curvature of every row (a zero-inflated row's can be
            # negative): quadratic convergence where the penalised Hessian is positive definite
            w, r = lap._newton_working(self.rs, self.re)
            cp = st.crossprods(w, r[:, None])
            try:
                F = factor(st, cp, self.theta)
            except np.linalg.LinAlgError:
                return False
            if not np.isfinite(F.logdet):
                return False
        else:
            w, r = lap._edge_working(self.rs, self.re) if lap.newton else (lap._weighted(self.rs.w),
                                                                          lap._working_response(self.rs, self.re))
            cp = st.crossprods(w, r[:, None])
            F = factor(st, cp, self.theta)
        self.cp, self.F, self.w = cp, F, w
        return True

    def step(self) -> float:
        self.delta = self.F.solve_u(0) - self.u
        return float(np.max(np.abs(self.delta), initial=0.0))

    def edge_step(self) -> float:
        st = self.st
        return self.lap._edge_step(self.eta_f + self.re, st.row_effect(st.b_of_u(self.delta, self.lams)))

    def try_step(self, t: float) -> float:
        cand = self.u + t * self.delta
        re, rs, pdev = self.lap._state(self.eta_f, cand, self.lams)
        self.cand = (cand, re, rs)
        return pdev

    def accept(self) -> bool:
        self.u, self.re, self.rs = self.cand
        del self.cand
        return bool(self.lap.edge and self.lap._at_edge(self.eta_f + self.re))
