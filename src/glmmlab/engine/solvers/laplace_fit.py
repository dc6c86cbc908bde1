"""The Laplace driver: from the GLM start through the joint optimisation over (theta, beta) (and the family's
own parameters: the negative binomial's theta, glmmTMB's phi, sigma, df, power; or AGQ), to the per-row results.
A Dask fit gives the rows through :class:`~glmmlab.engine.solvers.row_blocks.RemoteRows`."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.distributions import negbin_family
from glmmlab.engine.families.modelled import ModelledFamily
from glmmlab.engine.families.parameter_limits import at_limit, limit_start, limit_warnings
from glmmlab.engine.families.response import Response
from glmmlab.engine.inference import advice
from glmmlab.engine.inference import wald as inference
from glmmlab.engine.progress import report
from glmmlab.engine.solvers.assemble import _assemble, _at_global_levels
from glmmlab.engine.solvers.blocked_cholesky import Structure
from glmmlab.engine.solvers.glm_start import (
    family_glm,
    glm_irls,
    negbin_glm,
)
from glmmlab.engine.solvers.intercept_laplace import applies as intercept_applies
from glmmlab.engine.solvers.intercept_laplace import summed_rows, zero_inflated_hessian
from glmmlab.engine.solvers.laplace import GeneralLaplace, inside_start
from glmmlab.engine.solvers.laplace_start import moment_start, off_the_boundary, relative_theta_start
from glmmlab.engine.solvers.likelihood import Likelihood
from glmmlab.engine.solvers.modelled_glm import glm_objective, glm_stage, glm_start_hessian, moment_theta_rows
from glmmlab.engine.solvers.modelled_start import (
    hurdle_zero_fit,
    modelled_results,
    modelled_start,
    optimize_held,
)
from glmmlab.engine.solvers.optimizer import (
    fd_hessian,
    feasible_theta,
    numeric_gradient,
    off_bound,
    stages_document,
)
from glmmlab.engine.solvers.reml import _block_rows
from glmmlab.engine.solvers.row_blocks import (
    BlockedLaplace,
    RemoteRows,
)
from glmmlab.engine.solvers.search import _optimize


def exact_gradient_ok(st: Structure) -> bool:
    """Whether the exact gradient is cheap: always for one grouping factor; with a coupled block it needs the
    dense (H^-1)_12, which costs (L1 q1) x Q2^2 operations per evaluation, except for scalar terms with a sparse
    coupling, which need it only on the coupling's pattern (at most n x Q2 operations:
    :class:`~glmmlab.engine.solvers.blocked_cholesky.PatternInverse`, in memory and on every Dask block, whose
    driver's structure has no rows)."""
    sparse_pairs = st.q1 == 1 and st.all_scalar and not st.dense and st.n * st.Q2 <= 5e9
    return not st.rest or st.L1 * st.q1 * st.Q2 * st.Q2 <= 2e9 and st.L1 * st.q1 * st.Q2 <= 5e7 or sparse_pairs


def _fit_laplace(st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, specs, binary=None, data=None):
    """``data``: the per-row designs of a zero or dispersion model (``fam`` is then a ModelledFamily)."""
    report(progress, "Initial values (GLM)", 0.05)
    if model.get("tweedie_power") is not None:  # the user's power, held fixed
        fam = fam.with_fixed("power", float(model["tweedie_power"]))
    # a family with parameters of its own (the negative binomial's theta; glmmTMB's phi, sigma, df, power)
    negbin = bool(fam.parameter_names)
    trials = None
    if fam.trials_from_weights:  # the beta-binomial: the weights of its proportions are its trials
        trials, pw = pw, np.ones_like(pw)
    resp = None
    glm_m2 = None
    if isinstance(fam, ModelledFamily) and not negbin:  # a zero-truncated count alone: no parameters besides
        beta0, glm_dev = glm_irls(Xs, mf.y, pw, off, fam, lk, trials=trials)
    elif isinstance(fam, ModelledFamily):
        beta0, fam = modelled_start(Xs, mf.y, pw, off, fam, lk, trials, data)
    elif fam.name == "negbin":
        beta0, theta0, glm_m2 = negbin_glm(Xs, mf.y, pw, off, lk)
        fam = negbin_family(theta0)
    elif negbin:
        beta0, fam, glm_m2 = family_glm(Xs, mf.y, pw, off, fam, lk, trials)
    else:
        resp = Response(mf.y, fam)  # the per-row constants once, sliced for the GLM's chunks and the blocks
        beta0, glm_dev = glm_irls(Xs, mf.y, pw, off, fam, lk, resp=resp)
    beta0 = inside_start(Xs, mf.y, pw, off, beta0, fam, lk)
    dispersion = model.get("dispersion", "estimated")
    laps = [GeneralLaplace(local, Xs[r], mf.y[r], pw[r], off[r], fam, lk, dispersion,
                           None if resp is None else resp.part(r), None if trials is None else trials[r],
                           None if data is None else {k: v[r] for k, v in data.items() if v is not None})
            for local, r in _block_rows(st, specs)]
    obj = BlockedLaplace(laps, Likelihood(fam, mf.y, pw, dispersion), st.n_theta)
    try:
        return _laplace_run(obj, specs, st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, beta0,
                            fam.parameters if negbin else None, glm_m2 if negbin else None,
                            None if negbin else glm_dev, trials=trials, binary=binary, data=data)
    finally:
        obj.close()


