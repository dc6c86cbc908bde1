"""The Dask front door: a model fitted to a Dask DataFrame (or a Parquet file or directory read lazily) by the general
engine's row blocks as actors on the workers (:mod:`glmmlab.services.distributed.dask_fit`), returned as the same
fitted model an in-memory fit gives (:class:`glmmlab.services.modeling.fitted.FittedModel`)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import resolve
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.modelled import HURDLE_BASE
from glmmlab.engine.model.spec import ModelSpec
from glmmlab.engine.progress import ProgressFn
from glmmlab.services.modeling import frames
from glmmlab.services.modeling.fitted import FittedModel


def fit_spec_dask(data: Any, spec: ModelSpec, **kwargs: Any) -> FittedModel:
    """A :class:`ModelSpec` on a Dask DataFrame, as :func:`glmmlab.services.modeling.fitted.fit_spec` fits it in
    memory (``kwargs``: ``progress``, ``client``, ``scheduler``); see :func:`_spec_dask`."""
    return _spec_dask(data, spec, **kwargs)


def fit_columns_dask(data: Any, response: str, group: str, fixed: Optional[Sequence[str]] = None,
                     **kwargs: Any) -> FittedModel:
    """The random-intercept form over numeric columns on a Dask DataFrame, as
    :func:`glmmlab.services.modeling.fitted.fit_columns` fits it in memory; see :func:`_columns_dask`."""
    return _columns_dask(data, response, group, fixed, **kwargs)


DASK_OPTIONS = ("conf_level", "max_iter", "tol", "nagq", "se", "dispersion")  # the fit options of the Dask paths


def _columns_dask(data: Any, response: str, group: str, fixed: Optional[Sequence[str]] = None, *,
                     intercept: bool = True, family: str = "gaussian", link: Optional[str] = None,
                     progress: ProgressFn = None, client: Any = None, scheduler: Optional[str] = None,
                     **options: Any) -> FittedModel:
    """The random-intercept form ``response ~ fixed + (1 | group)`` over numeric columns on a Dask DataFrame
    (``options``: :data:`DASK_OPTIONS`), as :func:`fit_columns` fits it in memory:
    :func:`glmmlab.services.distributed.dask_fit.fit_columns_on_dask`."""
    fixed = list(fixed or [])
    frames.check_columns(data.columns, None, response, group, fixed)
    _dask_options(options)
    _dask_family(resolve(family, link)[0])
    from glmmlab.services.distributed.dask_fit import fit_columns_on_dask  # scale-out path, imported when used

    return fit_columns_on_dask(data, response, group, fixed, intercept=intercept, family=family, link=link,
                               progress=progress, client=client, scheduler=scheduler, **options)


def _spec_dask(data: Any, spec: ModelSpec, *, progress: ProgressFn = None, client: Any = None,
                  scheduler: Optional[str] = None) -> FittedModel:
    """A :class:`ModelSpec` on a Dask DataFrame, as :func:`fit_spec` fits it in memory:
    :func:`glmmlab.services.distributed.dask_fit.fit_formula_dask` (models whose grouping factors nest; others are
    refused there with the reason). Maximum likelihood, Satterthwaite's df and reference levels need a fit in
    memory (the caller refuses them with its own words; here they are refused too)."""
    fam, lk = spec.check()
    _dask_family(fam)
    if spec.zi is not None or spec.disp is not None:
        raise GlmmInputError("zero-inflation (zi) and dispersion (disp) models are fitted in memory; fit a pandas, "
                             "polars or Arrow table, or leave out zi and disp")
    if spec.reference_levels or spec.reml is not True or spec.ddf not in ("none", "auto"):
        raise GlmmInputError("reference_levels, reml=False and ddf='satterthwaite' need a fit in memory (a pandas, "
                             "polars or Arrow table)")
    structured = [r.written for r in spec.parsed.random if r.structure not in ("", "us")]
    if structured:
        raise GlmmInputError(f"the covariance structure of {structured[0]} is not available on a Dask DataFrame yet; "
                             "fit it in memory (a pandas, polars or Arrow table)")
    options = {k: getattr(spec, k) for k in DASK_OPTIONS}
    from glmmlab.services.distributed.dask_fit import fit_formula_dask  # scale-out path, imported when used

    return fit_formula_dask(data, spec.parsed, family=fam.name, link=lk.name, weights=spec.weights,
                            offset=spec.offset, progress=progress, client=client, scheduler=scheduler, **options)


def fit_parquet_on_dask(path: str, *, scheduler: Optional[str] = None, response: str, group: str,
                        fixed: Optional[Sequence[str]] = None, progress: ProgressFn = None,
                        **options: Any) -> FittedModel:
    """``glmmlab fit DATA.parquet --engine dask [--scheduler ADDRESS]``: read the Parquet file or directory
    lazily (only the model's columns) and fit the random-intercept form on the cluster (:func:`fit_columns_dask`)."""
    from glmmlab.services.distributed.cluster import dask_client
    from glmmlab.services.distributed.dask_fit import read_parquet_lazily

    ddf = read_parquet_lazily(path, list(dict.fromkeys([response, group] + list(fixed or []))))
    with dask_client(scheduler) as client:
        return fit_columns_dask(ddf, response, group, fixed, client=client, progress=progress, **options)


def _dask_family(fam: Family) -> None:
    """glmmTMB's families (parameters of their own besides the negative binomial's theta), the hurdle families and
    the ordinal family are fitted in memory."""
    if (fam.parameter_names and fam.name != "negbin") or fam.name in HURDLE_BASE or fam.name == "ordinal":
        raise GlmmInputError(f"the {fam.name} family is not available on a Dask DataFrame yet; fit it in memory (a "
                             "pandas, polars or Arrow table)")


def _dask_options(options: dict) -> None:
    extra = sorted(set(options) - set(DASK_OPTIONS))
    if extra:
        raise GlmmInputError(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not available on a Dask "
                             "DataFrame; fit in memory (a pandas, polars or Arrow table)")
