"""One function that fits a random-intercept GLMM from arrays: validation of options, data preparation,
the right estimator for the family and link, inference, BLUPs, diagnostics, warnings and the GLM comparison.

The estimation itself (:func:`fit_blocks`) sees the data only through blocks of whole groups
(:mod:`glmmlab.engine.blocks`): in memory they are slices of one design run in threads; on a Dask cluster
(:mod:`glmmlab.services.distributed`) they live on the workers. Both run this same code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from glmmlab.engine import advice, inference
from glmmlab.engine.blocks import LocalBlocks, default_block_count, one_blas_thread, split_design
from glmmlab.engine.design import Design, prepare
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families import Family, Link
from glmmlab.engine.glm import glm_fit
from glmmlab.engine.laplace import LaplaceObjective
from glmmlab.engine.lmm import LmmFit, LmmSums, fit_reml, reml_state, varpar_deviance
from glmmlab.engine.optimizer import feasible_theta, minimize, numeric_gradient
from glmmlab.engine.options import (  # noqa: F401  (MAX_NAGQ re-exported)
    MAX_NAGQ,
    check_options,
    nondefault_options,
    resolve_ddf,
)
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.quadrature import AgqObjective
from glmmlab.engine.results import GlmmResult
from glmmlab.engine.spec import random_intercept_formula

SINGULAR_THETA = 1e-4


@dataclass
class DesignMeta:
    """What the driver needs to know about a prepared design besides the blocks' data."""

    names: list[str]
    levels: list[str]
    T: np.ndarray
    n: int
    n_input: int
    intercept: bool
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def p(self) -> int:
        return len(self.names)

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def n_excluded(self) -> int:
        return self.n_input - self.n

    def log_abs_det_T(self) -> float:
        return float(np.sum(np.log(np.abs(np.diag(self.T)))))

    @classmethod
    def of(cls, d: Design) -> "DesignMeta":
        return cls(names=list(d.names), levels=list(d.levels), T=d.T, n=d.n, n_input=d.n_input,
                   intercept=d.intercept, dropped=list(d.dropped), warnings=list(d.warnings))


def validate_options(
    family: str, link: str | None, conf_level: float, max_iter: int, tol: float, nagq: int, se: str,
    reml: bool = True, ddf: str = "auto",
) -> tuple[Family, Link]:
    """Check every option once, at the edge (the rules are declared in :mod:`glmmlab.engine.options`)."""
    return check_options(family, link, conf_level, max_iter, tol, nagq, se, reml, ddf)


def _formula_or_none(response: str, group: str, fixed: list[str], intercept: bool) -> str | None:
    """The formula of the random-intercept form, or None when the names are R coefficient names that a formula
    cannot hold (a backquoted name); the formula front door then sets the formula it was given."""
    try:
        return random_intercept_formula(response, group, fixed, intercept)
    except GlmmInputError:
        return None


def model_spec(response: str, fixed: list[str], group: str, fam: Family, lk: Link, intercept: bool,
               conf_level: float, nagq: int, max_iter: int, tol: float, reml: bool = True,
               ddf: str = "auto") -> dict:
    """The "model" object of a fit's JSON: what was asked for."""
    return {
        "response": response, "fixed": list(fixed), "group": group, "family": fam.name, "link": lk.name,
        "intercept": bool(intercept), "conf_level": float(conf_level), "nagq": int(nagq),
        "max_iter": int(max_iter), "tol": float(tol),
        "formula": _formula_or_none(response, group, list(fixed), intercept),
        "weights": None, "offset": None, **nondefault_options(reml, resolve_ddf(ddf, fam.name, lk.name)),
    }


@dataclass
class PreparedFit:
    """A checked model and its design, ready to fit; ``start`` is when the fit's clock started."""

    design: Design
    family: Family
    link: Link
    model: dict
    se: str
    start: float


