"""The distinct rows of a small fit's data: rows equal in every column the likelihood reads (level, designs, offset,
response, prior weight) contribute equal terms, so a Laplace evaluation over the distinct rows, each with the sum of
its copies' prior weights, is the same to rounding (every row term is the prior weight times a function of the row).
Salamanders' counts with site-level covariates: 644 rows, 128 distinct."""

from __future__ import annotations

import numpy as np

MAX_SHARE = 0.8  # distinct rows are used only where at most this share of the rows is distinct


def distinct_rows(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(the first row of each distinct row, how many rows it stands for), in the order of the columns' values, the
    first column first (a level code: the distinct rows are then sorted by level); None where more than
    MAX_SHARE of the rows are distinct or some value is not finite. ``columns``: arrays of n rows (n,) or (n, k)."""
    keys = np.column_stack([np.asarray(c, dtype=float).reshape(n, -1) for c in columns])
    if not np.all(np.isfinite(keys)):
        return None
    _, rows, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
    return None if rows.size > MAX_SHARE * n else (rows, counts)
