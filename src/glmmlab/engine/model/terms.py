"""Random-effects terms: the engine's unit for general mixed models.

A :class:`RandomTerm` is one parenthesised term of lme4's language after expansion, ``(1 + x | g)``: the
grouping codes of ``g``, the term's model-matrix columns Z (n x q) and whether its q effects are correlated
(an unstructured q x q covariance) or not (``(x || g)``: a diagonal one). A :class:`ModelFrame` is what every
front door hands the engine: the response, the fixed-effects design X, prior weights, an offset and the random
terms, all as arrays on the rows used.

:class:`FactorBlock` merges the terms on one grouping factor into one block of q effects per level, with a
covariance that is block-diagonal over its terms; theta holds, per correlated sub-block, the lower triangle of
its relative Cholesky factor column by column (lme4's order). A term with a covariance structure (``cs``,
``ar1``, ``toep``, ``ou``: :mod:`glmmlab.engine.model.covstruct`) is one sub-block whose theta is the structure's
own parameters instead; ``diag`` is the uncorrelated form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glmmlab.engine.model.covstruct import MAPPED, CovStructure


def rows_of(Z: np.ndarray, index: Any) -> np.ndarray:
    """``Z[index]`` (rows of a term's model-matrix columns); a Z that is one row seen n times (an intercept's
    ones: ``np.broadcast_to``) stays a view of that row, so it never takes n x q of memory."""
    if Z.ndim == 2 and Z.shape[0] > 1 and Z.strides[0] == 0:
        n = len(range(Z.shape[0])[index]) if isinstance(index, slice) else int(np.asarray(index).shape[0])
        return np.broadcast_to(Z[0], (n, Z.shape[1]))
    return Z[index]


def ones_column(n: int) -> np.ndarray:
    """A random intercept's Z: n x 1 ones, as a read-only view of one number (see :func:`rows_of`)."""
    return np.broadcast_to(1.0, (n, 1))


@dataclass
class RandomTerm:
    """One random-effects term on the rows used: ``(names | component)``."""

    component: str  # the grouping factor as lme4 names it: "Subject", "cask:batch"
    codes: np.ndarray  # int, (n,), index into levels
    levels: list[str]  # level labels ("a:A" for an interaction factor)
    Z: np.ndarray  # float, (n, q): the term's model-matrix columns
    names: list[str]  # the q column names: "(Intercept)", "Days", "urbanY"
    correlated: bool = True  # False for (x || g): independent effects
    structure: str = "us"  # the covariance structure's keyword (us, diag, cs, ar1, toep, ou)
    times: tuple[float, ...] | None = None  # ou: the time of each column
    label: str = ""  # the term as glmmTMB labels it, without its keyword: "0 + time | id" ("" : from the names)

    @property
    def q(self) -> int:
        return int(self.Z.shape[1])

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass
class ModelFrame:
    """A model's data, ready for the engine (all arrays on the ``n`` rows used, in input order)."""

    response: str  # the response as written ("y", "cbind(s, f)")
    y: np.ndarray  # float (n,); for binomial trials the proportion
    X: np.ndarray  # float (n, p)
    x_names: list[str]  # R's coefficient names
    terms: list[RandomTerm]
    rows: np.ndarray  # int (n,): 0-based input rows used
    n_input: int
    weights: np.ndarray | None = None  # prior weights (binomial: trials), None = all 1
    offset: np.ndarray | None = None  # None = 0
    intercept: bool = True
    formula: str = ""
    warnings: list[str] = field(default_factory=list)
    recipe: Any = None  # how the services rebuild this design for new rows (prediction); opaque to the engine
    # the designs of a zero model and a dispersion model on the same rows (glmmTMB's ziformula, dispformula):
    # {"zi_X", "zi_names", "zi_off", "disp_X", "disp_names"} (absent parts None), or None for neither
    parts: dict | None = None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass
