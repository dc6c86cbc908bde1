"""Data preparation: listwise deletion, group coding, response checks, dropping of degenerate predictors and
internal scaling of the fixed-effects design.

The engine works on rows sorted by group (stable, so the input order survives within a group); every
per-group sum is then one ``np.add.reduceat`` over contiguous blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg
from scipy.linalg import lapack

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families import Family
from glmmlab.engine.progress import ProgressFn, report


@dataclass
class Design:
    """A model's data after preparation, rows sorted by group.

    ``X`` holds the scaled predictors (the intercept column first when there is one);
    ``T`` maps scaled coefficients to the original scale: beta = T @ beta_scaled.
    """

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    group: np.ndarray  # 0-based group code of each (sorted) row
    levels: list[str]  # label of each group code
    starts: np.ndarray  # first row of each group
    counts: np.ndarray  # rows per group
    rows: np.ndarray  # index of each sorted row in the caller's input
    input_order: np.ndarray  # permutation putting the sorted rows back in input order
    n_input: int
    T: np.ndarray
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    intercept: bool = True

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def n_groups(self) -> int:
        return len(self.levels)

    @property
    def n_excluded(self) -> int:
        return self.n_input - self.n

    def group_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum ``values`` (rows x ... ) within each group."""
        return np.add.reduceat(values, self.starts, axis=0)

    def log_abs_det_T(self) -> float:
        """log |det T|: how the scaling changes the volume of the coefficient space."""
        return float(np.sum(np.log(np.abs(np.diag(self.T)))))


def scale_transform(center: np.ndarray, scale: np.ndarray, names: list[str], intercept: bool
                    ) -> tuple[np.ndarray, list[str]]:
    """T with beta = T beta_scaled for columns scaled as (x - center) / scale, and the coefficient names."""
    k = len(names)
    if intercept:
        T = np.zeros((k + 1, k + 1))
        T[0, 0] = 1.0
        T[0, 1:] = -center / scale
        T[np.arange(1, k + 1), np.arange(1, k + 1)] = 1.0 / scale
        return T, ["(Intercept)"] + list(names)
    return np.diag(1.0 / scale), list(names)


def constant_column_warning(name: str) -> str:
    return f"Fixed effect '{name}' is constant in the rows used and was dropped from the model."


def rank_deficient_warning(dropped: list[str]) -> str:
    """lme4's words for fixed-effect columns dropped as linear combinations of those before them, with their
    names quoted and why."""
    return (f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s): "
            f"{', '.join(repr(d) for d in dropped)} (each a linear combination of the columns before it: collinear)")


def too_few_groups(group_name: str, n_groups: int) -> GlmmInputError:
    return GlmmInputError(
        f"group variable '{group_name}' has {n_groups} group after excluding incomplete rows; "
        "a random intercept needs at least 2 groups (choose another group variable)"
    )


def no_complete_rows(response: str, group_name: str) -> GlmmInputError:
    return GlmmInputError(
        "no complete rows: every row has a missing, non-numeric or infinite value in "
        f"'{response}', the fixed effects or '{group_name}'"
    )


def sort_by_group(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """A stable permutation that sorts rows by group code (radix sort when the codes fit in 16 bits)."""
    if codes.size < 2 or np.all(codes[1:] >= codes[:-1]):
        return np.arange(codes.size)
    if n_groups <= np.iinfo(np.uint16).max:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    return np.argsort(codes, kind="stable")


def inverse_permutation(order: np.ndarray) -> np.ndarray:
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size, dtype=order.dtype)
    return inv


GRAM_CHUNK_FLOPS = 2e9  # a Gram matrix costlier than this is summed over row chunks, with progress between


