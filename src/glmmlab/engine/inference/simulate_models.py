"""From a fit to the :class:`~glmmlab.engine.inference.simulate.RowInputs` its simulations are drawn from: the
family member at the estimates, the mean's linear predictor with its random effects, and, for glmmTMB's model
classes, the zero model (zero-inflation or a hurdle's zero part, with its own random effects) and a dispersion
per row (a dispersion model).

A zero-inflated, hurdle or dispersion model is fitted as a ``ModelledFamily`` (engine.families.modelled); the
simulations use its base family's sampler instead: the base member at the constant parameters (or one dispersion
per row), the zero model's probability of a zero (:class:`LinearPart` on the logit scale) and, for a hurdle's count
part, draws truncated at zero. The dispersion model's values are read from the fit's per-row ``dispersion``
(glmmTMB's ``sigma`` scale: the Gaussian's SD, 1 / sqrt(shape) for the Gamma, theta or phi for the others).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.inference.intervals import VarianceLayout
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.inference.simulate import LinearPart, RandomPart, RowInputs
from glmmlab.engine.model.terms import ModelFrame, RandomTerm, merge_terms

# glmmTMB's hurdle families and the base family of their positive part
HURDLE_BASE = {"truncated_poisson": "poisson", "truncated_nbinom2": "negbin", "truncated_nbinom1": "nbinom1",
               "ziGamma": "gamma"}


def row_inputs(result: GlmmResult, frame: ModelFrame) -> RowInputs:
    """The :class:`RowInputs` of a fit made on ``frame`` (its rows in the order of ``frame``)."""
    extras = {k: _per_frame_row(result, frame, np.asarray(v, dtype=float))
              for k, v in (result.row_extras or {}).items()}
    base_key = HURDLE_BASE.get(result.family, result.family)
    fam = FAMILIES[base_key]
    if result.ordinal is not None:  # an ordinal fit: the member of its categories, link and thresholds
        from glmmlab.engine.families.ordinal import OrdinalFamily

        assert isinstance(fam, OrdinalFamily)
        fam = fam.for_levels(result.ordinal.levels, result.ordinal.link).with_parameters(result.ordinal.thresholds)
    params = result.family_params
    modelled = bool(result.model.get("zi") or result.model.get("disp") or result.family in HURDLE_BASE)
    phi: float | np.ndarray = 1.0
    if "dispersion" in extras:  # a dispersion model: the family's dispersion parameter per row
        fam, phi = _per_row_dispersion(fam, extras["dispersion"], params)
    elif fam.parameter_names and params:
        fam = fam.with_parameters(tuple(float(params[nm]) for nm in fam.parameter_names))
    elif modelled and base_key == "gaussian" and "sigma" in params:
        phi = float(params["sigma"]) ** 2
    elif modelled and base_key == "gamma" and "shape" in params:
        phi = 1.0 / float(params["shape"])
    elif fam.has_dispersion and result.var_residual is not None:
        phi = float(result.var_residual)
    # an ordinal model has no mean: its sampler takes the linear predictor itself (the identity link hands it on)
    link = LINKS["identity" if result.ordinal is not None else result.link]
    beta = dict(zip(result.names, np.asarray(result.beta, dtype=float)))
    coef = np.array([beta.get(nm, 0.0) for nm in frame.x_names], dtype=float)  # a dropped column counts 0
    eta = np.asarray(frame.X, dtype=float) @ coef
    if frame.offset is not None:
        eta = eta + np.asarray(frame.offset, dtype=float)
    modes = _per_frame_row(result, frame, np.asarray(result.row_random_effect, dtype=float))
    weights = np.ones(frame.n) if frame.weights is None else np.asarray(frame.weights, dtype=float)
    scale = np.maximum(np.rint(weights), 1.0) if fam.name in ("binomial", "betabinomial") and \
        frame.weights is not None else None
    mean = LinearPart(link, eta, modes, random_parts(result, frame.terms, "cond"))
    return RowInputs(fam, mean, weights, phi, _zero_part(result, frame, extras), scale,
                     truncated=result.family in HURDLE_BASE and base_key != "gamma")


def _per_row_dispersion(fam: Family, d: np.ndarray, params: dict) -> tuple[Family, float | np.ndarray]:
    """The member and phi of a dispersion model's per-row values ``d`` (glmmTMB's sigma scale): a member whose
    parameter is a column of one value per row (its sampler broadcasts it against the n x k means)."""
    col: Any = np.asarray(d, dtype=float)[:, None]  # in place of the member's number
    if fam.name == "gaussian":
        return fam, np.asarray(d, dtype=float) ** 2  # the variance, per row
    if fam.name == "gamma":
        return fam, np.asarray(d, dtype=float) ** 2  # phi = 1 / shape = sigma^2
    if fam.name == "negbin":
        return replace(fam, parameter=col, parameters=(col,)), 1.0
    if fam.name == "t_family":
        return replace(fam, parameters=(col, float(params.get("df", fam.parameters[1])))), 1.0
    if fam.name in ("nbinom1", "beta_family", "betabinomial"):
        return replace(fam, parameters=(col,)), 1.0
    raise GlmmInputError(f"simulated residuals of the {fam.name} family with a dispersion model are not available")


def _zero_part(result: GlmmResult, frame: ModelFrame, extras: dict) -> LinearPart | None:
    """The zero model's probability of a zero as a :class:`LinearPart` (logit link), or None without one."""
    sub = (result.submodels or {}).get("zi")
    parts = frame.parts or {}
    if not sub:
        return None
    if parts.get("zi_X") is None:
        raise GlmmInputError("the model frame has no design of the zero model: refit the model on its data")
    coef = dict(zip(sub["names"], np.asarray(sub["estimate"], dtype=float)))
    eta = np.asarray(parts["zi_X"], dtype=float) @ np.array([coef.get(nm, 0.0) for nm in parts["zi_names"]])
    if parts.get("zi_off") is not None:
        eta = eta + np.asarray(parts["zi_off"], dtype=float)
    modes = None
    if "zi_prob" in extras:  # the fitted probabilities hold the zero model's modes: their logit less eta
        p = np.clip(extras["zi_prob"], 1e-300, 1.0 - 1e-16)
        modes = special.logit(p) - eta
    return LinearPart(LINKS["logit"], eta, modes, random_parts(result, parts.get("zi_terms") or [], "zi"))


