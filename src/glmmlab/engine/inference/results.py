"""The result of a fit: every number the GLMM tab shows, on the original scale of the predictors.

Besides the JSON document (``to_dict``) a result reads as lme4 and statsmodels users expect: ``summary()``,
a short ``repr``, ``_repr_html_`` for notebooks, and ``params``, ``bse``, ``tvalues``, ``pvalues``,
``conf_int()``, ``ranef``, ``varcorr`` and ``re_correlations`` as pandas objects.

The engine stays numpy/scipy at import time: pandas is imported inside those accessors, when one is first used.
The engine's result holds the estimates and what follows from them alone. What needs the data again, a refit
or the text of the result view (R², omnibus tests, marginal means, profile and bootstrap intervals, prediction
intervals for a model with factors, ``summary()``) is the fitted model's of the services layer
(:class:`glmmlab.services.modeling.fitted.FittedModel`, a subclass every front door returns); here those methods say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import special

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.inference.deferred import deferred_fields
from glmmlab.engine.inference.prediction import Prediction
from glmmlab.engine.inference.result_intervals import IntervalMethods, _needs_services
from glmmlab.engine.inference.result_views import PandasViews
from glmmlab.engine.inference.wald import wald
from glmmlab.engine.model.spec import ModelSpec, random_intercept_formula

CONF_INT_METHODS = ("wald", "profile", "boot")


def _num(x: Any) -> Any:
    """A JSON-safe number: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _nums(a: np.ndarray) -> list:
    return [_num(v) for v in np.asarray(a, dtype=float)]


def exp_label(family: str, link: str) -> str | None:
    """The column title of exp(estimate): OR for logit, IRR for counts with a log link, exp(Est.) for other
    log links (the family's own rule)."""
    return FAMILIES[family].exp_label(link)


@dataclass(frozen=True, eq=False)
class ConditionalModes:
    """The conditional modes (BLUPs) of one grouping factor's random effects and their conditional standard
    deviations: one row per level, one column per term."""

    component: str  # the grouping factor as lme4 names it
    levels: list[str]
    terms: list[str]  # "(Intercept)", "Days", ...
    values: np.ndarray  # (levels, terms)
    std_errors: np.ndarray  # (levels, terms)
    model: str = "cond"  # the model part the effects enter: "cond" (the mean) or "zi" (the zero model)


