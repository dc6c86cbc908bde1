"""Nakagawa's R² of a mixed model (Nakagawa & Schielzeth 2013; Nakagawa, Johnson & Schielzeth 2017), computed as
``performance::r2_nakagawa`` 0.10.2 (insight 0.19.0) computes it:

- fixed-effects variance: the sample variance (n - 1) of the linear predictor's fixed part X beta (without offsets);
- random-effects variance: for each grouping factor with covariance Sigma (lme4's VarCorr), the mean over rows of
  z' Sigma z, where z are the rows of X at that factor's terms (the random slopes' columns; a term that is not a
  column of X is left out, as performance does). A factor with one level per row (an observation-level random
  effect) counts as dispersion: it is added to the residual variance (nothing for Gaussian fits);
- distribution-specific variance: Gaussian sigma²; binomial pi²/3 (logit) or 1 (probit); Poisson with the log link
  log(1 + 1/mu) and the negative binomial (glmmTMB's nbinom2) log(1 + 1/mu + 1/theta), mu = exp(intercept of the
  null model, the same random effects and offsets with only an intercept, refitted); Gamma sigma² (the squared
  coefficient of variation, whatever the link; for glmmTMB's fit and for glmer's, its dispersion);
- marginal = fixed / (fixed + random + residual), conditional = (fixed + random) / (fixed + random + residual).

As in performance, a singular fit (a diagonal element of lme4's relative Cholesky factor theta below 1e-5) has no
random-effects variance: the marginal R² leaves it out and the conditional one is None. Also as in performance,
Gamma's random-effects variances are those of the fit: on the link scale (glmmTMB's, the default fit), or lme4's
VarCorr ones with ``dispersion="lme4"``, which for the Gamma family are sigma² times those. Where performance has no
definition (Poisson or negative binomial with the identity link, Gaussian with the log link) both values are None,
with the reason.

One difference, on purpose: for uncorrelated terms ``(x || g)`` performance 0.10.2 drops the second block of lme4's
VarCorr (``g.1``, the slope's variance) because it matches blocks by the names of ``ranef()``; here every block
counts, as the definition asks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.results import GlmmResult

SINGULAR_TOL = 1e-5  # performance's default tolerance


def _na(reason: str) -> dict[str, Any]:
    return {"marginal": None, "conditional": None, "reason": reason}


def _relative_cholesky_diagonal(S: np.ndarray) -> np.ndarray:
    """The diagonal of the lower Cholesky factor of a positive semi-definite S (0 where S is singular there)."""
    q = S.shape[0]
    L = np.zeros((q, q))
    for k in range(q):
        d = S[k, k] - float(L[k, :k] @ L[k, :k])
        L[k, k] = np.sqrt(d) if d > 0 else 0.0
        for i in range(k + 1, q):
            L[i, k] = (S[i, k] - float(L[i, :k] @ L[k, :k])) / L[k, k] if L[k, k] > 0 else 0.0
    return np.diag(L)


def _covariances(result: GlmmResult) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each grouping factor's term names and covariance matrix, from the result's variance and correlation rows."""
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    terms: dict[str, list[str]] = {}
    var: dict[tuple[str, str], float] = {}
    for r in result.random_effects_table():
        if r["component"] == "Residual":
            continue
        terms.setdefault(r["component"], []).append(r["term"])
        var[(r["component"], r["term"])] = float(r["variance"] or 0.0)
    for comp, names in terms.items():
        S = np.diag([var[(comp, t)] for t in names])
        for c in result.correlations or []:
            if c["component"] == comp and c["correlation"] is not None:
                i, j = names.index(c["term1"]), names.index(c["term2"])
                S[i, j] = S[j, i] = c["correlation"] * np.sqrt(S[i, i] * S[j, j])
        out[comp] = (names, S)
    return out


def _null_intercept(result: GlmmResult) -> float:
    """The intercept of the null model: the same random effects, offsets and weights, only an intercept."""
    from glmmlab.services.modeling.fitting import fit_frame_spec

    mf, spec = result.model_frame(), result.spec
    assert spec is not None  # the caller refuses a fit without one
    null = dataclasses.replace(mf, X=np.ones((mf.n, 1)), x_names=["(Intercept)"], intercept=True, recipe=None,
                               warnings=[])
    spec = dataclasses.replace(spec, ddf="none", se="working")
    # the null model has the same random effects: its optimum in theta lies near the full model's (the slope
    # Poisson case of 200,000 rows: 24 evaluations from lme4's start, 16 from here)
    return float(fit_frame_spec(null, spec, theta_start=result.theta).beta[0])


