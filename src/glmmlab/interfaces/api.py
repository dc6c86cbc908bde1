"""The Python API: a DataFrame in (pandas, polars, Arrow, or a dict of columns), a GlmmResult out.

Input is checked here, once, with messages that name the column or option; the engine then works on clean
float arrays.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.fit import fit_arrays
from glmmlab.engine.results import GlmmResult, group_labels_of
from glmmlab.interfaces.formula import parse_formula


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


def _numeric_column(df: pd.DataFrame, name: str, role: str) -> np.ndarray:
    col = df[name]
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=float, na_value=np.nan)
    converted = pd.to_numeric(col, errors="coerce")
    present = col.notna()
    if present.any() and converted[present].isna().all():
        example = col[present].iloc[0]
        raise GlmmInputError(
            f"{role} column '{name}' is not numeric (e.g. value {str(example)!r}); "
            "choose a numeric column, or convert a categorical one with Dummy Coding first"
        )
    return converted.to_numpy(dtype=float, na_value=np.nan)


def _group_codes(df: pd.DataFrame, name: str) -> tuple[np.ndarray, list[str]]:
    """Integer codes (-1 where missing) into the sorted group labels; O(n) hashing, only the labels sorted."""
    col = df[name]
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if numeric:
        col = col.astype(float).where(np.isfinite(col.astype(float)))
    codes, uniques = pd.factorize(col, sort=False, use_na_sentinel=True)
    uniques = np.asarray(uniques)
    if uniques.size == 0:
        return codes.astype(np.int64), []
    order = np.argsort(uniques.astype(float) if numeric else group_labels_of(uniques), kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
    labels = [str(v) for v in group_labels_of(uniques[order])]
    return codes, labels


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
        from glmmlab.interfaces.distributed import fit_dask  # scale-out path, imported only when used

        return fit_dask(data, response=response, group=group, fixed=fixed, family=family, link=link,
                        intercept=intercept, conf_level=conf_level, max_iter=max_iter, tol=tol, nagq=nagq,
                        se=se, progress=progress)
    df = to_pandas(data)
    fixed = list(fixed or [])
    _check_columns(df, response, group, fixed)
    y = _numeric_column(df, response, "response")
    X = [_numeric_column(df, f, "fixed-effect") for f in fixed]  # columns, not a stacked copy
    codes, levels = _group_codes(df, group)
    return fit_arrays(
        y, X, fixed, codes, levels, response=response, group_name=group, family=family, link=link,
        intercept=intercept, conf_level=conf_level, max_iter=max_iter, tol=tol, nagq=nagq, se=se,
        progress=progress, n_blocks=n_blocks,
    )


def _check_columns(df: pd.DataFrame, response: str, group: str, fixed: Iterable[str]) -> None:
    available = [str(c) for c in df.columns]
    shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
    for role, name in [("response", response), ("group", group)] + [("fixed-effect", f) for f in fixed]:
        if not isinstance(name, str) or name not in df.columns:
            raise GlmmInputError(f"{role} column {name!r} is not in the data; available columns: {shown}")
    fixed = list(fixed)
    if len(set(fixed)) != len(fixed):
        dup = next(f for f in fixed if fixed.count(f) > 1)
        raise GlmmInputError(f"fixed effect '{dup}' is listed twice; list each column once")
    if response in fixed:
        raise GlmmInputError(f"'{response}' is the response and cannot also be a fixed effect")
    if group == response or group in fixed:
        raise GlmmInputError(
            f"'{group}' is the group variable and cannot also be the response or a fixed effect"
        )
    if len(df) == 0:
        raise GlmmInputError("the data have no rows")


def glmm(formula: str, data: Any, *, family: str = "gaussian", link: Optional[str] = None, **options: Any) -> GlmmResult:
    """Fit from an lme4-style formula, e.g. ``glmm("y ~ x1 + x2 + (1 | g)", data, family="binomial")``.

    Supported: a response, ``+``-separated column names, ``0 +`` or ``- 1`` to drop the intercept, and exactly
    one random-intercept term ``(1 | group)``.
    """
    spec = parse_formula(formula)
    return fit_glmm(data, spec.response, spec.group, spec.fixed, family=family, link=link,
                    intercept=spec.intercept, **options)
