"""The profile problem of a linear mixed model (Gaussian + identity): lme4's ML deviance over the standard
deviations, correlations and sigma, and the fixed effects (:class:`LmmProblem`), each point minimised by BOBYQA
over one set of cross-products; with one grouping factor and two or more theta entries, by Newton steps whose
stencils are stacked evaluations (:class:`_BatchedPoints`), BOBYQA taking the points they do not converge at."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from scipy import linalg

from glmmlab.engine.inference.intervals import VarianceLayout
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.solvers.profile_problem import Bounds, ProfileProblem, ordered_frame, theta_bounds
from glmmlab.engine.solvers.refit import (
    BatchedLmm,
    batched_lmm_ok,
    canonical_theta,
    newton_batched,
    theta_of_sd_cor,
)
from glmmlab.engine.solvers.structure import Structure

# a profile point's fit: started from its neighbour (a first step of 2% of each value) and stopped at a deviance
# change of 1e-8 (the base optimum keeps 1e-10): the bounds move by 1.3e-7 of the width on sleepstudy, 27% less CPU
POINT_FTOL, POINT_XTOL, POINT_STEP = 1e-8, 1e-7, 0.02
# a one-factor model's point by Newton steps (_BatchedPoints): at most this many from its neighbour, else BOBYQA
POINT_NEWTON_ITER = 12
DIAG_ZERO = 1e-3  # a relative SD (theta's diagonal) below this at a Newton point: BOBYQA finds that point


def _nlopt_min(fun, x0: np.ndarray, bounds: Bounds, ftol: float = 1e-10, xtol: float = 1e-9,
               step_frac: float = 0.1) -> tuple[float, np.ndarray]:
    """Minimise a cheap value-only function by BOBYQA (lme4's optimiser for these profiles)."""
    import nlopt

    x0 = np.asarray(x0, dtype=float)
    if x0.size == 0:
        return float(fun(x0)), x0
    lo = np.array([-1e300 if b[0] is None else b[0] for b in bounds])
    hi = np.array([1e300 if b[1] is None else b[1] for b in bounds])
    x0 = np.clip(x0, lo, hi)
    best = {"f": np.inf, "x": x0.copy()}

    def objective(x, grad):
        f = fun(np.asarray(x))
        f = float(f) if np.isfinite(f) else 1e300
        if f < best["f"]:
            best["f"], best["x"] = f, np.array(x, dtype=float)
        return f

    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.size)
    opt.set_lower_bounds(lo.tolist())
    opt.set_upper_bounds(hi.tolist())
    opt.set_min_objective(objective)
    opt.set_ftol_abs(ftol)
    opt.set_xtol_rel(xtol)
    opt.set_maxeval(2000 * (1 + x0.size))
    step = np.maximum(step_frac * np.abs(x0), 0.2 * step_frac)
    room = np.minimum(hi - x0, x0 - lo)
    step = np.where(room > 0, np.minimum(step, np.maximum(room, 1e-3)), step)
    opt.set_initial_step(step.tolist())
    try:
        opt.optimize(x0.tolist())
    except (nlopt.RoundoffLimited, RuntimeError, ValueError):
        pass
    return best["f"], best["x"]


