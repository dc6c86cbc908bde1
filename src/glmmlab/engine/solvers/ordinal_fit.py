"""The driver of a cumulative-link (ordinal) mixed model: the member of the family for the response, the start
(the model without random effects), the Laplace (or AGQ) optimisation over (theta, beta, thresholds) by the
general Laplace driver, and then what only an ordinal fit reports: the covariance of the thresholds, slopes and
log SDs from the Hessian of the deviance, as ``ordinal::clmm`` computes its ``vcov``.

The thresholds are the family's own parameters (see :mod:`glmmlab.engine.families.ordinal`), so the optimisation
is the one every family with parameters of its own gets (their exact gradient included); this module adds the
start, the Hessian and the results."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.ordinal import OrdinalFamily, threshold_terms
from glmmlab.engine.inference import wald as inference
from glmmlab.engine.inference.ordinal import OrdinalFit
from glmmlab.engine.progress import report
from glmmlab.engine.solvers.blocked_cholesky import Structure
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.laplace_fit import _laplace_run
from glmmlab.engine.solvers.likelihood import Likelihood
from glmmlab.engine.solvers.optimizer import fd_hessian, off_bound
from glmmlab.engine.solvers.reml import _block_rows
from glmmlab.engine.solvers.row_blocks import BlockedLaplace
from glmmlab.engine.solvers.scaling import design_dot


class OrdinalLaplace(GeneralLaplace):
    """The Laplace deviance of an ordinal model: :class:`GeneralLaplace` with the gradient in the thresholds
    computed exactly from the rows' derivatives in them (:func:`threshold_terms`), where the general one
    differentiates each member's row state by central differences (2 (K - 1) row states per gradient)."""

    def _psi_gradient(self, m: dict) -> np.ndarray:
        """dD/dpsi as :meth:`GeneralLaplace._psi_gradient` computes it (the data term, the log-determinant's
        curvature through s_i and its modes' shift through t_i), with every row's derivatives in its two thresholds
        exact: per row -2 D(log p) - s D(l2) + t D(l1) for D the derivative in its upper end a (threshold c) or its
        lower end b (threshold c - 1); summed per threshold and taken to the optimiser's scale by the thresholds'
        Jacobian."""
        fam = self.fam
        assert isinstance(fam, OrdinalFamily)  # the blocks of an ordinal fit hold its members
        K = len(fam.levels)
        codes = self.resp.codes  # type: ignore[attr-defined]  # OrdinalFamily.prepare_response's
        (lp_a, l1_a, l2_a), (lp_b, l1_b, l2_b) = threshold_terms(fam.link_name(), fam.thresholds, codes,
                                                                 m["rs"].eta)
        s_rows, t_rows = m["s_rows"], m["t_rows"]
        ca = self._weighted(-2.0 * lp_a - s_rows * l2_a + t_rows * l1_a)
        cb = self._weighted(-2.0 * lp_b - s_rows * l2_b + t_rows * l1_b)
        g_th = (np.bincount(codes, weights=ca, minlength=K + 1)
                + np.bincount(codes - 1, weights=cb, minlength=K + 1))[1:K]
        return fam.internal_jacobian(fam.to_internal(fam.parameters)).T @ g_th


def member_for(fam: OrdinalFamily, y: np.ndarray, link: str) -> OrdinalFamily:
    """The family's member for a response of category numbers ``y`` under ``link``: the front doors give one
    with the response's categories; the engine called with the template labels them 1 .. K."""
    if fam.levels:
        return fam if fam.link == link else fam.for_levels(fam.levels, link)
    K = int(np.max(y)) if y.size else 0
    return fam.for_levels([str(k) for k in range(1, K + 1)], link)


def fit_ordinal(st: Structure, Xs, T, names, mf, pw, off, fam: OrdinalFamily, lk, model, progress, specs) -> dict:
    """The record's fields of an ordinal mixed model (see :func:`glmmlab.engine.solvers.fit.fit_frame`)."""
    fam = member_for(fam, mf.y, lk.name)
    K = len(fam.levels)
    codes = np.asarray(mf.y, dtype=np.intp)
    if np.any(np.bincount(codes, minlength=K + 1)[1:] == 0):
        from glmmlab.engine.errors import GlmmInputError

        empty = [lv for lv, c in zip(fam.levels, np.bincount(codes, minlength=K + 1)[1:]) if c == 0]
        raise GlmmInputError(f"the ordinal response '{mf.response}' has no rows in the categories "
                             f"{', '.join(map(repr, empty))}: their thresholds cannot be estimated; drop those "
                             "categories from the levels")
    report(progress, "Initial values (cumulative-link model without random effects)", 0.05)
    beta0, fam, m2 = fam.fixed_effects_fit(Xs, mf.y, pw, off)
    laps = [OrdinalLaplace(local, Xs[r], mf.y[r], pw[r], off[r], fam, lk) for local, r in _block_rows(st, specs)]
    obj = BlockedLaplace(laps, Likelihood(fam, mf.y, pw), st.n_theta)
    try:
        out = _laplace_run(obj, specs, st, Xs, T, names, mf, pw, off, fam, lk, model, "working", progress, beta0,
                           fam.parameters, m2, None)
        fam = obj.laps[0].fam
        theta = np.asarray(out["theta"], dtype=float)
        beta_s = np.linalg.solve(T, np.asarray(out["beta"], dtype=float))
        psi = fam.to_internal(fam.parameters)
        x = np.concatenate([theta, beta_s, psi])
        report(progress, "Computing standard errors (Hessian)", 0.9)
        nagq = int(model.get("nagq", 1))
        H = _hessian(obj, fam, st, Xs, mf, pw, x, nagq)
        fam_at = obj.laps[0].fam
        assert fam_at.parameters == fam.parameters
        cov, se_log_sd = _clmm_covariance(H, x, st, T, fam)
    finally:
        obj.close()
    nt, p, m = st.n_theta, Xs.shape[1], len(fam.parameter_names)
    out["vcov_matrix"] = cov[m:m + p, m:m + p]
    out["se_kind"] = "Hessian of the " + ("AGQ" if nagq > 1 else "Laplace") + " deviance"
    eta = design_dot(Xs, beta_s) + off + np.asarray(out["row_random_effect"], dtype=float)
    out["ordinal"] = OrdinalFit(link=lk.name, levels=list(fam.levels), names=list(fam.parameter_names),
                                thresholds=np.asarray(fam.parameters, dtype=float), vcov=cov[:m, :m],
                                se_log_sd=se_log_sd, codes=codes.copy(), eta=eta)
    out["family_parameter"] = out["family_parameters"] = None  # the thresholds are the ordinal part's
    del nt
    return out