class FactorBlock:
    """The random effects of one grouping factor: q effects per level, ordered level-major
    (u[level * q + k]), with a covariance block-diagonal over ``groups`` (lists of column indices)."""

    component: str
    codes: np.ndarray
    levels: list[str]
    Z: np.ndarray  # (n, q)
    names: list[str]
    groups: list[list[int]]  # correlated sub-blocks, e.g. [[0, 1]] or [[0], [1]]
    # per sub-block its covariance structure (None: lme4's unstructured Cholesky factor); None: all unstructured
    structures: list[CovStructure | None] | None = None
    # per term on this factor: (structure keyword, its columns, its label); empty: one term per sub-block
    term_layout: list[tuple[str, list[int], str]] = field(default_factory=list)
    _plan: Any = field(default=None, init=False, repr=False, compare=False)  # lam's, see _lam_plan

    @property
    def q(self) -> int:
        return int(self.Z.shape[1])

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def size(self) -> int:
        return self.q * self.n_levels

    def _structs(self) -> list[CovStructure | None]:
        return self.structures if self.structures is not None else [None] * len(self.groups)

    @property
    def structured(self) -> bool:
        """Whether some sub-block has a mapped covariance structure (its theta is not Lambda's entries)."""
        return any(s is not None for s in self._structs())

    @property
    def n_theta(self) -> int:
        return sum(len(g) * (len(g) + 1) // 2 if s is None else s.n_params
                   for g, s in zip(self.groups, self._structs()))

    def entry_positions(self) -> list[tuple[int, int]]:
        """(row, column) in Lambda of every free entry of the sub-blocks, in lme4's order (per sub-block, the lower
        triangle column by column): theta's positions for unstructured sub-blocks."""
        return [(g[i], g[j]) for g in self.groups for j in range(len(g)) for i in range(j, len(g))]

    def theta_positions(self) -> list[tuple[int, int]]:
        """(row, column) in Lambda of each theta entry, in lme4's order: per correlated sub-block, the lower
        triangle column by column. A structured sub-block's parameters are no entries of Lambda: its relative SDs
        are given the diagonal positions of their columns and its correlation parameters (-1, -1)."""
        out: list[tuple[int, int]] = []
        for g, s in zip(self.groups, self._structs()):
            if s is None:
                out += [(g[i], g[j]) for j in range(len(g)) for i in range(j, len(g))]
            else:
                out += [(g[i], g[i]) for i in range(s.n_sd)] + [(-1, -1)] * s.n_cor
        return out

    def theta_lower(self) -> np.ndarray:
        """0 for diagonal entries of the Cholesky factor (and relative SDs), -inf for the rest (lme4's bounds)."""
        out: list[np.ndarray] = []
        for g, s in zip(self.groups, self._structs()):
            out.append(s.lower() if s is not None else
                       np.array([0.0 if i == j else -np.inf for j in range(len(g)) for i in range(j, len(g))]))
        return np.concatenate(out) if out else np.zeros(0)

    def theta_start(self) -> np.ndarray:
        out: list[np.ndarray] = []
        for g, s in zip(self.groups, self._structs()):
            out.append(s.start() if s is not None else
                       np.array([1.0 if i == j else 0.0 for j in range(len(g)) for i in range(j, len(g))]))
        return np.concatenate(out) if out else np.zeros(0)

    def theta_spans(self) -> list[slice]:
        """Each sub-block's slice of this block's theta."""
        out, k = [], 0
        for g, s in zip(self.groups, self._structs()):
            m = len(g) * (len(g) + 1) // 2 if s is None else s.n_params
            out.append(slice(k, k + m))
            k += m
        return out

    def _lam_plan(self) -> tuple:
        """How :meth:`lam` fills Lambda, worked out once per block (its layout is fixed): the (row, column)
        positions of the unstructured entries and their places in theta, and per structured sub-block its
        structure, its slice of theta and where its factor goes."""
        key = (id(self.groups), id(self.structures))
        if self._plan is None or self._plan[0] != key:
            entries, places, mapped = [], [], []
            for g, s, sl in zip(self.groups, self._structs(), self.theta_spans()):
                if s is None:
                    k = sl.start
                    for j in range(len(g)):
                        for i in range(j, len(g)):
                            entries.append((g[i], g[j]))
                            places.append(k)
                            k += 1
                else:
                    side = g == list(range(g[0], g[0] + len(g)))  # the term's columns side by side (as merged)
                    mapped.append((s, sl, slice(g[0], g[0] + len(g)) if side else np.ix_(g, g)))
            rows = np.array([r for r, _ in entries], dtype=np.intp)
            cols = np.array([c for _, c in entries], dtype=np.intp)
            self._plan = (key, rows, cols, np.array(places, dtype=np.intp), mapped)
        return self._plan

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """The q x q relative Cholesky factor Lambda (lower triangular) for this block's theta."""
        _, rows, cols, places, mapped = self._lam_plan()
        L = np.zeros((self.q, self.q))
        theta = np.asarray(theta, dtype=float)
        if rows.size:
            L[rows, cols] = theta[places]
        for s, sl, at in mapped:
            if isinstance(at, slice):
                L[at, at] = s.factor(theta[sl])
            else:
                L[at] = s.factor(theta[sl])
        return L

    def diagonal_theta_index(self) -> list[int]:
        """Positions in this block's theta of the Cholesky diagonal and the relative SDs (lme4's isSingular looks
        at these)."""
        return [k for k, (r, c) in enumerate(self.theta_positions()) if r == c and r >= 0]

    def layout(self) -> list[tuple[str, list[int], str]]:
        """Per term: (structure keyword, its columns, its label such as ``0 + time | id``)."""
        if self.term_layout:
            return self.term_layout
        return [("us", list(g), _label([self.names[c] for c in g], self.component)) for g in self.groups]


