"""The exact gradient of the Laplace deviance of one block of rows (a mixin of
:class:`~glmmlab.engine.solvers.laplace.GeneralLaplace`): in (theta, beta) through the implicit function theorem at
the modes, every factor entering through its rows' own levels (one grouping factor: per-level sums first); in the
family's own parameters and in the predictors of a zero or dispersion model (their rows' partials combined with the
log-determinant's pieces of the same pass)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from glmmlab.engine.families.distributions import dev_eta3
from glmmlab.engine.families.response import Response
from glmmlab.engine.families.state import row_state
from glmmlab.engine.solvers import structured
from glmmlab.engine.solvers.blocked_cholesky import batched_inverse_lower, factor


class LaplaceGradient:
    """The gradient methods of :class:`GeneralLaplace` (which holds the block's rows, structure and family)."""

    # provided by GeneralLaplace
    st: Any
    fam: Any
    lk: Any
    y: np.ndarray
    pw: np.ndarray
    trials: np.ndarray | None
    data: dict | None
    resp: Response
    Xs: np.ndarray
    nt: int
    observed: bool
    psi_held: tuple[str, ...] = ()  # parts of the family's parameters whose gradient is not needed (left 0)

    def _weighted(self, a: np.ndarray) -> np.ndarray:  # pragma: no cover - GeneralLaplace's
        raise NotImplementedError

    def _xt(self, v: np.ndarray) -> np.ndarray:  # pragma: no cover - GeneralLaplace's
        raise NotImplementedError

    def _unit_slope(self) -> bool:
        """Whether the gradient's c = d(-2 log p)/d(total deviance) is 1 whatever the deviance (a family without a
        dispersion, or one estimated with the other parameters: see Likelihood.gradient), so that the parts
        c g_c + g_0 may be added here."""
        return bool(getattr(self, "estimated", False)) or not self.fam.has_dispersion

    def _psi_gradient(self, m: dict) -> np.ndarray:
        """This block's part of the gradient of D in the family's own parameters (on the optimiser's scale,
        :meth:`Family.to_internal`) at fixed (theta, beta). The modes make dev + |u|^2 stationary, so the
        parameters act through the data term directly and through log det H directly and by moving the modes:
        dD/dpsi = -2 sum pw dlog f/dpsi + sum_i s_i dW_i/dpsi - sum_i t_i pw_i d(dev_eta_i / 2)/dpsi, with W the
        observed information per row, s_i = z~_i' H^-1 z~_i and t = Z Lambda H^-1 S (S the log-determinant's
        derivative in u), both from the gradient's pass (m["s_rows"], m["t_rows"]). The rows' derivatives in the
        parameters are central differences of the member's row state at the modes' linear predictors: no mode
        search, where differences of D would need two per parameter."""
        fam = self.fam
        x = fam.to_internal(fam.parameters)
        eta = m["rs"].eta
        s_rows, t_rows = m["s_rows"], m["t_rows"]
        g = np.empty(x.size)
        h = 1e-5
        positions = range(x.size)
        row_parts = getattr(fam, "row_parts", None)
        if row_parts is not None:
            # coefficients of a predictor that varies by row (a zero or dispersion model): the rows' partials in
            # that predictor (in closed form where the family has them, else one pair of differences for all
            # rows), then X' times the rows' gradient
            for part, where in row_parts():
                if part in self.psi_held:  # held by the optimiser (a hurdle's zero model): not read
                    g[where] = 0.0
                    continue
                exact = fam.row_partials(part, self.resp, m["rs"])
                if exact is not None:
                    d_ll, d_e1, d_e2 = exact
                else:
                    sides = []
                    for sign in (1.0, -1.0):
                        rs = row_state(self.resp.with_family(fam.shifted(part, sign * h)),
                                       eta, self.lk)
                        sides.append((-0.5 * rs.dev, rs.dev_eta, rs.dev_eta2))
                    d_ll, d_e1, d_e2 = ((a - b) / (2.0 * h) for a, b in zip(*sides))
                rows = (-2.0 * self._weighted(d_ll) + 0.5 * s_rows * self._weighted(d_e2)
                        - 0.5 * t_rows * self._weighted(d_e1))
                g[where] = getattr(self.resp, f"{part}_X").T @ rows
            positions = fam.rest_positions()
        # a family that gives its rows' partials in its parameters in closed form (the t's): no differences
        exact_rows = getattr(fam, "parameter_partials", None) if row_parts is None else None
        if exact_rows is not None:
            for k, (d_ll, d_e1, d_e2) in enumerate(exact_rows(self.resp, m["rs"])):
                g[k] = (-2.0 * float(np.sum(self._weighted(d_ll))) + 0.5 * float(np.sum(s_rows * self._weighted(d_e2)))
                        - 0.5 * float(np.sum(t_rows * self._weighted(d_e1))))
            return g
        # a family that gives its response constant's partials in closed form (the Tweedie's series): the sides
        # keep this response (its constant cancels) and the partial is added
        sat_partials = getattr(fam, "sat_partials", None) if row_parts is None else None
        d_sat = sat_partials(self.y) if sat_partials is not None else None
        for j, k in enumerate(positions):
            sides = []
            for sign in (1.0, -1.0):
                xk = x.copy()
                xk[k] += sign * h
                member = fam.with_parameters(fam.from_internal(xk))
                resp = self.resp.with_family(member) if row_parts is not None or d_sat is not None else \
                    Response(self.y, member, self.trials, self.data)
                rs = row_state(resp, eta, self.lk)
                sides.append((getattr(resp, "sat", 0.0) - 0.5 * rs.dev, rs.dev_eta, rs.dev_eta2))
            d_ll, d_e1, d_e2 = ((a - b) / (2.0 * h) for a, b in zip(*sides))
            if d_sat is not None:
                d_ll = d_ll + d_sat[j]
            g[k] = (-2.0 * float(np.sum(self._weighted(d_ll))) + 0.5 * float(np.sum(s_rows * self._weighted(d_e2)))
                    - 0.5 * float(np.sum(t_rows * self._weighted(d_e1))))
        return g

    def _direct_gradient(self, theta: np.ndarray, m: dict) -> np.ndarray:
        """The partial derivative of the weighted total deviance in (theta, beta) with the modes held fixed:
        over beta X_s' d1, over the theta entry at (ra, cb) of a factor's Lambda sum_i d1_i z_i[ra] u[cb] at the
        row's level (d1 = d dev / d eta per row)."""
        st = self.st
        d1 = self._weighted(m["rs"].dev_eta)
        us = st.split_u(m["u"])
        grad_theta = []
        for t, b in enumerate(st.blocks):
            if t == 0:
                G = st.lead_sums_z(d1)[0]
            else:
                codes = np.asarray(b.codes, dtype=np.intp)
                G = np.column_stack([np.bincount(codes, weights=d1 * b.Z[:, a], minlength=b.n_levels)
                                     for a in range(b.q)])
            grad_theta += [float(G[:, ra] @ us[t][:, cb]) for ra, cb in b.entry_positions()]
        return np.concatenate([np.array(grad_theta), self._xt(d1)])

    def _gradient_split(self, theta: np.ndarray, m: dict) -> tuple[np.ndarray, np.ndarray]:
        """The exact gradient of D through the implicit function theorem; every factor block enters through its
        rows' own levels."""
        st = self.st
        lams = st.lambdas(theta)
        rs, pw, F = m["rs"], self.pw, m["F"]
        d1 = self._weighted(rs.dev_eta)
        if rs.observed_is_expected and not self.observed:  # a canonical pair's fast path: no check over the rows
            w_eta, w = self._weighted(rs.w_eta), self._weighted(rs.w)
            wobs, canonical = w, True
        else:
            wobs = 0.5 * self._weighted(rs.dev_eta2)
            if self.observed:  # the log-determinant's weights are the observed information (negative binomial)
                F = m["F_ld"]
                w = wobs
                w_eta = 0.5 * pw * dev_eta3(self.fam, self.lk, self.y, rs)
            else:
                w_eta, w = self._weighted(rs.w_eta), self._weighted(rs.w)
            # |wobs - w| <= 1e-12 |w| (np.allclose's rule with rtol 1e-12, without its cost)
            canonical = bool(np.all(np.abs(wobs - w) <= 1e-12 * np.abs(w)))
        K = F if canonical else factor(st, st.crossprods(wobs, None), theta)
        if not st.rest:
            return self._gradient_one_factor(lams[0], m, F, K, d1, w_eta, wobs, m["cp_ld"].A11)
        n = self.Xs.shape[0]
        codes, Zt, qs, starts = scaled_rows(st, lams)
        P = self._row_inverse_blocks(F, codes, qs, starts, n)
        hz = np.einsum("nab,nb->na", P, Zt)  # (H^-1 z~_i) at the row's own levels
        s = np.einsum("na,na->n", Zt, hz)
        sw = s * w_eta
        # g_u = dD/du at the modes = 2 (1 - c) u + S, scattered to each factor's levels; the gradient is linear
        # in c, so it is returned as (g_c, g_0) with gradient = c g_c + g_0 (blocks add both up before c is known)
        S = np.concatenate(level_sums(st, codes, Zt, starts, sw))
        v0 = K.solve(2.0 * m["u"] + S)
        v1 = K.solve(-2.0 * m["u"])
        m["s_rows"] = s  # for the family parameters' gradient (see _psi_gradient)
        g_c, g_0, m["t_rows"] = gradient_parts(st, self._xt, m["u"], v0, v1, (codes, Zt, starts, hz),
                                               (d1, sw, wobs, w))
        return g_c, g_0

    def _gradient_one_factor(self, lam: np.ndarray, m: dict, F, K, d1: np.ndarray, w_eta: np.ndarray,
                             wobs: np.ndarray, Aw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_gradient_split` for one grouping factor: every sum over rows that meets a per-level matrix is
        taken per level first (Aw = Z'WZ per level, from the factor's own cross-products), so the rows are
        passed over a few times instead of once per term and theta entry."""
        st = self.st
        L1, q = st.L1, st.q1
        U = m["u"].reshape(L1, q)
        Linv = batched_inverse_lower(F.L11)
        P = np.matmul(np.swapaxes(Linv, 1, 2), Linv)  # diagonal blocks of H^-1
        s = st.lead_quadratic(lam @ P @ lam.T)  # z~_i' H^-1 z~_i with z~ = Lambda' z
        sw = s * w_eta
        # the rows' weights of the beta gradient's two parts, a1 (the c part) and a0
        a1, a0 = np.empty(d1.size), np.empty(d1.size)
        v1 = K.solve(-2.0 * m["u"])  # the c part needs no S: its row sums go with those of sw and d1
        t1 = st.lead_dot(v1.reshape(L1, q) @ lam.T)
        np.multiply(wobs, t1, out=a1)
        np.subtract(d1, a1, out=a1)
        SZ, g, AZ1 = st.lead_sums_z(sw, d1, a1)
        S = SZ @ lam
        const = (Aw @ lam @ P).sum(axis=0)  # sum_j Aw_j Lambda P_j: the log-determinant's direct term
        tp = st.lead.entry_positions()
        v0 = K.solve(2.0 * m["u"] + S.ravel())
        V0 = v0.reshape(L1, q)
        t0 = st.lead_dot(V0 @ lam.T)
        m["s_rows"], m["t_rows"] = s, t0 + t1  # for the family parameters' gradient (_psi_gradient)
        np.multiply(wobs, t0, out=a0)
        np.subtract(sw, a0, out=a0)
        AZ0 = st.lead_sums_z(a0)[0]
        if self._unit_slope():  # the gradient is g_c + g_0: X_s'(a1 + a0) as one part, one pass over the design
            a0 += a1
            gb_c, gb_0 = np.zeros(self.Xs.shape[1]), self._xt(a0)
        else:  # two products with one vector each (BLAS's product with an n x 2 matrix is slower than both)
            gb_c, gb_0 = self._xt(a1), self._xt(a0)
        out = []
        for V, AZ, gb, constant in ((v1.reshape(L1, q), AZ1, gb_c, False), (V0, AZ0, gb_0, True)):
            grad_theta = np.array([float(AZ[:, ra] @ U[:, cb] - 0.5 * (V[:, cb] @ g[:, ra])) for ra, cb in tp])
            if constant:
                grad_theta += 2.0 * np.array([const[ra, cb] for ra, cb in tp])
            out.append(np.concatenate([grad_theta, gb]))
        return out[0], out[1]

    def _row_inverse_blocks(self, F, codes, qs, starts, n) -> np.ndarray:
        """Per row, the q_tot x q_tot block of H^-1 at the row's own levels of every factor."""
        st = self.st
        if st.rest and st.q1 == 1 and st.all_scalar and sparse.issparse(F.C21):  # only the pairs the rows meet
            return F.scalar_row_inverse(codes[0], [o + c for o, c in zip(st.rest_offsets, codes[1:])])
        H11, H12, H22 = F.inverse_parts()
        return row_inverse_blocks(st, H11, H12, H22, codes, starts, n)


def scaled_rows(st, lams: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, list[int], np.ndarray]:
    """Per row, every factor's level code and its scaled columns z~_it = Lambda_t' z_it, stacked (n, q_tot);
    with each factor's q and where its columns start there."""
    codes = [np.asarray(b.codes, dtype=np.intp) for b in st.blocks]
    Zt = np.concatenate([b.Z @ L for b, L in zip(st.blocks, lams)], axis=1)
    qs = [b.q for b in st.blocks]
    starts = np.concatenate([[0], np.cumsum(qs)]).astype(int)
    return codes, Zt, qs, starts


def level_sums(st, codes: list[np.ndarray], Zt: np.ndarray, starts: np.ndarray,
               weights: np.ndarray) -> list[np.ndarray]:
    """Per factor, sum_i weights_i z~_it over each level's rows (levels x q, raveled), from :func:`scaled_rows`."""
    pieces = []
    for t, b in enumerate(st.blocks):
        zt = Zt[:, starts[t]: starts[t + 1]]
        part = st.lead_sum(weights[:, None] * zt) if t == 0 else np.column_stack(
            [np.bincount(codes[t], weights=weights * zt[:, a], minlength=b.n_levels) for a in range(b.q)])
        pieces.append(part.ravel())
    return pieces


def row_inverse_blocks(st, H11: np.ndarray, H12: np.ndarray | None, H22: np.ndarray | None, codes: list,
                       starts: np.ndarray, n: int) -> np.ndarray:
    """Per row, the q_tot x q_tot block of H^-1 at the row's own levels of every factor, from the diagonal blocks
    of (H^-1)_11 per leading level and the dense (H^-1)_12 and (H^-1)_22 (``st``: the rows' structure,
    ``codes`` each factor's level per row, ``starts`` the factors' offsets in a row's block)."""
    qt, q1 = int(starts[-1]), st.q1
    P = np.empty((n, qt, qt))
    P[:, :q1, :q1] = st.lead_expand(H11)
    if H12 is None or H22 is None:
        return P
    rows1 = codes[0][:, None] * q1 + np.arange(q1)[None, :]  # (n, q1) rows of H12
    cols = [o + codes[t][:, None] * b.q + np.arange(b.q)[None, :]
            for t, (b, o) in enumerate(zip(st.rest, st.rest_offsets), start=1)]
    for t, ct in enumerate(cols, start=1):
        s0, s1 = starts[t], starts[t + 1]
        blk = H12[rows1[:, :, None], ct[:, None, :]]
        P[:, :q1, s0:s1] = blk
        P[:, s0:s1, :q1] = np.swapaxes(blk, 1, 2)
        for t2, ct2 in enumerate(cols, start=1):
            P[:, s0:s1, starts[t2]: starts[t2 + 1]] = H22[ct[:, :, None], ct2[:, None, :]]
    return P


def gradient_parts(st, xt, u: np.ndarray, v0: np.ndarray, v1: np.ndarray, rows: tuple, weights: tuple
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact gradient's two parts over (Lambda's free entries, beta), as c g_c + g_0 (c: the dispersion slope,
    applied after blocks of rows add their parts), from the solves v1 = K^-1 (-2u) (the c part) and
    v0 = K^-1 (2u + S) (the constant part) at the modes ``u``. ``rows``: (codes, Zt, starts) of
    :func:`scaled_rows` and hz = H^-1 z~_i at each row's own levels; ``weights``: the rows' d dev/d eta, s_i times
    the weights' derivative, the observed information and the log-determinant's weights; ``xt``: X' times a
    vector. Also the rows' z~_i' (v0 + v1) (the family parameters' gradient uses them). For the rows of the
    whole model or of a Dask block cut by the leading factor (``u``, ``v0``, ``v1`` then its leading levels'
    and every coupled level's)."""
    codes, Zt, starts, hz = rows
    d1, sw, wobs, w = weights
    n = Zt.shape[0]
    u_blocks = st.split_u(u)
    out = []
    t_rows = np.zeros(n)
    for v, a_i in ((v1, d1), (v0, sw)):  # (c part, constant part)
        v_blocks = st.split_u(v)
        tv = np.zeros(n)
        for t in range(len(st.blocks)):
            vt_rows = st.lead_expand(v_blocks[t]) if t == 0 else v_blocks[t][codes[t]]
            tv += np.einsum("na,na->n", Zt[:, starts[t]: starts[t + 1]], vt_rows)
        t_rows += tv
        a_i = a_i - wobs * tv
        grad_beta = xt(a_i)
        grad_theta = np.empty(structured.n_entries(st.blocks))
        k = 0
        constant = v is v0
        for t, b in enumerate(st.blocks):
            Zr, vt = b.Z, v_blocks[t]
            ut = st.lead_expand(u_blocks[t]) if t == 0 else u_blocks[t][codes[t]]
            hzt = hz[:, starts[t]: starts[t + 1]]
            g = st.lead_sum(d1[:, None] * Zr) if t == 0 else np.column_stack(
                [np.bincount(codes[t], weights=d1 * Zr[:, a], minlength=b.n_levels) for a in range(b.q)])
            for ra, cb in b.entry_positions():
                val = float(np.sum(a_i * Zr[:, ra] * ut[:, cb]) - 0.5 * np.sum(vt[:, cb] * g[:, ra]))
                if constant:
                    val += 2.0 * float(np.sum(w * Zr[:, ra] * hzt[:, cb]))
                grad_theta[k] = val
                k += 1
        out.append(np.concatenate([grad_theta, grad_beta]))
    return out[0], out[1], t_rows
