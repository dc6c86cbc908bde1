"""Crossed grouping factors on Dask: the penalised system factored across blocks of rows cut by the leading factor.

With crossed (or partially crossed) factors the modes of every row are coupled through the other factors' levels,
so the blocks of rows are no longer independent. They still split the work. With the rows cut by the leading
factor (the one with the most levels) every level of it lives in one block, so the blocked factor of
:mod:`glmmlab.engine.solvers.blocked_cholesky` splits as well:

- each block factors its own leading levels (``L11``, ``G1 = L11^-1 Lambda1' Z1' W E``) and computes its part of
  the coupled block's Schur complement, ``Lambda2' Z2b' W Z2b Lambda2 - C_b C_b'`` with
  ``C_b = Lambda2' Z2b' W Z1b Lambda1 L11^-T``, and of ``Lambda2' Z2b' W E - C_b G1_b`` and ``E' W E - G1_b' G1_b``
  (:class:`PartialFactor`, on the workers, the other factors' levels coded globally);
- the driver adds the parts, adds the identity and factors the Q2 x Q2 block once (:class:`CoupledFactor`):
  ``L22``, ``G2``, the log-determinant and the Schur complement of E are those of the whole data;
- a solve runs forward on the blocks (their ``L11^-1``), through ``L22`` on the driver, and back on the blocks.

No worker holds more than its rows and one Q2 x Q2 block; the driver holds the reduced block. The numbers are
those of the in-memory factor (the same sums, added in another order).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.solvers.batched import batched_inverse_lower, batched_solve_lower, batched_solve_upper
from glmmlab.engine.solvers.blocked_cholesky import factor_part, finish_coupled, inverse_from_cholesky
from glmmlab.engine.solvers.coupled_pairs import CoupledPairs
from glmmlab.engine.solvers.structure import CrossProducts, Structure

# the stored products of the coupled block (coupled_pairs.CoupledPairs) that a block of rows keeps between the
# evaluations of a linear mixed model at most: a worker holds a dozen blocks, and the engine's own caps (for the
# whole data in memory) would let each keep ~400 MB
ACTOR_PAIRS_BYTES = 64 * 2**20

# random effects of the factors other than the leading one that a crossed fit on Dask couples at most: their dense
# block (Q2 x Q2 doubles, 3.2 GB at 20,000) is held by the driver and by every worker during an evaluation
COUPLED_LEVELS = 20_000


def check_coupled_levels(rest: list[tuple[str, int, int]], lead: tuple[str, int]) -> None:
    """Refuse a crossed model whose coupled block is too large for Dask, saying why and what fits. ``rest``:
    (name, levels, effects per level) of the factors other than the leading one; ``lead``: its (name, levels)."""
    q2 = sum(nl * q for _, nl, q in rest)
    if q2 <= COUPLED_LEVELS:
        return
    which = ", ".join(f"{name!r} ({nl:,} levels{'' if q == 1 else f' x {q} effects'})" for name, nl, q in rest)
    raise GlmmInputError(
        f"the grouping factors cross: {which} {'is' if len(rest) == 1 else 'are'} crossed with {lead[0]!r} "
        f"({lead[1]:,} levels), so their {q2:,} random effects are coupled to every row. On a Dask DataFrame the "
        f"rows are cut by {lead[0]!r} and every worker adds its part of one dense {q2:,} x {q2:,} block, which "
        f"is held whole on the driver and on each worker; that fits up to {COUPLED_LEVELS:,} coupled random "
        "effects (the grouping factors other than the one with the most levels, together). Fit with fewer "
        "levels in those factors (or make one of them a fixed effect, or nest the factors), or fit in memory")


class PartialFactor:
    """One block's part of the blocked factor at one theta: its leading levels factored, its coupling ``C``
    (dense or sparse, Q2 x L1b q1) and its parts of the coupled block (:meth:`sums`)."""

    def __init__(self, st: Structure, cp: CrossProducts, theta: np.ndarray):
        lams = st.lambdas(np.asarray(theta, dtype=float))
        self.L1, self.q1, self.Q2 = st.L1, st.q1, st.Q2
        L11, G1, C, S22, S2E, SEE, logdet = factor_part(st, cp, lams, identity=False)
        assert S22 is not None  # a coupled structure
        if isinstance(cp._pairs, CoupledPairs) and cp._pairs.nbytes() > ACTOR_PAIRS_BYTES:
            cp._pairs = False  # a worker holds many blocks: above the cap, the sparse product at every theta
        self.L11, self.G1, self.C = L11, G1, C
        self.parts = {"logdet": logdet, "SEE": SEE, "S22": S22,
                      "S2E": S2E if S2E is not None else np.zeros((st.Q2, 0))}

    def sums(self) -> dict:
        """What the driver adds up (and then forgets here: the Q2 x Q2 part is the largest array of a block)."""
        out, self.parts = self.parts, {}
        return out

    def _upper(self, rhs1: np.ndarray) -> np.ndarray:
        if self.q1 == 1:
            return rhs1 / self.L11[:, :, 0]
        return batched_solve_upper(self.L11, rhs1)

    def _lower(self, rhs1: np.ndarray) -> np.ndarray:
        if self.q1 == 1:
            return rhs1 / self.L11[:, :, 0]
        return batched_solve_lower(self.L11, rhs1)

    def back(self, y1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        """The leading levels' part of a solve, ``L11^-T (y1 - C' x2)``, given the coupled part ``x2`` (flat)."""
        return self._upper(y1.reshape(self.L1, self.q1) - np.asarray(self.C.T @ x2).reshape(self.L1, self.q1)
                           ).ravel()

    def u1(self, g1: np.ndarray, u2: np.ndarray) -> np.ndarray:
        """The leading levels' modes for the forward-solved right-hand side ``g1`` ((L1, q1)) and ``u2``."""
        return self.back(g1, u2)

    def forward(self, rhs1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``y1 = L11^-1 rhs1`` (kept by the caller) and this block's ``C y1`` (what the driver subtracts)."""
        y1 = self._lower(np.asarray(rhs1, dtype=float).reshape(self.L1, self.q1)).ravel()
        return y1, np.asarray(self.C @ y1).ravel()

    def lead_inverse(self, Sinv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The diagonal blocks of (H^-1)_11 at this block's leading levels ((L1, q1, q1)) and its rows of
        (H^-1)_12 ((L1 q1, Q2), dense), given the inverse ``Sinv`` of the coupled block's Schur complement."""
        L1, q1, Q2 = self.L1, self.q1, self.Q2
        Linv1 = 1.0 / self.L11 if q1 == 1 else batched_inverse_lower(self.L11)
        H11 = np.einsum("jka,jkb->jab", Linv1, Linv1)
        C = self.C.toarray() if sparse.issparse(self.C) else self.C
        X12 = np.einsum("jba,kjb->jak", Linv1, C.reshape(Q2, L1, q1)).reshape(L1 * q1, Q2)
        H12 = -(X12 @ Sinv)
        add = np.einsum("jak,jbk->jab", (-H12).reshape(L1, q1, Q2), X12.reshape(L1, q1, Q2))
        return H11 + add, H12


def add_parts(total: dict | None, part: dict) -> dict:
    """The running sum of the blocks' parts of one factor (:meth:`PartialFactor.sums`): the first part itself (a
    copy of its arrays), then each part added into it, so the driver holds the sum and the parts in flight."""
    if total is None:
        return {k: np.array(v, dtype=float) for k, v in part.items()}
    for k, v in part.items():
        total[k] += v
    return total


class CoupledFactor:
    """The driver's side of the factor at one theta: the blocks' parts added (:func:`add_parts`), the coupled
    block factored."""

    def __init__(self, parts: dict):
        S22 = parts.pop("S22")
        S22[np.diag_indices(S22.shape[0])] += 1.0
        self.L22, self.G2, self.SEE, self.logdet = finish_coupled(S22, parts["S2E"], parts["SEE"],
                                                                  float(parts["logdet"]))
        del S22
        self._L22inv: np.ndarray | None = None

    def upper(self, y2: np.ndarray) -> np.ndarray:
        """``L22^-T y2``."""
        return linalg.solve_triangular(self.L22, y2, lower=True, trans="T", check_finite=False)

    def middle(self, rhs2: np.ndarray, cy1: np.ndarray) -> np.ndarray:
        """The coupled part of a solve: ``L22^-T L22^-1 (rhs2 - sum_b C_b y1_b)``."""
        y2 = linalg.solve_triangular(self.L22, rhs2 - cy1, lower=True, check_finite=False)
        return self.upper(y2)

    @property
    def L22inv(self) -> np.ndarray:
        if self._L22inv is None:
            self._L22inv = linalg.solve_triangular(self.L22, np.eye(self.L22.shape[0]), lower=True,
                                                   check_finite=False)
        return self._L22inv

    def Sinv(self) -> np.ndarray:
        """The inverse of the coupled block's Schur complement, (H^-1)_22 (LAPACK's potri, as the in-memory factor
        computes it: a third of the operations of L22^-1 and a product)."""
        return inverse_from_cholesky(self.L22)

    def rest_inverse(self, st: Structure) -> list[np.ndarray]:
        """The diagonal blocks of (H^-1)_22 per level of each coupled factor: (levels, q, q) arrays."""
        Li, Q2 = self.L22inv, self.L22.shape[0]
        out = []
        for b, o in zip(st.rest, st.rest_offsets):
            cols = Li[:, o: o + b.size].reshape(Q2, b.n_levels, b.q)
            out.append(np.einsum("kja,kjb->jab", cols, cols))
        return out
