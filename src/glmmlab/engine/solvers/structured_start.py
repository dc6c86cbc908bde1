"""A start for a linear mixed model's structured term (``ar1``, ``cs``) from moments of the least-squares
residuals, so the quasi-Newton fit of :mod:`glmmlab.engine.solvers.structured_reml` begins near the optimum
instead of at lme4's start (relative SDs 1, no correlation).

Per level j of the grouping factor, the residuals r of the fixed effects' least-squares fit give per-level
effects b_j = A_j^-1 Z_j' W r_j (A_j = Z_j' W Z_j; a column the level lacks counts as absent), and their mean
cross-product S (over the levels that have both columns) estimates Sigma_b + sigma^2 A^-1: the random effects'
covariance plus noise (sigma^2 times the mean of A_j^-1, diagonal where the columns are indicators). So:

- ``ar1`` (equally spaced occasions): the mean covariance c_k at lag k is sd^2 rho^k for k >= 1, so rho = c_2 / c_1
  (c_1 / c_0 with two columns), sd^2 = c_1 / rho and sigma^2 = c_0 - sd^2 when the design has no residual degrees
  of freedom within the levels (one row per level and column);
- ``cs``: sigma^2 from the residuals within the levels (when there are enough), each SD^2 the diagonal of S less
  the noise, rho the mean off-diagonal correlation of S less the noise.

The relative SDs are sd / sigma. Where the moments do not give a usable answer (too few levels or columns, a
negative variance, other structures) the term keeps its usual start; the caller keeps whichever start has the
lower criterion.
"""

from __future__ import annotations

import numpy as np

from glmmlab.engine.model.covstruct import CovStructure
from glmmlab.engine.model.terms import FactorBlock
from glmmlab.engine.solvers.structure import CrossProducts

T_MAX = 7.0  # nested_ar1's bound on t: a lag-1 correlation within +-0.99 (the lag's powers on toep's scale stay finite)
RHO_MAX = 0.95  # moment correlations are clipped to +-RHO_MAX (the optimiser's correlation scale is unbounded)


