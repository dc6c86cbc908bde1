"""One Laplace evaluation of a small model with one random intercept whose mode search takes Newton steps with the
observed curvature (glmmTMB's families, zero and dispersion models: :class:`~glmmlab.engine.solvers.laplace.
GeneralLaplace`'s ``observed_only`` path), with the penalised system as what it is there: one number per level.

With a scalar intercept on rows sorted by level, H_j = 1 + lam^2 sum_j W_i, the Newton step of level j is
delta_j = -(u_j + lam/2 sum_j dev_eta_i) / H_j, the log-determinant sum_j log H_j and the next evaluation's
predicted modes du_j = rhs_j / H_j: per-level sums over runs of rows and arithmetic on L numbers, where the general
path builds cross-products, a blocked factor and dicts per step. The same steps, step halving, stopping rules and
fallbacks as :func:`~glmmlab.engine.solvers.mode_search.search` and ``GeneralLaplace.pirls`` (the same numbers to
rounding: tested against the general path at random points), the gradient by ``_gradient_intercept`` and the
family parameters' by ``_psi_gradient`` themselves.

Taken (:func:`applies`) for one block of at most MAX_ROWS rows: at 644 rows a numpy call costs about as much as
its arithmetic, so the per-step objects were most of an evaluation; larger fits (and their thread pool) keep the
general path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from glmmlab.engine.families.distributions import dev_eta3
from glmmlab.engine.families.state import row_state
from glmmlab.engine.model.terms import rows_of
from glmmlab.engine.solvers import structured
from glmmlab.engine.solvers.distinct_rows import distinct_rows
from glmmlab.engine.solvers.mode_search import EDGE_CURVATURE, MAX_PREDICTED_STEP, search, valid_start

MAX_ROWS = 100_000  # (row_blocks.MIN_BLOCK_ROWS: a design this small is one block)


def applies(lap: Any) -> bool:
    """Whether ``lap`` (a GeneralLaplace) evaluates through this module: one random intercept (1 | g) on rows
    sorted by level, Newton steps with the observed curvature whose factor is also the log-determinant's (no
    estimated dispersion, no link edge), the modes kept between evaluations, at most MAX_ROWS rows."""
    st = lap.st
    return (not st.rest and st.q1 == 1 and st.ones1[0] and st.sorted1 and st.n <= MAX_ROWS and lap.keep_last
            and lap.newton and lap.observed and not lap.edge and not lap.estimated)


class _ScalarFactor:
    """What ``_gradient_intercept`` reads of a factor: L11 (the square roots of H_j) and solves with H."""

    def __init__(self, H: np.ndarray):
        self.H = H
        self.L11 = np.sqrt(H).reshape(-1, 1, 1)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return rhs / self.H


class InterceptModes:
    """The mode search, log-determinant and predicted modes of one random intercept (see the module docstring) on
    the rows of ``lap`` (a GeneralLaplace: the block's own, or its :func:`compact` twin), kept on the
    GeneralLaplace it serves."""

    def __init__(self, lap: Any):
        self.lap = lap
        st = lap.st
        self.starts, self.counts, self.L = st.starts1, st.counts1, st.L1
        self.last: dict | None = None  # the last converged point: what predicts the next modes
        # the search's current modes, their row effects and row state, its step and candidate (see modes)
        self.u: np.ndarray = np.zeros(self.L)
        self.re: Any = None
        self.rs: Any = None
        self.cand: Any = None
        self.delta: np.ndarray = self.u
        self.H: np.ndarray = self.u
        self.lam = self.lam2 = 0.0
        self.eta_f: np.ndarray = self.u

    # -- rows ------------------------------------------------------------------------------------------------
    def _sum(self, v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, self.starts)

    def _sum_rows(self, a: np.ndarray) -> np.ndarray:
        """Per-level sums of the rows of a 2-D array (levels x columns)."""
        return np.add.reduceat(a, self.starts, axis=0)

    def _state(self, eta_f: np.ndarray, u: np.ndarray, lam: float):
        lap = self.lap
        re = np.repeat(lam * u, self.counts)
        rs = row_state(lap.resp, eta_f + re, lap.lk)
        pdev = lap._dev_sum(rs) + float(u @ u)
        ok = np.isfinite(pdev) and (lap.fast or bool(np.all(lap.fam.mu_valid(rs.mu))))
        return re, rs, (pdev if ok else np.inf)

    def _predicted(self, lam: float, beta: np.ndarray, eta_f: np.ndarray) -> np.ndarray:
        """GeneralLaplace._predicted_modes for one intercept: the last modes moved by the implicit function
        theorem, du_j = (score_j d - A_j u_j lam_0 d - lam_0 sum_j W_i X_i dbeta) / H_j with d the change of lam."""
        last, u_keep = self.last, self.lap.u
        if last is None or last["beta"].shape != beta.shape:
            return u_keep
        lam0, u0 = last["lam"], last["u"]
        d = lam - lam0
        rhs = last["score"] * d - last["A"] * u0 * (d * lam0)
        if (beta != last["beta"]).any():
            xb = eta_f - last["eta_f"]
            xb *= last["w"]
            rhs -= self._sum(xb) * lam0
        du = rhs / last["H"]
        step = float(np.abs(du).max())  # (L >= 1 levels)
        return u0 + du if np.isfinite(step) and step <= MAX_PREDICTED_STEP else u_keep

    # -- the search (mode_search.ModeSteps: search() runs the steps) -------------------------------------------
    def factor(self, newton: bool) -> bool:
        """Per level H_j = 1 + lam^2 sum_j W_i: Newton's weights (the observed curvature; False where some H_j is not
        positive), else the working weights (GeneralLaplace._edge_working). A row without curvature (a hurdle's
        zero) adds nothing here: GeneralLaplace._newton_working gives it 1e-12 of its expected information, for its
        working response's division, which this step does not take (the step differs by ~1e-12, the modes not)."""
        weighted, rs = self.lap._weighted, self.rs
        wobs = 0.5 * weighted(rs.dev_eta2)
        if newton:
            H = self.lam2 * self._sum(wobs) + 1.0
            if not (float(H.min()) > 0.0 and np.isfinite(float(H.max()))):  # (a NaN fails the first)
                return False
        else:
            w = weighted(rs.w)
            H = self.lam2 * self._sum(np.where(wobs >= 0.0, np.maximum(wobs, EDGE_CURVATURE * w), w)) + 1.0
        self.H = H
        return True

    def step(self) -> float:
        self.delta = -(self.u + self.lam * self._sum(0.5 * self.lap._weighted(self.rs.dev_eta))) / self.H
        return float(np.abs(self.delta).max())

    def edge_step(self) -> float:  # pragma: no cover - (no edge: see applies)
        return 1.0

    def try_step(self, t: float) -> float:
        cand = self.u + t * self.delta
        re, rs, pdev = self._state(self.eta_f, cand, self.lam)
        self.cand = (cand, re, rs)
        return pdev

    def accept(self) -> bool:
        self.u, self.re, self.rs = self.cand
        return False

    def modes(self, theta: np.ndarray, beta: np.ndarray, max_iter: int = 200) -> dict:
        lap = self.lap
        lam = float(lap.st.lambdas(theta)[0][0, 0])
        eta_f = lap._eta_fixed(beta)
        u0 = self._predicted(lam, beta, eta_f)
        u, (re, rs, pdev) = valid_start(lambda v: self._state(eta_f, v, lam), u0, lap.u, self.L)
        if not np.isfinite(pdev):
            raise FloatingPointError("no valid mean at the starting modes")
        self.lam, self.lam2, self.eta_f, self.u, self.re, self.rs = lam, lam * lam, eta_f, u, re, rs
        pdev, converged = search(self, pdev, True, False, False, max_iter)[:2]
        u, re, rs = self.u, self.re, self.rs
        self.rs = self.re = self.cand = None  # (nothing per row kept past the evaluation but the prediction's)
        weighted = lap._weighted
        # the log-determinant's (and the gradient's) observed curvature at the modes
        wobs = 0.5 * weighted(rs.dev_eta2)
        A = self._sum(wobs)
        H = self.lam2 * A + 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            logdet = float(np.log(H).sum())
        dev = lap._dev_sum(rs)
        lap._last_dev = dev
        if converged and lap.keep_last:
            # the score per level, -1/2 sum_j dev_eta (the factor's working response's sums less A lam u)
            self.last = {"lam": lam, "beta": np.array(beta), "u": u, "H": H, "A": A, "w": wobs, "eta_f": eta_f,
                         "score": -self._sum(0.5 * weighted(rs.dev_eta))}
        else:
            self.last = None
        return {"u": u, "rs": rs, "re": re, "dev": dev, "pdev": pdev, "converged": converged, "logdet": logdet,
                "H": H, "A": A, "wobs": wobs, "lam": lam}


