"""What a profile-likelihood interval asks of a model (:mod:`glmmlab.engine.solvers.profile`): the deviance with
one parameter held, minimised over the others (:class:`ProfileProblem`, one subclass per kind of model: linear
mixed models in :mod:`~glmmlab.engine.solvers.profile_lmm`, the Laplace deviance in
:mod:`~glmmlab.engine.solvers.profile_laplace`), and what both kinds share: the frame in the fit's row order and
theta's bounds."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.model.terms import FactorBlock, ModelFrame, merge_terms
from glmmlab.engine.solvers.row_blocks import cut_blocks
from glmmlab.engine.solvers.structure import Structure

Bounds = list[tuple[float | None, float | None]]


class ProfileProblem:
    """dev(p) for one parameter held fixed, minimised over the others; subclasses per kind of model."""

    names: list[str]
    estimate: np.ndarray
    kinds: list[str]  # "sd", "cor", "sigma", "beta"
    se: np.ndarray  # an approximate standard error (fixed effects) to size the first step; NaN elsewhere
    base: float
    nvc: int  # the number of variance parameters (they come first)

    def deviance(self, k: int, value: float, start: np.ndarray | None) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def start(self, k: int) -> np.ndarray:
        raise NotImplementedError


def ordered_frame(mf: ModelFrame) -> tuple[ModelFrame, list[FactorBlock]]:
    """The frame with its rows sorted by the leading factor (the fit's order), and its factor blocks."""
    from glmmlab.engine.solvers.fit import _permuted

    blocks = merge_terms(mf.terms)
    perm, _ = cut_blocks(blocks, 1)
    if np.any(perm != np.arange(mf.n)):
        mf = _permuted(mf, perm)
        blocks = merge_terms(mf.terms)
    return mf, blocks


def theta_bounds(st: Structure) -> Bounds:
    return [(None if not np.isfinite(lo) else float(lo), None) for lo in st.theta_lower()]

