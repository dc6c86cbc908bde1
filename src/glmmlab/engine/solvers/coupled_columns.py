"""Crossed scalar terms with a sparse coupling, at every PIRLS step: the coupling's pattern found once per fit.

A PIRLS step changes the row weights W but not which (coupled level, leading level) cells the rows fall in, so

- :class:`ScalarCoupling` finds each row's place among the entries of A21 = Z2' W Z1 and A22 = Z2' W Z2 once;
  a step's cross-products are then bincounts over the rows (no sparse product with the n rows, no pattern search
  of scipy.sparse's products);
- :class:`ColumnPairs` lays C21's entries (Q2 x L1, a leading level's entries its column) out once as a padded
  array, column by column in order of decreasing length (row b of the array: the b-th entry of each column that
  has more than b, a prefix of the columns). The pairs of entries within each column, which C21 C21' and
  :class:`~glmmlab.engine.solvers.blocked_cholesky.PatternInverse` sum over, are then for each b the block of
  rows [0, b) against row b over that prefix: vectorised products and one bincount, with the pairs' places
  computed on the fly (nothing stored per pair: the English Lexicon Project's shape has 55M pairs). Columns with
  many entries (more than :data:`HEAVY_SHARE` of Q2) are a dense panel instead (a BLAS rank update, a product).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.linalg import blas

from glmmlab.engine.solvers.coupled_pairs import HEAVY_SHARE  # a column with more entries: a dense panel's

BINCOUNT_AT_ONCE = 2_000_000  # pairs summed by one bincount (their keys and products: ~32 MB)


class ScalarCoupling:
    """Z2' W Z1, Z2' W Z2 and Z2' W E of crossed scalar terms from each row's fixed place among their entries.

    ``codes1``/``z1``: the leading factor's codes and column (None: ones); ``cols2``: per coupled factor the rows'
    columns of the coupled block (offset + code) and the term's column (None: ones)."""

    def __init__(self, codes1: np.ndarray, z1: np.ndarray | None, cols2: list[tuple[np.ndarray, np.ndarray | None]],
                 L1: int, Q2: int):
        self.L1, self.Q2, self.n = L1, Q2, int(codes1.size)
        self.cols2 = [np.asarray(c, dtype=np.intp) for c, _ in cols2]
        self.z2 = [z for _, z in cols2]
        c1 = np.asarray(codes1, dtype=np.int64)
        keys21 = np.concatenate([c.astype(np.int64) * L1 + c1 for c in self.cols2])
        self.A21_indptr, self.A21_indices, self.inv21 = _pattern(keys21, L1, Q2)
        self.z21 = [_times(z1, z) for z in self.z2]
        pairs = [(t, s) for t in range(len(self.cols2)) for s in range(len(self.cols2))]
        keys22 = np.concatenate([self.cols2[t].astype(np.int64) * Q2 + self.cols2[s] for t, s in pairs])
        self.A22_indptr, self.A22_indices, self.inv22 = _pattern(keys22, Q2, Q2)
        self.z22 = [_times(self.z2[t], self.z2[s]) for t, s in pairs]

    def products(self, w: np.ndarray, E: np.ndarray | None
                 ) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray]:
        """(A21, A22, E2) at the row weights ``w`` (E: n x m, or None)."""
        A21 = sparse.csr_matrix((self._sums(self.inv21, w, self.z21, self.A21_indices.size), self.A21_indices,
                                 self.A21_indptr), shape=(self.Q2, self.L1))
        A22 = sparse.csr_matrix((self._sums(self.inv22, w, self.z22, self.A22_indices.size), self.A22_indices,
                                 self.A22_indptr), shape=(self.Q2, self.Q2))
        m = 0 if E is None else E.shape[1]
        E2 = np.zeros((self.Q2, m))
        for k in range(m):
            assert E is not None
            E2[:, k] = self.z2_sums(w * E[:, k])
        return A21, A22, E2

    def z2_sums(self, v: np.ndarray) -> np.ndarray:
        """Z2' v: per column of the coupled block, the sum of its rows' v z."""
        out = np.zeros(self.Q2)
        for c, z in zip(self.cols2, self.z2):
            out += np.bincount(c, weights=v if z is None else v * z, minlength=self.Q2)
        return out

    def _sums(self, inv: np.ndarray, w: np.ndarray, zs: list[np.ndarray | None], size: int) -> np.ndarray:
        weights = [w if z is None else w * z for z in zs]
        return np.bincount(inv, weights=weights[0] if len(weights) == 1 else np.concatenate(weights),
                           minlength=size)