def prepare_fit(
    y: np.ndarray,
    X: np.ndarray | Sequence[np.ndarray],
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
    reml: bool = True,
    ddf: str = "auto",
    progress: ProgressFn = None,
) -> PreparedFit:
    """Check the options and build the design (see :func:`fit_arrays` for the arguments). The design holds
    what the fit needs, so a caller may drop its input columns before :func:`fit_prepared`."""
    fam, lk = validate_options(family, link, conf_level, max_iter, tol, nagq, se, reml, ddf)
    start = time.perf_counter()
    with one_blas_thread():
        report(progress, "Preparing data", 0.0)
        d = prepare(y, X, list(names), group_codes, group_levels, fam,
                    response=response, group_name=group_name, intercept=intercept, progress=progress)
    model = model_spec(response, list(names), group_name, fam, lk, intercept, conf_level, nagq, max_iter, tol,
                       reml, ddf)
    return PreparedFit(d, fam, lk, model, se, start)


def fit_prepared(p: PreparedFit, *, progress: ProgressFn = None, n_blocks: int | None = None) -> GlmmResult:
    """Fit a prepared design in memory, its blocks in threads (``n_blocks``: by default one per core for
    large data)."""
    d = p.design
    blocks = LocalBlocks(split_design(d, p.family.name, p.link.name, n_blocks or default_block_count(d.n)))
    try:
        with one_blas_thread():
            result = fit_blocks(blocks, DesignMeta.of(d), p.family, p.link, p.model, se=p.se,
                                progress=progress, input_order=d.input_order)
            result.fit_seconds = time.perf_counter() - p.start
            report(progress, "Done", 1.0)
    finally:
        blocks.close()
    return result


def fit_arrays(y: np.ndarray, X: np.ndarray, names: list[str], group_codes: np.ndarray, group_levels: list[str],
               *, progress: ProgressFn = None, n_blocks: int | None = None, **options) -> GlmmResult:
    """Fit g(mu_i) = x_i' beta + u_j[i], u_j ~ N(0, sigma_u^2), and return a :class:`GlmmResult`.

    ``y`` and ``X`` are floats with NaN/inf for missing or non-numeric values; ``group_codes`` index
    ``group_levels`` (negative for a missing group). ``options`` are those of :func:`prepare_fit`
    (response, group_name, family, link, intercept, conf_level, max_iter, tol, nagq, se, reml, ddf).
    """
    return fit_prepared(prepare_fit(y, X, names, group_codes, group_levels, progress=progress, **options),
                        progress=progress, n_blocks=n_blocks)


# ---------------------------------------------------------------------------------------------------------
def fit_blocks(blocks, meta: DesignMeta, fam: Family, lk: Link, model: dict, *, se: str = "working",
               progress: ProgressFn = None, input_order: np.ndarray | None = None) -> GlmmResult:
    """Estimate from blocks of whole groups; ``input_order`` puts the blocks' rows back in input order
    (computed from the blocks' row indices when None).

    Floating-point warnings are silenced (overflow in a rejected trial step is expected); a numerical
    breakdown becomes a :class:`GlmmInputError` that says what to try."""
    try:
        with np.errstate(all="ignore"):
            if fam.name == "gaussian" and lk.name == "identity":
                return _fit_lmm(blocks, meta, model, se, progress, input_order)
            return _fit_glmm(blocks, meta, fam, lk, model, se, progress, input_order)
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, OverflowError) as exc:
        raise GlmmInputError(
            f"the fit broke down numerically ({exc}): the data may not suit the {fam.name} family with the "
            f"{lk.name} link (for example a log link needs a positive mean, an identity or inverse link a mean "
            "inside the family's range). Check the response and predictors, or try another link"
        ) from None