def cold_value(obj, x: np.ndarray, edge: bool, value=None, known: float | None = None) -> float:
    """The deviance reported at the estimates ``x`` (``value``: another function of the parameters than
    ``obj.value``). Under a link with an edge (``edge``) it is evaluated from cold modes (every block's modes
    reset to 0), so it is the objective at the estimates whatever point the optimiser evaluated last; elsewhere
    PIRLS from the last modes reaches the same modes to rounding level, so ``known``, the optimiser's value at
    ``x``, is that deviance (no evaluation)."""
    if edge:
        obj.reset_modes()
    elif known is not None and np.isfinite(known):
        return float(known)
    return (obj.value if value is None else value)(x)


def laplace_rows(fin: dict, pw: np.ndarray) -> dict:
    """The per-row results of a Laplace or AGQ fit from :meth:`GeneralLaplace.final`'s rows (``fin``: of one
    block, or of all blocks concatenated) and the prior weights: fitted means, deviance and Pearson residuals,
    random-effects contributions."""
    resid = fin["resid"]
    return {"fitted": fin["mu"], "deviance_residuals": np.sign(resid) * np.sqrt(np.maximum(fin["dev_rows"], 0.0)),
            "pearson_residuals": resid * np.sqrt(pw / fin["var"]), "group_random_effect": fin["re"]}


