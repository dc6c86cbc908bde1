"""Profile-likelihood confidence intervals, as lme4's ``profile.merMod`` + ``confint.thpr`` compute them.

For each parameter p the signed root deviance zeta(p) = sign(p - p_hat) sqrt(dev(p) - dev(p_hat)), where dev(p)
is the deviance minimised over every other parameter with p held fixed; the interval at ``level`` is where
zeta = -/+ qnorm((1 + level) / 2).

- The parameters are lme4's (``confint(..., oldNames = FALSE)``): per grouping factor the standard deviations and
  correlations of its random effects in theta's order (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``,
  ``sd_Days|Subject``), then ``sigma`` for Gaussian + identity, then the fixed effects.
- Gaussian + identity: lme4 profiles the *ML* deviance (``devfun2`` refits a REML fit by ML first), so we do too:
  the base point is the ML optimum. Each deviance costs one blocked factor of cross-products computed once
  (:class:`~glmmlab.engine.solvers.reml.ProfiledLmm`); a fixed effect is profiled as lme4 does, by moving its column
  into the offset, which is a linear map of those cross-products (no pass over the rows per point).
- Other families: the Laplace deviance over (theta, beta)
  (:class:`~glmmlab.engine.solvers.laplace.GeneralLaplace`) with its exact gradient (chained through the sd/cor ->
  theta map for the variance parameters). The negative
  binomial's theta is held at its estimate (as profiling a ``glmer.nb`` fit does). Families with a dispersion
  (Gamma, Gaussian with another link), fitted by the model's likelihood, also profile ``sigma`` (the CV for Gamma,
  the residual SD for Gaussian; :class:`DispersionLaplace`), as lme4 profiles a linear mixed model's; lme4 refuses
  them ("can't (yet) profile GLMMs with non-fixed scale parameters"), and so does a fit of lme4's criterion here.
- Where lme4 fills a grid of points and interpolates a spline, we find the two roots directly: secant steps on
  zeta in a coordinate where it is nearly linear (log for standard deviations, atanh for correlations), with
  bracketing, each point warm-started from the nearest one already computed. A standard deviation whose zeta
  never reaches the bound above 0 gets lower limit 0, a correlation whose zeta never reaches it at -/+1 gets -/+1
  (lme4's boundary rule).
"""

from __future__ import annotations

import copy
import math

import numpy as np
from scipy import linalg, optimize, special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family, negbin_family
from glmmlab.engine.families.links import Link
from glmmlab.engine.inference.intervals import VarianceLayout
from glmmlab.engine.model.terms import FactorBlock, ModelFrame, merge_terms
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.row_blocks import cut_blocks
from glmmlab.engine.solvers.structure import Structure

Bounds = list[tuple[float | None, float | None]]

ZETA_TOL = 1e-3  # |zeta - target| at a root: 0.03% of a 95% interval's width in zeta units (3.92)


def _jacobian(fn, v: np.ndarray, h: float = 1e-7) -> np.ndarray:
    """d fn / d v by central differences (fn: a data-free map such as sd/cor -> theta)."""
    f0 = fn(v)
    J = np.zeros((f0.size, v.size))
    for k in range(v.size):
        e = np.zeros_like(v)
        e[k] = h
        fp, fm = fn(v + e), fn(v - e)
        if fp is None or fm is None:  # at a bound: a one-sided difference
            fp = fn(v + e) if fp is not None else f0
            fm = fn(v - e) if fm is not None else f0
            J[:, k] = (fp - fm) / (h if (fp is f0) != (fm is f0) else 2 * h)
        else:
            J[:, k] = (fp - fm) / (2 * h)
    return J


# -- the deviances ---------------------------------------------------------------------------------------------
class _Problem:
    """dev(p) for one parameter held fixed, minimised over the others; subclasses per kind of model."""

    names: list[str]
    estimate: np.ndarray
    kinds: list[str]  # "sd", "cor", "sigma", "beta"
    se: np.ndarray  # an approximate standard error (fixed effects) to size the first step; NaN elsewhere
    base: float
    nvc: int  # the number of variance parameters (they come first)

    def deviance(self, k: int, value: float, start: np.ndarray | None) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def start(self, k: int) -> np.ndarray:
        raise NotImplementedError


