"""The random-effects structure of a model for the blocked Cholesky factorisation (:mod:`blocked_cholesky`):
the grouping factors' codes and Z columns, the theta layout, the sparse patterns of Lambda, and the weighted
cross-products of the penalised system computed from the rows (:meth:`Structure.crossprods`, O(n q^2)).

The leading factor (the one with the most levels) is summed level by level; the remaining factors form the coupled
block, held dense when it is small (:data:`DENSE_COUPLING`) and sparse otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.limits import LIMITS, mib
from glmmlab.engine.model.terms import FactorBlock
from glmmlab.engine.solvers.coupled_columns import ColumnPairs, ScalarCoupling
from glmmlab.engine.solvers.scaling import design_t_dot

DENSE_COUPLING = 400_000  # entries of the Q2 x (L1 q1) coupling below which it is held dense
PIECE_ROWS = 16_384  # rows of a piece of a wide cross-product's (see Structure._intercept_products)


def _level_sum(codes: np.ndarray, values: np.ndarray, n_levels: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n_levels)


def _plus(total: np.ndarray | None, part: np.ndarray) -> np.ndarray:
    """A running sum of arrays: the first part itself, then each part added to the sum before it."""
    return part if total is None else total + part


def check_coupled_size(st: "Structure") -> None:
    """Refuse, before the first evaluation, a structure whose dense coupled block (Q2 x Q2 doubles, the random
    effects outside the leading factor; crossed factors) exceeds LIMITS.coupled_block_bytes, saying why."""
    need = 8.0 * st.Q2 * st.Q2
    if need <= LIMITS.coupled_block_bytes:
        return
    rest = ", ".join(f"{b.component!r} ({b.n_levels:,} levels{'' if b.q == 1 else f' x {b.q} effects'})"
                     for b in st.rest)
    raise GlmmInputError(
        f"the random effects of {rest} are coupled to those of {st.lead.component!r} ({st.L1:,} levels): the "
        f"grouping factors cross, and the fit would hold a dense block of {st.Q2:,} x {st.Q2:,} random effects "
        f"({mib(need)}), above the limit of {mib(LIMITS.coupled_block_bytes)} for that block. Fit the model with "
        "fewer levels in the crossed factors (or make one of them a fixed effect, or nest the factors)"
    )


class Structure:
    """The random-effects structure of a model: factor blocks and their theta layout."""

    def __init__(self, blocks: list[FactorBlock]):
        if not blocks:
            raise ValueError("a mixed model needs at least one random-effects term")
        self.blocks = blocks
        self.lead = blocks[0]
        self.rest = blocks[1:]
        self.n = int(self.lead.Z.shape[0])
        self.L1, self.q1 = self.lead.n_levels, self.lead.q
        codes1 = np.asarray(self.lead.codes)
        # 32-bit codes are kept as given (the Dask path's blocks: half the memory per row), others made intp
        self.codes1 = codes1 if codes1.dtype == np.int32 and codes1.flags.c_contiguous else \
            np.ascontiguousarray(codes1, dtype=np.intp)
        self.counts1 = np.bincount(self.codes1, minlength=self.L1)
        # rows sorted by the leading factor (fit_frame sorts them) make its per-level sums one np.add.reduceat
        # and its per-row gathers one np.repeat
        self.sorted1 = bool(np.all(self.codes1[1:] >= self.codes1[:-1])) and bool(np.all(self.counts1 > 0))
        self.starts1 = np.concatenate([[0], np.cumsum(self.counts1)[:-1]]).astype(np.intp)
        # the leading factor's columns that are all ones (an intercept): products with them are skipped
        self.ones1 = [bool(np.all(self.lead.Z[:, a] == 1.0)) for a in range(self.q1)]
        sizes = [b.n_theta for b in blocks]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.theta_slices = [slice(int(bounds[i]), int(bounds[i + 1])) for i in range(len(blocks))]
        self._start: np.ndarray | None = None  # the optimiser's start in theta when given (start_at)
        self._lams_memo: tuple[bytes, list[np.ndarray]] | None = None  # lambdas' last (theta, Lambdas)
        self.n_theta = int(bounds[-1])
        offs = np.concatenate([[0], np.cumsum([b.size for b in self.rest])]).astype(int)
        self.rest_offsets = [int(o) for o in offs[:-1]]
        self.rest_levels = [b.n_levels for b in self.rest]
        # the coupled factors' scalar terms whose column is all ones (a random intercept: no product per row)
        self.rest_ones = [b.q == 1 and bool(np.all(b.Z[:, 0] == 1.0)) for b in self.rest]
        self.Q2 = int(offs[-1])
        self.Q = self.L1 * self.q1 + self.Q2
        self.all_scalar = all(b.q == 1 for b in blocks)
        # crossed scalar terms held sparse: the coupling's pattern and its pairs' layout, found once (see
        # scalar_coupling and column_pairs)
        self._scalar_coupling: ScalarCoupling | None = None
        self._column_pairs: ColumnPairs | None = None
        # A small coupling (e.g. 24 x 6 levels) is cheaper dense than through scipy.sparse's per-call overhead.
        self.dense = self.Q2 * self.L1 * self.q1 <= DENSE_COUPLING
        self._Z12: tuple[sparse.csr_matrix, sparse.csr_matrix] | None = None

    def sparse_z(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """The leading factor's and the coupled factors' rows of Z as sparse matrices, built on first use: only
        the general crossed cross-products need them (scalar crossed terms sum by bincounts, see scalar_coupling),
        and at millions of rows they are two n-row matrices (~40 MB per million rows)."""
        assert self.rest, "sparse Z blocks exist only for crossed or nested structures"
        if self._Z12 is None:
            self._Z12 = (self._sparse_block(self.lead),
                         sparse.hstack([self._sparse_block(b) for b in self.rest], format="csr"))
        return self._Z12

    def _sparse_block(self, b: FactorBlock) -> sparse.csr_matrix:
        """The n x (levels * q) indicator-times-columns matrix of one factor (columns level-major)."""
        n, q = b.Z.shape
        cols = (np.asarray(b.codes, dtype=np.int64)[:, None] * q + np.arange(q)[None, :]).ravel()
        rows = np.repeat(np.arange(n), q)
        return sparse.csr_matrix((b.Z.ravel(), (rows, cols)), shape=(n, b.size))

    def lead_sum(self, M: np.ndarray) -> np.ndarray:
        """Per-level sums of the leading factor: (n,) -> (L1,), (n, k) -> (L1, k)."""
        if self.sorted1:
            return np.add.reduceat(M, self.starts1, axis=0)
        if M.ndim == 1:
            return _level_sum(self.codes1, M, self.L1)
        return np.column_stack([_level_sum(self.codes1, M[:, k], self.L1) for k in range(M.shape[1])])

    def lead_expand(self, A: np.ndarray) -> np.ndarray:
        """Each row's entry of a per-level array of the leading factor: (L1, ...) -> (n, ...)."""
        return np.repeat(A, self.counts1, axis=0) if self.sorted1 else A[self.codes1]

    # -- theta ---------------------------------------------------------------------------------------
    def theta_lower(self) -> np.ndarray:
        return np.concatenate([b.theta_lower() for b in self.blocks])

    def theta_start(self) -> np.ndarray:
        """lme4's start (relative SDs 1, correlations 0), or the start given by :meth:`start_at`."""
        if self._start is not None:
            return self._start.copy()
        return np.concatenate([b.theta_start() for b in self.blocks])

    def start_at(self, theta: np.ndarray | None) -> None:
        """Start the optimiser at ``theta`` (kept inside the bounds; ignored unless it has one entry per theta):
        a refit of a related model (an R² null model, a bootstrap replicate) starts near its own optimum."""
        self._start = None
        if theta is not None:
            t = np.asarray(theta, dtype=float).ravel()
            if t.size == self.n_theta and bool(np.all(np.isfinite(t))):
                self._start = np.maximum(t, self.theta_lower())

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each block's Lambda at theta (read-only arrays). The last theta's are kept: an evaluation asks for
        them several times (each PIRLS step's factor, the gradient, the modes' predictions)."""
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        last = self._lams_memo
        if last is not None and last[0] == key:
            return list(last[1])
        lams = [b.lam(theta[s]) for b, s in zip(self.blocks, self.theta_slices)]
        for L in lams:
            L.setflags(write=False)
        self._lams_memo = (key, lams)
        return list(lams)

    def lambda2(self, lams: list[np.ndarray]) -> sparse.csr_matrix:
        """Lambda of the coupled block as a sparse block-diagonal matrix (pattern built once, data refilled)."""
        if not hasattr(self, "_lam2"):
            self._lam2 = _BlockDiagPattern([(b.n_levels, b.q) for b in self.rest])
        return self._lam2.fill(lams[1:])

    def lambda1_sparse(self, lam1: np.ndarray) -> sparse.csr_matrix:
        if not hasattr(self, "_lam1"):
            self._lam1 = _BlockDiagPattern([(self.L1, self.q1)])
        return self._lam1.fill([lam1])

    def block_diag1(self, B: np.ndarray) -> sparse.csr_matrix:
        """A (L1, q1, q1) stack as a sparse block-diagonal matrix."""
        if not hasattr(self, "_bd1"):
            self._bd1 = _BlockDiagPattern([(self.L1, self.q1)])
        return self._bd1.fill_stack(B)

    def diagonal_theta(self, theta: np.ndarray) -> np.ndarray:
        return np.concatenate([theta[s][b.diagonal_theta_index()] for b, s in zip(self.blocks, self.theta_slices)])

    # -- rows ----------------------------------------------------------------------------------------
    def split_u(self, u: np.ndarray) -> list[np.ndarray]:
        """u (length Q) as one (levels, q) array per block."""
        out = [u[: self.L1 * self.q1].reshape(self.L1, self.q1)]
        base = self.L1 * self.q1
        for b, o in zip(self.rest, self.rest_offsets):
            out.append(u[base + o: base + o + b.size].reshape(b.n_levels, b.q))
        return out

    def b_of_u(self, u: np.ndarray, lams: list[np.ndarray]) -> list[np.ndarray]:
        """The random effects b = Lambda u, one (levels, q) array per block."""
        return [ub @ L.T for ub, L in zip(self.split_u(u), lams)]

    def row_effect(self, bs: list[np.ndarray]) -> np.ndarray:
        """Each row's total random-effects contribution to the linear predictor, sum_t z_it' b_t[level]."""
        out = self.lead_dot(bs[0])  # a new array: the other factors add into it
        for i, (blk, b) in enumerate(zip(self.blocks, bs)):
            if i == 0:
                continue
            codes = np.asarray(blk.codes, dtype=np.intp)
            if blk.q == 1:
                at_rows = np.take(b[:, 0], codes)
                out += at_rows if self.rest_ones[i - 1] else blk.Z[:, 0] * at_rows
            else:
                out += np.einsum("nq,nq->n", blk.Z, b[codes])
        return out

    def _lead_products(self) -> None:
        """The products z_a z_b (a <= b) of the leading factor's columns, once: ``_ZZ[k]`` a row of the k-th pair
        of ``_pairs`` (None where both columns are ones: a random intercept's product is 1, and a block's rows
        would otherwise keep a row of ones per row of data), with the pairs' first and second columns (``_ia``,
        ``_ib``)."""
        if not hasattr(self, "_ZZ"):
            Zt, q1 = np.asarray(self.lead.Z).T, self.q1
            self._pairs = [(a, b) for a in range(q1) for b in range(a, q1)]
            self._ia, self._ib = np.triu_indices(q1)  # the same pairs, in the same order
            self._ZZ: list[np.ndarray | None] = [
                None if self.ones1[a] and self.ones1[b] else np.multiply(Zt[a], Zt[b]) for a, b in self._pairs]

    def lead_quadratic(self, C: np.ndarray) -> np.ndarray:
        """Per row, z_i' C_j z_i for a symmetric (L1, q1, q1) stack C at the row's leading level j."""
        self._lead_products()
        out = np.zeros(self.n)
        for (a, b), zz in zip(self._pairs, self._ZZ):
            coef = self.lead_expand(C[:, a, b] if a == b else 2.0 * C[:, a, b])
            if zz is not None:
                coef *= zz
            out += coef
        return out

    def lead_dot(self, V: np.ndarray) -> np.ndarray:
        """Per row, z_i' V_j for an (L1, q1) array V at the row's leading level j."""
        Z1 = self.lead.Z
        out = self.lead_expand(np.ascontiguousarray(V[:, 0]))
        if not self.ones1[0]:
            out *= Z1[:, 0]
        for a in range(1, self.q1):
            col = self.lead_expand(np.ascontiguousarray(V[:, a]))
            if not self.ones1[a]:
                col *= Z1[:, a]
            out += col
        return out

    def lead_sums_z(self, *vectors: np.ndarray) -> list[np.ndarray]:
        """Per-level sums of v_i z_i for each row vector v: one (L1, q1) array each, from one pass of sums."""
        Z1, q1 = self.lead.Z, self.q1
        if q1 == 1 and self.ones1[0] and self.sorted1:  # a random intercept on sorted rows: sums of v's runs
            return [np.add.reduceat(v, self.starts1)[:, None] for v in vectors]
        prods = np.empty((len(vectors) * q1, self.n))
        for k, v in enumerate(vectors):
            for a in range(q1):
                if self.ones1[a]:
                    prods[k * q1 + a] = v
                else:
                    np.multiply(v, Z1[:, a], out=prods[k * q1 + a])
        sums = self._row_sums(prods)
        return [sums[:, k * q1:(k + 1) * q1] for k in range(len(vectors))]

    def _row_sums(self, prods: np.ndarray) -> np.ndarray:
        """Per-level sums of the rows of a k x n array: (L1, k)."""
        if self.sorted1:
            return np.add.reduceat(prods, self.starts1, axis=1).T
        # a few rows at a time, each row's levels shifted to its own range of bins: one bincount per chunk (the
        # same sums, in the same order, as a bincount per row)
        k, n, L1 = prods.shape[0], prods.shape[1], self.L1
        out = np.empty((L1, k))
        step = max(1, min(k, (1 << 22) // max(n, 1)))
        for start in range(0, k, step):
            rows = prods[start:start + step]
            bins = (self.codes1[None, :] + (L1 * np.arange(rows.shape[0]))[:, None]).ravel()
            out[:, start:start + rows.shape[0]] = np.bincount(bins, weights=rows.ravel(),
                                                             minlength=L1 * rows.shape[0]).reshape(-1, L1).T
        return out

    # -- cross-products ------------------------------------------------------------------------------
    def crossprods(self, w: np.ndarray, E: np.ndarray | None) -> "CrossProducts":
        """Weighted cross-products of [Z, E] (E: n x m dense, or None)."""
        if self.q1 == 1 and self.ones1[0] and not self.rest and self.sorted1:
            # one scalar random intercept on rows sorted by level (the commonest model, and every mode-search
            # step's): sums over runs of rows of w and w E themselves, no k x n array of products
            A11 = np.add.reduceat(w, self.starts1).reshape(self.L1, 1, 1)
            if E is None or E.shape[1] == 0:
                return CrossProducts(A11, np.empty((self.L1, 1, 0)), np.empty((0, 0)), None, None, None)
            if E.shape[1] == 1:
                wE = E * w[:, None]
                E1 = np.add.reduceat(wE, self.starts1, axis=0).reshape(self.L1, 1, 1)
                return CrossProducts(A11, E1, E.T @ wE, None, None, None)
            return CrossProducts(A11, *self._intercept_products(w, E), None, None, None)
        Z1, L1, q1 = self.lead.Z, self.L1, self.q1
        self._lead_products()
        npair = len(self._pairs)
        m = 0 if E is None else E.shape[1]
        # every per-row product as one contiguous row of a k x n array, then one pass of per-level sums
        prods = np.empty((npair + q1 * m, self.n))
        for k, zz in enumerate(self._ZZ):
            if zz is None:  # both columns ones: the product is w
                prods[k] = w
            else:
                np.multiply(zz, w, out=prods[k])
        wE = None  # (m, n): the rows w e_c
        if m and E is not None:
            a1 = self.ones1.index(True) if any(self.ones1) else None
            per_column = prods[npair:].reshape(q1, m, self.n)  # [a, c] = z_a w e_c
            if a1 is not None:  # an intercept column's products are the rows w e_c themselves
                wE = per_column[a1]
                np.multiply(E.T, w[None, :], out=wE)
            else:
                wE = (w[:, None] * E).T
            # every column's at once (an intercept's z_a = 1 leaves its rows as they are)
            np.multiply(np.asarray(Z1).T[:, None, :], wE[None, :, :], out=per_column)
        sums = self._row_sums(prods)
        A11 = np.empty((L1, q1, q1))
        A11[:, self._ia, self._ib] = sums[:, :npair]
        A11[:, self._ib, self._ia] = sums[:, :npair]
        E1 = sums[:, npair:].reshape(L1, q1, m) if m else np.empty((L1, q1, 0))
        EE = design_t_dot(E, wE.T) if wE is not None and E is not None else np.empty((0, 0))  # E'WE
        A21 = A22 = E2 = None
        if self.rest and self.dense:
            A21, A22, E2 = self._dense_coupling_products(w, E, m)
        elif self.rest and self.all_scalar:  # every step's products by bincounts over a pattern found once
            A21, A22, E2 = self.scalar_coupling().products(w, E)
        elif self.rest:
            Wd = sparse.diags(w)
            Z1, Z2 = self.sparse_z()
            Z2w = (Wd @ Z2).tocsr()
            A21 = (Z2w.T @ Z1).tocsr()
            A22 = (Z2w.T @ Z2).tocsr()
            E2 = np.asarray(Z2w.T @ E) if m else np.empty((self.Q2, 0))
        return CrossProducts(A11, E1, EE, A21, A22, E2)

    def scalar_coupling(self) -> ScalarCoupling:
        """The coupling's pattern of crossed scalar terms held sparse, found at the first call."""
        if self._scalar_coupling is None:
            z1 = None if self.ones1[0] else np.asarray(self.lead.Z[:, 0], dtype=float)
            cols2 = [(o + np.asarray(b.codes, dtype=np.intp), None if one else np.asarray(b.Z[:, 0], dtype=float))
                     for b, o, one in zip(self.rest, self.rest_offsets, self.rest_ones)]
            self._scalar_coupling = ScalarCoupling(self.codes1, z1, cols2, self.L1, self.Q2)
        return self._scalar_coupling

    def column_pairs(self, C21: Any) -> ColumnPairs | None:
        """:class:`ColumnPairs` of the coupling C21 when it has the pattern of :meth:`scalar_coupling` (laid out at
        the first call), else None."""
        sc = self._scalar_coupling
        if sc is None or not sparse.isspmatrix_csr(C21) or C21.indptr is not sc.A21_indptr \
                or not np.may_share_memory(C21.indices, sc.A21_indices):
            return None
        if self._column_pairs is None:
            self._column_pairs = ColumnPairs(sc.A21_indptr, sc.A21_indices, self.Q2, self.L1)
        return self._column_pairs

    def _intercept_products(self, w: np.ndarray, E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Z'WE per level and E'WE of a scalar random intercept on sorted rows, over pieces of whole levels of
        about PIECE_ROWS rows: the product W E is never held for every row at once (1M rows x 11 columns: 88 MB
        a block set's worth)."""
        m = E.shape[1]
        E1 = np.empty((self.L1, 1, m))
        EE = np.zeros((m, m))
        bounds = np.searchsorted(self.starts1, np.arange(PIECE_ROWS, self.n, PIECE_ROWS))
        levels = np.unique(np.concatenate([[0], bounds, [self.L1]]))
        for la, lb in zip(levels[:-1], levels[1:]):
            a = int(self.starts1[la])
            b = int(self.starts1[lb]) if lb < self.L1 else self.n
            wE = E[a:b] * w[a:b, None]
            E1[la:lb, 0] = np.add.reduceat(wE, self.starts1[la:lb] - a, axis=0)
            EE += E[a:b].T @ wE
        return E1, EE

    def crossprods_xz(self, w: np.ndarray, X: np.ndarray, z: np.ndarray, unit: bool = False) -> "CrossProducts":
        """:meth:`crossprods` of [Z, X, z] without forming [X, z]: for a scalar random intercept (the commonest
        model) the per-level sums are taken of the columns of X and z themselves (sums over runs of rows when
        the rows are sorted by level, else counts weighted by them), with no n x (p + 1) copy; other structures
        form [X, z] and call :meth:`crossprods`. ``unit``: the weights are all 1."""
        if not (self.q1 == 1 and self.ones1[0] and not self.rest):
            return self.crossprods(w, np.column_stack([X, z]))
        p = X.shape[1]
        m = p + 1
        Xw = X if unit else X * w[:, None]
        zw = z if unit else z * w
        E1 = np.empty((self.L1, 1, m))
        if self.sorted1:
            if p:
                E1[:, 0, :p] = np.add.reduceat(Xw, self.starts1, axis=0)
            E1[:, 0, p] = np.add.reduceat(zw, self.starts1)
        else:  # rows in any order (a linear model's cross-products are computed once: no sort is worth it)
            for k in range(p):
                E1[:, 0, k] = np.bincount(self.codes1, weights=Xw[:, k], minlength=self.L1)
            E1[:, 0, p] = np.bincount(self.codes1, weights=zw, minlength=self.L1)
        EE = np.empty((m, m))
        EE[:p, :p] = X.T @ Xw
        EE[:p, p] = EE[p, :p] = X.T @ zw
        EE[p, p] = float(z @ zw)
        A11 = (self.counts1.astype(float) if unit else self.lead_sum(w)).reshape(self.L1, 1, 1)
        return CrossProducts(A11, E1, EE, None, None, None)

    def _coupling_columns(self) -> tuple[list, list, list, list]:
        """For a small coupling held dense, once: per column of the coupled block its row positions (offset +
        level * q + a, per row) and values (None for a column of ones), the same for the leading factor, and
        the flat cell of every (coupled, leading) and (coupled, coupled) pair of columns."""
        if not hasattr(self, "_dense_cols"):
            Lq1 = self.L1 * self.q1
            cols2 = [(o + np.asarray(b.codes, dtype=np.int64) * b.q + a,
                      None if bool(np.all(b.Z[:, a] == 1.0)) else b.Z[:, a])
                     for b, o in zip(self.rest, self.rest_offsets) for a in range(b.q)]
            cols1 = [(self.codes1.astype(np.int64) * self.q1 + a, None if self.ones1[a] else self.lead.Z[:, a])
                     for a in range(self.q1)]
            cells21 = [[p2 * Lq1 + p1 for p1, _ in cols1] for p2, _ in cols2]
            cells22 = [[p2 * self.Q2 + p3 for p3, _ in cols2] for p2, _ in cols2]
            self._dense_cols = (cols2, cols1, cells21, cells22)
        return self._dense_cols

    def _dense_coupling_products(self, w: np.ndarray, E: np.ndarray | None, m: int
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Z2' W Z1, Z2' W Z2 and Z2' W E of a small coupling as dense arrays, by sums over the cells of the
        fixed row positions (VerbAgg's ids x items: four sparse products and their conversions per PIRLS
        iteration cost 4 ms; these sums 0.3 ms)."""
        cols2, cols1, cells21, cells22 = self._coupling_columns()
        Lq1, Q2 = self.L1 * self.q1, self.Q2
        # each product the sum of its columns' sums, the first one as it is (a random intercept has one of each)
        A21 = A22 = E2 = None
        for i, (p2, z2) in enumerate(cols2):
            wz2 = w if z2 is None else w * z2
            for (_p1, z1), cell in zip(cols1, cells21[i]):
                A21 = _plus(A21, np.bincount(cell, weights=wz2 if z1 is None else wz2 * z1, minlength=Q2 * Lq1))
            for (_p3, z3), cell in zip(cols2, cells22[i]):
                A22 = _plus(A22, np.bincount(cell, weights=wz2 if z3 is None else wz2 * z3, minlength=Q2 * Q2))
            if m and E is not None:
                if m == 1:  # the cells are the coupled rows themselves
                    idx, wE = p2, wz2 * E[:, 0]
                else:
                    idx, wE = (p2[:, None] * m + np.arange(m)[None, :]).ravel(), (wz2[:, None] * E).ravel()
                E2 = _plus(E2, np.bincount(idx, weights=wE, minlength=Q2 * m))
        assert A21 is not None and A22 is not None  # a coupling has columns on both sides
        return A21.reshape(Q2, Lq1), A22.reshape(Q2, Q2), np.zeros((Q2, m)) if E2 is None else E2.reshape(Q2, m)


class _BlockDiagPattern:
    """The sparsity pattern of block-diagonal matrices made of repeated q x q blocks (full blocks), so a new
    matrix of the same shape costs one fill of its data array."""

    def __init__(self, parts: list[tuple[int, int]]):
        rows, cols, base = [], [], 0
        for L, q in parts:
            r = (base + np.arange(L)[:, None, None] * q + np.arange(q)[None, :, None]) * np.ones((1, 1, q), int)
            c = (base + np.arange(L)[:, None, None] * q + np.arange(q)[None, None, :]) * np.ones((1, q, 1), int)
            rows.append(r.ravel())
            cols.append(c.ravel())
            base += L * q
        self.parts = parts
        self.size = base
        m = sparse.csr_matrix((np.arange(1, sum(r.size for r in rows) + 1, dtype=float),
                               (np.concatenate(rows), np.concatenate(cols))), shape=(base, base))
        self.order = (m.data - 1).astype(np.intp)  # position in the row-major fill of each stored entry
        self.indices, self.indptr = m.indices.copy(), m.indptr.copy()

    def _make(self, flat: np.ndarray) -> sparse.csr_matrix:
        return sparse.csr_matrix((flat[self.order], self.indices, self.indptr), shape=(self.size, self.size))

    def fill(self, blocks: list[np.ndarray]) -> sparse.csr_matrix:
        flat = np.concatenate([np.tile(np.asarray(B, dtype=float).ravel(), L)
                               for (L, _q), B in zip(self.parts, blocks)])
        return self._make(flat)

    def fill_stack(self, B: np.ndarray) -> sparse.csr_matrix:
        return self._make(np.ascontiguousarray(B, dtype=float).ravel())


@dataclass
class CrossProducts:
    A11: np.ndarray  # (L1, q1, q1)   Z1' W Z1 per level
    E1: np.ndarray  # (L1, q1, m)     Z1' W E per level
    EE: np.ndarray  # (m, m)          E' W E
    A21: sparse.csr_matrix | None  # (Q2, L1 q1)  Z2' W Z1
    A22: sparse.csr_matrix | None  # (Q2, Q2)     Z2' W Z2
    E2: np.ndarray | None  # (Q2, m)          Z2' W E
    # kept by the crossed scalar factorisation on its first call: the row of each A21 entry and A22 dense
    _rows21: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _A22: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    # the crossed scalar factorisation's Schur complement as one sparse product, once the same cross-products
    # are factored a second time (REML factors them at every theta): coupled_pairs.CoupledPairs, or False
    _pairs: Any = field(default=None, init=False, repr=False, compare=False)
    _calls: int = field(default=0, init=False, repr=False, compare=False)
    # set by an optimiser that evaluates several thetas with the same leading SD in a row: CoupledPairs keeps
    # its matrix of that t1 between them (coupled_pairs.CoupledPairs.lower's keep)
    keep_t1: bool = field(default=False, init=False, repr=False, compare=False)
    # set by an owner that factors these cross-products at many thetas (REML's ProfiledLmm): the stored pairs are
    # then built at the first factorisation when they exceed their cap (coupled_pairs.over_the_cap), not only at
    # the second; PIRLS factors each iteration's cross-products once or twice, where the build does not pay
    reused: bool = field(default=False, init=False, repr=False, compare=False)

