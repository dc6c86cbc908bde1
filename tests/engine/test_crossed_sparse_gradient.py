"""The exact Laplace gradient of crossed scalar terms with a sparse coupling (the English Lexicon Project's shape:
many items crossed with fewer subjects): H^-1 is formed only at the pairs of levels the rows meet
(blocked_cholesky.Factor.scalar_row_inverse), equal to the blocks of the dense inverse, and the gradient equals
central differences of the deviance; such models take the exact gradient (laplace_fit.exact_gradient_ok)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers.blocked_cholesky import factor
from glmmlab.engine.solvers.glm_start import glm_irls
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.laplace_fit import exact_gradient_ok
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.engine.solvers.structure import Structure
from glmmlab.services.modeling.modelframe import build_model_frame
from tests.gradients import central_differences


def crossed(n: int = 4000, items: int = 1500, subjects: int = 300, third: int = 0, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    i, s = rng.integers(0, items, n), rng.integers(0, subjects, n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.5 * x + rng.normal(0, 0.8, items)[i] + rng.normal(0, 0.6, subjects)[s]
    out = {"x": x, "item": [f"i{v}" for v in i], "subject": [f"s{v}" for v in s]}
    if third:
        c = rng.integers(0, third, n)
        eta = eta + rng.normal(0, 0.4, third)[c]
        out["site"] = [f"c{v}" for v in c]
    out["y"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    out["k"] = rng.poisson(np.exp(0.3 * eta)).astype(float)
    return pd.DataFrame(out)


def laplace(formula: str, data: pd.DataFrame, family: str, link: str):
    mf = build_model_frame(data, formula, family=family)
    Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
    st = Structure(merge_terms(mf.terms))
    fam, lk = FAMILIES[family], LINKS[link]
    pw, off = np.ones(mf.n), np.zeros(mf.n)
    b0, _ = glm_irls(Xs, mf.y, pw, off, fam, lk)
    return st, GeneralLaplace(st, Xs, mf.y, pw, off, fam, lk), b0


CASES = [
    ("y ~ x + (1 | item) + (1 | subject)", "binomial", "logit", 0),
    ("y ~ x + (1 | item) + (1 | subject)", "binomial", "probit", 0),  # not canonical: a second factor
    ("k ~ x + (1 | item) + (1 | subject) + (1 | site)", "poisson", "log", 40),  # two coupled factors
]


@pytest.mark.parametrize("formula,family,link,third", CASES)
# the pairs summed all at once, or a few at a time; the columns of C21 with many entries (every column; those with
# more than 2 of the 300 subjects) taken densely, a whole panel at once or one column at a time
@pytest.mark.parametrize("at_once,dense_share", [(None, None), (7, None), (None, 0.0), (7, 0.008)])
def test_pairs_of_the_inverse_equal_the_dense_inverse(formula, family, link, third, at_once, dense_share,
                                                      monkeypatch):
    from glmmlab.engine.solvers import blocked_cholesky

    if at_once is not None:
        monkeypatch.setattr(blocked_cholesky, "PAIRS_AT_ONCE", at_once)
    if dense_share is not None:
        monkeypatch.setattr(blocked_cholesky, "DENSE_COLUMN_SHARE", dense_share)
    st, lap, b0 = laplace(formula, crossed(third=third), family, link)
    assert not st.dense and st.all_scalar and st.q1 == 1 and st.rest  # the sparse coupling
    rng = np.random.default_rng(1)
    w = rng.uniform(0.05, 0.3, st.n)
    theta = np.linspace(0.7, 0.4, st.n_theta)
    F = factor(st, st.crossprods(w, None), theta)
    codes = [np.asarray(b.codes, dtype=np.intp) for b in st.blocks]
    P = F.scalar_row_inverse(codes[0], [o + c for o, c in zip(st.rest_offsets, codes[1:])])
    H11, H12, H22 = F.inverse_parts()
    rest = [o + c for o, c in zip(st.rest_offsets, codes[1:])]
    np.testing.assert_allclose(P[:, 0, 0], H11[codes[0], 0, 0], rtol=1e-10)
    for t, kt in enumerate(rest, start=1):
        np.testing.assert_allclose(P[:, 0, t], H12[codes[0], kt], rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(P[:, t, 0], P[:, 0, t], rtol=0)
        for u, ku in enumerate(rest, start=1):
            np.testing.assert_allclose(P[:, t, u], H22[kt, ku], rtol=1e-12)
    # the diagonal blocks per level (the modes' conditional variances) from the same pairs
    diag = F.diag_blocks_inverse(st)
    np.testing.assert_allclose(diag[0][:, 0, 0], H11[:, 0, 0], rtol=1e-10)
    for b, o, dt in zip(st.rest, st.rest_offsets, diag[1:]):
        np.testing.assert_allclose(dt[:, 0, 0], np.diag(H22)[o: o + b.n_levels], rtol=1e-12)


@pytest.mark.parametrize("formula,family,link,third", CASES)
def test_exact_gradient_equals_central_differences(formula, family, link, third, monkeypatch):
    from glmmlab.engine.solvers.blocked_cholesky import Factor

    st, lap, b0 = laplace(formula, crossed(third=third), family, link)

    def dense(self):  # pragma: no cover - the failure this test guards against
        raise AssertionError("the dense (H^-1)_12 was formed")

    monkeypatch.setattr(Factor, "inverse_parts", dense)
    x = np.concatenate([np.linspace(0.7, 0.4, st.n_theta), b0 + 0.01])
    _, g = lap.value_and_grad(x)
    gn = central_differences(lap.value, x)
    np.testing.assert_allclose(g, gn, rtol=1e-4, atol=1e-4 * np.max(np.abs(gn)))


def test_the_english_lexicon_projects_shape_takes_the_exact_gradient():
    """80,000 items x 814 subjects: the dense (H^-1)_12 would cost 5e10 operations per gradient, the pairs
    n x Q2 (on Dask, each block's)."""
    mf = build_model_frame(crossed(n=100_000, items=80_000, subjects=814), "y ~ x + (1 | item) + (1 | subject)",
                           family="binomial")
    st = Structure(merge_terms(mf.terms))
    assert st.L1 * st.Q2 * st.Q2 > 2e9 and exact_gradient_ok(st)
