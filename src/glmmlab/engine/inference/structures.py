"""Each random-effects term's covariance structure as glmmTMB reports it: the structure, the SD of every column,
the correlation parameter (``cs``, ``ar1``: rho; ``toep``: rho by lag; ``ou``: the correlation at one time unit
and the range), the implied covariance and correlation matrices, and the term's own parameters."""

from __future__ import annotations

from typing import Any

import numpy as np

from glmmlab.engine.model.terms import FactorBlock


def _num(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _matrix(M: np.ndarray) -> list[list[float | None]]:
    M = np.asarray(M, dtype=float)
    if np.all(np.isfinite(M)):
        return M.tolist()
    return [[_num(v) for v in row] for row in M]


def structure_rows(blocks: list[FactorBlock], thetas: list[np.ndarray], lams: list[np.ndarray],
                   scale2: float) -> list[dict[str, Any]]:
    """One entry per term (in the blocks' order): ``component``, ``term`` (glmmTMB's label without the keyword),
    ``structure``, ``dim``, ``n_levels``, ``names``, ``parameters`` (the fit's theta of the term: Lambda's lower
    triangle for ``us``, the relative SDs for ``diag``, the relative SDs and then the correlation parameters t on
    glmmTMB's scale for the others), ``sd``, ``rho`` (None, a number, or for ``toep`` a list by lag), ``range``
    (``ou``; else None), ``times`` (``ou``; else None), ``cov`` and ``corr``. ``scale2``: the scale of Lambda
    Lambda' (the residual variance of a linear mixed model, else 1)."""
    out: list[dict[str, Any]] = []
    for b, th, L in zip(blocks, thetas, lams):
        S_all = scale2 * (L @ L.T)
        structs = b.structures or [None] * len(b.groups)
        spans = b.theta_spans()
        for kind, cols, label in b.layout():
            # plain indexing and products (np.ix_, np.outer and diag_indices_from cost more than the arithmetic)
            S = S_all[cols][:, cols]
            sd = np.sqrt(np.maximum(np.diagonal(S), 0.0))
            with np.errstate(all="ignore"):
                corr = S / (sd[:, None] * sd[None, :])
            np.fill_diagonal(corr, 1.0)
            # the sub-blocks of this term (one, or one per column for diag) and their parameters
            subs = [k for k, g in enumerate(b.groups) if g[0] in cols]
            params = np.concatenate([np.asarray(th[spans[k]], dtype=float) for k in subs])
            s = structs[subs[0]]
            rho: Any = None
            rng = None
            if s is not None:
                r = s.rho(params)
                rho = [_num(v) for v in r] if kind == "toep" else _num(r[0])
                rng = s.range(params)
            out.append({
                "component": b.component, "term": label, "structure": kind, "dim": len(cols),
                "n_levels": b.n_levels, "names": [b.names[c] for c in cols],
                "parameters": [_num(v) for v in params], "sd": [_num(v) for v in sd], "rho": rho,
                "range": None if rng is None else _num(rng),
                "times": None if s is None or s.times is None else [float(t) for t in s.times],
                "cov": _matrix(S), "corr": _matrix(corr),
            })
    return out
