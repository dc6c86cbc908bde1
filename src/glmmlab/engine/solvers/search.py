"""The optimiser's runs as the fits use them: BOBYQA or L-BFGS-B from a scaled start, a line search while the
criterion falls, each run kept as a stage of the optimisation summary."""

from __future__ import annotations

from typing import Any

import numpy as np

from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.optimizer import (
    minimize,
    numeric_gradient,
)


def _optimize(fun, x0, lower, model, progress, label, lo, hi, fun_grad=None, hessian=False, approx_hessian=None,
              handover=False, newton=False, forward_hessian=False):
    state = {"it": 0}

    def on_iter(k: int, f: float) -> None:
        state["it"] = k
        report(progress, f"{label} (iteration {k}, deviance {f:.4f})", lo + (hi - lo) * min(k / 30.0, 1.0))

    def counted(x):
        report(progress, f"{label} (iteration {state['it'] + 1})", lo + (hi - lo) * min(state["it"] / 30.0, 1.0))
        return fun(x)

    if fun_grad is not None:
        def counted_fg(x):
            report(progress, f"{label} (iteration {state['it'] + 1})",
                   lo + (hi - lo) * min(state["it"] / 30.0, 1.0))
            return fun_grad(x)

        return minimize(counted_fg, x0, lower, max_iter=model["max_iter"], tol=model["tol"], on_iteration=on_iter,
                        hessian=hessian, approx_hessian=approx_hessian, handover=handover, newton=newton,
                        forward_hessian=forward_hessian)
    return minimize(numeric_gradient(counted, lower), x0, lower, max_iter=model["max_iter"], tol=model["tol"],
                    on_iteration=on_iter, polish_gtol=1e-8, hessian=hessian)


def _while_falling(fun, x: np.ndarray, f: float, move, plan) -> tuple[np.ndarray, float, float]:
    """Move ``x`` by ``move(x, c)`` with c = each factor of ``plan`` ((factor, at most how many times), ...) in
    turn, while ``fun`` falls; stop at the first factor that moved it. Returns (x, f, the product of the factors
    applied)."""
    scale = 1.0
    for factor_, times in plan:
        moved = False
        for _ in range(times):
            xt = move(x, factor_)
            ft = fun(xt)
            if not ft < f:
                break
            x, f, scale, moved = xt, ft, scale * factor_, True
        if moved:
            break
    return x, f, scale


def _scaled_start(fun, x0: np.ndarray) -> tuple[np.ndarray, float]:
    """A start for BOBYQA nearer the optimum than x0, by halving or doubling while the value falls: first x0 as
    a whole (at most six times), then each of its non-zero entries alone (at most four times each). Returns the
    start and the scale of the first move (BOBYQA's first steps are scaled by it)."""
    x, f_best, scale = _while_falling(fun, x0, fun(x0), lambda x, c: x * c, ((0.5, 6), (2.0, 6)))
    for i in np.flatnonzero(x != 0.0):
        def entry(x, c, i=i):
            xt = x.copy()
            xt[i] *= c
            return xt

        x, f_best, _ = _while_falling(fun, x, f_best, entry, ((0.5, 4), (2.0, 4)))
    return x, scale


def bobyqa(fun, x0: np.ndarray, lower: np.ndarray, model: dict, progress: ProgressFn, label: str, lo: float,
           hi: float, scale_start: bool = False, initial_step: np.ndarray | None = None, outside: float = 1e300,
           upper: np.ndarray | None = None):
    """Minimise a value-only function by BOBYQA (NLopt), the derivative-free optimiser lme4 uses for lmer;
    a profiled REML criterion over a few thetas needs some tens of evaluations with it.

    ``scale_start``: start from :func:`_scaled_start`'s point. From lme4's start (every relative SD 1) to
    InstEval's optimum (0.33, 0.51, 0.08) BOBYQA spent some 60 of its 114 evaluations; with the scan (about 10
    evaluations) the whole fit takes 60. ``initial_step``: BOBYQA's first steps (a start known to be near the
    optimum; no scan then). ``outside``: the value BOBYQA sees where ``fun`` is not finite. ``upper``: bounds above
    (None: none)."""
    import nlopt

    from glmmlab.engine.solvers.optimizer import OptimizationRecord, bounds_list, log_step

    log: list[dict] = []
    best: dict[str, Any] = {"f": np.inf, "x": np.asarray(x0, dtype=float)}

    def objective(x, grad):
        k = len(log) + 1
        report(progress, f"{label} (evaluation {k})", lo + (hi - lo) * min(k / 100.0, 1.0))
        f = fun(np.asarray(x))
        f = float(f) if np.isfinite(f) else outside
        log_step(log, f, x, "bobyqa")
        if f < best["f"]:
            best["f"], best["x"] = f, np.array(x, dtype=float)
        return f

    scale, given = 1.0, np.asarray(x0, dtype=float)
    if scale_start and initial_step is None and np.any(x0 != 0.0):
        x0, scale = _scaled_start(lambda x: objective(x, None), np.asarray(x0, dtype=float))
    k = x0.size
    opt = nlopt.opt(nlopt.LN_BOBYQA, k)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -1e300).tolist())
    if upper is not None:
        opt.set_upper_bounds(np.asarray(upper, dtype=float).tolist())
    opt.set_min_objective(objective)
    opt.set_ftol_abs(1e-12)
    opt.set_ftol_rel(1e-14)
    opt.set_xtol_abs(1e-10)
    max_eval = int(model["max_iter"]) * 10 * (1 + k)
    opt.set_maxeval(max_eval)
    if initial_step is not None:
        opt.set_initial_step(np.asarray(initial_step, dtype=float).tolist())
    else:
        opt.set_initial_step((scale * np.where(np.isfinite(lower) & (x0 <= lower + 1e-12), 0.5, 0.75)).tolist())
    try:
        x = np.asarray(opt.optimize(np.asarray(x0, dtype=float).tolist()))
        code = opt.last_optimize_result()
    except (nlopt.RoundoffLimited, RuntimeError):
        x, code = best["x"], nlopt.ROUNDOFF_LIMITED
    if best["f"] < fun(x):
        x = best["x"]
    converged = code > 0 and code != nlopt.MAXEVAL_REACHED
    message = "converged" if converged else (
        f"reached the maximum of {max_eval} evaluations" if code == nlopt.MAXEVAL_REACHED else f"NLopt code {code}")
    record = OptimizationRecord(x0=[float(v) for v in given], x=[float(v) for v in x], objective=float(best["f"]),
                                iterations=len(log), evaluations=len(log), converged=bool(converged),
                                message=message, log=log, optimizer="BOBYQA (NLopt)",
                                settings={"max_iter": int(model["max_iter"]), "max_evaluations": max_eval,
                                          "ftol_rel": 1e-14, "xtol_abs": 1e-10}, lower=bounds_list(lower))
    return x, record
