"""Starting values: the GLM without random effects by IRLS (over row chunks in threads, or over the blocks
of a Dask fit), the negative binomial's profile in theta, and the moment start of a random intercept's theta."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import linalg

from glmmlab.engine.families.distributions import Family, negbin_family
from glmmlab.engine.families.links import Link
from glmmlab.engine.families.response import Response
from glmmlab.engine.families.state import row_state
from glmmlab.engine.solvers.likelihood import Likelihood
from glmmlab.engine.solvers.row_blocks import BlockSet, block_count
from glmmlab.engine.solvers.scaling import GLM_PIECE, design_dot


def negbin_glm(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, lk: Link
               ) -> tuple[np.ndarray, float, float]:
    """The negative binomial GLM: (coefficients, theta, -2 log-likelihood), theta by maximum likelihood."""
    return negbin_profile(lambda fam: glm_irls(Xs, y, pw, off, fam, lk),
                          lambda fam, dev: Likelihood(fam, y, pw).minus2(dev), float(np.mean(y)), float(np.var(y)))


def negbin_profile(glm: Callable[[Family], tuple[np.ndarray, float]], minus2: Callable[[Family, float], float],
                   mean: float, var: float) -> tuple[np.ndarray, float, float]:
    """:func:`negbin_glm` from ``glm(family)`` -> (coefficients, weighted deviance), ``minus2(family, deviance)``
    -> -2 log-likelihood, and the response's mean and variance (the start for theta)."""
    from scipy.optimize import minimize_scalar

    def profile(log_th: float):
        fam = negbin_family(np.exp(log_th))
        beta, dev = glm(fam)
        return minus2(fam, dev), beta

    start = np.log(mean * mean / (var - mean)) if var > mean * 1.01 else np.log(100.0)
    res = minimize_scalar(lambda t: profile(t)[0], bracket=(start - 1.0, start + 1.0),
                          options={"xtol": 1e-10})
    m2, beta = profile(float(res.x))
    return beta, float(np.exp(res.x)), float(m2)


PROFILE_FTOL, PROFILE_GTOL = 1e-10, 1e-5  # family_glm's stop (the slope of -2 log L over the scaled parameters)
CURVATURE_STEP = 1e-2  # the step of _curvature's differences (on the optimiser's scale)


