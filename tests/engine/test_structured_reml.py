"""The linear mixed model with a structured term fitted with the profiled criterion's exact gradient
(engine/solvers/structured_reml.py): the gradient against central differences (REML and ML, prior weights, rows
cut into blocks), the moments' start, and an optimum the derivative-free search missed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.model.terms import merge_terms
from glmmlab.engine.solvers import structured_reml
from glmmlab.engine.solvers.likelihood import sum_log
from glmmlab.engine.solvers.reml import ProfiledLmm, _block_rows
from glmmlab.engine.solvers.row_blocks import BlockedProfiledLmm, centring_fit, cut_blocks, normal_equations
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.engine.solvers.structure import Structure
from glmmlab.engine.solvers.structured_start import moment_start
from glmmlab.interfaces.cli import read_table
from glmmlab.services.modeling.modelframe import build_model_frame
from tests.conftest import REFERENCE
from tests.gradients import central_differences

DATA = REFERENCE / "breadth" / "sim_longitudinal_ar1.csv"


def _criterion(formula: str, reml: bool, weighted: bool, n_blocks: int):
    data = read_table(str(DATA))
    if weighted:
        data["w"] = np.random.default_rng(5).uniform(0.5, 2.0, len(data))
    mf = build_model_frame(data, formula, weights="w" if weighted else None)
    blocks = merge_terms(mf.terms)
    if n_blocks > 1:  # rows sorted and cut into blocks of whole groups, as fit_frame does for other families
        perm, specs = cut_blocks(blocks, n_blocks)
        data = data.iloc[perm].reset_index(drop=True)
        mf = build_model_frame(data, formula, weights="w" if weighted else None)
        blocks = merge_terms(mf.terms)
        perm2, specs = cut_blocks(blocks, n_blocks)
        assert np.array_equal(perm2, np.arange(mf.n))
    else:
        specs = cut_blocks(blocks, 1)[1]
    Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
    st = Structure(blocks)
    pw = np.ones(mf.n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
    beta0 = centring_fit(normal_equations(Xs, mf.y, pw))
    parts = [ProfiledLmm(local, Xs[r], mf.y[r], pw[r], beta0) for local, r in _block_rows(st, specs)]
    obj = BlockedProfiledLmm(parts, mf.n, sum_log(pw), beta0, threads=False)
    obj.reml = reml
    assert len(parts) == n_blocks and structured_reml.gradient_ok(st, obj)
    return st, obj


@pytest.mark.parametrize("formula", ["y ~ tnum + trt + ar1(0 + time | id)", "y ~ tnum + trt + cs(0 + time | id)",
                                     "y ~ tnum + trt + ou(0 + tnum | id)"])
@pytest.mark.parametrize("reml,weighted,n_blocks", [(True, False, 1), (False, False, 1), (True, True, 3)])
def test_exact_gradient_of_the_profiled_criterion(formula, reml, weighted, n_blocks):
    st, obj = _criterion(formula, reml, weighted, n_blocks)
    th = np.where(st.theta_lower() == 0.0, 0.7 * st.theta_start() + 0.2, 0.4)  # off the start, correlation > 0
    f, g = structured_reml.value_and_grad(obj, th)
    assert f == pytest.approx(obj.value(th), rel=1e-12)
    gn = central_differences(obj.value, th)
    np.testing.assert_allclose(g, gn, rtol=1e-5, atol=1e-6 * np.max(np.abs(gn)))


def test_toep_keeps_the_derivative_free_search():
    data = read_table(str(DATA))
    mf = build_model_frame(data, "y ~ tnum + trt + toep(0 + time | id)")
    st = Structure(merge_terms(mf.terms))
    assert not structured_reml.gradient_ok(st, BlockedProfiledLmm([], mf.n, 0.0, np.zeros(3), threads=False))


def test_cs_reaches_glmmtmbs_optimum_on_the_edge():
    # glmmTMB 1.1: glmmTMB(y ~ tnum + trt + cs(0 + time | id), data = d[d$tnum <= 4, ], REML = FALSE) gives
    # logLik -496.5721 (correlation 1.000); BOBYQA from the usual start stopped at -498.1396
    data = read_table(str(DATA))
    res = glmmlab.glmm("y ~ tnum + trt + cs(0 + time | id)", data.loc[data["tnum"] <= 4], reml=False)
    assert res.llf >= -496.5721 - 1e-3


@pytest.mark.parametrize("formula", ["y ~ tnum + trt + ar1(0 + time | id)", "y ~ tnum + trt + cs(0 + time | id)"])
def test_the_moments_start_near_the_optimum(formula):
    # sim_longitudinal_ar1: one row per subject and occasion (ar1's noise from the lags); cs on a copy with every
    # row twice, shifted, so there are residual degrees of freedom within the subjects
    st, obj = _criterion(formula, True, False, 1)
    if "cs(" in formula:
        data = read_table(str(DATA))
        twice = pd.concat([data, data.assign(y=data["y"] + np.random.default_rng(2).normal(0.0, 0.5, len(data)))])
        mf = build_model_frame(twice.reset_index(drop=True), formula)
        Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
        st = Structure(merge_terms(mf.terms))
        pw = np.ones(mf.n)
        beta0 = centring_fit(normal_equations(Xs, mf.y, pw))
        obj = BlockedProfiledLmm([ProfiledLmm(st, Xs, mf.y, pw, beta0)], mf.n, 0.0, beta0, threads=False)
    x0 = st.theta_start()
    start = moment_start(st.blocks[0], [u.cp for u in obj.units], obj.n, x0)
    assert start is not None and start.shape == x0.shape
    opt, _ = structured_reml.fit(obj, st, st.theta_lower(), {"max_iter": 100, "tol": 1e-6})
    f_opt, f_start, f_usual = obj.value(opt), obj.value(start), obj.value(x0)
    assert f_opt <= f_start < f_usual
    assert f_start - f_opt < 0.05 * (f_usual - f_opt)  # most of the way there before the first step
    sd = st.theta_lower() == 0.0
    np.testing.assert_allclose(start[sd], opt[sd], rtol=0.1)


def test_no_moments_start_for_other_structures():
    data = read_table(str(DATA))
    mf = build_model_frame(data, "y ~ tnum + trt + ou(0 + tnum | id)")
    st = Structure(merge_terms(mf.terms))
    Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
    pw = np.ones(mf.n)
    lmm = ProfiledLmm(st, Xs, mf.y, pw, centring_fit(normal_equations(Xs, mf.y, pw)))
    assert moment_start(st.blocks[0], [lmm.cp], mf.n, st.theta_start()) is None
