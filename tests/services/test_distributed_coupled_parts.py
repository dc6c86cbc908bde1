"""A Dask block's part of the blocked factor of crossed factors (services/distributed/coupled.py) is the engine's
own (blocked_cholesky.factor_part, finish_coupled): for one block holding every row, the driver's factor equals the
in-memory factor; and a block keeps the coupled block's stored products (coupled_pairs.CoupledPairs, built at the
second factorisation of the same cross-products, as REML makes them) only under ACTOR_PAIRS_BYTES, a worker holding
many blocks."""

from __future__ import annotations

import numpy as np
import pytest

from glmmlab.engine.solvers.blocked_cholesky import factor
from glmmlab.engine.solvers.coupled_pairs import CoupledPairs
from glmmlab.services.distributed import coupled
from glmmlab.services.distributed.coupled import CoupledFactor, PartialFactor, add_parts
from tests.engine.test_crossed_sparse_gradient import crossed, laplace


def _reml_crossprods(st, lap):
    E = np.column_stack([lap.Xs, lap.y])
    return st.crossprods(np.ones(lap.y.size), E)


@pytest.mark.parametrize("cap,kept", [(None, True), (0, False)])
def test_a_block_of_every_row_equals_the_in_memory_factor_and_keeps_pairs_under_the_cap(monkeypatch, cap, kept):
    st, lap, _ = laplace("y ~ x + (1 | item) + (1 | subject)", crossed(), "binomial", "logit")
    assert not st.dense and st.all_scalar  # the sparse scalar coupling, where the stored products apply
    if cap is not None:
        monkeypatch.setattr(coupled, "ACTOR_PAIRS_BYTES", cap)
    cp = _reml_crossprods(st, lap)
    for theta in (np.array([0.7, 0.4]), np.array([0.9, 0.5]), np.array([1.1, 0.3])):
        F = CoupledFactor(add_parts(None, PartialFactor(st, cp, theta).sums()))
        ref = factor(st, _reml_crossprods(st, lap), theta)
        assert F.logdet == pytest.approx(ref.logdet, rel=1e-12)
        np.testing.assert_allclose(F.SEE, ref.SEE, rtol=1e-10, atol=1e-10)
    assert isinstance(cp._pairs, CoupledPairs) is kept
    if kept:
        assert 0 < cp._pairs.nbytes() <= coupled.ACTOR_PAIRS_BYTES
    else:
        assert cp._pairs is False  # not built again at the next theta: the sparse product
