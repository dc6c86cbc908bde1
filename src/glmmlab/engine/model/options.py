"""The options of a fit, declared once as data: name, kind, default, the rule and how to say it.

Every front door takes its defaults, limits and messages from :data:`OPTIONS`: the Python API (through
:func:`check_options`), the command line (its flags, defaults and help) and the web form (its limits and labels).
A message always names the option and the rule, e.g. ``nagq must be an integer from 1 to 50; got 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import ALIASES, FAMILIES, resolve
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import LINKS, Link

MAX_NAGQ = 50


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` is "int", "float", "choice", "bool" or "column"; ``low``/``high`` bound numbers
    (``open`` makes the bounds exclusive); ``choices`` lists the allowed words."""

    name: str
    kind: str
    default: Any
    label: str  # the form's label (the product page's words)
    help: str
    low: float | None = None
    high: float | None = None
    open: bool = False
    choices: tuple[str, ...] = ()
    rule_text: str | None = None  # the rule in words, where the generic one would say less
    aliases: dict[str, str] = field(default_factory=dict, compare=False)  # other spellings of choices (glmmTMB's)
    examples_bad: tuple = field(default=(), compare=False)  # values the generic bad-input test feeds

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def rule(self) -> str:
        if self.rule_text:
            return self.rule_text
        if self.kind == "choice":
            also = f" (also {', '.join(self.aliases)})" if self.aliases else ""
            return f"one of {', '.join(self.choices)}{also}"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "int":
            return f"an integer from {self.low:g} to {self.high:g}" if self.high is not None else \
                f"an integer >= {self.low:g}"
        if self.kind == "float":
            return (f"a number between {self.low:g} and {self.high:g}" + (" (exclusive)" if self.open else ""))
        return "a column of the data"

    def check(self, value: Any) -> Any:
        """The value if it keeps the rule, else a GlmmInputError naming the option and the rule."""
        if self.kind == "choice":
            key = str(value).strip().lower() if value is not None else ""
            key = self.aliases.get(key, key)
            if key not in self.choices:
                raise GlmmInputError(f"{self.name} must be {self.rule()}; got {value!r}")
            return key
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise GlmmInputError(f"{self.name} must be {self.rule()}; got {value!r}")
            return bool(value)
        if self.kind == "int":
            assert self.low is not None  # an integer option has a lower bound
            ok = not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= self.low \
                and (self.high is None or value <= self.high)
            if not ok:
                raise GlmmInputError(f"{self.name} must be {self.rule()}; got {value!r}")
            return int(value)
        if self.kind == "float":
            ok = not isinstance(value, bool) and isinstance(value, (int, float, np.floating)) \
                and np.isfinite(value)
            if ok:
                assert self.low is not None and self.high is not None  # a number option has both bounds
                v = float(value)
                ok = (self.low < v < self.high) if self.open else (self.low <= v <= self.high)
            if not ok:
                hint = ""
                if self.name == "conf_level" and isinstance(value, (int, float)) and 50 <= value <= 99.99:
                    hint = f" (for {value}% use {float(value) / 100:g})"
                raise GlmmInputError(f"{self.name} must be {self.rule()}; got {value!r}{hint}")
            return float(value)
        return value


OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option("family", "choice", "gaussian", "Distribution Family", "the distribution of the response",
           choices=tuple(FAMILIES), aliases=dict(ALIASES), examples_bad=("quasipoisson", "")),
    Option("link", "choice", None, "Link Function", "the link (default: the family's canonical link)",
           choices=tuple(LINKS), examples_bad=("cauchit",)),
    Option("conf_level", "float", 0.95, "Confidence Level", "the level of the Wald intervals",
           low=0.5, high=0.9999, rule_text="between 0.5 and 0.9999 (50% to 99.99%)",
           examples_bad=(0.3, 1.0, 95, float("nan"), "high")),
    Option("max_iter", "int", 100, "Max Iterations", "the optimiser's iteration limit", low=1, high=100_000,
           examples_bad=(0, -5, 2.5, True, 100_001)),
    Option("tol", "float", 1e-6, "Convergence Tolerance", "the optimiser's gradient tolerance",
           low=0.0, high=1.0, open=True, rule_text="a number between 0 and 1 (e.g. 1e-6)",
           examples_bad=(0, -1, 1.0, float("inf"))),
    Option("nagq", "int", 1, "Quadrature Points (nAGQ)",
           "1 = Laplace approximation; > 1 = adaptive Gauss-Hermite quadrature with that many nodes",
           low=1, high=MAX_NAGQ, examples_bad=(0, MAX_NAGQ + 1, 1.5)),
    Option("se", "choice", "working", "Standard Errors",
           "working: from the working weights at convergence; hessian: also from the Hessian",
           choices=("working", "hessian"), rule_text="'working' or 'hessian'", examples_bad=("sandwich",)),
    # Gaussian + identity only: restricted (REML, lme4's default) or full maximum likelihood (lmer's REML = FALSE);
    # every other family is fitted by maximum likelihood (Laplace or AGQ) whatever this says.
    Option("reml", "bool", True, "REML", "Gaussian + identity: true = REML (default), false = maximum likelihood "
           "(lmer's REML = FALSE); other families always use maximum likelihood", examples_bad=("yes", 1, None)),
    # Gaussian + identity only: the denominator degrees of freedom of the fixed-effect tests
    # "auto" (the default): satterthwaite for Gaussian + identity fits in memory (lmerTest's convention), none otherwise
    Option("ddf", "choice", "auto", "Degrees of Freedom",
           "auto = satterthwaite for Gaussian + identity (lmerTest's convention; default), none for other models; "
           "satterthwaite = t tests with Satterthwaite's degrees of freedom (Gaussian + identity); none = the "
           "Wald statistic without df, p from the normal distribution",
           choices=("none", "satterthwaite", "auto"), examples_bad=("kenward-roger",)),
    # Gamma, and Gaussian with a log or inverse link: the likelihood that is maximised
    Option("dispersion", "choice", "estimated", "Dispersion",
           "Gamma and Gaussian with a log or inverse link: estimated = the dispersion is a parameter estimated "
           "with the others (the model's Laplace likelihood, as glmmTMB fits it; default); lme4 = glmer's "
           "criterion, which plugs deviance / n into the density (to reproduce a published lme4 analysis)",
           choices=("estimated", "lme4"), rule_text="'estimated' or 'lme4'", examples_bad=("profiled",)),
    # tweedie only: the power p of Var = phi mu^p held at a value instead of estimated (glmmTMB estimates it; its
    # users fix it through start and map)
    Option("tweedie_power", "float", None, "Tweedie Power",
           "tweedie: hold the power p of Var = phi mu^p at this value instead of estimating it (default: estimated)",
           low=1.0, high=2.0, open=True, examples_bad=(1.0, 2.0, 2.5, 0.5, float("nan"), "1.5x")),
]}

