"""Cutting the groups into blocks (threads in memory, workers on a cluster) must not change the fit:
the results agree with the single-block fit to 1e-8 relative on every reference case."""

from __future__ import annotations

import pytest

import glmmlab
from tests.conftest import assert_close_in_spread, fit_params, load_case
from tests.conftest import assert_rel_close as close


@pytest.mark.parametrize("case,nagq", fit_params())
def test_blocks_do_not_change_the_fit(case, nagq):
    ref, data = load_case(case)
    kw = dict(family=ref["family"].lower(), link=ref["link"], nagq=nagq)
    one = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], n_blocks=1, **kw)
    three = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], n_blocks=3, **kw)
    close(three.log_likelihood, one.log_likelihood)
    close(three.beta, one.beta)
    close(three.se, one.se)
    if one.variances[0]["variance"] > 0:
        close(three.variances[0]["variance"], one.variances[0]["variance"])
    # BLUPs in their spread (Gamma)
    assert_close_in_spread(three.modes[0].values[:, 0], one.modes[0].values[:, 0])
    close(three.fitted, one.fitted)
    assert three.rows.tolist() == one.rows.tolist()


def test_blas_runs_on_one_thread_during_a_fit():
    """The blocks are the engine's parallelism: BLAS threads on top of them only contend for the cores."""
    from threadpoolctl import threadpool_info

    ref, data = load_case("cbpp_binomial_logit")
    seen = []
    glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], family="binomial",
                     progress=lambda stage, fraction: seen.extend(
                         i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
    assert seen and set(seen) == {1}


@pytest.mark.parametrize("slope", [False, True])
def test_a_block_keeps_no_rows_between_evaluations(slope):
    """A block kept between evaluations (a Dask actor holds one per partition, a worker dozens) holds its data and
    per-level state only: what the evaluations (modes, gradient, final, the rows' results) allocate per row is
    freed when they return (a random intercept's products of columns of ones were once kept, a float64 row per
    row of data)."""
    import tracemalloc

    import numpy as np

    from glmmlab.engine.families.catalogue import resolve
    from glmmlab.engine.model.terms import FactorBlock
    from glmmlab.engine.solvers.laplace import GeneralLaplace
    from glmmlab.engine.solvers.structure import Structure

    n, levels = 200_000, 400
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))]).astype(np.float32)
    g = np.sort(rng.integers(0, levels, n)).astype(np.int32)
    x = rng.normal(size=n)
    Z = np.column_stack([np.ones(n), x]) if slope else np.broadcast_to(1.0, (n, 1))
    eta = X @ np.array([-0.2, 0.5, -0.3]) + rng.normal(scale=0.6, size=levels)[g] + (0.3 * x if slope else 0.0)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    fam, lk = resolve("binomial", None)
    block = FactorBlock("g", g, [str(k) for k in range(levels)], Z, ["(Intercept)", "x"][:Z.shape[1]],
                        [[0, 1]] if slope else [[0]])
    st = Structure([block])
    tracemalloc.start()
    try:
        lap = GeneralLaplace(st, X, y, np.broadcast_to(1.0, (n,)), np.broadcast_to(0.0, (n,)), fam, lk, "estimated")
        lap.keep_last = False  # the Dask path's lean blocks
        before = tracemalloc.get_traced_memory()[0]
        theta = np.array([0.6, 0.1, 0.3]) if slope else np.array([0.6])
        beta = np.array([-0.2, 0.5, -0.3])
        for k in range(3):
            lap.parts(theta * (1 + 0.01 * k), beta, True)
        lap.final(theta, beta)
        lap.final_rows(theta, beta)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # the products a random slope needs (z x and x^2, a float64 row each) are the block's to keep
    allowed = 2 * 8 * n if slope else 0
    assert kept < allowed + n  # less than an eighth of one float64 row per row of data beyond that
