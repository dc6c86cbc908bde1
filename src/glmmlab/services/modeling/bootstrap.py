"""Parametric bootstrap intervals (lme4's ``bootMer`` + ``confint(type = "perc")``), on every core.

``nsim`` responses are simulated from the fit (:class:`glmmlab.engine.inference.intervals.Simulator`: new random effects
from their estimated distribution, then the response from the family) and each is refitted on the same rows. A
model with structure-keeping refits (:mod:`glmmlab.services.modeling.bootstrap_refit`: a one-factor linear mixed
model, a binomial or Poisson GLMM) is refitted from the fit's design, random-effects structure and estimates,
made once per process, and returns only the interval's parameters; any other model, and a replicate those refits
could not settle, by the ordinary fit (:func:`glmmlab.services.modeling.fitting.fit_frame_spec`). The refits run in
a process pool: a per-replicate refit spends much of its time in Python, which threads would serialise.

- Reproducible: replicate i draws from its own generator, seeded by ``SeedSequence(seed).spawn(nsim)[i]``, so the
  intervals depend on the seed only, not on the number of processes or how the replicates are shared out.
- Progress: ``progress(stage, fraction done)`` after each finished chunk; raising
  :class:`~glmmlab.engine.progress.FitCancelled` from it cancels the chunks not started and stops.
- Failed refits (the fit raised) are counted, left out of the percentiles and reported, as lme4 warns.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

import numpy as np

from glmmlab.engine.inference.intervals import (
    Simulator,
    VarianceLayout,
    parameter_names,
    parameter_values,
    percentile_interval,
)
from glmmlab.engine.inference.results import GlmmResult
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.progress import ProgressFn, report
from glmmlab.engine.solvers.threads import cpu_count
from glmmlab.services.modeling.bootstrap_refit import batched, refitter

# state of a worker process (set once by _init_worker): the frame, the spec, the simulator and the names
_WORKER: dict[str, Any] = {}


def _payload(result: GlmmResult) -> dict:
    mf = dataclasses.replace(result.require_frame("bootstrap"), recipe=None, warnings=[])
    names = parameter_names(mf, result.family, list(result.names))
    layout = VarianceLayout.of(merge_terms(mf.terms))
    sd_cor = layout.values(result.random_effects_table(), result.correlations or [])
    fp = tuple(result.family_params.values()) or None  # the family's own parameters, in the family's order
    beta = dict(zip(result.names, np.asarray(result.beta, dtype=float)))
    # the refits need no Satterthwaite df
    spec = dataclasses.replace(result.spec, ddf="none") if result.spec is not None else None
    return {"frame": mf, "spec": spec, "names": names, "family": result.family, "link": result.link,
            "sd_cor": sd_cor, "beta": beta, "var_residual": result.var_residual, "family_parameter": fp,
            "thetas": result.theta, "method": result.method, "x_names": list(result.names)}


# -- the process pools: every one open is known, so a cancel or the server's shutdown stops its processes ---------

_POOLS: set[ProcessPoolExecutor] = set()
_POOLS_LOCK = threading.Lock()


def die_with_parent() -> None:
    """In a worker process: be killed when the process that started it ends (Linux's PR_SET_PDEATHSIG; a worker
    started from a fork server dies with the fork server, which ends with the server), so no worker outlives its
    server, even one stopped by SIGKILL."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):  # another system: the shutdown's stop_all_pools still holds
        return
    if os.getppid() == 1:  # the parent ended before the call
        os._exit(0)


def open_pool(workers: int, initializer, initargs: tuple) -> ProcessPoolExecutor:
    """A process pool of ``workers`` (started as :func:`_context` says), registered until closed or stopped."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=initializer,
                               initargs=initargs)
    with _POOLS_LOCK:
        _POOLS.add(pool)
    return pool


def close_pool(pool: ProcessPoolExecutor) -> None:
    """The pool's work is done: let its processes end."""
    pool.shutdown(wait=True)
    with _POOLS_LOCK:
        _POOLS.discard(pool)


