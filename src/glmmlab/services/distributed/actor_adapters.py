"""The driver's side of the block actors: each actor seen as a block of the in-memory blocked objectives
(:class:`ActorBlock`), those objectives over actors (:class:`ActorLaplace`, :class:`ActorProfiledLmm`), and the
rows on the actors (:class:`ActorRows`: the sums the starts need, and the per-row results gathered once, in input
order)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg

from glmmlab.engine.families.distributions import Family
from glmmlab.engine.families.links import Link
from glmmlab.engine.inference.advice import separation_of_parts
from glmmlab.engine.model.terms import FactorBlock, ModelFrame
from glmmlab.engine.solvers.glm_start import irls, moment_theta_of, moment_thetas_of
from glmmlab.engine.solvers.laplace import inside_start_of
from glmmlab.engine.solvers.likelihood import Likelihood
from glmmlab.engine.solvers.row_blocks import BlockedLaplace, BlockedProfiledLmm
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.distributed.pulse import Pulse, results, settle

ROWS_IN_FLIGHT = 4  # blocks whose per-row results the driver asks for at a time


class ActorBlock:
    """The driver's view of one actor, as BlockedLaplace sees a block: its local structure (levels only, no
    rows), its current family, and methods that return futures."""

    def __init__(self, actor, st: Structure, fam):
        self.actor, self.st, self.fam = actor, st, fam

    def parts(self, theta, beta, gradient):
        return self.actor.parts(theta, beta, gradient)

    def sums(self, theta):
        return self.actor.sums(theta)

    def final(self, *args):
        return self.actor.final(*args)

    def agq(self, theta, beta, z, wq, phi=None):
        return self.actor.agq(theta, beta, z, wq, phi)

    def deviance_at_modes(self):
        return self.actor.deviance_at_modes()

    def fixed_precision(self, theta, beta):
        return self.actor.fixed_precision(theta, beta)

    def reset_modes(self):
        return self.actor.reset_modes()


class _OnActors:
    """``map`` for blocks that are Dask actors: the same call goes to every block, then the answers are
    gathered (the actors work at the same time), and the fit's :class:`Pulse` beats (where a cancel is seen)."""

    units: list
    pulse: Pulse | None = None

    def map(self, fn):
        return results([fn(unit) for unit in self.units], self.pulse)


class ActorProfiledLmm(_OnActors, BlockedProfiledLmm):
    """BlockedProfiledLmm over Dask actors."""

    def __init__(self, blocks: list[ActorBlock], n: int, sum_log_w: float, beta0: np.ndarray):
        super().__init__(blocks, n, sum_log_w, beta0, threads=False)


class ActorLaplace(_OnActors, BlockedLaplace):
    """BlockedLaplace over Dask actors."""

    def __init__(self, laps: list[ActorBlock], lik, nt: int):
        super().__init__(laps, lik, nt, threads=False)

    def set_family(self, fam, lik) -> None:
        for f in [lap.actor.set_family(float(fam.parameter)) for lap in self.laps]:
            f.result()
        for lap in self.laps:
            lap.fam = fam
        self.lik = lik


@dataclass
class DriverFrame(ModelFrame):
    """The driver's model frame: the rows are on the actors; here are their number and the design's names."""

    count: int = 0

    @property
    def n(self) -> int:
        return self.count


