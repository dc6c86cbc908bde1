"""The result of a fit: every number the GLMM tab shows, on the original scale of the predictors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.families import FAMILIES, LINKS
from glmmlab.engine.inference import wald


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


@dataclass
class GlmmResult:
    """A fitted random-intercept GLMM.

    Tables are kept as arrays; ``to_dict()`` gives the JSON document of the contract and ``predict`` applies
    the model to new rows.
    """

    model: dict
    method: str
    n_obs: int
    n_groups: int
    n_excluded: int
    converged: bool
    singular: bool
    warnings: list[str]
    names: list[str]
    beta: np.ndarray
    vcov: np.ndarray
    se: np.ndarray
    se_kind: str
    var_group: float
    var_residual: float | None
    icc: float | None
    log_likelihood: float
    log_likelihood_kind: str
    aic: float
    bic: float
    k: int
    group_labels: list[str]
    blup: np.ndarray
    blup_se: np.ndarray
    rows: np.ndarray
    fitted: np.ndarray
    deviance_residuals: np.ndarray
    pearson_residuals: np.ndarray
    row_random_effect: np.ndarray
    fit_seconds: float
    theta: float
    dropped: list[str] = field(default_factory=list)
    glm_comparison: dict | None = None
    optimization: dict | None = None
    se_hessian: np.ndarray | None = None
    # General models (contract version 2). For a random-intercept fit these are derived from the fields above.
    re_rows: list[dict] | None = None  # {"component", "term", "variance"}
    correlations: list[dict] | None = None  # {"component", "term1", "term2", "correlation"}
    groups: dict | None = None  # levels per grouping factor
    blup_rows: list[dict] | None = None  # {"component", "group", "term", "value", "std_error"}
    family_parameter: dict | None = None
    predictor: Any = None  # new data -> (eta without random effects, random-effects contribution); set by services

    # -- derived views -------------------------------------------------------------------------------
    @property
    def component(self) -> str:
        """The grouping factor of a random-intercept fit."""
        return next(iter(self.groups)) if self.groups else self.model["group"]

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

    def blup_rank(self) -> np.ndarray:
        """Rank 1 for the largest random intercept."""
        order = np.argsort(-self.blup, kind="stable")
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(1, len(order) + 1)
        return rank

    def fixed_effects_table(self, conf_level: float | None = None) -> list[dict]:
        lower, upper = self.intervals(conf_level)
        with_exp = exp_label(self.family, self.link) is not None
        table = []
        for k, name in enumerate(self.names):
            z = self.beta[k] / self.se[k] if self.se[k] > 0 else np.nan
            row = {
                "variable": name, "estimate": _num(self.beta[k]), "std_error": _num(self.se[k]),
                "statistic": _num(z), "p_value": _num(2.0 * special.ndtr(-abs(z))) if np.isfinite(z) else None,
                "lower": _num(lower[k]), "upper": _num(upper[k]),
            }
            if with_exp:
                with np.errstate(over="ignore"):
                    row.update({
                        "exp_estimate": _num(np.exp(self.beta[k])),
                        "exp_lower": _num(np.exp(lower[k])), "exp_upper": _num(np.exp(upper[k])),
                    })
            table.append(row)
        return table

    def random_effects_table(self) -> list[dict]:
        if self.re_rows is not None:
            rows = [{"component": r["component"], "term": r["term"], "variance": _num(r["variance"]),
                     "std_dev": _num(np.sqrt(max(r["variance"], 0.0)))} for r in self.re_rows]
        else:
            rows = [{"component": self.component, "term": "(Intercept)", "variance": _num(self.var_group),
                     "std_dev": _num(np.sqrt(max(self.var_group, 0.0)))}]
        if self.var_residual is not None:
            rows.append({"component": "Residual", "term": None, "variance": _num(self.var_residual),
                         "std_dev": _num(np.sqrt(self.var_residual))})
        return rows

    def random_intercepts_for(self, groups: np.ndarray) -> np.ndarray:
        """Each row's predicted random intercept; 0 for a group the fit has not seen."""
        labels = group_labels_of(groups)
        known = np.asarray(self.group_labels, dtype=str)
        order = np.argsort(known)
        pos = np.searchsorted(known[order], labels)
        pos = np.minimum(pos, len(known) - 1)
        hit = known[order][pos] == labels
        return np.where(hit, self.blup[order][pos], 0.0)

    def blup_table(self) -> list[dict]:
        if self.blup_rows is not None:
            return long_blups(self.blup_rows)
        rank = self.blup_rank()
        comp = self.component
        return [
            {"component": comp, "group": g, "term": "(Intercept)", "value": _num(v), "random_intercept": _num(v),
             "std_error": _num(s), "rank": int(r)}
            for g, v, s, r in zip(self.group_labels, self.blup, self.blup_se, rank)
        ]

    def groups_table(self) -> dict:
        if self.groups is not None:
            return {k: int(v) for k, v in self.groups.items()}
        return {self.component: int(self.n_groups)}

    def to_dict(self, conf_level: float | None = None) -> dict:
        """The JSON document of the contract (valid JSON: no NaN or infinities)."""
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
            "random_effects": self.random_effects_table(),
            "random_correlations": [dict(c, correlation=_num(c["correlation"])) for c in (self.correlations or [])],
            "groups": self.groups_table(),
            "family_parameter": None if self.family_parameter is None else
            {"name": self.family_parameter["name"], "value": _num(self.family_parameter["value"])},
            "icc": _num(self.icc),
            "fit": {"log_likelihood": _num(self.log_likelihood), "log_likelihood_kind": self.log_likelihood_kind,
                    "aic": _num(self.aic), "bic": _num(self.bic), "k": int(self.k)},
            "blup": self.blup_table(),
            "diagnostics": {
                "row": [int(r) for r in self.rows],
                "fitted_values": _nums(self.fitted),
                "deviance_residuals": _nums(self.deviance_residuals),
                "pearson_residuals": _nums(self.pearson_residuals),
                "group_random_effect": _nums(self.row_random_effect),
            },
            "timing": {"fit_seconds": _num(self.fit_seconds)},
            "dropped_fixed_effects": list(self.dropped),
            "std_error_kind": self.se_kind,
            "glm_comparison": self.glm_comparison,
            "optimization": self.optimization,
        }
        if self.se_hessian is not None:
            out["std_error_hessian"] = {n: _num(s) for n, s in zip(self.names, self.se_hessian)}
        return out

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self, new_data: Any, include_random: bool = True, type: str = "response") -> np.ndarray:
        """Predict for new rows (anything indexable by column name: pandas, polars, a dict of arrays).

        ``type`` is "response" (the mean) or "link" (the linear predictor). Groups not seen in the fit, or
        ``include_random=False``, get the population-level prediction (random intercept 0).
        """
        if type not in ("response", "link"):
            raise ValueError("type must be 'response' or 'link'")
        if self.predictor is not None:  # a general model: the services layer rebuilds its design for new rows
            eta_fixed, random_part = self.predictor(new_data)
            eta = eta_fixed + random_part if include_random else eta_fixed
            return eta if type == "link" else LINKS[self.link].linkinv(eta)
        n_rows = None
        eta = 0.0
        for name, b in zip(self.names, self.beta):
            if name == "(Intercept)":
                eta = eta + b
                continue
            col = np.asarray(new_data[name], dtype=float)
            n_rows = col.shape[0]
            eta = eta + b * col
        groups = np.asarray(new_data[self.model["group"]]) if include_random else None
        if n_rows is None:
            n_rows = len(groups) if groups is not None else len(next(iter(new_data.values())))
        eta = np.broadcast_to(np.asarray(eta, dtype=float), (n_rows,)).copy()
        if include_random:
            eta += self.random_intercepts_for(groups)
        if type == "link":
            return eta
        return LINKS[self.link].linkinv(eta)


def long_blups(rows: list[dict]) -> list[dict]:
    """BLUP rows in long form with rank 1 for the largest value within each component and term."""
    keys: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        keys.setdefault((r["component"], r["term"]), []).append(i)
    rank = np.zeros(len(rows), dtype=int)
    for idx in keys.values():
        vals = np.array([rows[i]["value"] for i in idx], dtype=float)
        order = np.argsort(-vals, kind="stable")
        for r, k in enumerate(order):
            rank[idx[k]] = r + 1
    out = []
    for i, r in enumerate(rows):
        row = {"component": r["component"], "group": r["group"], "term": r["term"], "value": _num(r["value"])}
        if r["term"] == "(Intercept)":
            row["random_intercept"] = _num(r["value"])
        row["std_error"] = _num(r["std_error"])
        row["rank"] = int(rank[i])
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