def _laplace_run(obj, specs, st, Xs, T, names, mf, pw, off, fam, lk, model, se, progress, beta0, nb0, glm_m2,
                 glm_dev, remote: "RemoteRows | None" = None, trials: np.ndarray | None = None,
                 binary: list | None = None, data: dict | None = None):
    """Optimise the Laplace (and AGQ) deviance of ``obj`` (a BlockedLaplace over threads or actors) from the GLM's
    ``beta0`` and gather the fields of its record (:func:`~glmmlab.engine.solvers.assemble._assemble`, then the
    warnings of the link's edge and of separation, and the family's own parameters). ``nb0``: the family's own
    parameters at the start (a number, the negative binomial's theta, or a tuple by
    :attr:`Family.parameter_names`), estimated with the others on the family's optimiser scale; None for a family
    without. ``remote``: the rows when they are not in ``mf``, ``Xs``, ``pw`` and ``off`` (see
    :class:`RemoteRows`); ``trials``: the beta-binomial's (``pw`` is then 1). ``binary``: the
    :func:`advice.design_columns` of the design's runs of rows, taken before the design was scaled (else from
    ``mf.X``)."""
    negbin = nb0 is not None
    if negbin:
        base_family = fam
        psi0 = fam.to_internal(np.atleast_1d(np.asarray(nb0, dtype=float)))
        m_psi = psi0.size
        psi_lo, psi_hi = fam.internal_range()
    estimated = obj.lik.estimated  # a dispersion estimated with the other parameters (glmmTMB's likelihood)
    agq_phi = None
    nt = st.n_theta
    x0 = np.concatenate([st.theta_start(), beta0])
    lower = np.concatenate([st.theta_lower(), np.full(beta0.size, -np.inf)])
    scalar = not st.rest and st.q1 == 1 and st.ones1[0]  # one random intercept (1 | g)
    modelled = isinstance(fam, ModelledFamily)
    edge = fam.has_edge(lk, mf.y) if remote is None else remote.has_edge(fam, lk)
    moments, crossed = moment_start(obj, st, Xs, mf, pw, off, fam, lk, x0, scalar and not modelled,
                                    not modelled, remote, trials, first_modes=not (edge or negbin))
    likelihood = (lambda f: Likelihood(f, mf.y, pw)) if remote is None else remote.likelihood  # noqa: E731
    if modelled and remote is None:
        # zero and dispersion models: -2 log p is the deviance itself (no saturated constant), the same function
        # for every member, so one Likelihood serves them all (its sums over the rows were made per evaluation)
        shared = Likelihood(fam, mf.y, pw)
        likelihood = lambda f: shared  # noqa: E731
    if edge:
        x0[:nt] = feasible_theta(lambda th: obj.value(np.concatenate([th, x0[nt:]])), x0[:nt])
    # no start given (a refit starts at its fit's theta)
    if estimated and st._start is None and not moments and not crossed:
        tried = [0]

        def start_value(th):
            tried[0] += 1
            report(progress, f"Starting values (theta, evaluation {tried[0]})", 0.08)  # where a cancel is seen too
            return obj.value(np.concatenate([th, x0[nt:]]))

        x0[:nt] = relative_theta_start(start_value, x0[:nt])
    report(progress, "Optimizing Laplace deviance", 0.1)
    hess_full = x_full = lower_full = None
    if negbin:
        # The family's parameters psi join (theta, beta); each point has its member (set_member). The gradient in
        # psi is exact in memory (GeneralLaplace._psi_gradient), central differences of D over the Dask path's
        # actors.
        exact_psi = remote is None
        for lap in obj.laps if exact_psi else []:
            lap.psi_gradient = True

        def set_member(psi: np.ndarray) -> bool:
            if not np.all((psi_lo < psi) & (psi < psi_hi)):
                return False
            f = base_family.with_parameters(base_family.from_internal(psi))
            obj.set_family(f, likelihood(f))
            return True

        def nb_value(params):
            return obj.value(params[:-m_psi]) if set_member(params[-m_psi:]) else np.inf

        def nb_value_grad(params):
            if exact_psi:
                if not set_member(params[-m_psi:]):
                    return np.inf, np.zeros_like(params)
                return obj.value_and_grad(params[:-m_psi])
            h = 1e-4
            g_psi = np.zeros(m_psi)
            for i in range(m_psi):
                step = np.zeros(params.size)
                step[params.size - m_psi + i] = h
                fp, fm = nb_value(params + step), nb_value(params - step)
                g_psi[i] = (fp - fm) / (2 * h) if np.isfinite(fp) and np.isfinite(fm) else 0.0
            nb_value(params)  # the member of this point
            f, g = obj.value_and_grad(params[:-m_psi])
            return f, np.append(g, g_psi)

        exact = all(exact_gradient_ok(lap.st) for lap in obj.laps)
        held = H_held = None  # a hurdle's zero model: at its own maximum, apart from the rest (hurdle_zero_fit)
        zero = hurdle_zero_fit(fam, mf.y, pw, data, psi0[:fam.n_zi]) if modelled and exact and remote is None \
            and data is not None and fam.kind == "hurdle" and fam.n_zi else None
        if zero is not None:
            psi0 = psi0.copy()
            psi0[:fam.n_zi], H_held = zero
            held = np.zeros(x0.size + m_psi, dtype=bool)
            held[x0.size: x0.size + fam.n_zi] = True
        if modelled and exact:
            # the model without random effects (theta = 0) to its maximum first: every part's coefficients
            # start there, and its value is the null model of the random effects' test
            report(progress, "Initial values (the model without random effects)", 0.09)
            # (one small random intercept: on the distinct rows its evaluations use, with their summed weights)
            glm_rows = [summed_rows(lap, GeneralLaplace) for lap in obj.laps]
            glm_fg = glm_objective(glm_rows, base_family, lk, x0.size - nt)
            x0, psi0, glm_m2 = glm_stage(nb_value_grad, x0, psi0, nt, glm_fg, None if held is None else held[nt:],
                                         glm_start_hessian(glm_rows, base_family, lk, x0.size - nt, glm_fg))
            if st._start is None and scalar and remote is None:
                # one random intercept: the moments of the model's working residuals per level (no evaluation)
                x0[0] = moment_theta_rows(obj.laps, base_family, lk, x0[nt:], psi0)
            elif st._start is None:  # theta from lme4's start halved or doubled while the deviance falls
                x0[:nt] = relative_theta_start(lambda th: nb_value(np.concatenate([th, x0[nt:], psi0])), x0[:nt])
        lower_full = np.append(lower, np.full(m_psi, -np.inf))
        # a zero-inflated family with one small random intercept (every block evaluated by intercept_laplace):
        # Newton steps from the start with zi_hessian (the closed-form curvature and a difference per other
        # parameter) instead of L-BFGS-B. (The 1M-row ZINB2's blocks are larger: with differences throughout
        # that Hessian took 25 evaluations where L-BFGS-B takes 22.)
        zi_newton = modelled and exact and scalar and remote is None and held is None and fam.hessian_se \
            and fam.kind == "zi" and fam.n_zi > 0 and all(intercept_applies(lap) for lap in obj.laps)

        def zi_hessian(params: np.ndarray, fgc) -> np.ndarray:
            return zero_inflated_hessian(obj, set_member, params, fgc, nt, m_psi, fam.n_zi)

        def nb_optimize(f, fg, start, lo):
            return _optimize(f, start, lo, model, progress, "Optimizing Laplace deviance", 0.1, 0.8,
                             hessian=(se == "hessian" or (fam.hessian_se and exact)), fun_grad=fg,
                             # glmmTMB's families: the Hessian only for their standard errors (2 % is their need),
                             # and Newton steps with it finish the optimum (no quasi-Newton creep at rounding level)
                             forward_hessian=fam.hessian_se, handover=fam.hessian_se and exact,
                             approx_hessian=zi_hessian if zi_newton and fg is not None else None,
                             newton=zi_newton and fg is not None)

        def nb_run(start):
            fg = nb_value_grad if exact else None
            if held is None or H_held is None or lower_full is None:
                return nb_optimize(nb_value, fg, start, lower_full)
            for lap in obj.laps:
                lap.psi_held = ("zi",)
            try:
                return optimize_held(nb_optimize, nb_value, fg, start, lower_full, held, H_held)
            finally:
                for lap in obj.laps:
                    lap.psi_held = ()

        x, record = nb_run(np.append(x0, psi0))
        deviance = cold_value(obj, x, edge, nb_value, known=record.objective)
        # the deviance is even in each SD, so its slope there is 0: an SD that reached 0 from above may sit on a
        # saddle (see off_the_boundary), and the optimiser starts again from a point beside it that is lower
        probe = off_the_boundary(nb_value, x, np.append(x0, psi0), st.theta_lower(), deviance)
        if probe is not None:
            x_p, record_p = nb_run(probe)
            deviance_p = cold_value(obj, x_p, edge, nb_value, known=record_p.objective)
            if deviance_p < deviance:
                x, record, deviance = x_p, record_p, deviance_p
            else:
                nb_value(x)  # the member of the estimates again
        # a parameter that ended part of the way to its limit (NB2's theta -> infinity on data without
        # overdispersion): the deviance flattens out there and the optimiser stops early, so it starts once more
        # from the limit and the better end is kept (see families/parameter_limits.py)
        toward = limit_start(base_family, x[-m_psi:])
        if toward is not None:
            # the other parameters optimised with the family's held at the limit (the limit model's fit: held
            # free, the deviance's flat direction would keep the optimiser wandering)
            report(progress, "Trying the family parameter's limit", 0.8)

            def at_toward(params):
                return np.append(params, toward)

            x_r, record_l = _optimize(lambda p: nb_value(at_toward(p)), x[:-m_psi], lower, model, progress,
                                      "Optimizing Laplace deviance (family parameter at its limit)", 0.8, 0.82,
                                      fun_grad=(lambda p: _head(nb_value_grad(at_toward(p)), m_psi))
                                      if exact else None)
            x_l = at_toward(x_r)
            record_l.x0, record_l.x, record_l.hessian = list(map(float, x[:-m_psi])) + list(map(float, toward)), \
                list(map(float, x_l)), None
            record_l.lower = record.lower
            deviance_l = cold_value(obj, x_l, edge, nb_value)
            if deviance_l <= deviance + 1e-9 * max(1.0, abs(deviance)):
                x, record, deviance = x_l, record_l, deviance_l
            else:
                nb_value(x)  # the member of the estimates again
        x_full = x
        limit_held = at_limit(base_family, x_full[-m_psi:])
        # the bounds of the standard errors' Hessian: a parameter at its limit is held there (+inf: off_bound)
        lower_se = lower_full.copy()
        lower_se[lower_se.size - m_psi:][limit_held] = np.inf
        if fam.hessian_se and exact and record.hessian is not None:
            # the optimiser's Hessian at its optimum, held at the bound where theta is (as joint_hessian)
            hess_full = np.array(record.hessian, dtype=float)
            held = ~off_bound(x_full, lower_se)
            hess_full[held, :] = 0.0
            hess_full[:, held] = 0.0
            set_member(x_full[-m_psi:])  # the member of the estimates again (the results' mode search follows)
        elif fam.hessian_se:
            report(progress, "Computing standard errors (Hessian)", 0.82)
            hess_full = joint_hessian(nb_value_grad if exact else numeric_gradient(nb_value, lower_full), x_full,
                                      lower_se, forward=True)
            nb_value(x_full)  # the member of the estimates again
        lower_full = lower_se
        fam = obj.laps[0].fam
        x = x[:-m_psi]
    else:
        exact = all(exact_gradient_ok(lap.st) for lap in obj.laps)
        # without a dispersion c = d(-2 log p)/d(deviance) is 1, with one estimated (profiled) c = 1/phi: the
        # approximate Hessian's fixed-effects block is then close to the true one and Newton steps finish (lme4's
        # criterion keeps the old stop); for one random intercept they start at once (from lme4's start of the
        # 200k-row slope case they took no step, and cost the approximate Hessian's evaluations: L-BFGS-B first)
        handover = estimated or not fam.has_dispersion
        newton = handover and (scalar or crossed)

        def run(start):
            return _optimize(obj.value, start, lower, model, progress, "Optimizing Laplace deviance", 0.1, 0.8,
                             fun_grad=obj.value_and_grad if exact else None, hessian=(se == "hessian"),
                             approx_hessian=obj.approx_hessian if exact else None, handover=handover,
                             newton=newton)

        x, record = run(x0)
        deviance = cold_value(obj, x, edge, known=record.objective)
        if glm_dev is not None and not edge \
                and obj.lik.data_term(glm_dev, 0.0) < deviance - 1e-6 * max(1.0, abs(deviance)):
            # The GLM (theta = 0, the boundary) beats the optimum reached from lme4's start: that was a local
            # optimum (lme4's Gamma criterion on a response far below its means), so the optimiser starts again
            # from the boundary and keeps the better of the two.
            x_b, record_b = run(np.concatenate([np.zeros(nt), beta0]))
            deviance_b = cold_value(obj, x_b, False)
            if deviance_b < deviance:
                x, record, deviance = x_b, record_b, deviance_b
        probe = off_the_boundary(obj.value, x, x0, st.theta_lower(), deviance)
        if probe is not None:
            # The optimiser ended with an SD at 0 where the deviance, even in that SD, has zero slope: a first step
            # past the bound lands there whether or not it is the optimum (a bootstrap refit from the fit's theta).
            # A point with that SD back above 0 is lower, so the optimiser starts again from it.
            x_p, record_p = run(probe)
            deviance_p = cold_value(obj, x_p, edge)
            if deviance_p < deviance:
                x, record, deviance = x_p, record_p, deviance_p
    method = "Laplace"
    record.stage = "Laplace"
    records = [record]
    nagq = int(model.get("nagq", 1))
    if nagq > 1:
        from glmmlab.engine.solvers.quadrature import normal_nodes

        zq, wq = normal_nodes(nagq)
        # parameters besides (theta, beta): the family's own on their optimiser scale (the negative binomial's
        # log theta), or an estimated dispersion's log (which the quadrature cannot profile out)
        extra = fam.to_internal(fam.parameters) if negbin else \
            np.log([obj.lik.dispersion(*obj.dev_uu(x))]) if estimated else None
        m_extra = 0 if extra is None else extra.size

        def agq_value(params):
            phi = None
            if negbin:
                if not set_member(params[-m_extra:]):
                    return np.inf
            elif estimated:
                phi = float(np.exp(params[-1]))
                if not np.isfinite(phi) or phi <= 0.0:
                    return np.inf
            if extra is not None:
                params = params[:-m_extra]
            try:
                total = sum(obj.map(lambda lap: lap.agq(params[:nt], params[nt:], zq, wq, phi)))
            except (np.linalg.LinAlgError, FloatingPointError, ValueError):
                return np.inf
            return -2.0 * total if np.isfinite(total) else np.inf

        x_agq = np.append(x, extra) if extra is not None else x
        lower_agq = np.append(lower, np.full(m_extra, -np.inf)) if extra is not None else lower
        x_agq, record = _optimize(agq_value, x_agq, lower_agq, model, progress,
                                  f"Optimizing AGQ deviance, {nagq} nodes", 0.8, 0.85, hessian=(se == "hessian"))
        record.stage = f"AGQ ({nagq} nodes)"
        records.append(record)
        deviance = agq_value(x_agq)
        fam = obj.laps[0].fam
        x = x_agq[:-m_extra] if extra is not None else x_agq
        agq_phi = float(np.exp(x_agq[-1])) if estimated else None
        method = "AGQ"
    theta, beta_s = x[:nt], x[nt:]
    report(progress, "Computing standard errors", 0.85)
    finals = obj.finals(theta, beta_s)
    us, conds = _at_global_levels(st, obj.laps, specs, finals)
    if remote is None:  # rows in block order, each block's written by its thread (its row arrays then freed)
        ends = np.cumsum([0] + [f["mu"].size for f in finals])
        rows = {key: np.empty(int(ends[-1])) for key in ("fitted", "deviance_residuals", "pearson_residuals",
                                                         "group_random_effect")}
        block_of = {id(lap): k for k, lap in enumerate(obj.laps)}

        def write_rows(lap) -> tuple[float, float]:
            k = block_of[id(lap)]
            f, a, b = finals[k], int(ends[k]), int(ends[k + 1])
            part = laplace_rows(f, pw[a:b])
            for key, v in part.items():
                rows[key][a:b] = v
            sums = float(np.sum(f["dev_rows"])), float(part["pearson_residuals"] @ part["pearson_residuals"])
            for key in ("mu", "resid", "var", "dev_rows", "re"):
                del f[key]
            return sums

        sums = obj.map(write_rows)  # in block order: the sums add up as block by block
        dev_sum, pearson2 = sum(d for d, _ in sums), sum(q for _, q in sums)
    else:
        rows = remote.rows(finals)
        dev_sum, pearson2 = sum(f["dev_sum"] for f in finals), sum(f["pearson2"] for f in finals)
    uu = float(sum(float(np.sum(u * u)) for u in us))
    sigma2, var_residual, scale2 = 1.0, None, 1.0
    if estimated:
        # the dispersion of the criterion (AGQ: its own estimate); theta is relative to sqrt(phi), so the random
        # effects' covariance on the linear-predictor scale is phi Lambda Lambda'
        sigma2 = agq_phi if agq_phi is not None else obj.lik.dispersion(dev_sum, uu)
        var_residual = scale2 = sigma2
    elif fam.has_dispersion:
        sigma2 = float((pearson2 + uu) / mf.n)
        var_residual = sigma2
    vcov_s = sigma2 * inference.inverse_spd(sum(f["SEE"] for f in finals))
    se_kind = "working weights at PIRLS convergence"
    if hess_full is not None and x_full is not None and lower_full is not None and method == "Laplace":
        # glmmTMB's: the fixed effects' block of the inverse Hessian of the Laplace deviance over every parameter,
        # the family's own included (its phi and the mean are not orthogonal: the beta block alone is 3 % off)
        vcov_s = fixed_effects_covariance(hess_full, x_full, lower_full, nt, Xs.shape[1])
        se_kind = "Hessian of the Laplace deviance"
    beta, vcov = T @ beta_s, T @ vcov_s @ T.T
    se_hessian = None
    if se == "hessian" and record.hessian is not None:
        cov_all = 2.0 * inference.inverse_spd(record.hessian)
        p_ = Xs.shape[1]
        se_hessian = np.sqrt(np.abs(np.diag(T @ cov_all[nt:nt + p_, nt:nt + p_] @ T.T)))
    loglik = -0.5 * deviance
    lams = st.lambdas(theta)
    bs = [u @ L.T for u, L in zip(us, lams)]
    cond = [sigma2 * c for c in conds]
    scalar = len(st.blocks) == 1 and st.q1 == 1
    if not scalar:
        null_loglik = None
    else:
        null_loglik = (None if glm_m2 is None else -0.5 * glm_m2) if negbin else \
            -0.5 * obj.lik.data_term(glm_dev, 0.0)
    # the family's estimated parameters count (a fixed Tweedie power does not, as glmmTMB's mapped psi)
    k = Xs.shape[1] + nt + (m_psi if negbin else 1 if fam.has_dispersion else 0)
    converged = record.converged and all(f["converged"] for f in finals)
    out = _assemble(st, mf, model, method, converged, theta, lams, scale2, False, beta, vcov, names,
                    se_kind, loglik, k, bs, cond, rows, null_loglik,
                    stages_document(records), se_hessian, var_residual)
    out["warnings"] = advice.at_edge(out["warnings"], fam.name, lk.name, edge, converged, False,
                                     model["max_iter"], model["tol"])
    if fam.bounded_mean:  # the binomial: signs of separation
        coef = dict(zip(names, beta))
        x_beta = np.array([coef.get(nm, np.nan) for nm in mf.x_names])
        if remote is not None:
            out["warnings"].extend(remote.separation(list(mf.x_names), x_beta, sum(f["extreme"] for f in finals)))
        else:
            X = None if binary is not None else np.asarray(mf.X, dtype=float)
            out["warnings"].extend(advice.separation_in_frame(list(mf.x_names), X, mf.y, x_beta, rows["fitted"],
                                                              parts=binary))
    if negbin and x_full is not None:
        out["warnings"].extend(limit_warnings(fam, x_full[-m_psi:]))
    if modelled:
        out.update(modelled_results(fam, x_full, hess_full, lower_full, nt, mf.y, pw, trials, data or {}, rows))
    elif negbin:
        values = dict(zip(fam.parameter_names, (float(v) for v in fam.parameters)))
        first = fam.parameter_names[0]
        out["family_parameter"] = {"name": first, "value": values[first]}
        out["family_parameters"] = values
    return out