def compact(lap: Any, general: Callable[..., Any]) -> Any:
    """A GeneralLaplace (``general``, the class: laplace.py imports this module, so it is passed in rather than
    imported) on the distinct rows of ``lap`` (equal level, design rows, offset, response, weight and every zero or
    dispersion design row), each with the sum of its copies' prior weights
    (:mod:`~glmmlab.engine.solvers.distinct_rows`); None where there are too few copies."""
    from glmmlab.engine.solvers.blocked_cholesky import Structure

    n = lap.y.shape[0]
    data = {k: v for k, v in (lap.data or {}).items() if v is not None}
    cols = [lap.st.codes1, lap.Xs, lap.y, np.broadcast_to(lap.pw, (n,))] + ([] if lap.no_offset else [
        np.broadcast_to(lap.off, (n,))]) + ([] if lap.trials is None else [lap.trials]) + list(data.values())
    found = distinct_rows(cols, n)
    if found is None:
        return None
    rows, counts = found
    b = lap.st.lead
    st = Structure([replace(b, codes=np.asarray(b.codes)[rows], Z=rows_of(b.Z, rows))])
    pw = np.broadcast_to(lap.pw, (n,))[rows] * counts
    # (no offset: the read-only zero view GeneralLaplace recognises)
    off = np.broadcast_to(0.0, (rows.size,)) if lap.no_offset else np.broadcast_to(lap.off, (n,))[rows]
    twin = general(st, lap.Xs[rows], lap.y[rows], pw, off, lap.fam, lap.lk, lap.dispersion,
                          trials=None if lap.trials is None else lap.trials[rows],
                          data={k: v[rows] for k, v in data.items()} or None)
    return twin if applies(twin) else None