def _rows(parts: list[dict], input_order: np.ndarray | None) -> dict:
    """Concatenate the blocks' per-row results and put them in the input's row order. Each column is
    written straight to its place (no concatenated copy), and the blocks' pieces are dropped as they are
    written, to keep the peak memory low."""
    rows = np.concatenate([p.pop("rows") for p in parts])
    order = np.argsort(rows, kind="stable") if input_order is None else input_order
    n = rows.size
    out = {"rows": rows[order]}
    del rows
    index = np.int32 if n < np.iinfo(np.int32).max else np.int64
    dest = np.empty(n, dtype=index)  # where each concatenated row goes in the output
    dest[order] = np.arange(n, dtype=index)
    keys = list(parts[0])
    # A column that is the same array as an earlier one (Gaussian + identity: the deviance and Pearson
    # residuals are both the raw residual) is shared, not copied.
    twins = {key: next((k for k in keys[:i] if all(p[key] is p[k] for p in parts)), None)
             for i, key in enumerate(keys)}
    for key in keys:
        twin = twins[key]
        if twin is not None:
            out[key] = out[twin]
            for p in parts:
                p.pop(key)
            continue
        col = np.empty(n, dtype=parts[0][key].dtype)
        start = 0
        for p in parts:
            piece = p.pop(key)
            col[dest[start:start + piece.size]] = piece
            start += piece.size
            del piece
        out[key] = col
    return out


def _fit_lmm(blocks, meta: DesignMeta, model: dict, se: str, progress: ProgressFn,
             input_order: np.ndarray | None) -> GlmmResult:
    max_iter, tol = model["max_iter"], model["tol"]
    reml = bool(model.get("reml", True))
    report(progress, "Computing group sums", 0.05)
    s = LmmSums.from_parts(blocks.map("lmm_sums"), meta.n_groups)
    fit: LmmFit = fit_reml(s, max_iter=max_iter, tol=tol, progress=progress, reml=reml)
    st = fit.state
    report(progress, "Computing standard errors", 0.8)
    vcov_s = st.sigma2 * inference.inverse_spd(st.A)
    beta, vcov = inference.to_original_scale(meta.T, st.beta, vcov_s)
    # The REML criterion depends on the parameterisation of X; report it for the original columns (the ML
    # criterion does not).
    shift = 2.0 * meta.log_abs_det_T() if reml else 0.0
    loglik = -0.5 * (st.deviance - shift)
    var_group = st.sigma2 * st.theta ** 2
    k = meta.p + 2
    aic, bic = inference.information_criteria(loglik, k, meta.n)

    report(progress, "Computing BLUPs and diagnostics", 0.9)
    blup = st.c * (s.Sy - s.Sx @ st.beta)
    blup_se = np.sqrt(st.sigma2 * st.c)
    rows = _rows(blocks.map("lmm_rows", st.beta, blup), input_order)
    null_loglik = -0.5 * (reml_state(s, 0.0, reml).deviance - shift)
    icc = inference.icc("gaussian", "identity", var_group, st.sigma2)
    se_hessian = np.sqrt(np.diag(vcov)) if se == "hessian" else None
    opt = {"start": [float(h["theta"]) for h in fit.history[:1]], "final": [float(st.theta)],
           "objective": float(st.deviance), "iterations": fit.iterations, "evaluations": len(fit.history),
           "converged": fit.converged, "parameter": "theta = sigma_u / sigma_e", "log": fit.history}
    method = "REML" if reml else "ML"
    result = _assemble(
        meta, model, method, method, fit.converged, st.theta, beta, vcov, "X'V^-1X",
        var_group, st.sigma2, icc, loglik, k, aic, bic, blup, blup_se, rows, null_loglik, opt, se_hessian,
    )
    def vcov_at(vp: np.ndarray) -> np.ndarray:
        A = reml_state(s, abs(float(vp[0])), reml).A
        return inference.to_original_scale(meta.T, st.beta, vp[1] ** 2 * inference.inverse_spd(A))[1]

    def varpar_model() -> tuple:
        return (lambda vp: varpar_deviance(s, vp[0], vp[1], reml), vcov_at,
                np.array([st.theta, np.sqrt(st.sigma2)]))

    # Satterthwaite's df of any combination of the fixed effects (omnibus F tests, marginal means): on demand
    result.varpar_model = varpar_model
    if model.get("ddf", "none") == "satterthwaite":
        report(progress, "Satterthwaite degrees of freedom", 0.95)
        result.df = inference.satterthwaite_df(*varpar_model())
    return result


