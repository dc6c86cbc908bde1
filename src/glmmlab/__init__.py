"""glmmlab: generalized linear mixed models in lme4's model language.

Public Python API:

- ``glmm("y ~ x + (1 + x | g)", data, family=..., link=..., weights=..., offset=...)``: **the entry point**: fit a
  model of lme4's language and get a ``GlmmResult``.
- ``fit_glmm(data, response, group, fixed=..., family=..., link=..., ...)``: the column form of the same fit (the
  random-intercept model ``response ~ fixed + (1 | group)``, named by columns).
- ``ModelSpec(formula, family=..., ...)`` and ``fit(spec, data)``: the spec form: the model as one object, fitted.
- ``GlmmResult``: what a fit returns (``.to_dict()`` gives the JSON contract, ``.summary()`` lme4-like text,
  ``.params``, ``.fixef`` (a dict by model part: cond, zi, disp), ``.bse``, ``.pvalues``, ``.conf_int()``,
  ``.vcov``/``.cov_params()``, ``.llf``, ``.nobs``, ``.fittedvalues``, ``.resid``, ``.sigma``, ``.coef``,
  ``.ranef``, ``.varcorr`` as pandas objects;
  ``.anova()`` the omnibus test of each fixed-effect term, ``.emmeans(term, by=...)``, ``.pairs(term,
  adjust=...)`` and ``.effects(term)`` marginal means, pairwise comparisons and effect-plot data).
- ``anova(m1, m2, ...)``: lme4's likelihood-ratio comparison of nested models (a pandas DataFrame; rows named by
  keyword or after the models' formulas).
- ``GlmmInputError``: raised for bad input, with a message that names the column or option.
- ``FitCancelled``: raised inside a fit when its ``progress`` callback asks to stop.

The names that need numpy, scipy and pandas are imported on first use (module ``__getattr__``), so that
``import glmmlab`` and the command line's ``--help`` start without them.
"""

from __future__ import annotations

from typing import Any

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.progress import FitCancelled

__all__ = ["fit_glmm", "glmm", "fit", "anova", "ModelSpec", "GlmmResult", "GlmmInputError", "FitCancelled"]
__version__ = "0.1.0"

_LAZY = {
    "fit_glmm": "glmmlab.interfaces.api",
    "glmm": "glmmlab.interfaces.api",
    "fit": "glmmlab.interfaces.api",
    "anova": "glmmlab.interfaces.api",
    "ModelSpec": "glmmlab.engine.model.spec",
    "GlmmResult": "glmmlab.engine.inference.results",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'glmmlab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
