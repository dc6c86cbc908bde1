"""Minimising a smooth deviance over (theta, beta) with theta >= 0.

Quasi-Newton (L-BFGS-B) with the caller's gradient does the bulk of the work; a few Newton steps with a
finite-difference Hessian of that gradient then polish the optimum (and give the Hessian that the
Hessian-based standard errors use). Every iteration is logged so a fit keeps a record of its optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import optimize

from glmmlab.engine.solvers.newton import backtrack, newton_run, projected_gradient
from glmmlab.engine.solvers.secant import Recent, secant_hessian

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]

# The gradient (times sqrt(|f|)) at which an optimum counts as determined to rounding level: the parameters
# are then fixed to about 1e-10 relative, so the fit does not depend on the order of the sums.
ROUNDING_GTOL = 1e-10
# L-BFGS-B's relative decrease of f below which it stops: at rounding level by default; when the caller's
# approximate Hessian is good enough to finish by Newton steps (``handover``), where the decrease falls below
# 1e-9 relative (the last quasi-Newton iterations creep through the final digits: on the 1M-row slope case
# 15 of 36 evaluations; the estimates are the same to 1e-10 either way, the polish ends at rounding level).
LBFGS_FTOL, HANDOVER_FTOL = 1e-15, 1e-9
NEWTON_NAME = "Newton steps from an approximate Hessian (BFGS updates)"  # the record's name of minimize(newton=)
HESSIAN_REUSE = 1e-5  # a polish Hessian serves as the optimum's if the point moved less than this (relative)
# the same for a forward-difference Hessian, whose own error is O(h) = 1e-4 relative: a point moved by less than
# that changes it by no more (sim_t's polish moved it 4e-5: its SEs 2e-5 relative apart, 5 evaluations fewer)
HESSIAN_REUSE_FORWARD = 1e-4
# A chord step with a finite-difference Hessian below this (relative) ends the polish (see gradient_polish): that
# step is the point's distance from the optimum to some 1e-4, so the parameters are fixed to 1e-8 relative (1e-6 of
# a standard error, -2 log L to 1e-12); below it the gradient is at its noise floor, where steps were tried three
# times and refused (sim_beta 21 -> 17 evaluations per fit, sim_betabinomial 17 -> 13, cbpp_betabinomial 31 -> 27)
FD_STEP_TOL = 1e-8
# The scaled gradient (see scaled_gradient) below which an optimum counts as reached when the absolute gradient
# test cannot tell (at the default tolerance 1e-6; it scales with the tolerance): lme4's check.conv.grad uses 2e-3.
SCALED_GTOL = 1e-3
# The predicted Newton step (relative, with the caller's approximate Hessian) below which minimize's Newton run
# hands over to chord steps with a forward-difference Hessian (minimize's ``forward_hessian``): the point then
# moves less than HESSIAN_REUSE_FORWARD, and that Hessian is the optimum's too
HANDOVER_STEP = 5e-5


@dataclass
class OptimizationRecord:
    """What happened during an optimisation: start, end, objective, counts and a per-iteration log."""

    x0: list[float]
    x: list[float]
    objective: float
    iterations: int
    evaluations: int
    converged: bool
    message: str
    log: list[dict] = field(default_factory=list)
    hessian: np.ndarray | None = None
    optimizer: str = "L-BFGS-B, then Newton steps"  # see minimize; "BOBYQA (NLopt)" for REML
    settings: dict = field(default_factory=dict)  # max_iter, tol, ...
    lower: list[float | None] | None = None  # the bounds (None: -inf, free)
    stage: str = ""  # "Laplace", "AGQ (7 nodes)", "REML", "ML"

    def to_dict(self) -> dict:
        return {
            "stage": self.stage, "optimizer": self.optimizer, "settings": dict(self.settings),
            "lower": self.lower, "start": self.x0, "final": self.x, "objective": self.objective,
            "iterations": self.iterations, "evaluations": self.evaluations,
            "converged": self.converged, "message": self.message, "log": self.log,
        }


def bounds_list(lower: np.ndarray) -> list[float | None]:
    """The lower bounds as the record keeps them (None where a parameter is free)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(lower, dtype=float)]


