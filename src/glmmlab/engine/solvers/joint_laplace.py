"""The Laplace approximation of a model whose zero model has random effects of its own (glmmTMB's
``ziformula = ~ 1 + (1 | site)``): the mean's and the zero model's linear predictors both carry random effects, so a
row's log-density couples them (its Hessian in the two predictors is a 2 x 2 matrix per row).

Supported: scalar random-effects terms, in the mean and in the zero model, on one grouping factor (the usual
``(1 | site)`` in both parts). Per level j the effects u_j (one per term) have the penalised Hessian
H_j = I + Lambda (sum over the level's rows of a_i a_i' * W_i / 2) Lambda, Lambda = diag(theta), W_i the Hessian of
the row's deviance (-2 log f) in the predictors of the terms' parts, a_i the terms' columns; the mode search is
Newton's (with a ridge where a level's Hessian is not positive definite). The Laplace deviance is
-2 log f(y | modes) + |u|^2 + sum_j log det H_j. Its gradient in the outer parameters (theta, the mean's and the
other parts' coefficients) is exact at the modes (JointLaplace.value_and_grad; every evaluation a converged mode
search from the last modes); the standard errors from differences of that gradient, as glmmTMB's from its
Hessian. A zero-inflated Poisson under the log link with one intercept per part evaluates on fused rows
(:mod:`~glmmlab.engine.solvers.joint_zip`) and is optimised by Newton steps from an approximate Hessian
(:mod:`~glmmlab.engine.solvers.joint_search`); the other models by L-BFGS-B.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy.optimize import minimize

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.modelled import ModelledFamily
from glmmlab.engine.families.response import Response
from glmmlab.engine.families.state import row_state
from glmmlab.engine.inference.results import ConditionalModes
from glmmlab.engine.progress import report
from glmmlab.engine.solvers.assemble import _assemble
from glmmlab.engine.solvers.joint_levels import _inverse, _logdet_positive, _solve_positive, intercepts_gradient
from glmmlab.engine.solvers.joint_search import (
    handed_over,
    last_two,
    newton_metric,
    polish_to_rounding,
    theta_step_limit,
)
from glmmlab.engine.solvers.joint_twin import DistinctTwin
from glmmlab.engine.solvers.joint_zip import zip_rows
from glmmlab.engine.solvers.laplace import MAX_PREDICTED_STEP
from glmmlab.engine.solvers.laplace_fit import fixed_effects_covariance
from glmmlab.engine.solvers.laplace_start import off_the_boundary
from glmmlab.engine.solvers.modelled_glm import glm_objective, glm_stage, glm_start_hessian
from glmmlab.engine.solvers.modelled_start import (
    modelled_results,
    modelled_start,
)
from glmmlab.engine.solvers.newton import newton_run
from glmmlab.engine.solvers.optimizer import (
    HANDOVER_FTOL,
    off_bound,
)
from glmmlab.engine.solvers.secant import Recent


class JointLaplace(DistinctTwin):
    """The Laplace deviance D(theta, beta, psi) of a mean and a zero model with scalar random-effects terms on one
    grouping factor (``codes``: each row's level of it, ``L`` levels)."""

    def __init__(self, codes: np.ndarray, L: int, A: np.ndarray, part: np.ndarray, Xs: np.ndarray, y: np.ndarray,
                 pw: np.ndarray, off: np.ndarray, fam: ModelledFamily, lk, data: dict):
        self.codes, self.L, self.A, self.part = codes, L, A, part  # A: (n, q) the terms' columns; part 0/1
        self.Xs, self.y, self.pw, self.off, self.lk = Xs, y, np.asarray(pw, dtype=float), off, lk
        self.unit = bool(np.all(self.pw == 1.0))  # then pw * a is a itself, and the products are skipped
        self.q = A.shape[1]
        self.zi_off0 = data.get("zi_off")
        self.resp = Response(y, fam, None, {k: v for k, v in data.items() if v is not None})
        self.fam = fam
        self.u = np.zeros((L, self.q))
        self.evaluations = 0
        self._last: dict | None = None  # what predicts the next modes (see _predicted_modes)
        self._data = data
        # one term per part with a column of ones (the usual (1 | g) in both) on rows sorted by level: each part's
        # random effect is theta_k u_jk, and the per-level sums are runs of rows (one reduceat for all of them)
        self._single = [int(np.flatnonzero(part == c)[0]) if np.count_nonzero(part == c) == 1 else None
                        for c in (0, 1)]
        self._ones = bool(np.all(A == 1.0))
        self._sums = np.zeros((L, 6))
        counts = np.bincount(codes, minlength=L)
        self._runs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp) \
            if bool(np.all(codes[1:] >= codes[:-1])) and bool(np.all(counts > 0)) else None
        # one intercept per part (mean, zero) on sorted rows: the gradient of _intercepts_gradient
        self._intercepts = self._ones and self._runs is not None and list(part) == [0, 1]
        # a zero-inflated Poisson under the log link with one intercept per part: the evaluations' rows in one pass
        self._zip = zip_rows(fam, lk, y, self.pw, codes) if self._intercepts else None
        self._twin: JointLaplace | None | bool = None  # the distinct rows' (see DistinctTwin); False: none
        self._designs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # designs on the twin's rows, by id

    def set_member(self, psi: np.ndarray) -> None:
        fam = self.fam.with_parameters(psi)
        assert isinstance(fam, ModelledFamily)
        self.fam = fam
        self.resp = self.resp.with_family(fam)

    def _state(self, theta, eta_f, u):
        k0, k1 = self._single
        if self._ones and k0 is not None and k1 is not None:  # one intercept per part
            cond, zi = theta[k0] * u[self.codes, k0], theta[k1] * u[self.codes, k1]
        else:
            contrib = self.A * theta * u[self.codes]  # (n, q) each term's effect on its part's predictor
            cond = contrib[:, self.part == 0].sum(axis=1)
            zi = contrib[:, self.part == 1].sum(axis=1)
        self.resp.zi_off = zi if self.zi_off0 is None else self.zi_off0 + zi
        rs = row_state(self.resp, eta_f + cond, self.lk)
        P = float(np.sum(rs.dev if self.unit else self.pw * rs.dev)) + float(np.sum(u * u))
        return rs, cond, P

    def _row_derivatives(self, rs) -> tuple[np.ndarray, np.ndarray]:
        """Per row the deviance's (-2 log f, prior-weighted) gradient in the two predictors (n, 2) and its Hessian
        (n, 2, 2)."""
        g_z, w_cz, w_zz = self.fam.zi_deviance_derivatives(self.resp, rs)
        n = g_z.shape[0]
        B = np.empty((n, 6))  # g (parts mean, zero) and W side by side: their level sums are one call
        B[:, 0], B[:, 1], B[:, 2], B[:, 3], B[:, 5] = rs.dev_eta, g_z, rs.dev_eta2, w_cz, w_zz
        B[:, 4] = B[:, 3]
        if not self.unit:
            B *= self.pw[:, None]
        self._stacked = B
        return B[:, :2], B[:, 2:].reshape(n, 2, 2)

    def _level_sums(self, theta, rs):
        """Per level: the deviance's gradient in u (without 2u) and the Hessian's data part, (L, q), (L, q, q).
        ``rs``: a row state, or the fused rows' (:mod:`~glmmlab.engine.solvers.joint_zip`) state."""
        if isinstance(rs, tuple):  # (P, the rows' g and W side by side, pieces)
            B = self._stacked = rs[1]
            g, W = B[:, :2], B[:, 2:].reshape(-1, 2, 2)
        else:
            g, W = self._row_derivatives(rs)
        self._rows = (g, W)
        if self._ones and self._runs is not None:  # a_ik = theta_k: the level sums of g and W, times theta
            sums = self._sums = np.add.reduceat(self._stacked, self._runs, axis=0)
            tt = theta[:, None] * theta[None, :]
            if self._intercepts:  # (parts 0, 1: the sums' own order)
                return sums[:, :2] * theta, sums[:, 2:].reshape(-1, 2, 2) * tt
            part = self.part
            return sums[:, part] * theta, sums[:, 2:].reshape(-1, 2, 2)[:, part[:, None], part[None, :]] * tt
        a = self.A * theta
        G = np.column_stack([np.bincount(self.codes, a[:, k] * g[:, self.part[k]], minlength=self.L)
                             for k in range(self.q)])
        S = np.empty((self.L, self.q, self.q))
        for k in range(self.q):
            for m in range(k, self.q):
                S[:, k, m] = np.bincount(self.codes, a[:, k] * a[:, m] * W[:, self.part[k], self.part[m]],
                                         minlength=self.L)
                S[:, m, k] = S[:, k, m]
        return G, S

    def _zero_fixed(self) -> np.ndarray | float:
        """The zero model's predictor without its random effects, less its offset: zi_X b."""
        fam = self.fam
        return self.resp.zi_X @ np.asarray(fam.parameters[: fam.n_zi]) if fam.n_zi else 0.0

    def _predicted_modes(self, theta, eta_f, z_fixed) -> np.ndarray:
        """Starting modes at (theta, beta, the zero model's coefficients): the last modes moved along their
        derivative (the implicit function theorem at the last modes: H_j du_j = -1/2 dG_j, with dG_j the change of
        the level's gradient sum through the rows' predictors at fixed u and through theta in a = A theta; a change
        of the dispersion is left out), so the mode search starts at an error of the order of the step squared;
        the last modes where there are none or the step is long (beyond the linearisation)."""
        last = self._last
        if last is None or "g" not in last:  # (none, or the twin's: see _on_twin)
            return self.u
        g, W, H, u0, theta0 = last["g"], last["W"], last["H"], last["u"], last["theta"]
        d_eta = np.empty((eta_f.shape[0], 2))
        d_eta[:, 0] = eta_f - last["eta_f"]
        d_eta[:, 1] = z_fixed - last["z_fixed"]
        dth = theta - theta0
        ur = u0[self.codes]
        if self._intercepts and self._runs is not None:  # a_ik = 1: per part its column, the sums one reduceat
            d_eta += ur * dth
            Wd = W[:, :, 0] * d_eta[:, :1] + W[:, :, 1] * d_eta[:, 1:]
            Wd *= theta0
            Wd += g * dth
            du = _solve_positive(H, -0.5 * np.add.reduceat(Wd, self._runs, axis=0))
            step = float(np.abs(du).max())
            return u0 + du if np.isfinite(step) and step <= MAX_PREDICTED_STEP else self.u
        for k in range(self.q):
            d_eta[:, self.part[k]] += self.A[:, k] * ur[:, k] * dth[k]
        Wd = W[:, :, 0] * d_eta[:, :1] + W[:, :, 1] * d_eta[:, 1:]  # W_i d eta_i, (n, 2)
        rhs = np.column_stack([np.bincount(self.codes, self.A[:, k] * (theta0[k] * Wd[:, self.part[k]]
                                                                        + dth[k] * g[:, self.part[k]]),
                                           minlength=self.L) for k in range(self.q)])
        du = _solve_positive(H, -0.5 * rhs)
        step = float(np.max(np.abs(du), initial=0.0))
        return u0 + du if np.isfinite(step) and step <= MAX_PREDICTED_STEP else self.u

    def modes(self, theta, beta, max_iter: int = 100, fused: bool = False) -> dict:
        """The modes at (theta, beta) and the current member by Newton's steps from the predicted ones; ``fused``:
        on the fused rows where they apply (the evaluations: no row state, ``rs`` the fused state and ``cond``
        None in the answer)."""
        eta_f = self.Xs @ beta + self.off
        z_fixed = self._zero_fixed()
        u = self._predicted_modes(theta, eta_f, z_fixed)
        if fused and self._zip is not None:
            zip_, z_f = self._zip, z_fixed if self.zi_off0 is None else z_fixed + self.zi_off0

            def state(u_):
                st = zip_.state(theta, eta_f, z_f, u_)
                return st, None, st[0]
        else:
            def state(u_):
                return self._state(theta, eta_f, u_)
        rs, cond, P = state(u)
        if not np.isfinite(P) and u is not self.u:
            u = self.u
            rs, cond, P = state(u)
        if not np.isfinite(P):
            u = np.zeros_like(u)
            rs, cond, P = state(u)
        eye = np.eye(self.q)
        converged = False
        G, S = self._level_sums(theta, rs)
        for _ in range(max_iter):
            H = eye + 0.5 * S
            delta = _solve_positive(H, -(u + 0.5 * G))
            size = float(np.abs(delta).max(initial=0.0))
            if size < 1e-13:
                # (a step above rounding is taken: D = P + log det is not stationary in u, so leaving a 1e-10 step
                # left an error of 2e-10 in D, which made polish_to_rounding refuse its steps)
                converged = True
                break
            t = 1.0
            for _h in range(40):
                cand = u + t * delta
                rs_c, cond_c, P_c = state(cand)
                if P_c <= P + 1e-12 * abs(P):
                    break
                t *= 0.5
            else:
                converged = True
                break
            u, rs, cond, P = cand, rs_c, cond_c, P_c
            G, S = self._level_sums(theta, rs)
            if size < 1e-6 and t == 1.0:
                # a full Newton step of that size: the next one is of its square's order (below 1e-12)
                converged = True
                break
        H = eye + 0.5 * S
        logdet = _logdet_positive(H)
        self.u = u
        g, W = self._rows
        self._last = {"theta": np.array(theta, dtype=float), "eta_f": eta_f, "z_fixed": z_fixed, "u": u, "g": g,
                      "W": W, "H": H, "beta": np.array(beta, dtype=float), "fam": self.fam, "sums": self._sums} \
            if converged and np.isfinite(P) else None
        return {"u": u, "rs": rs, "cond": cond, "P": P, "logdet": logdet, "H": H, "converged": converged}

    def value_and_grad(self, theta, beta, designs: dict) -> tuple[float, np.ndarray]:
        """D and its exact gradient in (theta, beta, the zero and dispersion models' coefficients), by the implicit
        function theorem at the modes: with S_j = H_j^-1, M_i = B_i S_j B_i' (B_i the row's map from its level's
        effects to its two predictors), t_i = 1/2 sum M_i * dW_i (the log-determinant's derivative in the row's
        predictors, dW_i the rows' third derivatives: :meth:`_third_derivatives`), v_j = sum_i B_i' t_i and
        the adjoint w_j = (2 H_j)^-1 v_j: dD/dbeta = sum_i x_i (g_i + t_i - W_i B_i w_j) per predictor, and
        dD/dtheta_k the same terms through d eta_i / d theta_k = a_ik u_jk plus the explicit
        sum_i a_ik (S_j B_i' W_i)_(k, part k) and -sum_i w_jk a_ik g_i,part k. ``designs``: the coefficients'
        designs in order, (X_mean, X_zero, X_disp or None)."""
        twin = self._compact()
        if twin is not None:
            return self._on_twin(twin, lambda tw: tw.value_and_grad(theta, beta, self._twin_designs(designs)))
        self.evaluations += 1
        with np.errstate(all="ignore"):
            m = self.modes(theta, beta, fused=True)
            D = m["P"] + m["logdet"]
            if not np.isfinite(D):
                return np.inf, np.zeros(theta.size + sum(X.shape[1] for X in designs.values() if X is not None))
            rs, u = m["rs"], m["u"]
            g, W = self._rows  # the modes' last level sums were taken at rs
            if isinstance(rs, tuple):  # the fused rows (one intercept per part, no dispersion model)
                assert self._zip is not None and self._runs is not None
                grad_theta, grad_beta = intercepts_gradient(self.codes, self._runs, theta, u, m["H"],
                                                            (g, W, self._sums), (self._zip.thirds(rs[2]), None, None),
                                                            designs)
                return float(D), np.concatenate([grad_theta, *grad_beta])
            eta = rs.eta
            h = 1e-5
            n = eta.shape[0]
            # third derivatives T[:, p, q, r] in the predictors r = mean, zero, dispersion; the dispersion's first
            # and cross derivatives from the same differences
            T = np.zeros((n, 2, 2, 3))
            gd = np.zeros(n)
            Wd = np.zeros((n, 2))
            self._third_derivatives(rs, eta, T, h)
            if designs.get("disp") is not None:
                fam0 = self.fam
                sides_d = []
                for sign in (1.0, -1.0):
                    self.fam = fam0.shifted("disp", sign * h)
                    self.resp = self.resp.with_family(self.fam)
                    rs_d = row_state(self.resp, eta, self.lk)
                    g_d, W_d = self._row_derivatives(rs_d)
                    sides_d.append((self.pw * rs_d.dev, g_d, W_d))
                self.fam = fam0
                self.resp = self.resp.with_family(fam0)
                gd = (sides_d[0][0] - sides_d[1][0]) / (2 * h)
                Wd = (sides_d[0][1] - sides_d[1][1]) / (2 * h)
                T[..., 2] = (sides_d[0][2] - sides_d[1][2]) / (2 * h)
            if self._intercepts and self._runs is not None:
                grad_theta, grad_beta = intercepts_gradient(self.codes, self._runs, theta, u, m["H"],
                                                            (g, W, self._sums), (T, gd, Wd), designs)
                return float(D), np.concatenate([grad_theta, *grad_beta])
            a = self.A * theta  # (n, q)
            part, codes = self.part, self.codes
            S = _inverse(m["H"])  # (L, q, q)
            # per row, with k, m the terms and p = part k, p' = part m (B_i has a_ik at (p, k), zeros elsewhere):
            # M_i = B_i S_j B_i' as sum over k, m of a_ik a_im S_j,km at (p, p'), and S_j B_i' W_i's (k, part k)
            # entries as sum over m of S_j,km a_im W_i,(part m, part k): vectors over the rows, no stacked products
            Skm = [[S[:, k, mm][codes] for mm in range(self.q)] for k in range(self.q)]
            M = np.zeros((n, 2, 2))
            for k in range(self.q):
                for mm in range(self.q):
                    M[:, part[k], part[mm]] += a[:, k] * a[:, mm] * Skm[k][mm]
            t = 0.5 * np.einsum("npq,npqr->nr", M, T)  # (n, 3)
            v = np.column_stack([np.bincount(codes, t[:, part[k]] * a[:, k], minlength=self.L)
                                 for k in range(self.q)])
            w = 0.5 * np.einsum("jkm,jm->jk", S, v)  # (2 H_j)^-1 v_j
            wr = w[codes]  # (n, q)
            omega = np.zeros((n, 2))  # B_i w_j: the adjoint in the predictors
            for k in range(self.q):
                omega[:, part[k]] += a[:, k] * wr[:, k]
            # per-row gradient in each predictor's linear part: g + t - (W, W_d)' omega
            rows = t - omega[:, :1] * np.column_stack([W[:, 0, :], Wd[:, 0]]) \
                - omega[:, 1:] * np.column_stack([W[:, 1, :], Wd[:, 1]])
            rows[:, 0] += g[:, 0]
            rows[:, 1] += g[:, 1]
            rows[:, 2] += gd
            grad_beta = [X.T @ rows[:, r] for r, X in enumerate((designs["cond"], designs.get("zi"),
                                                                 designs.get("disp"))) if X is not None]
            ur = u[codes]  # (n, q)
            grad_theta = np.empty(self.q)
            for k in range(self.q):
                c = part[k]
                ak = self.A[:, k]
                dk = ak * ur[:, k]  # d eta_c / d theta_k
                sbw = sum(Skm[k][mm] * a[:, mm] * W[:, part[mm], c] for mm in range(self.q))  # (S_j B_i' W_i)_k,c
                grad_theta[k] = float(np.sum(g[:, c] * dk + sbw * ak + t[:, c] * dk - wr[:, k] * ak * g[:, c]
                                             - (omega[:, 0] * W[:, 0, c] + omega[:, 1] * W[:, 1, c]) * dk))
        return float(D), np.concatenate([grad_theta, *grad_beta])

    def _third_derivatives(self, rs, eta, T, h) -> None:
        """T[:, p, q, r] for r = mean, zero: the derivatives of the rows' prior-weighted Hessians W in the two
        predictors. In closed form where the row state has the mean's third derivative (the count bases under
        their log link: the modelled family's ``zi_third_derivatives`` give the rest, the tensor is symmetric);
        else central differences of W in each predictor."""
        d3 = getattr(rs, "dev_eta3", None)
        if d3 is not None:
            pw = self.pw
            t001, t011, t111 = self.fam.zi_third_derivatives(self.resp, rs)
            a, b, c = pw * t001, pw * t011, pw * t111
            T[:, 0, 0, 0] = pw * d3
            T[:, 0, 0, 1] = T[:, 0, 1, 0] = T[:, 1, 0, 0] = a
            T[:, 0, 1, 1] = T[:, 1, 0, 1] = T[:, 1, 1, 0] = b
            T[:, 1, 1, 1] = c
            return
        zi0 = self.resp.zi_off
        assert zi0 is not None  # _state sets it (the zero model's random effects)
        sides = []
        for sign in (1.0, -1.0):
            sides.append(self._row_derivatives(row_state(self.resp, eta + sign * h, self.lk)))
        T[..., 0] = (sides[0][1] - sides[1][1]) / (2 * h)
        sides = []
        for sign in (1.0, -1.0):
            self.resp.zi_off = zi0 + sign * h
            sides.append(self._row_derivatives(row_state(self.resp, eta, self.lk)))
        self.resp.zi_off = zi0
        T[..., 1] = (sides[0][1] - sides[1][1]) / (2 * h)

    def value(self, theta, beta) -> float:
        twin = self._compact()
        if twin is not None:
            return self._on_twin(twin, lambda tw: tw.value(theta, beta))
        self.evaluations += 1
        with np.errstate(all="ignore"):
            m = self.modes(theta, beta, fused=True)
        D = m["P"] + m["logdet"]
        return float(D) if np.isfinite(D) else np.inf