def _search(lap: Any, general: Callable[..., Any]) -> InterceptModes:
    """``lap``'s :class:`InterceptModes`, made at the first call (on the rows' :func:`compact` twin where it has
    one)."""
    search = lap._intercept_modes
    if search is None:
        twin = compact(lap, general)
        search = lap._intercept_modes = InterceptModes(lap if twin is None else twin)
    return search


def _rows(lap: Any, search: InterceptModes) -> Any:
    """The rows ``search`` evaluates (``lap`` itself or its twin), with ``lap``'s member of the family."""
    rows = search.lap
    if rows.fam is not lap.fam:
        rows.set_family(lap.fam)
    return rows


def summed_rows(lap: Any, general: Callable[..., Any]) -> Any:
    """The rows to sum over in place of ``lap``'s where a sum over rows is all that is wanted (the model without
    random effects: ``modelled_glm.glm_objective``, whose weighted sums merged rows leave as they are): its
    :func:`compact` twin (the distinct rows with summed weights) where it evaluates through this module and has
    one, else ``lap``. salamanders: 128 rows for 644."""
    if not applies(lap):
        return lap
    return _rows(lap, _search(lap, general))


def parts(lap: Any, theta: np.ndarray, beta: np.ndarray, gradient: bool, general: Callable[..., Any]) -> dict:
    """GeneralLaplace.parts through :class:`InterceptModes` (see :func:`applies`), on the rows' :func:`compact`
    twin (a ``general``, the GeneralLaplace class) where it has one."""
    search = _search(lap, general)
    rows = _rows(lap, search)
    if rows is not lap:  # the twin: this block's modes and flags too
        rows.u, rows.psi_gradient, rows.psi_held = lap.u, lap.psi_gradient, lap.psi_held
    out = _parts(rows, search, theta, beta, gradient)
    lap.u, lap._last_dev = rows.u, rows._last_dev
    lap._last = None  # (the general path's predictions: this module keeps its own)
    return out


def _parts(lap: Any, search: InterceptModes, theta: np.ndarray, beta: np.ndarray, gradient: bool) -> dict:
    m = search.modes(theta, beta)
    lap.u = m["u"]
    out = {"dev": m["dev"], "uu": float(m["u"] @ m["u"]), "logdet": m["logdet"], "converged": m["converged"]}
    if not gradient:
        return out
    rs = m["rs"]
    d1 = lap._weighted(rs.dev_eta)
    w_eta = 0.5 * lap.pw * dev_eta3(lap.fam, lap.lk, lap.y, rs)
    F = _ScalarFactor(m["H"])
    g_c, g_0 = lap._gradient_intercept(m["lam"], m, F, F, d1, w_eta, m["wobs"], m["A"].reshape(-1, 1, 1))
    blocks = lap.st.blocks
    out["g_c"], out["g_0"] = structured.to_theta(blocks, theta, g_c), structured.to_theta(blocks, theta, g_0)
    if lap.psi_gradient:
        out["g_psi"] = lap._psi_gradient(m)
    return out


