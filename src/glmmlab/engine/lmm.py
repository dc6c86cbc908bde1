"""REML for the linear mixed model y = X beta + b_g + e, b ~ N(0, sigma^2 theta^2), e ~ N(0, sigma^2).

With one scalar random intercept, V = I + theta^2 Z Z' is block diagonal with blocks I + theta^2 11', whose
inverse is I - c_j 11' with c_j = theta^2 / (1 + n_j theta^2). Every quantity the profiled REML criterion
needs is then a combination of per-group sums computed once (sum of x, sum of y, n_j) and of the totals
X'X, X'y, y'y, so one evaluation costs O(groups * p^2) whatever the number of rows.

The same sums give the maximum-likelihood criterion (``reml=False``, lmer's ``REML = FALSE``): it drops the
log det(X' V^-1 X) term and divides the residual sum of squares by n instead of n - p.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize

from glmmlab.engine.progress import ProgressFn, report

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class LmmSums:
    """The sufficient statistics of the REML criterion."""

    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    Sx: np.ndarray  # groups x p: per-group column sums of X
    Sy: np.ndarray  # groups: per-group sums of y
    nj: np.ndarray  # groups: rows per group
    n: int

    @classmethod
    def from_parts(cls, parts: list[dict], n_groups: int) -> "LmmSums":
        """Add up the blocks' ``lmm_sums``; per-group rows go to their global group index."""
        p = parts[0]["XtX"].shape[0]
        Sx, Sy, nj = np.zeros((n_groups, p)), np.zeros(n_groups), np.zeros(n_groups)
        for part in parts:
            ids = part["group_ids"]
            Sx[ids], Sy[ids], nj[ids] = part["Sx"], part["Sy"], part["nj"]
        return cls(
            XtX=sum(part["XtX"] for part in parts), Xty=sum(part["Xty"] for part in parts),
            yty=float(sum(part["yty"] for part in parts)), Sx=Sx, Sy=Sy, nj=nj, n=int(nj.sum()),
        )


@dataclass
class LmmState:
    """The profiled quantities at one theta."""

    theta: float
    beta: np.ndarray
    sigma2: float
    A: np.ndarray  # X' V^-1 X (V in units of sigma^2)
    c: np.ndarray  # theta^2 / (1 + n_j theta^2)
    deviance: float  # -2 REML (or ML) log-likelihood; the REML one for the design's (scaled) X
    rss: float = 0.0  # the penalised residual sum of squares at theta (sigma = 1 units)


@dataclass
class LmmFit:
    state: LmmState
    iterations: int
    converged: bool
    history: list[dict] = field(default_factory=list)


def reml_state(s: LmmSums, theta: float, reml: bool = True) -> LmmState:
    """Profile beta and sigma^2 out at ``theta`` and return the REML criterion (the ML one with ``reml=False``)."""
    psi = theta * theta
    c = psi / (1.0 + s.nj * psi)
    Sxc = s.Sx * c[:, None]
    A = s.XtX - s.Sx.T @ Sxc
    b = s.Xty - Sxc.T @ s.Sy
    q = s.yty - float(np.sum(c * s.Sy * s.Sy))
    L = linalg.cho_factor(A, lower=True)
    beta = linalg.cho_solve(L, b)
    p = A.shape[0]
    rss = max(q - float(b @ beta), 1e-300)
    logdet_V = float(np.sum(np.log1p(s.nj * psi)))
    if reml:
        sigma2 = rss / (s.n - p)
        logdet_A = 2.0 * float(np.sum(np.log(np.diag(L[0]))))
        deviance = (s.n - p) * (1.0 + LOG_2PI + np.log(sigma2)) + logdet_V + logdet_A
    else:
        sigma2 = rss / s.n
        deviance = s.n * (1.0 + LOG_2PI + np.log(sigma2)) + logdet_V
    return LmmState(theta=theta, beta=beta, sigma2=sigma2, A=A, c=c, deviance=float(deviance), rss=rss)


