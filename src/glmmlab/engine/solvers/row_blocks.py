"""Blocks of whole groups for general mixed models.

When every grouping factor nests in one outer factor (one factor alone, or ``(1 | a/b)``), the penalised system
is block-diagonal over the outer factor's levels: the conditional modes of one outer group depend only on its own
rows. The rows are then cut into blocks of whole outer groups; each block finds its modes and returns the sums
the Laplace deviance and its gradient need (the deviance, |u|^2, log det, and the gradient split as
c * g_c + g_0, where c = d(-2 log p)/d(total deviance) is known only once every block has reported). The
profiled REML criterion of a linear mixed model decomposes the same way: for a given theta each block returns
its log det(Lambda' Z_b' W Z_b Lambda + I) and the Schur complement of [X, y] in its penalised system (the
(p + 1) x (p + 1) reduced cross-products); their sums give beta, the penalised RSS, log det(R_X' R_X) and the
criterion. The blocks run in threads; the same cut is the unit of work on a cluster. Crossed factors couple
every row, so such models run as one block.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy import linalg

from glmmlab.engine.model.terms import FactorBlock, rows_of
from glmmlab.engine.solvers.blocked_cholesky import _cholesky_lower
from glmmlab.engine.solvers.intercept_laplace import zero_model_curvature
from glmmlab.engine.solvers.threads import cpu_count

if TYPE_CHECKING:
    from glmmlab.engine.families.distributions import Family
    from glmmlab.engine.families.links import Link
    from glmmlab.engine.solvers.likelihood import Likelihood

# a design is cut only from twice this many rows (two threads on 100k Poisson rows: 0.17 s wall, one 0.135 s)
MIN_BLOCK_ROWS = 100_000
BLOCK_ROWS = 131_072  # rows of a block when there are more blocks than cores


def block_count(n: int) -> int:
    """How many blocks of rows a fit's per-row work is cut into: one for a small design (threads would cost more
    than they save); otherwise blocks of about BLOCK_ROWS rows, at least one per core, run by one thread per
    core. Small blocks keep an evaluation's temporaries (a dozen vectors per row of the blocks in work) small
    next to the data, and in cache: 1M rows, 8 blocks instead of 2, the Laplace evaluation's extra memory
    130 MB -> 35 MB."""
    if n < 2 * MIN_BLOCK_ROWS:
        return 1
    return max(cpu_count(), -(-n // BLOCK_ROWS))


def outer_factor(blocks: list[FactorBlock]) -> int | None:
    """The index of the factor every other factor nests in (each of their levels within one of its levels), or
    None when the factors cross."""
    for i in sorted(range(len(blocks)), key=lambda k: blocks[k].n_levels):
        outer = np.asarray(blocks[i].codes)
        ok = True
        for j, b in enumerate(blocks):
            if j == i:
                continue
            inner = np.asarray(b.codes)
            first = np.full(b.n_levels, -1, dtype=np.int64)
            first[inner[::-1]] = outer[::-1]  # the outer level of each inner level's first row
            if np.any(first[inner] != outer):
                ok = False
                break
        if ok:
            return i
    return None


def stable_order(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """The stable sort order of level codes; with fewer than 65,536 levels on 16-bit codes, which numpy sorts
    by radix (1M rows: 0.05 s against 0.35 s)."""
    codes = np.asarray(codes)
    return np.argsort(codes.astype(np.uint16) if n_levels <= 65_536 else codes, kind="stable")


@dataclass
class BlockSpec:
    """One block: its rows (a slice of the rows sorted by outer group) and, per factor, the global index of each
    of its local levels."""

    rows: slice
    level_maps: list[np.ndarray]


def cut_blocks(blocks: list[FactorBlock], n_blocks: int) -> tuple[np.ndarray, list[BlockSpec]]:
    """A row order (by outer group, then the leading factor) and the blocks: contiguous runs of whole outer
    groups of about equal size. One block when the factors cross."""
    n = int(np.asarray(blocks[0].codes).shape[0])
    outer = outer_factor(blocks)
    lead = np.asarray(blocks[0].codes)
    if outer is None or n_blocks <= 1:  # rows already in the order of the levels (a column frame) keep it
        perm = np.arange(n) if bool(np.all(lead[1:] >= lead[:-1])) else stable_order(lead, blocks[0].n_levels)
        return perm, [BlockSpec(slice(0, n), [np.arange(b.n_levels) for b in blocks])]
    oc = np.asarray(blocks[outer].codes)
    # one factor (or the leading factor is the outer one): one stable sort, not a two-key lexsort
    in_order = outer == 0 and bool(np.all(lead[1:] >= lead[:-1]))  # rows already by level (a column frame)
    if in_order:
        perm = np.arange(n)
    elif outer == 0:
        perm = stable_order(lead, blocks[0].n_levels)
    else:
        perm = np.lexsort((lead, oc))
    o_sorted = oc if in_order else oc[perm]
    bounds = np.flatnonzero(np.diff(o_sorted)) + 1  # where an outer group starts
    cuts = [0]
    for k in range(1, n_blocks):
        target = k * n // n_blocks
        pos = int(np.searchsorted(bounds, target))
        if pos < bounds.size and bounds[pos] > cuts[-1]:
            cuts.append(int(bounds[pos]))
    cuts.append(n)
    specs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        # rows in order: the leading factor's levels of a block are its run of sorted codes' distinct values
        maps = [_distinct_sorted(lead[a:b]) if in_order and k == 0 else
                np.unique(np.asarray(f.codes)[slice(a, b) if in_order else perm[a:b]]) for k, f in enumerate(blocks)]
        specs.append(BlockSpec(slice(a, b), maps))
    return perm, specs


def _distinct_sorted(codes: np.ndarray) -> np.ndarray:
    """np.unique of codes already sorted: the first of each run."""
    if codes.size == 0:
        return codes.copy()
    first = np.empty(codes.size, dtype=bool)
    first[0] = True
    np.not_equal(codes[1:], codes[:-1], out=first[1:])
    return codes[first]


def local_blocks(blocks: list[FactorBlock], perm: np.ndarray | None, spec: BlockSpec) -> list[FactorBlock]:
    """The factor blocks restricted to one block's rows (``perm``: the rows' order; None: as they are), with
    local level codes (a block's levels that are a run of the global ones: the codes less the first)."""
    out = []
    rows = spec.rows if perm is None else perm[spec.rows]
    for f, lmap in zip(blocks, spec.level_maps):
        codes = np.asarray(f.codes)[rows]
        if lmap.size and int(lmap[-1]) - int(lmap[0]) == lmap.size - 1:  # (lmap is sorted and distinct)
            local = np.subtract(codes, lmap[0], dtype=np.intp)
        else:
            local = np.searchsorted(lmap, codes)
        out.append(replace(f, codes=local, levels=[f.levels[i] for i in lmap], Z=rows_of(f.Z, rows)))
    return out


class BlockSet:
    """Blocks that each answer the same call, run in threads (one per core); on a cluster a subclass sends the
    call to actors instead (services/distributed/actor_adapters.py)."""

    def __init__(self, units: list, threads: bool = True):
        self.units = units
        self.pool = (ThreadPoolExecutor(max_workers=min(len(units), cpu_count())) if threads and len(units) > 1
                     else None)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def map(self, fn):
        if self.pool is None:
            return [fn(unit) for unit in self.units]

        def quiet(unit):  # np.errstate is per thread: the fit's own setting does not reach the pool's threads
            with np.errstate(all="ignore"):
                return fn(unit)

        return list(self.pool.map(quiet, self.units))


class BlockedLaplace(BlockSet):
    """The Laplace deviance and its gradient summed over blocks (``laps``: one GeneralLaplace per block) with the
    whole data's likelihood constants (``lik``)."""

    def __init__(self, laps: list, lik, nt: int, threads: bool = True):
        super().__init__(laps, threads)
        self.lik, self.nt = lik, nt
        self.evaluations = 0
        self.modes_converged = True
        self.last_dev_uu = (np.nan, np.nan)  # at the last point value_and_grad evaluated

    @property
    def laps(self) -> list:
        return self.units

    def set_family(self, fam, lik) -> None:
        for lap in self.laps:
            lap.set_family(fam)
        self.lik = lik

    def _parts(self, params: np.ndarray, gradient: bool):
        theta, beta = params[: self.nt], params[self.nt:]
        self.evaluations += 1
        try:
            parts = self.map(lambda lap: lap.parts(theta, beta, gradient))
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return None
        return parts

    def value(self, params: np.ndarray) -> float:
        parts = self._parts(params, False)
        if parts is None:
            return np.inf
        dev = sum(p["dev"] for p in parts)
        D = self.lik.data_term(dev, sum(p["uu"] for p in parts)) + sum(p["logdet"] for p in parts)
        self.modes_converged = all(p["converged"] for p in parts)
        return float(D) if np.isfinite(D) else np.inf

    def value_and_grad(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        parts = self._parts(params, True)
        if parts is None:
            return np.inf, np.zeros_like(params)
        dev, uu = sum(p["dev"] for p in parts), sum(p["uu"] for p in parts)
        D = self.lik.data_term(dev, uu) + sum(p["logdet"] for p in parts)
        if not np.isfinite(D):
            return np.inf, np.zeros_like(params)
        self.modes_converged = all(p["converged"] for p in parts)
        direct = sum(p["direct"] for p in parts) if "direct" in parts[0] else None
        g = self.lik.gradient(dev, uu, sum(p["g_c"] for p in parts), sum(p["g_0"] for p in parts), direct)
        if "g_psi" in parts[0]:  # the family's own parameters (see GeneralLaplace._psi_gradient)
            g = np.append(g, sum(p["g_psi"] for p in parts))
        self.last_dev_uu = (dev, uu)
        return float(D), g

    def dev_uu(self, params: np.ndarray) -> tuple[float, float]:
        """The weighted total deviance and |u|^2 at the modes of ``params``."""
        parts = self._parts(params, False)
        if parts is None:
            return np.inf, np.inf
        return float(sum(p["dev"] for p in parts)), float(sum(p["uu"] for p in parts))

    def approx_hessian(self, params: np.ndarray, fg=None) -> np.ndarray:
        """An approximation of the Hessian of D for the optimiser's Newton steps (as the random-intercept
        engine's): over beta, 2 c times the fixed effects' precision at the modes (c = d(-2 log p)/d(total
        deviance)); each theta's row and column by a forward difference of the exact gradient, its step 1e-6
        relative (the modes predicted for it are within the mode search's tolerance, so its point costs one row
        state, where 1e-5 left them ~2e-10 off and cost two; the 1M-row random intercept's fit: 19.5 row states per
        block -> 17.5). Costs one pass for the precision and one gradient per theta, where a finite-difference
        Hessian costs two gradients per parameter (the 200k-row slope case: 4 evaluations instead of 12).
        ``fg``: the value and gradient as the optimiser has them (a cache that holds the point just evaluated: its
        gradient is not computed again); default :meth:`value_and_grad`."""
        fg = self.value_and_grad if fg is None else fg
        nt, k = self.nt, params.size
        theta, beta = params[:nt], params[nt:]
        g0 = fg(params)[1]
        c = self.lik.curvature(*self.last_dev_uu)
        H = np.empty((k, k))
        H[nt:, nt:] = 2.0 * c * sum(self.map(lambda lap: lap.fixed_precision(theta, beta)))
        for i in range(nt):
            h = 1e-6 * max(abs(float(params[i])), 0.1)
            step = params.copy()
            step[i] += h
            H[:, i] = (fg(step)[1] - g0) / h
        H[:nt, :nt] = 0.5 * (H[:nt, :nt] + H[:nt, :nt].T)
        H[:nt, nt:] = H[nt:, :nt].T
        return H

    def zero_model_curvature(self, params: np.ndarray) -> np.ndarray | None:
        """The blocks' :func:`~glmmlab.engine.solvers.intercept_laplace.zero_model_curvature` summed (the levels
        do not span blocks), at the last evaluation's modes; None where some block has none."""
        theta, beta = params[: self.nt], params[self.nt:]
        parts = self.map(lambda lap: zero_model_curvature(lap, theta, beta))
        return None if any(H is None for H in parts) else sum(parts[1:], parts[0])

    def finals(self, theta: np.ndarray, beta: np.ndarray) -> list[dict]:
        return self.map(lambda lap: lap.final(theta, beta))

    def reset_modes(self) -> None:
        """Every block forgets its last modes (the next evaluation starts from u = 0)."""
        self.map(lambda lap: lap.reset_modes())


# -- Gaussian + identity: the profiled REML criterion over blocks ------------------------------------------------
def reml_criterion(logdet: float, SEE: np.ndarray, n: int, sum_log_w: float, reml: bool = True
                   ) -> tuple[float, float]:
    """lme4's profiled REML (or ML) deviance and the penalised RSS from log det(Lambda' Z' W Z Lambda + I) and
    the Schur complement SEE of [X, y] ((p + 1) x (p + 1), y last) in the penalised system."""
    p = SEE.shape[0] - 1
    # linalg.cholesky(SEE, lower=True) without its wrappers (the same LAPACK call; one per evaluation)
    R = _cholesky_lower(np.asarray_chkfinite(SEE))
    ld_x = 2.0 * float(np.sum(np.log(np.diag(R)[:p])))
    pwrss = float(R[p, p] ** 2)
    nmp = n - p if reml else n
    dev = logdet + (ld_x if reml else 0.0) + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp)) - sum_log_w
    return float(dev), pwrss


