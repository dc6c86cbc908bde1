"""Progress and cancel on Dask (services/distributed/pulse.py): a fit on a local two-worker cluster reports every
long step (the passes, the shuffle, the loading of the blocks, each evaluation of the optimiser, the standard
errors, the per-row results) through the callback the in-memory fits use, in order and with fractions that never go
back; a callback raising FitCancelled ends the fit with that error at any of those steps, the cluster keeps no
task, actor or block of the fit, and the next fit on it runs and equals the in-memory fit."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import glmmlab  # noqa: E402
from glmmlab.engine.progress import FitCancelled  # noqa: E402
from glmmlab.services.distributed.pulse import BEAT_SECONDS, Pulse  # noqa: E402
from tests.services.test_distributed import client  # noqa: E402,F401  (the local two-worker cluster)

CROSSED = "y ~ x + (1 | a) + (1 | b)"
NESTED = "y ~ x + (1 | a)"


def data(n: int = 3000, seed: int = 5) -> pd.DataFrame:
    """Bernoulli rows of 150 levels of a crossed with 40 of b."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 150, n), rng.integers(0, 40, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.8, 150)[a] + rng.normal(0, 0.5, 40)[b]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


def leftovers(client, within: float = 10.0) -> dict:  # noqa: F811
    """What a fit left on the cluster: actors on the workers, tasks the scheduler holds for a client (the
    releases travel to the scheduler and the workers after the fit returns: counted until none or ``within``
    seconds)."""
    end = time.monotonic() + within
    while True:
        actors = client.run(lambda dask_worker: len(dask_worker.state.actors))
        left = {"actors": sum(actors.values()), "tasks": len(client.run_on_scheduler(
            lambda dask_scheduler: [k for k, ts in dask_scheduler.tasks.items() if ts.who_wants]))}
        if left == {"actors": 0, "tasks": 0} or time.monotonic() > end:
            return left
        time.sleep(0.1)


@pytest.mark.parametrize("formula", [NESTED, CROSSED])
def test_progress_events_arrive_in_order(client, formula):  # noqa: F811
    df = data()
    events: list[tuple[str, float]] = []
    fit = glmmlab.glmm(formula, dd.from_pandas(df, npartitions=3), family="binomial",
                       progress=lambda s, f: events.append((s, f)))
    assert fit.converged
    stages = [s for s, _ in events]
    fractions = [f for _, f in events]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)  # never back
    assert stages[-1] == "Done" and fractions[-1] == 1.0

    def first(prefix: str) -> int:
        hits = [k for k, s in enumerate(stages) if s.startswith(prefix)]
        assert hits, (prefix, stages)
        return hits[0]

    steps = ["Pass 1", "Pass 2", "Loading", "Initial values", "Optimizing", "Computing standard errors"]
    at = [first(p) for p in steps]
    assert at == sorted(at), list(zip(steps, at))
    # each step's own counts: the partitions read, the blocks loaded (all of them, the last one reported)
    assert any(s.startswith("Pass 1") and "3 of 3 partitions read" in s for s in stages)
    assert any(s.startswith("Loading") and "blocks loaded" in s for s in stages)
    # the optimiser's evaluations, numbered in order
    evals = [s for s in stages if s.startswith("Optimizing") and "iteration" in s]
    assert len(evals) >= 2


def test_beats_repeat_the_last_stage_at_most_every_beat_seconds():
    now = [0.0]
    seen: list[tuple[str, float]] = []
    pulse = Pulse(lambda s, f: seen.append((s, f)), clock=lambda: now[0])
    pulse("Optimizing (iteration 3)", 0.4)
    pulse.beat()  # too soon
    now[0] += BEAT_SECONDS
    pulse.beat()
    pulse.beat("2 of 5 blocks", 0.3)  # too soon, and a fraction behind is not taken
    now[0] += BEAT_SECONDS
    pulse.beat("2 of 5 blocks", 0.3)
    pulse("Computing standard errors", 0.2)  # never dropped; its fraction kept from going back
    assert seen == [("Optimizing (iteration 3)", 0.4), ("Optimizing (iteration 3)", 0.4),
                    ("Optimizing (iteration 3) (2 of 5 blocks)", 0.4), ("Computing standard errors", 0.4)]
    Pulse(None).beat(force=True)  # no callback: nothing to call


