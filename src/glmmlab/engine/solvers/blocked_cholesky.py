"""The penalised system of a general mixed model, factored block by block.

With b = Lambda u (u spherical) the penalised least-squares problem for row weights W is governed by

    [ Lambda' Z' W Z Lambda + I    Lambda' Z' W E ]        E: extra dense columns (X and/or a response)
    [ E' W Z Lambda                E' W E         ]

The random effects come in grouping factors, ordered by decreasing number of levels. The first (leading)
factor's block is block-diagonal, one q1 x q1 block per level, and is factored level by level (batched). The
remaining factors (crossed with the first, or the outer factors of a nesting) form one coupled block of side
Q2 = sum of levels x q; after the leading block is eliminated its Schur complement is dense, and so is the
block of E. A model with one grouping factor has no coupled block at all: everything is batched q x q work.

:class:`~glmmlab.engine.solvers.structure.Structure` holds the fixed part (codes, Z columns, sparse patterns) and
its :meth:`~glmmlab.engine.solvers.structure.Structure.crossprods` computes the weighted cross-products from the
rows (O(n q^2)); :func:`factor` here scales them by Lambda(theta) and factors them (no pass over the rows), with
the stacks of small blocks of :mod:`glmmlab.engine.solvers.batched`. A linear mixed model computes its
cross-products once; PIRLS recomputes them per iteration as the weights change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import lapack

from glmmlab.engine.solvers.batched import (
    SUBSTITUTION_Q,
    batched_cholesky,
    batched_inverse_lower,
    batched_solve_lower,
    batched_solve_upper,
)
from glmmlab.engine.solvers.coupled_pairs import CoupledPairs, over_the_cap
from glmmlab.engine.solvers.structure import CrossProducts, Structure

PAIRS_AT_ONCE = 4_000_000  # pairs of a column's entries PatternInverse sums at a time (~100 MB)
# PatternInverse takes a column of C21 densely (a product with S^-1, BLAS) when it has more entries than this share
# of Q2: its c^2 pairs, summed by numpy's gathers and bincount (~60 ns each), then cost more than the product's
# 2 Q2^2 operations (MovieLens' shape, 3,706 movies: diag_blocks_inverse 11.9 s CPU with every column by pairs,
# 4.4 s with the share 0.06, 3.4 s with 0.03, 3.6 s with 0.015)
DENSE_COLUMN_SHARE = 0.03
# the diagonal of H^-1 alone (the conditional variances) takes such a column by a triangular solve with L22 (Q2^2
# operations, half the product with S^-1): it pays from 0.02 of Q2 (MovieLens' shape: 2,398 -> 3,217 columns)
DIAG_DENSE_SHARE = 0.02

# LAPACK's routines for the coupled block, called directly: scipy.linalg's cholesky and solve_triangular call the
# same ones (with the same arguments, so the same numbers) behind checks and a batching wrapper that cost several
# microseconds a call, and the block is factored and solved a few times per PIRLS iteration.
_POTRF, _TRTRS, _POTRI = lapack.get_lapack_funcs(("potrf", "trtrs", "potri"), (np.empty((1, 1)),))


def _cholesky_lower(S: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """``linalg.cholesky(S, lower=True, check_finite=False, overwrite_a=overwrite)``."""
    if S.dtype != np.float64 or S.ndim != 2 or S.size == 0:
        return linalg.cholesky(S, lower=True, check_finite=False, overwrite_a=overwrite)
    c, info = _POTRF(S, lower=1, overwrite_a=overwrite, clean=1)
    if info > 0:
        raise linalg.LinAlgError(f"{info}-th leading minor of the array is not positive definite")
    if info < 0:
        raise ValueError(f'LAPACK reported an illegal value in {-info}-th argument on entry to "POTRF".')
    return c


def _solve_lower(L: np.ndarray, b: np.ndarray, transposed: bool = False, check_finite: bool = True) -> np.ndarray:
    """``linalg.solve_triangular(L, b, lower=True, trans="T" if transposed else "N", check_finite=check_finite)``:
    L^-1 b, or L^-T b."""
    if check_finite:
        L, b = np.asarray_chkfinite(L), np.asarray_chkfinite(b)
    if L.dtype != np.float64 or b.dtype != np.float64 or L.ndim != 2 or b.size == 0:
        return linalg.solve_triangular(L, b, lower=True, trans=1 if transposed else 0, check_finite=False)
    trans = 1 if transposed else 0
    if L.flags.f_contiguous:
        x, info = _TRTRS(L, b, lower=1, trans=trans)
    else:  # as scipy does: the transposed system, which LAPACK reads in its own (column-major) order
        x, info = _TRTRS(L.T, b, lower=0, trans=1 - trans)
    if info > 0:
        raise linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    if info < 0:
        raise ValueError(f"illegal value in {-info}-th argument of internal trtrs")
    return x


def inverse_from_cholesky(L: np.ndarray) -> np.ndarray:
    """S^-1 (whole, symmetric) from S's lower Cholesky factor L, by LAPACK's potri (L^-1, then L^-T L^-1 on one
    triangle: a third of the operations of a triangular solve with the identity and a full product)."""
    inv, info = _POTRI(L, lower=1)
    if info != 0:
        raise linalg.LinAlgError(f"potri failed (info {info})")
    low = np.tril(inv)
    out = low + low.T
    out[np.diag_indices_from(out)] -= np.diag(low)
    return out


def _as_dense(a: Any) -> np.ndarray:
    """A sparse or dense matrix as a dense array."""
    return a.toarray() if sparse.issparse(a) else np.asarray(a)


@dataclass
class Factor:
    """The blocked Cholesky factor of the penalised system at one theta."""

    L11: np.ndarray  # (L1, q1, q1) lower
    G1: np.ndarray  # (L1, q1, m)  L11^-1 Lambda1' Z1' W E
    C21: sparse.csr_matrix | np.ndarray | None  # (Q2, L1 q1): (L11^-1 Lambda1' Z1' W Z2 Lambda2)' (dense when small)
    L22: np.ndarray | None  # (Q2, Q2) lower
    G2: np.ndarray | None  # (Q2, m)
    SEE: np.ndarray  # (m, m): E' W E - G1'G1 - G2'G2 (the Schur complement of E)
    logdet: float  # log det(Lambda' Z' W Z Lambda + I)
    pairs: Any = None  # coupled_columns.ColumnPairs of C21's pattern (crossed scalar terms held sparse), or None

    def solve_u(self, col: int) -> np.ndarray:
        """u = H^-1 Lambda' Z' W e for the E column ``col`` (back substitution of the stored forward pass)."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        rhs1 = self.G1[:, :, col]
        if self.L22 is not None:
            assert self.G2 is not None and self.C21 is not None  # the coupled factors' parts come together
            u2 = _solve_lower(self.L22, self.G2[:, col], transposed=True)
            rhs1 = rhs1 - (self.C21.T @ u2).reshape(L1, q1)
        else:
            u2 = np.empty(0)
        u1 = batched_solve_upper(self.L11, rhs1)
        return np.concatenate([u1.ravel(), u2])

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H^-1 rhs for a vector of length Q (forward and back substitution through the blocks)."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        y1 = batched_solve_lower(self.L11, rhs[: L1 * q1].reshape(L1, q1))
        if self.L22 is None:
            return batched_solve_upper(self.L11, y1).ravel()
        assert self.C21 is not None
        y2 = _solve_lower(self.L22, rhs[L1 * q1:] - self.C21 @ y1.ravel())
        x2 = _solve_lower(self.L22, y2, transposed=True)
        x1 = batched_solve_upper(self.L11, y1 - (self.C21.T @ x2).reshape(L1, q1))
        return np.concatenate([x1.ravel(), x2])

    def inverse_parts(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(diagonal blocks of (H^-1)_11 per leading level, (H^-1)_12 dense, (H^-1)_22 dense)."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        Linv1 = batched_inverse_lower(self.L11)
        H11 = np.einsum("jka,jkb->jab", Linv1, Linv1)
        if self.L22 is None:
            return H11, None, None
        assert self.C21 is not None
        Q2 = self.L22.shape[0]
        L22inv = _solve_lower(self.L22, np.eye(Q2))
        Sinv = L22inv.T @ L22inv
        C = _as_dense(self.C21)  # (Q2, L1 q1)
        # X12 = H11^-1 H12 = L11^-T C21'; (H^-1)_12 = -X12 S^-1; diag blocks of (H^-1)_11 add X12 S^-1 X12'
        X12 = np.einsum("jba,kjb->jak", Linv1, C.reshape(Q2, L1, q1)).reshape(L1 * q1, Q2)
        H12 = -(X12 @ Sinv)
        add = np.einsum("jak,jbk->jab", (-H12).reshape(L1, q1, Q2), X12.reshape(L1, q1, Q2))
        return H11 + add, H12, Sinv

    def _pattern_inverse(self) -> tuple[np.ndarray, "PatternInverse"]:
        """S^-1 = (H^-1)_22 and :class:`PatternInverse` of this factor (scalar terms, a sparse coupling)."""
        assert self.L22 is not None and self.C21 is not None and self.L11.shape[1] == 1
        Sinv = inverse_from_cholesky(self.L22)
        return Sinv, PatternInverse(self.L11[:, 0, 0], self.C21, Sinv, self.pairs)

    def scalar_row_inverse(self, lead: np.ndarray, rest: list[np.ndarray]) -> np.ndarray:
        """Per row, the (1 + r) x (1 + r) block of H^-1 at the row's own levels, for scalar terms (q1 = 1) with a
        sparse coupling C21: ``lead`` the rows' leading levels, ``rest`` their columns of the coupled block (one
        array per coupled factor). :meth:`inverse_parts` forms (H^-1)_12 whole ((L1, Q2) dense, L1 Q2^2
        operations); here only its entries on C21's pattern, where every row's pair of levels lies
        (:class:`PatternInverse`)."""
        Sinv, pattern = self._pattern_inverse()
        return pattern.row_blocks(Sinv, lead, rest)

    def diag_blocks_inverse(self, structure: Structure) -> list[np.ndarray]:
        """The diagonal blocks of H^-1 per level of each factor: (levels, q, q) arrays."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        Linv1 = batched_inverse_lower(self.L11)  # (L1, q1, q1), lower
        out1 = np.einsum("jka,jkb->jab", Linv1, Linv1)
        res = [out1]
        if self.L22 is None:
            return res
        assert self.C21 is not None
        if q1 == 1 and sparse.issparse(self.C21):  # scalar terms, sparse coupling: pairs and a triangular solve
            h11, s22 = _scalar_diag_inverse(self.L11[:, 0, 0], self.C21, self.L22, self.pairs)
            res = [h11.reshape(L1, 1, 1)]
            for b, o in zip(structure.rest, structure.rest_offsets):
                res.append(s22[o: o + b.size].reshape(b.n_levels, 1, 1).copy())
            return res
        # L^-1 = [[L11^-1, 0], [-L22^-1 C21 L11^-1, L22^-1]]; the lower-left block adds to the leading
        # factor's diagonal blocks, and L22^-1 gives those of the coupled factors.
        L22inv = _solve_lower(self.L22, np.eye(self.L22.shape[0]))
        Linv1_sp = _block_diag_sparse(Linv1)
        Q2 = self.L22.shape[0]
        chunk = max(1, int(2e7 // max(Q2, 1)))
        add = np.zeros((L1, q1, q1))
        M_T = Linv1_sp.T @ self.C21.T  # (L1 q1, Q2)
        M_T = M_T.tocsc() if sparse.issparse(M_T) else np.asarray(M_T)
        for start in range(0, L1 * q1, chunk * q1):
            stop = min(L1 * q1, start + chunk * q1)
            rows = M_T[start:stop]
            part = _as_dense(rows) @ L22inv.T  # rows of (L22^-1 C21 L11^-1)'
            part = part.reshape(-1, q1, Q2)
            add[start // q1: stop // q1] = np.einsum("jak,jbk->jab", part, part)
        res[0] = out1 + add
        for b, o in zip(structure.rest, structure.rest_offsets):
            cols = L22inv[:, o: o + b.size].reshape(Q2, b.n_levels, b.q)
            res.append(np.einsum("kja,kjb->jab", cols, cols))
        return res


def _scalar_diag_inverse(d: np.ndarray, C21: Any, L22: np.ndarray, pairs: Any = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The diagonals of (H^-1)_11 and (H^-1)_22 = S^-1 for scalar terms with a sparse coupling C21 (Q2 x L1):
    h11_j = (1 + c_j' S^-1 c_j) / d_j^2 for C21's column c_j. A column with many entries (more than
    :data:`DIAG_DENSE_SHARE` of Q2: a MovieLens user's hundreds of ratings) takes c_j' S^-1 c_j = |L22^-1 c_j|^2
    from one triangular solve with a panel of them (Q2^2 operations a column, half of S^-1 times the column,
    which :class:`PatternInverse` computes because it needs every entry of S^-1 c_j); the others sum S^-1 over
    the pairs of their entries (:class:`PatternInverse` of those columns alone; of all, with ``pairs``, the
    layout of C21's pattern: :class:`~glmmlab.engine.solvers.coupled_columns.ColumnPairs`)."""
    Q2, L1 = L22.shape[0], d.size
    Sinv = inverse_from_cholesky(L22)
    if pairs is not None:
        h11 = PatternInverse(d, C21, Sinv, pairs).h11
        return h11, np.diag(Sinv).copy()
    C = sparse.csc_matrix(C21)
    counts = np.diff(C.indptr)
    dense = counts > DIAG_DENSE_SHARE * Q2
    quad = np.zeros(L1)
    light = np.flatnonzero(~dense)
    if light.size:
        quad[light] = PatternInverse(np.ones(light.size), C[:, light], Sinv).h11 - 1.0
    diag22 = np.diag(Sinv).copy()
    del Sinv
    heavy = np.flatnonzero(dense)
    step = max(1, PAIRS_AT_ONCE // max(Q2, 1))
    for start in range(0, heavy.size, step):
        cols = heavy[start:start + step]
        W = _solve_lower(L22, C[:, cols].toarray(), check_finite=False)
        quad[cols] = np.einsum("ij,ij->j", W, W)
    return (1.0 + quad) / (d * d), diag22


class PatternInverse:
    """For scalar terms (q1 = 1) with a sparse coupling C21 (Q2 x L1) and S^-1 = (H^-1)_22 (the whole model's, so
    also for a block of whole leading levels on a Dask worker, whose C21 columns hold all their entries): at
    each entry (k, j) of C21, V = C21[:, j]' S^-1[:, k], so (H^-1)_12[j, k] = -V / L11_j there, and the diagonal
    of (H^-1)_11, h11 = (1 + C21[:, j]' S^-1 C21[:, j]) / L11_j^2. V sums over the pairs of entries in one column
    (sum_j nnz_j^2 products: the English Lexicon Project's 2.7M rows, ~100M, where C21' S^-1 in full would cost
    nnz Q2 = 2.2e9), PAIRS_AT_ONCE pairs at a time; a column with many entries (more than DENSE_COLUMN_SHARE of
    Q2) takes its V from S^-1 times the column instead."""

    def __init__(self, d: np.ndarray, C21: Any, Sinv: np.ndarray, pairs: Any = None):
        L1, Q2 = d.size, Sinv.shape[0]
        C = sparse.csc_matrix(C21)
        C.sort_indices()
        counts = np.diff(C.indptr)
        col_of = np.repeat(np.arange(L1), counts)
        if pairs is not None:  # C21's pattern laid out once per fit (coupled_columns.ColumnPairs): its V at once
            V = pairs.pattern_products(C21.data, Sinv)[pairs.csc_order]
            self.d, self.C, self.V, self.col_of = d, C, V, col_of
            self.h11 = (1.0 + np.bincount(col_of, weights=C.data * V, minlength=L1)) / (d * d)
            return
        V = np.empty(C.nnz)
        # columns with many entries (a MovieLens user's thousands of ratings: millions of pairs) densely: S^-1
        # times a panel of them (BLAS), read at their entries
        dense = np.flatnonzero(counts > DENSE_COLUMN_SHARE * Q2)
        step = max(1, PAIRS_AT_ONCE // max(Q2, 1))
        for start in range(0, dense.size, step):
            cols = dense[start:start + step]
            W = Sinv @ C[:, cols].toarray()
            at = np.flatnonzero(np.isin(col_of, cols))
            V[at] = W[C.indices[at], np.searchsorted(cols, col_of[at])]
        per_entry = counts[col_of].astype(np.int64)  # the pairs each entry is the second of
        per_entry[np.isin(col_of, dense)] = 0
        ends = np.cumsum(per_entry)
        a = int(np.searchsorted(ends, 0, side="right"))
        while a < C.nnz:  # entries [a, b) as the pairs' second entries, about PAIRS_AT_ONCE pairs at a time
            done = int(ends[a - 1]) if a else 0
            b = max(a + 1, int(np.searchsorted(ends, done + PAIRS_AT_ONCE, side="right")))
            k = per_entry[a:b]
            e2 = np.repeat(np.arange(a, b), k)
            e1 = np.repeat(C.indptr[col_of[a:b]] - (np.cumsum(k) - k), k) + np.arange(e2.size)  # its column's
            part = np.bincount(e2 - a, weights=C.data[e1] * Sinv[C.indices[e1], C.indices[e2]], minlength=b - a)
            keep = k > 0  # entries of the dense columns within [a, b) have theirs already
            V[a:b][keep] = part[keep]
            a = b
        self.d, self.C, self.V, self.col_of = d, C, V, col_of
        self.h11 = (1.0 + np.bincount(col_of, weights=C.data * V, minlength=L1)) / (d * d)

    def row_blocks(self, Sinv: np.ndarray, lead: np.ndarray, rest: list[np.ndarray]) -> np.ndarray:
        """Per row, the (1 + r) x (1 + r) block of H^-1 at its own levels: ``lead`` the rows' leading levels,
        ``rest`` their columns of the coupled block (one array per coupled factor)."""
        C, V, d, Q2 = self.C, self.V, self.d, Sinv.shape[0]
        keys = self.col_of.astype(np.int64) * Q2 + C.indices  # ascending: by column, rows sorted within
        P = np.empty((lead.size, 1 + len(rest), 1 + len(rest)))
        P[:, 0, 0] = self.h11[lead]
        for t, kt in enumerate(rest, start=1):
            want = lead.astype(np.int64) * Q2 + kt
            at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
            v = V[at] if keys.size else np.zeros(lead.size)
            off = keys[at] != want if keys.size else np.ones(lead.size, dtype=bool)
            if np.any(off):  # a pair whose entry of C21 is an exact zero (a weight of 0): from its column
                i = np.flatnonzero(off)
                v[i] = np.asarray(C[:, lead[i]].multiply(Sinv[:, kt[i]]).sum(axis=0)).ravel()
            P[:, 0, t] = P[:, t, 0] = -v / d[lead]
            for u, ku in enumerate(rest, start=1):
                P[:, t, u] = Sinv[kt, ku]
        return P


def _block_diag_sparse(B: np.ndarray) -> sparse.csr_matrix:
    L, q, _ = B.shape
    rows = (np.arange(L)[:, None, None] * q + np.arange(q)[None, :, None]) * np.ones((1, 1, q), dtype=int)
    cols = (np.arange(L)[:, None, None] * q + np.arange(q)[None, None, :]) * np.ones((1, q, 1), dtype=int)
    return sparse.csr_matrix((B.ravel(), (rows.ravel(), cols.ravel())), shape=(L * q, L * q))


def factor(structure: Structure, cp: CrossProducts, theta: np.ndarray) -> Factor:
    """Scale the cross-products by Lambda(theta) and factor the penalised system blockwise: the leading levels
    and their part of the coupled block (:func:`factor_part`, what a Dask actor computes on its rows), then the
    coupled block itself (:func:`finish_coupled`, what the Dask driver does with the actors' parts added)."""
    L11, G1, C21, S22, S2E, SEE, logdet = factor_part(structure, cp, structure.lambdas(theta), identity=True)
    if S22 is None:
        return Factor(L11, G1, None, None, None, SEE, logdet)
    L22, G2, SEE, logdet = finish_coupled(S22, S2E, SEE, logdet)
    # the pairs' layout for the gradient's and the conditional variances' sums over C21's pattern (PIRLS'; REML's
    # conditional variances, once per fit, by triangular solves: on MovieLens' shape, 71M pairs, 3.9 against 6.5 s)
    return Factor(L11, G1, C21, L22, G2, SEE, logdet,
                  structure.column_pairs(C21) if structure.all_scalar and not cp.reused else None)


def factor_lead(structure: Structure, cp: CrossProducts, lams: list[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The leading factor's levels factored: (L11, G1 = L11^-1 Lambda1' Z1' W E, E' W E - G1' G1, their
    log-determinant)."""
    Lam1 = lams[0]
    q1 = structure.q1
    if q1 == 1:
        t = Lam1[0, 0]
        H11 = cp.A11 * (t * t) + 1.0
        L11 = np.sqrt(H11)
        G1 = cp.E1 * (t / L11)
    elif q1 > SUBSTITUTION_Q and cp.E1.shape[2]:
        L11, G1 = _factor_augmented(Lam1, cp.A11, cp.E1)
    else:
        H11 = Lam1.T @ cp.A11 @ Lam1
        H11[:, np.arange(q1), np.arange(q1)] += 1.0
        L11 = batched_cholesky(H11)
        F1 = Lam1.T @ cp.E1
        G1 = batched_solve_lower(L11, F1) if F1.shape[2] else F1
    m = cp.EE.shape[0]
    if q1 == 1:  # a scalar term: plain products (einsum's dispatch costs more than the sums on small data)
        logdet = 2.0 * float(np.sum(np.log(L11)))
        g1 = G1[:, 0, :]
        SEE = cp.EE - g1.T @ g1 if m else cp.EE
    else:
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2))))
        SEE = cp.EE - np.einsum("jam,jak->mk", G1, G1) if m else cp.EE
    return L11, G1, SEE, logdet


def factor_part(structure: Structure, cp: CrossProducts, lams: list[np.ndarray], identity: bool) -> tuple:
    """The part of the blocked factor that the rows of ``cp`` determine alone (all of them, or a Dask block's rows
    cut by the leading factor, whose leading levels hold all their rows): :func:`factor_lead`'s L11 and G1, the
    coupling C21 = Lambda2' Z2' W Z1 Lambda1 L11^-T, the coupled block's Schur complement
    Lambda2' Z2' W Z2 Lambda2 - C21 C21' (+ I with ``identity``: once, where the parts are added) and
    Lambda2' Z2' W E - C21 G1. Returns (L11, G1, C21, S22, S2E, SEE, logdet); C21, S22 and S2E None without
    coupled factors, S2E None without columns E."""
    L11, G1, SEE, logdet = factor_lead(structure, cp, lams)
    if not structure.rest:
        return L11, G1, None, None, None, SEE, logdet
    if structure.dense:
        part = _factor_dense_coupling(structure, cp, lams, L11, G1, identity)
    elif structure.all_scalar:
        part = _factor_scalar_coupling(structure, cp, lams, L11, G1, identity)
    else:
        part = _sparse_coupling(structure, cp, lams, L11, G1, identity)
    return (L11, G1, *part, SEE, logdet)


def finish_coupled(S22: np.ndarray, S2E: np.ndarray | None, SEE: np.ndarray, logdet: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The coupled block factored from its Schur complement ``S22`` (with the identity; overwritten) and
    ``S2E`` (None without columns E): (L22, G2 = L22^-1 S2E, the Schur complement of E, the whole log-determinant)."""
    L22 = _cholesky_lower(S22, overwrite=True)
    logdet += 2.0 * float(np.sum(np.log(np.diag(L22))))
    if S2E is not None and S2E.shape[1]:
        G2 = _solve_lower(L22, S2E, check_finite=False)
        SEE = SEE - G2.T @ G2
    else:
        G2 = np.empty((L22.shape[0], 0))
    return L22, G2, SEE, logdet


def _sparse_coupling(structure: Structure, cp: CrossProducts, lams: list[np.ndarray], L11: np.ndarray,
                     G1: np.ndarray, identity: bool) -> tuple:
    """(C21, S22, S2E) of :func:`factor_part` for a sparse coupling of terms with more than one column."""
    L1, q1 = structure.L1, structure.q1
    assert cp.A21 is not None and cp.A22 is not None  # the model has coupled factors
    Lam2 = structure.lambda2(lams)
    B21 = (Lam2.T @ cp.A21 @ structure.lambda1_sparse(lams[0])).tocsr()
    L11inv = structure.block_diag1(batched_inverse_lower(L11) if q1 > 1 else 1.0 / L11)
    C21 = (B21 @ L11inv.T).tocsr()
    S22 = (Lam2.T @ cp.A22 @ Lam2).toarray()
    if identity:
        S22 = S22 + np.eye(structure.Q2)
    S22 = S22 - (C21 @ C21.T).toarray()
    m = cp.EE.shape[0]
    S2E = np.asarray(Lam2.T @ cp.E2) - np.asarray(C21 @ G1.reshape(L1 * q1, m)) if m else None
    return C21, S22, S2E


def _factor_augmented(Lam1: np.ndarray, A11: np.ndarray, E1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L11, G1 = L11^-1 F1) of the leading factor's levels (H = Lambda' A11 Lambda + I, F1 = Lambda' E1) from one
    batched Cholesky factor of [[H, F1], [F1', F1' F1 + I]] per level: its lower-left block is F1' L11^-T = G1',
    computed by LAPACK's triangular solve inside the factorisation, where a separate batched solve (numpy's LU)
    cost three times the factor (11 levels of 31 effects). The lower-right block is positive definite, as H >= I
    makes F1' F1 + I - G1' G1 = F1' (I - H^-1) F1 + I so."""
    q, m = Lam1.shape[0], E1.shape[2]
    L1 = A11.shape[0]
    M = np.empty((L1, q + m, q + m))
    # Lambda' A_j Lambda = (A_j Lambda)' Lambda (A_j symmetric): two products over every level at once (a product
    # per level cost five times as much: 70 against 14 us for 11 levels of 31 effects)
    AL = (A11.reshape(L1 * q, q) @ Lam1).reshape(L1, q, q)
    M[:, :q, :q] = (np.swapaxes(AL, 1, 2).reshape(L1 * q, q) @ Lam1).reshape(L1, q, q)
    M[:, np.arange(q), np.arange(q)] += 1.0
    Ft = np.swapaxes(E1, 1, 2) @ Lam1  # F1' per level
    M[:, q:, :q] = Ft
    np.matmul(Ft, np.swapaxes(Ft, 1, 2), out=M[:, q:, q:])
    M[:, q + np.arange(m), q + np.arange(m)] += 1.0
    C = np.linalg.cholesky(M)
    return C[:, :q, :q], np.swapaxes(C[:, q:, :q], 1, 2)


def _factor_scalar_coupling(structure: Structure, cp: CrossProducts, lams: list[np.ndarray], L11: np.ndarray,
                            G1: np.ndarray, identity: bool) -> tuple:
    """Crossed scalar terms with a large sparse coupling (InstEval's students x instructors): Lambda is
    diagonal, so scaling the stored cross-products is a scaling of their data arrays. The coupled block's Schur
    complement comes from :class:`~glmmlab.engine.solvers.coupled_pairs.CoupledPairs` once built (at the second
    call on the same cross-products, or the first when the pairs exceed its cap and the cross-products are
    ``reused``: REML's), else from the sparse product C21 C21'. PIRLS factors each iteration's cross-products
    once: there a build at the first call cost twice the sparse product (the English Lexicon Project's shape,
    80,962 items x 814 subjects: build 1.37 s + its use 1.18 s against 1.27 s CPU)."""
    L1, Q2 = structure.L1, structure.Q2
    t1 = float(lams[0][0, 0])
    lam2 = np.concatenate([np.full(b.n_levels, float(L[0, 0])) for b, L in zip(structure.rest, lams[1:])])
    A21 = cp.A21
    assert A21 is not None and cp.A22 is not None  # the model has coupled factors
    if cp._rows21 is None or cp._A22 is None:
        cp._rows21 = np.repeat(np.arange(A21.shape[0]), np.diff(A21.indptr))
        cp._A22 = cp.A22.toarray() if sparse.issparse(cp.A22) else cp.A22
    d1 = L11[:, 0, 0]
    data = A21.data * lam2[cp._rows21] * (t1 / d1[A21.indices])
    C21 = sparse.csr_matrix((data, A21.indices, A21.indptr), shape=A21.shape)
    cp._calls += 1
    if cp._pairs is None and (cp._calls == 2 or cp._calls == 1 and cp.reused and over_the_cap(A21)):
        cp._pairs = CoupledPairs.build(A21, cp.A22, cp.A11[:, 0, 0], Q2)
    if isinstance(cp._pairs, CoupledPairs):
        S22 = cp._pairs.lower(t1, lam2, keep=cp.keep_t1)
    else:
        S22 = cp._A22 * np.outer(lam2, lam2)
        # PIRLS (a new W at every step): the lower triangle from the pairs within each leading level, laid out once
        # per fit; REML (cp.reused) takes the sparse product once, then the stored pairs
        pairs = None if cp.reused else structure.column_pairs(C21)
        if pairs is not None:
            S22 -= pairs.gram_lower(C21.data)
        else:
            S22 -= (C21 @ C21.T).toarray()
    if identity:
        S22[np.diag_indices(Q2)] += 1.0
    m = cp.EE.shape[0]
    S2E = lam2[:, None] * np.asarray(cp.E2) - np.asarray(C21 @ G1.reshape(L1, m)) if m else None
    return C21, S22, S2E


def apply_lambda_rows(structure: Structure, lams: list[np.ndarray], M: np.ndarray) -> np.ndarray:
    """Lambda2' M for the coupled block's rows (M: Q2 x k), block by block."""
    out = np.empty_like(M)
    for b, o, L in zip(structure.rest, structure.rest_offsets, lams[1:]):
        part = M[o: o + b.size].reshape(b.n_levels, b.q, -1)
        out[o: o + b.size] = np.einsum("ba,jbk->jak", L, part).reshape(b.size, -1)
    return out


def _factor_dense_coupling(structure: Structure, cp: CrossProducts, lams: list[np.ndarray], L11: np.ndarray,
                           G1: np.ndarray, identity: bool) -> tuple:
    """(C21, S22, S2E) of :func:`factor_part` for a dense coupling (small coupled factors)."""
    L1, q1, Q2 = structure.L1, structure.q1, structure.Q2
    assert cp.A21 is not None and cp.A22 is not None and cp.E2 is not None  # the model has coupled factors
    Lam1 = lams[0]
    if structure.all_scalar:  # every Lambda a number: its products are scalings (as the einsums below compute them)
        lam2 = np.repeat([float(L[0, 0]) for L in lams[1:]], structure.rest_levels)
        C = (lam2[:, None] * cp.A21) * float(Lam1[0, 0]) * (1.0 / L11[:, 0, 0])[None, :]
        S22 = (lam2[:, None] * cp.A22) * lam2[None, :]
    else:
        # B21 = Lambda2' A21 Lambda1, then C21 = B21 L11^-T (per level of the leading factor)
        B = apply_lambda_rows(structure, lams, cp.A21)
        B = np.einsum("kjb,ba->kja", B.reshape(Q2, L1, q1), Lam1)
        Linv = batched_inverse_lower(L11) if q1 > 1 else 1.0 / L11
        C = np.einsum("kjb,jab->kja", B, Linv).reshape(Q2, L1 * q1)
        S22 = apply_lambda_rows(structure, lams, apply_lambda_rows(structure, lams, cp.A22).T).T
    S22 = S22 + np.eye(Q2) - C @ C.T if identity else S22 - C @ C.T
    m = cp.EE.shape[0]
    S2E = None
    if m:
        lam_E2 = lam2[:, None] * cp.E2 if structure.all_scalar else apply_lambda_rows(structure, lams, cp.E2)
        S2E = lam_E2 - C @ G1.reshape(L1 * q1, m)
    return C, S22, S2E
