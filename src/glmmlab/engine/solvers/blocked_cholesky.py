"""The penalised system of a general mixed model, factored block by block.

With b = Lambda u (u spherical) the penalised least-squares problem for row weights W is governed by

    [ Lambda' Z' W Z Lambda + I    Lambda' Z' W E ]        E: extra dense columns (X and/or a response)
    [ E' W Z Lambda                E' W E         ]

The random effects come in grouping factors, ordered by decreasing number of levels. The first (leading)
factor's block is block-diagonal, one q1 x q1 block per level, and is factored level by level (batched). The
remaining factors (crossed with the first, or the outer factors of a nesting) form one coupled block of side
Q2 = sum of levels x q; after the leading block is eliminated its Schur complement is dense, and so is the
block of E. A model with one grouping factor has no coupled block at all: everything is batched q x q work.

:class:`Structure` holds the fixed part (codes, Z columns, sparse patterns); :meth:`Structure.crossprods`
computes the weighted cross-products from the rows (O(n q^2)); :func:`factor` scales them by Lambda(theta)
and factors them (no pass over the rows). A linear mixed model computes its cross-products once; PIRLS
recomputes them per iteration as the weights change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg, sparse

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.limits import LIMITS, mib
from glmmlab.engine.model.terms import FactorBlock
from glmmlab.engine.solvers.scaling import design_t_dot

DENSE_COUPLING = 400_000  # entries of the Q2 x (L1 q1) coupling below which it is held dense
MAX_COUPLED_PAIRS = 10_000_000  # products of coupled entries kept by _CoupledPairs (about 12 bytes each)


def _as_dense(a: Any) -> np.ndarray:
    """A sparse or dense matrix as a dense array."""
    return a.toarray() if sparse.issparse(a) else np.asarray(a)


def _level_sum(codes: np.ndarray, values: np.ndarray, n_levels: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n_levels)


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
        self.n_theta = int(bounds[-1])
        offs = np.concatenate([[0], np.cumsum([b.size for b in self.rest])]).astype(int)
        self.rest_offsets = [int(o) for o in offs[:-1]]
        self.Q2 = int(offs[-1])
        self.Q = self.L1 * self.q1 + self.Q2
        self.all_scalar = all(b.q == 1 for b in blocks)
        # A small coupling (e.g. 24 x 6 levels) is cheaper dense than through scipy.sparse's per-call overhead.
        self.dense = self.Q2 * self.L1 * self.q1 <= DENSE_COUPLING
        if self.rest:
            self.Z1 = self._sparse_block(self.lead)
            self.Z2 = sparse.hstack([self._sparse_block(b) for b in self.rest], format="csr")
        else:
            self.Z1 = self.Z2 = None

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
        return [b.lam(theta[s]) for b, s in zip(self.blocks, self.theta_slices)]

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
                out += blk.Z[:, 0] * b[codes, 0]
            else:
                out += np.einsum("nq,nq->n", blk.Z, b[codes])
        return out

    def _lead_products(self) -> None:
        """The products z_a z_b (a <= b) of the leading factor's columns, once (an empty array for two columns of
        ones, whose product is never used: a random intercept keeps no column of ones per row)."""
        if not hasattr(self, "_ZZ"):
            Z1, q1 = self.lead.Z, self.q1
            self._pairs = [(a, b) for a in range(q1) for b in range(a, q1)]
            self._ZZ = [np.empty(0) if self.ones1[a] and self.ones1[b] else Z1[:, a] * Z1[:, b]
                        for a, b in self._pairs]

    def lead_quadratic(self, C: np.ndarray) -> np.ndarray:
        """Per row, z_i' C_j z_i for a symmetric (L1, q1, q1) stack C at the row's leading level j."""
        self._lead_products()
        out = np.zeros(self.n)
        for k, (a, b) in enumerate(self._pairs):
            coef = self.lead_expand(C[:, a, b] if a == b else 2.0 * C[:, a, b])
            if not (self.ones1[a] and self.ones1[b]):
                coef *= self._ZZ[k]
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
        return np.column_stack([_level_sum(self.codes1, row, self.L1) for row in prods])

    # -- cross-products ------------------------------------------------------------------------------
    def crossprods(self, w: np.ndarray, E: np.ndarray | None) -> "CrossProducts":
        """Weighted cross-products of [Z, E] (E: n x m dense, or None)."""
        if self.q1 == 1 and self.ones1[0] and not self.rest and self.sorted1:
            # one scalar random intercept on rows sorted by level (the commonest model, and every mode-search
            # step's): sums over runs of rows of w and w E themselves, no k x n array of products
            A11 = np.add.reduceat(w, self.starts1).reshape(self.L1, 1, 1)
            if E is None or E.shape[1] == 0:
                return CrossProducts(A11, np.empty((self.L1, 1, 0)), np.empty((0, 0)), None, None, None)
            wE = E * w[:, None]
            E1 = np.add.reduceat(wE, self.starts1, axis=0).reshape(self.L1, 1, E.shape[1])
            return CrossProducts(A11, E1, E.T @ wE, None, None, None)
        Z1, L1, q1 = self.lead.Z, self.L1, self.q1
        self._lead_products()
        pairs, npair = self._pairs, len(self._pairs)
        m = 0 if E is None else E.shape[1]
        # every per-row product as one contiguous row of a k x n array, then one pass of per-level sums
        prods = np.empty((npair + q1 * m, self.n))
        for k, (a, b) in enumerate(pairs):
            if self.ones1[a] and self.ones1[b]:
                prods[k] = w
            else:
                np.multiply(self._ZZ[k], w, out=prods[k])
        wE = None  # (m, n): the rows w e_c
        if m and E is not None:
            a1 = self.ones1.index(True) if any(self.ones1) else None
            if a1 is not None:  # an intercept column's products are the rows w e_c themselves
                wE = prods[npair + a1 * m: npair + (a1 + 1) * m]
                np.multiply(E.T, w[None, :], out=wE)
            else:
                wE = (w[:, None] * E).T
            for a in range(q1):
                for c in range(m):
                    if a == a1:
                        continue
                    if self.ones1[a]:
                        prods[npair + a * m + c] = wE[c]
                    else:
                        np.multiply(Z1[:, a], wE[c], out=prods[npair + a * m + c])
        sums = self._row_sums(prods)
        A11 = np.empty((L1, q1, q1))
        for k, (a, b) in enumerate(pairs):
            A11[:, a, b] = sums[:, k]
            A11[:, b, a] = sums[:, k]
        E1 = sums[:, npair:].reshape(L1, q1, m) if m else np.empty((L1, q1, 0))
        EE = design_t_dot(E, wE.T) if wE is not None and E is not None else np.empty((0, 0))  # E'WE
        A21 = A22 = E2 = None
        if self.rest and self.dense:
            A21, A22, E2 = self._dense_coupling_products(w, E, m)
        elif self.rest:
            Wd = sparse.diags(w)
            Z2w = (Wd @ self.Z2).tocsr()
            A21 = (Z2w.T @ self.Z1).tocsr()
            A22 = (Z2w.T @ self.Z2).tocsr()
            E2 = np.asarray(Z2w.T @ E) if m else np.empty((self.Q2, 0))
        return CrossProducts(A11, E1, EE, A21, A22, E2)

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
        A21 = np.zeros(Q2 * Lq1)
        A22 = np.zeros(Q2 * Q2)
        E2 = np.zeros((Q2, m))
        for i, (p2, z2) in enumerate(cols2):
            wz2 = w if z2 is None else w * z2
            for (_p1, z1), cell in zip(cols1, cells21[i]):
                A21 += np.bincount(cell, weights=wz2 if z1 is None else wz2 * z1, minlength=Q2 * Lq1)
            for (_p3, z3), cell in zip(cols2, cells22[i]):
                A22 += np.bincount(cell, weights=wz2 if z3 is None else wz2 * z3, minlength=Q2 * Q2)
            if m and E is not None:
                idx = (p2[:, None] * m + np.arange(m)[None, :]).ravel()
                E2 += np.bincount(idx, weights=(wz2[:, None] * E).ravel(), minlength=Q2 * m).reshape(Q2, m)
        return A21.reshape(Q2, Lq1), A22.reshape(Q2, Q2), E2


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
    # are factored a second time (REML factors them at every theta)
    _pairs: "_CoupledPairs | bool | None" = field(default=None, init=False, repr=False, compare=False)
    _calls: int = field(default=0, init=False, repr=False, compare=False)


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

    def solve_u(self, col: int) -> np.ndarray:
        """u = H^-1 Lambda' Z' W e for the E column ``col`` (back substitution of the stored forward pass)."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        rhs1 = self.G1[:, :, col]
        if self.L22 is not None:
            assert self.G2 is not None and self.C21 is not None  # the coupled factors' parts come together
            u2 = linalg.solve_triangular(self.L22, self.G2[:, col], lower=True, trans="T")
            rhs1 = rhs1 - (self.C21.T @ u2).reshape(L1, q1)
        else:
            u2 = np.empty(0)
        u1 = _batched_solve_upper(self.L11, rhs1)
        return np.concatenate([u1.ravel(), u2])

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """H^-1 rhs for a vector of length Q (forward and back substitution through the blocks)."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        y1 = _batched_solve_lower(self.L11, rhs[: L1 * q1].reshape(L1, q1))
        if self.L22 is None:
            return _batched_solve_upper(self.L11, y1).ravel()
        assert self.C21 is not None
        y2 = linalg.solve_triangular(self.L22, rhs[L1 * q1:] - self.C21 @ y1.ravel(), lower=True)
        x2 = linalg.solve_triangular(self.L22, y2, lower=True, trans="T")
        x1 = _batched_solve_upper(self.L11, y1 - (self.C21.T @ x2).reshape(L1, q1))
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
        L22inv = linalg.solve_triangular(self.L22, np.eye(Q2), lower=True)
        Sinv = L22inv.T @ L22inv
        C = _as_dense(self.C21)  # (Q2, L1 q1)
        # X12 = H11^-1 H12 = L11^-T C21'; (H^-1)_12 = -X12 S^-1; diag blocks of (H^-1)_11 add X12 S^-1 X12'
        X12 = np.einsum("jba,kjb->jak", Linv1, C.reshape(Q2, L1, q1)).reshape(L1 * q1, Q2)
        H12 = -(X12 @ Sinv)
        add = np.einsum("jak,jbk->jab", (-H12).reshape(L1, q1, Q2), X12.reshape(L1, q1, Q2))
        return H11 + add, H12, Sinv

    def diag_blocks_inverse(self, structure: Structure) -> list[np.ndarray]:
        """The diagonal blocks of H^-1 per level of each factor: (levels, q, q) arrays."""
        L1, q1 = self.L11.shape[0], self.L11.shape[1]
        Linv1 = batched_inverse_lower(self.L11)  # (L1, q1, q1), lower
        out1 = np.einsum("jka,jkb->jab", Linv1, Linv1)
        res = [out1]
        if self.L22 is None:
            return res
        assert self.C21 is not None
        # L^-1 = [[L11^-1, 0], [-L22^-1 C21 L11^-1, L22^-1]]; the lower-left block adds to the leading
        # factor's diagonal blocks, and L22^-1 gives those of the coupled factors.
        L22inv = linalg.solve_triangular(self.L22, np.eye(self.L22.shape[0]), lower=True)
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


def _block_diag_sparse(B: np.ndarray) -> sparse.csr_matrix:
    L, q, _ = B.shape
    rows = (np.arange(L)[:, None, None] * q + np.arange(q)[None, :, None]) * np.ones((1, 1, q), dtype=int)
    cols = (np.arange(L)[:, None, None] * q + np.arange(q)[None, None, :]) * np.ones((1, q, 1), dtype=int)
    return sparse.csr_matrix((B.ravel(), (rows.ravel(), cols.ravel())), shape=(L * q, L * q))


SUBSTITUTION_Q = 4  # up to this block size, batched triangular solves run as substitution over the levels


def batched_cholesky(H: np.ndarray) -> np.ndarray:
    """The lower Cholesky factors of a (k, q, q) stack of positive definite matrices; for small q column by
    column, each step vectorised over the stack (LAPACK per 2 x 2 matrix costs more than the arithmetic)."""
    q = H.shape[1]
    if q > SUBSTITUTION_Q:
        return np.linalg.cholesky(H)
    L = np.zeros_like(H)
    for j in range(q):
        d = H[:, j, j] - np.sum(L[:, j, :j] ** 2, axis=1) if j else H[:, j, j]
        if not np.all(d > 0):
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        L[:, j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            num = H[:, i, j] - np.sum(L[:, i, :j] * L[:, j, :j], axis=1) if j else H[:, i, j]
            L[:, i, j] = num / L[:, j, j]
    return L


def batched_inverse_lower(L: np.ndarray) -> np.ndarray:
    """L^-1 for a (k, q, q) stack of lower triangular matrices."""
    q = L.shape[1]
    if q > SUBSTITUTION_Q:
        return np.linalg.inv(L)
    return _batched_solve_lower(L, np.broadcast_to(np.eye(q), L.shape))


def _batched_solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L x = B per level; L (k, q, q) lower, B (k, q) or (k, q, m)."""
    q = L.shape[1]
    if q == 1:
        return B / (L[:, 0, :1] if B.ndim == 2 else L[:, :1, :1])
    if q <= SUBSTITUTION_Q:  # forward substitution, each step vectorised over the levels (no LU per level)
        X = np.empty(B.shape)
        for a in range(q):
            acc = B[:, a].copy()
            for c in range(a):
                acc -= (L[:, a, c, None] if B.ndim == 3 else L[:, a, c]) * X[:, c]
            X[:, a] = acc / (L[:, a, a, None] if B.ndim == 3 else L[:, a, a])
        return X
    return np.linalg.solve(L, B[..., None])[..., 0] if B.ndim == 2 else np.linalg.solve(L, B)


