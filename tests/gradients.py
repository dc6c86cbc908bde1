"""Central differences of a scalar function: the independent check of the engine's exact gradients."""

from __future__ import annotations

import numpy as np


def central_differences(fun, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d fun / dx_k by (fun(x + h_k e_k) - fun(x - h_k e_k)) / (2 h_k), h_k = h max(1, |x_k|)."""
    g = np.zeros_like(x)
    for k in range(x.size):
        hk = h * max(1.0, abs(x[k]))
        xp, xm = x.copy(), x.copy()
        xp[k] += hk
        xm[k] -= hk
        g[k] = (fun(xp) - fun(xm)) / (2 * hk)
    return g
