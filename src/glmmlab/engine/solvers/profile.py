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
  into the offset, which is a linear map of those cross-products (no pass over the rows per point). With one
  grouping factor and two or more theta entries a point is found by Newton steps on stacked evaluations
  (:mod:`~glmmlab.engine.solvers.profile_lmm`), BOBYQA where they do not converge.
- Other families: the Laplace deviance over (theta, beta)
  (:class:`~glmmlab.engine.solvers.laplace.GeneralLaplace`) with its exact gradient (chained through the sd/cor ->
  theta map for the variance parameters). The negative
  binomial's theta is held at its estimate (as profiling a ``glmer.nb`` fit does). Families with a dispersion
  (Gamma, Gaussian with another link), fitted by the model's likelihood, also profile ``sigma`` (the CV for Gamma,
  the residual SD for Gaussian; :class:`~glmmlab.engine.solvers.profile_laplace.DispersionLaplace`), as lme4
  profiles a linear mixed model's; lme4 refuses them ("can't (yet) profile GLMMs with non-fixed scale
  parameters"), and so does a fit of lme4's criterion here.
- Where lme4 fills a grid of points and interpolates a spline, we find the two roots directly: secant steps on
  zeta in a coordinate where it is nearly linear (log for standard deviations, atanh for correlations), with
  bracketing, each point warm-started from the nearest one already computed. A standard deviation whose zeta
  never reaches the bound above 0 gets lower limit 0, a correlation whose zeta never reaches it at -/+1 gets -/+1
  (lme4's boundary rule).

This module finds the roots and is the entry point (:func:`make_problem`, :func:`profile_intervals`,
:func:`profile_parameter`); the deviances are the problems of :mod:`~glmmlab.engine.solvers.profile_lmm` and
:mod:`~glmmlab.engine.solvers.profile_laplace`, on the common ground of :mod:`~glmmlab.engine.solvers.profile_problem`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link
from glmmlab.engine.inference.intervals import VarianceLayout
from glmmlab.engine.model.terms import ModelFrame, merge_terms
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.profile_laplace import LaplaceProblem
from glmmlab.engine.solvers.profile_lmm import LmmProblem
from glmmlab.engine.solvers.profile_problem import ProfileProblem

ZETA_TOL = 1e-3  # |zeta - target| at a root: 0.03% of a 95% interval's width in zeta units (3.92)


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


def _bound(problem: ProfileProblem, k: int, side: int, target: float) -> float:
    """The interval's end on ``side`` (-1 lower, +1 upper) for parameter k: where zeta = side * target."""
    kind, est = problem.kinds[k], float(problem.estimate[k])
    cache: list[tuple[float, float, np.ndarray]] = []  # (value, zeta, others)

    def zeta(v: float) -> float:
        for c in cache:  # a point computed already (the ends of a bracket, back from the working coordinate to
            if abs(c[0] - v) <= 1e-13 * abs(v):  # the last bits): its value, not a second fit
                return c[1]
        start = min(cache, key=lambda c: abs(c[0] - v))[2]
        f, x = problem.deviance(k, v, start)
        d = max(f - problem.base, 0.0) if np.isfinite(f) else np.inf
        z = math.copysign(math.sqrt(d), v - est) if np.isfinite(d) else side * np.inf
        cache.append((v, z, x))
        return z

    goal = side * target
    if kind == "sd" and est <= 0 and side < 0:
        return 0.0
    cache.append((est, 0.0, problem.start(k)))  # the estimate: zeta 0 at the fit's other parameters
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
                 beta: dict[str, float], family_parameter: float | None = None) -> ProfileProblem:
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


def profile_intervals(problem: ProfileProblem, level: float, progress: ProgressFn = None
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, lower, upper) of every parameter at ``level``."""
    k_all = len(problem.names)
    lower, upper = np.full(k_all, np.nan), np.full(k_all, np.nan)
    for k in range(k_all):
        report(progress, f"Profiling {problem.names[k]} ({k + 1} of {k_all})", k / k_all)
        lower[k], upper[k] = profile_parameter(problem, k, level)
    report(progress, "Profile intervals done", 1.0)
    return list(problem.names), lower, upper


def profile_parameter(problem: ProfileProblem, k: int, level: float) -> tuple[float, float]:
    """(lower, upper) of parameter k at ``level`` (the services layer runs parameters in parallel)."""
    target = float(special.ndtri(0.5 + level / 2.0))
    with np.errstate(all="ignore"):
        return _bound(problem, k, -1, target), _bound(problem, k, +1, target)
