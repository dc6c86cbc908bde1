"""The joint Laplace fit's optimisation (:func:`~glmmlab.engine.solvers.joint_laplace.fit_joint`'s run): Newton
steps from :mod:`~glmmlab.engine.solvers.joint_hessian`'s approximate Hessian where it applies, the point's value
and gradient remembered for the polish, and the polish to a rounding-level gradient with the standard errors'
forward-difference Hessian."""

from __future__ import annotations

from typing import Any

import numpy as np

from glmmlab.engine.solvers.joint_hessian import approximate_hessian
from glmmlab.engine.solvers.newton import projected_gradient
from glmmlab.engine.solvers.optimizer import HESSIAN_REUSE_FORWARD, ROUNDING_GTOL, fd_hessian, gradient_polish
from glmmlab.engine.solvers.secant import Recent, secant_hessian


def last_two(fg, recent: Recent | None = None):
    """``fg`` remembering its last two points (the quasi-Newton run's end point is the polish's start), and every
    point it evaluates in ``recent``."""
    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    def counted(x_: np.ndarray) -> tuple[float, np.ndarray]:
        key = x_.tobytes()
        if key not in cache:
            if len(cache) >= 2:
                del cache[next(iter(cache))]
            cache[key] = fg(x_)
            if recent is not None:
                recent.add(x_, *cache[key])
        return cache[key]

    return counted


def polish_to_rounding(counted, x: np.ndarray, lower: np.ndarray, recent: Recent | None = None
                       ) -> tuple[np.ndarray, float, np.ndarray]:
    """(x, f, H): chord Newton steps from ``x`` (where a quasi-Newton run stopped) with the forward-difference
    Hessian H of the gradient of ``counted`` (value and gradient, :func:`last_two`) there, until the projected
    gradient is at rounding level (optimizer.minimize's polish); H is taken again at the end point where the steps
    moved it by more than HESSIAN_REUSE_FORWARD (relative). Both take differences only along the directions that
    the ``recent`` points near x leave (:func:`~glmmlab.engine.solvers.secant.secant_hessian`)."""

    def hessian_at(fg_, z: np.ndarray) -> np.ndarray:
        H_ = secant_hessian(fg_, z, lower, recent)
        return fd_hessian(fg_, z, lower, forward=True) if H_ is None else H_

    x = np.asarray(x, dtype=float).copy()
    at_x, key = counted(x), x.tobytes()

    def kept(z: np.ndarray) -> tuple[float, np.ndarray]:  # x's value and gradient past the differences' points
        return at_x if z.tobytes() == key else counted(z)

    def near_rounding(x_: np.ndarray) -> bool:
        f_, g_ = kept(x_)
        return projected_gradient(x_, g_, lower) <= ROUNDING_GTOL * max(1.0, abs(f_)) ** 0.5

    f = float(at_x[0])
    H = hessian_at(kept, x)
    x_h = x.copy()
    if np.isfinite(f):
        x, f, _ = gradient_polish(kept, x, f, lower, H, near_rounding, [], shrink=0.1)
    if float(np.max(np.abs(x - x_h) / np.maximum(1.0, np.abs(x)), initial=0.0)) > HESSIAN_REUSE_FORWARD:
        H = hessian_at(counted, x)
    return x, float(f), H


# the projected gradient (times sqrt(|f|)) at which the Newton steps hand over to polish_to_rounding's chord steps
NEWTON_HANDOVER = 1e-5


def handed_over(counted, x: np.ndarray, lower: np.ndarray) -> bool:
    f, g = counted(x)
    return bool(np.isfinite(f)) and projected_gradient(x, g, lower) <= NEWTON_HANDOVER * max(1.0, abs(float(f))) ** 0.5


def newton_metric(obj: Any, fg, designs: dict, q: int, p: int):
    """``x -> approximate_hessian`` at x (:mod:`~glmmlab.engine.solvers.joint_hessian`) from the evaluating
    object's modes there (the twin's where there is one), evaluating x again where the last evaluation was
    elsewhere; ValueError where its modes did not converge (then newton_run takes no step)."""
    def at(x: np.ndarray) -> np.ndarray:
        ev = obj._compact() or obj
        last = ev._last
        if last is None or "g" not in last or not np.array_equal(last["theta"], x[:q]) \
                or not np.array_equal(last["beta"], x[q:q + p]) or last["fam"] is not obj.fam \
                or not np.array_equal(np.asarray(obj.fam.parameters), x[q + p:]):  # (the member of x)
            fg(x)
            last = ev._last
        if last is None or "g" not in last:
            raise ValueError("no converged modes")
        des = obj._twin_designs(designs) if ev is not obj else designs
        H = approximate_hessian(ev.codes, ev._runs, x[:q], last["u"], last["H"],
                                (last["g"], last["W"], last["sums"]), (des["cond"], des["zi"]))
        # positive definite: the left-out third derivatives can make it indefinite far from the optimum (at
        # salamanders_zip_zire's start one eigenvalue -5 of 174); a negative eigenvalue's direction by its size
        w, V = np.linalg.eigh(0.5 * (H + H.T))
        w = np.maximum(np.abs(w), 1e-3 * float(np.max(np.abs(w))))
        return (V * w) @ V.T
    return at


# the share of an SD (at least THETA_FLOOR) a Newton step may move it by: the deviance is far from quadratic in theta
# over larger relative changes (salamanders_zip_zire's first steps from 0.5, 0.5 to 1.98 overshot, 15 -> 13
# evaluations; 30 simulated fits 459 -> 433)
THETA_STEP, THETA_FLOOR = 0.7, 0.05


def theta_step_limit(q: int):
    """newton_run's ``step_limit``: the share of the step d that moves no theta_k (the first q of x) by more than
    THETA_STEP of max(theta_k, THETA_FLOOR)."""
    def limit(x: np.ndarray, d: np.ndarray) -> float:
        move = np.abs(d[:q]) / (THETA_STEP * np.maximum(x[:q], THETA_FLOOR))
        largest = float(move.max(initial=0.0))
        return 1.0 / largest if largest > 1.0 else 1.0
    return limit