class _BatchedPoints:
    """A one-factor model's profile points by Newton steps (:func:`~glmmlab.engine.solvers.refit.newton_batched`:
    the central-difference stencil of every step in one stacked call of
    :class:`~glmmlab.engine.solvers.refit.BatchedLmm`), where BOBYQA's 20-odd evaluations cost one each. A point
    whose steps do not converge inside the parameters' bounds returns None, and BOBYQA finds it."""

    def __init__(self, mf: ModelFrame, x_names: list[str], sum_log_w: float):
        self.mf, self.x_names, self.sum_log_w = mf, x_names, sum_log_w
        self.lmm = BatchedLmm(mf, x_names, reml=False)
        self.lmm.set_responses(np.asarray(mf.y, dtype=float)[None, :])
        self.pos, self.q = self.lmm.pos, self.lmm.q
        self.diag = np.array([r == c for r, c in self.pos])
        self._by_beta: dict[int, Any] = {}

    def vc_point(self, k: int, value: float, start: np.ndarray, kinds: list[str]) -> tuple[float, np.ndarray] | None:
        """The ML deviance minimised over the SDs, correlations and sigma (``kinds``: theirs, sigma last) with
        entry k held at ``value``."""
        others = [i for i in range(len(kinds)) if i != k]
        sd = np.array([kinds[i] in ("sd", "sigma") for i in others])
        cor = np.array([kinds[i] == "cor" for i in others])
        n, lmm = self.lmm.n, self.lmm

        def fun(P: np.ndarray, idx: np.ndarray) -> np.ndarray:
            V = np.empty((P.shape[0], len(kinds)))  # the points with entry k put back
            V[:, others], V[:, k] = P, value
            inside = np.all(P[:, sd] > 0, axis=1) & np.all(np.abs(P[:, cor]) < 1, axis=1)
            s = V[:, -1]
            with np.errstate(all="ignore"):
                theta = theta_of_sd_cor(V[:, :-1], self.pos, self.q, s)
                logdet, pwrss = lmm.logdet_pwrss(theta, np.zeros(len(P), dtype=np.intp))
                dev = logdet + pwrss / (s * s) + n * np.log(2.0 * math.pi * s * s) - self.sum_log_w
            return np.where(inside & np.isfinite(dev), dev, np.inf)

        x, f, ok = newton_batched(fun, np.asarray(start, dtype=float)[None, :], POINT_NEWTON_ITER, fused=True)
        if not (ok[0] and np.isfinite(f[0])):
            return None
        return float(f[0]), x[0]

    def beta_point(self, j: int, b: float, x_j: np.ndarray, start: np.ndarray) -> tuple[float, np.ndarray] | None:
        """The ML deviance minimised over theta with fixed effect j held at ``b`` (its column ``x_j`` moved into the
        offset)."""
        if j not in self._by_beta:
            lmm = BatchedLmm(self.mf, [nm for i, nm in enumerate(self.x_names) if i != j], reml=False)
            lmm.set_line(np.asarray(self.mf.y, dtype=float) - lmm.off, np.asarray(x_j, dtype=float))
            self._by_beta[j] = lmm
        lmm = self._by_beta[j]
        lmm.at_line(b)

        def fun(P: np.ndarray, idx: np.ndarray) -> np.ndarray:
            dev = lmm.deviance(P, np.zeros(len(P), dtype=np.intp)) - self.sum_log_w
            return np.where(np.isfinite(dev), dev, np.inf)

        x, f, ok = newton_batched(fun, np.asarray(start, dtype=float)[None, :], POINT_NEWTON_ITER, fused=True)
        # the deviance is even in each column of Lambda: at a diagonal entry of 0 its slope is 0 whether or not 0
        # is the optimum there, which BOBYQA within lme4's bounds decides
        if not (ok[0] and np.isfinite(f[0])) or np.any(np.abs(x[0, self.diag]) < DIAG_ZERO):
            return None
        return float(f[0]), canonical_theta(x, self.pos, self.q)[0]