class ActorRows:
    """The rows on the actors, as :class:`glmmlab.engine.solvers.row_blocks.RemoteRows`: sums over them, and their
    per-row results gathered once, in input order."""

    def __init__(self, actors: list, y: dict, p: int, dispersion: str, columns: list | None, crossed: bool):
        self.actors, self.y, self.p, self.dispersion, self.columns = actors, y, p, dispersion, columns
        self.crossed = crossed
        self.input_rows: np.ndarray | None = None
        self.pulse: Pulse | None = None  # the fit's progress between round trips (pulse.py)

    def _map(self, method: str, *args: Any) -> list:
        return results([getattr(a, method)(*args) for a in self.actors], self.pulse)

    def has_edge(self, fam: Family, lk: Link) -> bool:
        return fam.has_edge(lk, np.array([self.y["mean"]]))  # the only thing of y it reads: its mean

    def eta_range(self, fam: Family, lk: Link) -> tuple[float, float]:
        return fam.eta_range(lk, np.array([self.y["mean"]]))

    def likelihood(self, fam: Family) -> Likelihood:
        parameter = None if fam.parameter is None else float(fam.parameter)
        return Likelihood.of_blocks(fam, self._map("likelihood_sums", parameter, self.dispersion), self.dispersion)

    def moment_theta(self, beta: np.ndarray, fam: Family, relative: bool) -> float:
        parameter = None if fam.parameter is None else float(fam.parameter)
        return moment_theta_of(self._map("moment_sums", beta, parameter), self.p, fam, relative)

    def moment_thetas(self, beta: np.ndarray, fam: Family, relative: bool) -> list[float]:
        parameter = None if fam.parameter is None else float(fam.parameter)
        return moment_thetas_of(self._map("crossed_moment_sums", beta, parameter), self.p, fam, relative)

    def glm(self, fam: Family) -> tuple[np.ndarray, float]:
        """The GLM by IRLS on the actors' summed normal equations."""
        parameter = None if fam.parameter is None else float(fam.parameter)

        def solve(A: np.ndarray, c: np.ndarray, parts: list) -> np.ndarray:
            try:
                return linalg.cho_solve(linalg.cho_factor(A), c)
            except (np.linalg.LinAlgError, ValueError):
                return np.linalg.lstsq(A, c, rcond=None)[0]

        try:
            return irls(lambda beta: self._map("glm_pass", beta, parameter), solve)
        finally:
            self._map("glm_done")

    def inside_start(self, beta: np.ndarray, fam: Family, lk: Link) -> np.ndarray:
        """:func:`glmmlab.engine.solvers.laplace.inside_start` from the actors' sums."""
        if not self.has_edge(fam, lk):
            return beta

        def centre_of(c: float) -> np.ndarray:
            parts = self._map("centre_sums")
            G, s1, so = (sum(p[k] for p in parts) for k in range(3))
            return np.linalg.lstsq(G, c * s1 - so, rcond=None)[0]

        return inside_start_of(beta, lk, self.eta_range(fam, lk), self.y["sum_wy"] / self.y["sum_w"], centre_of,
                               lambda b, lo, hi: min(self._map("edge_gap", b, lo, hi)))

    def rows(self, finals: list[dict]) -> dict:
        numbers = self._map("row_numbers")
        rows = np.concatenate(numbers)
        order = np.argsort(rows, kind="stable")
        n = rows.size
        self.input_rows = rows[order]
        del rows
        dest = np.empty(n, dtype=np.int32 if n < np.iinfo(np.int32).max else np.int64)
        dest[order] = np.arange(n, dtype=dest.dtype)  # where each block's row goes in input order
        del order
        out: dict[str, np.ndarray] = {}
        starts = np.concatenate([[0], np.cumsum([x.size for x in numbers])])
        del numbers
        # a few blocks asked for at a time: each worker computes one block's rows while the driver places
        # another's, and the driver holds the output and those few blocks
        pending: deque = deque()

        def place(j: int, future: Any) -> None:
            at = dest[starts[j]:starts[j + 1]]
            last = ""
            for key, col in future.result().items():
                if col is None:  # the same column as the one before it
                    out.setdefault(key, out[last])
                else:
                    out.setdefault(key, np.empty(n, dtype=col.dtype))[at] = col
                last = key
            if self.pulse is not None:
                self.pulse.beat(f"per-row results of {j + 1} of {len(self.actors)} blocks")

        try:
            for k, actor in enumerate(self.actors):
                pending.append((k, actor.take_rows()))
                if len(pending) >= ROWS_IN_FLIGHT:
                    place(*pending.popleft())
            while pending:
                place(*pending.popleft())
        except BaseException:
            settle([f for _, f in pending])
            raise
        return out

    def separation(self, names: list[str], beta: np.ndarray, extreme: int) -> list[str]:
        return separation_of_parts(names, self.columns or [], beta, extreme, int(self.y["n"]))


def skeleton(blocks: list[FactorBlock], sizes: list[int], levels: list[list[str]] | None = None) -> Structure:
    """A Structure with the blocks' shapes and no rows (what the driver needs of it: theta, u, levels)."""
    out = []
    for b, nl, k in zip(blocks, sizes, range(len(blocks))):
        lv = levels[k] if levels is not None else [""] * nl
        out.append(FactorBlock(b.component, np.zeros(0, dtype=np.int64), lv, np.zeros((0, b.q)), b.names, b.groups))
    return Structure(out)

