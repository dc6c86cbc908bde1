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
    from glmmlab.engine.families import FAMILIES

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
