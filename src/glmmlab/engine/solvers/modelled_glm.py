"""The model without random effects of a model with zero and dispersion models (:class:`~glmmlab.engine.families
.modelled.ModelledFamily`), on -2 log L itself: its objective and closed-form Hessian over the fit's blocks of rows
(:func:`glm_objective`, :func:`glm_start_hessian`), the stage that takes it to its maximum before the random effects
join (:func:`glm_stage`: BFGS from that Hessian at the start, Newton's method where the closed form is the whole
Hessian, L-BFGS-B where the first step fails), and one random intercept's moment start from its working residuals
(:func:`moment_theta_rows`). Its value is the null model of the random effects' test."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.links import Link
from glmmlab.engine.families.modelled import ModelledFamily

# The stop of the model without random effects (glm_stage): a relative decrease of -2 log L below this (the mixed
# model starts from theta > 0 anyway). Against 1e-10 one evaluation fewer on zinb2, hurdle_nb2, sim_gamma_disp and
# sim_gaussian_disp (1e-13 took 2 to 3 more), the null model's log-likelihood within 8e-9, the fits' 1.4e-11.
GLM_STAGE_FTOL = 1e-9
# with the exact Hessian, a Newton step promising a relative decrease below this is not taken: its steps converge
# quadratically, and the null model's log-likelihood stays within some 1e-9 (GLM_STAGE_FTOL there: 2.7e-7 off)
NEWTON_DECREMENT = 1e-12
# the longest Newton step of that stage (max-norm, coefficients on the link scales): from salamanders_zip's start
# the first one, where the Hessian is indefinite, went 45 units along the zero model's slope and was halved 4 times
MAX_STEP = 2.0


def glm_objective(laps: list, fam: ModelledFamily, lk: Link, p: int):
    """-2 log L of the model without random effects and its gradient in (the mean's coefficients on the scaled
    design, every other part's coefficients), over the fit's blocks of rows (``laps``: their responses, designs,
    offsets and weights): one row state per block and point, the zero model's partials in closed form, the
    dispersion model's by a pair of differences in its predictor. At theta = 0 this is the Laplace deviance."""
    from glmmlab.engine.families.state import row_state
    from glmmlab.engine.solvers.scaling import design_dot, design_t_dot

    lo, hi = fam.internal_range()
    h = 1e-5

    def fg(z):
        beta, psi = z[:p], z[p:]
        fg.last = None  # type: ignore[attr-defined]
        if not np.all((lo < psi) & (psi < hi)):
            return np.inf, np.zeros_like(z)
        member = fam.with_parameters(psi)
        assert isinstance(member, ModelledFamily)
        f = 0.0
        g = np.zeros_like(z)
        states = []
        with np.errstate(all="ignore"):
            for lap in laps:
                resp = lap.resp.with_family(member)
                pw = np.asarray(lap.pw, dtype=float)
                eta = design_dot(lap.Xs, beta) + lap.off
                rs = row_state(resp, eta, lk)
                states.append((lap, resp, rs))
                f += float(np.sum(pw * rs.dev))
                g[:p] += design_t_dot(lap.Xs, pw * rs.dev_eta)
                for part, where in member.row_parts():
                    exact = member.row_partials(part, resp, rs, first_only=True)
                    if exact is not None:
                        d_dev = -2.0 * exact[0]
                    else:
                        up = row_state(resp.with_family(member.shifted(part, h)), eta, lk).dev
                        down = row_state(resp.with_family(member.shifted(part, -h)), eta, lk).dev
                        d_dev = (up - down) / (2.0 * h)
                    g[p + where.start: p + where.stop] += getattr(resp, f"{part}_X").T @ (pw * d_dev)
                for k in member.rest_positions():
                    sides = []
                    for sign in (1.0, -1.0):
                        zk = psi.copy()
                        zk[k] += sign * h
                        other = member.with_parameters(zk)
                        sides.append(float(np.sum(pw * row_state(resp.with_family(other), eta, lk).dev)))
                    g[p + k] += (sides[0] - sides[1]) / (2.0 * h)
        if not np.isfinite(f):
            return np.inf, np.zeros_like(z)
        # the rows' states at z: the Hessian's closed-form blocks read them
        fg.last = (z.tobytes(), member, states)  # type: ignore[attr-defined]
        return f, g

    fg.last = None  # type: ignore[attr-defined]
    return fg


def glm_start_hessian(laps: list, fam: ModelledFamily, lk: Link, p: int, glm_fg):
    """``hessian(z, g, wanted)``: the Hessian of :func:`glm_objective` (``glm_fg``, whose gradient at z is ``g``) at
    z, over the fit's blocks of rows: the mean's and a zero-inflation model's blocks in closed form from the rows'
    second derivatives of the deviance (the mean's predictor: the row state's observed ``dev_eta2``; with the zero
    model's: :meth:`~glmmlab.engine.families.zero_model.ZeroModelRows.zi_deviance_derivatives`), every other
    parameter's column (dispersion model, the base's other parameters, a hurdle's zero model) by a forward
    difference of the gradient (one evaluation each), only for the ``wanted`` ones (a mask; the others' rows and
    columns are left 0). Its attributes: ``closed(z)``, the closed-form blocks alone (the other entries 0), from
    the rows' states ``glm_fg`` kept where z is the point it evaluated last; ``n_exact``, how many of the leading
    parameters those blocks cover."""
    from glmmlab.engine.families.state import row_state
    from glmmlab.engine.solvers.scaling import design_dot

    zi = fam.kind == "zi" and fam.n_zi > 0
    exact = p + (fam.n_zi if zi else 0)  # the parameters with closed-form blocks come first

    def closed(z: np.ndarray) -> np.ndarray:
        # the closed-form blocks at z (every other entry 0), from the rows' states glm_fg kept at z when it was
        # the last point evaluated (no pass over the rows again), else from new ones
        k = z.size
        H = np.zeros((k, k))
        last = getattr(glm_fg, "last", None)
        if last is not None and last[0] == z.tobytes():
            member, states = last[1], last[2]
        else:
            member = fam.with_parameters(z[p:])
            states = [(lap, lap.resp.with_family(member), None) for lap in laps]
        assert isinstance(member, ModelledFamily)
        with np.errstate(all="ignore"):
            for lap, resp, rs in states:
                pw = np.asarray(lap.pw, dtype=float) + np.zeros(resp.y.shape[0])
                X = np.asarray(lap.Xs, dtype=float)
                if rs is None:
                    rs = row_state(resp, design_dot(lap.Xs, z[:p]) + lap.off, lk)
                H[:p, :p] += X.T @ (X * (pw * rs.dev_eta2)[:, None])
                if zi:
                    Z = resp.zi_X
                    _, w_cz, w_zz = member.zi_deviance_derivatives(resp, rs)
                    H[:p, p:exact] += X.T @ (Z * (pw * w_cz)[:, None])
                    H[p:exact, p:exact] += Z.T @ (Z * (pw * w_zz)[:, None])
        H[p:exact, :p] = H[:p, p:exact].T
        return H

    def hessian(z: np.ndarray, g: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        H = closed(z)
        for j in np.flatnonzero(wanted[exact:]) + exact:
            h = 1e-4 * max(1.0, abs(float(z[j])))
            zj = z.copy()
            zj[j] += h
            H[:, j] = (glm_fg(zj)[1] - g) / h
        H[exact:, :exact] = H[:exact, exact:].T  # the differences' columns give their cross terms
        H[exact:, exact:] = 0.5 * (H[exact:, exact:] + H[exact:, exact:].T)
        return H

    hessian.closed = closed  # type: ignore[attr-defined]
    hessian.n_exact = exact  # type: ignore[attr-defined]
    return hessian


def moment_theta_rows(laps: list, fam: ModelledFamily, lk: Link, beta: np.ndarray, psi: np.ndarray) -> float:
    """A random intercept's start for the mixed model from the model without random effects (``beta``, ``psi``:
    its maximum, :func:`glm_stage`), over the fit's blocks of whole levels (``laps``): the method of moments on
    the link scale of :func:`~glmmlab.engine.solvers.glm_start.moment_theta`, with the working residuals
    -dev_eta / (2 w) and weights pw w of this member's rows (zero and dispersion models included). lme4's start
    halved or doubled while the deviance fell took 4 to 6 evaluations of the Laplace deviance from cold modes
    (salamanders_zip 0.25 from 1, this 0.22; the optimum 0.28), and the optimisation from here takes no more:
    Laplace evaluations per fit salamanders_zip 24 -> 20, zinb2 32 -> 28, owls_zinb1 31 -> 28, hurdle_nb2 33 -> 27,
    sim_gamma_disp 38 -> 32."""
    from glmmlab.engine.families.state import row_state
    from glmmlab.engine.solvers.glm_start import level_moments, moment_theta_of
    from glmmlab.engine.solvers.scaling import design_dot

    member = fam.with_parameters(fam.from_internal(psi))
    parts = []
    with np.errstate(all="ignore"):
        for lap in laps:
            st = lap.st
            rs = row_state(lap.resp.with_family(member), design_dot(lap.Xs, beta) + lap.off, lk)
            w = np.asarray(lap.pw, dtype=float) * rs.w
            r = -0.5 * rs.dev_eta / np.maximum(rs.w, 1e-300)
            wr = w * r
            parts.append(level_moments(r.size, float(wr @ r), np.bincount(st.codes1, weights=w, minlength=st.L1),
                                       np.bincount(st.codes1, weights=wr, minlength=st.L1)))
    return moment_theta_of(parts, beta.size, member, False)


def glm_stage(fun_grad, x0: np.ndarray, psi0: np.ndarray, nt: int, glm_fg=None,
              held: np.ndarray | None = None, glm_hessian=None) -> tuple[np.ndarray, np.ndarray, float]:
    """The model without random effects (theta held at 0) fitted from (x0's coefficients, psi0) by L-BFGS on the
    Laplace deviance's exact gradient (at theta = 0 the deviance is -2 log L of the GLM of every part), or on
    ``glm_fg`` (:func:`glm_objective`, the same function without the Laplace machinery):
    (x0 with those coefficients, the parts' coefficients, -2 log L at the maximum). ``held``: a mask over
    (coefficients, psi) of entries that stay at their start (a hurdle's zero model: :func:`hurdle_zero_fit`).
    ``glm_hessian``: :func:`glm_start_hessian` of ``glm_fg``; Newton steps with it then fit the model
    (:func:`_newton_from`; Newton's own where the closed form is the whole Hessian), and L-BFGS-B runs only where
    their first step fails."""
    from scipy.optimize import minimize

    p = x0.size - nt

    z_all = np.append(x0[nt:], psi0)
    free = np.ones(z_all.size, dtype=bool) if held is None else ~held
    z0 = z_all[free]
    at_start: list[float] = []  # the value at z0 (L-BFGS-B's first point), kept for the comparison below
    last: dict = {}  # the last point's whole gradient (held entries too), for glm_hessian

    def fg(zf):
        z = z_all.copy()
        z[free] = zf
        f, g = glm_fg(z) if glm_fg is not None else fun_grad(np.concatenate([np.zeros(nt), z]))
        if not np.isfinite(f):
            f, g = 1e300, np.zeros_like(z)
        elif glm_fg is None:
            g = g[nt:]
        if not at_start and np.array_equal(zf, z0):
            at_start.append(f)
        last.update(key=zf.tobytes(), g=g)
        return f, g[free]

    found = None
    if glm_fg is not None and glm_hessian is not None:
        def hessian_free(zf: np.ndarray, gf: np.ndarray) -> np.ndarray:
            z = z_all.copy()
            z[free] = zf
            g_all = last["g"] if last.get("key") == zf.tobytes() else glm_fg(z)[1]
            return glm_hessian(z, g_all, free)[np.ix_(free, free)]

        closed = getattr(glm_hessian, "closed", None)
        closed_free = None
        if closed is not None and bool(np.all(np.arange(z_all.size)[free] < glm_hessian.n_exact)):
            # only where the closed form is the whole Hessian: with the other columns moved by the secant equation
            # (Broyden's least change) the stage took fewer evaluations (zinb2 15 -> 11, owls 8 -> 7,
            # sim_gamma_disp 11 -> 10) but more CPU than BFGS (6.9 -> 7.6 ms, 4.7 -> 5.3, 5.3 -> 6.1: the block's
            # pass over the rows costs half an evaluation)

            def closed_free(zf: np.ndarray) -> np.ndarray:
                z = z_all.copy()
                z[free] = zf
                return closed(z)[np.ix_(free, free)]

        found = _newton_from(fg, z0, hessian_free, closed=closed_free)
    if found is None:
        res = minimize(fg, z0, jac=True, method="L-BFGS-B",
                       options={"maxiter": 1000, "ftol": GLM_STAGE_FTOL, "gtol": 1e-7})
        found = res.x, float(res.fun)
    z_end, f_end = found
    f0 = at_start[0] if at_start else fg(z0)[0]
    z = z_all.copy()
    z[free] = z_end if np.isfinite(f_end) and f_end <= f0 else z0
    x = x0.copy()
    x[nt:] = z[:p]
    return x, z[p:], float(min(f_end, f0))


def _newton_from(fg, z0: np.ndarray, hessian, max_iter: int = 200, closed=None) -> tuple[np.ndarray, float] | None:
    """Quasi-Newton steps from ``z0`` with ``hessian(z0, g0)`` (made positive definite, :func:`_positive`: far from
    the maximum it can be indefinite); each step at most MAX_STEP long (max-norm) and halved until f falls by
    Armijo's rule; until a step lowers f by less than GLM_STAGE_FTOL (relative) or the gradient is below 1e-7: (z,
    f), or None where the first step fails (the caller's L-BFGS-B then runs). Without ``closed`` the Hessian is
    updated by BFGS. With ``closed(z)`` (the whole Hessian in closed form at the point just evaluated, from the
    rows' states that evaluation kept) it is taken again at every point, and the stage also stops where its Newton
    step promises a decrease below NEWTON_DECREMENT. Evaluations against L-BFGS-B's (its first step a unit length
    along the gradient): salamanders_zip 16 -> 12, zinb2 21 -> 15, owls 14 -> 8, hurdle NB2 18 -> 9, sim_gamma_disp
    18 -> 11 by BFGS; with ``closed`` zip 12 -> 6 (3.6 -> 2.8 ms), zip_zire's 8 -> 5."""
    from glmmlab.engine.solvers.newton import backtrack, bfgs_update

    f, g = fg(z0)
    if not np.isfinite(f) or f >= 1e300:
        return None
    B, definite = _positive(hessian(z0, g), flag=True)
    if B is None:
        return None
    z = np.array(z0, dtype=float)
    lower = np.full(z.size, -np.inf)
    for it in range(max_iter):
        if float(np.max(np.abs(g), initial=0.0)) <= 1e-7:
            break
        try:
            d = -np.linalg.solve(B, g)
        except np.linalg.LinAlgError:
            return None if it == 0 else (z, float(f))
        if closed is not None and definite and -0.5 * float(g @ d) <= NEWTON_DECREMENT * max(1.0, abs(f)):
            break  # the Newton step's predicted decrease (its model the exact Hessian) is below the stop: not taken
        big = float(np.max(np.abs(d), initial=0.0))
        if big > MAX_STEP:
            d *= MAX_STEP / big
        step = backtrack(fg, z, f, g, d, lower, 40)
        if step is None:
            return None if it == 0 else (z, float(f))
        zn, fn, gn = step
        if closed is not None:
            B, definite = _positive(closed(zn), flag=True)
            if B is None:
                return z, float(f)
        else:
            B = bfgs_update(B, zn - z, gn - g, 1e-12 * float(np.linalg.norm(zn - z) * np.linalg.norm(gn - g)))
        decrease = f - fn
        z, f, g = zn, float(fn), gn
        if decrease <= GLM_STAGE_FTOL * max(1.0, abs(f)):
            break
    return z, float(f)


def _positive(hessian_value, flag: bool = False):
    """A Hessian made positive definite (the absolute values of its eigenvalues, at least 1e-6 of the largest), or
    None where it is not finite or its eigenvalues cannot be found. ``flag``: (that, whether it was positive
    definite as it came)."""
    H = np.asarray(hessian_value, dtype=float)
    if flag and np.all(np.isfinite(H)):
        try:  # positive definite as it comes (near the maximum, the usual case): no eigenvalues needed
            np.linalg.cholesky(H)
            return H, True
        except np.linalg.LinAlgError:
            pass
    try:
        w, V = np.linalg.eigh(H)
    except (np.linalg.LinAlgError, FloatingPointError, ValueError):
        return (None, False) if flag else None
    if not np.all(np.isfinite(w)) or not np.max(np.abs(w), initial=0.0) > 0.0:
        return (None, False) if flag else None
    top = float(np.max(np.abs(w)))
    B = (V * np.maximum(np.abs(w), 1e-6 * top)) @ V.T
    return (B, bool(np.min(w) >= 1e-6 * top)) if flag else B
