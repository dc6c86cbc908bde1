"""The optimiser's evaluations of a :class:`~glmmlab.engine.solvers.joint_laplace.JointLaplace` on the distinct
rows of its data (:mod:`~glmmlab.engine.solvers.distinct_rows`), a twin of it made once."""

from __future__ import annotations

from typing import Any

import numpy as np

from glmmlab.engine.families.modelled import ModelledFamily
from glmmlab.engine.solvers.distinct_rows import distinct_rows


class DistinctTwin:
    """The twin of the distinct rows, mixed into JointLaplace (whose rows, member, modes and ``_last`` it reads)."""

    codes: np.ndarray
    L: int
    A: np.ndarray
    part: np.ndarray
    Xs: np.ndarray
    y: np.ndarray
    pw: np.ndarray
    off: np.ndarray
    fam: ModelledFamily
    lk: Any
    resp: Any
    u: np.ndarray
    evaluations: int
    _data: dict
    _last: dict | None
    _twin: Any
    _twin_rows: np.ndarray
    _designs: dict[int, tuple[np.ndarray, np.ndarray]]

    def _compact(self) -> Any:
        """A JointLaplace on the distinct rows (equal level, terms' columns, designs, offset, response and weight),
        each with the sum of its copies' prior weights (:mod:`~glmmlab.engine.solvers.distinct_rows`): the
        optimiser's evaluations (:meth:`value`, :meth:`value_and_grad`) run there; :meth:`modes` keeps the rows
        themselves (the results' per-row values). None where there are too few copies (made once)."""
        if self._twin is None:
            n = self.y.shape[0]
            data = {k: v for k, v in self._data.items() if v is not None}
            found = distinct_rows([self.codes, self.A, self.Xs, self.y, np.broadcast_to(self.pw, (n,)),
                                   np.broadcast_to(self.off, (n,))] + list(data.values()), n)
            self._twin = False
            if found is not None:
                rows, counts = found
                make: Any = type(self)  # (JointLaplace)
                twin = make(self.codes[rows], self.L, self.A[rows], self.part, self.Xs[rows], self.y[rows],
                            np.broadcast_to(self.pw, (n,))[rows] * counts,
                            np.broadcast_to(self.off, (n,))[rows], self.fam, self.lk,
                            {k: v[rows] for k, v in data.items()})
                twin._twin = False
                self._twin, self._twin_rows = twin, rows
        return self._twin if isinstance(self._twin, DistinctTwin) else None

    def _on_twin(self, twin: Any, call):
        """``call(twin)`` with this member, modes and their reset (fit_joint sets u and _last) passed on, and the
        twin's modes back."""
        if twin.fam is not self.fam:
            twin.fam = self.fam
            twin.resp = twin.resp.with_family(self.fam)
        twin.u = self.u
        if self._last is None:
            twin._last = None
        self.evaluations += 1
        out = call(twin)
        self.u = twin.u
        self._last = {"twin": True} if twin._last is not None else None  # (no prediction for modes itself)
        return out

    def _twin_designs(self, designs: dict) -> dict:
        out = {}
        for key, X in designs.items():
            kept = self._designs.get(id(X)) if X is not None else None
            if X is not None and (kept is None or kept[0] is not X):
                kept = self._designs[id(X)] = (X, X[self._twin_rows])
            out[key] = None if kept is None else kept[1]
        return out
