"""Refits of a fitted model to many new responses at once, with the model's structure kept (the parametric
bootstrap's refits): the design, the random-effects layout and every cross-product that does not involve the
response are computed once; each new response only adds its own cross-products.

:class:`BatchedLmm` is the linear mixed model (Gaussian + identity, prior weights and an offset allowed) with one
grouping factor and unstructured covariance sub-blocks: its profiled REML (or ML) deviance is a sum over the
factor's levels of q x q pieces, so the deviance of B responses at B values of theta is a handful of stacked
array operations (no loop over replicates or levels). The optimum of each response is found by Newton steps on
theta from the fitted model's theta, with the gradient and Hessian from a finite-difference stencil evaluated for
every response in one stacked call; a replicate whose steps do not converge is reported so, and the caller refits
it the ordinary way.

The deviance is even in the sign of each column of the relative Cholesky factor (it depends on Lambda Lambda'
only), so the search runs unconstrained and the columns are turned to a non-negative diagonal at the end: the
optimum over lme4's bounds (diagonal >= 0) is the same point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import sparse

from glmmlab.engine.model.terms import FactorBlock, ModelFrame, merge_terms

NEWTON_ITER = 60
DECREMENT_TOL = 1e-10  # half the Newton decrement (deviance still to gain) at which a replicate has converged


def batched_lmm_ok(mf: ModelFrame) -> bool:
    """Whether :class:`BatchedLmm` takes this model: one grouping factor, unstructured sub-blocks, no zero or
    dispersion model."""
    blocks = merge_terms(mf.terms)
    return (len(blocks) == 1 and not blocks[0].structured and mf.parts is None and blocks[0].q <= 8
            and mf.X.shape[1] > 0)


def _stencil(d: int) -> np.ndarray:
    """Offsets (in units of the step) of the central-difference stencil for a gradient and Hessian in d
    variables: 0, +/- e_i, and +/- e_i +/- e_j for i < j."""
    rows = [np.zeros(d)]
    for i in range(d):
        for s in (1.0, -1.0):
            e = np.zeros(d)
            e[i] = s
            rows.append(e)
    for i in range(d):
        for j in range(i + 1, d):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                e = np.zeros(d)
                e[i], e[j] = si, sj
                rows.append(e)
    return np.array(rows)


def _grad_hess(F: np.ndarray, h: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian (B x d, B x d x d) from the deviances F (B x K) on :func:`_stencil`'s points with
    steps h (B x d)."""
    B = F.shape[0]
    f0 = F[:, 0]
    fp, fm = F[:, 1:1 + 2 * d:2], F[:, 2:2 + 2 * d:2]
    g = (fp - fm) / (2.0 * h)
    H = np.empty((B, d, d))
    idx = np.arange(d)
    H[:, idx, idx] = (fp - 2.0 * f0[:, None] + fm) / (h * h)
    k = 1 + 2 * d
    for i in range(d):
        for j in range(i + 1, d):
            pp, pm, mp, mm = F[:, k], F[:, k + 1], F[:, k + 2], F[:, k + 3]
            H[:, i, j] = H[:, j, i] = (pp - pm - mp + mm) / (4.0 * h[:, i] * h[:, j])
            k += 4
    return g, H


def _stencil_steps(x: np.ndarray) -> np.ndarray:
    """The central differences' step per coordinate of the points x (B x d): the stencil's and the gradient's."""
    return 1e-4 * np.maximum(np.abs(x), 0.05)


