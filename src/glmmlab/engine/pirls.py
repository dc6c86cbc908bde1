"""Penalised iteratively reweighted least squares for the conditional modes.

For fixed (theta, beta) the spherical random effects u minimise the penalised deviance
sum_i d(y_i, mu_i) + sum_j u_j^2 with eta_i = x_i' beta + theta * u_j[i]. With one scalar random intercept
that problem separates into one scalar problem per group, so all groups take their Newton steps at once
(vectorised; per-group sums are ``np.add.reduceat`` over the group-sorted rows) and each group halves its own
step when its penalised deviance would rise.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import numpy as np

from glmmlab.engine.families import Family, Link, RowState, row_state  # noqa: F401  (re-exported)
from glmmlab.engine.response import Response

LOG_SQRT_2PI = 0.5 * float(np.log(2.0 * np.pi))


def _valid(family: Family, eta: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Rows whose eta gives a mean inside the family's range (e.g. positive for Poisson)."""
    return np.isfinite(mu) & family.mu_valid(mu) & np.isfinite(eta)


def _feasible_interval(family: Family, link: Link, theta: float, eta_fixed: np.ndarray, g: np.ndarray,
                       G: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the open interval of its scalar random effect that keeps every row's mean in the family's
    range under ``link`` (theta > 0); infinite ends where the range has none."""
    a, b = family.eta_range(link)
    lo, hi = np.full(G, -np.inf), np.full(G, np.inf)
    if np.isfinite(a):
        np.maximum.at(lo, g, (a - eta_fixed) / theta)
    if np.isfinite(b):
        np.minimum.at(hi, g, (b - eta_fixed) / theta)
    return lo, hi


def _feasible_start(family: Family, link: Link, theta: float, eta_fixed: np.ndarray, g: np.ndarray, G: int,
                    u: np.ndarray) -> np.ndarray:
    """Per group, a start inside the random effects that keep every mean in the family's range (identity and
    inverse links of positive families: eta > 0 on every row of the group). The feasible set of a group's
    scalar effect is an interval; the start is ``u`` moved half a prior standard deviation inside it (the
    middle of a narrower interval). The mode is then found from that start whatever the last point was, so
    the deviance at (theta, beta) does not depend on the path of the optimiser."""
    lo, hi = _feasible_interval(family, link, theta, eta_fixed, g, G)
    margin = np.minimum(0.5, 0.5 * (hi - lo))
    return np.clip(u, lo + margin, hi - margin)


class GroupedRows(Protocol):
    """What the mode finder needs of the rows: each row's group code and sums within groups. A prepared
    :class:`~glmmlab.engine.design.Design` has it, and so does a :class:`~glmmlab.engine.blocks.Block` of one."""

    group: np.ndarray

    @property
    def n_groups(self) -> int: ...

    def group_sum(self, values: np.ndarray) -> np.ndarray: ...


def find_modes(
    d: GroupedRows,
    resp: Response,
    link: Link,
    theta: float,
    eta_fixed: np.ndarray,
    u0: np.ndarray | None = None,
    *,
    tol: float = 1e-12,
    max_iter: int = 60,
    finish: bool = False,
) -> tuple[np.ndarray, RowState, bool]:
    """Return the conditional modes u, the row state at them, and whether the iteration converged.

    ``finish``: after convergence take the last (tiny) Newton step too, so the modes are exact to rounding
    rather than to ``tol``; quadrature needs that, as its value is not stationary in the modes."""
    G = d.n_groups
    u = np.zeros(G) if u0 is None or theta == 0.0 else u0.copy()
    if theta == 0.0:
        rs = row_state(resp, eta_fixed, link)
        if not resp.family.has_fast_path(link.name):
            bad = ~_valid(resp.family, eta_fixed, rs.mu)
            if bad.any():  # a mean outside the family's range: the point is infeasible
                return np.zeros(G), replace(rs, dev=np.where(bad, np.inf, rs.dev)), False
        return np.zeros(G), rs, True
    g = d.group

    def penalised(u_: np.ndarray) -> tuple[np.ndarray, RowState, np.ndarray]:
        eta = eta_fixed + theta * u_[g]
        rs = row_state(resp, eta, link)
        bad = ~np.isfinite(rs.dev)
        if not resp.family.has_fast_path(link.name):
            bad |= ~_valid(resp.family, eta, rs.mu)
        ok = ~bad.any() or d.group_sum(bad.astype(float)) == 0
        ok = np.broadcast_to(ok, u_.shape)
        pen = d.group_sum(rs.dev) + u_ * u_
        pen = np.where(ok, pen, np.inf)
        return pen, rs, ok

    pen, rs, ok = penalised(u)
    if not ok.all():
        u = np.where(ok, u, _feasible_start(resp.family, link, theta, eta_fixed, g, G, u))
        pen, rs, ok = penalised(u)
        if not ok.all():
            # No random effect gives some group means inside the family's range: treat the point as
            # infeasible (infinite deviance) and let the optimiser step back, rather than iterate on it.
            return u, rs, False
    # Each group iterates until its own step is negligible and then stays put, so a group's mode depends on
    # its rows alone, not on which other groups share the block.
    active = np.ones(G, dtype=bool)
    converged = False
    for _ in range(max_iter):
        grad = theta * d.group_sum(rs.dev_eta) + 2.0 * u
        h_fisher = 2.0 * theta * theta * d.group_sum(rs.w) + 2.0
        h_obs = theta * theta * d.group_sum(rs.dev_eta2) + 2.0
        hess = np.where(h_obs > 0.1 * h_fisher, h_obs, h_fisher)
        step = -grad / hess
        # Converged when the step at the observed curvature (at least the prior's) is negligible: a Fisher
        # step can be tiny only because the expected information is huge (a mean near the edge of its range
        # under an identity link), which is not convergence.
        active &= ~(np.abs(grad) < tol * (1.0 + np.abs(u)) * np.maximum(h_obs, 2.0))
        if not active.any():
            converged = True
            if finish:
                u = u + np.where(np.isfinite(step), step, 0.0)
                rs = row_state(resp, eta_fixed + theta * u[g], link)
            break
        step = np.where(active, step, 0.0)
        factor = np.ones(G)
        for _halving in range(30):
            u_new = u + factor * step
            pen_new, rs_new, ok_new = penalised(u_new)
            worse = active & ~(pen_new <= pen + 1e-12 * (1.0 + np.abs(pen)))
            if not worse.any():
                break
            factor = np.where(worse, factor * 0.5, factor)
        else:
            u_new = np.where(worse, u, u_new)
            pen_new, rs_new, ok_new = penalised(u_new)
        u, pen, rs = u_new, pen_new, rs_new
    if not converged and active.any():
        rs = _mark_pinned(resp, link, theta, eta_fixed, g, G, active, rs)
    return u, rs, converged


def _mark_pinned(resp: Response, link: Link, theta: float, eta_fixed: np.ndarray, g: np.ndarray, G: int,
                 active: np.ndarray, rs: RowState) -> RowState:
    """Groups whose penalised deviance still falls at the edge of the feasible interval have their mode on
    that edge (a row with y = 0 whose mean is driven to 0 under an identity link). The Laplace
    log-determinant, with the expected information 1 / mu of that row, is infinite there, and it grows
    without bound as (theta, beta) approach such a point, so the deviance is +inf: those groups' unit
    deviances are set to inf and the optimiser steps back."""
    if not np.isfinite(resp.family.eta_range(link)[0]):
        return rs
    lo, _hi = _feasible_interval(resp.family, link, theta, eta_fixed, g, G)
    edge = lo + 1e-9 * (1.0 + np.abs(lo))
    at_edge = row_state(resp, eta_fixed + theta * edge[g], link)
    grad = theta * np.bincount(g, weights=at_edge.dev_eta, minlength=G) + 2.0 * edge
    pinned = active & np.isfinite(lo) & (grad >= 0)
    if not pinned.any():
        return rs
    return replace(rs, dev=np.where(pinned[g], np.inf, rs.dev))
