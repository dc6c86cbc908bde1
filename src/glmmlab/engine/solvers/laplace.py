"""The Laplace approximation for every other family and link: conditional modes by penalised IRLS (staying
inside the link's range), the Laplace deviance and its exact gradient, adaptive quadrature for a scalar random
intercept."""

from __future__ import annotations

import numpy as np
from scipy import special

from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link
from glmmlab.engine.families.response import Response
from glmmlab.engine.families.state import row_state
from glmmlab.engine.solvers import intercept_laplace, structured
from glmmlab.engine.solvers.blocked_cholesky import Structure, factor
from glmmlab.engine.solvers.crossed_modes import ChordModes, crossed_sparse, lambda_vector, mode_change
from glmmlab.engine.solvers.edge import edge_gap, inside_start, inside_start_of  # noqa: F401  (imported from here)
from glmmlab.engine.solvers.laplace_gradient import LaplaceGradient
from glmmlab.engine.solvers.likelihood import Likelihood
from glmmlab.engine.solvers.mode_search import (  # noqa: F401  (MAX_PREDICTED_STEP imported from here)
    EDGE_CURVATURE,
    EDGE_GAP,
    MAX_PREDICTED_STEP,
    RowModes,
    search,
    valid_start,
)
from glmmlab.engine.solvers.scaling import design_dot, design_t_dot