def _ordered(mf: ModelFrame) -> tuple[ModelFrame, list[FactorBlock]]:
    """The frame with its rows sorted by the leading factor (the fit's order), and its factor blocks."""
    from glmmlab.engine.solvers.fit import _permuted

    blocks = merge_terms(mf.terms)
    perm, _ = cut_blocks(blocks, 1)
    if np.any(perm != np.arange(mf.n)):
        mf = _permuted(mf, perm)
        blocks = merge_terms(mf.terms)
    return mf, blocks


def _theta_bounds(st: Structure) -> Bounds:
    return [(None if not np.isfinite(lo) else float(lo), None) for lo in st.theta_lower()]


def _nlopt_min(fun, x0: np.ndarray, bounds: Bounds) -> tuple[float, np.ndarray]:
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
    opt.set_ftol_abs(1e-10)
    opt.set_xtol_rel(1e-9)
    opt.set_maxeval(2000 * (1 + x0.size))
    step = np.maximum(0.1 * np.abs(x0), 0.02)
    room = np.minimum(hi - x0, x0 - lo)
    step = np.where(room > 0, np.minimum(step, np.maximum(room, 1e-3)), step)
    opt.set_initial_step(step.tolist())
    try:
        opt.optimize(x0.tolist())
    except (nlopt.RoundoffLimited, RuntimeError, ValueError):
        pass
    return best["f"], best["x"]


class LmmProblem(_Problem):
    """Gaussian + identity: lme4's ML deviance over (sd, cor, sigma) and the fixed effects."""

    def __init__(self, mf: ModelFrame, result_theta: np.ndarray):
        from glmmlab.engine.solvers.reml import ProfiledLmm
        from glmmlab.engine.solvers.scaling import scaled_design

        mf, blocks = _ordered(mf)
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
                           _theta_bounds(self.st))
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
        if k < self.nvc:
            vc_bounds = self.layout.bounds() + [(1e-300, None)]
            del vc_bounds[k]

            def fun(x):
                return self.vc_deviance(np.insert(x, k, value))

            return _nlopt_min(fun, start, vc_bounds)
        prof = self._beta_profiler(k - self.nvc, value)
        return _nlopt_min(lambda t: prof.parts(t, reml=False)[0], start, _theta_bounds(self.st))

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


class _WithSigma:
    """A :class:`VarianceLayout` with the residual sigma as one more variance parameter (last): sd/cor and sigma
    map to theta and sigma, for a dispersion estimated by the Laplace likelihood."""

    def __init__(self, layout: VarianceLayout):
        self.layout = layout
        self.names = layout.names + ["sigma"]
        self.kinds = layout.kinds + ["sigma"]

    def theta(self, v: np.ndarray) -> np.ndarray | None:
        th = self.layout.theta(v[:-1])
        return None if th is None or not v[-1] > 0 else np.append(th, v[-1])

    def sdcor(self, theta: np.ndarray) -> np.ndarray:
        return np.append(self.layout.sdcor(theta[:-1]), theta[-1])

    def bounds(self) -> Bounds:
        return self.layout.bounds() + [(1e-300, None)]


