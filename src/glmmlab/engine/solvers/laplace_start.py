"""Where the Laplace fit starts in theta: the method of moments at the GLM's coefficients (one random intercept,
crossed random intercepts), lme4's start halved or doubled while the deviance falls, and the start again beside
an SD that ended at 0 (:func:`off_the_boundary`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from glmmlab.engine.solvers.crossed_modes import crossed_intercepts
from glmmlab.engine.solvers.glm_start import (
    attenuation,
    crossed_moment_sums,
    moment_sums,
    moment_theta,
    moment_theta_of,
    moment_thetas_of,
    start_modes,
)
from glmmlab.engine.solvers.search import _while_falling

if TYPE_CHECKING:
    from glmmlab.engine.solvers.row_blocks import RemoteRows


def moment_start(obj, st, Xs, mf, pw, off, fam, lk, x0: np.ndarray, scalar: bool, crossable: bool,
                 remote: "RemoteRows | None", trials: np.ndarray | None, first_modes: bool) -> tuple[bool, bool]:
    """The start of theta (``x0[:n_theta]``, in place) from the method of moments at the GLM's coefficients
    ``x0[n_theta:]``, where no start is given: one random intercept (``scalar``) from its levels' moments, crossed
    random intercepts (``crossable``: where the family has no zero or dispersion model) each from its own
    factor's; returns (moments, crossed), which of the two it made. A binomial's GLM is the conditional model
    attenuated (the random intercept averaged out): without an estimated dispersion, its coefficients and the
    moment SD, both on the GLM's scale, are taken over that attenuation. ``first_modes`` (no edge, no family
    parameters): the first mode search of a random intercept in blocks starts one penalised IRLS step from u = 0
    at the GLM's linear predictor and moment SD (the step's rows are the moment sums' own; u = b / sd on either
    scale): the 1M-row random intercept's first evaluation 6.5 -> 5.25 row states per block."""
    estimated, nt = obj.lik.estimated, st.n_theta
    beta0 = x0[nt:].copy()
    all_rows = Xs.shape[0] == mf.n or remote is not None
    moments = scalar and st._start is None and all_rows
    crossed = st._start is None and crossable and all_rows \
        and crossed_intercepts(st, None if remote is None else remote.crossed)
    sums = None  # each block's moment sums, per level
    if moments and remote is None and len(obj.laps) > 1:  # each block's sums over its whole levels, in threads
        sums = obj.map(lambda lap: moment_sums(lap.Xs, lap.y, lap.pw, lap.off, beta0, fam, lk, lap.st.codes1,
                                               lap.st.L1, lap.trials, per_level=True))
        x0[0] = moment_theta_of(sums, Xs.shape[1], fam, estimated)
    elif moments:
        x0[0] = moment_theta(Xs, mf.y, pw, off, beta0, fam, lk, st.codes1, st.L1, estimated, trials) \
            if remote is None else remote.moment_theta(beta0, fam, estimated)
    elif crossed:  # each crossed factor's intercept from its own levels' moments (one pass over the rows)
        x0[:nt] = moment_thetas_of([crossed_moment_sums(
            Xs, mf.y, pw, off, beta0, fam, lk, [(np.asarray(b.codes, dtype=np.intp), b.n_levels) for b in st.blocks],
            trials)], Xs.shape[1], fam, estimated) if remote is None else remote.moment_thetas(beta0, fam, estimated)
    if moments and not estimated:
        sd_glm = float(x0[0])
        x0[:] /= attenuation(fam, lk, sd_glm)
        if sums is not None and first_modes:
            for lap, s_ in zip(obj.laps, sums):
                lap.u = start_modes(s_, sd_glm)
    return moments, crossed


def off_the_boundary(fun, x: np.ndarray, x0: np.ndarray, lower: np.ndarray, f: float) -> np.ndarray | None:
    """For a fit that ended with standard deviations (theta's diagonal entries) at their bound 0 (below 1e-8) though
    it started above it: the first of those SDs set back to 1/2, 1/4, 1/10, 1/20, 1/40 or 1/100 of its start (the
    other parameters at the end point) whose deviance ``fun`` is lower than ``f``, or None (0 is then the lowest
    nearby)."""
    nt = lower.size
    stuck = np.flatnonzero((lower == 0.0) & (x[:nt] < 1e-8) & (x0[:nt] > 1e-8))
    margin = 1e-6 * max(1.0, abs(f))
    for k in stuck:
        for c in (0.5, 0.25, 0.1, 0.05, 0.025, 0.01):
            trial = x.copy()
            trial[k] = c * x0[k]
            if fun(trial) < f - margin:
                return trial
    return None


def relative_theta_start(fun, theta0: np.ndarray) -> np.ndarray:
    """A start for theta relative to the residual SD: lme4's start (relative SDs 1) halved or doubled while the
    deviance at the GLM's coefficients falls (at most 10 halvings, 3 doublings). With a dispersion estimated,
    theta is the random effects' SD over sigma, which can be far from 1 (an SD of 0.03 on the linear predictor
    against a residual SD of 0.5); from 1 the modes of a link with a pole (the inverse) can cross it, and the
    optimiser then settles on another stationary point."""
    return _while_falling(fun, theta0, fun(theta0), lambda x, c: x * c, ((0.5, 10), (2.0, 3)))[0]
