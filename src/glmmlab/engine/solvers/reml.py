"""Linear mixed models: the profiled REML (or ML) criterion, lme4's, from the blocked factor of
[Z Lambda, X, y]' W [Z Lambda, X, y] + diag(I, 0, 0); no pass over the rows per evaluation. The REML driver."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from glmmlab.engine.inference import wald as inference
from glmmlab.engine.inference.deferred import Deferred
from glmmlab.engine.model.covstruct import NotPositiveDefinite
from glmmlab.engine.progress import report
from glmmlab.engine.solvers import crossed_newton, structured_reml, structured_start
from glmmlab.engine.solvers.assemble import _assemble, _at_global_levels
from glmmlab.engine.solvers.blocked_cholesky import factor
from glmmlab.engine.solvers.likelihood import sum_log
from glmmlab.engine.solvers.optimizer import stages_document
from glmmlab.engine.solvers.row_blocks import (
    BlockedProfiledLmm,
    RemoteRows,
    centring_fit,
    local_blocks,
    normal_equations,
    outer_factor,
    reml_criterion,
)
from glmmlab.engine.solvers.search import bobyqa
from glmmlab.engine.solvers.structure import Structure, check_coupled_size
from glmmlab.engine.solvers.threads import wide_blas
from glmmlab.engine.solvers.value_polish import polish_value_only


# -- Gaussian + identity: profiled REML ---------------------------------------------------------------------
class ProfiledLmm:
    """The REML (or, with ``reml = False``, ML) criterion as a function of theta alone (beta and sigma profiled
    out), for the whole data or one block of whole outer groups (:class:`BlockedProfiledLmm` adds the blocks'
    :meth:`sums`). The cross-products of [Z, X_s, z - X_s beta0] are computed once; each theta costs one blocked
    factor of them (no pass over the rows). ``beta0``: a fit the response is centred on (see
    :func:`~glmmlab.engine.solvers.row_blocks.centring_fit`); the criterion does not depend on it."""

    def __init__(self, st: Structure, Xs: np.ndarray, z: np.ndarray, pw: np.ndarray,
                 beta0: np.ndarray | None = None):
        self.st, self.Xs, self.n, self.p = st, Xs, Xs.shape[0], Xs.shape[1]
        self.beta0 = np.zeros(self.p) if beta0 is None else np.asarray(beta0, dtype=float)
        if np.any(self.beta0 != 0.0):
            zc = Xs @ -self.beta0
            zc += z
        else:
            zc = z
        unit = bool(np.all(pw == 1.0))
        self.cp = st.crossprods_xz(pw, Xs, zc, unit=unit)
        self.cp.reused = True  # factored at every theta
        self.sum_log_w = 0.0 if unit else sum_log(pw)
        self.evaluations = 0
        self.reml = True  # False: the maximum-likelihood criterion (lmer's REML = FALSE)
        self._last: tuple[bytes, Any, Any] | None = None  # the last theta, the cross-products, their factor
        # the side of the dense coupled block factored with BLAS on every core (threads.wide_blas): set by the
        # driver when this is the fit's only block (crossed factors), 0 (one BLAS thread) otherwise
        self.blas_side = 0

    def _factor(self, theta: np.ndarray):
        """The blocked factor at theta; the last one is kept, as the optimiser's last point is asked for again
        (its value, the criterion's parts, the final results: a dense Cholesky factor each on a big crossed
        model). Kept for the same cross-products only: a profile of a fixed effect puts others in ``cp``."""
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        if self._last is None or self._last[0] != key or self._last[1] is not self.cp:
            with wide_blas(self.blas_side):
                self._last = (key, self.cp, factor(self.st, self.cp, theta))
        return self._last[2]

    def parts(self, theta: np.ndarray, reml: bool = True):
        """(criterion, factor, penalised RSS) at theta, this data alone."""
        F = self._factor(theta)
        dev, pwrss = reml_criterion(F.logdet, F.SEE, self.n, self.sum_log_w, reml)
        return dev, F, pwrss

    def sums(self, theta: np.ndarray) -> dict:
        """This block's log det(Lambda' Z' W Z Lambda + I) and Schur complement of [X_s, z - X_s beta0]."""
        F = self._factor(theta)
        return {"logdet": F.logdet, "SEE": F.SEE}

    def final(self, theta: np.ndarray, beta_s: np.ndarray) -> dict:
        """What the results need from this block at the optimum: the spherical modes u = H^-1 Lambda' Z' W
        (z - X_s beta), the diagonal blocks of H^-1 per level (conditional covariances over sigma^2), each row's
        random-effects contribution and X_s beta."""
        st, p = self.st, self.p
        F = self._factor(theta)
        shift = np.asarray(beta_s, dtype=float) - self.beta0
        u = F.solve_u(p) - sum((F.solve_u(k) * shift[k] for k in range(p)), np.zeros(st.Q))
        re = st.row_effect(st.b_of_u(u, st.lambdas(theta)))
        with wide_blas(self.blas_side):
            cond = F.diag_blocks_inverse(st)
        return {"u": u, "cond": cond, "re": re, "xb": self.Xs @ beta_s}

    def varpar_deviance(self, theta: np.ndarray, sigma: float, reml: bool = True) -> float:
        """The deviance at (theta, sigma) without profiling sigma out (lmerTest's, for Satterthwaite's degrees of
        freedom): log det(L)^2 + pwrss / sigma^2 + n log(2 pi sigma^2) [+ log det(R_X)^2 - p log(2 pi sigma^2)]."""
        F = factor(self.st, self.cp, np.asarray(theta, dtype=float))
        R = linalg.cholesky(F.SEE, lower=True)
        p = self.p
        log2ps = np.log(2.0 * np.pi * sigma * sigma)
        dev = F.logdet + float(R[p, p] ** 2) / (sigma * sigma) + self.n * log2ps - self.sum_log_w
        if reml:
            dev += 2.0 * float(np.sum(np.log(np.diag(R)[:p]))) - p * log2ps
        return float(dev)

    def unscaled_vcov(self, theta: np.ndarray) -> np.ndarray:
        """(X' V(theta)^-1 X)^-1 for the scaled X: the fixed effects' covariance over sigma^2."""
        F = factor(self.st, self.cp, np.asarray(theta, dtype=float))
        return inference.inverse_spd(F.SEE[:self.p, :self.p])

    def value(self, theta: np.ndarray) -> float:
        self.evaluations += 1
        try:
            dev = self.parts(theta, self.reml)[0]
        except (np.linalg.LinAlgError, ValueError):
            return np.inf
        return dev if np.isfinite(dev) else np.inf