def _head(fg: tuple[float, np.ndarray], m: int) -> tuple[float, np.ndarray]:
    """A value and gradient with the gradient's last ``m`` entries left out."""
    return fg[0], fg[1][:-m]


def joint_hessian(fg, x: np.ndarray, lower: np.ndarray, forward: bool = False) -> np.ndarray:
    """The finite-difference Hessian of the Laplace deviance (``fg``: value and gradient) at ``x`` over the
    parameters off their bound (a theta entry at its bound 0, a family parameter at its limit: held there, the
    deviance has no curvature in it to invert, and glmmTMB's SEs of the others at such a fit are theirs with it
    fixed); zeros in the rows and columns of the others. ``forward``: forward differences (:func:`fd_hessian`)."""
    idx = np.flatnonzero(off_bound(x, lower))

    def fg_free(z):
        xf = x.copy()
        xf[idx] = z
        f, g = fg(xf)
        return f, g[idx]

    H = np.zeros((x.size, x.size))
    H[np.ix_(idx, idx)] = fd_hessian(fg_free, x[idx], lower[idx], forward)
    return H


def fixed_effects_covariance(H: np.ndarray, x: np.ndarray, lower: np.ndarray, nt: int, p: int) -> np.ndarray:
    """The covariance of the fixed effects (the scaled design's, entries nt .. nt + p of ``x``) from
    :func:`joint_hessian` of a deviance (-2 log L): their block of 2 H^-1 over the parameters off their bound."""
    idx = np.flatnonzero(off_bound(x, lower))
    cov = 2.0 * inference.inverse_spd(H[np.ix_(idx, idx)])
    pos = {int(j): i for i, j in enumerate(idx)}
    sel = [pos[j] for j in range(nt, nt + p)]
    return cov[np.ix_(sel, sel)]