class CancelAt:
    """A progress callback that raises FitCancelled at the report ``skip`` reports after the first one whose stage
    starts with ``prefix`` (as a web job's report does once a stop was asked for), keeping every stage."""

    def __init__(self, prefix: str, skip: int = 0):
        self.prefix, self.skip, self.stages = prefix, skip, []
        self.started: int | None = None

    def __call__(self, stage: str, fraction: float) -> None:
        self.stages.append(stage)
        if self.started is None and stage.startswith(self.prefix):
            self.started = len(self.stages) - 1
        if self.started is not None and len(self.stages) - 1 == self.started + self.skip:
            raise FitCancelled()


@pytest.mark.parametrize("formula,prefix,skip,inside", [
    (CROSSED, "Pass 1", 0, "Pass 1 of 2"),  # before the first pass's tasks
    (CROSSED, "Pass 1", 1, "partitions read"),  # once the first pass's tasks are done
    (CROSSED, "Pass 2", 1, "partitions arranged"),  # in the shuffle
    (CROSSED, "Loading", 1, "1 of 3 blocks loaded"),  # between two blocks being loaded
    (CROSSED, "Optimizing", 6, "Optimizing"),  # mid-optimisation, between two round trips of an evaluation
    (CROSSED, "Computing standard errors", 3, "Computing standard errors"),  # the Hessian's evaluations
    (NESTED, "Optimizing", 6, "Optimizing"),
    (NESTED, "Computing standard errors", 2, "Computing standard errors"),
])
def test_a_cancel_ends_the_fit_and_leaves_the_cluster_clean_and_usable(client, monkeypatch, formula, prefix,  # noqa: F811
                                                                        skip, inside):
    from glmmlab.services.distributed import pulse

    monkeypatch.setattr(pulse, "BEAT_SECONDS", 0.0)  # a beat at every round trip: the cancel lands inside steps
    monkeypatch.setattr(pulse, "POLL_SECONDS", 0.01)
    df = data()
    ddf = dd.from_pandas(df, npartitions=3)
    cancel = CancelAt(prefix, skip)
    with pytest.raises(FitCancelled):
        glmmlab.glmm(formula, ddf, family="binomial", progress=cancel)
    assert inside in cancel.stages[-1] and "Done" not in cancel.stages, cancel.stages[-3:]
    assert leftovers(client) == {"actors": 0, "tasks": 0}
    a = glmmlab.glmm(formula, df, family="binomial")
    b = glmmlab.glmm(formula, ddf, family="binomial")
    assert abs(b.log_likelihood - a.log_likelihood) <= 1e-8 * abs(a.log_likelihood)
    assert np.max(np.abs(b.beta - a.beta) / a.se) <= 1e-6
    assert leftovers(client)["actors"] == 0


def test_the_shuffled_rows_stay_on_the_workers(client, monkeypatch):  # noqa: F811
    """Waiting for the shuffle with progress must not bring its partitions to the driver: gathered, a 50M-row
    fit's rows would all pass through the client (the workers died serialising them). Everything the driver
    gathers during a fit is recorded; none of it may be a partition of rows (a DataFrame with the outer code)."""
    from glmmlab.services.distributed.partitions import OUTER

    gathered: list = []
    real = client.gather

    def recording(futures, *args, **kwargs):
        out = real(futures, *args, **kwargs)
        gathered.extend(out if isinstance(out, list) else [out])
        return out

    monkeypatch.setattr(client, "gather", recording)
    df = data()
    fit = glmmlab.glmm(NESTED, dd.from_pandas(df, npartitions=3), family="binomial")
    assert fit.converged
    assert gathered  # the passes' summaries do come back through gather
    rows = [g for g in gathered if isinstance(g, pd.DataFrame) and OUTER in g.columns]
    assert not rows, f"{len(rows)} partitions of rows ({sum(len(r) for r in rows)} rows) were gathered to the driver"
