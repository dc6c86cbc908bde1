"""Inference on a fitted model: covariance of the fixed effects, Wald intervals, ICC, information criteria and
the likelihood-ratio test of the random intercept."""

from __future__ import annotations

import numpy as np
from scipy import linalg, special


def inverse_spd(M: np.ndarray) -> np.ndarray:
    try:
        L = linalg.cho_factor(M, lower=True)
        return linalg.cho_solve(L, np.eye(M.shape[0]))
    except linalg.LinAlgError:
        return linalg.pinvh(M)


def to_original_scale(T: np.ndarray, beta_s: np.ndarray, vcov_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and covariance for the original predictors: beta = T beta_scaled."""
    return T @ beta_s, T @ vcov_s @ T.T


def z_quantile(conf_level: float) -> float:
    return float(special.ndtri(0.5 + conf_level / 2.0))


def wald(beta: np.ndarray, se: np.ndarray, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    z = z_quantile(conf_level)
    return beta - z * se, beta + z * se


def icc(family: str, link: str, var_group: float, var_residual: float | None) -> float | None:
    """ICC where the spec defines one (Gaussian+identity, Binomial+logit, Binomial+probit), else None."""
    from glmmlab.engine.families.catalogue import FAMILIES

    resid = FAMILIES[family].icc_residual(link, var_residual)
    if resid is None:
        return None
    total = var_group + resid
    return float(var_group / total) if total > 0 else None


def information_criteria(loglik: float, k: int, n: int) -> tuple[float, float]:
    return -2.0 * loglik + 2.0 * k, -2.0 * loglik + k * np.log(n)


def boundary_lrt(loglik_full: float, loglik_null: float) -> tuple[float, float]:
    """LRT of sigma_u^2 = 0: the statistic and the p-value from the 50:50 mixture of chi2(0) and chi2(1)."""
    stat = max(0.0, 2.0 * (loglik_full - loglik_null))
    p = 0.5 * float(special.chdtrc(1, stat)) if stat > 0 else 1.0
    return stat, p


def glm_comparison(loglik: float, null_loglik: float, k: int, n: int, n_groups: int, icc: float | None) -> dict:
    """The comparison with the GLM without the random intercept: its fit, the boundary-corrected LRT of
    sigma_u^2 = 0 and the design effect."""
    stat, pval = boundary_lrt(loglik, null_loglik)
    glm_k = k - 1
    glm_aic, glm_bic = information_criteria(null_loglik, glm_k, n)
    mean_size = n / n_groups
    return {
        "glm_log_likelihood": float(null_loglik), "glm_aic": float(glm_aic), "glm_bic": float(glm_bic),
        "glm_k": int(glm_k), "lrt_statistic": float(stat), "lrt_df": 1, "lrt_p_value": float(pval),
        "lrt_note": "boundary-corrected: p = 0.5 * P(chi2(1) > statistic)",
        "mean_group_size": float(mean_size),
        "design_effect": None if icc is None else float(1.0 + (mean_size - 1.0) * icc),
    }


# -- Satterthwaite's degrees of freedom (lmerTest's method) ----------------------------------------------------------
def _richardson(d):
    """Richardson extrapolation of a central difference d(scale) with O(h^2) error: (4 d(1/2) - d(1)) / 3."""
    return (4.0 * d(0.5) - d(1.0)) / 3.0


def _steps(x: np.ndarray) -> np.ndarray:
    # the deviance is accurate to about 1e-12 relative (a factorisation): larger steps than usual keep rounding
    # out of the second differences, and the Richardson step takes the O(h^2) error to O(h^4) ~ 1e-8
    return 1e-2 * np.abs(x) + 1e-4


def central_hessian(f, x: np.ndarray, h: np.ndarray, f0: float | None = None) -> np.ndarray:
    """The Hessian of a scalar function by central differences with steps ``h`` (error O(h^2)); ``f0`` is f(x)
    when known."""
    x = np.asarray(x, dtype=float)
    k = x.size
    f0 = f(x) if f0 is None else f0
    H = np.empty((k, k))
    for i in range(k):
        e_i = np.zeros(k)
        e_i[i] = h[i]
        H[i, i] = (f(x + e_i) - 2.0 * f0 + f(x - e_i)) / (h[i] * h[i])
        for j in range(i):
            e_j = np.zeros(k)
            e_j[j] = h[j]
            H[i, j] = H[j, i] = (f(x + e_i + e_j) - f(x + e_i - e_j) - f(x - e_i + e_j)
                                 + f(x - e_i - e_j)) / (4.0 * h[i] * h[j])
    return H


def numeric_hessian(f, x: np.ndarray) -> np.ndarray:
    """The Hessian of a scalar function by central differences with one Richardson step (error O(h^4))."""
    x = np.asarray(x, dtype=float)
    h0 = _steps(x)
    f0 = f(x)
    return _richardson(lambda scale: central_hessian(f, x, h0 * scale, f0))


def numeric_jacobian(f, x: np.ndarray) -> np.ndarray:
    """d f(x) / d x_i for an array-valued f, stacked along the first axis (central differences, one Richardson
    step)."""
    x = np.asarray(x, dtype=float)
    h0 = _steps(x)

    def at(scale: float) -> np.ndarray:
        out = []
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = h0[i] * scale
            out.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2.0 * e[i]))
        return np.array(out)

    return _richardson(at)


def satterthwaite_df(deviance, vcov, varpar: np.ndarray) -> np.ndarray:
    """Satterthwaite's denominator degrees of freedom of each fixed effect, as lmerTest computes them.

    ``varpar`` are the variance parameters (lme4's theta and the residual standard deviation sigma), ``deviance``
    the (not profiled) REML or ML deviance as a function of them and ``vcov`` the covariance of the fixed effects
    as a function of them. With A = 2 H^-1 (H the deviance's Hessian: the asymptotic covariance of the variance
    parameters) and g = d(e_k' V e_k)/d varpar, df_k = 2 (e_k' V e_k)^2 / (g' A g)."""
    varpar = np.asarray(varpar, dtype=float)
    H = numeric_hessian(deviance, varpar)
    V = np.asarray(vcov(varpar))
    if not np.all(np.isfinite(H)):  # the estimates on the edge of a covariance structure's range: no df
        return np.full(V.shape[0], np.nan)
    A = 2.0 * linalg.pinvh(H)
    J = numeric_jacobian(lambda v: np.diag(vcov(v)), varpar)  # (k, p): d V_jj / d varpar_i
    denom = np.einsum("ij,ik,kj->j", J, A, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, 2.0 * np.diag(V) ** 2 / denom, np.nan)
    return df


class SatterthwaitePieces:
    """What Satterthwaite's degrees of freedom of any linear combination of the fixed effects need, once per fit:
    ``A`` = 2 H^-1, the asymptotic covariance of the variance parameters (H the deviance's Hessian in them), ``J``
    the derivatives of the fixed effects' covariance V in each variance parameter (k, p, p), and V itself."""

    def __init__(self, deviance, vcov, varpar: np.ndarray):
        varpar = np.asarray(varpar, dtype=float)
        H = numeric_hessian(deviance, varpar)
        # the estimates on the edge of a covariance structure's range (the deviance undefined past it): no df
        self.A = 2.0 * linalg.pinvh(H) if np.all(np.isfinite(H)) else np.full(H.shape, np.nan)
        self.V = np.asarray(vcov(varpar), dtype=float)
        self.J = numeric_jacobian(lambda v: np.asarray(vcov(v), dtype=float), varpar)  # (k, p, p)

    def df(self, L: np.ndarray) -> np.ndarray:
        """df of each row l of ``L`` (one contrast each): 2 (l'Vl)^2 / (g' A g), g_i = l' dV/dvarpar_i l."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        var = np.einsum("ij,jk,ik->i", L, self.V, L)
        g = np.einsum("mj,ijk,mk->mi", L, self.J, L)  # (rows, k)
        denom = np.einsum("mi,ij,mj->m", g, self.A, g)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isnan(denom), np.nan, np.where(denom > 0, 2.0 * var ** 2 / denom, np.inf))


def wald_chisq(beta: np.ndarray, vcov: np.ndarray, L: np.ndarray) -> tuple[float, int, float]:
    """The Wald chi-square test of L beta = 0: (statistic (L b)' (L V L')^-1 (L b), df = rank of L V L', p)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    Lb = L @ np.asarray(beta, dtype=float)
    M = L @ np.asarray(vcov, dtype=float) @ L.T
    d, P = linalg.eigh(M)
    keep = d > max(d.max(), 0.0) * 1e-10 if d.size else d > 0
    q = int(keep.sum())
    if q == 0:
        return float("nan"), 0, float("nan")
    z = P[:, keep].T @ Lb
    stat = float(np.sum(z ** 2 / d[keep]))
    return stat, q, float(special.chdtrc(q, stat))


def contest_f(beta: np.ndarray, pieces: SatterthwaitePieces, L: np.ndarray) -> tuple[float, int, float, float]:
    """lmerTest's multi-df F test of L beta = 0 with Satterthwaite's denominator df (its ``contestMD``): with
    L V L' = P D P', the q = rank independent t statistics t_m = (P'L b)_m / sqrt(d_m) each get Satterthwaite's
    df nu_m; F = sum t_m^2 / q and its denominator df from E = sum nu_m / (nu_m - 2): 2E / (E - q) (all nu_m > 2;
    otherwise 2; the mean when they are equal, nu itself for q = 1). Returns (F, q, denominator df, p)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    M = L @ pieces.V @ L.T
    d, P = linalg.eigh(M)
    order = np.argsort(-d)
    d, P = d[order], P[:, order]
    keep = d > max(d[0] if d.size else 0.0, 0.0) * np.finfo(float).eps ** 0.5
    q = int(keep.sum())
    if q == 0:
        return float("nan"), 0, float("nan"), float("nan")
    PtL = P[:, keep].T @ L
    t2 = (PtL @ np.asarray(beta, dtype=float)) ** 2 / d[keep]
    F = float(np.sum(t2) / q)
    nu = pieces.df(PtL)
    if q == 1:
        ddf = float(nu[0])
    elif np.all(np.abs(np.diff(nu)) < 1e-8):
        ddf = float(np.mean(nu))
    elif np.any(nu <= 2):
        ddf = 2.0
    else:
        E = float(np.sum(nu / (nu - 2.0)))
        ddf = 2.0 * E / (E - q)
    p = float(special.fdtrc(q, ddf, F)) if np.isfinite(ddf) else float(special.chdtrc(q, q * F))
    return F, q, ddf, p