class DispersionLaplace:
    """The Laplace deviance of a family with a dispersion as a function of (theta, sigma, beta) with theta the
    absolute Cholesky factors (standard deviations on the linear-predictor scale) and sigma held where given, not
    profiled out: what a profile of sigma and of the random-effect SDs needs. Evaluated through a
    :class:`~glmmlab.engine.solvers.laplace.GeneralLaplace` ``lap`` (the dispersion estimated), whose theta is
    relative to sigma: D = (dev + |u|^2) / phi + K(phi) + log det(H) at theta / sigma, phi = sigma^2."""

    def __init__(self, lap):
        self.lap = lap
        self.nt = lap.nt + 1
        self.Xs = lap.Xs
        self.const = lap.lik.disp  # K(phi)'s sums, as the fit's likelihood holds them

    @property
    def off(self) -> np.ndarray:
        return self.lap.off

    @off.setter
    def off(self, value: np.ndarray) -> None:
        self.lap.off = value

    @property
    def u(self) -> np.ndarray:
        return self.lap.u

    @u.setter
    def u(self, value: np.ndarray) -> None:
        self.lap.u = value

    def _eval(self, params: np.ndarray, gradient: bool):
        nt = self.nt - 1
        theta, sigma, beta = params[:nt], float(params[nt]), params[nt + 1:]
        if not sigma > 0:
            return np.inf, None
        phi = sigma * sigma
        try:
            p = self.lap.parts(theta / sigma, beta, gradient)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf, None
        fam = self.lap.fam
        P = p["dev"] + p["uu"]
        D = fam.dispersion_minus2(P, phi, self.const) + p["logdet"]
        if not np.isfinite(D):
            return np.inf, None
        if not gradient:
            return float(D), None
        # the gradient over (theta / sigma, beta) at this phi, then the chain rule to (theta, sigma, beta)
        G = p["g_c"] + p["g_0"] + (1.0 / phi - 1.0) * p["direct"]
        g_sigma = 2.0 * sigma * (-P / (phi * phi) + fam.dispersion_slope(phi, self.const)) \
            - float(G[:nt] @ (theta / sigma)) / sigma
        return float(D), np.concatenate([G[:nt] / sigma, [g_sigma], G[nt:]])

    def value(self, params: np.ndarray) -> float:
        return self._eval(params, False)[0]

    def value_and_grad(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self._eval(params, True)
        return f, (g if g is not None else np.zeros_like(params))

    def final(self, theta: np.ndarray, beta: np.ndarray) -> dict:
        sigma = float(theta[-1])
        fin = dict(self.lap.final(theta[:-1] / sigma, beta))
        fin["SEE"] = fin["SEE"] / (sigma * sigma)  # the fixed effects' precision (phi times the working one)
        return fin


class LaplaceProblem(_Problem):
    """Every other family: the Laplace deviance over (sd, cor) and the fixed effects; with a dispersion (Gamma,
    Gaussian with another link) also over sigma, as lme4 profiles a linear mixed model's."""

    def __init__(self, mf: ModelFrame, fam: Family, lk: Link, result_theta: np.ndarray, beta: dict[str, float],
                 family_parameter: float | None):
        from glmmlab.engine.solvers.laplace_fit import exact_gradient_ok
        from glmmlab.engine.solvers.scaling import scaled_design

        if fam.parameter is not None:
            if family_parameter is None:
                raise GlmmInputError("profile intervals need the negative binomial's theta of the fit")
            fam = negbin_family(float(family_parameter))
        mf, blocks = _ordered(mf)
        self.st = Structure(blocks)
        self.dispersion = fam.has_dispersion  # sigma is one more variance parameter (result_theta ends with it)
        self.layout = _WithSigma(VarianceLayout.of(blocks)) if self.dispersion else VarianceLayout.of(blocks)
        n = mf.n
        self.pw = np.ones(n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
        self.off = np.zeros(n) if mf.offset is None else np.asarray(mf.offset, dtype=float)
        self.y, self.fam, self.lk = mf.y, fam, lk
        X = np.asarray(mf.X, dtype=float)
        Xs, T, names, _ = scaled_design(X, list(mf.x_names))
        keep = [list(mf.x_names).index(nm) for nm in names]
        self.X, self.x_names = X[:, keep], names
        self.exact = exact_gradient_ok(self.st)
        self.lap = self._laplace(Xs, self.off)
        self.T = T
        nt = self.lap.nt
        self.nt = nt
        gamma0 = linalg.solve(T, np.array([beta.get(nm, 0.0) for nm in names])) if len(names) else np.zeros(0)
        # the optimum of this objective (the fit's, polished)
        x0 = np.concatenate([np.asarray(result_theta, dtype=float), gamma0])
        f, x = self._minimize(self._fg(self.lap), x0, self._theta_bounds() + [(None, None)] * len(names))
        self.base = f
        self.theta_hat, self.gamma_hat = x[:nt], x[nt:]
        self.nvc = nt
        self.vc_hat = self.layout.sdcor(self.theta_hat)
        beta_hat = T @ self.gamma_hat
        self.names = self.layout.names + names
        self.kinds = self.layout.kinds + ["beta"] * len(names)
        self.estimate = np.concatenate([self.vc_hat, beta_hat])
        fin = self.lap.final(self.theta_hat, self.gamma_hat)
        vcov = T @ np.linalg.inv(fin["SEE"]) @ T.T if len(names) else np.zeros((0, 0))
        self.se = np.concatenate([np.full(nt, np.nan), np.sqrt(np.maximum(np.diag(vcov), 0.0))])
        self._beta_laps: dict[int, tuple] = {}
        # the Hessian at the optimum over (theta, gamma), once: mapped into each profile's own coordinates it
        # starts a Newton iteration per profile point (a few gradients each, where L-BFGS-B needs ten or more)
        from glmmlab.engine.solvers.optimizer import fd_hessian

        lower = np.array([-np.inf if b[0] is None else b[0] for b in self._theta_bounds()]
                         + [-np.inf] * len(names))
        self.hessian = fd_hessian(self._fg(self.lap), x, lower) if self.exact else None
        self._h: dict[int, np.ndarray] = {}

    def _laplace(self, Xs: np.ndarray, off: np.ndarray):
        """The Laplace objective over (theta, [sigma,] beta) for the fixed-effects design ``Xs``."""
        from glmmlab.engine.solvers.laplace import GeneralLaplace

        lap = GeneralLaplace(self.st, Xs, self.y, self.pw, off, self.fam, self.lk)
        return DispersionLaplace(lap) if self.dispersion else lap

    def _theta_bounds(self) -> Bounds:
        """Bounds of the variance part of the objective's parameters (theta, and sigma > 0 with a dispersion)."""
        return _theta_bounds(self.st) + ([(1e-300, None)] if self.dispersion else [])

    def _start_hessian(self, k: int) -> np.ndarray | None:
        """The Hessian at the optimum in the coordinates of parameter k's profile (cached, then carried along
        the profile as its Newton iterations update it)."""
        if self.hessian is None:
            return None
        if k not in self._h:
            nt, nvc = self.nt, self.nvc
            p = self.hessian.shape[0] - nt
            if k < nvc:
                J = np.delete(_jacobian(self.layout.theta, self.vc_hat), k, axis=1)
                M = linalg.block_diag(J, np.eye(p))
            else:
                j = k - nvc
                _, T_j = self._beta_lap(j)
                P = np.delete(np.eye(p), j, axis=1)  # beta_-j into the full beta
                M = linalg.block_diag(np.eye(nt), linalg.solve(self.T, P @ T_j))
            self._h[k] = M.T @ self.hessian @ M
        return self._h[k]

    def _solve(self, k: int, fg, start: np.ndarray, bounds: Bounds) -> tuple[float, np.ndarray]:
        H0 = self._start_hessian(k)
        if H0 is not None:
            out = _newton(fg, start, bounds, H0)
            if out is not None:
                f, x, self._h[k] = out
                return f, x
        return self._minimize(fg, start, bounds)

    def _fg(self, lap):
        if self.exact:
            return lap.value_and_grad
        from glmmlab.engine.solvers.optimizer import numeric_gradient

        return numeric_gradient(lap.value, np.full(lap.nt + lap.Xs.shape[1], -np.inf))

    @staticmethod
    def _minimize(fg, x0, bounds) -> tuple[float, np.ndarray]:
        res = optimize.minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-4, "maxcor": 20})
        return float(res.fun), np.asarray(res.x, dtype=float)

    def start(self, k: int) -> np.ndarray:
        if k < self.nvc:
            return np.concatenate([np.delete(self.vc_hat, k), self.gamma_hat])
        j = k - self.nvc
        _, T_j = self._beta_lap(j)
        others = np.delete(self.estimate[self.nvc:], j)
        return np.concatenate([self.theta_hat, linalg.solve(T_j, others) if others.size else others])

    def deviance(self, k: int, value: float, start: np.ndarray | None) -> tuple[float, np.ndarray]:
        if start is None:
            start = self.start(k)
        nvc = self.nvc
        if k < nvc:
            fg = self._fg(self.lap)
            layout = self.layout

            def fun(x):
                v = np.insert(x[: nvc - 1], k, value)
                theta = layout.theta(v)
                if theta is None:
                    return np.inf, np.zeros_like(x)
                f, g = fg(np.concatenate([theta, x[nvc - 1:]]))
                if not np.isfinite(f):
                    return np.inf, np.zeros_like(x)
                J = np.delete(_jacobian(layout.theta, v), k, axis=1)
                return f, np.concatenate([J.T @ g[: self.nt], g[self.nt:]])

            vc_bounds = layout.bounds()
            del vc_bounds[k]
            return self._solve(k, fun, start, vc_bounds + [(None, None)] * (start.size - (nvc - 1)))
        j = k - nvc
        lap, _ = self._beta_lap(j)
        lap.off = self.off + value * self.X[:, j]
        return self._solve(k, self._fg(lap), start, self._theta_bounds() + [(None, None)] * (start.size - self.nt))

    def _beta_lap(self, j: int):
        from glmmlab.engine.solvers.scaling import scaled_design

        if j not in self._beta_laps:
            others = [i for i in range(self.X.shape[1]) if i != j]
            Xs, T, _, _ = scaled_design(self.X[:, others], [self.x_names[i] for i in others])
            lap = self._laplace(Xs, self.off.copy())
            lap.u = self.lap.u.copy()
            self._beta_laps[j] = (lap, T)
        return self._beta_laps[j]


