"""Blocks of rows that hold whole groups: the unit of work of a fit.

With one scalar random intercept every quantity of a fit is a sum over groups, so a block of rows holding
whole groups (sorted by group) can compute its share alone: the conditional modes of its groups, its part of
the Laplace deviance and gradient, of the IRLS sums, of the quadrature, of the REML statistics. The driver
(:mod:`glmmlab.engine.fit`) adds the parts up. In memory a large design is cut into as many blocks as there
are cores and they run in threads (numpy releases the GIL); on a cluster each block lives on a worker and only
(theta, beta) go out and small sums come back.

Within a block every group's computation depends on that group's rows alone (modes converge group by group),
so the result does not depend on how the groups are cut into blocks, up to the order of the final sums.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import special

from glmmlab.engine.families import FAMILIES, LINKS
from glmmlab.engine.pirls import RowState, find_modes, row_state
from glmmlab.engine.response import Response
from glmmlab.engine.threads import cpu_count, one_blas_thread  # noqa: F401  (one_blas_thread: the old engine's users)


class Block:
    """Rows of whole groups, sorted by group; ``group`` holds local codes 0..G_b-1, ``group_ids`` their global
    indices and ``rows`` the input row index of each row. ``X`` may be stored as float32 to halve the memory
    of very large designs (the Dask path's lean blocks); every product with it is computed in float64."""

    def __init__(self, y: np.ndarray, X: np.ndarray, group: np.ndarray, family: str, link: str,
                 rows: np.ndarray | None = None, group_ids: np.ndarray | None = None, keep_last: bool = True):
        self.y, self.X = y, X
        self.group = group.astype(np.int32, copy=False) if group.size and group.max() < 2**31 - 1 else group
        self.keep_last = keep_last
        self.counts = np.bincount(group)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.family, self.link = FAMILIES[family], LINKS[link]
        self.resp = Response(y, self.family)
        self.rows = rows
        self.group_ids = group_ids if group_ids is not None else np.arange(self.counts.size)
        self._u = np.zeros(self.counts.size)
        # The last point: (theta, beta, u, eta, d dev/d eta, d2 dev/d eta2, modes converged). Only what the
        # prediction of the next modes needs is kept, not the whole row state.
        self._last: tuple | None = None

    # -- shape ---------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def n_groups(self) -> int:
        return self.counts.size

    def group_sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, self.starts, axis=0)

    def constants(self) -> dict:
        return self.resp.constants()

    # -- conditional modes -------------------------------------------------------------------------------
    def _predicted_modes(self, theta: float, eta_fixed: np.ndarray) -> np.ndarray:
        """Modes at a new (theta, beta) predicted from the last point by one linearised Newton step with that
        point's derivatives: usually saves a full evaluation of the row state."""
        if self._last is None or theta == 0.0 or self._last[0] == 0.0:
            return self._u
        _, _, u, eta, dev_eta, dev_eta2, _, _ = self._last
        delta = eta_fixed + theta * u[self.group] - eta
        G = theta * (self.group_sum(dev_eta) + self.group_sum(dev_eta2 * delta)) + 2.0 * u
        H = theta * theta * self.group_sum(dev_eta2) + 2.0
        # One linearised step is good for the small moves of a converging optimiser; a long trial step of
        # the line search is not trusted further than one prior standard deviation.
        pred = u - np.clip(G / H, -1.0, 1.0)
        return np.where((H > 0) & np.isfinite(pred), pred, u)

    def modes(self, theta: float, beta: np.ndarray, exact: bool = False) -> tuple[np.ndarray, RowState, bool]:
        """The conditional modes at (theta, beta), their row state and whether they converged; ``exact``
        asks for modes exact to rounding (see ``find_modes(finish=True)``)."""
        last = self._last
        if last is not None and last[0] == theta and np.array_equal(last[1], beta) and (last[7] or not exact):
            return last[2], row_state(self.resp, last[3], self.link), last[6]
        eta_fixed = self.X @ beta
        same_point = last is not None and last[0] == theta and np.array_equal(last[1], beta)
        u0 = last[2] if same_point and last is not None else self._predicted_modes(theta, eta_fixed)
        u, rs, ok = find_modes(self, self.resp, self.link, theta, eta_fixed, u0, finish=exact)
        if np.all(np.isfinite(u)):
            self._u = u
        if np.all(np.isfinite(rs.dev)):
            if self.keep_last:
                self._last = (theta, np.array(beta, copy=True), u, rs.eta, rs.dev_eta, rs.dev_eta2, ok, exact)
            else:  # memory-lean: keep only the modes; a repeated point recomputes its row state
                self._last = None
        return u, rs, ok

    # -- Laplace deviance and gradient ---------------------------------------------------------------------
    def laplace(self, theta: float, beta: np.ndarray, gradient: bool = True) -> dict:
        """This block's share of the Laplace deviance; with ``gradient`` the gradient in two parts, the total
        being c * part_c + part_0 where c = dA/d(total deviance) is known only to the driver."""
        u, rs, ok = self.modes(theta, beta)
        W = self.group_sum(rs.w)
        L = 1.0 + theta * theta * W
        out = {"dev_sum": float(np.sum(rs.dev)), "uu": float(u @ u), "logdet": float(np.sum(np.log(L))),
               "modes_converged": bool(ok)}
        if not gradient:
            return out
        g = self.group
        e1 = rs.dev_eta
        e2 = (theta * theta / L)[g] * rs.w_eta
        s_e1 = self.group_sum(e1)
        s_e2 = self.group_sum(e2)
        s_d2 = self.group_sum(rs.dev_eta2)
        H = theta * theta * s_d2 + 2.0
        a1 = theta * s_e1 / H
        a2 = (theta * s_e2 + 2.0 * u) / H
        V = np.empty((self.n, 2))
        V[:, 0] = e1 - theta * a1[g] * rs.dev_eta2
        V[:, 1] = e2 - theta * a2[g] * rs.dev_eta2
        XtV = self.X.T @ V
        S = s_e1 + theta * u * s_d2  # sum of d dev/d eta + theta u sum of d2 dev/d eta2, per group
        out.update({
            "grad_beta_c": XtV[:, 0], "grad_beta_0": XtV[:, 1],
            "grad_theta_c": float(u @ s_e1 - a1 @ S),
            "grad_theta_0": float(u @ s_e2 + np.sum(2.0 * theta * W / L) - a2 @ S),
        })
        return out

    # -- adaptive Gauss-Hermite quadrature -----------------------------------------------------------------
    def agq(self, theta: float, beta: np.ndarray, phi: float, z: np.ndarray, w: np.ndarray) -> float:
        """Sum over this block's groups of log int p(y_j | u) phi(u) du by the rule (z, w) for N(0, 1),
        centred on the modes and scaled by the conditional SD from the expected information."""
        if theta == 0.0:
            _, rs, _ = self.modes(theta, beta, exact=True)
            return float(np.sum(self.resp.row_loglik(rs.dev, phi)))
        if phi == 1.0:
            u, rs, _ = self.modes(theta, beta, exact=True)
        else:
            # The integrand is exp(-sum dev / (2 phi) - u^2 / 2): its mode minimises sum dev + phi u^2, which is
            # the usual penalised deviance in v = sqrt(phi) u at theta' = theta / sqrt(phi). Centre and scale the
            # rule there (centring on the phi = 1 modes put the nodes off the integrand's mass).
            root = float(np.sqrt(phi))
            eta0 = self.X @ beta
            v, rs, _ = find_modes(self, self.resp, self.link, theta / root, eta0, None, finish=True)
            u = v / root
        W = self.group_sum(rs.w) / phi
        s = 1.0 / np.sqrt(1.0 + theta * theta * W)
        eta_fixed = rs.eta - theta * u[self.group]
        terms = np.empty((self.n_groups, z.size))
        logw = np.log(w)
        for k, zk in enumerate(z):
            uk = u + s * zk
            dev = row_state(self.resp, eta_fixed + theta * uk[self.group], self.link).dev
            ll = self.group_sum(self.resp.row_loglik(dev, phi))
            terms[:, k] = logw[k] + ll - 0.5 * uk * uk + 0.5 * zk * zk
        value = float(np.sum(np.log(s) + special.logsumexp(terms, axis=1)))
        return value if np.isfinite(value) else -np.inf

    # -- GLM (IRLS) ------------------------------------------------------------------------------------------
    def irls_start(self, mu: np.ndarray | None = None) -> dict:
        from glmmlab.engine.glm import starting_mu

        mu = starting_mu(self.y, self.family, self.link)
        eta = self.link.linkfun(mu)
        h1 = self.link.mu_eta(eta)
        w = h1 * h1 / np.maximum(self.family.variance(mu), 1e-300)
        return self._wls_sums(w, eta + (self.y - mu) / h1)

    def irls_step(self, beta: np.ndarray, sums: bool) -> dict:
        rs = row_state(self.resp, self.X @ beta, self.link)
        out = {"dev_sum": float(np.sum(rs.dev)), "valid": bool(np.all(self.family.mu_valid(rs.mu)))}
        if sums:
            out.update(self._wls_sums(rs.w, rs.eta + (self.y - rs.mu) / rs.h1))
        return out

    def _wls_sums(self, w: np.ndarray, z: np.ndarray) -> dict:
        Xw = self.X * w[:, None]
        return {"XtWX": self.X.T @ Xw, "XtWz": Xw.T @ z}

    def moment_pieces(self, beta: np.ndarray) -> dict:
        """Sums for the method-of-moments starting theta (see fit.moment_theta)."""
        rs = row_state(self.resp, self.X @ beta, self.link)
        r = (self.y - rs.mu) / rs.h1
        W = np.maximum(self.group_sum(rs.w), 1e-300)
        rbar = self.group_sum(rs.w * r) / W
        return {"wr2": float(np.sum(rs.w * r * r)), "rbar2": float(rbar @ rbar), "inv_W": float(np.sum(1.0 / W)),
                "groups": self.n_groups}

    # -- results at the optimum ----------------------------------------------------------------------------
    def final(self, theta: float, beta: np.ndarray) -> dict:
        """Per-group modes and weights, the working-weight precision and the Pearson sum at the optimum."""
        u, rs, ok = self.modes(theta, beta)
        W = self.group_sum(rs.w)
        Xw = self.X * rs.w[:, None]
        Sxw = self.group_sum(Xw)
        c = theta * theta / (1.0 + theta * theta * W)
        return {
            "group_ids": self.group_ids, "u": u, "W": W, "modes_converged": bool(ok),
            "precision": self.X.T @ Xw - Sxw.T @ (Sxw * c[:, None]),
            "pearson2": float(np.sum((self.y - rs.mu) ** 2 / rs.var)),
            "extreme": int(np.sum((rs.mu < 1e-8) | (rs.mu > 1 - 1e-8))) if self.family.bounded_mean else 0,
        }

    def diagnostics(self, theta: float, beta: np.ndarray) -> dict:
        u, rs, _ = self.modes(theta, beta)
        dev = self.family.unit_deviance(self.y, rs.mu)  # the accurate form (the fast paths' dev cancels near y = mu)
        return {
            "rows": self.rows, "fitted": rs.mu,
            "deviance_residuals": np.sign(self.y - rs.mu) * np.sqrt(np.maximum(dev, 0.0)),
            "pearson_residuals": (self.y - rs.mu) / np.sqrt(rs.var),
            "group_random_effect": theta * u[self.group],
        }

    def binary_columns(self) -> list[dict | None]:
        """Per column: for a column with at most two values in this block, each value's (all y == 0,
        all y == 1); None otherwise. The driver combines these to spot separation."""
        out: list[dict | None] = []
        for k in range(self.X.shape[1]):
            x = self.X[:, k]
            values = np.unique(x[: min(self.n, 3)]) if self.n else np.array([])
            first = x[0] if self.n else 0.0
            other = x != first
            if not other.any():
                levels = {float(first): self._all_equal(~other)}
            else:
                second = x[np.argmax(other)]
                if np.any(other & (x != second)):
                    out.append(None)
                    continue
                levels = {float(first): self._all_equal(~other), float(second): self._all_equal(other)}
            del values
            out.append(levels)
        return out

    def _all_equal(self, sel: np.ndarray) -> tuple[bool, bool]:
        ys = self.y[sel]
        return bool(np.all(ys == 0)), bool(np.all(ys == 1))

    # -- REML (Gaussian + identity) ------------------------------------------------------------------------
    def lmm_sums(self) -> dict:
        X = np.asarray(self.X, dtype=float)
        return {"XtX": X.T @ X, "Xty": X.T @ self.y, "yty": float(self.y @ self.y),
                "Sx": self.group_sum(X), "Sy": self.group_sum(self.y), "nj": self.counts.astype(float),
                "group_ids": self.group_ids}

    def lmm_rows(self, beta: np.ndarray, blup: np.ndarray) -> dict:
        """Fitted values and residuals given the BLUPs of all groups (indexed by global group id)."""
        b = blup[self.group_ids][self.group]
        fitted = self.X @ beta + b
        resid = self.y - fitted
        return {"rows": self.rows, "fitted": fitted, "deviance_residuals": resid, "pearson_residuals": resid,
                "group_random_effect": b}


