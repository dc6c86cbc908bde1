"""Profile intervals on every core: the parameters of :func:`glmmlab.engine.solvers.profile.profile_parameter` shared
out over the bootstrap's process pool (:mod:`glmmlab.services.modeling.bootstrap`), one task per parameter. Each process
builds the profile problem once (its base optimum from the fit's estimates); the bounds do not depend on how the
parameters are shared out."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

import numpy as np

from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.profile import make_problem, profile_intervals, profile_parameter
from glmmlab.engine.solvers.threads import cpu_count, one_blas_thread

_WORKER: dict[str, Any] = {}
PARALLEL_ROWS = 2000  # from this many rows the parameters are profiled in parallel processes


def _init_worker(arguments: dict) -> None:
    from threadpoolctl import threadpool_limits

    from glmmlab.services.modeling.bootstrap import die_with_parent

    die_with_parent()
    _WORKER["blas"] = threadpool_limits(1)
    _WORKER["problem"] = make_problem(**arguments)


def _one(k: int, level: float) -> tuple[int, float, float]:
    lower, upper = profile_parameter(_WORKER["problem"], k, level)
    return k, lower, upper


def profile(result: GlmmResult, level: float, nsim: int, seed: int | None, progress: ProgressFn,
            workers: int | None = None) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """The "profile" method of ``result.conf_int``: (names, lower, upper, notes)."""
    from glmmlab.services.modeling.bootstrap import close_pool, open_pool, stop_pool

    start = time.perf_counter()
    arguments = result.profile_arguments()
    arguments["mf"] = dataclasses.replace(arguments["mf"], recipe=None)
    report(progress, "Profiling: the optimum", 0.0)
    # BLAS on one thread, as in a fit (and in the pool's processes): the profile's products are small, and OpenBLAS's
    # threads cost a 2 x 2 triangular solve 10 ms on a busy machine
    with one_blas_thread():
        problem = make_problem(**arguments)  # here too: the names, and refusals before any process starts
        names = list(problem.names)
        if workers is None:  # small data profile in a second or two: starting processes would cost more
            workers = cpu_count() if arguments["mf"].n >= PARALLEL_ROWS else 1
        workers = max(1, min(int(workers), len(names)))
        if workers == 1:
            names, lower, upper = profile_intervals(problem, level, progress)
            return names, lower, upper, {"workers": 1, "seconds": time.perf_counter() - start}
    lower, upper = np.full(len(names), np.nan), np.full(len(names), np.nan)
    pool = open_pool(workers, _init_worker, (arguments,))
    try:
        # the fixed effects of an LMM are the slow ones (a cross-product per column): they go first
        order = sorted(range(len(names)), key=lambda k: problem.kinds[k] != "beta")
        pending = {pool.submit(_one, k, level) for k in order}
        done = 0
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in finished:
                k, lower[k], upper[k] = f.result()
                done += 1
            report(progress, f"Profiling: {done} of {len(names)} parameters", done / len(names))
    except BaseException:
        stop_pool(pool)  # a cancel ends the profiles running now too
        raise
    close_pool(pool)
    return names, lower, upper, {"workers": workers, "seconds": time.perf_counter() - start}
