"""The driver's objectives for crossed grouping factors on Dask: each evaluation factors the penalised system
across the actors (:mod:`~glmmlab.services.distributed.coupled`): the actors send their parts of the coupled
block, the driver factors it and sends back what the solves need."""

from __future__ import annotations

from collections import deque

import numpy as np

from glmmlab.engine.solvers.crossed_modes import CHORD_RATE, crossed_sparse
from glmmlab.engine.solvers.laplace import MAX_PREDICTED_STEP
from glmmlab.engine.solvers.mode_search import EDGE_GAP, STEP_TOL, search
from glmmlab.engine.solvers.row_blocks import BlockedLaplace, reml_criterion
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.distributed.actor_adapters import ActorBlock, ActorProfiledLmm
from glmmlab.services.distributed.coupled import CoupledFactor, add_parts
from glmmlab.services.distributed.pulse import Pulse, results, settle


def reduced_factor(calls: list, in_flight: int, pulse: Pulse | None = None) -> CoupledFactor | None:
    """The factor of the parts the actors return for ``calls`` (functions that each start one actor's call), added
    as they come with at most ``in_flight`` calls at a time, so the driver holds a few Q2 x Q2 parts and their sum,
    not one per actor; None when an actor has none (a factor that is not positive definite there). ``pulse``:
    beats after each part (a cancel is seen there)."""
    total: dict | None = None
    missing = False
    pending: deque = deque()

    def take() -> None:
        nonlocal total, missing
        part = pending.popleft().result()
        if pulse is not None:
            pulse.beat()
        if part is None:
            missing = True
        elif not missing:
            total = add_parts(total, part)

    try:
        for call in calls:
            pending.append(call())
            if len(pending) >= in_flight:
                take()
        while pending:
            take()
    except BaseException:
        settle(pending)
        raise
    return None if missing or total is None else CoupledFactor(total)


class CoupledLmm(ActorProfiledLmm):
    """The profiled REML (or ML) criterion of a model with crossed factors over actors holding blocks of rows cut
    by the leading factor (``st``: the whole model's structure, levels only; ``in_flight``: see
    :func:`reduced_factor`)."""

    def __init__(self, blocks: list[ActorBlock], n: int, sum_log_w: float, beta0: np.ndarray, st: Structure,
                 in_flight: int):
        super().__init__(blocks, n, sum_log_w, beta0)
        self.st, self.in_flight = st, in_flight

    def factor(self, theta: np.ndarray) -> CoupledFactor:
        F = reduced_factor([lambda b=b: b.actor.coupled_sums(theta) for b in self.units], self.in_flight,
                           self.pulse)
        assert F is not None
        return F

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