def normal_equations(Xs: np.ndarray, z: np.ndarray, pw: np.ndarray) -> np.ndarray:
    """[X_s, z]' W [X_s, z] of some rows; summed over the blocks they give :func:`centring_fit`. Without forming
    [X_s, z] (and, with unit weights, without any n x p product)."""
    p = Xs.shape[1]
    unit = bool(np.all(pw == 1.0))
    Xw = Xs if unit else Xs * pw[:, None]
    zw = z if unit else z * pw
    A = np.empty((p + 1, p + 1))
    A[:p, :p] = Xs.T @ Xw
    A[:p, p] = A[p, :p] = Xs.T @ zw
    A[p, p] = float(z @ zw)
    return A


def centring_fit(A: np.ndarray) -> np.ndarray:
    """The weighted least-squares coefficients from the normal equations ``A`` = [X_s, z]' W [X_s, z]. The
    response is centred on this fit before its cross-products are taken: the REML criterion does not change
    (the fit lies in X's column space), but z'z no longer carries the mean, so the penalised RSS is no longer a
    small difference of large sums (which left ~1e-12 relative rounding noise in the criterion, enough to keep
    theta from being resolved)."""
    p = A.shape[0] - 1
    return linalg.solve(A[:p, :p], A[:p, p], assume_a="pos") if p else np.zeros(0)


