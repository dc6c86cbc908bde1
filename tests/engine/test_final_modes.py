"""GeneralLaplace.final at the optimiser's last point takes the modes its last evaluation converged to (no mode
search again): the same numbers as the mode search from them gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmlab.engine.families.catalogue import resolve
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers.fit import _permuted
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.row_blocks import cut_blocks
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.modeling.modelframe import build_model_frame


def _block(family: str, link: str, seed: int) -> tuple[GeneralLaplace, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, groups = 600, 30
    g = rng.integers(0, groups, n)
    x = rng.standard_normal(n)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.7, groups)[g]
    y = rng.poisson(np.exp(eta)) if family == "poisson" else (rng.uniform(size=n) < 1 / (1 + np.exp(-eta)))
    data = pd.DataFrame({"y": y.astype(float), "x": x, "g": g})
    fam, lk = resolve(family, link)
    mf = build_model_frame(data, "y ~ x + (1 | g)", family=family)
    perm, _ = cut_blocks(merge_terms(mf.terms), 1)
    mf = _permuted(mf, perm)
    Xs = scaled_design(np.asarray(mf.X, dtype=float), list(mf.x_names))[0]
    st = Structure(merge_terms(mf.terms))
    lap = GeneralLaplace(st, Xs, mf.y, np.ones(mf.n), np.zeros(mf.n), fam, lk)
    return lap, np.array([0.8, 0.2, 0.4])


@pytest.mark.parametrize("family,link", [("binomial", "logit"), ("poisson", "log")])
def test_final_at_the_last_evaluated_point_equals_final_after_a_mode_search(family, link):
    lap, x = _block(family, link, 5)
    lap.value_and_grad(x)
    assert lap._at_last_modes(x[:1], x[1:]) is not None  # the shortcut is taken here
    quick = lap.final(x[:1], x[1:])
    lap2, _ = _block(family, link, 5)
    lap2.value_and_grad(x)
    lap2._last = None  # forgotten: final searches the modes again, from the last ones
    searched = lap2.final(x[:1], x[1:])
    assert set(quick) == set(searched)
    for key, value in searched.items():
        np.testing.assert_array_equal(np.asarray(quick[key]), np.asarray(value), err_msg=key)


def test_final_elsewhere_searches_the_modes():
    lap, x = _block("binomial", "logit", 6)
    lap.value_and_grad(x)
    other = x + np.array([0.0, 0.01, 0.0])
    assert lap._at_last_modes(other[:1], other[1:]) is None
