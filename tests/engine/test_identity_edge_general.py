"""Poisson with the identity link when fitted means sit at zero, in the general engine (issue 13, point 15).

The data of tests/engine/test_identity_edge.py (true means max(0, ...): the likelihood's maximum lies next to the
edge of the identity link's range) fitted with random slopes and crossed factors. What must hold, as for the
random-intercept engine:
- the log-likelihood reported is the Laplace objective at the reported estimates, evaluated from scratch (a new
  objective, cold modes), to 1e-9 relative, whatever the path of the optimiser (here: how the groups are cut
  into blocks, where the model nests);
- a fit either converges to a point at least as good as the GLM's own maximum (found independently by a
  derivative-free search inside the feasible region), or says plainly that the maximum lies on the edge; never
  the generic "did not converge within" advice and never a numerical breakdown;
- a point where some level's modes are driven onto the edge is infeasible (+inf), not a finite value from
  modes that never converged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers.blocked_cholesky import Structure
from glmmlab.engine.solvers.fit import _permuted
from glmmlab.engine.solvers.glm_start import glm_irls
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.row_blocks import cut_blocks
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.services.modeling.modelframe import build_model_frame
from tests.engine.test_identity_edge import _glm_max
from tests.engine.test_identity_edge import data as edge_data


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """The random-intercept test's data and a second factor h crossed with g."""
    df = edge_data.__wrapped__()
    df["h"] = np.random.default_rng(8).integers(0, 8, len(df))
    return df


def _cold_objective(data: pd.DataFrame, formula: str) -> GeneralLaplace:
    """A new objective over the whole data, its rows in the order the fit uses (the scaled design is taken
    before the rows are sorted, as fit_frame does)."""
    mf = build_model_frame(data, formula, family="poisson")
    Xs, _, _, _ = scaled_design(np.asarray(mf.X, dtype=float), list(mf.x_names))
    perm, _ = cut_blocks(merge_terms(mf.terms), 1)
    mf = _permuted(mf, perm)
    st = Structure(merge_terms(mf.terms))
    return GeneralLaplace(st, Xs[perm], mf.y, np.ones(mf.n), np.zeros(mf.n), FAMILIES["poisson"],
                          LINKS["identity"])


CASES = [("y ~ x + (x || g)", 1), ("y ~ x + (x || g)", 2), ("y ~ x + (1 + x | g)", 1),
         ("y ~ x + (1 + x | g)", 2), ("y ~ x + (1 | g) + (1 | h)", 1)]


@pytest.mark.parametrize("formula,n_blocks", CASES)
def test_reported_value_is_the_objective_at_the_estimates(data, formula, n_blocks):
    r = glmmlab.glmm(formula, data, family="poisson", link="identity", n_blocks=n_blocks)
    assert np.isfinite(r.log_likelihood)
    cold = -0.5 * _cold_objective(data, formula).value(np.asarray(r.optimization["final"]))
    assert cold == pytest.approx(r.log_likelihood, rel=1e-9, abs=1e-9)
    assert not any("did not converge within" in w for w in r.warnings)
    if r.converged:
        assert r.log_likelihood >= _glm_max(data) - 1e-6
    else:
        assert any("edge of what the identity link allows" in w for w in r.warnings)


def test_the_fit_does_not_depend_on_the_block_layout(data):
    a, b = (glmmlab.glmm("y ~ x + (1 + x | g)", data, family="poisson", link="identity", n_blocks=k)
            for k in (1, 2))
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-9)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-5, atol=1e-6)


def test_a_mode_driven_onto_the_edge_makes_the_point_infeasible(data):
    # theta = 1 on both effects at the GLM's coefficients: some level's penalised deviance keeps falling
    # towards a row mean of 0 (a row with y = 0); the Laplace deviance is +inf there (the old search stopped
    # at means of 1e-17 and returned a finite log-determinant of about 500)
    lap = _cold_objective(data, "y ~ x + (x || g)")
    x_glm, _ = glm_irls(lap.Xs, lap.y, lap.pw, lap.off, lap.fam, lap.lk)
    assert lap.value(np.concatenate([[1.0, 1.0], x_glm])) == np.inf
    assert np.isfinite(lap.value(np.concatenate([[0.05, 0.2], x_glm])))