# -- every other family: Laplace ----------------------------------------------------------------------------
class GeneralLaplace(LaplaceGradient):
    """lme4's Laplace deviance D(theta, beta) = -2 log p(y | mu) + |u|^2 + log det(H) at the conditional modes."""

    def __init__(self, st: Structure, Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray,
                 fam: Family, lk: Link, dispersion: str = "estimated", resp: Response | None = None,
                 trials: np.ndarray | None = None, data: dict | None = None):
        self.st, self.Xs, self.y, self.pw, self.off = st, Xs, y, pw, off
        self.trials = trials  # the beta-binomial's trials (Family.trials_from_weights; pw is then 1)
        self.data = data  # this block's rows of a zero or dispersion model's designs (families.modelled)
        self.dispersion = dispersion
        self.unit_weights = bool(np.all(pw == 1.0))  # then pw * a is a itself, and the product is skipped
        # no offset: the read-only zero view fit_frame passes (its addition to X beta is skipped)
        self.no_offset = off.ndim == 1 and off.strides[0] == 0 and off.size > 0 and float(off[0]) == 0.0
        self.fam, self.lk = fam, lk
        self._set_edge()
        # ``resp``: the rows' part of the whole's
        self.resp = Response(y, fam, trials, data) if resp is None else resp
        self._lik: Likelihood | None = None
        self.nt = st.n_theta
        self.u = np.zeros(st.Q)
        self._last: dict | None = None  # what predicts the next modes (see _predicted_modes)
        self._intercept_modes = None  # one small random intercept's evaluation (intercept_laplace), when made
        # False: nothing per row is kept between evaluations (then no predicted modes): the Dask path's lean blocks
        self.keep_last = True
        self.psi_gradient = False  # also the gradient in the family's own parameters (see _psi_gradient)
        self._last_dev = 0.0
        self.evaluations = 0
        self.modes_converged = True
        # glmmTMB's Laplace approximation (the negative binomial, and a dispersion estimated with the other
        # parameters): the log-determinant uses the observed information (the exact Hessian of the joint
        # log-density) rather than the expected one
        self.observed = fam.observed_information or self.estimated

    @property
    def estimated(self) -> bool:
        """Whether the family's dispersion is a parameter of the model (see :class:`Likelihood`)."""
        return self.fam.has_dispersion and self.dispersion == "estimated"

    def set_family(self, fam: Family) -> None:
        """Use another member of the family (other values of its own parameters: the negative binomial's theta,
        glmmTMB's phi, sigma, df, power)."""
        shares = getattr(fam, "shares_response", None)
        same_base = shares is not None and shares(self.fam)
        if same_base:
            self.resp = self.resp.with_family(fam)
        else:
            self.resp = Response(self.y, fam, self.trials, self.data)
        self.fam = fam
        if not same_base:  # (a member with the same base has its edge and fast path)
            self._set_edge()
        self._lik = None

    @property
    def lik(self) -> Likelihood:
        """This block's likelihood constants, made when first needed: a fit over several blocks uses the whole
        data's (BlockedLaplace), and their saturated log-densities cost three log-gamma passes over the rows."""
        if self._lik is None:
            self._lik = Likelihood(self.fam, self.y, self.pw, self.dispersion)
        return self._lik

    def reset_modes(self) -> None:
        """Forget the last modes: the next mode search starts from u = 0."""
        self.u = np.zeros(self.st.Q)
        self._last = None
        if self._intercept_modes is not None:
            self._intercept_modes.last = None

    def _set_edge(self) -> None:
        """The family's fast path (its means always valid) and, without it, the link's range of linear
        predictors when it has an end (``edge``: e.g. a Poisson or Gamma mean must stay above 0 under an identity
        link); the mode search then keeps every row inside that range."""
        self.fast = self.fam.has_fast_path(self.lk.name)
        self.eta_lo, self.eta_hi = self.fam.eta_range(self.lk, self.y)
        self.edge = not self.fast and self.fam.has_edge(self.lk, self.y)
        # Newton steps with the observed curvature in the mode search (see pirls): under a link with an edge, where
        # the dispersion is estimated, and under a link other than the family's canonical one (probit), where
        # the expected information's steps converge only linearly (three times the passes over the rows)
        # (and for a family whose score is not the quasi-likelihood one: glmmTMB's NB1, beta, beta-binomial, t)
        self.newton = self.edge or self.estimated or self.lk.name != self.fam.canonical_link or not self.fam.edm

    def _weighted(self, a: np.ndarray) -> np.ndarray:
        return a if self.unit_weights else self.pw * a

    def _dev_sum(self, rs) -> float:
        """The weighted sum of a row state's unit deviances (the family's own sum, :meth:`RowState.dev_sum`)."""
        return rs.dev_sum(None if self.unit_weights else self.pw)

    def _working_response(self, rs, re: np.ndarray) -> np.ndarray:
        """The working response of a Fisher-scoring step, re + score / w: re + (y - mu) / h1 for an
        exponential-dispersion member, re - dev_eta / (2 w) for any family."""
        if self.fam.edm:
            return re + (self.y - rs.mu) / rs.h1
        return re - 0.5 * rs.dev_eta / rs.w

    def _xb(self, beta: np.ndarray) -> np.ndarray:
        return design_dot(self.Xs, beta)

    def _xt(self, v: np.ndarray) -> np.ndarray:
        return design_t_dot(self.Xs, v)

    def _eta_fixed(self, beta: np.ndarray) -> np.ndarray:
        """X beta + offset: the fixed part of the rows' linear predictors."""
        xb = self._xb(beta)
        if not self.no_offset:
            xb += self.off
        return xb

    def _state(self, eta_f: np.ndarray, u: np.ndarray, lams: list[np.ndarray]):
        re = self.st.row_effect(self.st.b_of_u(u, lams))
        rs = row_state(self.resp, eta_f + re, self.lk)
        pdev = self._dev_sum(rs) + float(u @ u)
        # a family's fast path keeps its means in range (its has_fast_path promise): no check over the rows; under
        # a link with an edge the linear predictors stay inside its range (the side of a pole the data lie on)
        ok = np.isfinite(pdev) and (self.fast or bool(np.all(self.fam.mu_valid(rs.mu))))
        if ok and self.edge:
            ok = edge_gap(rs.eta, self.eta_lo, self.eta_hi) > 0
        return re, rs, (pdev if ok else np.inf)

    def pirls(self, theta: np.ndarray, beta: np.ndarray, u0: np.ndarray, max_iter: int = 200,
              eta_f: np.ndarray | None = None) -> dict:
        """The conditional modes u at (theta, beta) by penalised IRLS with step halving.

        Under a link whose linear predictors have an edge (``self.edge``) every step stays inside it (the
        feasible set of u is a polyhedron: a step is first cut to 0.9 of the way to the nearest row's edge),
        the steps use the observed curvature where the expected one would make them crawl (see
        :meth:`_edge_working`), and a mode that reaches the edge (a row with y = 0 whose mean is driven to 0)
        makes the point infeasible: the Laplace log-determinant, with the expected information 1 / mu of that
        row, is infinite there, so the deviance is +inf (``dev``) and the optimiser steps back. ``eta_f``: X beta +
        offset when the caller has it."""
        st = self.st
        lams = st.lambdas(theta)
        if eta_f is None:
            eta_f = self._eta_fixed(beta)
        u, (re, rs, pdev) = valid_start(lambda v: self._state(eta_f, v, lams), u0, self.u, st.Q)
        if not np.isfinite(pdev) and self.edge:
            u = self._moved_in(eta_f, lams)
            re, rs, pdev = self._state(eta_f, u, lams)
        if not np.isfinite(pdev):
            raise FloatingPointError("no valid mean at the starting modes")
        rows: RowModes
        if crossed_sparse(st) and not self.newton and not self.edge:  # chord steps (crossed_modes.ChordModes)
            last = self._last
            rows = ChordModes(self, theta, lams, eta_f, u, re, rs,
                              last["F"] if last is not None and last.get("crossed") else None)
        else:
            rows = RowModes(self, theta, lams, eta_f, u, re, rs)
        pdev, converged, at_edge, exhausted = search(rows, pdev, self.newton and self.observed and not self.edge,
                                                     self.edge, self.estimated, max_iter)
        if isinstance(rows, ChordModes):
            rows.finish()
        u, re, rs, cp, F, w = rows.u, rows.re, rows.rs, rows.cp, rows.F, rows.w
        fisher_again = self.newton and not self.estimated  # the last factor has the observed curvature
        # glmmTMB's likelihood without an estimated dispersion: the log-determinant's factor, with the observed
        # curvature at these modes, also predicts the next modes (below), so no factor with the expected one
        observed_only = fisher_again and self.observed and not self.edge and not at_edge
        if observed_only:
            wobs = 0.5 * self._weighted(rs.dev_eta2)
            cp_ld = st.crossprods(wobs, self._observed_working(rs, re, wobs)[:, None])
            F_ld = F = factor(st, cp_ld, theta)
            cp, w = cp_ld, wobs
        elif exhausted or self.edge or fisher_again:  # exhausted covers no step taken (cp None)
            # the log-determinant, the gradient and the predicted modes use the expected information
            w = self._weighted(rs.w)
            with_r = self.edge or fisher_again
            cp = st.crossprods(w, self._working_response(rs, re)[:, None] if with_r else None)
            F = factor(st, cp, theta)
        if at_edge:
            self._last = None
            return {"u": u, "F": F, "rs": rs, "re": re, "dev": np.inf, "pdev": np.inf, "converged": False,
                    "logdet": np.inf, "F_ld": F, "cp_ld": cp, "at_edge": True}
        dev = self._dev_sum(rs)
        self._last_dev = dev
        assert F is not None  # every path above factors the system
        if not observed_only:
            F_ld, cp_ld = F, cp
            if self.observed:
                cp_ld = st.crossprods(0.5 * self.pw * rs.dev_eta2, None)
                F_ld = factor(st, cp_ld, theta)
        logdet = F_ld.logdet
        if self.keep_last and not st.rest and converged and cp is not None and cp.E1.shape[2] == 1:
            # the score per level, Z' (pw (y - mu) h1 / V), from the last iteration's cross-products of the
            # working response r = Z Lambda u + (y - mu) / h1: Z'W r = A Lambda u + score
            if st.q1 == 1:
                score = cp.E1[:, :, 0] - cp.A11[:, :, 0] * (u.reshape(st.L1, 1) * float(lams[0][0, 0]))
            else:
                score = cp.E1[:, :, 0] - np.einsum("jab,jb->ja", cp.A11, u.reshape(st.L1, st.q1) @ lams[0].T)
            self._last = {"theta": np.array(theta), "beta": np.array(beta), "u": u, "F": F, "w": w, "A": cp.A11,
                          "score": score, "lam": lams[0], "eta_f": eta_f}
        elif self.keep_last and crossed_sparse(st) and converged and cp is not None and cp.E1.shape[2] == 1:
            self._last = {"crossed": True, "theta": np.array(theta), "beta": np.array(beta), "u": u, "F": F, "w": w,
                          "cp": cp, "lam": lambda_vector(st, lams), "eta_f": eta_f}
        else:
            self._last = None
        return {"u": u, "F": F, "rs": rs, "re": re, "dev": dev, "pdev": pdev, "converged": converged,
                "logdet": logdet, "F_ld": F_ld, "cp_ld": cp_ld}

    def _newton_working(self, rs, re: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights and working response of a plain Newton step: the observed curvature of each row as it is
        (a row whose density is free of its linear predictor, a hurdle model's zero, gets a negligible weight)."""
        wobs = 0.5 * self._weighted(rs.dev_eta2)
        zero = wobs == 0.0
        # (the expected information only where it is needed: a glmmTMB family's state computes it when read)
        wh = np.where(zero, 1e-12 * self._weighted(rs.w), wobs) if zero.any() else wobs
        return wh, re - 0.5 * self._weighted(rs.dev_eta) / wh

    def _observed_working(self, rs, re: np.ndarray, wobs: np.ndarray) -> np.ndarray:
        """The working response of a Newton step with the observed curvature ``wobs`` as it is: re - 0.5 dev_eta /
        wobs (a row whose curvature is 0, a hurdle model's zero, has no score either, and gets re)."""
        d = 0.5 * self._weighted(rs.dev_eta)
        return re - d / np.where(wobs != 0.0, wobs, 1.0)

    def _edge_working(self, rs, re: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights and working response of a mode-search step under a link with an edge: a Newton step with the
        observed curvature (half the second derivative of the unit deviance) where it is positive, at least
        EDGE_CURVATURE of the expected information, and the expected information where the observed is
        negative. A row with y = 0 under the identity link has no observed curvature but an expected
        information 1 / mu that grows without bound near the edge: with it the steps would approach a mode on
        the edge ever more slowly (geometrically) instead of reaching it."""
        w = self._weighted(rs.w)
        wobs = 0.5 * self._weighted(rs.dev_eta2)
        wh = np.where(wobs >= 0.0, np.maximum(wobs, EDGE_CURVATURE * w), w)
        return wh, re - 0.5 * self._weighted(rs.dev_eta) / wh

    def _moved_in(self, eta_f: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """A start inside the link's range when u = 0 is outside it (the fixed part alone puts some row past the
        edge): each level of the leading factor with such a row moves along the first coordinate of its
        spherical effect whose rows all can be brought inside (row effects s * z_i' Lambda[:, k]: an interval of
        s per level), as far inside that interval as its end is from 0 (at least half a prior standard
        deviation; the middle of a narrower interval), as the random-intercept engine's start does.
        Deterministic in (theta, beta), so the modes, and the deviance, do not depend on the path of the
        optimiser. Levels that cannot be brought inside stay at 0."""
        st = self.st
        L1, q = st.L1, st.q1
        codes = st.codes1
        lo, hi = self.eta_lo, self.eta_hi
        bad = (eta_f <= lo) | (eta_f >= hi)
        todo = np.bincount(codes, weights=bad.astype(float), minlength=L1) > 0
        U = np.zeros((L1, q))
        for k in range(q):
            if not todo.any():
                break
            a = st.lead.Z @ lams[0][:, k]  # each row's effect per unit of the level's k-th coordinate
            s_lo, s_hi = np.full(L1, -np.inf), np.full(L1, np.inf)
            with np.errstate(all="ignore"):
                for end, sign in ((lo, 1.0), (hi, -1.0)):
                    if not np.isfinite(end):
                        continue
                    bound = (end - eta_f) / a  # eta_f + s a crosses the end at this s
                    up = sign * a > 0  # rows whose effect moves them away from this end as s grows
                    np.maximum.at(s_lo, codes[up], bound[up])
                    np.minimum.at(s_hi, codes[~up & (a != 0)], bound[~up & (a != 0)])
                    stuck = (a == 0) & (sign * (eta_f - end) <= 0)  # a row this coordinate cannot move
                    s_lo[np.unique(codes[stuck])] = np.inf
                ok = todo & (s_lo < s_hi)
                # as far inside again as the edge is from 0 (at least half a prior SD), or the middle of a
                # narrower interval: a row whose effect per unit is small still gets a margin
                margin = np.minimum(np.maximum(0.5, np.abs(np.where(np.isfinite(s_lo), s_lo, s_hi))),
                                    0.5 * (s_hi - s_lo))
                U[ok, k] = np.clip(0.0, s_lo + margin, s_hi - margin)[ok]
            todo &= ~ok
        u = np.zeros(st.Q)
        u[: L1 * q] = U.ravel()
        return u

    def _edge_step(self, eta: np.ndarray, d_eta: np.ndarray) -> float:
        """The first step length of a mode-search step that changes the linear predictor by ``d_eta``: 1, or 0.9
        of the way to where the first row reaches an end of the link's range."""
        t = 1.0
        if np.isfinite(self.eta_lo):
            m = d_eta < 0.0
            if m.any():
                t = min(t, 0.9 * float(np.min((eta[m] - self.eta_lo) / -d_eta[m])))
        if np.isfinite(self.eta_hi):
            m = d_eta > 0.0
            if m.any():
                t = min(t, 0.9 * float(np.min((self.eta_hi - eta[m]) / d_eta[m])))
        return t

    def _at_edge(self, eta: np.ndarray) -> bool:
        """Whether some row's linear predictor is within EDGE_GAP (relative to the largest |eta|) of an end of the
        link's range."""
        return edge_gap(eta, self.eta_lo, self.eta_hi) <= EDGE_GAP * (1.0 + float(np.max(np.abs(eta))))

    def _predicted_modes(self, theta: np.ndarray, beta: np.ndarray, eta_f: np.ndarray) -> np.ndarray:
        """Starting modes for PIRLS at (theta, beta): the last modes moved along their derivative in (theta,
        beta) (the implicit function theorem with the last factor: one grouping factor, or crossed scalar terms
        held sparse, :mod:`~glmmlab.engine.solvers.crossed_modes`), so PIRLS starts at an
        error of the order of the step squared and needs one Newton step less; otherwise the last modes.
        ``eta_f``: X beta + offset at this point (X dbeta is its change from the last point's)."""
        last = self._last
        if last is None or last["theta"].shape != np.shape(theta) or last["beta"].shape != np.shape(beta):
            return self.u
        st = self.st
        if last.get("crossed"):  # crossed scalar terms held sparse (crossed_modes)
            du = mode_change(st, last, theta, eta_f)
            step = float(np.max(np.abs(du), initial=0.0))
            return last["u"] + du if np.isfinite(step) and step <= MAX_PREDICTED_STEP else self.u
        L1, q = st.L1, st.q1
        lam, U = last["lam"], last["u"].reshape(L1, q)
        dlam = st.lead.lam(np.asarray(theta)[: st.n_theta]) - lam
        # d(Lambda' Z' score - u) = dLambda' score - Lambda' A dLambda u - Lambda' Z' W X dbeta
        if q == 1:  # a scalar term: the same products as numbers per level
            d, lm = float(dlam[0, 0]), float(lam[0, 0])
            rhs = (last["score"][:, 0] * d - last["A"][:, 0, 0] * U[:, 0] * (d * lm))[:, None]
        else:
            rhs = last["score"] @ dlam - np.einsum("jab,jb->ja", last["A"], U @ dlam.T) @ lam
        dbeta = np.asarray(beta) - last["beta"]
        if np.any(dbeta != 0.0):
            xb = eta_f - last["eta_f"]
            xb *= last["w"]
            rhs -= st.lead_sums_z(xb)[0] @ lam
        du = last["F"].solve(rhs.ravel())
        # a long step (the optimiser's first iterations) is beyond the linearisation: start from the last modes
        step = float(np.max(np.abs(du), initial=0.0))
        return last["u"] + du if np.isfinite(step) and step <= MAX_PREDICTED_STEP else self.u

    def value_and_grad(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """D and its exact gradient, this block alone (the fit sums blocks with BlockedLaplace)."""
        D, p = self._total(params, True)
        if p is None:
            return np.inf, np.zeros_like(params)
        return D, self.lik.gradient(p["dev"], p["uu"], p["g_c"], p["g_0"], p.get("direct"))

    def value(self, params: np.ndarray) -> float:
        return self._total(params, False)[0]

    def _total(self, params: np.ndarray, gradient: bool) -> tuple[float, dict | None]:
        self.evaluations += 1
        try:
            p = self.parts(params[: self.nt], params[self.nt:], gradient)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf, None
        D = self.lik.data_term(p["dev"], p["uu"]) + p["logdet"]
        if not np.isfinite(D):
            return np.inf, None
        self.modes_converged = p["converged"]
        return float(D), p

    def parts(self, theta: np.ndarray, beta: np.ndarray, gradient: bool) -> dict:
        """This block's share of D and of its gradient (as c * g_c + g_0) at (theta, beta)."""
        if intercept_laplace.applies(self):  # one small random intercept: its own evaluation
            return intercept_laplace.parts(self, theta, beta, gradient, GeneralLaplace)
        eta_f = self._eta_fixed(beta)
        m = self.pirls(theta, beta, self._predicted_modes(theta, beta, eta_f), eta_f=eta_f)
        if m.get("at_edge"):  # an infeasible point: its modes are no start for the next one
            return {"dev": np.inf, "uu": 0.0, "logdet": np.inf, "converged": False}
        self.u = m["u"]
        out = {"dev": m["dev"], "uu": float(m["u"] @ m["u"]), "logdet": m["logdet"], "converged": m["converged"]}
        if gradient:
            out["g_c"], out["g_0"] = self._gradient_split(theta, m)
            if self.estimated:
                out["direct"] = self._direct_gradient(theta, m)
            for key in ("g_c", "g_0", "direct"):  # from Lambda's entries to theta (structured terms)
                if key in out:
                    out[key] = structured.to_theta(self.st.blocks, theta, out[key])
            if self.psi_gradient:
                out["g_psi"] = self._psi_gradient(m)
        return out

    def agq(self, theta: np.ndarray, beta: np.ndarray, z: np.ndarray, wq: np.ndarray,
            phi: float | None = None) -> float:
        """Sum over this block's levels of log int p(y_j | u) phi(u) du by adaptive Gauss-Hermite quadrature
        (one scalar random-effects term): the rule (z, wq) for N(0, 1) centred on each level's mode and scaled by
        its conditional SD (the information the Laplace approximation uses, so one node gives the Laplace value).
        ``phi``: the dispersion where it is estimated (theta is then relative to sqrt(phi): the standard normal
        effect u has the mode v / sqrt(phi) for the modes v of the penalised deviance, and the same curvature
        1 + theta^2 W)."""
        st = self.st
        m = self.pirls(theta, beta, self.u)
        t = float(theta[0])
        rs = m["rs"]
        zc = st.lead.Z[:, 0]
        eta_f = self._xb(beta) + self.off
        if phi is not None:
            scale = float(np.sqrt(phi))

            def loglik(dev):
                return self.fam.loglik_rows(self.y, dev, phi, self.pw)
        else:
            scale, sat = 1.0, self.lik.sat_rows

            def loglik(dev):
                return sat - 0.5 * self.pw * dev
        if t == 0.0:
            return float(np.sum(loglik(rs.dev)))
        # one more Newton step puts the modes at rounding level (the quadrature is not stationary in them)
        F = m["F"]
        u = (F.solve_u(0) if F.G1.shape[2] else m["u"]) / scale
        info = 0.5 * self.pw * rs.dev_eta2 if self.observed else self.pw * rs.w
        W = st.lead_sum(info * zc * zc)
        sd = 1.0 / np.sqrt(1.0 + t * t * W)
        terms = np.empty((st.L1, z.size))
        logw = np.log(wq)
        for k, zk in enumerate(z):
            uk = u + sd * zk
            dev = row_state(self.resp, eta_f + (t * scale) * zc * st.lead_expand(uk), self.lk).dev
            terms[:, k] = logw[k] + st.lead_sum(loglik(dev)) - 0.5 * uk * uk + 0.5 * zk * zk
        value = float(np.sum(np.log(sd) + special.logsumexp(terms, axis=1)))
        return value if np.isfinite(value) else -np.inf

    def deviance_at_modes(self) -> float:
        """The weighted total deviance at the last modes found."""
        return self._last_dev

    def fixed_precision(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """X'WX - X'WZ Lambda H^-1 Lambda'Z'WX at the modes of (theta, beta), with the working weights (those of
        the last evaluation where it was at (theta, beta) and its mode search used them: no mode search again)."""
        last = self._last
        if last is not None and not self.newton and np.array_equal(last["theta"], theta) \
                and np.array_equal(last["beta"], beta):
            w = last["w"]
        else:
            m = self.pirls(theta, beta, self.u)
            self.u, w = m["u"], self._weighted(m["rs"].w)
        return factor(self.st, self.st.crossprods(w, self.Xs), theta).SEE

    def final(self, theta: np.ndarray, beta: np.ndarray) -> dict:
        """What the results need from this block at the optimum."""
        st = self.st
        m = self._at_last_modes(theta, beta) or self.pirls(theta, beta, self.u)
        # what predicts the next modes is dropped (its per-row arrays with it): an evaluation after the results'
        # starts from these modes
        self._last = None
        rs = m["rs"]
        F = factor(st, st.crossprods(self._weighted(rs.w), self.Xs), theta)
        # the conditional covariances of the modes: the inverse of the Hessian the log-determinant uses
        # (the observed information where glmmTMB's likelihood is fitted)
        cond = (m["F_ld"] if self.estimated or self.fam.hessian_se else F).diag_blocks_inverse(st)
        return {"u": m["u"], "SEE": F.SEE, "cond": cond, **self._row_parts(m), "converged": m["converged"]}

    def _at_last_modes(self, theta: np.ndarray, beta: np.ndarray) -> dict | None:
        """:meth:`pirls`'s answer at (theta, beta) where the last evaluation was there and its mode search ended
        converged (the optimiser's last point, as a rule): the row state at those modes, with no mode-search step
        (PIRLS from them would take one, find its step below its tolerance and keep them, number for number).
        Only for the mode search with the expected information and no edge (the factor it would return is not
        read here). None otherwise."""
        last = self._last
        if last is None or self.newton or self.observed or self.edge or self.fam.hessian_se \
                or not np.array_equal(last["theta"], theta) \
                or not np.array_equal(last["beta"], beta):
            return None
        re, rs, pdev = self._state(last["eta_f"], last["u"], self.st.lambdas(theta))
        if not np.isfinite(pdev):
            return None
        return {"u": last["u"], "rs": rs, "re": re, "converged": True}

    def final_rows(self, theta: np.ndarray, beta: np.ndarray) -> dict:
        """The per-row part of :meth:`final` alone, without its cross-products (the Dask path's actors compute
        their rows' results after the sums)."""
        return self._row_parts(self.pirls(theta, beta, self.u))

    def _row_parts(self, m: dict) -> dict:
        rs = m["rs"]
        return {"mu": rs.mu, "resid": self.y - rs.mu, "var": rs.var, "dev_rows": self._weighted(rs.dev),
                "re": m["re"]}