def _batched_solve_upper(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve L' x = B per level (L lower)."""
    q = L.shape[1]
    if q == 1:
        return B / L[:, 0, :1] if B.ndim == 2 else B / L[:, :1, :1]
    if q <= SUBSTITUTION_Q:  # back substitution with L' (row a of L' is column a of L)
        X = np.empty(B.shape)
        for a in range(q - 1, -1, -1):
            acc = B[:, a].copy()
            for c in range(a + 1, q):
                acc -= (L[:, c, a, None] if B.ndim == 3 else L[:, c, a]) * X[:, c]
            X[:, a] = acc / (L[:, a, a, None] if B.ndim == 3 else L[:, a, a])
        return X
    Lt = np.swapaxes(L, 1, 2)
    return np.linalg.solve(Lt, B[..., None])[..., 0] if B.ndim == 2 else np.linalg.solve(Lt, B)


def factor(structure: Structure, cp: CrossProducts, theta: np.ndarray) -> Factor:
    """Scale the cross-products by Lambda(theta) and factor the penalised system blockwise."""
    lams = structure.lambdas(theta)
    Lam1 = lams[0]
    L1, q1 = structure.L1, structure.q1
    if q1 == 1:
        t = Lam1[0, 0]
        H11 = cp.A11 * (t * t) + 1.0
        L11 = np.sqrt(H11)
        G1 = cp.E1 * (t / L11)
    else:
        H11 = Lam1.T @ cp.A11 @ Lam1
        H11[:, np.arange(q1), np.arange(q1)] += 1.0
        L11 = batched_cholesky(H11)
        F1 = Lam1.T @ cp.E1
        G1 = _batched_solve_lower(L11, F1) if F1.shape[2] else F1
    m = cp.EE.shape[0]
    if q1 == 1:  # a scalar term: plain products (einsum's dispatch costs more than the sums on small data)
        logdet = 2.0 * float(np.sum(np.log(L11)))
        g1 = G1[:, 0, :]
        SEE = cp.EE - g1.T @ g1 if m else cp.EE
    else:
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2))))
        SEE = cp.EE - np.einsum("jam,jak->mk", G1, G1) if m else cp.EE
    C21 = L22 = G2 = None
    if structure.rest and structure.dense:
        return _factor_dense_coupling(structure, cp, lams, L11, G1, SEE, logdet)
    if structure.rest and structure.all_scalar:
        return _factor_scalar_coupling(structure, cp, lams, L11, G1, SEE, logdet)
    if structure.rest:
        Lam2 = structure.lambda2(lams)
        Lam1_sp = structure.lambda1_sparse(Lam1)
        B21 = (Lam2.T @ cp.A21 @ Lam1_sp).tocsr()
        L11inv = structure.block_diag1(batched_inverse_lower(L11) if q1 > 1 else 1.0 / L11)
        C21 = (B21 @ L11inv.T).tocsr()
        S22 = (Lam2.T @ cp.A22 @ Lam2).toarray() + np.eye(structure.Q2) - (C21 @ C21.T).toarray()
        L22 = linalg.cholesky(S22, lower=True, check_finite=False)
        logdet += 2.0 * float(np.sum(np.log(np.diag(L22))))
        if m:
            S2E = np.asarray(Lam2.T @ cp.E2) - np.asarray(C21 @ G1.reshape(L1 * q1, m))
            G2 = linalg.solve_triangular(L22, S2E, lower=True, check_finite=False)
            SEE = SEE - G2.T @ G2
        else:
            G2 = np.empty((structure.Q2, 0))
    return Factor(L11, G1, C21, L22, G2, SEE, logdet)


