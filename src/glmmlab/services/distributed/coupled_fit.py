"""The driver's objectives for crossed grouping factors on Dask: each evaluation factors the penalised system
across the actors (:mod:`~glmmlab.services.distributed.coupled`): the actors send their parts of the coupled
block, the driver factors it and sends back what the solves need."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.solvers.row_blocks import reml_criterion
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.distributed.actor_adapters import ActorBlock, ActorProfiledLmm
from glmmlab.services.distributed.coupled import CoupledFactor


class CoupledLmm(ActorProfiledLmm):
    """The profiled REML (or ML) criterion of a model with crossed factors over actors holding blocks of rows cut
    by the leading factor (``st``: the whole model's structure, levels only)."""

    def __init__(self, blocks: list[ActorBlock], n: int, sum_log_w: float, beta0: np.ndarray, st: Structure):
        super().__init__(blocks, n, sum_log_w, beta0)
        self.st = st

    def factor(self, theta: np.ndarray) -> CoupledFactor:
        return CoupledFactor(self.map(lambda b: b.actor.coupled_sums(theta)))

    def criterion(self, theta: np.ndarray) -> tuple[float, np.ndarray, float]:
        F = self.factor(np.asarray(theta, dtype=float))
        dev, pwrss = reml_criterion(F.logdet, F.SEE, self.n, self.sum_log_w, self.reml)
        return dev, F.SEE, pwrss

    def finals(self, theta: np.ndarray, beta_s: np.ndarray) -> list[dict]:
        theta = np.asarray(theta, dtype=float)
        F = self.factor(theta)
        p = F.SEE.shape[0] - 1
        shift = np.asarray(beta_s, dtype=float) - self.beta0
        u2 = F.upper(F.G2[:, p] - F.G2[:, :p] @ shift)
        Sinv, rest = F.Sinv(), F.rest_inverse(self.st)
        finals = self.map(lambda b: b.actor.coupled_reml_final(theta, beta_s, u2, Sinv))
        return [{"u": f["u"], "cond": [f["cond"], *rest]} for f in finals]