def _fit_glmm(blocks, meta: DesignMeta, fam: Family, lk: Link, model: dict, se: str, progress: ProgressFn,
              input_order: np.ndarray | None) -> GlmmResult:
    max_iter, tol, nagq = model["max_iter"], model["tol"], model["nagq"]
    report(progress, "Initial values (GLM)", 0.05)
    beta0, glm_converged = glm_fit(blocks)
    lap = LaplaceObjective(blocks, fam.name)
    # The conditional part of the objective is increasing in the total deviance for every family, so the
    # IRLS estimate (minimum deviance) is also the GLM's maximum-likelihood estimate under our conventions.
    # When IRLS stalls on the edge of the means' range it is not, and the GLM comparison is left out.
    null_loglik = -0.5 * lap.value(np.concatenate([[0.0], beta0])) if glm_converged else None
    theta0 = moment_theta(blocks.map("moment_pieces", beta0), meta, fam.has_dispersion)
    lower = np.concatenate([[0.0], np.full(meta.p, -np.inf)])
    theta0 = float(feasible_theta(lambda th: lap.value(np.concatenate([th, beta0])), np.array([theta0]))[0])

    report(progress, "Optimizing Laplace deviance", 0.1)
    state = {"iteration": 0}

    def on_iter(k: int, f: float) -> None:
        state["iteration"] = k
        report(progress, f"Optimizing Laplace deviance (iteration {k}, deviance {f:.4f})",
               0.1 + 0.6 * min(k / 30.0, 1.0))

    def laplace_fg(params: np.ndarray) -> tuple[float, np.ndarray]:
        # Reported at every evaluation too, so a cancel request is honoured between any two passes.
        k = state["iteration"]
        report(progress, f"Optimizing Laplace deviance (iteration {k + 1}, evaluation {lap.evaluations + 1})",
               0.1 + 0.6 * min(k / 30.0, 1.0))
        return lap.value_and_grad(params)

    x0 = np.concatenate([[theta0], beta0])
    x, record = minimize(laplace_fg, x0, lower,
                         max_iter=max_iter, tol=tol, on_iteration=on_iter,
                         hessian=(se == "hessian" and nagq == 1), approx_hessian=lap.approx_hessian)
    method = "Laplace"
    if nagq > 1:
        agq = AgqObjective(lap, nagq, fam.has_dispersion)

        agq_state = {"iteration": 0}

        def on_iter_agq(k: int, f: float) -> None:
            agq_state["iteration"] = k
            report(progress, f"Optimizing AGQ deviance, {nagq} nodes (iteration {k})",
                   0.7 + 0.15 * min(k / 20.0, 1.0))

        def agq_value(params: np.ndarray) -> float:
            k = agq_state["iteration"]
            report(progress, f"Optimizing AGQ deviance, {nagq} nodes (iteration {k + 1})",
                   0.7 + 0.15 * min(k / 20.0, 1.0))
            return agq.value(params)

        x, record = minimize(numeric_gradient(agq_value, lower), x, lower, max_iter=max_iter, tol=tol,
                             on_iteration=on_iter_agq, hessian=(se == "hessian"), polish_gtol=1e-9,
                             approx_hessian=lap.approx_hessian)
        method = "AGQ"
        deviance = agq.value(x)
    else:
        deviance = lap.value(x)
    report(progress, "Computing standard errors", 0.85)
    theta, beta_s = float(x[0]), np.asarray(x[1:], dtype=float)
    loglik = -0.5 * deviance
    parts = blocks.map("final", theta, beta_s)
    G = meta.n_groups
    u, W = np.zeros(G), np.zeros(G)
    for part in parts:
        u[part["group_ids"]], W[part["group_ids"]] = part["u"], part["W"]
    sigma2, var_residual = 1.0, None
    if fam.has_dispersion:
        sigma2 = float((sum(p["pearson2"] for p in parts) + u @ u) / meta.n)
        var_residual = sigma2
    vcov_s = sigma2 * inference.inverse_spd(sum(p["precision"] for p in parts))
    beta, vcov = inference.to_original_scale(meta.T, beta_s, vcov_s)
    se_hessian = None
    if se == "hessian" and record.hessian is not None:
        cov_all = 2.0 * inference.inverse_spd(record.hessian)
        _, vcov_h = inference.to_original_scale(meta.T, beta_s, cov_all[1:, 1:])
        se_hessian = np.sqrt(np.abs(np.diag(vcov_h)))

    k = meta.p + 1 + (1 if fam.has_dispersion else 0)
    aic, bic = inference.information_criteria(loglik, k, meta.n)
    var_group = theta * theta
    icc = inference.icc(fam.name, lk.name, var_group, var_residual)

    report(progress, "Computing BLUPs and diagnostics", 0.9)
    blup = theta * u
    blup_se = np.sqrt(sigma2 * theta * theta / (1.0 + theta * theta * W))
    rows = _rows(blocks.map("diagnostics", theta, beta_s), input_order)
    converged = record.converged and all(p["modes_converged"] for p in parts)
    opt = record.to_dict()
    opt["parameters"] = ["theta"] + [f"beta[{n}] (scaled)" for n in meta.names]
    result = _assemble(
        meta, model, method, method, converged, theta, beta, vcov, "working weights at PIRLS convergence",
        var_group, var_residual, icc, loglik, k, aic, bic, blup, blup_se, rows, null_loglik, opt, se_hessian,
    )
    result.warnings = advice.at_edge(result.warnings, fam.name, lk.name, fam.has_edge(lk), converged,
                                     null_loglik is None, max_iter, tol)
    if fam.bounded_mean:
        extreme = sum(p["extreme"] for p in parts) / meta.n
        result.warnings.extend(advice.separation(meta, blocks.map("binary_columns"), beta_s, extreme))
    return result