def _factor_scalar_coupling(structure: Structure, cp: CrossProducts, lams: list[np.ndarray], L11: np.ndarray,
                            G1: np.ndarray, SEE: np.ndarray, logdet: float) -> Factor:
    """Crossed scalar terms with a large sparse coupling (InstEval's students x instructors): Lambda is
    diagonal, so scaling the stored cross-products is a scaling of their data arrays; the only sparse product
    per evaluation is C21 C21'."""
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
    if cp._pairs is None and cp._calls == 2:
        cp._pairs = _CoupledPairs.build(A21, cp.A22, cp.A11[:, 0, 0], Q2)
    if isinstance(cp._pairs, _CoupledPairs):
        S22 = cp._pairs.lower(t1, lam2)
    else:
        S22 = cp._A22 * np.outer(lam2, lam2)
        S22 -= (C21 @ C21.T).toarray()
    S22[np.diag_indices(Q2)] += 1.0
    L22 = linalg.cholesky(S22, lower=True, check_finite=False, overwrite_a=True)
    logdet += 2.0 * float(np.sum(np.log(np.diag(L22))))
    m = cp.EE.shape[0]
    if m:
        S2E = lam2[:, None] * np.asarray(cp.E2) - np.asarray(C21 @ G1.reshape(L1, m))
        G2 = linalg.solve_triangular(L22, S2E, lower=True, check_finite=False)
        SEE = SEE - G2.T @ G2
    else:
        G2 = np.empty((Q2, 0))
    return Factor(L11, G1, C21, L22, G2, SEE, logdet)


