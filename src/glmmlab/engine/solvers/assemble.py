"""A fit's record: the estimates, variance components, conditional modes and per-row results put together
as a :class:`~glmmlab.engine.inference.results.GlmmResult`.

The record is built once, when everything is known. The drivers gather its fields first: :func:`_assemble` gives
those of the optimum (a plain dict), the REML and Laplace drivers add theirs (Satterthwaite's pieces; the link's
edge, separation, the negative binomial's theta) and the fit's driver (:func:`glmmlab.engine.solvers.fit.fit_frame`,
or the Dask driver) hands them to :func:`record` with what only it knows (the frame's warnings, the columns
dropped, the order of the rows)."""

from __future__ import annotations

from typing import Any

import numpy as np

from glmmlab.engine.inference import advice
from glmmlab.engine.inference import wald as inference
from glmmlab.engine.inference.deferred import Deferred
from glmmlab.engine.inference.results import ConditionalModes, GlmmResult
from glmmlab.engine.inference.structures import structure_rows
from glmmlab.engine.model.terms import ModelFrame
from glmmlab.engine.solvers.structure import Structure

SINGULAR_THETA = 1e-4
PER_ROW = ("rows", "fitted", "deviance_residuals", "pearson_residuals", "row_random_effect")


def record(fields: dict[str, Any], warnings: list[str], dropped: list[str],
           order: np.ndarray | None = None) -> GlmmResult:
    """The fit's record from the ``fields`` its drivers gathered (see :func:`_assemble`): ``warnings`` (the model
    frame's, the dropped columns') come before the fit's own, ``dropped`` are the fixed-effect columns left out,
    and ``order`` (None: the rows are in place) is the permutation the fit ran its rows in: the per-row arrays are
    put back in the frame's order."""
    own = fields["warnings"]
    first = list(warnings)
    fields = dict(fields, warnings=own.then(lambda w: first + list(w)) if isinstance(own, Deferred)
                  else first + list(own), dropped=list(dropped))
    if order is not None:
        for name in PER_ROW:
            a = np.asarray(fields[name])
            back = np.empty_like(a)
            back[order] = a
            fields[name] = back
        extras = fields.get("row_extras")
        if extras:
            fields["row_extras"] = {k: _put_back(v, order) for k, v in extras.items()}
        if fields.get("ordinal") is not None:  # an ordinal fit's per-row linear predictors and categories
            fields["ordinal"] = fields["ordinal"].reordered(order)
    return GlmmResult(**fields)


def _put_back(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    back = np.empty_like(np.asarray(a))
    back[order] = a
    return back


def _at_global_levels(st: Structure, units: list, specs: list, finals: list[dict]
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The blocks' modes u and diagonal blocks of H^-1 (``finals``), put at their factors' global levels: one
    (levels, q) and one (levels, q, q) array per factor."""
    us = [np.zeros((b.n_levels, b.q)) for b in st.blocks]
    conds = [np.zeros((b.n_levels, b.q, b.q)) for b in st.blocks]
    for unit, spec, fin in zip(units, specs, finals):
        for t, (ub, cb) in enumerate(zip(unit.st.split_u(fin["u"]), fin["cond"])):
            us[t][spec.level_maps[t]] = ub
            conds[t][spec.level_maps[t]] = cb
    return us, conds


def _assemble(st: Structure, mf: ModelFrame, model: dict, method: str, converged: bool, theta: np.ndarray,
              lams: list[np.ndarray], scale2: float, reml: bool, beta, vcov, names, se_kind, loglik, k, bs, cond,
              rows, null_loglik, opt, se_hessian, var_residual) -> dict[str, Any]:
    """The fields of the record at the optimum (the keyword arguments of :class:`GlmmResult`, see :func:`record`):
    variances, correlations and conditional modes from theta, the modes ``bs`` and their conditional covariances
    ``cond`` per factor; the per-row results ``rows``; the warnings the optimum itself gives (singular, not
    converged, few groups)."""
    re_rows: list[dict[str, Any]] = []
    corr_rows: list[dict[str, Any]] = []
    modes: list[ConditionalModes] = []
    for blk, L, b, cv in zip(st.blocks, lams, bs, cond):
        S = scale2 * (L @ L.T)
        # the conditional variances of b per level: the diagonal of L cv_j L' (a three-operand einsum here took
        # 38 ms for 11 levels of 31 effects; a batched product and a row-wise dot take 0.05 ms)
        var_b = np.einsum("jab,ab->ja", L @ cv, L)
        for a, name in enumerate(blk.names):
            re_rows.append({"component": blk.component, "term": name, "variance": float(S[a, a])})
        for g in blk.groups:
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    a, c = g[i], g[j]
                    denom = np.sqrt(S[a, a] * S[c, c])
                    corr_rows.append({"component": blk.component, "term1": blk.names[a], "term2": blk.names[c],
                                      "correlation": float(S[a, c] / denom) if denom > 0 else None})
        sd = np.sqrt(np.maximum(var_b, 0.0))
        modes.append(ConditionalModes(blk.component, list(blk.levels), list(blk.names), np.asarray(b, dtype=float),
                                      sd))
    diag = st.diagonal_theta(theta)
    singular = bool(np.any(diag < SINGULAR_THETA))
    warnings = []
    scalar = len(st.blocks) == 1 and st.q1 == 1
    if singular:
        warnings.append(advice.SINGULAR if scalar else advice.SINGULAR_GENERAL)
    if not converged:
        warnings.append(advice.not_converged(model["max_iter"], model["tol"]))
    lead = st.lead
    if lead.n_levels < 5:
        warnings.append(advice.few_groups(lead.n_levels))
    aic, bic = inference.information_criteria(loglik, k, mf.n)
    var_group = re_rows[0]["variance"]
    icc = inference.icc(model["family"], model["link"], var_group, var_residual) if scalar else None
    comparison = None
    if null_loglik is not None:
        comparison = inference.glm_comparison(loglik, null_loglik, k, mf.n, lead.n_levels, icc)
    return dict(
        model=model, method=method, n_obs=mf.n, n_excluded=mf.n_input - mf.n,
        converged=bool(converged), singular=singular, warnings=warnings, names=list(names),
        beta=beta, vcov_matrix=vcov, se_kind=se_kind, theta=np.array(theta, dtype=float), variances=re_rows,
        correlations=corr_rows, modes=modes, var_residual=None if var_residual is None else float(var_residual),
        icc=icc, log_likelihood=float(loglik), aic=float(aic), bic=float(bic), k=int(k), rows=np.asarray(mf.rows),
        fitted=rows["fitted"], deviance_residuals=rows["deviance_residuals"],
        pearson_residuals=rows["pearson_residuals"], row_random_effect=rows["group_random_effect"],
        glm_comparison=comparison, optimization=opt, se_hessian=se_hessian,
        structures=structure_rows(st.blocks, [theta[s] for s in st.theta_slices], lams, scale2),
    )
