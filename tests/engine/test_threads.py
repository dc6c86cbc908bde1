"""The engine's thread pool for one-off passes (threads.in_threads) runs its items under the caller's numpy
floating-point settings, which numpy keeps per thread."""

import warnings

import numpy as np
import pytest

from glmmlab.engine.solvers import threads


def _log_of_zero(_item: int) -> float:
    return float(np.log(np.zeros(1))[0])


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)  # the pool, not the inline loop, even on one core


def test_pool_raises_where_the_caller_raises(two_cores):
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError):
        threads.in_threads(_log_of_zero, [0, 1])


def test_pool_is_quiet_where_the_caller_is_quiet(two_cores):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="ignore"):
            assert threads.in_threads(_log_of_zero, [0, 1]) == [-np.inf, -np.inf]