def _newton(fg, x0: np.ndarray, bounds: Bounds, H0: np.ndarray, max_iter: int = 40
            ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Minimise ``fg`` (value and gradient) within box ``bounds`` by Newton steps from the Hessian ``H0``, updated
    by BFGS, with step halving; stops when the Newton decrement (the deviance still to gain) is below 1e-8.
    (f, x, H) or None when it cannot make progress (the caller falls back to L-BFGS-B)."""
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds])
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds])
    x = np.clip(np.asarray(x0, dtype=float), lo, hi)
    f, g = fg(x)
    if not np.isfinite(f):
        return None
    H = np.array(H0, dtype=float)
    for _ in range(max_iter):
        free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
        if not free.any():
            return f, x, H
        try:
            step_f = -np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            return None
        decrement = -0.5 * float(g[free] @ step_f)
        if decrement < 0:
            return None
        if decrement < 1e-8:
            return f, x, H
        step = np.zeros_like(x)
        step[free] = step_f
        t = 1.0
        for _h in range(30):
            x_new = np.clip(x + t * step, lo, hi)
            f_new, g_new = fg(x_new)
            if np.isfinite(f_new) and f_new <= f - 1e-4 * t * decrement:
                break
            t *= 0.5
        else:
            return None
        s, y = x_new - x, g_new - g
        sy = float(s @ y)
        if sy > 1e-12:
            Hs = H @ s
            H = H - np.outer(Hs, Hs) / float(s @ Hs) + np.outer(y, y) / sy
        x, f, g = x_new, float(f_new), g_new
    return None


# -- the roots of zeta -----------------------------------------------------------------------------------------
def _to_coord(kind: str, est: float, v: float) -> float:
    if kind in ("sd", "sigma") and est > 0:
        return math.log(v) if v > 0 else -np.inf
    if kind == "cor":
        return math.atanh(max(-1.0, min(1.0, v)) * (1 - 1e-15))
    return v


def _from_coord(kind: str, est: float, c: float) -> float:
    if kind in ("sd", "sigma") and est > 0:
        return math.exp(c)
    if kind == "cor":
        return math.tanh(c)
    return c


def _bound(problem: _Problem, k: int, side: int, target: float) -> float:
    """The interval's end on ``side`` (-1 lower, +1 upper) for parameter k: where zeta = side * target."""
    kind, est = problem.kinds[k], float(problem.estimate[k])
    cache: list[tuple[float, float, np.ndarray]] = []  # (value, zeta, others)

    def zeta(v: float) -> float:
        start = None
        if cache:
            start = min(cache, key=lambda c: abs(c[0] - v))[2]
        f, x = problem.deviance(k, v, start)
        d = max(f - problem.base, 0.0) if np.isfinite(f) else np.inf
        z = math.copysign(math.sqrt(d), v - est) if np.isfinite(d) else side * np.inf
        cache.append((v, z, x))
        return z

    goal = side * target
    if kind == "sd" and est <= 0 and side < 0:
        return 0.0
    c0 = _to_coord(kind, est, est)
    # first step: from a standard error where there is one, else a fixed step in the working coordinate
    se = float(problem.se[k])
    if kind == "beta" and np.isfinite(se) and se > 0:
        step = target * se
    elif kind == "sd" and est <= 0:
        step = max(0.1 * float(np.nanmax(np.abs(problem.estimate[: problem.nvc]))), 0.05)
    else:
        step = 0.25 if kind in ("sd", "sigma", "cor") else max(abs(est), 1.0) * 0.1
    pts = [(c0, 0.0)]
    c = c0 + side * step
    lo_edge = {"sd": 0.0, "sigma": 0.0, "cor": -1.0}.get(kind)
    hi_edge = 1.0 if kind == "cor" else None
    for _ in range(60):
        v = _from_coord(kind, est, c)
        # near a parameter's edge: evaluate at the edge itself; if zeta has not reached the goal there, the edge
        # is the bound (lme4 returns its lower/upper limit)
        if side < 0 and lo_edge is not None and (v <= lo_edge + 1e-3 * max(abs(est), 1e-3) or not np.isfinite(c)):
            z_edge = zeta(lo_edge if kind != "cor" else -1.0)
            if not z_edge < goal:
                return lo_edge
            return _bracketed(zeta, kind, est, lo_edge, _from_coord(kind, est, pts[-1][0]), goal, linear=True)
        if side > 0 and hi_edge is not None and v >= hi_edge - 1e-6:
            z_edge = zeta(hi_edge)
            if not z_edge > goal:
                return hi_edge
            return _bracketed(zeta, kind, est, _from_coord(kind, est, pts[-1][0]), hi_edge, goal, linear=True)
        z = zeta(v)
        pts.append((c, z))
        if abs(z - goal) < ZETA_TOL:
            return v
        if (z - goal) * side > 0:  # past the goal: bracketed between the last two points
            a, b = sorted((pts[-2][0], pts[-1][0]))
            return _bracketed(zeta, kind, est, _from_coord(kind, est, a), _from_coord(kind, est, b), goal)
        (c1, z1), (c2, z2) = pts[-2], pts[-1]
        if z2 == z1 or not np.isfinite(z2):
            c = c2 + side * abs(c2 - c1) * 2.0
            continue
        c_new = c2 + (goal - z2) * (c2 - c1) / (z2 - z1)
        grow = abs(c2 - c1) * 4.0
        if (c_new - c2) * side <= 0:
            c_new = c2 + side * abs(c2 - c1)
        c = c2 + side * min(abs(c_new - c2), grow)
        # aim slightly beyond the secant's root so the next point brackets it
        c += side * 0.02 * abs(c - c2)
    return np.nan


def _bracketed(zeta, kind: str, est: float, a: float, b: float, goal: float, linear: bool = False) -> float:
    """The root of zeta(v) = goal between parameter values a < b (values, not coordinates)."""
    use_linear = linear or not (kind in ("sd", "sigma", "cor") and min(a, b) > (-1.0 if kind == "cor" else 0.0)
                                and max(a, b) < (1.0 if kind == "cor" else np.inf))
    to = (lambda v: v) if use_linear else (lambda v: _to_coord(kind, est, v))
    back = (lambda c: c) if use_linear else (lambda c: _from_coord(kind, est, c))
    fa, fb = zeta(a) - goal, zeta(b) - goal
    if fa == 0:
        return a
    if fb == 0:
        return b
    if fa * fb > 0:
        return np.nan
    ca, cb = to(a), to(b)
    try:
        c = optimize.brentq(lambda c: zeta(back(c)) - goal, ca, cb, xtol=1e-10 + 1e-7 * abs(cb - ca),
                            maxiter=50)
    except (ValueError, RuntimeError):
        return np.nan
    return back(c)


def make_problem(mf: ModelFrame, fam: Family, lk: Link, variances: list[dict], correlations: list[dict],
                 beta: dict[str, float], family_parameter: float | None = None) -> _Problem:
    """The profile problem of a fitted model, started from the fit's estimates (its random-effects table and
    correlations, and the fixed effects by name)."""
    layout = VarianceLayout.of(merge_terms(mf.terms))
    sd_cor = layout.values(variances, correlations)
    residual = [r for r in variances if r["component"] == "Residual"]
    with np.errstate(all="ignore"):
        if fam.name == "gaussian" and lk.name == "identity":
            sigma = math.sqrt(residual[0]["variance"]) if residual else 1.0
            theta = layout.theta(sd_cor, sigma)
            return LmmProblem(mf, theta if theta is not None else np.ones(len(sd_cor)))
        theta = layout.theta(sd_cor)
        theta = theta if theta is not None else np.ones(len(sd_cor))
        if fam.has_dispersion:  # sigma, profiled like the SDs (the fit's dispersion estimated with the others)
            theta = np.append(theta, math.sqrt(residual[0]["variance"]))
        return LaplaceProblem(mf, fam, lk, theta, beta, family_parameter)


def profile_intervals(problem: _Problem, level: float, progress: ProgressFn = None
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, lower, upper) of every parameter at ``level``."""
    k_all = len(problem.names)
    lower, upper = np.full(k_all, np.nan), np.full(k_all, np.nan)
    for k in range(k_all):
        report(progress, f"Profiling {problem.names[k]} ({k + 1} of {k_all})", k / k_all)
        lower[k], upper[k] = profile_parameter(problem, k, level)
    report(progress, "Profile intervals done", 1.0)
    return list(problem.names), lower, upper


def profile_parameter(problem: _Problem, k: int, level: float) -> tuple[float, float]:
    """(lower, upper) of parameter k at ``level`` (the services layer runs parameters in parallel)."""
    target = float(special.ndtri(0.5 + level / 2.0))
    with np.errstate(all="ignore"):
        return _bound(problem, k, -1, target), _bound(problem, k, +1, target)