def family_glm(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, fam: Family, lk: Link,
               trials: np.ndarray | None = None) -> tuple[np.ndarray, Family, float]:
    """The GLM of a family with parameters of its own (glmmTMB's NB1, beta, beta-binomial, t, Tweedie):
    (coefficients, the member at the parameters' maximum likelihood, -2 log-likelihood). The parameters are
    profiled on the optimiser's scale (:meth:`Family.to_internal`) from the family's moment start by L-BFGS-B on
    the profile's slope (:func:`profile_slope`: some ten points where Brent's method took twenty and
    Nelder-Mead eighty); should that fail, one parameter by Brent's method, as the negative binomial's theta
    (:func:`negbin_profile`), more by Nelder-Mead, to 1e-4 (the mixed model's optimiser finishes them).
    L-BFGS-B works on the parameters scaled by the square root of -2 log L's curvature in each (:func:`_curvature`,
    at the start's coefficients): its first step is then about Newton's, where unscaled it went to the edge of
    its box (a slope of some hundreds) and back (sim_t 12 points -> 6, sim_beta 7 -> 4). It stops at a scaled
    slope of PROFILE_GTOL (-2 log L within some 1e-10 of the maximum, the GLM's value the random effects' test
    uses) or a relative fall of f below PROFILE_FTOL. Each point's IRLS starts from the coefficients of the last
    point (the profile's points are near one another: about half the passes) and its response's constants are
    computed once (the Tweedie's series: once a point, not again in each IRLS chunk)."""
    from scipy.optimize import minimize, minimize_scalar

    lo, hi = fam.internal_range()
    cache: dict[bytes, tuple[float, np.ndarray | None]] = {}
    last: list[np.ndarray | None] = [None]

    def profile(x) -> float:
        x = np.atleast_1d(np.asarray(x, dtype=float))
        key = x.tobytes()
        if key not in cache:
            if not np.all((lo < x) & (x < hi)):
                cache[key] = (np.inf, None)
            else:
                member = fam.with_parameters(fam.from_internal(x))
                beta, dev = glm_irls(Xs, y, pw, off, member, lk, trials=trials, beta0=last[0],
                                     resp=Response(y, member, trials))
                m2 = Likelihood(member, y, pw).minus2(dev)
                cache[key] = (m2 if np.isfinite(m2) else np.inf, beta)
                if np.isfinite(m2):
                    last[0] = beta
        return cache[key][0]

    slopes: dict[bytes, np.ndarray] = {}

    def profile_fg(x) -> tuple[float, np.ndarray]:
        f = profile(x)
        key = np.atleast_1d(np.asarray(x, dtype=float)).tobytes()
        beta = cache[key][1]
        if not np.isfinite(f) or beta is None:
            return 1e300, np.zeros_like(x)
        if key not in slopes:
            slopes[key] = profile_slope(Xs, y, pw, off, fam, lk, trials, np.asarray(x, dtype=float), beta)
        return f, slopes[key]

    x0 = fam.to_internal(fam.start_parameters(y, pw, trials))
    # within 3 of the start (e^3 times a parameter on the log scale): L-BFGS-B's first step follows the slope alone
    # and could land where a member is costly or meaningless (a Tweedie phi of e^-20 has a series of 1e10 terms)
    box = [(max(lo + 1e-6, v - 3.0), min(hi - 1e-6, v + 3.0)) for v in x0]
    g0 = profile_fg(x0)[1]
    beta0 = cache[x0.tobytes()][1]
    sc = np.ones(x0.size) if beta0 is None else _curvature(Xs, y, pw, off, fam, lk, trials, x0, beta0, g0) ** 0.5

    def scaled_fg(z):
        f, g = profile_fg(x0 + z / sc)
        return f, g / sc

    res = minimize(scaled_fg, np.zeros(x0.size), jac=True, method="L-BFGS-B",
                   bounds=[((a - v) * c, (b - v) * c) for (a, b), v, c in zip(box, x0, sc)],
                   options={"ftol": PROFILE_FTOL, "gtol": PROFILE_GTOL, "maxiter": 200})
    x_end = x0 + np.asarray(res.x, dtype=float) / sc
    inside = all(a + 1e-3 < v < b - 1e-3 for v, (a, b) in zip(x_end, box))
    if inside and np.isfinite(profile(x_end)) and profile(x_end) <= profile(x0):
        x = x_end
    elif x0.size == 1:
        res = minimize_scalar(profile, bracket=(float(x0[0]) - 1.0, float(x0[0]) + 1.0), options={"xtol": 1e-10})
        x = np.atleast_1d(float(res.x))
    else:
        res = minimize(profile, x0, method="Nelder-Mead",
                       options={"xatol": 1e-4, "fatol": 1e-8, "maxiter": 400 * x0.size,
                                "initial_simplex": np.vstack([x0, x0 + 0.5 * np.eye(x0.size)])})
        x = np.asarray(res.x, dtype=float)
    m2 = profile(x)
    beta = cache[x.tobytes()][1]
    if beta is None:
        raise FloatingPointError(f"no starting values for the {fam.name} family's parameters")
    return beta, fam.with_parameters(fam.from_internal(x)), float(m2)


