"""Starting values of a model with zero and dispersion models (:class:`~glmmlab.engine.families.modelled
.ModelledFamily`): the base family's GLM for the mean and a constant dispersion, the zero model from the zeros the
GLM leaves unexplained (zero-inflation) or from a logistic regression of y = 0 (hurdle, whose zero model is
separate from the rest), and the dispersion model's intercept at the GLM's dispersion. The fit then takes the
model without random effects to its maximum (the mixed model's start, and the null model of the random effects'
test) before the random effects join."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import special

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.densities import zero_terms
from glmmlab.engine.families.links import LINKS, Link
from glmmlab.engine.families.modelled import ModelledFamily
from glmmlab.engine.solvers.glm_start import glm_irls
from glmmlab.engine.solvers.optimizer import off_bound

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
# the IRLS steps of the Poisson GLM that starts a Poisson, NB2 or NB1 base (glm_stage refits it in every parameter):
# against 6 (rounding level) the stage's evaluations salamanders_zip 6 -> 5, zip_zire 5 -> 4, owls_zinb1 8 -> 7,
# hurdle_nb2 8 -> 9, zinb2 14 -> 15 (2 steps: zip, zip_zire and hurdle_nb2 as with 6); the GLM 0.93 -> 0.5 ms on zip
START_IRLS = 1


def modelled_start(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, fam: ModelledFamily, lk: Link,
                   trials: np.ndarray | None, data: dict) -> tuple[np.ndarray, ModelledFamily]:
    """(the mean's coefficients on the scaled design, the member at the other parts' starting coefficients)."""
    base = fam.base
    key = base.name
    rows = y > 0 if fam.kind == "hurdle" else np.ones(y.shape[0], dtype=bool)
    Xr, yr, pwr, offr = Xs[rows], y[rows], np.asarray(pw)[rows], np.asarray(off)[rows]
    tr = None if trials is None else trials[rows]
    disp = None
    rest: list[float] = []
    if key in ("negbin", "nbinom1"):
        # the Poisson GLM's coefficients and the moments' dispersion: the model without random effects is then
        # taken to its maximum in every parameter at once (glm_stage), so no profile over the dispersion here
        beta, _ = glm_irls(Xr, yr, pwr, offr, FAMILIES["poisson"], lk, max_iter=START_IRLS)
        mean = float(np.average(yr, weights=pwr))
        var = float(np.average((yr - mean) ** 2, weights=pwr))
        excess = max(var - mean, 1e-3 * mean)
        disp = min(max(mean * mean / excess if key == "negbin" else excess / max(mean, 1e-8), 1e-2), 1e3)
    elif key in ("poisson", "gaussian", "gamma"):
        beta, dev = glm_irls(Xr, yr, pwr, offr, FAMILIES[key], lk, max_iter=START_IRLS if key == "poisson" else 100)
        mu = lk.linkinv(Xr @ beta + offr)
        if key == "gaussian":
            disp = max(float(np.average((yr - mu) ** 2, weights=pwr)), 1e-8)  # the variance
        elif key == "gamma":
            cv2 = float(np.average(((yr - mu) / mu) ** 2, weights=pwr))
            disp = 1.0 / max(cv2, 1e-8)  # the shape
    else:  # glmmTMB's own families: the GLM at the moments' parameters
        member = base.with_parameters(base.start_parameters(yr, pwr, tr))
        beta, _ = glm_irls(Xr, yr, pwr, offr, member, lk, trials=tr)
        disp = float(member.parameters[0])
        rest = [float(v) for v in member.parameters[1:]]
    coef = []
    if fam.kind == "zi" and key == "negbin" and lk.name == "log":
        beta, disp = _count_part_start(Xs, y, pw, off, beta, lk)
    if fam.n_zi:
        coef += list(_zero_start(fam, Xs, y, pw, off, beta, lk, data, disp))
    if fam.n_disp and disp is not None:
        coef += [float(np.log(disp))] + [0.0] * (fam.n_disp - 1)
    if fam.rest_names:
        coef += [float(np.log(v)) for v in rest]  # the t's df (the only base with more parameters here)
    member = fam.with_parameters(coef)
    assert isinstance(member, ModelledFamily)
    return beta, member


def _count_part_start(Xs, y, pw, off, beta, lk) -> tuple[np.ndarray, float]:
    """A zero-inflated NB2's count part from the Poisson GLM (whose means are those of y, structural zeros
    included): the share p of structural zeros from the zeros the Poisson means leave unexplained, the count part's
    means m = mu / (1 - p) (the intercept moved by -log(1 - p) under the log link), and its theta from the
    mixture's moments, Var y = (1 - p) (m + m^2 / theta) + p (1 - p) m^2. The moments of y alone read the
    structural zeros as overdispersion: a theta so small that the count part explains every zero, from where the
    model without random effects crawled along the ridge between theta and the zero model's intercept
    (salamanders_zinb2: 45 evaluations, 24 from here). (NB1's owls_zinb1 starts better from the moments of y.)"""
    w = np.asarray(pw, dtype=float) + np.zeros(y.shape[0])
    mu = lk.linkinv(Xs @ beta + off)
    f0 = float(np.average(np.exp(-mu), weights=w))
    p = min(max((float(np.average(y == 0, weights=w)) - f0) / max(1.0 - f0, 1e-8), 0.0), 0.9)
    const = np.flatnonzero(np.all(Xs == Xs[:1], axis=0))
    beta = np.array(beta, dtype=float)
    if const.size and float(Xs[0, const[0]]) != 0.0:
        beta[const[0]] -= float(np.log1p(-p)) / float(Xs[0, const[0]])
    m = mu / (1.0 - p)
    extra = float(np.sum(w * ((y - mu) ** 2 - (1.0 - p) * m - p * (1.0 - p) * m * m)))
    theta = float(np.sum(w * (1.0 - p) * m * m)) / max(extra, 1e-8)
    return beta, min(max(theta, 1e-2), 1e3)


def _zero_start(fam: ModelledFamily, Xs, y, pw, off, beta, lk, data, disp) -> np.ndarray:
    zX = data["zi_X"]
    z_off = data.get("zi_off")
    z_off = np.zeros(y.shape[0]) if z_off is None else z_off
    zeros = (y == 0).astype(float)
    if fam.kind == "hurdle":
        b, _ = glm_irls(zX, zeros, np.asarray(pw, dtype=float) + np.zeros(y.shape[0]), z_off, FAMILIES["binomial"],
                        LINKS["logit"])
        return b
    mu = lk.linkinv(Xs @ beta + off)
    member = fam.base if disp is None else replace(fam.base, parameters=(disp,))
    zt = zero_terms(member, mu)
    f0 = float(np.mean(np.exp(zt[0]))) if zt is not None else 0.0
    excess = (float(np.mean(zeros)) - f0) / max(1.0 - f0, 1e-8)
    out = np.zeros(zX.shape[1])
    # the intercept column of the zero model (glmmTMB's design has it first when present)
    const = np.flatnonzero(np.all(zX == zX[:1], axis=0))
    if const.size:
        c = float(zX[0, const[0]])
        out[const[0]] = float(special.logit(min(max(excess, 0.02), 0.9))) / (c if c else 1.0)
    return out


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


def hurdle_zero_fit(fam: ModelledFamily, y: np.ndarray, pw: np.ndarray, data: dict, b0: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """A hurdle's zero model apart from the rest: -2 log L is the logistic regression of y = 0 on the zero model's
    design (log p at the zeros, log(1 - p) elsewhere) plus the zero-truncated part, which holds the random effects
    and no zero-model coefficient, so those coefficients are this regression's maximum whatever the others are,
    and the Hessian of -2 log L has no cross terms between them and the rest. (the coefficients, by Newton steps
    from ``b0`` to rounding level; their block of that Hessian, 2 X' diag(pw p (1 - p)) X), or None where the
    steps do not settle (zeros separated by the design: the maximum is at infinity) and the fit then optimises
    them with the rest."""
    zX = np.asarray(data["zi_X"], dtype=float)
    z_off = data.get("zi_off")
    zeros = (y == 0).astype(float)
    w = np.asarray(pw, dtype=float) + np.zeros(y.shape[0])
    b = np.array(b0, dtype=float)
    for _ in range(50):
        eta = zX @ b if z_off is None else zX @ b + z_off
        p = special.expit(eta)
        H = zX.T @ (zX * (w * p * (1.0 - p))[:, None])
        try:
            step = np.linalg.solve(H, zX.T @ (w * (zeros - p)))
        except np.linalg.LinAlgError:
            return None
        b += step
        if not np.all(np.isfinite(b)) or float(np.max(np.abs(b))) > 30.0:
            return None
        if float(np.max(np.abs(step))) <= 1e-13 * max(1.0, float(np.max(np.abs(b)))):
            eta = zX @ b if z_off is None else zX @ b + z_off
            p = special.expit(eta)
            return b, 2.0 * (zX.T @ (zX * (w * p * (1.0 - p))[:, None]))
    return None


def optimize_held(optimize, fun, fun_grad, start: np.ndarray, lower: np.ndarray, held: np.ndarray,
                  H_held: np.ndarray):
    """``optimize(fun, fun_grad, x0, lower) -> (x, record)`` run over the entries of ``start`` that are not
    ``held`` (a mask; those stay at their values in ``start``: a separate part of the model at its own maximum,
    :func:`hurdle_zero_fit`), and its record given back over every entry: start, end, bounds and the log's points,
    and its Hessian with ``H_held`` as the held entries' block (no cross terms with the others)."""
    from glmmlab.engine.solvers.optimizer import bounds_list

    free = ~held
    base = np.array(start, dtype=float)

    def expand(z):
        out = base.copy()
        out[free] = z
        return out

    def fg(z):
        f, g = fun_grad(expand(z))
        return f, g[free]

    x_r, record = optimize(lambda z: fun(expand(z)), None if fun_grad is None else fg, base[free], lower[free])
    x = expand(x_r)
    record.x0, record.x, record.lower = [float(v) for v in base], [float(v) for v in x], bounds_list(lower)
    for entry in record.log:
        entry["x"] = [float(v) for v in expand(np.asarray(entry["x"], dtype=float))]
    if record.hessian is not None:
        H = np.zeros((x.size, x.size))
        H[np.ix_(free, free)] = record.hessian
        H[np.ix_(held, held)] = H_held
        record.hessian = H
    return x, record


def modelled_results(fam: ModelledFamily, x_full, hess_full, lower_full, nt: int, y: np.ndarray, pw: np.ndarray,
                     trials: np.ndarray | None, data: dict, rows: dict) -> dict:
    """The record's fields of the zero and dispersion models: their coefficient tables (``submodels``, SEs from
    the Hessian of the Laplace deviance over every parameter), the family's parameters where the dispersion is one
    number, and per row the mean of y with the zero model (``fitted``), the count part's mean, the zero
    probability and the dispersion (``row_extras``), with Pearson residuals on the mean of y."""
    from glmmlab.engine.families.response import Response
    from glmmlab.engine.inference import wald as inference

    m = len(fam.parameters)
    psi = np.asarray(fam.parameters, dtype=float)
    se = np.full(m, np.nan)
    cov = np.full((m, m), np.nan)
    if hess_full is not None and x_full is not None:
        idx = np.flatnonzero(off_bound(x_full, lower_full))
        C = 2.0 * inference.inverse_spd(hess_full[np.ix_(idx, idx)])
        pos = {int(j): i for i, j in enumerate(idx)}
        mine = [k for k, j in enumerate(range(x_full.size - m, x_full.size)) if j in pos]  # held ones: NaN
        sel = [pos[x_full.size - m + k] for k in mine]
        cov[np.ix_(mine, mine)] = C[np.ix_(sel, sel)]
        se = np.sqrt(np.abs(np.diag(cov)))
    submodels: dict = {}

    def table(names, where):
        return {"names": list(names), "estimate": psi[where], "se": se[where], "vcov": cov[where, where]}

    if fam.n_zi:
        submodels["zi"] = table(fam.zi_names, slice(0, fam.n_zi))
    if fam.n_disp and fam.disp_given:
        submodels["disp"] = table(fam.disp_names, slice(fam.n_zi, fam.n_zi + fam.n_disp))
    resp = Response(y, fam, trials, {k: v for k, v in data.items() if v is not None})
    mu = np.asarray(rows["fitted"], dtype=float)
    means = fam.response_means(resp, mu)
    var = fam.mu_terms(resp, mu, 1.0 - mu)[4]
    fitted = means.pop("fitted")
    pearson = (y - fitted) * np.sqrt(np.asarray(pw, dtype=float) / np.maximum(var, 1e-300))
    params = fam.constant_parameters()
    if fam.disp_given:  # the dispersion varies by row: only the base's other parameters (the t's df) are numbers
        params = {k: v for k, v in params.items() if k in fam.rest_names}
    first = next(iter(params), None)
    return {"submodels": submodels, "row_extras": means, "fitted": fitted, "pearson_residuals": pearson,
            "family_parameter": None if first is None else {"name": first, "value": params[first]},
            "family_parameters": params or None}