def gram_matrix(Z: np.ndarray, progress: ProgressFn = None) -> np.ndarray:
    """Z'Z; for a large design (n p^2 above GRAM_CHUNK_FLOPS) summed over chunks of rows, reporting progress
    between them so that a cancel is seen within about a second."""
    n, p = Z.shape
    if n * p * p <= GRAM_CHUNK_FLOPS:
        return Z.T @ Z
    rows = max(1, int(GRAM_CHUNK_FLOPS // max(p * p, 1)))
    G = np.zeros((p, p))
    for a in range(0, n, rows):
        report(progress, "Preparing data: cross-products", 0.0)
        G += Z[a:a + rows].T @ Z[a:a + rows]
    return G


def collinear_columns(gram: np.ndarray, first: int, eps: float = 1e-10, progress: ProgressFn = None) -> list[int]:
    """Columns (from ``first`` on) whose squared residual on the kept earlier columns is below ``eps`` of the
    column's squared norm: Gram-Schmidt on the (scaled) Gram matrix.

    By unpivoted Cholesky factorisations (LAPACK): the k-th squared diagonal of the factor of a Gram matrix is the
    squared residual of column k on all the columns before it, so up to the first column that fails the test every
    column is kept as Gram-Schmidt keeps it. That column is dropped and the factorisation goes on with the Schur
    complement of the columns after it on those kept: O(p^3) per dropped column at most (a design of full rank
    needs one factorisation), where a least-squares solve per column cost O(p^4) (45 s for 1,000 columns)."""
    p = gram.shape[0]
    gram = np.asarray(gram, dtype=float)
    norms = np.maximum(np.diag(gram).copy(), 1e-300)
    out: list[int] = []
    rest = np.arange(first, p)
    if rest.size == 0:
        return out
    if first > 0:
        lead, info = lapack.dpotrf(gram[:first, :first], lower=1, clean=1)
        if info != 0:
            return _collinear_by_solves(gram, first, eps, progress)
        C = linalg.solve_triangular(lead, gram[:first, first:], lower=True, check_finite=False)
        S = gram[first:, first:] - C.T @ C
    else:
        S = gram.copy()
    while rest.size:
        report(progress, "Preparing data: collinear columns", 0.0)  # a cancel is seen between factorisations
        c, info = lapack.dpotrf(S, lower=1, clean=1)
        good = rest.size if info == 0 else max(int(info) - 1, 0)  # the pivot at `good` is <= 0: collinear
        ratio = np.diag(c)[:good] ** 2 / norms[rest[:good]]
        bad = np.flatnonzero(ratio <= eps)
        if bad.size:
            j = int(bad[0])
        elif info != 0:
            j = good
        else:
            return out
        out.append(int(rest[j]))
        # the columns after j on those kept (rest[:j]): the Schur complement of S's leading j x j block
        C = linalg.solve_triangular(c[:j, :j], S[:j, j + 1:], lower=True, check_finite=False) if j else None
        S = S[j + 1:, j + 1:] - (C.T @ C if C is not None else 0.0)
        rest = rest[j + 1:]
    return out


def _collinear_by_solves(gram: np.ndarray, first: int, eps: float, progress: ProgressFn) -> list[int]:
    """Gram-Schmidt by a least-squares solve per column (leading columns that are themselves singular)."""
    kept: list[int] = list(range(first))
    out: list[int] = []
    for k in range(first, gram.shape[0]):
        if (k - first) % 50 == 0:
            report(progress, "Preparing data: collinear columns", 0.0)
        G = gram[np.ix_(kept, kept)]
        b = gram[kept, k]
        resid = gram[k, k] - b @ np.linalg.lstsq(G, b, rcond=None)[0]
        if resid <= eps * max(gram[k, k], 1e-300):
            out.append(k)
        else:
            kept.append(k)
    return out


def check_response(y: np.ndarray, family: Family, response: str) -> None:
    """Refuse a response outside the family's range, or one with a single value (nothing to model)."""
    check_not_constant(y, response)
    family.check_response(y, response)


def check_not_constant(y: np.ndarray, response: str) -> None:
    """Refuse a response with a single value in every row used: there is nothing to model."""
    if y.size and np.min(y) == np.max(y):
        raise GlmmInputError(
            f"response '{response}' has the same value ({y[0]:g}) in every complete row: there is nothing to "
            "model; choose another response or check the data"
        )


def prepare(
    y: np.ndarray,
    X: np.ndarray | Sequence[np.ndarray],
    names: list[str],
    group_codes: np.ndarray,
    group_levels: list[str],
    family: Family,
    *,
    response: str = "y",
    group_name: str = "group",
    intercept: bool = True,
    progress: ProgressFn = None,
) -> Design:
    """Build the :class:`Design` of a fit.

    ``y`` (n,) and ``X`` (n, k), or a list of its k columns, are floats in which NaN or infinity marks a missing
    or non-numeric value;
    ``group_codes`` (n,) are integer codes into ``group_levels``, negative where the group is missing.
    """
    y = np.asarray(y, dtype=float)
    n_input = y.shape[0]
    if isinstance(X, np.ndarray):
        X = np.asarray(X, dtype=float).reshape(n_input, -1)
        columns = [X[:, j] for j in range(X.shape[1])]
    else:
        columns = [np.asarray(c, dtype=float) for c in X]
    group_codes = np.asarray(group_codes)
    keep = np.isfinite(y) & (group_codes >= 0)
    for k, col in enumerate(columns):
        if k % 200 == 199:  # a wide design: a cancel is seen between columns
            report(progress, "Preparing data: missing values", 0.0)
        keep &= np.isfinite(col)
    if not keep.any():
        raise no_complete_rows(response, group_name)
    keep_all = bool(keep.all())
    index = np.int32 if n_input < np.iinfo(np.int32).max else np.int64  # row and group indices: 4 bytes
    rows = np.arange(n_input, dtype=index) if keep_all else np.flatnonzero(keep).astype(index)
    codes = group_codes[rows]
    # Renumber the groups that still have rows (O(n), no sort of the rows).
    present = np.bincount(codes, minlength=len(group_levels)) > 0
    used = np.flatnonzero(present)
    remap = np.full(len(group_levels), -1, dtype=index)
    remap[used] = np.arange(used.size)
    codes = remap[codes]
    levels = [group_levels[int(c)] for c in used]
    order = sort_by_group(codes, used.size).astype(index, copy=False)
    rows, codes = rows[order], codes[order]
    yv = y[rows]

    check_response(yv, family, response)
    if len(levels) < 2:
        raise too_few_groups(group_name, len(levels))
    warnings: list[str] = []
    dropped: list[str] = []

    # The scaled design is built in place, one column at a time: one n x p allocation in all.
    n = len(yv)
    off = 1 if intercept else 0
    center = np.zeros(len(columns))
    scale = np.ones(len(columns))
    kept_cols: list[int] = []
    for k, (name, col) in enumerate(zip(names, columns)):
        if k % 200 == 199:
            report(progress, "Preparing data: scaling the columns", 0.0)
        v = col if keep_all else col[keep]  # order does not matter for these statistics
        lo, hi = float(v.min()), float(v.max())
        if lo == hi and (intercept or lo == 0.0):
            dropped.append(name)
            warnings.append(constant_column_warning(name))
            continue
        kept_cols.append(k)
        if intercept:
            center[k] = float(np.mean(v))
            sd = float(np.std(v))
        else:
            sd = float(np.sqrt(np.mean(v * v)))
        scale[k] = sd if sd > 0 else 1.0
    Z = np.empty((n, off + len(kept_cols)))
    if intercept:
        Z[:, 0] = 1.0
    for j, k in enumerate(kept_cols):
        if j % 200 == 199:
            report(progress, "Preparing data: scaling the columns", 0.0)
        np.subtract(columns[k][rows], center[k], out=Z[:, off + j])
        Z[:, off + j] /= scale[k]
    center, scale = center[kept_cols], scale[kept_cols]
    kept_names = [names[k] for k in kept_cols]

    # Collinearity: a column whose part orthogonal to the columns kept before it is negligible is dropped.
    if Z.shape[1] > 1:
        collinear = collinear_columns(gram_matrix(Z, progress) / len(yv), off, progress=progress)
        if collinear:
            for k in collinear:
                name = kept_names[k - off]
                dropped.append(name)
                warnings.append(rank_deficient_warning([name]))
            keep_z = [k for k in range(Z.shape[1]) if k not in set(collinear)]
            Z = Z[:, keep_z]
            keep_x = [k - off for k in keep_z if k >= off]
            center, scale = center[keep_x], scale[keep_x]
            kept_names = [kept_names[k] for k in keep_x]
    if Z.shape[1] == 0:
        raise GlmmInputError(
            "the model has no fixed effects: include the intercept or choose at least one usable fixed effect"
        )
    if Z.shape[0] <= Z.shape[1]:
        raise GlmmInputError(
            f"only {Z.shape[0]} complete rows for {Z.shape[1]} fixed-effect parameters: "
            "use fewer fixed effects or more data"
        )

    T, out_names = scale_transform(center, scale, kept_names, intercept)

    counts = np.bincount(codes, minlength=len(levels))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return Design(
        y=yv,
        X=Z,
        names=out_names,
        group=codes,
        levels=levels,
        starts=starts,
        counts=counts,
        rows=rows,
        input_order=inverse_permutation(order),
        n_input=n_input,
        T=T,
        dropped=dropped,
        warnings=warnings,
        intercept=intercept,
    )
