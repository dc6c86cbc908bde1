"""The profile problem of every family but the Gaussian with the identity link (:class:`LaplaceProblem`): the
Laplace deviance over the standard deviations and correlations (and sigma, for a family with a dispersion:
:class:`DispersionLaplace`) and the fixed effects, with its exact gradient chained through the sd/cor -> theta
map; each point is minimised by Newton steps from the optimum's Hessian (:func:`_newton`), or by L-BFGS-B where
they cannot make progress."""

from __future__ import annotations

import numpy as np
from scipy import linalg, optimize

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import Family, negbin_family
from glmmlab.engine.families.links import Link
from glmmlab.engine.inference.intervals import VarianceLayout
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.solvers.newton import bfgs_update
from glmmlab.engine.solvers.profile_problem import Bounds, ProfileProblem, ordered_frame, theta_bounds
from glmmlab.engine.solvers.structure import Structure


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


class LaplaceProblem(ProfileProblem):
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
        mf, blocks = ordered_frame(mf)
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
        return theta_bounds(self.st) + ([(1e-300, None)] if self.dispersion else [])

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


def _newton(fg, x0: np.ndarray, bounds: Bounds, H0: np.ndarray, max_iter: int = 40, tol: float = 1e-8
            ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Minimise ``fg`` (value and gradient) within box ``bounds`` by Newton steps from the Hessian ``H0``, updated
    by BFGS, with step halving; stops when the Newton decrement (the deviance still to gain) is below ``tol``.
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
        if decrement < tol:
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
        H = bfgs_update(H, x_new - x, g_new - g, 1e-12)
        x, f, g = x_new, float(f_new), g_new
    return None