def _per_frame_row(result: GlmmResult, frame: ModelFrame, values: np.ndarray) -> np.ndarray:
    """A per-row array of the record (rows ``result.rows``) in the order of the frame's rows."""
    rows, frows = np.asarray(result.rows), np.asarray(frame.rows)
    if rows.shape == frows.shape and np.array_equal(rows, frows):
        return values
    order = np.argsort(rows, kind="stable")
    pos = np.searchsorted(rows[order], frows)
    if rows.shape[0] != frows.shape[0] or np.any(rows[order][np.minimum(pos, rows.size - 1)] != frows):
        raise GlmmInputError("the model frame does not hold the fit's rows: refit the model on its data")
    return values[order[pos]]


def random_parts(result: GlmmResult, terms: list[RandomTerm], model: str = "cond") -> tuple[RandomPart, ...]:
    """The random effects of one model part (``"cond"``: the mean's; ``"zi"``: the zero model's) as
    :class:`RandomPart` s: the fit's estimated standard deviations and correlations turned into each factor's
    Cholesky factor."""
    blocks = merge_terms(terms)
    if not blocks:
        return ()
    layout = VarianceLayout.of(blocks)
    rows = [r for r in result.random_effects_table() if r.get("model", "cond") == model]
    cors = [c for c in (result.correlations or []) if c.get("model", "cond") == model]
    theta = layout.theta(np.nan_to_num(layout.values(rows, cors)))  # scale 1: the absolute Cholesky factors
    if theta is None:
        raise GlmmInputError("the fit's random-effect correlations are not a valid correlation matrix, so no "
                             "random effects can be drawn from them: simulate conditional on the fitted modes")
    # the Cholesky factors of each block's covariance (of a covariance structure's too: theta holds entries here)
    return tuple(RandomPart(np.asarray(b.codes, dtype=np.intp), b.Z, L, b.n_levels)
                 for b, L in zip(blocks, layout.factors(theta)))
