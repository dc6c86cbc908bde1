"""A block of rows of a model with crossed factors, on a worker: the steps of the Laplace approximation's mode
search, log-determinant and exact gradient that touch its rows (:class:`CoupledRows`), for the driver's
:class:`~glmmlab.services.distributed.coupled_fit.CoupledUnit` to combine with the other blocks'.

The block holds the modes of its own leading levels (``u1``) and a copy of the coupled factors' modes (``u2``,
every global level) the driver sends; the arithmetic is that of
:class:`~glmmlab.engine.solvers.laplace.GeneralLaplace` (its row state, working weights and steps, used as they
are), with each factor of the penalised system split as :mod:`~glmmlab.services.distributed.coupled` splits it.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from glmmlab.engine.families.distributions import dev_eta3
from glmmlab.engine.families.state import row_state
from glmmlab.engine.solvers import structured
from glmmlab.engine.solvers.blocked_cholesky import PatternInverse
from glmmlab.engine.solvers.crossed_modes import coupled_score, lambda_vector, times_a
from glmmlab.engine.solvers.laplace import GeneralLaplace, edge_gap
from glmmlab.engine.solvers.laplace_fit import laplace_rows
from glmmlab.engine.solvers.laplace_gradient import gradient_parts, level_sums, row_inverse_blocks, scaled_rows
from glmmlab.services.distributed.coupled import PartialFactor


class CoupledRows:
    """The rows' side of one block of a crossed model's Laplace fit (see the module docstring)."""

    def __init__(self, lap: GeneralLaplace):
        self.lap, self.st = lap, lap.st
        self.n1 = self.st.L1 * self.st.q1
        self.u1 = np.zeros(self.n1)
        self.u2 = np.zeros(self.st.Q2)
        self.pf: dict[str, PartialFactor] = {}
        # crossed scalar terms held sparse, working weights (no Newton steps, no edge): the modes predicted from the
        # last evaluation's and the chord steps of crossed_modes, split as the factor is (see chord and predict)
        self.now: tuple | None = None  # the working weights and their cross-products at the current modes
        self.last: dict | None = None  # what predicts the next evaluation's modes (kept by deviance)
        self.unpredicted: np.ndarray | None = None  # the last modes while a prediction is tried
        self.eta_next: np.ndarray | None = None  # X beta + offset at the point of the last prediction
        self.y_pred: np.ndarray | None = None  # the forward halves of a prediction's and a chord step's solves
        self.y_chord: np.ndarray | None = None

    @property
    def chords(self) -> bool:
        """Whether the driver may predict the modes and search them by chord steps (it decides as
        GeneralLaplace.pirls does, from the whole model's structure: crossed_sparse; a small block's coupling may
        be held dense, which the steps here serve as well)."""
        st = self.st
        return bool(st.rest) and st.all_scalar and not self.lap.newton and not self.lap.edge

    def restore(self) -> None:
        self.u1 = self.kept
        self.now = None

    def flags(self) -> dict:
        lap = self.lap
        return {"edge": lap.edge, "newton": lap.newton, "observed": lap.observed, "estimated": lap.estimated,
                "chords": self.chords}

    # -- the mode search ------------------------------------------------------------------------------------
    @property
    def u(self) -> np.ndarray:
        return np.concatenate([self.u1, self.u2])

    def _state(self, u: np.ndarray):
        """The rows' state at the modes ``u`` (this block's) and their part of the penalised deviance (the
        deviance and |u1|^2; the driver adds |u2|^2 once), inf where some mean is not valid."""
        lap, st = self.lap, self.st
        re = st.row_effect(st.b_of_u(u, self.lams))
        rs = row_state(lap.resp, self.eta_f + re, lap.lk)
        u1 = u[:self.n1]
        pdev = float(np.sum(lap._weighted(rs.dev))) + float(u1 @ u1)
        ok = np.isfinite(pdev) and (lap.fast or bool(np.all(lap.fam.mu_valid(rs.mu))))
        if ok and lap.edge:
            ok = edge_gap(rs.eta, lap.eta_lo, lap.eta_hi) > 0
        return re, rs, (pdev if ok else np.inf)

    def start(self, theta, beta, u2, how: str, x2=None) -> float | tuple[float, float]:
        """The state at (theta, beta) from this block's last modes (``how`` "last"; they are remembered for
        :meth:`restore`: a search that ends on the edge leaves them as the next one's start), zero (``"zero"``),
        a start inside the link's range (``"moved"``) or the last modes moved by the prediction of :meth:`predict`
        whose coupled part is ``x2`` (``"predicted"``; also returned: the largest change of a leading mode), with
        the coupled modes ``u2``."""
        lap = self.lap
        if self.unpredicted is not None:  # a prediction the driver refused: back to the last modes
            self.u1, self.unpredicted = self.unpredicted, None
        if how in ("last", "predicted"):
            self.kept = self.u1.copy()
        self.theta, self.lams = np.asarray(theta, dtype=float), self.st.lambdas(np.asarray(theta, dtype=float))
        eta_f = self.eta_next if how == "predicted" else None  # (predict's X beta + offset at this beta)
        self.eta_f = eta_f if eta_f is not None else lap._xb(np.asarray(beta, dtype=float)) + lap.off
        self.eta_next = None
        self.now = None
        change = 0.0
        if how == "zero":
            self.u1 = np.zeros(self.n1)
        elif how == "moved":
            self.u1 = lap._moved_in(self.eta_f, self.lams)[:self.n1]
        elif how == "predicted":
            pf = self.pf["F"]
            assert self.y_pred is not None  # predict() came first
            du1 = pf.back(self.y_pred, np.asarray(x2, dtype=float))
            self.y_pred = None
            change = float(np.max(np.abs(du1), initial=0.0))
            self.unpredicted, self.u1 = self.u1, self.u1 + du1
        self.u2 = np.asarray(u2, dtype=float).copy()
        self.re, self.rs, pdev = self._state(self.u)
        return (pdev, change) if how == "predicted" else pdev

    def predict(self, theta, beta) -> tuple[np.ndarray, np.ndarray] | None:
        """The forward half of :func:`~glmmlab.engine.solvers.crossed_modes.mode_change` from the last
        evaluation's modes to (theta, beta) with the last factor "F" (its right-hand side's leading part solved
        here, kept for :meth:`start`): this block's part of the coupled right-hand side and its C y1; None without
        a last evaluation to predict from."""
        last, st, lap = self.last, self.st, self.lap
        if last is None or "F" not in self.pf:
            return None
        theta = np.asarray(theta, dtype=float)
        cp, u, lam, L1 = last["cp"], last["u"], last["lam"], self.n1
        dlam = lambda_vector(st, st.lambdas(theta)) - lam
        rhs = dlam * coupled_score(cp, lam, u, L1) - lam * times_a(cp, dlam * u, L1)
        self.eta_next = lap._xb(np.asarray(beta, dtype=float)) + lap.off
        xb = self.eta_next - last["eta_f"]
        if np.any(xb != 0.0):
            xb *= last["w"]
            rhs -= lam * np.concatenate([st.lead_sums_z(xb)[0][:, 0], st.scalar_coupling().z2_sums(xb)])
        self.y_pred, c = self.pf["F"].forward(rhs[:L1])
        return rhs[L1:], c

    def factor(self, key: str, kind: str, accept: bool = False) -> dict | None:
        """This block's parts of one factor of the penalised system (kept under ``key`` for the solves): ``kind``
        "newton" (plain Newton weights; None where not positive definite), "step" (the mode search's weights),
        "fisher_r" / "fisher" (the expected information, with / without the working response), "observed"
        (the observed information) or "X" (the expected information with the scaled design). ``accept``: first
        move to the last candidate (:meth:`accept`, a round trip saved)."""
        if accept:
            self.accept()
        lap, rs, re = self.lap, self.rs, self.re
        E = None
        if kind == "step" and self.now is not None:  # the cross-products of chord() at these modes
            cp = self.now[1]
        elif kind == "newton":
            w, r = lap._newton_working(rs, re)
            E = r[:, None]
        elif kind == "step":
            w, r = lap._edge_working(rs, re) if lap.newton else (lap._weighted(rs.w), lap._working_response(rs, re))
            E = r[:, None]
        elif kind in ("fisher_r", "fisher", "X"):
            w = lap._weighted(rs.w)
            if kind == "fisher_r":
                E = lap._working_response(rs, re)[:, None]
            elif kind == "X":
                E = np.asarray(lap.Xs, dtype=float)
        else:  # "observed"
            w = 0.5 * lap.pw * rs.dev_eta2
        if not (kind == "step" and self.now is not None):
            cp = self.st.crossprods(w, E)
            if kind == "step" and self.chords:  # kept for the prediction of the next evaluation's modes
                self.now = (w, cp)
        # factored once: the sparse product C C', not the stored products the engine builds at once for
        # cross-products with many pairs (measured on a block of the 20M-row crossed benchmark, 990,922 rows,
        # 10,000 users x 2,000 items: 1.5-1.7 s CPU to build and use them against 0.6 s for the product)
        cp._pairs = False
        try:
            pf = PartialFactor(self.st, cp, self.theta)
        except np.linalg.LinAlgError:
            if kind == "newton":
                return None
            raise
        finally:  # the factorisation's caches: a dense Q2 x Q2 copy of A22 (32 MB at 2,000 levels) per block
            cp._A22 = cp._rows21 = None
        self.pf[key] = pf
        return pf.sums()

    def chord(self, accept: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The forward half of a chord step (:class:`~glmmlab.engine.solvers.crossed_modes.ChordModes`) with the
        last factor "F": the working weights' cross-products at the current modes (kept for a factor at these
        modes), the step's right-hand side Lambda s - u (s the score) with its leading part solved here; this
        block's part of the coupled right-hand side and its C y1 (``accept``: see :meth:`factor`)."""
        if accept:
            self.accept()
        lap, st = self.lap, self.st
        w = lap._weighted(self.rs.w)
        cp = st.crossprods(w, lap._working_response(self.rs, self.re)[:, None])
        self.now = (w, cp)
        lam = lambda_vector(st, self.lams)
        rhs = lam * coupled_score(cp, lam, self.u, self.n1)
        rhs[:self.n1] -= self.u1
        self.y_chord, c = self.pf["F"].forward(rhs[:self.n1])
        return rhs[self.n1:], c

    def chord_step(self, x2) -> tuple[float, float]:
        """The chord step given its coupled part ``x2`` (the driver's): kept as the step, with its largest change
        of a leading mode and :meth:`try_step` of the full step."""
        x2 = np.asarray(x2, dtype=float)
        assert self.y_chord is not None  # chord() came first
        d1 = self.pf["F"].back(self.y_chord, x2)
        self.y_chord = None
        self.delta = np.concatenate([d1, x2])
        return float(np.max(np.abs(d1), initial=0.0)), self.try_step(1.0)

    def step(self, key: str, u2_new, trial: bool = False) -> float | tuple[float, float]:
        """The full step to the modes solved with factor ``key`` (the driver's ``u2_new``): kept, and the largest
        change of this block's leading modes; ``trial``: with :meth:`try_step` of the full step (a round trip
        saved where no edge cuts the step first)."""
        pf = self.pf[key]
        u1_new = pf.u1(pf.G1[:, :, 0], np.asarray(u2_new, dtype=float))
        self.delta = np.concatenate([u1_new - self.u1, np.asarray(u2_new, dtype=float) - self.u2])
        change = float(np.max(np.abs(self.delta[:self.n1]), initial=0.0))
        return (change, self.try_step(1.0)) if trial else change

    def edge_step(self) -> float:
        st = self.st
        return self.lap._edge_step(self.eta_f + self.re, st.row_effect(st.b_of_u(self.delta, self.lams)))

    def try_step(self, t: float) -> float:
        """The rows' part of the penalised deviance at the modes moved by ``t`` times the step (kept)."""
        cand = self.u + t * self.delta
        re, rs, pdev = self._state(cand)
        self.cand = (cand, re, rs)
        return pdev

    def accept(self) -> tuple[float, float]:
        """Move to the last candidate; for the edge test the rows' distance from the link's edge and largest
        |eta|."""
        u, self.re, self.rs = self.cand
        self.u1, self.u2 = u[:self.n1], u[self.n1:]
        del self.cand
        self.now = None
        self.unpredicted = None
        eta = self.eta_f + self.re
        return edge_gap(eta, self.lap.eta_lo, self.lap.eta_hi), float(np.max(np.abs(eta), initial=0.0))

    def deviance(self, accept: bool = False, keep: bool = False) -> tuple[float, float, bool]:
        """The rows' weighted deviance and |u1|^2 at the modes, and :meth:`canonical` (``accept``: see
        :meth:`factor`; ``keep``: the modes and their cross-products are kept to predict the next evaluation's,
        as GeneralLaplace keeps them, when they are those of the current modes)."""
        if accept:
            self.accept()
        # the full step's candidate computed with the search's last step, which found the modes (its row state and
        # effects: ~30 MB a 1M-row block would hold until the next evaluation)
        self.__dict__.pop("cand", None)
        self.unpredicted = None
        self.last = None
        if keep and self.now is not None:
            w, cp = self.now
            self.last = {"cp": cp, "w": w, "u": self.u, "lam": lambda_vector(self.st, self.lams),
                         "eta_f": self.eta_f}
        return float(np.sum(self.lap._weighted(self.rs.dev))), float(self.u1 @ self.u1), self.canonical()

    # -- the exact gradient (GeneralLaplace._gradient_split with the factor split) ------------------------------
    def _weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """d dev/d eta, the weights' derivative in eta, the observed and the log-determinant's weights."""
        lap, rs = self.lap, self.rs
        d1, w_eta = lap._weighted(rs.dev_eta), lap._weighted(rs.w_eta)
        wobs, w = 0.5 * lap._weighted(rs.dev_eta2), lap._weighted(rs.w)
        if lap.observed:  # the log-determinant's weights are the observed information
            w = wobs
            w_eta = 0.5 * lap.pw * dev_eta3(lap.fam, lap.lk, lap.y, rs)
        return d1, w_eta, wobs, w

    def canonical(self) -> bool:
        """Whether the observed information equals the log-determinant's on these rows (then K is F)."""
        _, _, wobs, w = self._weights()
        return bool(np.all(np.abs(wobs - w) <= 1e-12 * np.abs(w)))

    def gradient_sums(self, key: str, Sinv, k_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows' quadratic forms s_i = z~_i' H^-1 z~_i (H: the factor ``key``, (H^-1)_22 = ``Sinv``) and their
        sums S per level: the leading levels' kept, this block's part of the coupled levels' returned, with
        :meth:`gradient_forward` with the factor ``k_key``."""
        st = self.st
        d1, w_eta, wobs, w = self._weights()
        n = self.rs.mu.shape[0]
        codes, Zt, _, starts = scaled_rows(st, self.lams)
        Sinv = np.asarray(Sinv)
        pattern = self._pattern(key, Sinv)
        if pattern is not None:  # per row, the block of H^-1 at its own levels of every factor
            P = pattern.row_blocks(Sinv, codes[0], [o + c for o, c in zip(st.rest_offsets, codes[1:])])
        else:
            H11, H12 = self.pf[key].lead_inverse(Sinv)  # the dense rows of (H^-1)_12
            P = row_inverse_blocks(st, H11, H12, Sinv, codes, starts, n)
        hz = np.einsum("nab,nb->na", P, Zt)
        del P
        s = np.einsum("na,na->n", Zt, hz)
        sw = s * w_eta
        pieces = level_sums(st, codes, Zt, starts, sw)
        self._g = {"codes": codes, "Zt": Zt, "starts": starts, "hz": hz, "sw": sw, "S1": pieces[0],
                   "weights": (d1, wobs, w)}
        return (np.concatenate(pieces[1:]), *self.gradient_forward(k_key))

    def _pattern(self, key: str, Sinv: np.ndarray) -> PatternInverse | None:
        """H^-1 at the pairs of levels this block's rows meet, for scalar terms with a sparse coupling (None
        otherwise: the dense rows of (H^-1)_12, :meth:`PartialFactor.lead_inverse`)."""
        pf = self.pf[key]
        if not (self.st.all_scalar and sparse.issparse(pf.C)):
            return None
        # the pairs within each leading level laid out once per fit (coupled_columns.ColumnPairs, as in memory:
        # on a 1M-row block of the 20M-row benchmark, 10,000 users x 2,000 items, 2.9 s -> see the notes)
        return PatternInverse(pf.L11[:, 0, 0], pf.C, Sinv, self.st.column_pairs(pf.C))


    def gradient_forward(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The forward halves of K^-1 (2u + S) and K^-1 (-2u) (K: the factor ``key``) on the leading levels; this
        block's C y1 of each."""
        pf = self.pf[key]
        y0, c0 = pf.forward(2.0 * self.u1 + self._g["S1"])
        y1, c1 = pf.forward(-2.0 * self.u1)
        self._g["y"] = (key, y0, y1)
        return c0, c1

    def gradient(self, x0, x1) -> dict:
        """This block's part of the gradient (split as c g_c + g_0, and the deviance's direct part where the
        dispersion is estimated), given the coupled halves of the two solves."""
        lap, st, g = self.lap, self.st, self._g
        key, y0, y1 = g["y"]
        pf = self.pf[key]
        x0, x1 = np.asarray(x0, dtype=float), np.asarray(x1, dtype=float)
        v0 = np.concatenate([pf.back(y0, x0), x0])
        v1 = np.concatenate([pf.back(y1, x1), x1])
        d1, wobs, w = g["weights"]
        g_c, g_0, _ = gradient_parts(st, lap._xt, self.u, v0, v1, (g["codes"], g["Zt"], g["starts"], g["hz"]),
                                     (d1, g["sw"], wobs, w))
        self._g = {}
        res = {"g_c": g_c, "g_0": g_0}
        if lap.estimated:
            res["direct"] = lap._direct_gradient(self.theta, {"rs": self.rs, "u": self.u})
        # the row state and effects are not needed again before the next evaluation's start (which makes its own):
        # with the derivatives the gradient cached on it, ~70 MB of a 1M-row block, a dozen blocks to a worker
        del self.rs, self.re
        # from Lambda's entries to theta (structured terms), as GeneralLaplace.parts does
        return {k: structured.to_theta(st.blocks, self.theta, v) for k, v in res.items()}

    # -- at the optimum ---------------------------------------------------------------------------------------
    def final(self, key: str, Sinv, beta) -> dict:
        """This block's leading modes and their conditional covariances (the inverse of the factor ``key``), and
        its rows' sums; the modes are kept for :meth:`rows`."""
        lap = self.lap
        Sinv = np.asarray(Sinv)
        pattern = self._pattern(key, Sinv)
        cond1 = pattern.h11.reshape(-1, 1, 1) if pattern is not None else self.pf[key].lead_inverse(Sinv)[0]
        fin = lap._row_parts({"rs": self.rs, "re": self.re})
        pearson = laplace_rows(fin, lap.pw)["pearson_residuals"]
        mu = self.rs.mu
        self.final_at = (self.theta, np.asarray(beta, dtype=float), self.u)
        return {"u1": self.u1, "cond1": cond1, "dev_sum": float(np.sum(fin["dev_rows"])),
                "pearson2": float(pearson @ pearson), "extreme": int(np.sum((mu < 1e-8) | (mu > 1 - 1e-8)))}

    def rows(self) -> dict:
        """The rows' results at the modes of the last :meth:`final`."""
        lap = self.lap
        theta, beta, u = self.final_at
        self.lams = self.st.lambdas(theta)
        self.eta_f = lap._xb(beta) + lap.off
        re, rs, _ = self._state(u)
        return laplace_rows(lap._row_parts({"rs": rs, "re": re}), lap.pw)

    def reset(self) -> None:
        self.u1 = np.zeros(self.n1)
        self.pf = {}
        self.now = self.last = self.unpredicted = None