def moment_theta(pieces: list[dict], meta: DesignMeta, has_dispersion: bool) -> float:
    """A starting value for theta from the GLM fit: the between-group variance of the groups' weighted mean
    working residuals, less their average sampling variance (method of moments on the link scale)."""
    G = sum(p["groups"] for p in pieces)
    phi = sum(p["wr2"] for p in pieces) / max(meta.n - meta.p, 1) if has_dispersion else 1.0
    tau2 = (sum(p["rbar2"] for p in pieces) - phi * sum(p["inv_W"] for p in pieces)) / G
    return float(min(max(np.sqrt(max(tau2, 0.0)), 0.1), 5.0))


def _assemble(
    d: DesignMeta, model: dict, method: str, kind: str, converged: bool, theta: float, beta: np.ndarray,
    vcov: np.ndarray, se_kind: str, var_group: float, var_residual: float | None, icc: float | None,
    loglik: float, k: int, aic: float, bic: float, blup: np.ndarray, blup_se: np.ndarray, rows: dict,
    null_loglik: float | None, opt: dict, se_hessian: np.ndarray | None,
) -> GlmmResult:
    singular = theta < SINGULAR_THETA
    warnings = list(d.warnings)
    if singular:
        warnings.append(advice.SINGULAR)
    if not converged:
        warnings.append(advice.not_converged(model["max_iter"], model["tol"]))
    if d.n_groups < 5:
        warnings.append(advice.few_groups(d.n_groups))
    comparison = (None if null_loglik is None
                  else inference.glm_comparison(loglik, null_loglik, k, d.n, d.n_groups, icc))
    return GlmmResult(
        model=model, method=method, n_obs=d.n, n_groups=d.n_groups, n_excluded=d.n_excluded,
        converged=bool(converged), singular=bool(singular), warnings=warnings, names=d.names,
        beta=beta, vcov_matrix=vcov, se=np.sqrt(np.maximum(np.diag(vcov), 0.0)), se_kind=se_kind,
        var_group=float(var_group), var_residual=None if var_residual is None else float(var_residual),
        icc=icc, log_likelihood=float(loglik), log_likelihood_kind=kind, aic=float(aic), bic=float(bic), k=k,
        group_labels=list(d.levels), blup=blup, blup_se=blup_se, rows=rows["rows"],
        fitted=rows["fitted"], deviance_residuals=rows["deviance_residuals"],
        pearson_residuals=rows["pearson_residuals"], row_random_effect=rows["group_random_effect"], fit_seconds=0.0,
        theta=float(theta), dropped=list(d.dropped),
        glm_comparison=comparison, optimization=opt, se_hessian=se_hessian,
    )