class BlockedProfiledLmm(BlockSet):
    """The profiled REML (``reml`` False: ML) criterion as a function of theta, summed over blocks of whole outer
    groups (``blocks``: objects with ``sums(theta) -> {"logdet", "SEE"}`` and ``final(theta, beta_s)``, e.g. one
    ProfiledLmm per block of rows, or actors on a cluster), each holding the cross-products of the response
    centred on the same ``beta0``; ``n`` and ``sum_log_w`` are the whole data's. beta = beta0 +
    SEE[:p, :p]^-1 SEE[:p, p] from the summed SEE."""

    def __init__(self, blocks: list, n: int, sum_log_w: float, beta0: np.ndarray, threads: bool = True):
        super().__init__(blocks, threads)
        self.n, self.sum_log_w, self.beta0 = n, sum_log_w, np.asarray(beta0, dtype=float)
        self.reml = True
        self.evaluations = 0

    def criterion(self, theta: np.ndarray) -> tuple[float, np.ndarray, float]:
        """(deviance, SEE summed over the blocks, penalised RSS) at theta."""
        theta = np.asarray(theta, dtype=float)
        parts = self.map(lambda b: b.sums(theta))
        logdet = float(sum(p["logdet"] for p in parts))
        SEE = sum(p["SEE"] for p in parts)
        dev, pwrss = reml_criterion(logdet, SEE, self.n, self.sum_log_w, self.reml)
        return dev, SEE, pwrss

    def value(self, theta: np.ndarray) -> float:
        self.evaluations += 1
        try:
            dev = self.criterion(theta)[0]
        except (np.linalg.LinAlgError, ValueError):
            return np.inf
        return dev if np.isfinite(dev) else np.inf

    def finals(self, theta: np.ndarray, beta_s: np.ndarray) -> list[dict]:
        return self.map(lambda b: b.final(theta, beta_s))