def _label(names: list[str], component: str) -> str:
    """A term's label from its column names: ``Days | Subject``, ``1 | g``, ``0 + x | g``."""
    parts = ["1" if n == "(Intercept)" else n for n in names]
    if "1" not in parts:
        parts.insert(0, "0")
    elif parts[0] == "1" and len(parts) > 1:
        parts = parts[1:]
    return f"{' + '.join(parts)} | {component}"


def merge_terms(terms: list[RandomTerm]) -> list[FactorBlock]:
    """One :class:`FactorBlock` per grouping factor, ordered by decreasing number of levels (lme4's order;
    ties keep the formula's order). Terms on the same factor stack their columns; each correlated term is one
    sub-block, each uncorrelated term gives one sub-block per column."""
    by_name: dict[str, list[RandomTerm]] = {}
    for t in terms:
        by_name.setdefault(t.component, []).append(t)
    blocks = []
    for name, ts in by_name.items():
        Z = np.column_stack([t.Z for t in ts]) if len(ts) > 1 else ts[0].Z
        names, groups, k = [], [], 0
        structs: list[CovStructure | None] = []
        layout: list[tuple[str, list[int], str]] = []
        for t in ts:
            names.extend(t.names)
            cols = list(range(k, k + t.q))
            kind = t.structure
            if kind in MAPPED:
                groups.append(cols)
                structs.append(CovStructure(kind, t.q, t.times))
            elif t.correlated and kind != "diag":
                groups.append(cols)
                structs.append(None)
            else:
                groups.extend([[c] for c in cols])
                structs.extend([None] * t.q)
            layout.append((kind if kind != "us" or t.q == 1 or t.correlated else "diag", cols,
                           t.label or _label(t.names, t.component)))
            k += t.q
        if not (Z.shape[0] > 1 and Z.strides[0] == 0 and Z.dtype == float):  # one row seen n times stays a view
            Z = np.ascontiguousarray(Z, dtype=float)
        blocks.append(FactorBlock(name, np.asarray(ts[0].codes), list(ts[0].levels), Z, names, groups,
                                  structs if any(s is not None for s in structs) else None, layout))
    order = sorted(range(len(blocks)), key=lambda i: -blocks[i].n_levels)
    return [blocks[i] for i in order]