def reml_slope(s: LmmSums, psi: float, reml: bool = True) -> float:
    """d(-2 REML log-likelihood)/d psi with psi = theta^2, analytically:
    (n - p) dq/q + sum n_j/(1 + n_j psi) + tr(A^-1 dA), where dc_j/dpsi = 1/(1 + n_j psi)^2,
    dq = -sum dc_j R_j^2 (R_j the group's residual sum) and dA = -Sx' diag(dc) Sx. The ML criterion's
    (``reml=False``): n dq/q + sum n_j/(1 + n_j psi)."""
    st = reml_state(s, float(np.sqrt(psi)))
    dc = 1.0 / (1.0 + s.nj * psi) ** 2
    R = s.Sy - s.Sx @ st.beta
    p = st.A.shape[0]
    q = st.rss
    dq = -float(np.sum(dc * R * R))
    if not reml:
        return s.n * dq / q + float(np.sum(s.nj / (1.0 + s.nj * psi)))
    Ainv_Sx = linalg.cho_solve(linalg.cho_factor(st.A, lower=True), s.Sx.T)
    tr = -float(np.sum(dc * np.einsum("gk,kg->g", s.Sx, Ainv_Sx)))
    return (s.n - p) * dq / q + float(np.sum(s.nj / (1.0 + s.nj * psi))) + tr


def _polish(s: LmmSums, theta: float, reml: bool = True) -> float:
    """Solve slope = 0 near Brent's answer: the root of the derivative is determined to rounding error,
    where the minimum of the (flat) criterion is determined only to about the square root of it."""
    psi = theta * theta
    if psi <= 0.0:
        return theta
    lo, hi = psi * 0.999, psi * 1.001
    f_lo, f_hi = reml_slope(s, lo, reml), reml_slope(s, hi, reml)
    for _ in range(20):
        if f_lo < 0 < f_hi:
            root = optimize.brentq(lambda q: reml_slope(s, q, reml), lo, hi, xtol=1e-15 * psi, rtol=1e-15)
            return float(np.sqrt(root))
        if f_lo >= 0:
            lo, f_lo = lo * 0.5, reml_slope(s, lo * 0.5, reml)
        if f_hi <= 0:
            hi, f_hi = hi * 2.0, reml_slope(s, hi * 2.0, reml)
    return theta


def fit_reml(
    s: LmmSums, *, max_iter: int = 100, tol: float = 1e-6, progress: ProgressFn = None, reml: bool = True
) -> LmmFit:
    """Minimise the profiled REML criterion (the ML one with ``reml=False``) over theta >= 0.

    A coarse grid over log(theta) brackets the minimum, Brent's method refines it, and the boundary
    theta = 0 is compared explicitly so that singular fits land exactly on it, as lme4's do.
    """
    history: list[dict] = []

    def f(theta: float) -> float:
        dev = reml_state(s, theta, reml).deviance
        history.append({"theta": float(theta), "objective": dev})
        return dev

    label = "Optimizing variance component (" + ("REML" if reml else "ML") + ")"
    report(progress, label, 0.1)
    grid = np.concatenate([[0.0], 10.0 ** np.linspace(-4, 4, 33)])
    values = np.array([f(t) for t in grid])
    k = int(np.argmin(values))
    lo = grid[max(k - 1, 0)]
    hi = grid[min(k + 1, len(grid) - 1)]
    if k == len(grid) - 1:
        hi = grid[-1] * 100.0
    report(progress, label, 0.5)
    res = optimize.minimize_scalar(
        f, bounds=(lo, hi), method="bounded",
        options={"xatol": 1e-10 * max(1.0, hi), "maxiter": max(int(max_iter), 1)},
    )
    theta = _polish(s, float(res.x), reml)
    best = reml_state(s, theta, reml)
    zero = reml_state(s, 0.0, reml)
    if zero.deviance <= best.deviance + 1e-10:
        best = zero
    converged = bool(res.success) and (res.nfev < max_iter or abs(best.deviance - f(best.theta)) < tol)
    return LmmFit(state=best, iterations=int(res.nfev), converged=converged, history=history)


def varpar_deviance(s: LmmSums, theta: float, sigma: float, reml: bool = True) -> float:
    """The REML (or ML) deviance at the variance parameters (theta, sigma) themselves, not profiled over sigma
    (lmerTest's deviance for Satterthwaite's degrees of freedom; the REML one for the scaled X):
    log det V + rss / sigma^2 + n log(2 pi sigma^2) [+ log det(X'V^-1X) - p log(2 pi sigma^2)]."""
    st = reml_state(s, abs(float(theta)), reml)
    s2 = float(sigma) ** 2
    dev = float(np.sum(np.log1p(s.nj * theta * theta))) + st.rss / s2 + s.n * (LOG_2PI + np.log(s2))
    if reml:
        p = st.A.shape[0]
        dev += 2.0 * float(np.sum(np.log(np.diag(linalg.cholesky(st.A, lower=True))))) - p * (LOG_2PI + np.log(s2))
    return dev