def newton_batched(fun, x0: np.ndarray, max_iter: int = NEWTON_ITER, fused: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise B smooth functions of d variables at once: ``fun(X, idx)`` gives the values of the functions
    ``idx`` (M) at the points X (M x d). Newton steps from a central-difference gradient and Hessian (eigenvalues
    floored, so a step always descends), halved until the value decreases. Returns (x, f, converged).
    ``fused``: each trial point is evaluated with its whole stencil (its value is the stencil's centre), which an
    accepted trial's next step then uses: one call of ``fun`` per step instead of two, for few functions whose
    calls cost about the same whatever their number of points (a profile's point); the same steps and values
    when ``fun``'s value at a point does not depend on the other points of its call."""
    x = np.array(x0, dtype=float)
    B, d = x.shape
    st = _stencil(d)
    K = st.shape[0]
    f = np.full(B, np.nan)
    converged = np.zeros(B, dtype=bool)
    active = np.arange(B)
    held = np.full((B, K), np.nan)  # fused: the stencil's values at each function's x, once computed
    have = np.zeros(B, dtype=bool)

    def stencil(xs: np.ndarray, idx: np.ndarray) -> np.ndarray:
        h = _stencil_steps(xs)
        pts = (xs[:, None, :] + st[None, :, :] * h[:, None, :]).reshape(-1, d)
        return fun(pts, np.repeat(idx, K)).reshape(idx.size, K)

    for _ in range(max_iter):
        if active.size == 0:
            break
        xa = x[active]
        h = _stencil_steps(xa)
        F = held[active] if fused and have[active].all() else stencil(xa, active)
        fa = F[:, 0]
        f[active] = fa
        g, H = _grad_hess(F, h, d)
        # a stencil with a point where the function is not finite (past a bound) gives no step: that function
        # stops here, not converged (eigh of a matrix that is not finite raises)
        bad = ~(np.all(np.isfinite(H), axis=(1, 2)) & np.all(np.isfinite(g), axis=1))
        if bad.any():
            H[bad], g[bad] = np.eye(d), 0.0
        lam, V = np.linalg.eigh(H)
        floor = np.maximum(1e-8 * np.abs(lam).max(axis=1, keepdims=True), 1e-12)
        lam = np.maximum(np.abs(lam), floor)
        vg = np.einsum("bji,bj->bi", V, g)
        step = -np.einsum("bij,bj->bi", V, vg / lam)
        dec = 0.5 * np.einsum("bi,bi->b", vg, vg / lam)
        ok = np.isfinite(fa) & np.isfinite(dec) & ~bad
        done = ok & (dec < DECREMENT_TOL)
        converged[active[done]] = True
        go = ok & ~done
        norm = np.sqrt(np.einsum("bi,bi->b", step, step))
        step *= np.minimum(1.0, 1.0 / np.maximum(norm, 1e-300))[:, None]  # at most a unit step
        # step halving, all replicates still searching at once
        t = np.ones(active.size)
        moving = np.flatnonzero(go)
        new_x = xa.copy()
        for _h in range(40):
            if moving.size == 0:
                break
            trial = xa[moving] + t[moving, None] * step[moving]
            if fused:
                Ft = stencil(trial, active[moving])
                ft = Ft[:, 0]
            else:
                ft = fun(trial, active[moving])
            better = np.isfinite(ft) & (ft <= fa[moving] - 1e-4 * t[moving] * dec[moving])
            # a step too small to change the deviance: the replicate is at its optimum to rounding
            flat = ~better & (t[moving] * np.max(np.abs(step[moving]), axis=1) < 1e-12)
            new_x[moving[better]] = trial[better]
            f[active[moving[better]]] = ft[better]
            if fused:
                held[active[moving[better]]], have[active[moving[better]]] = Ft[better], True
            converged[active[moving[flat]]] = True
            moving = moving[~better & ~flat]
            t[moving] *= 0.5
        x[active] = new_x
        active = active[go & ~converged[active]]
    return x, f, converged


def planar_cholesky(A: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Lower Cholesky factors of a stack of small positive definite matrices held as planes (``A[i][j]`` an array
    of the stack's (i, j) entries, i >= j), column by column over the whole stack: LAPACK per matrix costs far more
    than the arithmetic at these sizes, and every matrix's arithmetic is the same whatever the stack's size. NaN
    where a matrix is not positive definite."""
    m = len(A)
    L: list[list[np.ndarray]] = [[None] * m for _ in range(m)]  # type: ignore[list-item]
    for j in range(m):
        d = A[j][j]
        for k in range(j):
            d = d - L[j][k] * L[j][k]
        dj = np.sqrt(np.where(d > 0, d, np.nan))
        L[j][j] = dj
        for i in range(j + 1, m):
            r = A[i][j]
            for k in range(j):
                r = r - L[i][k] * L[j][k]
            L[i][j] = r / dj
    return L


def planar_forward(L: list[list[np.ndarray]], b: list[np.ndarray]) -> list[np.ndarray]:
    """L^-1 b for planes of lower-triangular L and of b (see :func:`planar_cholesky`)."""
    x: list[np.ndarray] = []
    for i in range(len(L)):
        r = b[i]
        for k in range(i):
            r = r - L[i][k] * x[k]
        x.append(r / L[i][i])
    return x


def planar_backward(L: list[list[np.ndarray]], b: list[np.ndarray]) -> list[np.ndarray]:
    """L'^-1 b for planes of lower-triangular L and of b."""
    m = len(L)
    x: list[np.ndarray] = [None] * m  # type: ignore[list-item]
    for i in reversed(range(m)):
        r = b[i]
        for k in range(i + 1, m):
            r = r - L[k][i] * x[k]
        x[i] = r / L[i][i]
    return x


class BatchedLmm:
    """The profiled REML (``reml``) or ML deviance of a one-factor linear mixed model, for many responses on the
    same rows at once. Built from the fitted model's frame (rows in any order); :meth:`fit` refits a batch."""

    def __init__(self, mf: ModelFrame, x_names: list[str], reml: bool):
        block: FactorBlock = merge_terms(mf.terms)[0]
        self.block = block
        self.q, self.G = block.q, block.n_levels
        n = mf.n
        self.n = n
        self.reml = reml
        self.pw = np.ones(n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
        self.off = np.zeros(n) if mf.offset is None else np.asarray(mf.offset, dtype=float)
        cols = [list(mf.x_names).index(nm) for nm in x_names]
        X = np.asarray(mf.X, dtype=float)[:, cols]
        self.p = X.shape[1]
        # the fixed effects on a scale where X'WX has unit diagonal (the estimates are mapped back)
        scale = np.sqrt(np.maximum(np.einsum("ni,n,ni->i", X, self.pw, X), 1e-300))
        self.xscale = scale
        X = X / scale
        codes = np.asarray(block.codes, dtype=np.intp)
        self.S = sparse.csr_matrix((self.pw, (codes, np.arange(n))), shape=(self.G, n))  # W-weighted indicator
        Z = np.asarray(block.Z, dtype=float)
        if Z.shape[0] != n:
            Z = np.broadcast_to(Z, (n, self.q))
        self.Z, self.X = Z, X
        q, p = self.q, self.p
        self.ZtZ = np.asarray(self.S @ np.einsum("ni,nj->nij", Z, Z).reshape(n, q * q)).reshape(self.G, q, q)
        self.ZtX = np.asarray(self.S @ np.einsum("ni,nj->nij", Z, X).reshape(n, q * p)).reshape(self.G, q, p)
        self.XtX = X.T @ (self.pw[:, None] * X)
        self.pos = block.entry_positions()
        self.nt = len(self.pos)
        self.eye = np.eye(q)

    def set_responses(self, Y: np.ndarray) -> None:
        """The batch's responses (B x n, the frame's rows): their cross-products with Z and X."""
        R = np.asarray(Y, dtype=float) - self.off  # B x n
        WR = R * self.pw
        self.ZtY = np.stack([(self.S @ (self.Z[:, k][:, None] * R.T)).T for k in range(self.q)], axis=2)  # B,G,q
        self.XtY = np.einsum("bn,np->bp", WR, self.X)  # B x p (no BLAS: a row's sums do not depend on B)
        self.yty = np.einsum("bn,bn->b", WR, R)

    def set_line(self, r: np.ndarray, x: np.ndarray) -> None:
        """Prepare the responses r - b x for any b (:meth:`at_line`): a fixed effect held at b, its column x moved
        into the offset (a profile's points). ``r``: the response less the offset. The cross-products of r and x
        are taken once; each b is a linear combination of them (no pass over the rows)."""
        self.set_responses(np.vstack([r, x]) + self.off)
        self._line = (self.ZtY, self.XtY, self.yty, float(np.einsum("n,n,n->", r, self.pw, x)))

    def at_line(self, b: float) -> None:
        """The single response r - b x of :meth:`set_line` (the batch's response 0)."""
        ZtY, XtY, yty, rx = self._line
        self.ZtY = (ZtY[0] - b * ZtY[1])[None]
        self.XtY = (XtY[0] - b * XtY[1])[None]
        self.yty = np.array([yty[0] - 2.0 * b * rx + b * b * yty[1]])

    def _solve(self, theta: np.ndarray, idx: np.ndarray) -> dict:
        """The profiled pieces at thetas (M x n_theta) of responses ``idx``, every level's q x q system and the
        fixed effects' p x p one as planes of (M x G) and (M,) arrays (no matrix products: each replicate's
        arithmetic is the same whatever the batch holds)."""
        q, p = self.q, self.p
        t = {rc: theta[:, k][:, None] for k, rc in enumerate(self.pos)}  # Lambda's entries, M x 1
        ZtZ, ZtX, ZtY = self.ZtZ, self.ZtX, self.ZtY[idx]

        def lam_t(cols: list[np.ndarray], i: int) -> np.ndarray:  # (Lambda' v)_i from the planes of v
            out = None
            for j in range(q):
                if (j, i) in t:
                    term = t[(j, i)] * cols[j]
                    out = term if out is None else out + term
            return out if out is not None else np.zeros_like(cols[0] * t[self.pos[0]])

        # Lambda' Z'WZ Lambda + I, per level
        P = [[lam_t([ZtZ[None, :, k, j] for k in range(q)], c) for c in range(q)] for j in range(q)]  # (Z'Z L)_jc
        A: list[list[Any]] = [[None] * q for _ in range(q)]
        for i in range(q):
            for c in range(i + 1):
                A[i][c] = lam_t([P[j][c] for j in range(q)], i) + (1.0 if i == c else 0.0)
        L = planar_cholesky(A)
        logdet = 2.0 * sum(np.log(L[i][i]).sum(axis=1) for i in range(q))
        RZX = [planar_forward(L, [lam_t([ZtX[None, :, j, c] for j in range(q)], i) for i in range(q)])
               for c in range(p)]  # RZX[c][i]: M x G
        cu = planar_forward(L, [lam_t([ZtY[:, :, j] for j in range(q)], i) for i in range(q)])
        RX2: list[list[Any]] = [[None] * p for _ in range(p)]
        for a in range(p):
            for b in range(a + 1):
                RX2[a][b] = self.XtX[a, b] - sum((RZX[a][i] * RZX[b][i]).sum(axis=1) for i in range(q))
        r = [self.XtY[idx, a] - sum((RZX[a][i] * cu[i]).sum(axis=1) for i in range(q)) for a in range(p)]
        C = planar_cholesky(RX2)
        cb = planar_forward(C, r)
        pwrss = self.yty[idx] - sum((cu[i] * cu[i]).sum(axis=1) for i in range(q)) - sum(c * c for c in cb)
        return {"logdet": logdet, "C": C, "cb": cb, "pwrss": pwrss}

    def logdet_pwrss(self, theta: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log det(Lambda' Z'WZ Lambda + I) and the penalised RSS (beta profiled out) of responses ``idx`` at thetas
        (M x n_theta): what a deviance at a given sigma needs (a profile's points)."""
        with np.errstate(all="ignore"):
            s = self._solve(theta, idx)
        return s["logdet"], s["pwrss"]

    def deviance(self, theta: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The profiled deviance (up to a constant) of responses ``idx`` at thetas (M x n_theta)."""
        with np.errstate(all="ignore"):
            s = self._solve(theta, idx)  # NaN where a factor fails (not expected): that replicate refits alone
            pwrss = np.where(s["pwrss"] > 0, s["pwrss"], np.nan)
            if self.reml:
                df = self.n - self.p
                ldx = 2.0 * sum(np.log(s["C"][a][a]) for a in range(self.p))
                return s["logdet"] + ldx + df * (1.0 + np.log(2.0 * math.pi * pwrss / df))
            return s["logdet"] + self.n * (1.0 + np.log(2.0 * math.pi * pwrss / self.n))

    def fit(self, Y: np.ndarray, theta0: np.ndarray) -> dict:
        """Refit responses Y (B x n) from theta0: {"theta" (B x n_theta, lme4's bounds), "sigma", "beta" (B x p, in
        the order of ``x_names``), "sd_cor" (B x n_theta: the standard deviations and correlations in theta's
        order), "converged" (B)}."""
        self.set_responses(Y)
        B = Y.shape[0]
        x0 = np.tile(np.asarray(theta0, dtype=float), (B, 1))
        theta, _, conv = newton_batched(self.deviance, x0)
        theta = canonical_theta(theta, self.pos, self.q)
        idx = np.arange(B)
        with np.errstate(all="ignore"):
            s = self._solve(theta, idx)
            beta = np.column_stack(planar_backward(s["C"], s["cb"])) / self.xscale
            sigma = np.sqrt(s["pwrss"] / (self.n - self.p if self.reml else self.n))
        conv &= np.all(np.isfinite(beta), axis=1) & np.isfinite(sigma)
        return {"theta": theta, "sigma": sigma, "beta": beta, "sd_cor": sd_cor(theta, self.pos, self.q, sigma),
                "converged": conv}


def canonical_theta(theta: np.ndarray, pos: list[tuple[int, int]], q: int) -> np.ndarray:
    """Each column of Lambda (entries ``theta`` at positions ``pos``) turned to a non-negative diagonal: the same
    Lambda Lambda', within lme4's bounds."""
    theta = theta.copy()
    for c in range(q):
        ks = [k for k, (_, cc) in enumerate(pos) if cc == c]
        diag = [k for k in ks if pos[k][0] == c]
        if diag:
            sign = np.where(theta[:, diag[0]] < 0, -1.0, 1.0)
            theta[:, ks] *= sign[:, None]
    return theta


def sd_cor(theta: np.ndarray, pos: list[tuple[int, int]], q: int, scale: np.ndarray) -> np.ndarray:
    """Standard deviations and correlations of the random effects (theta's order) from a batch of thetas and
    residual scales (1 for a family without a dispersion)."""
    lam = np.zeros((theta.shape[0], q, q))
    for k, (r, c) in enumerate(pos):
        lam[:, r, c] = theta[:, k]
    S = np.einsum("mik,mjk->mij", lam, lam) * (scale * scale)[:, None, None]
    sd = np.sqrt(np.maximum(np.diagonal(S, axis1=1, axis2=2), 0.0))
    out = np.empty_like(theta)
    for k, (r, c) in enumerate(pos):
        if r == c:
            out[:, k] = sd[:, r]
        else:
            den = sd[:, r] * sd[:, c]
            out[:, k] = np.where(den > 0, S[:, r, c] / np.where(den > 0, den, 1.0), 0.0)
    return out


def theta_of_sd_cor(v: np.ndarray, pos: list[tuple[int, int]], q: int, scale: np.ndarray) -> np.ndarray:
    """The inverse of :func:`sd_cor`: thetas (M x n_theta, the relative Cholesky factors of the covariances over
    scale^2) of a batch of standard deviations and correlations (M x n_theta, theta's order) and residual scales
    (M,). A row whose correlations are not positive definite (or has an SD of 0) is NaN."""
    sd = {r: v[:, k] for k, (r, c) in enumerate(pos) if r == c}
    s2 = scale * scale
    zero = np.zeros(v.shape[0])
    S: list[list[Any]] = [[zero] * q for _ in range(q)]
    for k, (r, c) in enumerate(pos):
        S[r][c] = (1.0 if r == c else v[:, k]) * (sd[r] * sd[c]) / s2
    L = planar_cholesky(S)
    return np.column_stack([L[r][c] for r, c in pos])