def stages_document(records: list[OptimizationRecord]) -> dict:
    """The JSON ``optimization`` of a fit: the last stage's summary (the estimates come from it) and ``stages``,
    one summary per stage in the order they ran (Laplace, then AGQ), each with its own log."""
    out = records[-1].to_dict()
    out["stages"] = [r.to_dict() for r in records]
    return out


def log_step(log: list[dict], f: float, x: np.ndarray, step: str) -> None:
    """One entry of an optimisation's log, the same shape for every optimiser and step: its number, the
    objective, the whole parameter vector ``x`` (``theta`` repeats its first entry, as the log has always
    shown), and the kind of ``step`` ("quasi-newton", "newton", "bfgs", "polish", "bobyqa")."""
    x = np.asarray(x, dtype=float)
    log.append({"iteration": len(log) + 1, "objective": float(f), "theta": float(x[0]) if x.size else 0.0,
                "x": [float(v) for v in x], "step": step})


def off_bound(x: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The parameters a standard errors' Hessian is taken over: not a theta entry at its bound 0, nor a family
    parameter held at its limit (marked by a bound of +inf; families/parameter_limits.py)."""
    return ~(((lower == 0.0) & (x <= 0.0)) | (lower == np.inf))


def scaled_gradient(x: np.ndarray, g: np.ndarray, lower: np.ndarray, H: np.ndarray) -> float:
    """max |L^-1 g| over the free parameters (H = L L'): the Newton step in units of the parameters' standard
    errors (the deviance's Hessian is twice the information); inf when H is not positive definite there."""
    free = ~((x <= lower) & (g > 0))
    if not free.any():
        return 0.0
    try:
        L = np.linalg.cholesky(H[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return np.inf
    from scipy.linalg import solve_triangular

    return float(np.max(np.abs(solve_triangular(L, g[free], lower=True))))


def numeric_gradient(fun: Callable[[np.ndarray], float], lower: np.ndarray) -> FunGrad:
    """Wrap a value-only function into value and gradient by fourth-order central differences (a
    second-order one-sided formula where the bound is within reach). With h = 1e-3 the truncation error is
    O(h^4) and the rounding error about eps * |f| / h, so the gradient is good to about 1e-9 relative."""

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        f0 = fun(x)
        g = np.zeros_like(x)
        for k in range(x.size):
            h = 1e-3 * max(1.0, abs(x[k]))

            def at(step: float, k: int = k) -> float:
                xs = x.copy()
                xs[k] += step
                return fun(xs)

            if x[k] - 2 * h < lower[k]:
                g[k] = (-3.0 * f0 + 4.0 * at(h) - at(2 * h)) / (2 * h)
            else:
                g[k] = (8.0 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
        return f0, g

    return fg


def feasible_theta(value: Callable[[np.ndarray], float], theta0: np.ndarray) -> np.ndarray:
    """A start in theta where the deviance is finite. Under a link with an edge (identity or inverse) a large
    theta can drive some level's modes to the edge of the means' range, where the deviance (``value`` of
    theta) is infinite: theta is halved until it is finite (theta = 0 is the GLM's fit, which is feasible)."""
    theta = np.asarray(theta0, dtype=float).copy()
    for _ in range(60):
        if not np.any(theta) or np.isfinite(value(theta)):
            return theta
        theta = theta / 2.0 if np.max(np.abs(theta)) > 1e-8 else np.zeros_like(theta)
    return theta


def fd_hessian(fg: FunGrad, x: np.ndarray, lower: np.ndarray, forward: bool = False) -> np.ndarray:
    """Symmetrised finite-difference Hessian from gradients: central differences (2 k gradients), a forward step
    where a bound is near; ``forward``: forward steps throughout (k gradients and the one at ``x``, which is
    taken once; O(h) = 1e-4 relative error, for standard errors that need no more)."""
    k = x.size
    H = np.zeros((k, k))
    g0 = fg(x)[1] if forward else None
    for i in range(k):
        h = 1e-4 * max(1.0, abs(x[i]))
        xp = x.copy()
        xp[i] += h
        gp = fg(xp)[1]
        if not forward and x[i] - h >= lower[i]:
            xm = x.copy()
            xm[i] -= h
            H[:, i] = (gp - fg(xm)[1]) / (2 * h)
        else:
            if g0 is None:
                g0 = fg(x)[1]
            H[:, i] = (gp - g0) / h
    return 0.5 * (H + H.T)


def newton_step_below(H: np.ndarray, x: np.ndarray, g: np.ndarray, lower: np.ndarray, tol: float) -> bool:
    """Whether the Newton step -H^-1 g over the free parameters (not at a bound that the gradient pushes against)
    is below ``tol`` relative (of max(1, |x|)) in every entry; False where H cannot be solved there."""
    free = ~((x <= lower) & (g > 0))
    try:
        d = np.linalg.solve(H[np.ix_(free, free)], g[free])
    except np.linalg.LinAlgError:
        return False
    return bool(np.all(np.abs(d) <= tol * np.maximum(1.0, np.abs(x[free]))))


def minimize(
    fg: FunGrad,
    x0: np.ndarray,
    lower: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    on_iteration: Callable[[int, float], None] | None = None,
    polish: bool = True,
    hessian: bool = False,
    polish_gtol: float | None = None,
    approx_hessian: Callable[..., np.ndarray] | None = None,
    handover: bool = False,
    newton: bool = False,
    forward_hessian: bool = False,
) -> tuple[np.ndarray, OptimizationRecord]:
    """Minimise ``fg`` from ``x0`` subject to x >= lower (entries of -inf mean free).

    ``polish``: when the quasi-Newton run ends with a gradient above the tolerance, take Newton steps with a
    finite-difference Hessian; ``polish_gtol`` (times sqrt(|f|)) sets a tighter gradient for that polish, for
    objectives whose gradient is itself a finite difference (quasi-Newton stops early on them).
    ``hessian``: return that Hessian at the optimum in the record.
    ``approx_hessian``: a cheap approximation of the Hessian for the final rounding-level polish (a
    finite-difference Hessian of the gradient is used without it).
    ``handover``: ``approx_hessian`` is close to the true Hessian near the optimum, so the quasi-Newton run stops
    once f falls by less than HANDOVER_FTOL relative and Newton steps with it finish (fewer evaluations).
    ``newton``: start with quasi-Newton steps from ``approx_hessian`` at x0 (:func:`newton.newton_run`); L-BFGS-B
    runs only where they stop short of a small gradient. ``approx_hessian`` is called as ``approx_hessian(x,
    fg)`` with the cached value and gradient (so the point just evaluated is not evaluated again).
    ``forward_hessian``: the finite-difference Hessian of the polish and of the record by forward differences (half
    the gradients; its O(1e-4) relative error is far below what standard errors need); with ``handover`` the
    quasi-Newton run then stops as with an approximate Hessian and chord steps with that Hessian finish (it is
    taken anyway, for the standard errors).
    """
    log: list[dict] = []
    evaluations = 0
    cache: dict[bytes, tuple[float, np.ndarray]] = {}
    recent = Recent() if forward_hessian else None  # the points a forward-difference Hessian may reuse
    # the points kept: two, and with the Newton run's approximate Hessian beside forward differences (which may
    # take a difference per parameter: see chord below) as many as their parameters, so the point it was taken at
    # stays
    kept_points = max(2, x0.size + 1) if newton and approx_hessian is not None and forward_hessian else 2

    def counted(x: np.ndarray) -> tuple[float, np.ndarray]:
        # the last two points (an approximate Hessian's difference step does not push out the point it was
        # taken at)
        nonlocal evaluations
        key = x.tobytes()
        if key not in cache:
            evaluations += 1
            if len(cache) >= kept_points:
                del cache[next(iter(cache))]
            cache[key] = fg(x)
            if recent is not None:
                recent.add(x, *cache[key])
        return cache[key]

    def fd_hessian_at(x_: np.ndarray, forward: bool = forward_hessian) -> np.ndarray:
        # the point's own value and gradient kept past the differences' evaluations (the polish and the record
        # read them next: without this they were evaluated again); forward differences along what the last
        # points evaluated near it leave (secant.py)
        at_x = counted(x_)
        H_ = secant_hessian(counted, x_, lower, recent) if forward else None
        H_ = fd_hessian(counted, x_, lower, forward) if H_ is None else H_
        key = x_.tobytes()
        if key not in cache:
            if len(cache) >= kept_points:
                del cache[next(iter(cache))]
            cache[key] = at_x
        return H_

    def callback(xk: np.ndarray) -> None:
        f = counted(xk)[0]
        log_step(log, f, xk, "quasi-newton")
        if on_iteration is not None:
            on_iteration(len(log), f)

    def gtol_abs(f_: float) -> float:
        return max(tol, 1e-6) * max(1.0, abs(f_)) ** 0.5 * 10

    def polish_threshold(f_: float) -> float:
        return gtol_abs(f_) if polish_gtol is None else polish_gtol * max(1.0, abs(f_)) ** 0.5

    def small_gradient(x_: np.ndarray) -> bool:
        f_, g_ = counted(x_)
        return projected_gradient(x_, g_, lower) <= polish_threshold(f_)

    def near_rounding(x_: np.ndarray) -> bool:
        f_, g_ = counted(x_)
        return projected_gradient(x_, g_, lower) <= ROUNDING_GTOL * max(1.0, abs(f_)) ** 0.5

    start = np.asarray(x0, dtype=float)
    iterations = 0
    newton_done = handed = False
    message = "converged"
    # with a forward-difference Hessian (taken anyway, for the standard errors) the Newton run hands over to chord
    # steps with it once its predicted step is below HANDOVER_STEP: that Hessian is then also the optimum's
    chord = newton and approx_hessian is not None and forward_hessian and handover
    kept: dict[str, np.ndarray] = {}

    def approx_kept(x_: np.ndarray) -> np.ndarray:
        assert approx_hessian is not None
        kept["H"] = approx_hessian(x_, counted)
        return kept["H"]

    def near_step(x_: np.ndarray) -> bool:
        if near_rounding(x_):
            return True
        return "H" in kept and newton_step_below(kept["H"], x_, counted(x_)[1], lower, HANDOVER_STEP)

    if newton and approx_hessian is not None:
        # Newton steps from the start; a point they leave short of a small gradient is L-BFGS-B's start
        # (with the hand-over, the forward-difference Hessian near the optimum takes the place of newton_run's one
        # refresh of the approximate Hessian: salamanders_zip 13 -> 12 evaluations, zinb2 and owls_zinb1 the same)
        start, f, steps = newton_run(counted, start, lower, approx_kept, near_step if chord else near_rounding,
                                     max_steps=min(30, int(max_iter)), refresh=not chord)
        for f_s, x_s in steps:
            log_step(log, f_s, x_s, "newton")
            if on_iteration is not None:
                on_iteration(len(log), f_s)
        iterations = len(steps)
        handed = chord and bool(np.isfinite(f)) and near_step(start)
        newton_done = not handed and bool(np.isfinite(f)) and small_gradient(start) and (
            bool(steps) or near_rounding(start))
    if newton_done or handed:
        x = start.copy()
    else:
        bounds = [(None if not np.isfinite(lo) else lo, None) for lo in lower]
        early = handover and (approx_hessian is not None or forward_hessian)
        res = optimize.minimize(
            counted, start, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
            options={"maxiter": int(max_iter), "ftol": HANDOVER_FTOL if early else LBFGS_FTOL, "gtol": 1e-9,
                     "maxcor": 20},
        )
        x, f = res.x.copy(), float(res.fun)
        iterations += int(res.nit)
        message = str(res.message)
    H = None
    H_x: np.ndarray | None = None
    f_prev = f

    if polish and not newton_done and not (iterations >= max_iter) and not near_rounding(x):
        # L-BFGS-B stops once f no longer falls measurably, which can leave a gradient large enough that the
        # optimum moves with the rounding of the sums (e.g. with how the groups are cut into blocks). A few
        # Newton steps judged by the gradient, not by f, take it down to rounding level.
        by_differences = approx_hessian is None or chord
        H = fd_hessian_at(x) if by_differences or approx_hessian is None else approx_hessian(x, counted)
        H_x = x.copy() if by_differences else None  # where a finite-difference H was taken
        x, f, extra = gradient_polish(counted, x, f, lower, H, near_rounding, log,
                                       shrink=0.1 if forward_hessian and by_differences else 1.0)
        iterations += extra
    if not small_gradient(x) and not (iterations >= max_iter):
        # L-BFGS-B's line search cannot step back from an infinite objective (a trial point where a mean
        # leaves the family's range, e.g. identity links); continue with a quasi-Newton method whose line
        # search halves the step until the objective is finite and decreases enough.
        x, f, extra = _bfgs_backtracking(counted, x, f, lower, max_iter - iterations,
                                         lambda x_: small_gradient(x_), log)
        iterations += extra
    if polish and not small_gradient(x):
        for _ in range(4):
            H = fd_hessian_at(x, False)
            H_x = x.copy()
            g = counted(x)[1]
            free = ~((x <= lower) & (g > 0))
            if not free.any():
                break
            try:
                step = np.zeros_like(x)
                step[free] = -np.linalg.solve(H[np.ix_(free, free)], g[free])
            except np.linalg.LinAlgError:
                break
            improved = False
            for _h in range(20):
                cand = np.maximum(x + step, lower)
                fc = counted(cand)[0]
                if np.isfinite(fc) and fc <= f:
                    improved = True
                    break
                step = step / 2.0
            if not improved:
                break
            f_prev, x, f = f, cand, fc
            iterations += 1
            log_step(log, f, x, "newton")
            if f_prev - f < 1e-12 * (1.0 + abs(f)) or small_gradient(x):
                break
    if hessian and not (H is not None and H_x is not None
                        and float(np.max(np.abs(x - H_x) / np.maximum(1.0, np.abs(x))))
                        <= (HESSIAN_REUSE_FORWARD if forward_hessian else HESSIAN_REUSE)):
        # the polish's Hessian serves where its Newton steps moved the point by a rounding-level amount (the
        # standard errors change by that relative amount), else it is taken again at the optimum
        H = fd_hessian_at(x)
    g_final = counted(x)[1]
    gnorm = projected_gradient(x, g_final, lower)
    converged = iterations < max_iter and gnorm <= gtol_abs(f)
    if not converged and iterations < max_iter and np.isfinite(f):
        # The gradient's size depends on how the parameters are scaled, and at an optimum it stalls at the
        # rounding level of the sums, which can lie above the absolute test (a Gamma inverse link: linear
        # predictors of 0.015, curvatures of 1e7). The scaled gradient L^-1 g (H = L L', the Newton step in
        # units of the parameters' standard errors; lme4's test too) does not depend on the scaling.
        H_end = H if H is not None and H.shape == (x.size, x.size) else fd_hessian_at(x)
        converged = scaled_gradient(x, g_final, lower, H_end) <= SCALED_GTOL * max(tol, 1e-6) / 1e-6
    message = message if not converged else "converged"
    if not converged and iterations >= max_iter:
        message = f"reached the maximum of {max_iter} iterations"
    record = OptimizationRecord(
        x0=[float(v) for v in x0], x=[float(v) for v in x], objective=float(f), iterations=iterations,
        evaluations=evaluations, converged=bool(converged), message=message, log=log, hessian=H,
        settings={"max_iter": int(max_iter), "tol": float(tol)}, lower=bounds_list(lower),
    )
    if newton and approx_hessian is not None:
        record.optimizer = NEWTON_NAME if newton_done else NEWTON_NAME + (
            ", then chord steps with a forward-difference Hessian" if handed else ", then L-BFGS-B and Newton steps")
    return x, record


def _bfgs_backtracking(fg: FunGrad, x: np.ndarray, f: float, lower: np.ndarray, max_iter: int,
                       done: Callable[[np.ndarray], bool], log: list[dict]) -> tuple[np.ndarray, float, int]:
    """Projected BFGS with Armijo backtracking, started from the inverse of a finite-difference Hessian."""
    try:
        Hinv = np.linalg.inv(fd_hessian(fg, x, lower))
        if not np.all(np.isfinite(Hinv)) or np.any(np.diag(Hinv) <= 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        Hinv = np.eye(x.size)
    g = fg(x)[1]
    it = stalled = 0
    while it < max_iter and not done(x) and stalled < 3:
        free = ~((x <= lower) & (g > 0))
        d = np.where(free, -(Hinv @ np.where(free, g, 0.0)), 0.0)
        if not g @ d < 0:
            Hinv = np.eye(x.size)
            d = np.where(free, -g, 0.0)
        step = backtrack(fg, x, f, g, d, lower, 60)
        if step is None:
            break
        xn, fn, gn = step
        s_, y_ = xn - x, gn - g
        sy = float(s_ @ y_)
        if sy > 1e-12 * float(np.linalg.norm(s_) * np.linalg.norm(y_)):
            rho = 1.0 / sy
            V = np.eye(x.size) - rho * np.outer(s_, y_)
            Hinv = V @ Hinv @ V.T + rho * np.outer(s_, s_)
        # against a wall of infinite objective (an identity link's means at zero) the steps can shrink to
        # nothing without converging: stop after three steps that no longer lower f
        stalled = stalled + 1 if f - float(fn) <= 1e-12 * (1.0 + abs(f)) else 0
        x, f, g = xn, float(fn), gn
        it += 1
        log_step(log, f, x, "bfgs")
    return x, f, it


def gradient_polish(fg: FunGrad, x: np.ndarray, f: float, lower: np.ndarray, H: np.ndarray,
                     done: Callable[[np.ndarray], bool], log: list[dict], max_steps: int = 6, shrink: float = 1.0
                     ) -> tuple[np.ndarray, float, int]:
    """Newton steps near an optimum with a fixed approximate Hessian ``H`` (a chord method: each step costs
    one evaluation), accepted when the projected gradient shrinks (below ``shrink`` times its last value) and f
    does not rise beyond its rounding error; f itself no longer tells the steps apart there. Stops when the step
    is below 1e-12 of the parameters or the gradient stops shrinking. ``shrink`` 0.1 with a finite-difference
    Hessian of the gradient (each step then divides the gradient by some thousands): steps that only move it
    about its noise floor (differences in the family's parameters: some 1e-8) are not taken; and, that Hessian
    being the true one to about 1e-4, a Newton step below FD_STEP_TOL of the parameters is the point's distance
    from the optimum, which is then fixed to that level (the step is not taken)."""
    if H is None or H.shape != (x.size, x.size) or not np.all(np.isfinite(H)):
        return x, f, 0
    g = fg(x)[1]
    steps = 0
    while steps < max_steps and not done(x):
        free = ~((x <= lower) & (g > 0))
        d = np.zeros_like(x)
        try:
            d[free] = -np.linalg.solve(H[np.ix_(free, free)], g[free])
        except np.linalg.LinAlgError:
            break
        step_tol = FD_STEP_TOL if shrink < 1.0 else 1e-12
        if not np.all(np.isfinite(d)) or np.all(np.abs(d) <= step_tol * np.maximum(1.0, np.abs(x))):
            break
        accepted = False
        t = 1.0
        for _ in range(3):
            xn = np.maximum(x + t * d, lower)
            fn, gn = fg(xn)
            if np.isfinite(fn) and fn <= f + 64 * np.finfo(float).eps * max(1.0, abs(f)) \
                    and projected_gradient(xn, gn, lower) < shrink * projected_gradient(x, g, lower):
                accepted = True
                break
            t *= 0.25
        if not accepted:
            break
        x, f, g = xn, float(fn), gn
        steps += 1
        log_step(log, f, x, "polish")
    return x, f, steps
