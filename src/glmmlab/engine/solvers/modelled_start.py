"""Starting values of a model with zero and dispersion models (:class:`~glmmlab.engine.families.modelled
.ModelledFamily`): the base family's GLM for the mean and a constant dispersion, the zero model from the zeros the
GLM leaves unexplained (zero-inflation) or from a logistic regression of y = 0 (hurdle, whose zero model is
separate from the rest), and the dispersion model's intercept at the GLM's dispersion. The fit then takes the
model without random effects to its maximum (the mixed model's start, and the null model of the random effects'
test: :mod:`~glmmlab.engine.solvers.modelled_glm`) before the random effects join. Also here: a hurdle's zero
model fitted apart, the optimiser run without it, and the zero and dispersion models' results."""

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
