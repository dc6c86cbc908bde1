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