def _fit_reml(st, Xs, T, names, mf, pw, off, model, progress, specs):
    report(progress, "Computing cross-products", 0.05)
    z = mf.y if mf.offset is None else mf.y - off
    beta0 = centring_fit(normal_equations(Xs, z, pw))
    blocks = [ProfiledLmm(local, Xs[r], z[r], pw[r], beta0) for local, r in _block_rows(st, specs)]
    if len(blocks) == 1 and st.rest:  # no blocks in threads: the coupled block's dense work on every core
        blocks[0].blas_side = st.Q2
    obj = BlockedProfiledLmm(blocks, mf.n, sum_log(pw), beta0)
    obj.reml = reml = bool(model.get("reml", True))
    start = moment_start(st, Xs, z, pw, beta0) if len(specs) == 1 else None
    try:
        out = _reml_run(obj, specs, st, T, names, mf, pw, off, model, progress,
                        polish=outer_factor(st.blocks) is not None, start=start)
    finally:
        obj.close()
    p = Xs.shape[1]
    nt = st.n_theta
    theta = np.asarray(out["optimization"]["final"], dtype=float)
    whole: list = [blocks[0]] if len(blocks) == 1 else []

    def varpar_model() -> tuple:
        """(deviance, vcov, varpar) of Satterthwaite's method; the profiled criterion on all rows is built when
        first asked for (the fit's own blocks may be several)."""
        if not whole:
            whole.append(ProfiledLmm(st, Xs, z, pw, beta0))
        prof = whole[0]

        def deviance(vp):  # NaN past the edge of a structure's range (toep: R no longer positive definite)
            try:
                return prof.varpar_deviance(vp[:nt], vp[nt], reml)
            except NotPositiveDefinite:
                return np.nan

        def vcov(vp):
            try:
                return vp[nt] ** 2 * (T @ prof.unscaled_vcov(vp[:nt]) @ T.T)
            except NotPositiveDefinite:
                return np.full((p, p), np.nan)

        return deviance, vcov, np.append(theta, np.sqrt(out["var_residual"]))

    if p:  # Satterthwaite's df of any combination of the fixed effects (omnibus F tests, marginal means)
        out["varpar_model"] = varpar_model
    if model.get("ddf", "none") == "satterthwaite" and p:
        # computed when first read (the record's tests, the JSON, the text): a numeric Hessian of the deviance,
        # about a third of a small model's fit, that a caller who reads no tests need not wait for
        sat = Deferred(lambda: _satterthwaite(varpar_model))
        base = list(out["warnings"])
        out["df"] = sat.then(lambda r: r[0])
        out["warnings"] = sat.then(lambda r: base + r[1])
    return out


