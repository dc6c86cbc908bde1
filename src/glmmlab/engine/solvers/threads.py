"""The engine's runtime: threads over blocks of rows, each running numpy with BLAS on one thread; the heap kept
for reuse during a fit."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

_blas: Any = None


_nesting = {"one": 0, "wide": 0}  # the contexts below now entered (every thread's), under _nesting_lock
_nesting_lock = threading.Lock()


@contextmanager
def one_blas_thread():
    """A context in which BLAS (OpenBLAS, MKL) runs on one thread. The blocks are the engine's parallelism;
    BLAS threads on top of them only contend for the cores, and on the small matrices of a fit (p x p, the
    optimiser's few vectors) they cost far more than they save, most of all when another process keeps a
    core busy (measured: 0.31 s against 0.14 s for a 100,000-row Poisson fit). Inside another one (and no
    :func:`wide_blas`) it changes nothing: BLAS is on one thread already, and the limiter's calls into every BLAS
    library cost a small fit some 20 us each."""
    with _nesting_lock:
        nested = _nesting["one"] > 0 and _nesting["wide"] == 0
        _nesting["one"] += 1
    try:
        if nested:
            yield
        else:
            with _controller().limit(limits=1, user_api="blas"):
                yield
    finally:
        with _nesting_lock:
            _nesting["one"] -= 1


def _controller() -> Any:
    """threadpoolctl's controller of the BLAS libraries, made once."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas


# a dense coupled block of at least this side is factored with BLAS on every core (see :func:`wide_blas`)
WIDE_BLAS_SIDE = 2000


def wide_blas(side: int):
    """A context in which BLAS runs on every core, for the dense work on one coupled block of side ``side`` of a
    fit that has no blocks in threads (crossed factors run as one block): a Cholesky factor, a rank update or an
    inverse of a few thousand rows is BLAS-3 work that two threads do in about half the time (MovieLens' shape,
    3,706 movies: the factor and the rank update of an evaluation). Below :data:`WIDE_BLAS_SIDE`, or when the
    cores are busy (the 1-minute load average at least the number of cores), it changes nothing
    (:func:`one_blas_thread` stays in force): OpenBLAS's threads then wait for each other's time slices, and on
    the 2-core development machine at a load of 15-20 a MovieLens fit took 50 s of CPU with them against ~30 s
    without."""
    if side < WIDE_BLAS_SIDE:  # first: a small side (every profile point) costs no system call
        return nullcontext()
    cores = cpu_count()
    if cores < 2 or _load() >= cores:
        return nullcontext()
    return _widened(cores)


@contextmanager
def _widened(cores: int):
    with _nesting_lock:
        _nesting["wide"] += 1
    try:
        with _controller().limit(limits=cores, user_api="blas"):
            yield
    finally:
        with _nesting_lock:
            _nesting["wide"] -= 1


def _load() -> float:
    """The 1-minute load average (0 where the system does not tell)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return 0.0


# data of at least this many rows have their one-off passes outside the fit's blocks (the gather of the column
# frame's rows, the design's Gram matrices and scaling, the per-row results put back in input order) run in threads
THREADED_ROWS = 200_000


def in_threads(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, the items run in a pool of one thread per core (numpy's loops, BLAS and
    np.take release the GIL); in this thread where there is one item or one core. For the one-off passes over
    a large design outside the fit's blocks (its Gram matrix and scaling, the gather of its rows), which ran on
    one core while the other waited: the caller decides from the data's size whether the pool's start (~0.2 ms)
    is worth it (THREADED_ROWS). numpy's floating-point error settings are per thread: the pool's threads run
    under the caller's (np.geterr), so a pass warns, raises or stays quiet as it would in this thread."""
    workers = min(len(items), cpu_count())
    if workers <= 1:
        return [fn(item) for item in items]
    settings = np.geterr()

    def as_caller(item: Any) -> Any:
        with np.errstate(**settings):
            return fn(item)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(as_caller, items))


def row_slices(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous runs of about equal size covering 0 .. n-1 (rows, or the columns of a design)."""
    cuts = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def cpu_count() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- the heap during a fit ----------------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: ("MALLOC_TRIM_THRESHOLD_", 128 << 10),
                   _M_TOP_PAD: ("MALLOC_TOP_PAD_", 128 << 10),
                   _M_MMAP_THRESHOLD: ("MALLOC_MMAP_THRESHOLD_", 128 << 10)}
_DURING_A_FIT = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 256 << 20, _M_TOP_PAD: 64 << 20}
_heap_lock = threading.Lock()
_heap_users = 0
_libc: Any = False


def _glibc() -> Any:
    global _libc
    if _libc is False:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.mallopt, _libc.malloc_trim  # noqa: B018  (both exist: glibc)
        except (OSError, AttributeError):
            _libc = None
    return _libc


def heap_for_fits(reuse: bool) -> None:
    """``reuse`` True: keep what one evaluation of a fit frees for the next, rather than give each array of a
    row's size back to the operating system and fault its pages in again at the next evaluation (glibc's mmap
    threshold 32 MiB, trim threshold 256 MiB, top pad 64 MiB). Its default thresholds move with the sizes freed,
    so a fit's temporaries (an array per row quantity, freed and allocated again in every PIRLS step) went back
    and forth to the kernel: measured on 100,000 rows, 0.23 s a fit against 0.13 s with the heap kept. The peak
    is the same (the temporaries exist either way). False: back to the process's settings (its MALLOC_*
    environment, else glibc's defaults) and the freed memory returned to the operating system."""
    libc = _glibc()
    if libc is None:  # not glibc: its allocator has its own ways
        return
    if reuse:
        for param, value in _DURING_A_FIT.items():
            libc.mallopt(param, value)
        return
    for param, (env, default) in _GLIBC_DEFAULTS.items():
        libc.mallopt(param, int(os.environ.get(env, default)))
    libc.malloc_trim(0)


@contextmanager
def fit_heap():
    """A context in which freed memory is kept for reuse (:func:`heap_for_fits`), and given back at its end;
    contexts may nest and overlap in threads (the last to leave gives it back)."""
    global _heap_users
    with _heap_lock:
        if _heap_users == 0:
            heap_for_fits(True)
        _heap_users += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                heap_for_fits(False)