class CoupledUnit:
    """The Laplace deviance of a model with crossed factors over actors holding blocks of rows cut by the leading
    factor, as one block of :class:`BlockedLaplace` (``st``: the whole model's structure, levels only): the
    mode search of :class:`~glmmlab.engine.solvers.laplace.GeneralLaplace` step by step, each step's factor
    reduced here from the actors' parts (:mod:`~glmmlab.services.distributed.coupled_block` on the workers).
    The driver holds the coupled factors' modes; each actor its own leading levels'. ``in_flight``: how many actors'
parts of a factor the driver asks for at a time (:func:`reduced_factor`)."""

    def __init__(self, actors: list, st: Structure, fam, level_maps: list[list[np.ndarray]], in_flight: int):
        self.actors, self.st, self.fam, self.in_flight = actors, st, fam, in_flight
        self.maps = [m[0] for m in level_maps]  # each actor's leading levels
        self.u2 = np.zeros(st.Q2)
        self.nt = st.n_theta
        self.psi_gradient = False
        self._pending = False
        self.pulse: Pulse | None = None  # the fit's progress between round trips (pulse.py)
        # the last evaluation's factor (the actors hold their parts as "F"): the chord steps' and the predicted
        # modes' (crossed_modes), None where there is none or the last search did not converge
        self.last_F: CoupledFactor | None = None
        self.counts = {"factors": 0, "chord_steps": 0, "predicted": 0, "evaluations": 0}
        # the actors in turns round their workers (an actor's worker: its address; in this process, one)
        by_worker: dict = {}
        for i, a in enumerate(actors):
            by_worker.setdefault(getattr(a, "_address", None), []).append(i)
        queues = list(by_worker.values())
        self.turns = [q[k] for k in range(max(map(len, queues), default=0)) for q in queues if k < len(q)]
        self._flags()

    def _flags(self) -> None:
        flags = self._all("flags")
        self.edge = any(f["edge"] for f in flags)
        self.newton, self.observed = flags[0]["newton"], flags[0]["observed"]
        self.estimated = flags[0]["estimated"]
        # the modes predicted and searched by chord steps where GeneralLaplace.pirls does so in memory
        self.chords = crossed_sparse(self.st) and not self.newton and not self.edge \
            and all(f["chords"] for f in flags)
        self.last_F = None

    def _all(self, method: str, *args) -> list:
        return results([a.coupled(method, *args) for a in self.actors], self.pulse)

    def _few_at_a_time(self, method: str, *args) -> list:
        """:meth:`_all` with at most ``in_flight`` calls at a time, the actors taken round the workers in turn: for
        a call that sends a Q2 x Q2 array (``(H^-1)_22``), of which a worker would otherwise hold one copy per
        block at once (2,000 coupled levels, a dozen blocks: 400 MB of its 4 GiB)."""
        out: list = [None] * len(self.actors)
        pending: deque = deque()
        try:
            for i in self.turns:
                pending.append((i, self.actors[i].coupled(method, *args)))
                if len(pending) >= self.in_flight:
                    j, f = pending.popleft()
                    out[j] = f.result()
            while pending:
                j, f = pending.popleft()
                out[j] = f.result()
        except BaseException:
            settle([f for _, f in pending])
            raise
        if self.pulse is not None:
            self.pulse.beat()
        return out

    def _taken(self) -> bool:
        """Whether the actors are still to move to their last candidate (told with the next call that reads their
        state: a round trip saved per step)."""
        pending, self._pending = self._pending, False
        return pending

    def _factor(self, key: str, kind: str) -> CoupledFactor | None:
        accept = self._taken()
        self.counts["factors"] += 1
        return reduced_factor([lambda a=a: a.coupled("factor", key, kind, accept) for a in self.actors],
                              self.in_flight, self.pulse)

    def _positive(self, key: str) -> CoupledFactor | None:
        try:
            F = self._factor(key, "newton")
        except np.linalg.LinAlgError:
            return None
        return F if F is not None and np.isfinite(F.logdet) else None

    def set_family(self, fam) -> None:
        for f in [a.set_family(float(fam.parameter)) for a in self.actors]:
            f.result()
        self.fam = fam
        self._flags()

    def reset_modes(self) -> None:
        self._all("reset")
        self.u2 = np.zeros(self.st.Q2)
        self.last_F = None

    def _start(self, theta, beta, how: str) -> float:
        if how != "last":
            self.u2 = np.zeros(self.st.Q2)
        return float(sum(self._all("start", theta, beta, self.u2, how))) + float(self.u2 @ self.u2)

    def pirls(self, theta: np.ndarray, beta: np.ndarray, max_iter: int = 200) -> dict:
        """:meth:`GeneralLaplace.pirls` over the actors: the engine's mode search
        (:func:`~glmmlab.engine.solvers.mode_search.search`) with each of its operations a round of calls to the
        actors (:class:`_ActorSteps`), and the same fallbacks."""
        u2_before = self.u2.copy()
        self._pending = False
        self.counts["evaluations"] += 1
        pdev = self._predicted_start(theta, beta) if self.chords else None
        if pdev is None:
            pdev = self._start(theta, beta, "last")
        if not np.isfinite(pdev):
            pdev = self._start(theta, beta, "zero")
        if not np.isfinite(pdev) and self.edge:
            pdev = self._start(theta, beta, "moved")
        if not np.isfinite(pdev):
            raise FloatingPointError("no valid mean at the starting modes")
        steps = _ChordSteps(self, self.last_F) if self.chords else _ActorSteps(self)
        self.last_F = None  # (the actors' parts of it are replaced by the search's first factor)
        _, converged, at_edge, exhausted = search(steps, pdev, self.newton and self.observed and not self.edge,
                                                  self.edge, self.estimated, max_iter)
        if isinstance(steps, _ChordSteps):
            steps.finish()
        F = steps.F
        fisher_again = self.newton and not self.estimated
        if exhausted or self.edge or fisher_again:
            F = self._factor("F", "fisher_r" if self.edge or fisher_again else "fisher")
        if at_edge:  # the modes before this search stay the start of the next
            self._all("restore")
            self.u2 = u2_before
            return {"at_edge": True}
        keep = self.chords and converged
        sums = self._all("deviance", self._taken(), keep)
        self.last_F = F if keep else None
        dev = float(sum(s[0] for s in sums))
        uu = float(sum(s[1] for s in sums)) + float(self.u2 @ self.u2)
        canonical = all(s[2] for s in sums)
        F_ld, ld_key = F, "F"
        if self.observed:
            F_ld, ld_key = self._factor("ld", "observed"), "ld"
        assert F is not None and F_ld is not None
        return {"dev": dev, "uu": uu, "logdet": F_ld.logdet, "converged": converged, "F": F, "F_ld": F_ld,
                "ld_key": ld_key, "canonical": canonical}

    def _predicted_start(self, theta: np.ndarray, beta: np.ndarray) -> float | None:
        """The state at the modes predicted from the last evaluation's (GeneralLaplace._predicted_modes: the
        last factor's solve split as the factor is), or None where there is no prediction or it is refused (a
        step beyond MAX_PREDICTED_STEP, no valid mean there)."""
        F = self.last_F
        if F is None:
            return None
        parts = self._all("predict", theta, beta)
        if any(p is None for p in parts):
            return None
        x2 = F.middle(sum(p[0] for p in parts), sum(p[1] for p in parts))
        change2 = float(np.max(np.abs(x2), initial=0.0))
        if not np.isfinite(change2) or change2 > MAX_PREDICTED_STEP:
            return None
        u2 = self.u2 + x2
        res = self._all("start", theta, beta, u2, "predicted", x2)
        change = max(change2, max(r[1] for r in res))
        pdev = float(sum(r[0] for r in res)) + float(u2 @ u2)
        if not (np.isfinite(change) and change <= MAX_PREDICTED_STEP and np.isfinite(pdev)):
            return None  # (start "last" takes the actors back to their last modes)
        self.u2 = u2
        self.counts["predicted"] += 1
        return pdev

    def parts(self, theta: np.ndarray, beta: np.ndarray, gradient: bool) -> dict:
        """:meth:`GeneralLaplace.parts` of the whole data."""
        m = self.pirls(theta, beta)
        if m.get("at_edge"):
            return {"dev": np.inf, "uu": 0.0, "logdet": np.inf, "converged": False}
        out = {"dev": m["dev"], "uu": m["uu"], "logdet": m["logdet"], "converged": m["converged"]}
        if gradient:
            out.update(self._gradient(m))
        return out

    def _gradient(self, m: dict) -> dict:
        """:meth:`GeneralLaplace._gradient_split` (and the deviance's direct part) over the actors."""
        key, F = (m["ld_key"], m["F_ld"]) if self.observed else ("F", m["F"])
        if m["canonical"]:
            K, k_key = F, key
        else:
            K, k_key = self._factor("K", "observed"), "K"
        assert K is not None
        # S's coupled part and the solves' forward halves
        cs = self._few_at_a_time("gradient_sums", key, F.Sinv(), k_key)
        x0 = K.middle(2.0 * self.u2 + sum(c[0] for c in cs), sum(c[1] for c in cs))
        x1 = K.middle(-2.0 * self.u2, sum(c[2] for c in cs))
        parts = self._all("gradient", x0, x1)
        out = {k: sum(p[k] for p in parts) for k in parts[0]}
        return out

    def fixed_precision(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        self.pirls(theta, beta)
        F = self._factor("X", "X")
        assert F is not None
        return F.SEE

    def final(self, theta: np.ndarray, beta: np.ndarray) -> dict:
        """:meth:`GeneralLaplace.final` of the whole data, with the rows' sums of the Dask path's blocks."""
        st = self.st
        m = self.pirls(theta, beta)
        if m.get("at_edge"):
            raise FloatingPointError("the modes at the estimates lie on the edge of the link's range")
        FX = self._factor("X", "X")
        assert FX is not None
        cond_F, key = (m["F_ld"], m["ld_key"]) if self.estimated or self.fam.hessian_se else (FX, "X")
        fins = self._few_at_a_time("final", key, cond_F.Sinv(), beta)
        U1, C1 = np.zeros((st.L1, st.q1)), np.zeros((st.L1, st.q1, st.q1))
        for lmap, f in zip(self.maps, fins):
            U1[lmap] = f["u1"].reshape(-1, st.q1)
            C1[lmap] = f["cond1"]
        return {"u": np.concatenate([U1.ravel(), self.u2]), "SEE": FX.SEE,
                "cond": [C1, *cond_F.rest_inverse(st)], "converged": m["converged"],
                "dev_sum": sum(f["dev_sum"] for f in fins), "pearson2": sum(f["pearson2"] for f in fins),
                "extreme": sum(f["extreme"] for f in fins)}

    def agq(self, *args):  # pragma: no cover - nagq > 1 is refused for more than one term before any pass
        raise NotImplementedError("adaptive quadrature needs one scalar random-effects term")


class _ActorSteps:
    """The mode search's operations (:class:`~glmmlab.engine.solvers.mode_search.ModeSteps`) over the actors of a
    :class:`CoupledUnit`: the driver holds the coupled factors' modes and the last factor, each actor its leading
    levels' modes and the step's candidate. Without an edge, the full step's deviance comes with the step and the
    actors move to a candidate with the next call that reads their state (a round trip saved each)."""

    def __init__(self, unit: CoupledUnit):
        self.unit = unit
        self.F: CoupledFactor | None = None
        self.tried: float | None = None

    def factor(self, newton: bool) -> bool:
        unit = self.unit
        F = unit._positive("F") if newton else unit._factor("F", "step")
        if F is None:
            assert newton  # a working-weight factor is positive definite
            return False
        self.F = F
        return True

    def step(self) -> float:
        unit, F = self.unit, self.F
        assert F is not None
        u2_new = F.upper(F.G2[:, 0])
        self.delta2 = u2_new - unit.u2
        if unit.edge:
            change1, self.tried = max(unit._all("step", "F", u2_new, False)), None
        else:
            steps = unit._all("step", "F", u2_new, True)
            change1, self.tried = max(s[0] for s in steps), float(sum(s[1] for s in steps))
        return max(change1, float(np.max(np.abs(self.delta2), initial=0.0)))

    def edge_step(self) -> float:
        return min(self.unit._all("edge_step"))

    def try_step(self, t: float) -> float:
        unit = self.unit
        self.cand2 = unit.u2 + t * self.delta2
        if self.tried is not None and t == 1.0:  # the full step's, computed with the step
            rows = self.tried
        else:
            rows = float(sum(unit._all("try_step", t)))
        self.tried = None
        return rows + float(self.cand2 @ self.cand2)

    def accept(self) -> bool:
        unit = self.unit
        unit.u2 = self.cand2
        if not unit.edge:
            unit._pending = True
            return False
        gaps = unit._all("accept")
        gap, top = min(g[0] for g in gaps), max(g[1] for g in gaps)
        return gap <= EDGE_GAP * (1.0 + top)


class _ChordSteps(_ActorSteps):
    """:class:`_ActorSteps` with the chord steps of :class:`~glmmlab.engine.solvers.crossed_modes.ChordModes`
    (crossed scalar terms held sparse, the working weights): a step solved with the last factor ``F`` (the last
    evaluation's, at first) where it still converges fast enough, the system factored again (a reduction of the
    actors' parts of the coupled block) only where it does not or the modes are found. A chord step is two round
    trips (the actors' forward halves with their right-hand sides, then the backward halves with the full step's
    deviance), as a factor and its step are."""

    def __init__(self, unit: CoupledUnit, F: CoupledFactor | None):
        super().__init__(unit)
        self.F = F
        self.exact = False  # whether F is the factor at the current modes
        self.last_size = np.inf

    def factor(self, newton: bool) -> bool:
        self.exact = False
        if self.F is None:
            self._refactor()
        return True

    def _refactor(self) -> None:
        self.F = self.unit._factor("F", "step")  # (the actors' cross-products of chord() where at these modes)
        assert self.F is not None  # a working-weight factor is positive definite
        self.exact = True

    def step(self) -> float:
        unit, F = self.unit, self.F
        assert F is not None
        if not self.exact:
            parts = unit._all("chord", unit._taken())
            x2 = F.middle(sum(p[0] for p in parts) - unit.u2, sum(p[1] for p in parts))
            res = unit._all("chord_step", x2)
            unit.counts["chord_steps"] += 1
            size = max(float(np.max(np.abs(x2), initial=0.0)), max(r[0] for r in res))
            if STEP_TOL <= size <= CHORD_RATE * self.last_size:
                self.last_size, self.delta2, self.tried = size, x2, float(sum(r[1] for r in res))
                return size
            if size < STEP_TOL:  # taken (the actors move to it with the next call), then factored there
                unit.u2 = unit.u2 + x2
                unit._pending = True
            self._refactor()
        self.last_size = super().step()
        return self.last_size

    def finish(self) -> None:
        """The factor at the current modes, where the search stopped after a chord step."""
        if not self.exact:
            self._refactor()


class CoupledLaplace(BlockedLaplace):
    """BlockedLaplace whose one block is the whole data over the actors (:class:`CoupledUnit`)."""

    def __init__(self, unit: CoupledUnit, lik, nt: int):
        super().__init__([unit], lik, nt, threads=False)