def _satterthwaite(varpar_model) -> tuple[np.ndarray, list[str]]:
    """Satterthwaite's df of each fixed effect, and the warning when there are none (the estimates on the edge of
    a covariance structure's range)."""
    with np.errstate(all="ignore"):
        df = inference.satterthwaite_df(*varpar_model())
    if not np.all(np.isnan(df)):
        return df, []
    return df, [
        "Satterthwaite's degrees of freedom are not available: the covariance structure's estimate lies on "
        "the edge of its range (its correlation matrix is nearly singular), where the deviance has no second "
        "derivatives. The t tests have no p-values; consider a simpler structure (ar1 instead of toep)"]


def _block_rows(st: Structure, specs: list) -> list[tuple[Structure, slice]]:
    """Each block's structure on its local levels and its slice of the (sorted) rows."""
    if len(specs) == 1:
        check_coupled_size(st)
        return [(st, specs[0].rows)]
    out = [(Structure(local_blocks(st.blocks, None, spec)), spec.rows) for spec in specs]
    for local, _ in out:
        check_coupled_size(local)
    return out


TOEP_OUTSIDE = 1e10  # BOBYQA's value for a toep theta past the positive-definite range (see _reml_run)
MOMENT_STEP = 0.05  # BOBYQA's first steps from moment_start's theta, relative to it


def moment_start(st: Structure, Xs: np.ndarray, z: np.ndarray, pw: np.ndarray, beta0: np.ndarray
                 ) -> np.ndarray | None:
    """A start for crossed random intercepts with a large sparse coupling (each REML evaluation a dense Cholesky
    factor of the coupled block: MovieLens' 3,706 movies), from moments of the residuals r of the fixed-effects fit
    ``beta0``: their variance T estimates sigma^2 + the sum of the factors' variances, and the variance within the
    levels of factor k (weighted, per degree of freedom) estimates T less factor k's own variance, as long as each
    level meets many levels of the other factors (crossing, not nesting). Theta_k = sd_k / sigma. MovieLens' shape:
    within 1.5 % of the REML optimum, where lme4's start and the halving scan took BOBYQA 36 evaluations and this
    19, to the same optimum. None (the usual start) for other models, when the user gave a start, or when an
    estimate is not positive."""
    default = np.concatenate([b.theta_start() for b in st.blocks])
    if (not st.rest or st.dense or not st.all_scalar or not all(st.ones1) or not all(st.rest_ones)
            or outer_factor(st.blocks) is not None or not np.array_equal(st.theta_start(), default)):
        return None
    n, p = Xs.shape
    r = z - Xs @ beta0
    wr = pw * r
    total = float(r @ wr)
    T = total / (n - p)
    own = []
    for b in st.blocks:  # the few grouping factors, each a pass of bincounts over the rows
        codes = np.asarray(b.codes, dtype=np.intp)
        s1 = np.bincount(codes, weights=wr, minlength=b.n_levels)
        w = np.bincount(codes, weights=pw, minlength=b.n_levels)
        within = (total - float(np.sum(s1 * s1 / np.where(w > 0, w, 1.0)))) / max(n - b.n_levels, 1)
        own.append(T - within)
    sigma2 = T - sum(own)
    if not (sigma2 > 0 and min(own) > 0):
        return None
    return np.sqrt(np.array(own) / sigma2)


