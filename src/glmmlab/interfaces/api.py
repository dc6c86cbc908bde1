"""The Python API: a DataFrame in (pandas, polars, Arrow, or a dict of columns), a GlmmResult out.

Input is checked here, once, with messages that name the column or option; the engine then works on clean
float arrays.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.spec import ModelSpec
from glmmlab.services.distributed.fitting import fit_columns_dask, fit_spec_dask
from glmmlab.services.modeling.fitted import fit_columns, fit_spec
from glmmlab.services.modeling.fitting import to_pandas


def fit_glmm(
    data: Any,
    response: str,
    group: str,
    fixed: Optional[Sequence[str]] = None,
    *,
    family: str = "gaussian",
    link: Optional[str] = None,
    intercept: bool = True,
    conf_level: float = 0.95,
    max_iter: int = 100,
    tol: float = 1e-6,
    nagq: int = 1,
    se: str = "working",
    weights: Optional[str] = None,
    offset: Optional[str] = None,
    reference_levels: Optional[Mapping[str, Any]] = None,
    reml: bool = True,
    ddf: str = "auto",
    dispersion: str = "estimated",
    tweedie_power: Optional[float] = None,
    progress: Optional[Callable[[str, float], None]] = None,
    n_blocks: Optional[int] = None,
) -> GlmmResult:
    """Fit a random-intercept GLMM ``g(mu_i) = x_i' beta + u_group`` and return its :class:`GlmmResult`.

    ``family`` is gaussian, binomial, poisson, gamma, negbin (glmmTMB's nbinom2: theta estimated) or one of
    glmmTMB's families with parameters of their own, estimated with the others: nbinom1 (phi), beta_family (phi),
    betabinomial (phi; the response as cbind(successes, failures)), t_family (sigma, df), tweedie (phi, power;
    ``tweedie_power`` holds the power at a value in (1, 2) instead); glmmTMB's spellings ``nbinom2``, ``beta``
    and ``t`` are accepted. ``link`` defaults to the family's canonical link. The model is fitted by the general
    engine, as at every front door (:mod:`glmmlab.services.modeling.fitting`), so this is the same fit as
    ``glmm("response ~ fixed + (1 | group)", data)``. ``nagq`` 1 is the Laplace approximation, > 1 adaptive
    Gauss-Hermite quadrature (non-Gaussian families but glmmTMB's, which are fitted by Laplace only).
    ``se`` "working" (default: working weights at PIRLS convergence; glmmTMB's families: always the Hessian of the
    Laplace deviance over every parameter, as glmmTMB's) or "hessian" (also reports the Hessian-based standard
    errors). ``progress(stage, fraction)`` is called as the fit proceeds.
    ``n_blocks``: how many blocks of whole groups (run in threads) share the work; default one per core
    for large data.
    Rows with a missing, non-numeric or infinite value in any model column are excluded (listwise).
    String, categorical and boolean fixed-effect columns become factors (treatment contrasts; ``reference_levels``
    ``{"f": "b"}`` makes level b the reference of factor f, as R's ``relevel``); ``weights`` and ``offset`` name
    columns of prior weights and of an offset.
    ``reml`` (Gaussian + identity): True = REML (default), False = maximum likelihood (lmer's ``REML = FALSE``).
    ``ddf``: "auto" (default) = t tests with Satterthwaite's degrees of freedom and their p-values for Gaussian +
    identity fits (lmerTest's convention; the Dask paths give Wald z there), Wald z tests for other models;
    "satterthwaite" asks for Satterthwaite explicitly (Gaussian + identity only); "none" = lme4's Wald statistic
    with no df (its p-value from the normal distribution, as the JSON contract v2 defined ``p_value``).
    ``dispersion`` (Gamma; Gaussian with a log or inverse link): "estimated" (default) fits the model's likelihood
    with the dispersion as a parameter, as glmmTMB does; "lme4" reproduces glmer's criterion, which plugs
    deviance / n into the density (its variance components are biased; for reproducing a published lme4 fit).
    """
    if type(data).__module__.startswith("dask"):
        _no_references_on_dask(reference_levels)
        _in_memory_only(reml, ddf)
        if weights is not None or offset is not None:
            raise GlmmInputError("weights and offset are not available on a Dask DataFrame yet; fit in memory "
                                 "(a pandas, polars or Arrow table)")
        return fit_columns_dask(data, response, group, fixed, intercept=intercept, family=family, link=link,
                                conf_level=conf_level, max_iter=max_iter, tol=tol, nagq=nagq, se=se,
                                progress=progress)
    return fit_columns(to_pandas(data), response, group, fixed, intercept=intercept, family=family, link=link,
                       weights=weights, offset=offset, reference_levels=reference_levels, conf_level=conf_level,
                       max_iter=max_iter, tol=tol, nagq=nagq, se=se, reml=reml, ddf=ddf, dispersion=dispersion,
                       tweedie_power=tweedie_power, progress=progress, n_blocks=n_blocks)


def _in_memory_only(reml: Any, ddf: Any) -> None:
    """The Dask paths fit by REML with Wald tests; maximum likelihood and Satterthwaite's df run in memory."""
    if reml is not True or str(ddf).strip().lower() not in ("none", "auto"):
        raise GlmmInputError("reml=False and ddf='satterthwaite' are available for fits in memory only; fit a "
                             "pandas, polars or Arrow table")


def _no_references_on_dask(reference_levels: Any) -> None:
    if reference_levels:
        raise GlmmInputError("reference_levels need a fit in memory (a pandas, polars or Arrow table): factors in "
                             "the fixed part are not available on a Dask DataFrame; recode the factor as 0/1 "
                             "columns there")


def glmm(
    formula: str,
    data: Any,
    *,
    family: str = "gaussian",
    link: Optional[str] = None,
    weights: Optional[str] = None,
    offset: Optional[str] = None,
    reference_levels: Optional[Mapping[str, Any]] = None,
    conf_level: float = 0.95,
    max_iter: int = 100,
    tol: float = 1e-6,
    nagq: int = 1,
    se: str = "working",
    reml: bool = True,
    ddf: str = "auto",
    dispersion: str = "estimated",
    tweedie_power: Optional[float] = None,
    zi: Optional[str] = None,
    disp: Optional[str] = None,
    progress: Optional[Callable[[str, float], None]] = None,
    n_blocks: Optional[int] = None,
    levels: Optional[Sequence[Any]] = None,
) -> GlmmResult:
    """Fit a model written in lme4's language, e.g.
    ``glmm("Reaction ~ Days + (Days | Subject)", df)`` or
    ``glmm("cbind(s, f) ~ period + (1 | herd)", df, family="binomial")``.

    Fixed part: numeric columns, factors (string, categorical and boolean columns; treatment contrasts),
    ``a:b``, ``a*b``, ``0 +``/``- 1``, ``I()``, ``log()``, ``exp()``, ``sqrt()``, ``scale()``, ``offset()``.
    Random part: ``(1 | g)``, ``(1 + x | g)``, ``(x || g)``, ``(1 | a/b)``, ``(1 | a) + (1 | b)`` and any mix.
    ``weights`` names a column of prior weights (binomial: the number of trials for a proportion response),
    ``offset`` a column added to the linear predictor. ``reference_levels`` chooses a factor's reference level
    (``{"f": "b"}``: coefficients ``fa``, ``fc``), as ``relevel(f, "b")`` in R's data preparation would; the formula
    itself stays as written. Other options (``reml``, ``ddf`` too) as :func:`fit_glmm`.

    glmmTMB's model parts: ``zi`` a one-sided formula of the probability of a structural zero (``"~ mined"``;
    for a hurdle family, ``truncated_poisson``, ``truncated_nbinom2``, ``truncated_nbinom1`` or ``ziGamma``, the
    model of P(y = 0)), ``disp`` one of the family's dispersion on its log scale (``"~ x"``: the Gaussian's log
    variance, the Gamma's log shape, the negative binomial's log theta, ...). ``result.fixef`` then holds the
    ``"cond"``, ``"zi"`` and ``"disp"`` coefficients.

    ``family="ordinal"`` fits a cumulative-link mixed model (``ordinal::clmm``; links logit, probit, cloglog) to an
    ordered response: ``glmm("rating ~ temp + contact + (1 | judge)", df, family="ordinal", link="probit")``. Its
    categories are a pandas categorical's order, else the values sorted (numbers in numeric order); ``levels``
    gives the order (``levels=["low", "mid", "high"]``). The thresholds are ``result.thresholds`` (a Series by
    clmm's names ``"1|2"``, ...), the category probabilities per row ``result.category_probs``.
    """
    spec = ModelSpec(formula, family=family, link=link, weights=weights, offset=offset, conf_level=conf_level,
                     max_iter=max_iter, tol=tol, nagq=nagq, se=se, reference_levels=reference_levels,
                     reml=reml, ddf=ddf, dispersion=dispersion, tweedie_power=tweedie_power, zi=zi, disp=disp,
                     levels=levels)
    return fit(spec, data, progress=progress, n_blocks=n_blocks)


def fit(spec: ModelSpec, data: Any, *, progress: Optional[Callable[[str, float], None]] = None,
        n_blocks: Optional[int] = None) -> GlmmResult:
    """Fit a :class:`~glmmlab.engine.model.spec.ModelSpec` (``glmmlab.ModelSpec("y ~ x + (1 | g)", family=...)``) to a
    pandas, polars or Arrow table, or a Dask DataFrame."""
    if not isinstance(spec, ModelSpec):
        raise GlmmInputError(f"spec must be a glmmlab.ModelSpec; got {type(spec).__name__}")
    if type(data).__module__.startswith("dask"):
        _no_references_on_dask(spec.reference_levels)
        _in_memory_only(spec.reml, spec.ddf)
        return fit_spec_dask(data, spec, progress=progress)
    return fit_spec(to_pandas(data), spec, progress=progress, n_blocks=n_blocks)


def anova(*models: GlmmResult, **named: GlmmResult) -> pd.DataFrame:
    """Compare nested models by likelihood-ratio tests, as lme4's ``anova(m1, m2, ...)``: a pandas DataFrame with
    columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``, one row per model in order of npar, each
    tested against the row before it. Rows are named after the models given: by keyword
    (``glmmlab.anova(null=m0, full=m1)``), else by their formulas (``m1, m2, ...`` in the order given where two
    formulas are the same).

    Gaussian + identity REML fits are refitted by maximum likelihood first; ``df.attrs["notes"]`` says so and a
    ``UserWarning`` is issued (lme4: "refitting model(s) with ML (instead of REML)"). Models fitted to different
    rows, responses, families or links are refused with the reason (:class:`GlmmInputError`)."""
    import warnings

    from glmmlab.services.workbench.comparison import compare

    formulas = [getattr(m, "formula", None) for m in models]
    by_formula = all(isinstance(f, str) and f for f in formulas) and len(set(formulas)) == len(formulas) \
        and not set(formulas) & set(named)
    pairs = [(str(formulas[i]) if by_formula else f"m{i + 1}", m) for i, m in enumerate(models)] \
        + list(named.items())
    table = compare(pairs)
    for note in table.attrs["notes"]:
        warnings.warn(note, UserWarning, stacklevel=2)
    return table
