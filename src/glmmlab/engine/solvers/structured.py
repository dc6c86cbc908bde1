"""The chain rule from Lambda's entries to a structured term's parameters, in one place.

The Laplace deviance's exact gradient (:mod:`glmmlab.engine.solvers.laplace`) is computed in the free entries of
every factor block's Lambda (:meth:`~glmmlab.engine.model.terms.FactorBlock.entry_positions`: per sub-block its
lower triangle). For an unstructured sub-block these entries are theta itself; for a structured one
(:mod:`glmmlab.engine.model.covstruct`: ``cs``, ``ar1``, ``toep``, ``ou``) theta is the structure's parameters phi
and dD/dphi_k = sum over the entries of dD/dLambda_rc dLambda_rc/dphi_k. :func:`to_theta` applies that to a gradient
over (entries, beta) and returns one over (theta, beta); every other part of the engine sees theta alone.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from glmmlab.engine.model.terms import FactorBlock


def n_entries(blocks: list[FactorBlock]) -> int:
    """The number of free entries of Lambda over every block (the length of the gradient's theta part before
    :func:`to_theta`)."""
    return sum(len(b.entry_positions()) for b in blocks)


def block_to_theta(b: FactorBlock, theta_b: np.ndarray, g_entries: np.ndarray) -> np.ndarray:
    """One block's gradient over its entries (in :meth:`FactorBlock.entry_positions` order) as one over its theta."""
    if not b.structured:
        return g_entries
    out = np.empty(b.n_theta)
    e = 0
    structs = b.structures or [None] * len(b.groups)
    for g, s, sl in zip(b.groups, structs, b.theta_spans()):
        m = len(g) * (len(g) + 1) // 2
        ge = g_entries[e: e + m]
        if s is None:
            out[sl] = ge
        else:
            # the sub-block's entries in entry_positions order: column by column, rows from the diagonal down
            cols, rows = _lower_order(len(g))
            _, dlams = s.factor_and_jacobian(np.asarray(theta_b[sl], dtype=float))
            out[sl] = np.stack(dlams)[:, rows, cols] @ ge  # one entry's dot per parameter
        e += m
    return out


@lru_cache(maxsize=64)
def _lower_order(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, rows) of a q x q lower triangle column by column, rows from the diagonal down."""
    return np.triu_indices(q)


def matrix_to_theta(b: FactorBlock, theta_b: np.ndarray, G: np.ndarray) -> np.ndarray:
    """One block's gradient given as a q x q matrix over every entry of its Lambda (dD/dLambda_rc, of which only
    the sub-blocks' lower triangles count) as one over its theta: a structured sub-block's parameters by the
    contraction of G with each dLambda/dphi_k, an unstructured one's entries read off in theta's order."""
    out = np.empty(b.n_theta)
    structs = b.structures or [None] * len(b.groups)
    for g, s, sl in zip(b.groups, structs, b.theta_spans()):
        Gs = G[np.ix_(g, g)]
        if s is None:
            cols, rows = _lower_order(len(g))
            out[sl] = Gs[rows, cols]
        else:
            _, dlams = s.factor_and_jacobian(np.asarray(theta_b[sl], dtype=float))
            out[sl] = np.tensordot(np.asarray(dlams), Gs, axes=2)
    return out


def to_theta(blocks: list[FactorBlock], theta: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A gradient over (Lambda's free entries of every block, beta ...) as one over (theta, beta ...)."""
    if not any(b.structured for b in blocks):
        return grad
    parts, e, t = [], 0, 0
    for b in blocks:
        ne = len(b.entry_positions())
        parts.append(block_to_theta(b, theta[t: t + b.n_theta], grad[e: e + ne]))
        e += ne
        t += b.n_theta
    return np.concatenate([*parts, grad[e:]])