def _reml_run(obj, specs, st, T, names, mf, pw, off, model, progress, polish: bool = True,
              remote: "RemoteRows | None" = None, start: np.ndarray | None = None):
    """Optimise the profiled REML (``obj.reml`` False: ML) criterion of ``obj`` (a BlockedProfiledLmm over threads
    or actors) and gather the fields of its record (:func:`~glmmlab.engine.solvers.assemble._assemble`): beta and
    its covariance from the summed Schur complement, the modes and conditional covariances from the blocks, put at
    their global levels. ``polish``: Newton steps after BOBYQA take theta to rounding level, so the fit does not
    depend on how the rows are cut into blocks (models whose factors nest; each evaluation is cheap there).
    ``remote``: the rows when they are not in ``mf`` (see :class:`RemoteRows`). ``start``: a theta near the
    optimum (:func:`moment_start`), where :mod:`~glmmlab.engine.solvers.crossed_newton`'s Newton steps start
    (with the blocks in this process), else BOBYQA with steps of MOMENT_STEP of it; None: lme4's start and the
    halving scan."""
    reml = obj.reml
    lower = st.theta_lower()
    label = "Optimizing REML criterion" if reml else "Optimizing ML criterion"
    report(progress, label, 0.1)
    if structured_reml.gradient_ok(st, obj):  # a structured term: quasi-Newton with the exact gradient
        theta, record = structured_reml.fit(obj, st, lower, model)
    elif start is not None and crossed_newton.applies(obj, start) and (
            newton := crossed_newton.fit(obj, start, lower)) is not None:
        theta, record = newton  # crossed intercepts: Newton steps from stencils that share their t1
    elif start is None:
        x0 = st.theta_start()
        nested = structured_start.nested_ar1(obj.value, st.blocks[0], x0, model) if len(st.blocks) == 1 else None
        if nested is not None and obj.value(nested[0]) < obj.value(x0):  # a toep term: from its ar1 optimum
            # past the edge of toep's range the criterion is undefined: a finite stand-in (TOEP_OUTSIDE) keeps
            # BOBYQA's quadratic model usable where the optimum lies on that edge (with 1e300 it stopped 1e-3
            # short in log-likelihood, the correlation matrix's least eigenvalue 2e-3 from singular)
            theta, record = bobyqa(obj.value, nested[0], lower, model, progress, label, 0.1, 0.8,
                                   initial_step=MOMENT_STEP * np.maximum(np.abs(nested[0]), 0.1),
                                   outside=TOEP_OUTSIDE)
            record.evaluations += nested[1] + 2
        else:
            theta, record = bobyqa(obj.value, x0, lower, model, progress, label, 0.1, 0.8, scale_start=True)
    else:
        theta, record = bobyqa(obj.value, start, lower, model, progress, label, 0.1, 0.8,
                               initial_step=MOMENT_STEP * start)
    if polish and record.converged and record.optimizer.startswith("BOBYQA"):
        report(progress, f"{label} (Newton steps)", 0.8)
        theta, f, steps, evals = polish_value_only(obj.value, theta, lower, record.log)
        record.x, record.objective = [float(v) for v in theta], float(f)
        record.iterations += steps
        record.evaluations += evals
    theta = _onto_the_boundary(obj.value, theta, lower, record)
    record.stage = "REML" if reml else "ML"
    dev, SEE, pwrss = obj.criterion(theta)
    p = SEE.shape[0] - 1
    n = mf.n
    A = SEE[:p, :p]
    beta_s = obj.beta0 + linalg.solve(A, SEE[:p, p], assume_a="pos") if p else np.zeros(0)
    sigma2 = pwrss / (n - p) if reml else pwrss / n
    vcov_s = sigma2 * inference.inverse_spd(A) if p else np.zeros((0, 0))
    beta, vcov = T @ beta_s, T @ vcov_s @ T.T
    # the REML criterion depends on the parameterisation of X (reported for the original columns); ML's does not
    log_det_T = float(np.sum(np.log(np.abs(np.diag(linalg.qr(T)[1]))))) if p and reml else 0.0
    loglik = -0.5 * (dev - 2.0 * log_det_T)
    finals = obj.finals(theta, beta_s)
    us, conds = _at_global_levels(st, obj.units, specs, finals)
    lams = st.lambdas(theta)
    bs = [u @ L.T for u, L in zip(us, lams)]
    if remote is None:
        one = len(finals) == 1  # rows in block order
        rows = reml_rows({k: finals[0][k] if one else np.concatenate([f[k] for f in finals]) for k in ("re", "xb")},
                         mf.y, None if mf.weights is None else pw, None if mf.offset is None else off)
    else:
        rows = remote.rows(finals)
    cond = [sigma2 * c for c in conds]
    null_loglik = None
    if len(st.blocks) == 1 and st.q1 == 1:
        d0 = obj.criterion(np.zeros(st.n_theta))[0]
        null_loglik = -0.5 * (d0 - 2.0 * log_det_T)
    k = p + st.n_theta + 1
    return _assemble(st, mf, model, "REML" if reml else "ML", record.converged, theta, lams, sigma2, True, beta,
                     vcov, names, "X'V^-1X", loglik, k, bs, cond, rows, null_loglik, stages_document([record]), None,
                     sigma2)


