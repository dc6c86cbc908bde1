"""The coupled block's Schur complement for crossed scalar terms, from products stored once.

For scalar terms Lambda is diagonal (t1 on the leading factor, lam2 per coupled level) and the leading factor's
block is diagonal, so the coupled block's Schur complement is

    S22 - I = Lambda2' (A22 - A21 D A21') Lambda2,   D_j = t1^2 / (t1^2 a_j + 1)  (a_j = Z1' W Z1 at level j)

and every entry of it is a fixed linear combination of the D_j. :class:`CoupledPairs` keeps, for the leading
levels with few coupled entries ("light"), the products A21[a, j] A21[b, j] of each pair of their entries as one
sparse matrix (pairs x distinct a_j); an evaluation is then one sparse matrix-vector product and a scatter. The
leading levels with many entries ("heavy": a user with thousands of ratings has millions of pairs) are kept
instead as a dense panel of their columns of A21, and their part of the sum is one BLAS rank-k update (syrk) of
the panel scaled by sqrt(D_j) and lam2. Which levels are heavy: those whose pairs would cost more than their
column's share of the syrk (:data:`HEAVY_SHARE`), and beyond that as many of the largest as keep the light pairs
under :data:`MAX_COUPLED_PAIRS`.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.linalg import blas

MAX_COUPLED_PAIRS = 10_000_000  # products of coupled entries kept (about 12 bytes each, ~4x that while built)
MAX_PANEL_BYTES = 256 * 2**20  # the heavy levels' dense panel (Q2 x heavy levels doubles) at most
# a leading level is heavy when it has more than HEAVY_SHARE x Q2 coupled entries: its pairs (c^2 / 2, a sparse
# product and a scatter each) then cost more than its Q2^2 / 2 multiply-adds in syrk (measured on MovieLens' shape,
# 3,706 movies: ~2 ns a stored pair against ~0.02 ns a syrk flop)
HEAVY_SHARE = 0.15


class CoupledPairs:
    """The lower triangle of Lambda2' (A22 - A21 D A21') Lambda2 (see the module's docstring): the light leading
    levels' pairs as a sparse matrix M (distinct entries x (distinct a_j + 1), A22 in the last column), merged by
    equal a_j (levels with equal a_j share D_j: InstEval's 2,972 students have 86 distinct numbers of ratings),
    and the heavy levels' columns of A21 as a dense panel."""

    def __init__(self, M: sparse.csc_matrix, a: np.ndarray, keys: np.ndarray, Q2: int,
                 panel: np.ndarray | None = None, panel_a: np.ndarray | None = None):
        self.M, self.a, self.Q2 = M, a, Q2
        self.rows, self.cols = keys // Q2, keys % Q2
        self.fkeys = self.cols * Q2 + self.rows  # the entries' places in a column-major (Fortran) Q2 x Q2 array
        self.panel, self.panel_a = panel, panel_a  # (Q2, heavy) Fortran-ordered, and the heavy levels' a_j
        self._kept: tuple[float, np.ndarray] | None = None  # (t1, the matrix at lam2 = 1): see lower's keep

    @classmethod
    def build(cls, A21: sparse.csr_matrix, A22, a11: np.ndarray, Q2: int) -> "CoupledPairs | bool":
        """The stored products, or False when the light pairs or the heavy panel would exceed their caps
        (:data:`MAX_COUPLED_PAIRS`, :data:`MAX_PANEL_BYTES`). ``a11``: the leading factor's diagonal (Z1' W Z1)."""
        A21 = sparse.csr_matrix(A21)
        heavy = _heavy_levels(np.bincount(A21.indices, minlength=A21.shape[1]).astype(np.int64), Q2)
        if heavy is None:
            return False
        csc = sparse.csc_matrix(A21)
        csc.sort_indices()  # rows ascending within each leading level: the later entry of a pair is the lower row
        panel = panel_a = None
        if heavy.size:
            light = np.setdiff1d(np.arange(csc.shape[1]), heavy)
            panel = np.asfortranarray(csc[:, heavy].toarray())
            panel_a = np.asarray(a11, dtype=float)[heavy]
            csc = csc[:, light]
            csc.sort_indices()
            a11 = np.asarray(a11)[light]
        M, uniq = _pair_matrix(csc, A22, Q2)
        a, group = np.unique(a11, return_inverse=True)
        L1 = csc.shape[1]
        merge = sparse.csr_matrix((np.ones(L1 + 1), (np.arange(L1 + 1), np.append(group.ravel(), a.size))),
                                  shape=(L1 + 1, a.size + 1))
        return cls(sparse.csc_matrix(M @ merge), a, uniq, Q2, panel, panel_a)

    def nbytes(self) -> int:
        """The bytes these stored products hold."""
        arrays = [self.M.data, self.M.indices, self.M.indptr, self.a, self.rows, self.cols, self.fkeys,
                  self.panel, self.panel_a]
        return int(sum(a.nbytes for a in arrays if a is not None))

    def lower(self, t1: float, lam2: np.ndarray, keep: bool = False) -> np.ndarray:
        """The dense Q2 x Q2 matrix, column-major, with its lower triangle filled (the strict upper one left
        zero or partly filled). ``keep``: the matrix at lam2 = 1 is kept for the next call at the same t1, which
        then only scales it by lam2 (Q2^2 products instead of the pairs and the panel's rank update): an optimiser
        that evaluates several thetas with the same t1 in a row (:mod:`~glmmlab.engine.solvers.crossed_newton`)
        asks for that; the kept matrix (Q2^2 doubles) is dropped by a call without ``keep``."""
        if not keep:
            self._kept = None
            return self._unit_scaled(t1, lam2)
        if self._kept is None or self._kept[0] != t1:
            self._kept = None  # its memory back before the next one is made
            self._kept = (t1, self._unit_scaled(t1, np.ones(self.Q2)))
        if lam2.size and np.all(lam2 == lam2[0]):  # one coupled factor: one SD, one pass
            return np.multiply(self._kept[1], lam2[0] * lam2[0], order="F")
        S = np.multiply(self._kept[1], lam2[:, None], order="F")
        S *= lam2[None, :]
        return S

    def _unit_scaled(self, t1: float, lam2: np.ndarray) -> np.ndarray:
        t2 = t1 * t1
        vals = self.M @ np.append(t2 / (t2 * self.a + 1.0), 1.0)
        vals *= lam2[self.rows] * lam2[self.cols]
        out = np.zeros(self.Q2 * self.Q2)
        out[self.fkeys] = vals
        S = out.reshape((self.Q2, self.Q2), order="F")
        if self.panel is not None and self.panel_a is not None:
            B = self.panel * lam2[:, None]
            B *= np.sqrt(t2 / (t2 * self.panel_a + 1.0))[None, :]
            S = blas.dsyrk(-1.0, B, beta=1.0, c=S, lower=1, overwrite_c=1)
        return S


def over_the_cap(A21: sparse.csr_matrix) -> bool:
    """Whether the pairs of A21's entries within its leading levels (columns) exceed MAX_COUPLED_PAIRS: then the
    sparse product C21 C21' costs about what :meth:`CoupledPairs.build` does (MovieLens' shape: 3e8 products),
    so the factorisation builds the stored products at once rather than at the second call."""
    per_col = np.bincount(sparse.csr_matrix(A21).indices, minlength=A21.shape[1]).astype(np.int64)
    return int(np.sum(per_col * (per_col + 1) // 2)) > MAX_COUPLED_PAIRS


def _heavy_levels(per_col: np.ndarray, Q2: int) -> np.ndarray | None:
    """The leading levels kept as a dense panel (ascending), or None when the caps cannot both be kept."""
    pairs = per_col * (per_col + 1) // 2
    heavy = per_col > HEAVY_SHARE * Q2
    light_pairs = int(np.sum(pairs[~heavy]))
    if light_pairs > MAX_COUPLED_PAIRS:  # the largest light levels join the panel until the rest fit
        order = np.flatnonzero(~heavy)[np.argsort(-pairs[~heavy], kind="stable")]
        left = light_pairs - np.cumsum(pairs[order])
        heavy[order[: int(np.searchsorted(-left, -MAX_COUPLED_PAIRS)) + 1]] = True
    if int(np.sum(heavy)) * Q2 * 8 > MAX_PANEL_BYTES:
        return None
    return np.flatnonzero(heavy)


def _pair_matrix(csc: sparse.csc_matrix, A22, Q2: int) -> tuple[sparse.csc_matrix, np.ndarray]:
    """(M, keys): M's rows the distinct entries (row * Q2 + col, row >= col, ascending as ``keys``) of the lower
    triangle, its columns the leading levels of ``csc`` (values -A21[a, j] A21[b, j]) and A22's as the last."""
    L1 = csc.shape[1]
    per_col = np.diff(csc.indptr)
    col_of = np.repeat(np.arange(L1), per_col)
    pos = np.arange(csc.nnz) - csc.indptr[:-1][col_of]  # an entry's place within its leading level
    count = pos + 1  # pairs with itself and every earlier entry of its level
    total = int(np.sum(count))
    e1 = np.repeat(np.arange(csc.nnz), count)
    e2 = np.repeat(csc.indptr[:-1][col_of], count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
    lo = sparse.tril(sparse.coo_matrix(A22)).tocoo()
    keys = np.concatenate([csc.indices[e1].astype(np.int64) * Q2 + csc.indices[e2], lo.row.astype(np.int64) * Q2
                           + lo.col])
    values = np.concatenate([-csc.data[e1] * csc.data[e2], lo.data])
    # the distinct entries without a sort: mark them on the Q2 x Q2 grid the result fills anyway
    seen = np.zeros(Q2 * Q2, dtype=bool)
    seen[keys] = True
    uniq = np.flatnonzero(seen)
    index = np.cumsum(seen) - 1
    # pairs come level by level (CSC order), then A22's entries as the last column
    indptr = np.concatenate([[0], np.cumsum(np.bincount(col_of, weights=count, minlength=L1)).astype(np.int64),
                             [total + lo.nnz]])
    return sparse.csc_matrix((values, index[keys], indptr), shape=(uniq.size, L1 + 1)), uniq