def zero_model_curvature(lap: Any, theta: np.ndarray, beta: np.ndarray) -> np.ndarray | None:
    """An approximate Hessian of the Laplace deviance in (beta, the zero model's coefficients) of a zero-inflated
    family at the modes of the last evaluation, which must be at (theta, beta) (else None; None too for a block
    that does not evaluate through this module, or a family without a zero-inflation model): the Hessian of the
    penalised deviance sum dev + |u|^2 in those coefficients and u, with u profiled out (its Schur complement on
    the per-level u block, 2 H_j), from the rows' second derivatives in the mean's and the zero model's
    predictors (``zi_deviance_derivatives``). The log-determinant's curvature is left out (its third derivatives:
    a few per cent of the whole on the salamanders cases), as is theta's row (the caller's difference)."""
    search = lap._intercept_modes
    if search is None or not applies(lap):
        return None
    rows = _rows(lap, search)
    fam = rows.fam
    if getattr(fam, "kind", "") != "zi" or not getattr(fam, "n_zi", 0):
        return None
    lam = float(rows.st.lambdas(theta)[0][0, 0])
    last = search.last
    if last is None or last["lam"] != lam or not np.array_equal(last["beta"], beta):
        return None
    resp = rows.resp
    rs = row_state(resp, last["eta_f"] + np.repeat(lam * last["u"], search.counts), rows.lk)
    d_ee = rows._weighted(rs.dev_eta2)
    _, d_ez, d_zz = fam.zi_deviance_derivatives(resp, rs)
    d_ez, d_zz = rows._weighted(d_ez), rows._weighted(d_zz)
    X = np.asarray(rows.Xs, dtype=float)
    Z = np.asarray(resp.zi_X, dtype=float)
    p = X.shape[1]
    Xe, Ze = X * d_ee[:, None], Z * d_ez[:, None]
    H = np.empty((p + Z.shape[1],) * 2)
    H[:p, :p] = X.T @ Xe
    H[:p, p:] = X.T @ Ze
    H[p:, p:] = Z.T @ (Z * d_zz[:, None])
    H[p:, :p] = H[:p, p:].T
    S = search._sum_rows(np.hstack([Xe, Ze]))  # the coefficients' cross derivatives with u_j over lam
    H -= (lam * lam) * (S.T @ (S / (2.0 + (lam * lam) * search._sum(d_ee))[:, None]))
    return H


def zero_inflated_hessian(obj: Any, set_member: Callable[[np.ndarray], Any], params: np.ndarray, fg, nt: int,
                          m_psi: int, n_zi: int) -> np.ndarray:
    """An approximate Hessian of the Laplace deviance of a zero-inflated family over (theta, beta, psi) at
    ``params`` for Newton steps (``fg``: the optimiser's cached value and gradient, evaluated at ``params`` just
    before): over beta and the zero model's coefficients (psi's first ``n_zi``) the closed-form curvature at the
    modes (:func:`zero_model_curvature` over ``obj``'s blocks, a BlockedLaplace), every other parameter's column
    (theta, the base's own) by a forward difference of the gradient (one evaluation each, where a
    finite-difference Hessian takes one per parameter); made positive definite. ``set_member``: makes psi's
    member the blocks' family."""
    k = params.size
    g0 = fg(params)[1]
    set_member(params[k - m_psi:])
    closed = np.arange(nt, k - m_psi + n_zi)
    H = np.zeros((k, k))
    C = obj.zero_model_curvature(params[:k - m_psi])
    if C is None:  # the modes are not those of params: differences throughout
        closed = closed[:0]
    else:
        H[np.ix_(closed, closed)] = C
    other = np.setdiff1d(np.arange(k), closed)
    for i in other:
        h = 1e-5 * max(abs(float(params[i])), 0.1)
        step = params.copy()
        step[i] += h
        H[:, i] = (fg(step)[1] - g0) / h
    H[np.ix_(other, closed)] = H[np.ix_(closed, other)].T  # the differences' columns give their cross terms
    H = 0.5 * (H + H.T)
    # where the deviance is not convex at the point (owls_zinb1's start: its theta's curvature -14) the
    # eigenvalues' absolute values: Newton's steps need a positive definite matrix
    lam, V = np.linalg.eigh(H)
    if lam.min() > 0.0 or not np.all(np.isfinite(lam)):
        return H
    return (V * np.maximum(np.abs(lam), 1e-3 * float(np.abs(lam).max()))) @ V.T
