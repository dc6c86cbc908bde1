"""The Python API: a DataFrame in (pandas, polars, Arrow, or a dict of columns), a GlmmResult out.

Input is checked here, once, with messages that name the column or option; the engine then works on clean
float arrays.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.fit import fit_prepared, prepare_fit
from glmmlab.engine.results import GlmmResult
from glmmlab.interfaces.formula import parse_formula
from glmmlab.services import frames


def to_pandas(data: Any) -> pd.DataFrame:
    """Accept pandas, polars (eager or lazy), pyarrow Tables or a mapping of columns."""
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__
    if module.startswith("polars"):
        if hasattr(data, "collect"):
            data = data.collect()
        return data.to_pandas()
    if module.startswith("pyarrow"):
        return data.to_pandas()
    if isinstance(data, dict):
        return pd.DataFrame(data)
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    raise GlmmInputError(
        f"data must be a pandas, polars or Arrow table (or a dict of columns); got {type(data).__name__}"
    )


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
    progress: Optional[Callable[[str, float], None]] = None,
    n_blocks: Optional[int] = None,
) -> GlmmResult:
    """Fit a random-intercept GLMM ``g(mu_i) = x_i' beta + u_group`` and return its :class:`GlmmResult`.

    ``family`` is gaussian, binomial, poisson or gamma; ``link`` defaults to the family's canonical link.
    ``nagq`` 1 is the Laplace approximation, > 1 adaptive Gauss-Hermite quadrature (non-Gaussian families).
    ``se`` "working" (default: working weights at PIRLS convergence) or "hessian" (also reports the
    Hessian-based standard errors). ``progress(stage, fraction)`` is called as the fit proceeds.
    ``n_blocks``: how many blocks of whole groups (run in threads) share the work; default one per core
    for large data.
    Rows with a missing, non-numeric or infinite value in any model column are excluded (listwise).
    """
    if type(data).__module__.startswith("dask"):
        from glmmlab.services.distributed import fit_dask  # scale-out path, imported only when used

        return fit_dask(data, response=response, group=group, fixed=fixed, family=family, link=link,
                        intercept=intercept, conf_level=conf_level, max_iter=max_iter, tol=tol, nagq=nagq,
                        se=se, progress=progress)
    df = to_pandas(data)
    fixed = list(fixed or [])
    frames.check_columns(df.columns, len(df), response, group, fixed)
    y = frames.numeric_column(df, response, "response")
    X = [frames.numeric_column(df, f, "fixed-effect") for f in fixed]  # columns, not a stacked copy
    codes, levels = frames.group_codes(df, group)
    prepared = prepare_fit(y, X, fixed, codes, levels, response=response, group_name=group, family=family,
                           link=link, intercept=intercept, conf_level=conf_level, max_iter=max_iter, tol=tol,
                           nagq=nagq, se=se, progress=progress)
    del y, X, codes  # converted copies are freed here: the design holds what the fit needs
    return fit_prepared(prepared, progress=progress, n_blocks=n_blocks)


def glmm(formula: str, data: Any, *, family: str = "gaussian", link: Optional[str] = None, **options: Any) -> GlmmResult:
    """Fit from an lme4-style formula, e.g. ``glmm("y ~ x1 + x2 + (1 | g)", data, family="binomial")``.

    Supported: a response, ``+``-separated column names, ``0 +`` or ``- 1`` to drop the intercept, and exactly
    one random-intercept term ``(1 | group)``.
    """
    spec = parse_formula(formula)
    return fit_glmm(data, spec.response, spec.group, spec.fixed, family=family, link=link,
                    intercept=spec.intercept, **options)
