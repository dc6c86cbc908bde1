"""The statsmodels- and lme4-style pandas views of a fit's record (a mixin of
:class:`~glmmlab.engine.inference.results.GlmmResult`): ``params``, ``bse``, ``tvalues``, ``pvalues``, ``vcov``,
``fixef`` (glmmTMB's dict by model part), ``thresholds``, ``category_probs``, ``llf``, ``nobs``, ``family_params``,
``sigma``, ``fittedvalues``, ``resid``, ``coef``, ``ranef``, ``varcorr``, ``re_correlations`` and ``covstruct``.
pandas is imported when one is first read, so fitting never needs it."""

from __future__ import annotations

from typing import Any

import numpy as np


class PandasViews:
    """The accessors; the record's fields (names, beta, vcov_matrix, ...) are GlmmResult's."""

    names: list
    beta: Any
    vcov_matrix: Any
    submodels: Any
    ordinal: Any
    log_likelihood: float
    n_obs: int
    family_parameters: Any
    family_parameter: Any
    var_residual: Any
    fitted: Any
    rows: Any
    pearson_residuals: Any
    deviance_residuals: Any
    modes: Any
    correlations: Any
    structures: Any
    se: Any

    def _statistics(self) -> np.ndarray:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    def _p_values(self) -> np.ndarray:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    def blup_table(self) -> list[dict]:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    def random_effects_table(self) -> list[dict]:  # pragma: no cover - GlmmResult's
        raise NotImplementedError

    def _coefficients(self, values: np.ndarray, name: str):
        import pandas as pd  # lazily: the engine does not need pandas to fit

        return pd.Series(np.asarray(values, dtype=float), index=pd.Index(list(self.names), name="term"), name=name)

    @property
    def params(self):
        """The fixed-effect estimates (pandas Series by coefficient name)."""
        return self._coefficients(self.beta, "estimate")

    @property
    def bse(self):
        """The standard errors of the fixed effects (pandas Series by coefficient name)."""
        return self._coefficients(self.se, "std_error")

    @property
    def tvalues(self):
        """The Wald statistics, estimate / standard error (pandas Series; NaN where the error is 0): z tests, or
        t tests with ``ddf="satterthwaite"``."""
        return self._coefficients(self._statistics(), "statistic")

    @property
    def pvalues(self):
        """Two-sided p-values of the Wald z tests, or of the t tests with Satterthwaite's degrees of freedom
        (pandas Series by coefficient name)."""
        return self._coefficients(self._p_values(), "p_value")

    # -- statsmodels and lme4 names -----------------------------------------------------------------------
    @property
    def vcov(self):
        """The covariance of the fixed effects: a pandas DataFrame labelled by coefficient name (lme4's ``vcov``)."""
        import pandas as pd

        idx = pd.Index(list(self.names), name="term")
        return pd.DataFrame(np.asarray(self.vcov_matrix, dtype=float), index=idx, columns=list(self.names))

    def cov_params(self):
        """statsmodels' name for :attr:`vcov`."""
        return self.vcov

    @property
    def fixef(self) -> dict:
        """glmmTMB's ``fixef``: a dict of pandas Series of the coefficients by model part, ``"cond"`` (the mean's
        fixed effects, :attr:`params`), ``"zi"`` (the zero model) and ``"disp"`` (the dispersion model), an absent
        part an empty Series."""
        import pandas as pd

        out = {"cond": self.params}
        for part in ("zi", "disp"):
            sub = (self.submodels or {}).get(part)
            out[part] = pd.Series(np.asarray(sub["estimate"], dtype=float) if sub else np.zeros(0),
                                  index=pd.Index(list(sub["names"]) if sub else [], name="term"), name="estimate",
                                  dtype=float)
        return out

    @property
    def thresholds(self):
        """An ordinal fit's thresholds as a pandas Series by clmm's names (``"1|2"``, ``"2|3"``, ...): P(Y <= j) =
        F(theta_j - eta). None for the other families."""
        if self.ordinal is None:
            return None
        import pandas as pd

        return pd.Series(np.asarray(self.ordinal.thresholds, dtype=float), index=list(self.ordinal.names),
                         name="threshold")

    @property
    def category_probs(self):
        """An ordinal fit's category probabilities per row at the conditional modes (a DataFrame: one column per
        category, rows in the order of :attr:`rows`); None for the other families."""
        if self.ordinal is None:
            return None
        import pandas as pd

        return pd.DataFrame(self.ordinal.category_probabilities(), columns=list(self.ordinal.levels),
                            index=pd.Index(np.asarray(self.rows), name="row"))

    @property
    def llf(self) -> float:
        """statsmodels' name of the log-likelihood (REML criterion for REML fits, as lme4's logLik)."""
        return float(self.log_likelihood)

    @property
    def nobs(self) -> int:
        """The number of rows used in the fit."""
        return int(self.n_obs)

    @property
    def family_params(self) -> dict[str, float]:
        """The family's own parameters by glmmTMB's names (``{"theta": ...}`` for the negative binomial,
        ``{"phi": ...}`` for nbinom1, beta_family and betabinomial, ``{"sigma", "df"}`` for t_family, ``{"phi",
        "power"}`` for tweedie); empty for the families without (glmmTMB's ``family_params``)."""
        if self.family_parameters:
            return {k: float(v) for k, v in self.family_parameters.items()}
        fp = self.family_parameter
        return {} if fp is None else {fp["name"]: float(fp["value"])}

    @property
    def sigma(self) -> float:
        """lme4's ``sigma``: the residual standard deviation (Gaussian), Gamma's dispersion sigma; 1 for families
        without one (binomial, Poisson, negative binomial), as lme4."""
        return float(np.sqrt(self.var_residual)) if self.var_residual is not None else 1.0

    @property
    def fittedvalues(self):
        """The fitted means with the random effects (lme4's ``fitted``), a pandas Series indexed by input row."""
        import pandas as pd

        return pd.Series(np.asarray(self.fitted, dtype=float), index=pd.Index(np.asarray(self.rows), name="row"),
                         name="fitted")

    @property
    def resid(self):
        """The residuals lme4's ``residuals()`` gives by default: deviance residuals (for a Gaussian-identity fit
        the response residuals y - fitted), a pandas Series indexed by input row."""
        import pandas as pd

        return pd.Series(np.asarray(self.deviance_residuals, dtype=float),
                         index=pd.Index(np.asarray(self.rows), name="row"), name="resid")

    @property
    def coef(self) -> dict:
        """lme4's ``coef``: per grouping factor a DataFrame (a row per level, a column per fixed effect) of the fixed
        effects plus that level's random effects (the BLUPs) for the terms that vary by it."""
        import pandas as pd

        out: dict = {}
        beta = dict(zip(self.names, np.asarray(self.beta, dtype=float)))
        for r in self.blup_table():
            comp = out.setdefault(r["component"], {})
            comp.setdefault(r["group"], {})[r["term"]] = 0.0 if r["value"] is None else float(r["value"])
        tables = {}
        for comp, levels in out.items():
            rows = {lv: {nm: b + terms.get(nm, 0.0) for nm, b in beta.items()} for lv, terms in levels.items()}
            df = pd.DataFrame.from_dict(rows, orient="index", columns=list(self.names))
            df.index.name = comp
            tables[comp] = df
        return tables

    # -- omnibus tests, marginal means, effects (computed by glmmlab.services.modeling.marginal) -----------------
    @property
    def ranef(self):
        """The BLUPs (conditional modes) in long form: a pandas DataFrame with columns component, group, term,
        value and std_error, one row per grouping level and term."""
        import pandas as pd

        cols = ["component", "group", "term", "value", "std_error"]
        rows = self.blup_table()
        df = pd.DataFrame({c: [r[c] for r in rows] for c in cols}, columns=cols)
        return df.astype({"value": float, "std_error": float})

    @property
    def varcorr(self):
        """The random-effects variances: a pandas DataFrame with columns component, term, variance and std_dev
        (the residual row has component "Residual" and term None). Correlations are in :attr:`re_correlations`."""
        import pandas as pd

        cols = ["component", "term", "variance", "std_dev"]
        rows = self.random_effects_table()
        df = pd.DataFrame({c: [r[c] for r in rows] for c in cols}, columns=cols)
        return df.astype({"variance": float, "std_dev": float})

    @property
    def re_correlations(self):
        """The correlations between random terms of one grouping factor: a pandas DataFrame with columns
        component, term1, term2 and correlation (no rows when the model has no correlated terms)."""
        import pandas as pd

        cols = ["component", "term1", "term2", "correlation"]
        rows = self.correlations or []
        df = pd.DataFrame({c: [r[c] for r in rows] for c in cols}, columns=cols)
        return df.astype({"correlation": float})

    @property
    def covstruct(self):
        """Each random-effects term's covariance structure: a pandas DataFrame with columns component, term,
        structure, dim, sd (a list: every column's SD), rho (None; a number for cs, ar1 and ou; a list by lag for
        toep), cov and corr (the implied matrices as numpy arrays); the JSON document's ``covariance_structures``."""
        import pandas as pd

        cols = ["component", "term", "structure", "dim", "sd", "rho", "cov", "corr"]
        rows = self.structures or []
        return pd.DataFrame({c: [np.array(r[c], dtype=float) if c in ("cov", "corr") else r[c] for r in rows]
                             for c in cols}, columns=cols)