def _term_columns(mf, comp: str) -> dict:
    """The model-matrix columns of the random terms on ``comp``, by name."""
    out = {}
    for t in mf.terms:
        if t.component == comp:
            for j, name in enumerate(t.names):
                out[name] = np.asarray(t.Z[:, j], dtype=float)
    return out


def nakagawa(result: GlmmResult) -> dict[str, Any]:
    """{"marginal", "conditional"} (with "reason" when a value is None) of a fit made in memory."""
    fam, link = result.family, result.link
    parts = [k for k in ("zi", "disp") if result.model.get(k) is not None]
    if parts:
        return _na("Nakagawa's R² is not computed for a model with a " + " and a ".join(
            {"zi": "zero(-inflation) model", "disp": "dispersion model"}[k] for k in parts)
            + ": its residual variance varies by row")
    if fam not in ("gaussian", "binomial", "poisson", "negbin", "gamma"):
        return _na(f"Nakagawa's R² is not available for the {fam} family (its distribution-specific variance is "
                   "not implemented)")
    if fam == "gaussian" and link != "identity" or fam in ("poisson", "negbin") and link != "log":
        return _na(f"Nakagawa's R² is not defined for the {fam} family with the {link} link (performance has no "
                   "distribution-specific variance for it)")
    mf = result.model_frame()
    if mf is None:
        return _na("R² needs the model's data, which this fit does not keep (a Dask fit or a model loaded from a "
                   "project)")
    X = np.asarray(mf.X, dtype=float)
    cols = {name: j for j, name in enumerate(mf.x_names)}
    eta = X[:, [cols[n] for n in result.names]] @ np.asarray(result.beta, dtype=float)
    var_fixed = float(np.var(eta, ddof=1)) if eta.size > 1 else 0.0
    sigma2 = result.var_residual
    covs = _covariances(result)
    if fam == "gamma" and result.model.get("dispersion") == "lme4":
        # glmer's criterion: lme4's VarCorr for the Gamma family is scaled by sigma², and performance reads it so;
        # with the dispersion estimated the variances are the random effects' own, on the link scale (glmmTMB's)
        assert sigma2 is not None
        covs = {k: (names, S * sigma2) for k, (names, S) in covs.items()}
    scale = sigma2 if fam in ("gaussian", "gamma") and sigma2 else 1.0
    singular = any(np.any(_relative_cholesky_diagonal(S / scale) < SINGULAR_TOL) for _, S in covs.values())
    groups = result.groups
    n = X.shape[0]
    var_random, var_dispersion = 0.0, 0.0
    for comp, (names, S) in covs.items():
        own = _term_columns(mf, comp)  # a random column that is no fixed column (0 + time | id): the term's own
        keep = [i for i, t in enumerate(names) if t in cols or t == "(Intercept)" or t in own]
        Z = np.column_stack([np.ones(n) if names[i] == "(Intercept)" and names[i] not in cols else
                             X[:, cols[names[i]]] if names[i] in cols else own[names[i]] for i in keep])
        v = float(np.mean(np.einsum("ij,jk,ik->i", Z, S[np.ix_(keep, keep)], Z)))
        if groups.get(comp) == n:
            var_dispersion += 0.0 if fam == "gaussian" else v
        else:
            var_random += v
    if fam == "gaussian":
        assert sigma2 is not None
        var_dist = sigma2
    elif fam == "binomial":
        var_dist = np.pi ** 2 / 3.0 if link == "logit" else 1.0
    elif fam == "gamma":
        assert sigma2 is not None
        var_dist = sigma2
    else:  # counts with the log link: the lognormal approximation at the null model's mean
        if result.spec is None:
            return _na("R² of a count model needs its null model refitted, and this fit keeps no data")
        try:
            mu = float(np.exp(_null_intercept(result)))
        except GlmmInputError as exc:
            return _na(f"the null model (only an intercept) could not be fitted: {exc}")
        cv2 = 1.0 / mu
        if fam == "negbin":
            assert result.family_parameter is not None
            cv2 += 1.0 / float(result.family_parameter["value"])
        var_dist = float(np.log1p(cv2))
    resid = var_dist + var_dispersion
    if singular:
        total = var_fixed + resid
        return {"marginal": var_fixed / total if total > 0 else None, "conditional": None,
                "reason": "singular fit: a random-effect variance is (near) zero, so the conditional R² is not "
                          "available (as in performance); the marginal R² leaves the random effects out"}
    total = var_fixed + var_random + resid
    if not total > 0:
        return _na("the total variance is zero")
    return {"marginal": var_fixed / total, "conditional": (var_fixed + var_random) / total}