def moment_start(block: FactorBlock, cps: list[CrossProducts], n: int, theta0: np.ndarray) -> np.ndarray | None:
    """theta0 with each ``ar1``/``cs`` sub-block's parameters from the moments (``cps``: the cross-products of each
    block of rows, response centred on its least-squares fit; ``n`` rows); None where no sub-block got one."""
    A = np.concatenate([cp.A11 for cp in cps])
    r = np.concatenate([cp.E1[:, :, -1] for cp in cps])
    rss = float(sum(cp.EE[-1, -1] for cp in cps))
    n_lev, q = r.shape
    present = np.einsum("jaa->ja", A) > 0
    # per-level least-squares effects; an absent column gets a unit diagonal (its effect is then 0, not counted)
    Ar = A + np.where(present, 0.0, 1.0)[:, :, None] * np.eye(q)
    try:
        b = np.linalg.solve(Ar, r[..., None])[..., 0]
        Ainv = np.linalg.inv(Ar)  # sigma^2 A_j^-1: the noise in b_j's covariance
    except np.linalg.LinAlgError:
        return None
    pf = present.astype(float)
    pairs = pf.T @ pf  # how many levels have both columns
    if n_lev < 3:
        return None
    B = b.T @ b
    noise_mean = np.einsum("jab,ja,jb->ab", Ainv, pf, pf) / np.maximum(pairs, 1.0)  # over the levels with both
    df_within = n - int(np.sum(present)) - (cps[0].E1.shape[2] - 1)
    sigma2_within = (rss - float(np.einsum("ja,ja->", b, r))) / df_within if df_within >= max(10, n // 10) else None
    theta = np.array(theta0, dtype=float)
    changed = False
    structs = block.structures or [None] * len(block.groups)
    for g, s, sl in zip(block.groups, structs, block.theta_spans()):
        if s is None:
            continue
        at = np.ix_(g, g)
        phi = _ar1(s, B[at], pairs[at], sigma2_within) if s.kind == "ar1" else (
            _cs(s, B[at], pairs[at], noise_mean[at], sigma2_within) if s.kind == "cs" else None)
        if phi is not None and np.all(np.isfinite(phi)):
            theta[sl] = phi
            changed = True
    return theta if changed else None


def _ar1(s: CovStructure, B: np.ndarray, pairs: np.ndarray, sigma2: float | None) -> np.ndarray | None:
    """(relative SD, t) from the mean cross-products at lags 0, 1, 2 (``B``: sums over the levels, ``pairs``: how
    many levels each sum has)."""
    q = s.q
    lag = np.abs(np.subtract.outer(np.arange(q), np.arange(q)))
    n_pairs = [float(np.sum(pairs[lag == k])) for k in range(min(q, 3))]
    if min(n_pairs) < 3:
        return None
    c = [float(np.sum(B[lag == k])) / n_pairs[k] for k in range(len(n_pairs))]
    if c[1] <= 0.0:
        return None
    rho = c[2] / c[1] if q >= 3 and c[2] > 0.0 else c[1] / c[0]
    rho = float(np.clip(rho, -RHO_MAX, RHO_MAX))
    sd2 = c[1] / rho
    sig2 = sigma2 if sigma2 is not None else c[0] - sd2
    if not (sd2 > 0.0 and sig2 > 0.0):
        return None
    return np.array([np.sqrt(sd2 / sig2), rho / np.sqrt(1.0 - rho * rho)])


def _cs(s: CovStructure, B: np.ndarray, pairs: np.ndarray, noise: np.ndarray, sigma2: float | None
        ) -> np.ndarray | None:
    """(relative SDs, t) from the mean cross-products (``B``, ``pairs`` as for :func:`_ar1`), ``noise`` the mean
    of A_j^-1 (over the levels with both columns) and ``sigma2`` the residual variance within the levels."""
    if sigma2 is None or not sigma2 > 0.0 or np.min(pairs) < 3:
        return None
    S = B / pairs
    S = S - sigma2 * noise
    var = np.diag(S)
    if np.any(var <= 0.0):
        return None
    sd = np.sqrt(var)
    off = ~np.eye(s.q, dtype=bool)
    a = 1.0 / (s.q - 1)
    rho = float(np.clip(np.mean((S / np.outer(sd, sd))[off]), -a + 0.05 * (1.0 + a), RHO_MAX))
    p = (rho + a) / (1.0 + a)
    return np.concatenate([sd / np.sqrt(sigma2), [np.log(p / (1.0 - p))]])


def nested_ar1(fun, block: FactorBlock, theta0: np.ndarray, model: dict) -> tuple[np.ndarray, int] | None:
    """A start for a block's ``toep`` terms from the ``ar1`` model they hold (equal SDs, the correlation at lag k
    rho^k): theta0 with each ``toep`` sub-block at the best such point of ``fun`` (the criterion over the block's
    theta), found by BOBYQA over a relative SD and a correlation parameter per ``toep`` sub-block, and the
    evaluations it took; None without a ``toep`` sub-block of three or more columns.

    From lme4's start a search over every lag's correlation can stop far below the optimum where the correlation
    matrix is near its edge (sim_longitudinal_ar1's first four occasions by ML: -515.75 in log-likelihood, where
    the ``ar1`` model reaches -492.70 and ``toep``'s optimum, on the edge, -491.16). From the ``ar1`` optimum the
    fit can only gain: its log-likelihood is never below the ``ar1`` model's."""
    from glmmlab.engine.solvers.search import bobyqa

    structs = block.structures or [None] * len(block.groups)
    spans = [(sl, s) for s, sl in zip(structs, block.theta_spans()) if s is not None and s.kind == "toep" and s.q >= 3]
    if not spans:
        return None
    theta0 = np.asarray(theta0, dtype=float)

    def embed(z: np.ndarray) -> np.ndarray:
        theta = theta0.copy()
        for i, (sl, s) in enumerate(spans):
            rho = z[2 * i + 1] / np.sqrt(1.0 + z[2 * i + 1] ** 2)
            r = rho ** np.arange(1, s.q)
            theta[sl] = np.concatenate([np.full(s.q, z[2 * i]), r / np.sqrt(1.0 - r * r)])
        return theta

    k = 2 * len(spans)
    z, record = bobyqa(lambda z: fun(embed(z)), np.tile([1.0, 0.0], len(spans)), np.tile([0.0, -T_MAX], len(spans)),
                       model, None, "", 0.0, 0.0, initial_step=np.full(k, 0.25),
                       upper=np.tile([np.inf, T_MAX], len(spans)))
    return embed(z), record.evaluations
