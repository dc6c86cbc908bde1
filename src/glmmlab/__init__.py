"""glmmlab: random-intercept generalized linear mixed models.

Public Python API:

- ``fit_glmm(data, response, group, fixed=..., family=..., link=..., ...)``: fit a model from a DataFrame.
- ``glmm("y ~ x1 + x2 + (1 | g)", data, family=...)``: the same fit from an lme4-style formula.
- ``GlmmResult``: what a fit returns (``.to_dict()`` gives the JSON contract).
- ``GlmmInputError``: raised for bad input, with a message that names the column or option.
"""

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.results import GlmmResult
from glmmlab.interfaces.api import fit_glmm, glmm

__all__ = ["fit_glmm", "glmm", "GlmmResult", "GlmmInputError"]
__version__ = "0.1.0"