class _CoupledPairs:
    """The lower triangle of Lambda2' (A22 - A21 D A21') Lambda2 for crossed scalar terms, where D is diagonal
    over the leading factor's levels (D_j = t1^2 / (t1^2 a_j + 1)) and Lambda2 diagonal: every entry is a fixed
    linear combination of the D_j, so with the products A21[a, j] A21[b, j] stored once as a sparse matrix
    (pairs x leading levels, A22 as one more column) an evaluation is one sparse matrix-vector product and a
    scatter, instead of the sparse product C21 C21' (its cost: InstEval's 1.8 million products)."""

    def __init__(self, M: sparse.csc_matrix, a: np.ndarray, keys: np.ndarray, Q2: int):
        self.M, self.a, self.keys, self.Q2 = M, a, keys, Q2
        self.rows, self.cols = keys // Q2, keys % Q2

    @classmethod
    def build(cls, A21: sparse.csr_matrix, A22, a11: np.ndarray, Q2: int) -> "_CoupledPairs | bool":
        """The stored products, or False when there would be more than MAX_COUPLED_PAIRS of them. ``a11``: the
        leading factor's diagonal (Z1' W Z1); levels with equal a11 share D_j, so their columns are summed once
        (InstEval: 2,972 students, 86 distinct numbers of ratings; 1.8 million products become 1.06 million)."""
        csc = sparse.csc_matrix(A21)
        csc.sort_indices()  # rows ascending within each leading level: the later entry of a pair is the lower row
        L1 = csc.shape[1]
        per_col = np.diff(csc.indptr)
        col_of = np.repeat(np.arange(L1), per_col)
        pos = np.arange(csc.nnz) - csc.indptr[:-1][col_of]  # an entry's place within its leading level
        count = pos + 1  # pairs with itself and every earlier entry of its level
        total = int(np.sum(count))
        if total > MAX_COUPLED_PAIRS:
            return False
        e1 = np.repeat(np.arange(csc.nnz), count)
        e2 = np.repeat(csc.indptr[:-1][col_of], count) + (np.arange(total) - np.repeat(np.cumsum(count) - count,
                                                                                           count))
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
        M = sparse.csc_matrix((values, index[keys], indptr), shape=(uniq.size, L1 + 1))
        a, group = np.unique(a11, return_inverse=True)
        merge = sparse.csr_matrix((np.ones(L1 + 1), (np.arange(L1 + 1), np.append(group.ravel(), a.size))),
                                  shape=(L1 + 1, a.size + 1))
        return cls(sparse.csc_matrix(M @ merge), a, uniq, Q2)

    def lower(self, t1: float, lam2: np.ndarray) -> np.ndarray:
        """The dense Q2 x Q2 matrix with the lower triangle filled (the upper left zero)."""
        vals = self.M @ np.append(t1 * t1 / (t1 * t1 * self.a + 1.0), 1.0)
        vals *= lam2[self.rows] * lam2[self.cols]
        out = np.zeros(self.Q2 * self.Q2)
        out[self.keys] = vals
        return out.reshape(self.Q2, self.Q2)