def _curvature(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, fam: Family, lk: Link,
               trials: np.ndarray | None, x: np.ndarray, beta: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The second derivatives of -2 log L in each parameter at ``x`` (the optimiser's scale) with the coefficients
    held at ``beta`` (``g``: :func:`profile_slope` there), by forward differences of the slope; 1 where one is
    not positive and finite. With the coefficients held it is at least the profile's own curvature, so the steps
    it scales err on the short side."""
    out = np.ones(x.size)
    for k in range(x.size):
        xk = x.copy()
        xk[k] += CURVATURE_STEP
        try:
            h = (profile_slope(Xs, y, pw, off, fam, lk, trials, xk, beta)[k] - g[k]) / CURVATURE_STEP
        except (FloatingPointError, ValueError, ZeroDivisionError):
            continue
        if np.isfinite(h) and h > 0.0:
            out[k] = h
    return out


def profile_slope(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, fam: Family, lk: Link,
                  trials: np.ndarray | None, x: np.ndarray, beta: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """The slope of :func:`family_glm`'s profile at ``x`` (the parameters on the optimiser's scale), ``beta`` its
    coefficients there: the partial derivatives of -2 log L at fixed coefficients (they maximise it, so their
    own move does not count to first order), by central differences of the rows' deviance at fixed linear
    predictors; a family that gives its response constant's partials in closed form (``sat_partials``, the
    Tweedie's series) keeps one response for both sides and adds them."""
    member = fam.with_parameters(fam.from_internal(x))
    eta = design_dot(Xs, beta) + off
    sat_partials = getattr(member, "sat_partials", None)
    d_sat = sat_partials(y) if sat_partials is not None else None
    resp_c = Response(y, member, trials) if d_sat is not None else None
    lik_c = Likelihood(member, y, pw) if d_sat is not None else None
    g = np.empty(x.size)
    for k in range(x.size):
        sides = []
        for sign in (1.0, -1.0):
            xk = x.copy()
            xk[k] += sign * h
            side = fam.with_parameters(fam.from_internal(xk))
            if resp_c is not None and lik_c is not None:
                resp, lik = resp_c.with_family(side), lik_c
            else:
                resp, lik = Response(y, side, trials), Likelihood(side, y, pw)
            sides.append(lik.minus2(float(np.sum(pw * row_state(resp, eta, lk).dev))))
        g[k] = (sides[0] - sides[1]) / (2.0 * h)
        if d_sat is not None:  # -2 log L = dev - 2 sum pw c(y)
            g[k] -= 2.0 * float(np.sum(pw * d_sat[k]))
    return g


def _wls(A: np.ndarray, c: np.ndarray, Xs: Callable[[], np.ndarray], z: Callable[[], np.ndarray],
         w: Callable[[], np.ndarray]) -> np.ndarray:
    """Weighted least squares on the scaled design from its normal equations A = X_s' W X_s, c = X_s' W z (X_s has
    orthogonal columns, so A is as well conditioned as the weights), by an SVD of the rows (``Xs``, ``z``,
    ``w``: callables giving them) when A is not positive definite."""
    try:
        return linalg.cho_solve(linalg.cho_factor(A), c)
    except (np.linalg.LinAlgError, ValueError):
        sw = np.sqrt(w())
        return np.linalg.lstsq(Xs() * sw[:, None], z() * sw, rcond=None)[0]


def row_chunks(n: int, n_chunks: int | None = None) -> list[slice]:
    """Contiguous runs of rows (as many as :func:`block_count` gives), for work that adds over rows and needs no
    whole groups (the GLM start)."""
    k = block_count(n) if n_chunks is None else max(1, int(n_chunks))
    cuts = [n * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def glm_working(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, resp: Response, fam: Family,
                lk: Link, beta: np.ndarray | None) -> tuple[float, bool, np.ndarray, np.ndarray]:
    """The IRLS step's rows at ``beta``: (weighted deviance, whether every mean is valid, weights w, working
    response z); ``beta`` None: from the family's starting means (no deviance)."""
    if beta is None:  # the first step, from the family's starting means
        mu = fam.start_mu(y, lk.name)
        eta = lk.linkfun(mu)
        h1 = lk.mu_eta(eta)
        w = pw * h1 ** 2 / np.maximum(fam.variance(mu), 1e-300)
        z = eta - off + (y - mu) / h1
        return np.nan, True, w, z
    xb = design_dot(Xs, beta)
    rs = row_state(resp, xb if _one_number(off, 0.0) else xb + off, lk)
    ok = bool(np.all(fam.mu_valid(rs.mu)))
    dev = rs.dev_sum(None if _one_number(pw, 1.0) else pw)
    w = pw * rs.w
    z = xb + (y - rs.mu) / rs.h1 if fam.edm else xb - 0.5 * rs.dev_eta / rs.w
    return dev, ok, w, z


def _one_number(a: np.ndarray, value: float) -> bool:
    """Whether ``a`` is the read-only view of the one number ``value`` that a fit without weights (1) or an offset
    (0) holds, so that a product with it or its addition can be skipped."""
    return a.ndim == 1 and a.strides[0] == 0 and a.size > 0 and float(a[0]) == value


def glm_pass(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, resp: Response, fam: Family, lk: Link,
             beta: np.ndarray | None, equations: bool = True) -> tuple[float, bool, np.ndarray, np.ndarray]:
    """One pass of the GLM's IRLS over some rows: (weighted deviance at ``beta``, whether every mean is valid,
    X'WX and X'Wz of the next step); ``beta`` None: the first step, from the family's starting means (no
    deviance). ``Xs`` may be float32 (the Dask path's lean blocks): the products are float64. The rows' w and z
    are not kept (a fit's passes would hold them for every row at once): :func:`glm_working` gives them again.
    ``equations`` False: the deviance alone (the normal equations are None), for a pass expected to be the last."""
    X = Xs
    dev, ok, w, z = glm_working(Xs, y, pw, off, resp, fam, lk, beta)
    if not equations:
        return dev, ok, None, None  # type: ignore[return-value]
    A = np.zeros((X.shape[1], X.shape[1]))
    c = np.zeros(X.shape[1])
    np.sqrt(w, out=w)
    z *= w  # sqrt(w) z: X'Wz is (sqrt(w) X)' (sqrt(w) z), from the same piece while it is in cache
    for a in range(0, X.shape[0], GLM_PIECE):  # pieces that stay in cache: 2x faster than whole
        Xw = X[a:a + GLM_PIECE] * w[a:a + GLM_PIECE, None]
        A += Xw.T @ Xw
        c += Xw.T @ z[a:a + GLM_PIECE]
    return dev, ok, A, c


IRLS_TOL = 1e-10  # IRLS stops where the deviance changes by less than this (relative): as glm.fit (1e-8), tighter


def irls(passes: Callable[[np.ndarray | None], list], solve: Callable[[np.ndarray, np.ndarray, list], np.ndarray],
         max_iter: int = 100, beta0: np.ndarray | None = None,
         deviance_passes: Callable[[np.ndarray], list] | None = None) -> tuple[np.ndarray, float]:
    """The GLM without random effects by IRLS with step halving, from passes over its blocks of rows:
    ``passes(beta)`` gives each block's :func:`glm_pass` (its first four entries at least), ``solve(A, c,
    parts)`` the coefficients of the normal equations A = X'WX, c = X'Wz. Returns (coefficients, weighted
    deviance). Each pass gives the deviance at the coefficients and the normal equations of the next step.
    ``beta0``: coefficients to start from (a nearby fit's), instead of the family's starting means; where its
    deviance is not finite, the starting means after all. ``deviance_passes(beta)``: the blocks' deviances alone
    (their first two entries); given, a step whose predicted fall of the deviance (s' A s, the weighted least
    squares' own) is a tenth of the stopping rule's at most is taken with it, and the normal equations there
    (which the last step would not use) only if the step does not end the iteration after all."""

    def normal_equations_at(beta: np.ndarray | None) -> tuple[float, bool, np.ndarray, np.ndarray]:
        parts = passes(beta)
        ok = all(p[1] for p in parts)
        dev = float(sum(p[0] for p in parts)) if ok else np.inf
        A, c = sum(p[2] for p in parts), sum(p[3] for p in parts)
        return dev, ok, solve(A, c, parts), A

    def deviance_at(beta: np.ndarray) -> tuple[float, bool, np.ndarray | None, np.ndarray | None]:
        assert deviance_passes is not None
        parts = deviance_passes(beta)
        ok = all(p[1] for p in parts)
        return (float(sum(p[0] for p in parts)) if ok else np.inf), ok, None, None

    dev = np.inf
    if beta0 is not None:
        beta = np.asarray(beta0, dtype=float)
        dev, _, new, A = normal_equations_at(beta)
    if not np.isfinite(dev):
        beta = normal_equations_at(None)[2]
        dev, _, new, A = normal_equations_at(beta)
    for _ in range(max_iter):
        step = new - beta
        last = deviance_passes is not None and float(step @ A @ step) <= 0.1 * IRLS_TOL * (abs(dev) + 0.1)
        for _h in range(30):
            d_new, ok, new_next, A_next = (deviance_at if last else normal_equations_at)(beta + step)
            if ok and d_new <= dev * (1 + 1e-12) + 1e-12:
                break
            step /= 2.0
        else:
            break
        done = abs(dev - d_new) <= IRLS_TOL * (abs(d_new) + 0.1)
        beta, dev = beta + step, d_new
        if done:
            break
        if new_next is None or A_next is None:  # the deviance fell by more than predicted: the next step needs
            _, _, new_next, A_next = normal_equations_at(beta)  # the equations here after all
        new, A = new_next, A_next
    return beta, dev


def glm_irls(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, fam: Family, lk: Link,
             max_iter: int = 100, n_chunks: int | None = None, resp: Response | None = None,
             trials: np.ndarray | None = None, beta0: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The GLM without random effects by IRLS with step halving (:func:`irls`): (coefficients, weighted
    deviance), each pass summed over runs of rows in threads; ``resp``: the response's per-row constants, when
    the caller has them; ``trials``: the beta-binomial's (Family.trials_from_weights); ``beta0``: where to start
    (see :func:`irls`)."""
    chunks = BlockSet([(r, Response(y[r], fam, None if trials is None else trials[r]) if resp is None
                        else resp.part(r))
                       for r in row_chunks(y.size, n_chunks)])
    at: list = [None]  # the coefficients of the last pass

    def passes(beta: np.ndarray | None, equations: bool = True) -> list:
        if equations:
            at[0] = beta
        return chunks.map(lambda unit: glm_pass(Xs[unit[0]], y[unit[0]], pw[unit[0]], off[unit[0]], unit[1], fam,
                                                lk, beta, equations))

    def rows(k: int) -> np.ndarray:  # w (k = 2) or z (k = 3) of every row at the last pass's coefficients
        return np.concatenate(chunks.map(lambda unit: glm_working(Xs[unit[0]], y[unit[0]], pw[unit[0]],
                                                                  off[unit[0]], unit[1], fam, lk, at[0])[k]))

    def solve(A: np.ndarray, c: np.ndarray, parts: list) -> np.ndarray:
        return _wls(A, c, lambda: Xs, lambda: rows(3), lambda: rows(2))

    try:
        return irls(passes, solve, max_iter, beta0, deviance_passes=lambda beta: passes(beta, False))
    finally:
        chunks.close()


def moment_theta(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                 lk: Link, codes: np.ndarray, L: int, relative: bool, trials: np.ndarray | None = None) -> float:
    """A start for a random intercept's theta from the GLM fit ``beta``: the between-level variance of the levels'
    weighted mean working residuals less their average sampling variance (the method of moments on the link
    scale), as an SD, relative to sigma when ``relative`` (a dispersion estimated with the other parameters;
    otherwise sigma enters only the sampling variance). Kept within [0.1, 5]."""
    return moment_theta_of([moment_sums(Xs, y, pw, off, beta, fam, lk, codes, L, trials)], Xs.shape[1], fam,
                           relative)


MOMENT_PIECE = 131_072  # rows per piece of the moment start's sums (its temporaries stay small)


def level_moment_sums(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                      lk: Link, factors: list[tuple[np.ndarray, int]], trials: np.ndarray | None = None) -> dict:
    """The per-level sums behind :func:`moment_theta` for several factors in one pass over the rows (pieces of
    MOMENT_PIECE rows): ``factors`` their (codes, number of levels). Returns the rows' count ``n``, ``wr2`` (the sum
    of w r^2 over the rows) and per factor its levels' summed working weights ``W`` and weighted working residuals
    ``Wr`` (arrays that add up over blocks of rows that index the same levels)."""
    n = y.shape[0]
    W = [np.zeros(L) for _, L in factors]
    Wr = [np.zeros(L) for _, L in factors]
    wr2 = 0.0
    for a in range(0, n, MOMENT_PIECE):
        r_ = slice(a, a + MOMENT_PIECE)
        rs = row_state(Response(y[r_], fam, None if trials is None else trials[r_]),
                       design_dot(Xs[r_], beta) + off[r_], lk)
        r = (y[r_] - rs.mu) / rs.h1 if fam.edm else -0.5 * rs.dev_eta / rs.w
        w = pw[r_] * rs.w
        wr = w * r
        for (codes, L), W_k, Wr_k in zip(factors, W, Wr):
            W_k += np.bincount(codes[r_], weights=w, minlength=L)
            Wr_k += np.bincount(codes[r_], weights=wr, minlength=L)
        wr2 += float(wr @ r)
    return {"n": n, "wr2": wr2, "W": W, "Wr": Wr}


def level_moments(n: int, wr2: float, W: np.ndarray, Wr: np.ndarray) -> dict:
    """:func:`moment_theta_of`'s part from one factor's whole levels' sums (:func:`level_moment_sums`)."""
    W = np.maximum(W, 1e-300)
    rbar = Wr / W
    return {"n": n, "levels": W.size, "wr2": wr2, "rbar2": float(rbar @ rbar), "inv_W": float(np.sum(1.0 / W))}


def moment_sums(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                lk: Link, codes: np.ndarray, L: int, trials: np.ndarray | None = None, per_level: bool = False
                ) -> dict:
    """:func:`moment_theta`'s sums over rows holding whole levels (``codes`` into their L levels); ``per_level``:
    also each level's sums of the working weights and weighted working residuals ("W", "Wr": :func:`start_modes`)."""
    s = level_moment_sums(Xs, y, pw, off, beta, fam, lk, [(codes, L)], trials)
    out = level_moments(s["n"], s["wr2"], s["W"][0], s["Wr"][0])
    if per_level:
        out["W"], out["Wr"] = np.maximum(s["W"][0], 1e-300), s["Wr"][0]
    return out


def crossed_moment_sums(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray,
                        fam: Family, lk: Link, factors: list[tuple[np.ndarray, int]],
                        trials: np.ndarray | None = None) -> dict:
    """:func:`moment_thetas_of`'s part from a block of rows of crossed factors (``factors``: (codes, levels), the
    leading one first): the leading factor's levels are whole in the block (its sums reduce here), every other
    factor's codes index all its levels (its arrays add up over blocks)."""
    s = level_moment_sums(Xs, y, pw, off, beta, fam, lk, factors, trials)
    return dict(s, lead=level_moments(s["n"], s["wr2"], s["W"][0], s["Wr"][0]), W=s["W"][1:], Wr=s["Wr"][1:])


def moment_thetas_of(parts: list[dict], p: int, fam: Family, relative: bool) -> list[float]:
    """Each crossed factor's :func:`moment_theta` (its own levels' moments, as for one random intercept) from the
    :func:`crossed_moment_sums` of blocks of rows (p: the fixed effects)."""
    n, wr2 = sum(q["n"] for q in parts), sum(q["wr2"] for q in parts)
    out = [moment_theta_of([q["lead"] for q in parts], p, fam, relative)]
    for k in range(len(parts[0]["W"])):
        pooled = level_moments(n, wr2, sum(q["W"][k] for q in parts), sum(q["Wr"][k] for q in parts))
        out.append(moment_theta_of([pooled], p, fam, relative))
    return out


def start_modes(sums: dict, sd: float) -> np.ndarray:
    """Spherical modes u (b = sd u) of a random intercept to start the first mode search from: one penalised IRLS
    step from u = 0 at the GLM's linear predictor, u_j = sd Wr_j / (1 + sd^2 W_j) per level, from a block's
    :func:`moment_sums` with ``per_level`` (``sd``: the SD on the GLM's scale)."""
    return sd * sums["Wr"] / (1.0 + sd * sd * sums["W"])


# Zeger, Liang & Albert (1988): averaged over a random intercept of SD sigma, a probit model's linear predictor is
# the conditional one over sqrt(1 + sigma^2) exactly, a logit model's over sqrt(1 + c^2 sigma^2) nearly, c = 16
# sqrt(3) / (15 pi) (the logistic's closest scaled normal)
ATTENUATION_C2 = {"logit": (16.0 * np.sqrt(3.0) / (15.0 * np.pi)) ** 2, "probit": 1.0}


def attenuation(fam: Family, lk: Link, sd: float) -> float:
    """How much smaller the GLM's linear predictor is than a binomial model's with a random intercept of SD ``sd``
    (the GLM fits the mean averaged over the levels): 1 / sqrt(1 + c^2 sd^2) under the logit and probit links
    (ATTENUATION_C2), 1 for other families and links. The moment start's SD (taken on the GLM's scale) and the
    GLM's coefficients over it are a start nearer the optimum: the 1M-row random intercept's start 0.706 -> 0.764
    (optimum 0.798), one Newton step fewer."""
    c2 = ATTENUATION_C2.get(lk.name) if fam.name == "binomial" else None
    return 1.0 if c2 is None or not np.isfinite(sd) else float(1.0 / np.sqrt(1.0 + c2 * sd * sd))


def moment_theta_of(parts: list[dict], p: int, fam: Family, relative: bool) -> float:
    """:func:`moment_theta` from the :func:`moment_sums` of blocks of whole levels (p: the fixed effects)."""
    n, L = sum(s["n"] for s in parts), sum(s["levels"] for s in parts)
    phi = sum(s["wr2"] for s in parts) / max(n - p, 1) if fam.has_dispersion else 1.0
    tau2 = (sum(s["rbar2"] for s in parts) - phi * sum(s["inv_W"] for s in parts)) / L
    sd = np.sqrt(max(tau2, 0.0)) / (np.sqrt(phi) if relative and phi > 0 else 1.0)
    return float(min(max(sd, 0.1), 5.0)) if np.isfinite(sd) else 1.0
