"""One function that fits a random-intercept GLMM from arrays: validation of options, data preparation,
the right estimator for the family and link, inference, BLUPs, diagnostics, warnings and the GLM comparison."""

from __future__ import annotations

import time

import numpy as np

from glmmlab.engine import inference
from glmmlab.engine.design import Design, prepare
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families import Family, Link, resolve
from glmmlab.engine.glm import fit_glm
from glmmlab.engine.laplace import LaplaceObjective, LaplacePoint
from glmmlab.engine.lmm import LmmFit, fit_reml, reml_state, LmmSums
from glmmlab.engine.optimizer import OptimizationRecord, fd_hessian, minimize, numeric_gradient
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.quadrature import AgqObjective
from glmmlab.engine.results import GlmmResult
from glmmlab.engine import advice

SINGULAR_THETA = 1e-4
MAX_NAGQ = 50


def validate_options(
    family: str, link: str | None, conf_level: float, max_iter: int, tol: float, nagq: int, se: str
) -> tuple[Family, Link]:
    """Check every option once, at the edge; messages name the option and the rule."""
    fam, lk = resolve(family, link)
    if not isinstance(conf_level, (int, float)) or not (0.5 <= float(conf_level) <= 0.9999):
        raise GlmmInputError(
            f"conf_level must be between 0.5 and 0.9999 (50% to 99.99%); got {conf_level!r}"
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise GlmmInputError(f"max_iter must be an integer >= 1; got {max_iter!r}")
    if not isinstance(tol, (int, float)) or not np.isfinite(tol) or not (0 < tol < 1):
        raise GlmmInputError(f"tol must be a number between 0 and 1 (e.g. 1e-6); got {tol!r}")
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or not (1 <= nagq <= MAX_NAGQ):
        raise GlmmInputError(f"nagq must be an integer from 1 to {MAX_NAGQ}; got {nagq!r}")
    if nagq > 1 and fam.name == "gaussian":
        raise GlmmInputError(
            "nagq > 1 (adaptive Gauss-Hermite quadrature) is for the binomial, poisson and gamma families; "
            "use nagq 1 with the gaussian family"
        )
    if se not in ("working", "hessian"):
        raise GlmmInputError(f"se must be 'working' or 'hessian'; got {se!r}")
    return fam, lk


def fit_arrays(
    y: np.ndarray,
    X: np.ndarray,
    names: list[str],
    group_codes: np.ndarray,
    group_levels: list[str],
    *,
    response: str = "y",
    group_name: str = "group",
    family: str = "gaussian",
    link: str | None = None,
    intercept: bool = True,
    conf_level: float = 0.95,
    max_iter: int = 100,
    tol: float = 1e-6,
    nagq: int = 1,
    se: str = "working",
    progress: ProgressFn = None,
) -> GlmmResult:
    """Fit g(mu_i) = x_i' beta + u_j[i], u_j ~ N(0, sigma_u^2), and return a :class:`GlmmResult`.

    ``y`` and ``X`` are floats with NaN/inf for missing or non-numeric values; ``group_codes`` index
    ``group_levels`` (negative for a missing group).
    """
    fam, lk = validate_options(family, link, conf_level, max_iter, tol, nagq, se)
    start = time.perf_counter()
    report(progress, "Preparing data", 0.0)
    d = prepare(y, X, list(names), group_codes, group_levels, fam,
                response=response, group_name=group_name, intercept=intercept)
    model = {
        "response": response, "fixed": list(names), "group": group_name, "family": fam.name,
        "link": lk.name, "intercept": bool(intercept), "conf_level": float(conf_level), "nagq": int(nagq),
        "max_iter": int(max_iter), "tol": float(tol),
    }
    if fam.name == "gaussian" and lk.name == "identity":
        result = _fit_lmm(d, model, max_iter, tol, se, progress)
    else:
        result = _fit_glmm(d, fam, lk, model, max_iter, tol, nagq, se, progress)
    result.fit_seconds = time.perf_counter() - start
    report(progress, "Done", 1.0)
    return result


# ---------------------------------------------------------------------------------------------------------
def _fit_lmm(d: Design, model: dict, max_iter: int, tol: float, se: str, progress: ProgressFn) -> GlmmResult:
    fit: LmmFit = fit_reml(d, max_iter=max_iter, tol=tol, progress=progress)
    st = fit.state
    report(progress, "Computing standard errors", 0.8)
    vcov_s = st.sigma2 * inference.inverse_spd(st.A)
    beta, vcov = inference.to_original_scale(d, st.beta, vcov_s)
    # The REML criterion depends on the parameterisation of X; report it for the original columns.
    deviance = st.deviance - 2.0 * d.log_abs_det_T()
    loglik = -0.5 * deviance
    var_group = st.sigma2 * st.theta ** 2
    k = d.p + 2
    aic, bic = inference.information_criteria(loglik, k, d.n)

    report(progress, "Computing BLUPs and diagnostics", 0.9)
    s = LmmSums.from_design(d)
    blup = st.c * (s.Sy - s.Sx @ st.beta)
    blup_se = np.sqrt(st.sigma2 * st.c)
    fitted = d.X @ st.beta + blup[d.group]
    resid = d.y - fitted

    null = reml_state(s, 0.0)
    null_loglik = -0.5 * (null.deviance - 2.0 * d.log_abs_det_T())
    icc = inference.icc("gaussian", "identity", var_group, st.sigma2)
    se_hessian = None
    if se == "hessian":
        se_hessian = np.sqrt(np.diag(vcov))
    opt = {"start": [float(h["theta"]) for h in fit.history[:1]], "final": [float(st.theta)],
           "objective": float(st.deviance), "iterations": fit.iterations, "evaluations": len(fit.history),
           "converged": fit.converged, "parameter": "theta = sigma_u / sigma_e", "log": fit.history}
    return _assemble(
        d, model, "REML", "REML", fit.converged, st.theta, beta, vcov, "X'V^-1X",
        var_group, st.sigma2, icc, loglik, k, aic, bic, blup, blup_se, fitted, resid, resid,
        null_loglik, opt, se_hessian,
    )


def _fit_glmm(
    d: Design, fam: Family, lk: Link, model: dict, max_iter: int, tol: float, nagq: int, se: str,
    progress: ProgressFn,
) -> GlmmResult:
    report(progress, "Initial values (GLM)", 0.05)
    beta0 = fit_glm(d, fam, lk)
    lap = LaplaceObjective(d, fam, lk)
    null_point = lap.point(0.0, beta0)
    theta0 = moment_theta(d, null_point, fam.has_dispersion)
    lower = np.concatenate([[0.0], np.full(d.p, -np.inf)])

    def on_iter(k: int, f: float) -> None:
        report(progress, f"Optimizing Laplace deviance (iteration {k}, deviance {f:.4f})",
               0.1 + 0.6 * min(k / 30.0, 1.0))

    report(progress, "Optimizing Laplace deviance", 0.1)
    x, record = minimize(lap.value_and_grad, np.concatenate([[theta0], beta0]), lower,
                         max_iter=max_iter, tol=tol, on_iteration=on_iter,
                         hessian=(se == "hessian" and nagq == 1))
    method, kind = "Laplace", "Laplace"
    objective = lap
    if nagq > 1:
        agq = AgqObjective(d, fam, lk, nagq)
        agq.laplace._u = lap._u.copy()

        def on_iter_agq(k: int, f: float) -> None:
            report(progress, f"Optimizing AGQ deviance, {nagq} nodes (iteration {k})",
                   0.7 + 0.15 * min(k / 20.0, 1.0))

        fg = numeric_gradient(agq.value, lower)
        x, record = minimize(fg, x, lower, max_iter=max_iter, tol=tol, on_iteration=on_iter_agq,
                             hessian=(se == "hessian"))
        method, kind = "AGQ", "AGQ"
        objective = agq
    report(progress, "Computing standard errors", 0.85)
    theta, beta_s = float(x[0]), x[1:]
    pt = lap.point(theta, beta_s)
    deviance = objective.deviance_at(pt) if nagq > 1 else pt.deviance
    loglik = -0.5 * deviance
    rs = pt.rows
    sigma2 = 1.0
    var_residual = None
    if fam.has_dispersion:
        sigma2 = float((np.sum((d.y - rs.mu) ** 2 / rs.var) + pt.u @ pt.u) / d.n)
        var_residual = sigma2
    prec = inference.working_precision(d, rs.w, theta, pt.W)
    vcov_s = sigma2 * inference.inverse_spd(prec)
    beta, vcov = inference.to_original_scale(d, beta_s, vcov_s)
    se_hessian = None
    if se == "hessian" and record.hessian is not None:
        cov_all = 2.0 * inference.inverse_spd(record.hessian)
        _, vcov_h = inference.to_original_scale(d, beta_s, cov_all[1:, 1:])
        se_hessian = np.sqrt(np.abs(np.diag(vcov_h)))

    k = d.p + 1 + (1 if fam.has_dispersion else 0)
    aic, bic = inference.information_criteria(loglik, k, d.n)
    var_group = theta * theta
    icc = inference.icc(fam.name, lk.name, var_group, var_residual)

    report(progress, "Computing BLUPs and diagnostics", 0.9)
    blup = theta * pt.u
    blup_se = np.sqrt(sigma2 * theta * theta / (1.0 + theta * theta * pt.W))
    fitted = rs.mu
    dev_resid = np.sign(d.y - rs.mu) * np.sqrt(np.maximum(rs.dev, 0.0))
    pearson = (d.y - rs.mu) / np.sqrt(rs.var)

    report(progress, "Fitting the GLM without random effects", 0.93)
    # The conditional part of the objective is increasing in the total deviance for every family, so the
    # IRLS estimate (minimum deviance) is also the GLM's maximum-likelihood estimate under our conventions.
    null_loglik = -0.5 * null_point.deviance
    converged = record.converged and pt.modes_converged
    opt = record.to_dict()
    opt["parameters"] = ["theta"] + [f"beta[{n}] (scaled)" for n in d.names]
    result = _assemble(
        d, model, method, kind, converged, theta, beta, vcov, "working weights at PIRLS convergence",
        var_group, var_residual, icc, loglik, k, aic, bic, blup, blup_se, fitted, dev_resid, pearson,
        null_loglik, opt, se_hessian,
    )
    if fam.name == "binomial":
        result.warnings.extend(advice.separation(d, beta_s, rs.mu))
    return result


def moment_theta(d: Design, pt: LaplacePoint, has_dispersion: bool) -> float:
    """A starting value for theta from the GLM fit: the between-group variance of the groups' weighted mean
    working residuals, less their average sampling variance (method of moments on the link scale)."""
    rs = pt.rows
    r = (d.y - rs.mu) / rs.h1
    w = rs.w
    W = d.group_sum(w)
    phi = float(np.sum(w * r * r) / max(d.n - d.p, 1)) if has_dispersion else 1.0
    rbar = d.group_sum(w * r) / np.maximum(W, 1e-300)
    tau2 = float(np.mean(rbar * rbar) - np.mean(phi / np.maximum(W, 1e-300)))
    theta = np.sqrt(max(tau2, 0.0))
    return float(min(max(theta, 0.1), 5.0))


def _assemble(
    d: Design, model: dict, method: str, kind: str, converged: bool, theta: float, beta: np.ndarray,
    vcov: np.ndarray, se_kind: str, var_group: float, var_residual: float | None, icc: float | None,
    loglik: float, k: int, aic: float, bic: float, blup: np.ndarray, blup_se: np.ndarray, fitted: np.ndarray,
    dev_resid: np.ndarray, pearson: np.ndarray, null_loglik: float, opt: dict, se_hessian: np.ndarray | None,
) -> GlmmResult:
    singular = theta < SINGULAR_THETA
    warnings = list(d.warnings)
    if singular:
        warnings.append(advice.SINGULAR)
    if not converged:
        warnings.append(advice.not_converged(model["max_iter"], model["tol"]))
    if d.n_groups < 5:
        warnings.append(advice.few_groups(d.n_groups))
    order = d.input_order  # diagnostics in the input's row order
    stat, pval = inference.boundary_lrt(loglik, null_loglik)
    glm_k = k - 1
    glm_aic, glm_bic = inference.information_criteria(null_loglik, glm_k, d.n)
    mean_size = d.n / d.n_groups
    comparison = {
        "glm_log_likelihood": float(null_loglik), "glm_aic": float(glm_aic), "glm_bic": float(glm_bic),
        "glm_k": int(glm_k), "lrt_statistic": float(stat), "lrt_df": 1, "lrt_p_value": float(pval),
        "lrt_note": "boundary-corrected: p = 0.5 * P(chi2(1) > statistic)",
        "mean_group_size": float(mean_size),
        "design_effect": None if icc is None else float(1.0 + (mean_size - 1.0) * icc),
    }
    return GlmmResult(
        model=model, method=method, n_obs=d.n, n_groups=d.n_groups, n_excluded=d.n_excluded,
        converged=bool(converged), singular=bool(singular), warnings=warnings, names=d.names,
        beta=beta, vcov=vcov, se=np.sqrt(np.maximum(np.diag(vcov), 0.0)), se_kind=se_kind,
        var_group=float(var_group), var_residual=None if var_residual is None else float(var_residual),
        icc=icc, log_likelihood=float(loglik), log_likelihood_kind=kind, aic=float(aic), bic=float(bic), k=k,
        group_labels=list(d.levels), blup=blup, blup_se=blup_se, rows=d.rows[order],
        fitted=fitted[order], deviance_residuals=dev_resid[order], pearson_residuals=pearson[order],
        row_random_effect=blup[d.group][order], fit_seconds=0.0, theta=float(theta), dropped=list(d.dropped),
        glm_comparison=comparison, optimization=opt, se_hessian=se_hessian,
    )
