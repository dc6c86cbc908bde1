"""Crossed random intercepts with a large coupled block (MovieLens' shape): REML by Newton steps from stencils
that share their leading SD (engine/solvers/crossed_newton.py) reaches BOBYQA's optimum; the stored pairs' matrix
kept for the same t1 is the one computed afresh; the conditional variances by a triangular solve equal the dense
inverse's; BLAS on every core gives the same fit."""

from __future__ import annotations

import numpy as np
import pytest

import glmmlab
from glmmlab.engine.solvers import blocked_cholesky, crossed_newton, reml, structure, threads
from glmmlab.engine.solvers.blocked_cholesky import factor
from glmmlab.engine.solvers.coupled_pairs import CoupledPairs
from tests.engine.test_crossed_reml_start import FORMULA, assert_same_fixed_effects, crossed_lmm
from tests.engine.test_crossed_sparse_gradient import crossed, laplace


def _fit(df):
    return glmmlab.glmm(FORMULA, df, family="gaussian").to_dict()


def test_newton_steps_reach_bobyqas_optimum(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)  # the sparse coupling path at a small size
    df = crossed_lmm()
    fit = _fit(df)
    monkeypatch.setattr(crossed_newton, "applies", lambda obj, start: False)
    usual = _fit(df)
    assert fit["optimization"]["optimizer"].startswith("Newton steps")
    assert usual["optimization"]["optimizer"].startswith("BOBYQA")
    assert fit["optimization"]["start"] == usual["optimization"]["start"]  # both from the moment start
    assert fit["fit"]["log_likelihood"] == pytest.approx(usual["fit"]["log_likelihood"], abs=1e-7)
    np.testing.assert_allclose(fit["optimization"]["final"], usual["optimization"]["final"], rtol=1e-5)
    assert_same_fixed_effects(fit, usual)
    assert fit["optimization"]["evaluations"] < usual["optimization"]["evaluations"]


def test_bobyqa_takes_over_where_the_steps_stop(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    df = crossed_lmm(seed=8)
    monkeypatch.setattr(crossed_newton, "_run", lambda fun, x0, lower: None)
    fit = _fit(df)
    assert fit["optimization"]["optimizer"].startswith("BOBYQA")
    monkeypatch.setattr(crossed_newton, "applies", lambda obj, start: False)
    assert _fit(df)["fit"]["log_likelihood"] == fit["fit"]["log_likelihood"]


def test_blas_on_every_core_gives_the_same_fit(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    df = crossed_lmm(seed=9)
    one = _fit(df)
    monkeypatch.setattr(threads, "WIDE_BLAS_SIDE", 1)
    monkeypatch.setattr(threads, "_load", lambda: 0.0)  # as on idle cores, two of them
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    seen = []
    real = threads.wide_blas

    def spy(side):
        ctx = real(side)
        seen.append(type(ctx).__name__)
        return ctx

    monkeypatch.setattr(reml, "wide_blas", spy)
    wide = _fit(df)
    assert seen and "nullcontext" not in seen  # every factor with BLAS on every core
    assert wide["fit"]["log_likelihood"] == pytest.approx(one["fit"]["log_likelihood"], abs=1e-9)
    np.testing.assert_allclose(wide["optimization"]["final"], one["optimization"]["final"], rtol=1e-8)


def test_the_kept_matrix_of_a_t1_is_the_fresh_one(monkeypatch):
    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    st, _, _ = laplace("y ~ x + (1 | item) + (1 | subject) + (1 | site)", crossed(third=40), "poisson", "log")
    cp = st.crossprods(np.random.default_rng(2).uniform(0.2, 2.0, st.n), None)
    pairs = CoupledPairs.build(cp.A21, cp.A22, cp.A11[:, 0, 0], st.Q2)
    other = CoupledPairs.build(cp.A21, cp.A22, cp.A11[:, 0, 0], st.Q2)  # computes afresh at every call
    assert isinstance(pairs, CoupledPairs) and isinstance(other, CoupledPairs)
    rng = np.random.default_rng(3)
    kept = None
    for t1, same in ((0.7, False), (0.7, True), (0.3, True), (0.3, False)):
        lam2 = np.full(st.Q2, 0.6) if same else rng.uniform(0.2, 1.5, st.Q2)  # one SD, or several
        got = np.tril(pairs.lower(t1, lam2, keep=True))
        np.testing.assert_allclose(got, np.tril(other.lower(t1, lam2)), rtol=1e-13, atol=1e-15)
        assert pairs._kept is not None and pairs._kept[0] == t1
        if kept is not None and kept[0] == t1:
            assert pairs._kept[1] is kept[1]  # the same t1: not computed again
        kept = pairs._kept
    pairs.lower(0.3, lam2)
    assert pairs._kept is None  # dropped by a call without keep


@pytest.mark.parametrize("share,at_once", [(None, None), (0.0, None), (1.0, None), (0.01, 7), (0.01, None)])
def test_conditional_variances_by_a_triangular_solve_equal_the_dense_inverse(share, at_once, monkeypatch):
    if share is not None:
        monkeypatch.setattr(blocked_cholesky, "DIAG_DENSE_SHARE", share)
    if at_once is not None:
        monkeypatch.setattr(blocked_cholesky, "PAIRS_AT_ONCE", at_once)
    st, _, _ = laplace("y ~ x + (1 | item) + (1 | subject) + (1 | site)", crossed(third=40), "binomial", "logit")
    assert not st.dense and st.all_scalar and st.q1 == 1 and st.rest
    w = np.random.default_rng(1).uniform(0.05, 0.3, st.n)
    F = factor(st, st.crossprods(w, None), np.array([0.7, 0.5, 0.4]))
    H11, _, H22 = F.inverse_parts()
    diag = F.diag_blocks_inverse(st)
    np.testing.assert_allclose(diag[0][:, 0, 0], H11[:, 0, 0], rtol=1e-10)
    for b, o, dt in zip(st.rest, st.rest_offsets, diag[1:]):
        np.testing.assert_allclose(dt[:, 0, 0], np.diag(H22)[o: o + b.n_levels], rtol=1e-12)