class RemoteRows(Protocol):
    """What :func:`_laplace_run` and :func:`_reml_run` ask of rows that are not in this process (the Dask path's
    actors, each holding a block of whole outer groups). Their blocks' ``final`` returns, besides the modes and
    covariances, its rows' sums (``dev_sum``, ``pearson2``, and ``extreme``: fitted probabilities at 0 or 1) and
    keeps their per-row results for :meth:`rows`. ``crossed``: the grouping factors cross, none nested in another
    (the rows are cut by the leading factor and the others' random effects are coupled)."""

    crossed: bool

    def has_edge(self, fam: Family, lk: Link) -> bool:
        """:meth:`Family.has_edge` for the rows' response."""

    def likelihood(self, fam: Family) -> Likelihood:
        """The rows' :class:`Likelihood` for ``fam`` (a member of the family: the negative binomial's theta)."""

    def moment_theta(self, beta: np.ndarray, fam: Family, relative: bool) -> float:
        """:func:`moment_theta` at the GLM's coefficients ``beta``."""

    def moment_thetas(self, beta: np.ndarray, fam: Family, relative: bool) -> list[float]:
        """Crossed random intercepts: each factor's :func:`moment_theta` at ``beta`` (:func:`moment_thetas_of`)."""

    def rows(self, finals: list[dict]) -> dict:
        """The per-row results (``fitted``, ``deviance_residuals``, ``pearson_residuals``,
        ``group_random_effect``) of the blocks whose ``final`` gave ``finals``, in the order of the rows."""

    def separation(self, names: list[str], beta: np.ndarray, extreme: int) -> list[str]:
        """:func:`advice.separation_in_frame`'s warnings for the design columns ``names`` and their coefficients
        ``beta`` (NaN for a dropped one), with ``extreme`` fitted probabilities at 0 or 1."""
