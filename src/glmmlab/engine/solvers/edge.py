"""Starting values inside the link's range: the distance of the rows' linear predictors from its ends, and a
start for the fixed effects inside it where the GLM's maximum lies on its edge (a Poisson mean of 0 under the
identity link)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link


def edge_gap(eta: np.ndarray, lo: float, hi: float) -> float:
    """The smallest distance of a row's linear predictor from an end of the open range (lo, hi) (inf without
    ends; negative when a row is outside)."""
    gap = np.inf
    if np.isfinite(lo):
        gap = min(gap, float(np.min(eta - lo, initial=np.inf)))
    if np.isfinite(hi):
        gap = min(gap, float(np.min(hi - eta, initial=np.inf)))
    return gap


def inside_start(Xs: np.ndarray, y: np.ndarray, pw: np.ndarray, off: np.ndarray, beta: np.ndarray, fam: Family,
                 lk: Link) -> np.ndarray:
    """A start for the fixed effects inside the link's range. The GLM's maximum can lie on its edge (a Poisson
    mean of 0 under the identity link), where no random effect keeps every mean valid: the start is then moved a
    tenth of the way towards the coefficients whose linear predictor is closest to the constant
    link(mean of y), which lies well inside. Returns ``beta`` when it already keeps a hundredth of that
    distance from the edge."""
    if not fam.has_edge(lk, y):
        return beta
    return inside_start_of(beta, lk, fam.eta_range(lk, y), float(np.average(y, weights=pw)),
                           lambda c: np.linalg.lstsq(Xs, c - off, rcond=None)[0],
                           lambda b, lo, hi: edge_gap(Xs @ b + off, lo, hi))


def inside_start_of(beta: np.ndarray, lk: Link, eta_range: tuple[float, float], mean_y: float,
                    centre_of: Callable[[float], np.ndarray], gap: Callable[[np.ndarray, float, float], float]
                    ) -> np.ndarray:
    """:func:`inside_start` for a model with an edge from the link's range of linear predictors, the weighted
    mean of y, ``centre_of(c)``: the least-squares coefficients of the constant c less the offset, and ``gap(b,
    lo, hi)``: the rows' :func:`edge_gap` at coefficients b (rows that never meet in one place: the Dask path)."""
    lo, hi = eta_range
    with np.errstate(all="ignore"):
        c = float(lk.linkfun(np.array([mean_y]))[0])
    if not np.isfinite(c) or beta.size == 0:
        return beta
    centre = centre_of(c)
    margin = gap(centre, lo, hi)
    if not margin > 0 or gap(beta, lo, hi) >= 0.01 * margin:
        return beta
    return centre + 0.9 * (beta - centre)
