"""Progress and cancel for a fit on Dask, through the one progress callback the in-memory fits use.

The engine reports its stages (``progress(stage, fraction)``: the passes, each evaluation of the optimiser, the
standard errors); on Dask a single stage can hold minutes of work on the cluster (a pass over the partitions, the
shuffle, one evaluation of a crossed model over 20M rows, the Hessian's evaluations). :class:`Pulse` stands
between the engine and the caller's callback: it forwards every report, remembers the last one, and between the
round trips to the workers reports again (:meth:`Pulse.beat`: the last stage and fraction, or a count of the
tasks done of a pass), at most every :data:`BEAT_SECONDS`. A callback that wants the fit to stop raises
:class:`~glmmlab.engine.progress.FitCancelled` from any of these calls, as in memory; :func:`wait_for` then cancels
the pass's tasks still on the cluster before the error goes on, and the driver's ``finally`` releases the actors,
so a cancelled fit leaves nothing behind on the workers (nothing is written anywhere during a fit).

Fractions never go back: a beat repeats the last fraction or moves it within the step's own range.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from glmmlab.engine.progress import ProgressFn, report

BEAT_SECONDS = 0.25  # at most this often a beat reaches the callback (a cancel is seen within it and a round trip)
POLL_SECONDS = 0.25  # how long wait_for waits on the cluster between beats


class Pulse:
    """The progress callback handed to the engine on Dask (``pulse(stage, fraction)`` forwards to ``progress``)
    and the beats between round trips to the workers."""

    def __init__(self, progress: ProgressFn, clock=time.monotonic):
        self.progress, self.clock = progress, clock
        self.stage, self.fraction = "", 0.0
        self.last = clock()

    def __call__(self, stage: str, fraction: float) -> None:
        self.fraction = max(self.fraction, min(1.0, max(0.0, float(fraction))))
        self.stage, self.last = stage, self.clock()
        report(self.progress, stage, self.fraction)

    def beat(self, detail: str | None = None, fraction: float | None = None, force: bool = False) -> None:
        """Report the last stage again (with ``detail`` after it, at ``fraction`` when it is further on), where a
        cancel is seen; at most every BEAT_SECONDS unless ``force``."""
        if self.progress is None:
            return
        now = self.clock()
        if not force and now - self.last < BEAT_SECONDS:
            return
        self.last = now
        if fraction is not None:
            self.fraction = max(self.fraction, min(1.0, float(fraction)))
        report(self.progress, f"{self.stage} ({detail})" if detail else self.stage, self.fraction)

    def step(self, stage: str, lo: float, hi: float) -> "Step":
        """A stage of ``total`` parts spanning ``lo``..``hi`` of the fit (see :class:`Step`)."""
        self(stage, lo)
        return Step(self, stage, lo, hi)


class Step:
    """One stage of the driver's own (loading, the passes, the shuffle, gathering the rows): ``done(k, total)``
    beats with "k of total" and the fraction moved in proportion."""

    def __init__(self, pulse: Pulse, stage: str, lo: float, hi: float):
        self.pulse, self.stage, self.lo, self.hi = pulse, stage, lo, hi

    def done(self, k: int, total: int, what: str = "done", force: bool = False) -> None:
        frac = self.lo + (self.hi - self.lo) * (k / total if total else 1.0)
        self.pulse.stage = self.stage
        self.pulse.beat(f"{k} of {total} {what}", frac, force=force or k == total)


def wait_for(client: Any, futures: Sequence[Any], step: Step, what: str = "done", gather: bool = True) -> list:
    """The results of ``futures`` (Dask futures of one pass), beating with how many are done while they run; when
    the callback raises (a cancel) or a task fails, the pass's tasks still queued or running are cancelled on the
    cluster first. ``gather=False`` waits only and returns ``[]``: for a pass whose results stay on the workers
    (the shuffled rows: gathering them would bring every row to the driver)."""
    from dask.distributed import wait

    futures = list(futures)
    try:
        total = len(futures)
        while True:
            try:
                wait(futures, timeout=POLL_SECONDS)
                step.done(total, total, what)
                break
            except TimeoutError as exc:
                # the error's frames hold the futures in a cycle that only a collection would break: drop them
                exc.__traceback__ = None
                step.done(sum(f.done() for f in futures), total, what)
        if not gather:
            # a failed task raises here as gather would have raised it (wait returns for errors too)
            failed = [f for f in futures if f.status == "error"]
            if failed:
                failed[0].result()
            return []
        return client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise


def settle(futures: Sequence[Any]) -> None:
    """Wait for actor calls still in flight when a fit stops (a cancel or an error): each holds its actor's handle
    until it returns, and the driver releases the actors only once no call needs them (their errors are not this
    fit's any more)."""
    for f in futures:
        try:
            f.result()
        except Exception:  # noqa: BLE001 - the fit is ending with its own error
            pass


def results(futures: Sequence[Any], pulse: Pulse | None) -> list:
    """The results of actor calls (one round trip to the actors), then a beat."""
    out = [f.result() for f in futures]
    if pulse is not None:
        pulse.beat()
    return out