def stop_pool(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """Stop at once (a cancel, an error, a shutdown): drop the tasks not started and end the processes that are
    running one (SIGTERM, then SIGKILL after ``grace`` seconds), instead of waiting for their tasks to finish."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
    with _POOLS_LOCK:
        _POOLS.discard(pool)


def stop_all_pools() -> int:
    """Stop every open pool (the web server's shutdown); returns how many there were."""
    with _POOLS_LOCK:
        pools = list(_POOLS)
    for pool in pools:
        stop_pool(pool)
    return len(pools)


def _init_worker(payload: dict) -> None:
    from threadpoolctl import threadpool_limits

    die_with_parent()
    _WORKER.clear()
    _WORKER.update(payload)
    _WORKER["simulator"] = Simulator(payload["frame"], payload["family"], payload["link"], payload["sd_cor"],
                                     payload["beta"], payload["var_residual"], payload["family_parameter"])
    _WORKER["layout"] = VarianceLayout.of(merge_terms(payload["frame"].terms))
    _WORKER["blas"] = threadpool_limits(1)  # one process per core: BLAS threads would only contend
    try:
        _WORKER["refitter"] = refitter(payload)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # then every replicate by the ordinary fit
        _WORKER["refitter"] = None


def _refit_one(seed: np.random.SeedSequence, y: np.ndarray | None = None
               ) -> tuple[np.ndarray | None, bool, str | None]:
    """(parameter values or None when the refit failed, converged, the failure's message): the ordinary fit of
    replicate ``seed``'s response (``y`` when it is drawn already)."""
    from glmmlab.services.modeling.fitting import fit_frame_spec

    w = _WORKER
    if y is None:
        y = w["simulator"].draw(np.random.default_rng(seed))
    mf = dataclasses.replace(w["frame"], y=y)
    try:
        with np.errstate(all="ignore"):
            # from the original fit's theta, as lme4's refit() does for bootMer
            res = fit_frame_spec(mf, w["spec"], n_blocks=1, theta_start=w["thetas"])
    except Exception as exc:  # a failed refit is counted (lme4 records it and warns), never fatal
        return None, False, f"{type(exc).__name__}: {exc}"
    return parameter_values(res, w["names"], w["layout"]), bool(res.converged), None


def _run_chunk(indices: list[int], seeds: list[np.random.SeedSequence]) -> list[tuple]:
    fast = _WORKER.get("refitter")
    if fast is None:
        return [(i,) + _refit_one(s) for i, s in zip(indices, seeds)]
    sim = _WORKER["simulator"]
    Y = [sim.draw(np.random.default_rng(s)) for s in seeds]  # each replicate from its own generator
    try:
        values = fast.refit_many(Y)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        values = [None] * len(Y)
    # a replicate the structure-keeping refit could not settle is refitted the ordinary way
    return [(i, vals, True, None) if vals is not None else (i,) + _refit_one(s, y)
            for i, s, y, vals in zip(indices, seeds, Y, values)]


def _context():
    """How the worker processes start: by fork when this process runs no other thread (a script, the command
    line; fork needs no re-import, even of an unguarded script's main module), else from a fork server started
    with glmmlab imported (the web server: forking a threaded parent is unsafe)."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["glmmlab.services.modeling.bootstrap", "glmmlab.services.modeling.fitting"])
        return ctx
    return multiprocessing.get_context("spawn")


def bootstrap(result: GlmmResult, nsim: int = 1000, seed: int | None = None, progress: ProgressFn = None,
              workers: int | None = None) -> dict:
    """Refit ``nsim`` simulated responses: {"names", "replicates" (nsim x k, NaN rows for failed refits),
    "failed", "not_converged", "errors" (the first few messages), "seed", "workers", "seconds"}."""
    start = time.perf_counter()
    payload = _payload(result)
    ss = np.random.SeedSequence(seed)
    seeds = ss.spawn(nsim)
    if workers is None:
        workers = cpu_count()
    workers = max(1, min(int(workers), nsim))
    k = len(payload["names"])
    reps = np.full((nsim, k), np.nan)
    done, failed, not_converged = 0, 0, 0
    errors: list[str] = []

    def collect(rows):
        nonlocal done, failed, not_converged
        for i, vals, conv, err in rows:
            done += 1
            if vals is None:
                failed += 1
                if len(errors) < 5:
                    errors.append(err)
            else:
                reps[i] = vals
                not_converged += 0 if conv else 1

    report(progress, f"Bootstrap: 0 of {nsim} refits", 0.0)
    if batched(payload):
        # refitted a chunk at a time: chunks as large as progress reports allow, made from nsim alone, so the
        # replicates do not depend on the number of processes even if a batch's arithmetic did on its size
        size = max(1, min(250, -(-nsim // 8)))
    else:
        size = max(1, min(25, nsim // (workers * 8)))
    chunks = [list(range(a, min(a + size, nsim))) for a in range(0, nsim, size)]
    if workers == 1:
        _init_worker(payload)
        try:
            for c in chunks:
                collect(_run_chunk(c, [seeds[i] for i in c]))
                report(progress, f"Bootstrap: {done} of {nsim} refits", done / nsim)
        finally:
            _WORKER["blas"].restore_original_limits()
            _WORKER.clear()
    else:
        pool = open_pool(workers, _init_worker, (payload,))
        try:
            pending = {pool.submit(_run_chunk, c, [seeds[i] for i in c]) for c in chunks}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    collect(f.result())
                report(progress, f"Bootstrap: {done} of {nsim} refits", done / nsim)
        except BaseException:
            stop_pool(pool)  # a cancel stops the refits running now too, not only those not started
            raise
        close_pool(pool)
    return {"names": payload["names"], "replicates": reps, "failed": failed, "not_converged": not_converged,
            "errors": errors, "seed": seed if seed is not None else ss.entropy, "workers": workers,
            "seconds": time.perf_counter() - start}


def boot_intervals(result: GlmmResult, level: float, nsim: int, seed: int | None, progress: ProgressFn
                   ) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """Percentile intervals at ``level`` from ``nsim`` refits (the "boot" method of ``result.conf_int``)."""
    workers = os.environ.get("GLMMLAB_BOOT_WORKERS")
    run = bootstrap(result, nsim, seed, progress, int(workers) if workers else None)
    if run["failed"] == nsim:
        raise _all_failed(run)
    lower, upper = percentile_interval(run["replicates"], level)
    notes = {k: run[k] for k in ("nsim", "failed", "not_converged", "errors", "seed", "workers", "seconds")
             if k in run}
    notes["nsim"] = nsim
    notes["replicates"] = run["replicates"]
    return run["names"], lower, upper, notes


def _all_failed(run: dict) -> Exception:
    from glmmlab.engine.errors import GlmmInputError

    return GlmmInputError("every bootstrap refit failed (" + "; ".join(run["errors"][:2]) + "): the model may be "
                          "too complex for data simulated from it; simplify the random effects")