def _apply_lambda_rows(structure: Structure, lams: list[np.ndarray], M: np.ndarray) -> np.ndarray:
    """Lambda2' M for the coupled block's rows (M: Q2 x k), block by block."""
    out = np.empty_like(M)
    for b, o, L in zip(structure.rest, structure.rest_offsets, lams[1:]):
        part = M[o: o + b.size].reshape(b.n_levels, b.q, -1)
        out[o: o + b.size] = np.einsum("ba,jbk->jak", L, part).reshape(b.size, -1)
    return out


def _factor_dense_coupling(structure: Structure, cp: CrossProducts, lams: list[np.ndarray], L11: np.ndarray,
                           G1: np.ndarray, SEE: np.ndarray, logdet: float) -> Factor:
    L1, q1, Q2 = structure.L1, structure.q1, structure.Q2
    assert cp.A21 is not None and cp.A22 is not None and cp.E2 is not None  # the model has coupled factors
    Lam1 = lams[0]
    # B21 = Lambda2' A21 Lambda1, then C21 = B21 L11^-T (per level of the leading factor)
    B = _apply_lambda_rows(structure, lams, cp.A21)
    B = np.einsum("kjb,ba->kja", B.reshape(Q2, L1, q1), Lam1)
    Linv = batched_inverse_lower(L11) if q1 > 1 else 1.0 / L11
    C = np.einsum("kjb,jab->kja", B, Linv).reshape(Q2, L1 * q1)
    S22 = _apply_lambda_rows(structure, lams, _apply_lambda_rows(structure, lams, cp.A22).T).T
    S22 = S22 + np.eye(Q2) - C @ C.T
    L22 = linalg.cholesky(S22, lower=True, check_finite=False)
    logdet += 2.0 * float(np.sum(np.log(np.diag(L22))))
    m = cp.EE.shape[0]
    if m:
        S2E = _apply_lambda_rows(structure, lams, cp.E2) - C @ G1.reshape(L1 * q1, m)
        G2 = linalg.solve_triangular(L22, S2E, lower=True, check_finite=False)
        SEE = SEE - G2.T @ G2
    else:
        G2 = np.empty((Q2, 0))
    return Factor(L11, G1, C, L22, G2, SEE, logdet)
