"""Sizes that would exhaust memory or time (issue 23): the fixed-effects design is sized before it is built and
refused naming the factor or interaction, its levels and the limit; the dense coupled block of crossed random
effects is sized before the first evaluation; preparing a large design reports progress, so a cancel is seen."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.design import collinear_columns
from glmmlab.engine.model.limits import LIMITS
from glmmlab.engine.progress import FitCancelled


def frame(n: int, **factors: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"y": rng.normal(size=n), "g": [f"g{k}" for k in rng.integers(0, 40, n)]})
    for name, levels in factors.items():
        df[name] = [f"{name}{k}" for k in (np.arange(n) % levels if levels >= n else rng.integers(0, levels, n))]
    return df


def test_the_size_limits_are_data():
    assert (LIMITS.design_columns, LIMITS.design_cells, LIMITS.coupled_block_bytes) == \
        (2_000, 200_000_000, 2 * 1024 ** 3)


def test_a_fixed_factor_of_100000_levels_is_refused_before_the_design_is_built():
    df = frame(100_000, f=100_000)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(GlmmInputError) as info:
            glmmlab.glmm("y ~ f + (1 | g)", df)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "factor 'f' has 100,000 levels (99,999 columns)" in message
    assert "The limits are 2,000 columns and 200,000,000 cells" in message
    assert peak < 400e6, f"{peak / 1e6:.0f} MB"  # the 100,000 x 100,000 design would be 80 GB


def test_an_interaction_of_two_300_level_factors_is_refused_naming_it():
    df = frame(10_000, a=300, b=300)
    with pytest.raises(GlmmInputError) as info:
        glmmlab.glmm("y ~ a:b + (1 | g)", df)
    message = str(info.value)
    assert "the interaction 'a:b' of factors with 'a' 300 levels x 'b' 300 levels" in message, message
    assert "2,000 columns" in message


def test_crossed_factors_with_a_coupled_block_above_the_limit_are_refused_before_the_first_evaluation():
    n, levels = 40_000, 20_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=n), "a": [f"a{k}" for k in rng.integers(0, levels, n)],
                       "b": [f"b{k}" for k in rng.integers(0, levels, n)]})
    calls = []
    start = time.perf_counter()
    with pytest.raises(GlmmInputError) as info:
        glmmlab.glmm("y ~ 1 + (1 | a) + (1 | b)", df, progress=lambda stage, f: calls.append(stage))
    assert time.perf_counter() - start < 15
    message = str(info.value)
    assert "the grouping factors cross" in message and "above the limit of 2.0 GB" in message, message
    assert "'a'" in message and "'b'" in message
    assert not any(s.startswith("Optimizing") for s in calls)


def test_a_cancel_is_seen_while_a_large_design_is_prepared():
    """1,500 factor levels on 30,000 rows: before, the first progress after "Preparing data" came when the
    design was ready (the collinearity check alone was O(p^4): minutes); now the design's building reports."""
    df = frame(30_000, f=1_500)
    seen = []

    def progress(stage, fraction):
        seen.append(stage)
        if len(seen) > 1:
            raise FitCancelled()

    start = time.perf_counter()
    with pytest.raises(FitCancelled):
        glmmlab.glmm("y ~ f + (1 | g)", df, progress=progress)
    assert time.perf_counter() - start < 5, seen
    assert seen[1].startswith("Preparing data: "), seen


def test_the_collinearity_check_of_a_wide_design_is_fast_and_keeps_the_rule():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(3_000, 800))
    Z[:, 500] = Z[:, 3] - 2.0 * Z[:, 10]  # a combination of earlier columns: dropped
    Z[:, 700] = Z[:, 500]
    start = time.perf_counter()
    assert collinear_columns(Z.T @ Z, 1) == [500, 700]
    assert time.perf_counter() - start < 10
    assert collinear_columns(Z[:, :400].T @ Z[:, :400], 1) == []