# The options of a fitted model's confidence intervals (result.conf_int, the command line's --ci/--nsim/--seed,
# Model Detail's interval choice): the method, the bootstrap's size and its seed.
INTERVAL_OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option("ci", "choice", "wald", "Interval Method",
           "wald: fixed effects, estimate -/+ z SE; profile: likelihood profile (lme4's confint method='profile'), "
           "also the random-effect SDs and correlations and sigma; boot: parametric bootstrap percentile "
           "intervals (lme4's method='boot')",
           choices=("wald", "profile", "boot"), rule_text="'wald', 'profile' or 'boot'", examples_bad=("bca",)),
    Option("nsim", "int", 1000, "Bootstrap Samples", "the number of bootstrap samples (ci boot)", low=10,
           high=100_000, examples_bad=(0, 9, 2.5, True, 100_001)),
    Option("seed", "int", None, "Random Seed", "the bootstrap's random seed (ci boot); the same seed gives the "
           "same intervals whatever the number of processes", low=0, high=2**63 - 1,
           rule_text="an integer >= 0", examples_bad=(-1, 1.5, "x")),
]}


def resolve_ddf(ddf: str, family: str, link: str) -> str:
    """The tests a fit gets: "satterthwaite" or "none"; "auto" is satterthwaite for Gaussian + identity."""
    key = str(ddf).strip().lower()
    if key == "auto":
        return "satterthwaite" if (family, link) == ("gaussian", "identity") else "none"
    return key


def nondefault_options(reml: bool, ddf: str, dispersion: str = "estimated",
                       tweedie_power: float | None = None) -> dict:
    """The "model" keys of options the contract's document does not list (so a default fit's document keeps
    exactly the contract's keys): ``"reml": false`` for a maximum-likelihood fit, ``"ddf": "satterthwaite"``,
    ``"tweedie_power"`` where the power was given."""
    out: dict = {}
    if reml is False:
        out["reml"] = False
    key = str(ddf).strip().lower()
    if key not in ("none", "auto"):  # "auto" is resolved by the caller, which knows the family and link
        out["ddf"] = key
    if str(dispersion).strip().lower() == "lme4":
        out["dispersion"] = "lme4"
    if tweedie_power is not None:
        out["tweedie_power"] = float(tweedie_power)
    return out


def check_options(family: str, link: str | None, conf_level: float, max_iter: int, tol: float, nagq: int,
                  se: str, reml: bool = True, ddf: str = "auto", dispersion: str = "estimated",
                  tweedie_power: float | None = None) -> tuple[Family, Link]:
    """Check every option against :data:`OPTIONS` and the rules that join them; (family, link) objects."""
    fam, lk = resolve(family, link)  # its messages name the family or link and list the choices
    for name, value in (("conf_level", conf_level), ("max_iter", max_iter), ("tol", tol), ("nagq", nagq),
                        ("se", se), ("reml", reml), ("ddf", ddf), ("dispersion", dispersion)):
        OPTIONS[name].check(value)
    if tweedie_power is not None:
        OPTIONS["tweedie_power"].check(tweedie_power)
        if fam.name != "tweedie":
            raise GlmmInputError(f"tweedie_power is for the tweedie family; this model is {fam.name}: leave it out")
    if OPTIONS["ddf"].check(ddf) == "satterthwaite" and not (fam.name == "gaussian" and lk.name == "identity"):
        raise GlmmInputError(
            f"ddf {ddf!r} (Satterthwaite's t tests) is for linear mixed models, the gaussian family with the "
            f"identity link; this model is {fam.name} with the {lk.name} link, whose tests are Wald z tests: "
            "leave ddf at 'none'")
    if nagq > 1 and fam.hessian_se:
        raise GlmmInputError(
            f"nagq > 1 (adaptive Gauss-Hermite quadrature) is not available for the {fam.name} family: it is "
            "fitted by the Laplace approximation, as glmmTMB fits it; use nagq 1")
    if nagq > 1 and fam.name == "gaussian" and lk.name == "identity":
        raise GlmmInputError(
            "nagq > 1 (adaptive Gauss-Hermite quadrature) is for the binomial, poisson, gamma and negbin "
            "families and the gaussian family with a log or inverse link; use nagq 1 with the gaussian family "
            "and the identity link (its likelihood is exact)"
        )
    return fam, lk