class LocalBlocks:
    """Blocks in this process, evaluated in threads when there is more than one."""

    def __init__(self, blocks: list[Block]):
        self.blocks = blocks
        self._pool = ThreadPoolExecutor(min(len(blocks), cpu_count())) if len(blocks) > 1 else None

    def map(self, method: str, *args: Any) -> list[Any]:
        if self._pool is None:
            return [getattr(b, method)(*args) for b in self.blocks]

        def run(block: Block) -> Any:
            with np.errstate(all="ignore"):  # numpy's error state is per thread
                return getattr(block, method)(*args)

        return list(self._pool.map(run, self.blocks))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)


BLOCK_ROWS = 131_072
def default_block_count(n_rows: int) -> int:
    """A single block for small designs (threads would cost more than they save); otherwise blocks of about
    BLOCK_ROWS rows, at least one per core. Small blocks keep each evaluation's temporary arrays (a dozen
    vectors per row of the block being worked on) small next to the data: only as many blocks are in work at
    once as there are threads."""
    if n_rows < 100_000:
        return 1
    return max(cpu_count(), -(-n_rows // BLOCK_ROWS))


def split_design(d, family: str, link: str, n_blocks: int) -> list[Block]:
    """Cut a group-sorted design into ``n_blocks`` blocks of whole groups with about equal numbers of rows.
    Blocks are views of the design's arrays, not copies."""
    bounds = [0]
    if n_blocks > 1:
        ends = d.starts + d.counts
        for k in range(1, n_blocks):
            g = int(np.searchsorted(ends, d.n * k / n_blocks))
            bounds.append(min(max(g + 1, bounds[-1] + 1), d.n_groups))
    bounds.append(d.n_groups)
    bounds = sorted(set(bounds))
    blocks = []
    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        if g1 <= g0:
            continue
        r0 = int(d.starts[g0])
        r1 = int(d.starts[g1 - 1] + d.counts[g1 - 1])
        local = d.group[r0:r1] if g0 == 0 else d.group[r0:r1] - d.group.dtype.type(g0)
        blocks.append(Block(d.y[r0:r1], d.X[r0:r1], local, family, link,
                            rows=d.rows[r0:r1], group_ids=np.arange(g0, g1)))
    return blocks