def _hessian(obj: BlockedLaplace, fam: OrdinalFamily, st: Structure, Xs, mf, pw, x: np.ndarray,
             nagq: int) -> np.ndarray:
    """The Hessian of the deviance (Laplace, or AGQ with ``nagq`` nodes) at ``x`` = (theta, scaled beta,
    thresholds on the optimiser's scale): differences of the exact gradient (Laplace), or of values (AGQ);
    zero rows and columns for an SD at its bound 0."""
    nt = st.n_theta
    m = len(fam.parameter_names)
    lo, hi = fam.internal_range()

    def set_member(psi: np.ndarray) -> bool:
        if not np.all((lo < psi) & (psi < hi)):
            return False
        f = fam.with_parameters(fam.from_internal(psi))
        obj.set_family(f, Likelihood(f, mf.y, pw))
        return True

    lower = np.concatenate([st.theta_lower(), np.full(x.size - nt, -np.inf)])
    idx = np.flatnonzero(off_bound(x, lower))
    H = np.zeros((x.size, x.size))
    if nagq > 1:
        from glmmlab.engine.solvers.quadrature import normal_nodes

        zq, wq = normal_nodes(nagq)

        def value(z: np.ndarray) -> float:
            xf = x.copy()
            xf[idx] = z
            if not set_member(xf[-m:]):
                return np.inf
            params = xf[:-m]
            total = sum(obj.map(lambda lap: lap.agq(params[:nt], params[nt:], zq, wq, None)))
            return -2.0 * float(total)

        H[np.ix_(idx, idx)] = inference.central_hessian(value, x[idx], 1e-3 * np.maximum(1.0, np.abs(x[idx])))
    else:
        def fg(z: np.ndarray):
            xf = x.copy()
            xf[idx] = z
            if not set_member(xf[-m:]):
                return np.inf, np.zeros(idx.size)
            f, g = obj.value_and_grad(xf[:-m])
            return f, g[idx]

        H[np.ix_(idx, idx)] = fd_hessian(fg, x[idx], lower[idx])
    set_member(x[-m:])  # the member of the estimates again
    obj.value(x[:-m])  # and its modes
    return H


def _clmm_covariance(H: np.ndarray, x: np.ndarray, st: Structure, T: np.ndarray, fam: OrdinalFamily
                     ) -> tuple[np.ndarray, dict]:
    """clmm's ``vcov``: the inverse of the Hessian of -log L over (thresholds, slopes, log SDs), from ours over
    (theta, scaled beta, thresholds' internal scale). At the optimum the gradient is zero, so the Hessian in one
    parameterisation is J' H J in the other and the covariances transform by the Jacobians: thresholds by
    :meth:`OrdinalFamily.internal_jacobian`, slopes by T, the SD of a scalar term theta to log theta by 1 /
    theta. Returns the covariance of (thresholds, slopes) (the SDs' rows dropped) and the SE of each scalar
    term's log SD by grouping factor (None at the bound 0 or for a term that is not scalar)."""
    nt, m = st.n_theta, len(fam.parameter_names)
    p = T.shape[0]
    free = np.flatnonzero(np.any(H != 0.0, axis=0))
    cov = np.full_like(H, np.nan)
    cov[np.ix_(free, free)] = 2.0 * inference.inverse_spd(H[np.ix_(free, free)])
    # reorder to (psi, beta_s, theta) and transform
    order = np.concatenate([np.arange(nt + p, nt + p + m), np.arange(nt, nt + p), np.arange(nt)])
    C = cov[np.ix_(order, order)]
    J = np.zeros((m + p, m + p))
    J[:m, :m] = fam.internal_jacobian(x[nt + p:])
    J[m:, m:] = T
    top = J @ C[:m + p, :m + p] @ J.T
    se_log_sd: dict = {}
    k = 0
    for b in st.blocks:
        scalar = b.q == 1 and b.n_theta == 1
        th = float(x[k])
        var = C[m + p + k, m + p + k]
        se_log_sd[b.component] = float(np.sqrt(var) / th) if scalar and th > 0 and np.isfinite(var) else None
        k += b.n_theta
    return top, se_log_sd