def reml_rows(fin: dict, y: np.ndarray, pw: np.ndarray | None, off: np.ndarray | None) -> dict:
    """The per-row results of a linear mixed model from :meth:`ProfiledLmm.final`'s rows (``fin``: of one block,
    or of all blocks concatenated), the response, prior weights and offset (None: none): fitted values, residuals
    (times the square root of the weights: the deviance and the Pearson residuals, equal), random-effects
    contributions. ``fin["xb"]`` is not kept: the fitted values are made in it."""
    re = fin["re"]
    fitted = fin["xb"]
    fitted += re
    if off is not None:
        fitted += off
    resid = np.subtract(y, fitted)
    if pw is not None:
        resid *= np.sqrt(pw)
    return {"fitted": fitted, "deviance_residuals": resid, "pearson_residuals": resid.copy(),
            "group_random_effect": re}


def _onto_the_boundary(fun, theta: np.ndarray, lower: np.ndarray, record) -> np.ndarray:
    """theta with each SD the optimiser left just above its bound 0 (below 1e-3) set to 0 where the criterion
    there is no higher than at the optimum, to rounding (1e-10): a singular fit is then reported as exactly
    singular (variance 0, conditional SDs 0), as lme4 reports it, rather than with an SD of 1e-9 that only the
    optimiser's stopping rule put there."""
    theta = np.asarray(theta, dtype=float)
    f = fun(theta)
    for k in np.flatnonzero((lower == 0.0) & (theta > 0.0) & (theta < 1e-3)):
        trial = theta.copy()
        trial[k] = 0.0
        f_trial = fun(trial)
        if f_trial <= f + 1e-10 * max(1.0, abs(f)):
            theta, f = trial, f_trial
            record.x, record.objective = [float(v) for v in theta], float(f)
    return theta
