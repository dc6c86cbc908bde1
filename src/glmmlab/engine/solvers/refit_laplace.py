"""Refits of a fitted generalized linear mixed model (Laplace, a family without a dispersion or parameters of its
own: binomial, Poisson) to new responses on the same rows, with the model's structure kept: the rows' order,
the random-effects structure and its factorisation pattern, the scaled design and the Hessian of the Laplace
deviance at the fit's optimum are made once (:class:`LaplaceRefitter`); a new response only makes its own
:class:`~glmmlab.engine.solvers.laplace.GeneralLaplace` over them, and is minimised by Newton steps with the
exact gradient from the fit's estimates and that Hessian (updated by BFGS), as the profile's points are
(:func:`glmmlab.engine.solvers.profile_laplace._newton`). A response whose steps cannot make progress returns
None, and the caller refits it the ordinary way."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link
from glmmlab.engine.inference.intervals import VarianceLayout
from glmmlab.engine.model.terms import ModelFrame, merge_terms
from glmmlab.engine.solvers.profile_problem import Bounds
from glmmlab.engine.solvers.structure import Structure

REFIT_TOL = 1e-11  # the Newton decrement (deviance still to gain) at which a refit has converged


def laplace_refit_ok(mf: ModelFrame, fam: Family) -> bool:
    """Whether :class:`LaplaceRefitter` takes this model: no dispersion, no parameters of the family's own, no
    zero or dispersion model, an exact gradient that is cheap, and no mapped covariance structure."""
    from glmmlab.engine.solvers.laplace_fit import exact_gradient_ok

    if fam.has_dispersion or fam.parameter_names or fam.trials_from_weights or mf.parts is not None \
            or fam.name == "ordinal" or mf.X.shape[1] == 0:
        return False
    blocks = merge_terms(mf.terms)
    return not any(b.structured for b in blocks) and exact_gradient_ok(Structure(blocks))


class LaplaceRefitter:
    """The fitted model's structure for refits to new responses (see the module's docstring)."""

    def __init__(self, mf: ModelFrame, fam: Family, lk: Link, x_names: list[str], theta: np.ndarray,
                 beta: np.ndarray):
        from glmmlab.engine.solvers.fit import _permuted
        from glmmlab.engine.solvers.row_blocks import cut_blocks
        from glmmlab.engine.solvers.scaling import scaled_design

        blocks = merge_terms(mf.terms)
        perm, _ = cut_blocks(blocks, 1)
        self.perm = None if np.all(perm == np.arange(mf.n)) else perm
        if self.perm is not None:
            mf = _permuted(mf, perm)
            blocks = merge_terms(mf.terms)
        self.st = Structure(blocks)
        self.layout = VarianceLayout.of(blocks)
        self.fam, self.lk = fam, lk
        n = mf.n
        self.pw = np.ones(n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
        self.off = np.zeros(n) if mf.offset is None else np.asarray(mf.offset, dtype=float)
        cols = [list(mf.x_names).index(nm) for nm in x_names]
        Xs, T, kept, _ = scaled_design(np.asarray(mf.X, dtype=float)[:, cols], list(x_names))
        self.Xs, self.T, self.kept = Xs, T, kept
        self.nt = self.st.n_theta
        gamma = linalg.solve(T, np.asarray(beta, dtype=float)[[list(x_names).index(nm) for nm in kept]])
        self.x0 = np.concatenate([np.asarray(theta, dtype=float), gamma])
        self.lower = np.concatenate([self.st.theta_lower(), np.full(len(kept), -np.inf)])
        self.bounds: Bounds = [(None if not np.isfinite(lo) else float(lo), None) for lo in self.lower]
        lap = self._laplace(mf.y)
        from glmmlab.engine.solvers.optimizer import fd_hessian

        with np.errstate(all="ignore"):
            lap.value_and_grad(self.x0)
            self.u0 = lap.u.copy()
            self.H0 = fd_hessian(lap.value_and_grad, self.x0, self.lower)

    def _laplace(self, y: np.ndarray):
        from glmmlab.engine.solvers.laplace import GeneralLaplace

        return GeneralLaplace(self.st, self.Xs, y, self.pw, self.off, self.fam, self.lk)

    def refit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(sd/cor in theta's order, beta by ``kept``, theta) of the new response ``y`` (the frame's row order),
        or None when the Newton steps cannot make progress."""
        from glmmlab.engine.solvers.profile_laplace import _newton

        if self.perm is not None:
            y = np.take(y, self.perm)
        lap = self._laplace(y)
        lap.u = self.u0.copy()
        with np.errstate(all="ignore"):
            out = _newton(lap.value_and_grad, self.x0, self.bounds, self.H0, max_iter=100, tol=REFIT_TOL)
        if out is None:
            return None
        _, x, _ = out
        theta, gamma = x[: self.nt], x[self.nt:]
        if not lap.modes_converged or not np.all(np.isfinite(x)):
            return None
        return self.layout.sdcor(theta), self.T @ gamma, theta