def _times(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a * b


def _pattern(keys: np.ndarray, n_cols: int, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CSR pattern (indptr, indices; sorted, no duplicates) of the entries row * n_cols + col in ``keys``, and
    each key's place among them."""
    uniq, inv = np.unique(keys, return_inverse=True)
    index = np.int32 if max(uniq.size, n_cols, n_rows) < 2**31 - 1 else np.int64
    indptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // n_cols, minlength=n_rows))]).astype(index)
    return indptr, (uniq % n_cols).astype(index), inv.ravel().astype(index)


class ColumnPairs:
    """The entries of a Q2 x L1 sparse matrix of a fixed pattern (``indptr``/``indices``, CSR) laid out by
    column for sums over the pairs of entries within each column (see the module's docstring)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, Q2: int, L1: int):
        self.Q2, self.L1, self.indptr, self.indices = Q2, L1, indptr, indices
        nnz = indices.size
        rows = np.repeat(np.arange(Q2), np.diff(indptr))
        by_col = np.argsort(indices, kind="stable")  # entries column by column, rows ascending within one
        counts = np.bincount(indices, minlength=L1)
        col_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        cols = indices[by_col]
        pos = np.arange(nnz) - col_start[cols]  # each entry's place within its column
        heavy = counts > HEAVY_SHARE * Q2
        self.heavy_cols = np.flatnonzero(heavy)
        # light columns by decreasing length: rank r; row b of the padded array holds the b-th entries
        light = np.flatnonzero(~heavy)
        order = light[np.argsort(-counts[light], kind="stable")]
        rank = np.full(L1, -1, dtype=np.int64)
        rank[order] = np.arange(order.size)
        self.n_light = order.size
        self.kmax = int(counts[order[0]]) if order.size else 0
        # prefix[b]: the light columns with more than b entries
        self.prefix = np.searchsorted(-counts[order], -np.arange(self.kmax), side="right").astype(np.int64)
        on_light = ~heavy[cols]
        # the padded array's slot of every entry, in the matrix's (CSR) order; -1 for the heavy columns' entries
        slot = np.full(nnz, -1, dtype=np.int64)
        slot[by_col[on_light]] = pos[on_light] * self.n_light + rank[cols[on_light]]
        self.slot = slot
        self.light_entries = np.flatnonzero(slot >= 0)
        self.light_slots = slot[self.light_entries]
        blocks = self.prefix * np.arange(self.kmax)  # the pairs (a, b), a < b, of each row b
        self.n_pairs, self.max_block = int(np.sum(blocks)), int(np.max(blocks, initial=0))
        flat_rows = np.zeros(self.kmax * self.n_light, dtype=np.int32 if Q2 < 2**31 else np.int64)
        flat_rows[self.light_slots] = rows[self.light_entries]
        self.I = flat_rows.reshape(self.kmax, self.n_light)  # the rows of the padded entries (0 in the padding)
        # the heavy columns' entries: (entry, row, panel column)
        hcol = np.searchsorted(self.heavy_cols, indices)
        on_heavy = np.flatnonzero(heavy[indices])
        self.heavy_entries, self.heavy_rows, self.heavy_at = on_heavy, rows[on_heavy], hcol[on_heavy]
        self.rows = rows
        self.csc_order = by_col  # the entries in CSC order (sorted rows): scipy's tocsc of this pattern

    def _padded(self, data: np.ndarray) -> np.ndarray:
        X = np.zeros(self.kmax * self.n_light)
        X[self.light_slots] = data[self.light_entries]
        return X.reshape(self.kmax, self.n_light)

    def _panel(self, data: np.ndarray) -> np.ndarray:
        P = np.zeros((self.Q2, self.heavy_cols.size), order="F")
        P[self.heavy_rows, self.heavy_at] = data[self.heavy_entries]
        return P

    def gram_lower(self, data: np.ndarray) -> np.ndarray:
        """C C' (C: this pattern with ``data``) as a Q2 x Q2 column-major array whose lower triangle holds it
        (the strict upper one zero)."""
        Q2 = self.Q2
        X = self._padded(data)
        diag = np.bincount(self.rows[self.light_entries], weights=data[self.light_entries] ** 2, minlength=Q2)
        out = np.zeros(Q2 * Q2)
        size = min(BINCOUNT_AT_ONCE + self.max_block, self.n_pairs)
        kbuf, vbuf = np.empty(size, dtype=np.int64), np.empty(size)
        held = 0
        for b in range(1, self.kmax):
            n = int(self.prefix[b])
            # pairs (a, b), a < b: rows I[a] < I[b] (rows ascending within a column), so column-major lower
            keys = kbuf[held: held + b * n].reshape(b, n)
            np.multiply(self.I[:b, :n], np.int64(Q2), out=keys)
            keys += self.I[b, :n]
            np.multiply(X[:b, :n], X[b, :n], out=vbuf[held: held + b * n].reshape(b, n))
            held += b * n
            if held >= BINCOUNT_AT_ONCE or b == self.kmax - 1:
                out += np.bincount(kbuf[:held], weights=vbuf[:held], minlength=Q2 * Q2)
                held = 0
        out[:: Q2 + 1] += diag
        S = out.reshape((Q2, Q2), order="F")
        if self.heavy_cols.size:
            S = blas.dsyrk(1.0, self._panel(data), beta=1.0, c=S, lower=1, overwrite_c=1)
        return S

    def pattern_products(self, data: np.ndarray, Sinv: np.ndarray) -> np.ndarray:
        """V per entry (in the matrix's order): V[e] = C[:, j]' Sinv[:, k] for the entry e = (k, j), the sum over
        the pairs of entries of column j (a heavy column's by a product with Sinv)."""
        Q2 = self.Q2
        X = self._padded(data)
        S = np.ascontiguousarray(Sinv).ravel()
        Vp = X * np.diag(Sinv)[self.I]  # the pair of an entry with itself
        for b in range(1, self.kmax):
            n = int(self.prefix[b])
            keys = self.I[:b, :n] * np.int64(Q2)
            keys += self.I[b, :n]
            G = S[keys]  # Sinv at the pairs (a, b), a < b (symmetric)
            Vp[:b, :n] += X[b, :n] * G
            G *= X[:b, :n]
            Vp[b, :n] += G.sum(axis=0)
        V = np.empty(data.size)
        V[self.light_entries] = Vp.ravel()[self.light_slots]
        if self.heavy_cols.size:
            W = Sinv @ self._panel(data)
            V[self.heavy_entries] = W[self.heavy_rows, self.heavy_at]
        return V