@deferred_fields("warnings", "df")
@dataclass(frozen=True, eq=False)
class GlmmResult(PandasViews, Prediction, IntervalMethods):
    """The estimates of a fitted generalized linear mixed model, as the engine returns them: any random-effects
    terms (one scalar random intercept is the simplest), on the original scale of the predictors.

    A frozen record: the engine builds it once, complete (:mod:`glmmlab.engine.solvers.assemble`), and nothing
    changes it afterwards (``dataclasses.replace`` gives a changed copy). Each quantity is kept in one form:
    ``theta`` the vector, the variance components as rows (``variances``), the conditional modes per grouping
    factor (``modes``); ``groups``, ``n_groups`` and ``se`` are read from them. Tables are kept as arrays;
    ``to_dict()`` gives the JSON document of the contract and ``predict`` applies the model to new rows.

    What the services add to a fit (the spec, the model frame, the predictor of a formula's design for new rows,
    the time the fit took) and what needs the data again or the services' views are the fitted model's
    (:class:`glmmlab.services.modeling.fitted.FittedModel`, a subclass, what every front door returns); here
    ``spec``, ``predictor`` and ``fit_seconds`` are None, ``model_frame()`` is None and the methods that need the
    services say so.
    """

    model: dict
    method: str  # "REML", "ML", "Laplace" or "AGQ": also the kind of the log-likelihood
    n_obs: int
    n_excluded: int
    converged: bool
    singular: bool
    warnings: list[str]  # may wait for the Satterthwaite df (one warning is about them): see df
    names: list[str]
    beta: np.ndarray
    vcov_matrix: np.ndarray  # the fixed effects' covariance (``vcov`` labels it; ``se`` is its diagonal's root)
    se_kind: str
    theta: np.ndarray  # every covariance parameter of the random effects (lme4's getME(, "theta"))
    variances: list[dict]  # {"component", "term", "variance"}: each grouping factor's terms, in theta's order
    correlations: list[dict]  # {"component", "term1", "term2", "correlation"}
    modes: list[ConditionalModes]  # the conditional modes per grouping factor, the leading factor first
    var_residual: float | None
    icc: float | None
    log_likelihood: float
    aic: float
    bic: float
    k: int
    rows: np.ndarray
    fitted: np.ndarray
    deviance_residuals: np.ndarray
    pearson_residuals: np.ndarray
    row_random_effect: np.ndarray
    dropped: list[str] = field(default_factory=list)
    glm_comparison: dict | None = None
    optimization: dict | None = None  # one summary per stage of the optimisation (see optimizer.stages_document)
    se_hessian: np.ndarray | None = None
    # per random-effects term its covariance structure (engine/inference/structures.structure_rows)
    structures: list[dict] = field(default_factory=list)
    family_parameter: dict | None = None  # {"name", "value"} of the family's first parameter (the contract's)
    family_parameters: dict | None = None  # every parameter of the family's own by glmmTMB's name (family_params)
    # the zero and dispersion models' coefficients: {"zi": {"names", "estimate", "se", "vcov"}, "disp": ...}
    submodels: dict | None = None
    # per row, where a zero or dispersion model is fitted: "fitted_conditional", "zi_prob", "dispersion"
    row_extras: dict | None = None
    # Satterthwaite's denominator degrees of freedom per fixed effect (ddf="satterthwaite"; Gaussian + identity):
    # the tests are then t tests. None: Wald z tests. The fit may leave them pending (a Deferred): they are then
    # computed when first read (deferred.deferred_fields), with the same numbers
    df: np.ndarray | None = None
    # an ordinal (cumulative-link) fit's thresholds, their covariance and per-row linear predictors
    # (glmmlab.engine.inference.ordinal.OrdinalFit); None for the other families
    ordinal: Any = None
    # Gaussian + identity in memory: () -> (deviance, vcov, varpar) of Satterthwaite's method, whose pieces are
    # computed from it when first needed (omnibus F tests, marginal means)
    varpar_model: Callable[[], tuple] | None = None
    # values computed from the fields when first asked for (Satterthwaite's pieces; the fitted model's R²): a
    # cache, never a field's value
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def satterthwaite_pieces(self) -> Any:
        """Satterthwaite's pieces (:class:`glmmlab.engine.inference.wald.SatterthwaitePieces`) of a Gaussian-identity
        fit made in memory, computed once; None for other fits."""
        if "satterthwaite" not in self._memo and self.varpar_model is not None:
            from glmmlab.engine.inference.wald import SatterthwaitePieces

            with np.errstate(all="ignore"):
                self._memo["satterthwaite"] = SatterthwaitePieces(*self.varpar_model())
        return self._memo.get("satterthwaite")

    # -- what the services add (the fitted model's; an engine record has none) -------------------------------
    @property
    def spec(self) -> ModelSpec | None:
        """The :class:`~glmmlab.engine.model.spec.ModelSpec` that was fitted (kept for refits; not in the JSON)."""
        return None

    @property
    def predictor(self) -> Callable[[Any], tuple[np.ndarray, np.ndarray]] | None:
        """A formula's design rebuilt for new rows: ``new_data -> (eta without random effects, random-effects
        contribution)``; None: :meth:`predict` reads the random-intercept form's columns."""
        return None

    @property
    def fit_seconds(self) -> float | None:
        """The time the fit took, after the data were read (the JSON's ``timing.fit_seconds``)."""
        return None

    def model_frame(self) -> Any:
        """The fit's ModelFrame (built on first use for fits made from arrays), or None when there is none (a
        Dask fit, a model loaded from a project, the engine's record)."""
        return None

    # -- derived views -------------------------------------------------------------------------------
    @property
    def se(self) -> np.ndarray:
        """The standard errors of the fixed effects: the square roots of the covariance's diagonal."""
        return np.sqrt(np.maximum(np.diag(np.asarray(self.vcov_matrix, dtype=float)), 0.0))

    @property
    def groups(self) -> dict[str, int]:
        """The number of levels of each grouping factor (the JSON's ``groups``), the leading factor first."""
        return {m.component: len(m.levels) for m in self.modes}

    @property
    def n_groups(self) -> int:
        """The number of levels of the leading grouping factor (the JSON's ``n_groups``)."""
        return len(self.modes[0].levels)

    @property
    def family(self) -> str:
        return self.model["family"]

    @property
    def link(self) -> str:
        return self.model["link"]

    @property
    def conf_level(self) -> float:
        return self.model["conf_level"]

    def intervals(self, conf_level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Wald bounds at ``conf_level`` (the fit's own level when None)."""
        return wald(self.beta, self.se, self.conf_level if conf_level is None else conf_level)

    def fixed_effects_table(self, conf_level: float | None = None) -> list[dict]:
        lower, upper = self.intervals(conf_level)
        with_exp = exp_label(self.family, self.link) is not None
        table = []
        p_values = self._p_values()
        se = self.se
        for k, name in enumerate(self.names):
            z = self.beta[k] / se[k] if se[k] > 0 else np.nan
            row = {
                "variable": name, "estimate": _num(self.beta[k]), "std_error": _num(se[k]),
                "statistic": _num(z), "p_value": _num(p_values[k]),
                "lower": _num(lower[k]), "upper": _num(upper[k]),
            }
            if self.df is not None:  # Satterthwaite: statistic is a t with df degrees of freedom, p_value its p
                row["df"] = _num(self.df[k])
                # the contract's (v2) p_value of the Wald z, kept under its own key
                row["p_value_normal"] = _num(2.0 * special.ndtr(-abs(z))) if np.isfinite(z) else None
            if with_exp:
                with np.errstate(over="ignore"):
                    row.update({
                        "exp_estimate": _num(np.exp(self.beta[k])),
                        "exp_lower": _num(np.exp(lower[k])), "exp_upper": _num(np.exp(upper[k])),
                    })
            table.append(row)
        return table

    def submodel_table(self, part: str, conf_level: float | None = None) -> list[dict]:
        """The coefficients of the zero model (``part`` "zi") or the dispersion model ("disp") in the rows of
        :meth:`fixed_effects_table` (Wald z tests and intervals; exp(estimate) is the odds ratio of a zero model,
        the ratio of the dispersion for a dispersion model); empty where the model has no such part."""
        sub = (self.submodels or {}).get(part)
        if not sub:
            return []
        level = float(self.model.get("conf_level", 0.95) if conf_level is None else conf_level)
        q = float(special.ndtri(0.5 + level / 2.0))
        table = []
        for name, est, se in zip(sub["names"], sub["estimate"], sub["se"]):
            z = est / se if se > 0 else np.nan
            with np.errstate(over="ignore"):
                table.append({
                    "variable": name, "estimate": _num(est), "std_error": _num(se), "statistic": _num(z),
                    "p_value": _num(2.0 * special.ndtr(-abs(z))) if np.isfinite(z) else None,
                    "lower": _num(est - q * se), "upper": _num(est + q * se),
                    "exp_estimate": _num(np.exp(est)), "exp_lower": _num(np.exp(est - q * se)),
                    "exp_upper": _num(np.exp(est + q * se))})
        return table

    def r2(self) -> dict:
        """Nakagawa's R² (as ``performance::r2_nakagawa`` 0.10.2): ``{"marginal": x, "conditional": y}``; a value is
        None where it is not defined, with a ``"reason"`` key. Computed once, when first asked for (a Poisson or
        negative binomial model refits its null model for it; see :mod:`glmmlab.services.modeling.r2`)."""
        return {"marginal": None, "conditional": None, "reason": "R² is computed by glmmlab's services (fit "
                "with glmmlab.glmm, fit_glmm or fit)"}

    @property
    def test_kind(self) -> str:
        """"t" when the fixed effects' tests are t tests (Satterthwaite's degrees of freedom), else "z"."""
        return "t" if self.df is not None else "z"

    def _statistics(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            se = self.se
            return np.where(se > 0, self.beta / np.where(se > 0, se, 1.0), np.nan)

    def _p_values(self) -> np.ndarray:
        """Two-sided p-values: from the t distribution with the Satterthwaite df when present, else normal."""
        z = self._statistics()
        with np.errstate(invalid="ignore"):
            if self.df is not None:
                return np.where(np.isfinite(z) & np.isfinite(self.df),
                                2.0 * special.stdtr(np.where(np.isfinite(self.df), self.df, 1.0), -np.abs(z)), np.nan)
            return np.where(np.isfinite(z), 2.0 * special.ndtr(-np.abs(z)), np.nan)

    def random_effects_table(self) -> list[dict]:
        rows = [{"component": r["component"], "term": r["term"], "variance": _num(r["variance"]),
                 "std_dev": _num(np.sqrt(max(r["variance"], 0.0))), **({"model": r["model"]} if "model" in r else {})}
                for r in self.variances]
        if self.var_residual is not None:
            rows.append({"component": "Residual", "term": None, "variance": _num(self.var_residual),
                         "std_dev": _num(np.sqrt(self.var_residual))})
        return rows

    def random_intercepts_for(self, groups: np.ndarray) -> np.ndarray:
        """Each row's predicted random intercept (the leading factor's first term); 0 for a group the fit has not
        seen."""
        lead = self.modes[0]
        labels = group_labels_of(groups)
        known = np.asarray(lead.levels, dtype=str)
        order = np.argsort(known)
        pos = np.searchsorted(known[order], labels)
        pos = np.minimum(pos, len(known) - 1)
        hit = known[order][pos] == labels
        return np.where(hit, np.asarray(lead.values[:, 0], dtype=float)[order][pos], 0.0)

    def blup_table(self) -> list[dict]:
        """The conditional modes in long form (the JSON's ``blup``): per grouping factor, term and level, with rank
        1 for the largest value within its factor and term."""
        return long_blups(self.modes)

    def to_dict(self, conf_level: float | None = None, diagnostics: bool = True) -> dict:
        """The JSON document of the contract (valid JSON: no NaN or infinities).

        ``diagnostics=False`` leaves out the per-row arrays (fitted values, residuals, each row's random effect):
        ``"diagnostics"`` is then None. They are most of the document for large data."""
        model = dict(self.model)
        if conf_level is not None:
            model["conf_level"] = conf_level
        out = {
            "model": model,
            "method": self.method,
            "n_obs": int(self.n_obs), "n_groups": int(self.n_groups), "n_excluded": int(self.n_excluded),
            "converged": bool(self.converged), "singular": bool(self.singular),
            "warnings": list(self.warnings),
            "fixed_effects": self.fixed_effects_table(conf_level),
            **{f"{part}_fixed_effects": self.submodel_table(part, conf_level)
               for part in ("zi", "disp") if (self.submodels or {}).get(part)},
            "random_effects": self.random_effects_table(),
            "random_correlations": [dict(c, correlation=_num(c["correlation"])) for c in (self.correlations or [])],
            "groups": self.groups,
            "family_parameter": None if self.family_parameter is None else
            {"name": self.family_parameter["name"], "value": _num(self.family_parameter["value"]),
             "parameters": {k: _num(v) for k, v in self.family_params.items()}},
            "icc": _num(self.icc),
            "fit": {"log_likelihood": _num(self.log_likelihood), "log_likelihood_kind": self.method,
                    "aic": _num(self.aic), "bic": _num(self.bic), "k": int(self.k)},
            "blup": self.blup_table(),
            "diagnostics": {
                "row": [int(r) for r in self.rows],
                "fitted_values": _nums(self.fitted),
                "deviance_residuals": _nums(self.deviance_residuals),
                "pearson_residuals": _nums(self.pearson_residuals),
                "group_random_effect": _nums(self.row_random_effect),
                **{key: _nums(value) for key, value in (self.row_extras or {}).items()},
            } if diagnostics else None,
            "timing": {"fit_seconds": _num(self.fit_seconds)},
            "dropped_fixed_effects": list(self.dropped),
            "std_error_kind": self.se_kind,
            "glm_comparison": self.glm_comparison,
            "optimization": self.optimization,
            "r2": {k: (_num(v) if k != "reason" else v) for k, v in self.r2().items()},
        }
        out["covariance_structures"] = list(self.structures)
        terms = self.anova_terms_document()
        if terms is not None:
            out["anova_terms"] = terms
        if self.ordinal is not None:  # the thresholds' table and the ordinal part (categories, probabilities)
            out["thresholds"] = self.ordinal.table(self.conf_level if conf_level is None else conf_level)
            out["ordinal"] = self.ordinal.document(diagnostics)
        if self.se_hessian is not None:
            out["std_error_hessian"] = {n: _num(s) for n, s in zip(self.names, self.se_hessian)}
        return out

    # -- reading a result: text, notebooks and pandas accessors -----------------------------------------
    @property
    def formula(self) -> str:
        """The model in lme4's notation."""
        m = self.model
        if m.get("formula"):
            return m["formula"]
        return random_intercept_formula(m["response"], m["group"], list(m.get("fixed") or []),
                                        m.get("intercept", True))

    def summary(self) -> str:
        """lme4-like text: the model, the random effects in VarCorr layout, the fixed effects with z tests and
        Wald intervals, the model fit and the warnings (the command line's tables without the BLUPs, which are
        in :attr:`ranef`)."""
        raise _needs_services("summary()")

    def __repr__(self) -> str:
        groups = self.groups
        where = ", ".join(f"{k} {v:,}" for k, v in groups.items())
        return (f"<GlmmResult {self.formula}; {self.family}/{self.link}, {self.method}; {self.n_obs:,} obs, "
                f"groups: {where}; logLik {self.log_likelihood:.4f}; "
                f"{'converged' if self.converged else 'NOT converged'}{', singular' if self.singular else ''}>")

    def _repr_html_(self) -> str:
        import html  # here, not with the record: importing html reads its table of entities (0.3 MB)

        return f"<pre>{html.escape(repr(self))}</pre>"

    def anova(self, intercept: bool = False):
        """Omnibus tests per fixed-effect term (type III, R's treatment contrasts): a pandas DataFrame indexed by
        term. GLMMs: ``Df``, ``Chisq`` (Wald chi-square of the term's coefficients) and ``p``; Gaussian identity:
        ``Df``, ``DenDF`` (Satterthwaite), ``F`` and ``p`` (lmerTest's ``anova``, whose type III differs only for a
        covariate's main effect in an interaction with a factor: see :mod:`glmmlab.services.modeling.marginal`).
        ``df.attrs["note"]`` declares the tests. ``glmmlab.anova(m1, m2)`` compares models instead."""
        raise _needs_services("anova()")

    def emmeans(self, term: str, by: str | None = None, type: str = "response", level: float | None = None,
                at: Any = None, n_grid: int = 20):
        """Estimated marginal means of ``term`` (a factor or covariate of the fixed part), per level of ``by``, as
        R's emmeans: a pandas DataFrame with the variables, ``estimate``, ``SE``, ``df``, ``lower``, ``upper``.
        Other covariates at their means, factors averaged with equal weights; a covariate ``term`` gives ``n_grid``
        equally spaced values over its range (or the values ``at``); ``type`` "response" or "link"; ``level``: of
        the intervals (default: the fit's). Satterthwaite's df for Gaussian-identity fits, else asymptotic."""
        raise _needs_services("emmeans()")

    def pairs(self, term: str, by: str | None = None, adjust: str = "tukey", type: str = "link"):
        """Pairwise comparisons of a factor's marginal means, within each level of ``by``: ``contrast``,
        ``estimate``, ``SE``, ``df``, ``statistic``, ``p``; ``adjust`` "tukey", "holm", "bonferroni" or "none".
        ``type="response"``: under a log link the ratios of the means, under a logit link the odds ratios (as
        emmeans gives them; tests on the link scale); other links keep the differences."""
        raise _needs_services("pairs()")

    def effects(self, term: str, by: str | None = None, level: float | None = None, n_grid: int = 20):
        """The data of an effect plot of ``term`` on the response scale: ``x``, ``by`` (when given), ``estimate``,
        ``lower``, ``upper``, ``SE``; ``attrs["kind"]`` "line" for a covariate, "points" for a factor."""
        raise _needs_services("effects()")

    def anova_terms_document(self) -> dict | None:
        """The omnibus tests per term as the JSON document holds them (``"anova_terms"``): ``test`` ("F" or
        "Chisq"), ``type``, ``contrasts``, ``note`` and ``rows`` of ``term``, ``df``, ``den_df`` (F tests),
        ``statistic`` (F or chi-square) and ``p_value``. None when the services are not loaded or no term exists."""
        return None

    def __dir__(self) -> list[str]:
        """The public names only (not the fields the engine and services keep for refits)."""
        return sorted(PUBLIC_NAMES)

    @property
    def df_resid(self):
        """Satterthwaite's degrees of freedom per fixed effect (pandas Series), or None without ``ddf``."""
        return None if self.df is None else self._coefficients(self.df, "df")


PUBLIC_NAMES = (
    # the fit, as statsmodels and lme4 name it
    "params", "fixef", "bse", "tvalues", "pvalues", "df_resid", "conf_int", "vcov", "cov_params", "llf", "nobs",
    "fittedvalues", "resid", "sigma", "coef", "ranef", "varcorr", "re_correlations", "covstruct", "r2",
    "formula",
    "family", "link", "conf_level", "method", "converged", "singular", "warnings", "names", "beta", "se",
    "log_likelihood", "aic", "bic", "k", "n_obs", "n_groups", "n_excluded", "icc", "model", "groups",
    "test_kind", "fit_seconds", "theta", "family_parameter",
    # tests and predictions
    "anova", "emmeans", "pairs", "effects", "predict", "summary", "to_dict",
)


def long_blups(modes: list[ConditionalModes]) -> list[dict]:
    """The conditional modes in long form, factor by factor, term by term, level by level, with rank 1 for the
    largest value within each factor and term (``random_intercept`` repeats ``value`` for an intercept)."""
    out = []
    for m in modes:
        for a, term in enumerate(m.terms):
            values = np.asarray(m.values[:, a], dtype=float)
            rank = np.empty(values.size, dtype=int)
            rank[np.argsort(-values, kind="stable")] = np.arange(1, values.size + 1)
            intercept = term == "(Intercept)"
            for level, v, e, r in zip(m.levels, values.tolist(), np.asarray(m.std_errors[:, a]).tolist(),
                                      rank.tolist()):
                row = {"component": m.component, "group": level, "term": term, "value": _num(v)}
                if m.model != "cond":
                    row["model"] = m.model
                if intercept:
                    row["random_intercept"] = row["value"]
                row["std_error"] = _num(e)
                row["rank"] = r
                out.append(row)
    return out


def group_labels_of(values: np.ndarray) -> np.ndarray:
    """Labels as a fit stores them: strings, integral numbers without a decimal point."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if np.all(values[finite] == np.round(values[finite])):
            out = np.full(values.shape, "", dtype=object)
            out[finite] = values[finite].astype(np.int64).astype(str)
            return out.astype(str)
    if values.dtype.kind == "b":
        return np.where(values, "True", "False")
    return values.astype(str)