class LmmProblem(ProfileProblem):
    """Gaussian + identity: lme4's ML deviance over (sd, cor, sigma) and the fixed effects."""

    def __init__(self, mf: ModelFrame, result_theta: np.ndarray):
        from glmmlab.engine.solvers.reml import ProfiledLmm
        from glmmlab.engine.solvers.scaling import scaled_design

        mf, blocks = ordered_frame(mf)
        self.st = Structure(blocks)
        self.layout = VarianceLayout.of(blocks)
        n = mf.n
        self.n = n
        self.pw = np.ones(n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
        self.z = mf.y - (0.0 if mf.offset is None else np.asarray(mf.offset, dtype=float))
        X = np.asarray(mf.X, dtype=float)
        Xs, T, names, _ = scaled_design(X, list(mf.x_names))
        keep = [list(mf.x_names).index(nm) for nm in names]
        self.X = X[:, keep]
        self.x_names = names
        self.prof = ProfiledLmm(self.st, Xs, self.z, self.pw)
        self.sum_log_w = float(np.sum(np.log(self.pw)))
        # the ML optimum (lme4 refits a REML fit by ML before profiling)
        nt = self.st.n_theta
        f, th = _nlopt_min(lambda t: self.prof.parts(t, reml=False)[0], np.asarray(result_theta, float),
                           theta_bounds(self.st))
        self.theta_hat = th
        self.base = f
        _, F, pwrss = self.prof.parts(th, reml=False)
        p = Xs.shape[1]
        sigma = math.sqrt(pwrss / n)
        beta_s = linalg.solve(F.SEE[:p, :p], F.SEE[:p, p], assume_a="pos") if p else np.zeros(0)
        beta = T @ beta_s
        vcov = sigma * sigma * T @ linalg.inv(F.SEE[:p, :p]) @ T.T if p else np.zeros((0, 0))
        self.nvc = nt + 1
        self.vc_hat = np.append(self.layout.sdcor(th, sigma), sigma)
        self.names = self.layout.names + ["sigma"] + names
        self.kinds = self.layout.kinds + ["sigma"] + ["beta"] * p
        self.estimate = np.concatenate([self.vc_hat, beta])
        self.se = np.concatenate([np.full(self.nvc, np.nan), np.sqrt(np.maximum(np.diag(vcov), 0.0))])
        self._beta_cp: dict[int, tuple] = {}
        assert nt == len(self.layout.names)
        # Newton's stencils pay where BOBYQA's evaluations grow with the free parameters: two or more theta
        # entries (a scalar intercept's points take BOBYQA a handful of its cheapest evaluations)
        self.batched = _BatchedPoints(mf, list(names), self.sum_log_w) if nt >= 2 and batched_lmm_ok(mf) else None

    def vc_deviance(self, v: np.ndarray) -> float:
        s = float(v[-1])
        if not s > 0:
            return np.inf
        theta = self.layout.theta(v[:-1], s)
        if theta is None:
            return np.inf
        try:
            _, F, pwrss = self.prof.parts(theta, reml=False)
        except (np.linalg.LinAlgError, ValueError):
            return np.inf
        return float(F.logdet + pwrss / (s * s) + self.n * math.log(2.0 * math.pi * s * s) - self.sum_log_w)

    def start(self, k: int) -> np.ndarray:
        if k < self.nvc:
            return np.delete(self.vc_hat, k)
        return self.theta_hat.copy()

    def deviance(self, k: int, value: float, start: np.ndarray | None) -> tuple[float, np.ndarray]:
        if start is None:
            start = self.start(k)
        if self.batched is not None:
            point = self.batched.vc_point(k, value, start, self.kinds[:self.nvc]) if k < self.nvc else \
                self.batched.beta_point(k - self.nvc, value, self.X[:, k - self.nvc], start)
            if point is not None:
                return point
        if k < self.nvc:
            vc_bounds = self.layout.bounds() + [(1e-300, None)]
            del vc_bounds[k]

            full = np.full(self.nvc, float(value))
            others = np.delete(np.arange(self.nvc), k)

            def fun(x):  # the point (np.insert's checks cost a fifth of an evaluation)
                full[others] = x
                return self.vc_deviance(full)

            return _nlopt_min(fun, start, vc_bounds, POINT_FTOL, POINT_XTOL, POINT_STEP)
        prof = self._beta_profiler(k - self.nvc, value)
        return _nlopt_min(lambda t: prof.parts(t, reml=False)[0], start, theta_bounds(self.st), POINT_FTOL,
                          POINT_XTOL, POINT_STEP)

    def _beta_profiler(self, j: int, b: float):
        """The ML criterion with fixed effect j held at b: its column moved into the offset. The cross-products
        of [X_-j (rescaled), x_j, y] are computed once per j; [X_-j, y - b x_j] is a linear map of them."""
        from glmmlab.engine.solvers.scaling import scaled_design
        from glmmlab.engine.solvers.structure import CrossProducts

        if j not in self._beta_cp:
            others = [i for i in range(self.X.shape[1]) if i != j]
            Xs, _, _, _ = scaled_design(self.X[:, others], [self.x_names[i] for i in others])
            E = np.column_stack([Xs, self.X[:, j], self.z])
            cp = self.st.crossprods(self.pw, E)
            self._beta_cp[j] = (cp, Xs.shape[1])
        cp, p = self._beta_cp[j]
        A = np.zeros((p + 2, p + 1))
        A[:p, :p] = np.eye(p)
        A[p + 1, p] = 1.0
        A[p, p] = -b
        mapped = CrossProducts(cp.A11, cp.E1 @ A, A.T @ cp.EE @ A, cp.A21, cp.A22,
                               None if cp.E2 is None else cp.E2 @ A)
        prof = copy.copy(self.prof)
        prof.cp, prof.p = mapped, p
        return prof

