"""glmmlab: generalized linear mixed models in lme4's model language.

Public Python API:

- ``glmm("y ~ x + (1 + x | g)", data, family=..., weights=..., offset=...)``: fit a model of lme4's language.
- ``fit_glmm(data, response, group, fixed=..., family=..., link=..., ...)``: the random-intercept form.
- ``ModelSpec(formula, family=..., ...)`` and ``fit(spec, data)``: the model as one object, fitted.
- ``GlmmResult``: what a fit returns (``.to_dict()`` gives the JSON contract).
- ``GlmmInputError``: raised for bad input, with a message that names the column or option.
"""

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.results import GlmmResult
from glmmlab.engine.spec import ModelSpec
from glmmlab.interfaces.api import fit, fit_glmm, glmm

__all__ = ["fit_glmm", "glmm", "fit", "ModelSpec", "GlmmResult", "GlmmInputError"]
__version__ = "0.1.0"