def fit_joint(st, Xs, T, names, mf, pw, off, fam, lk, model, progress, data, zi_terms) -> dict:
    """The record's fields of a model whose zero model has random effects (see the module docstring); ``fam`` a
    :class:`ModelledFamily` with a zero model."""
    assert isinstance(fam, ModelledFamily)
    lead = st.lead
    if st.rest or lead.q != 1 or any(t.Z.shape[1] != 1 for t in zi_terms) \
            or any(list(t.levels) != list(lead.levels) or t.component != lead.component for t in zi_terms):
        raise GlmmInputError(
            "random effects in the zero-inflation model are offered as scalar terms such as (1 | g) on the same "
            "grouping factor as the mean's one scalar term (e.g. count ~ x + (1 | site), zi = ~ x + (1 | site)); "
            "simplify the random effects of either part")
    if model.get("nagq", 1) > 1:
        raise GlmmInputError("nagq > 1 is not available with random effects in the zero-inflation model: use nagq 1")
    report(progress, "Initial values (GLM)", 0.05)
    beta0, fam = modelled_start(Xs, mf.y, pw, off, fam, lk, None, data)
    codes = np.asarray(lead.codes, dtype=np.intp)
    A = np.column_stack([np.broadcast_to(lead.Z[:, 0], (mf.n,))]
                        + [np.broadcast_to(np.asarray(t.Z[:, 0], dtype=float), (mf.n,)) for t in zi_terms])
    part = np.array([0] + [1] * len(zi_terms))
    obj = JointLaplace(codes, lead.n_levels, A, part, Xs, mf.y, pw, off, fam, lk, data)
    q, p = A.shape[1], Xs.shape[1]
    psi0 = np.asarray(fam.parameters, dtype=float)
    m_psi = psi0.size
    lo, hi = fam.internal_range()

    def fun(x):
        psi = x[q + p:]
        if not np.all((lo < psi) & (psi < hi)):
            return np.inf
        obj.set_member(psi)
        return obj.value(x[:q], x[q:q + p])

    lower = np.concatenate([np.zeros(q), np.full(p + m_psi, -np.inf)])
    bounds = [(0.0, None)] * q + [(None, None)] * (p + m_psi)

    designs = {"cond": Xs, "zi": data.get("zi_X") if fam.n_zi else None,
               "disp": data.get("disp_X") if fam.n_disp else None}

    def fg(x):
        psi = x[q + p:]
        if not np.all((lo < psi) & (psi < hi)):
            return np.inf, np.zeros_like(x)
        obj.set_member(psi)
        return obj.value_and_grad(x[:q], x[q:q + p], designs)

    # the model without random effects first (theta = 0): the start of every part's coefficients
    report(progress, "Initial values (the model without random effects)", 0.08)

    # -2 log L without random effects and its gradient over the rows (no mode search: at theta = 0 it is D), on
    # the distinct rows with their summed prior weights where the evaluations use them (the same sums); for the
    # fused rows in their closed forms (salamanders_zip_zire: 2.8 -> 0.9 ms)
    rows = obj._compact() or obj
    if rows._zip is not None and m_psi == fam.n_zi:
        Z = rows._data.get("zi_X")
        glm_fg, glm_hessian = rows._zip.glm_functions(
            rows.Xs, np.zeros((rows.y.shape[0], 0)) if Z is None else Z, rows.off,
            0.0 if rows.zi_off0 is None else rows.zi_off0, (lo, hi))
    else:
        glm_rows = SimpleNamespace(resp=Response(rows.y, fam, None, {k: v for k, v in rows._data.items()
                                                                    if v is not None}),
                                   Xs=rows.Xs, off=rows.off, pw=rows.pw)
        glm_fg = glm_objective([glm_rows], fam, lk, p)
        glm_hessian = glm_start_hessian([glm_rows], fam, lk, p, glm_fg)
    beta_glm, psi_glm, _ = glm_stage(None, beta0, psi0, 0, glm_fg, None, glm_hessian)
    x0 = np.concatenate([np.full(q, 0.5), beta_glm, psi_glm])
    report(progress, "Optimizing Laplace deviance", 0.1)

    def run(start):
        # Newton steps from the approximate Hessian (joint_hessian, taken again at every accepted step) where it
        # applies, else (or where they stop short) L-BFGS-B until f falls by less than 1e-9 relative; then chord
        # Newton steps with a
        # forward-difference Hessian of the exact gradient down to a rounding-level gradient (polish_to_rounding);
        # that Hessian, taken again where the steps moved the point, is the standard errors'
        obj.u, obj._last = np.zeros_like(obj.u), None
        recent = Recent()
        counted = last_two(fg, recent)
        if metric is not None:
            start, _, _ = newton_run(counted, start, lower, metric, lambda z: handed_over(counted, z, lower),
                                     refresh_every=True, step_limit=theta_step_limit(q))
            if handed_over(counted, start, lower):
                return polish_to_rounding(counted, start, lower, recent), True
        r = minimize(counted, start, jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": int(model.get("max_iter", 100)) * 10, "ftol": HANDOVER_FTOL, "gtol": 1e-7})
        return polish_to_rounding(counted, r.x, lower, recent), bool(r.success or r.status == 0)

    metric = newton_metric(obj, fg, designs, q, p) if q == 2 and obj._zip is not None and m_psi == fam.n_zi \
        else None

    (x, f, H_full), ok = run(x0)
    probe = off_the_boundary(fun, x, x0, np.zeros(q), f)
    if probe is not None:
        (xp, fp, Hp), okp = run(probe)
        if fp < f:
            x, f, H_full, ok = xp, fp, Hp, okp
    # the Hessian over the parameters off their bound (an SD at 0 held there, as joint_hessian): zeros elsewhere
    held = ~off_bound(x, lower)
    H_full[held, :] = 0.0
    H_full[:, held] = 0.0
    obj.set_member(x[q + p:])  # the member and modes of the estimates again
    fin = obj.modes(x[:q], x[q:q + p])
    f = float(fin["P"] + fin["logdet"])
    theta, beta_s, psi = x[:q], x[q:q + p], x[q + p:]
    vcov_s = fixed_effects_covariance(H_full, x, lower, q, p)
    beta, vcov = T @ beta_s, T @ vcov_s @ T.T
    # the modes b = theta u and their conditional covariances (the inverse of H_j, scaled)
    Hinv = np.linalg.inv(fin["H"])
    b = fin["u"] * theta
    sd = np.sqrt(np.maximum(np.diagonal(Hinv, axis1=1, axis2=2), 0.0)) * theta
    rs = fin["rs"]
    resid = mf.y - rs.mu
    rows = {"fitted": rs.mu, "deviance_residuals": np.sign(resid) * np.sqrt(np.maximum(obj.pw * rs.dev, 0.0)),
            "pearson_residuals": resid * np.sqrt(obj.pw / rs.var), "group_random_effect": fin["cond"]}
    loglik = -0.5 * f
    k = p + q + m_psi
    converged = ok and fin["converged"] and np.isfinite(f)
    lam = [np.array([[theta[0]]])]
    out = _assemble(st, mf, model, "Laplace", converged, theta[:1], lam, 1.0, False, beta, vcov, names,
                    "Hessian of the Laplace deviance", loglik, k, [b[:, :1]], [Hinv[:, :1, :1]], rows, None, None,
                    None, None)
    out["theta"] = np.array(theta, dtype=float)
    for j, t in enumerate(zi_terms, start=1):
        out["variances"].append({"component": t.component, "term": t.names[0], "variance": float(theta[j] ** 2),
                                 "model": "zi"})
    out["modes"].append(ConditionalModes(lead.component, list(lead.levels), [t.names[0] for t in zi_terms],
                                         b[:, 1:], sd[:, 1:], model="zi"))
    data_fit = dict(data, zi_off=obj.resp.zi_off)  # the zero model's predictor, its random effects in
    obj.fam = obj.fam.with_parameters(psi)  # type: ignore[assignment]
    out.update(modelled_results(obj.fam, x, H_full, lower, q, mf.y, pw, None, data_fit, rows))
    return out
