"""The random-intercept form's column frame (services/modeling/frames.column_frame): integer group keys coded by
counting, the design and response gathered side by side in the order of the groups, integer columns turned into
floats as they are gathered. Each is held against a plain construction of the same frame (the hashed codes of the
keys as floats, numpy's fancy indexing, a stable sort)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmlab.engine.families.catalogue import resolve
from glmmlab.services.modeling import frames

BINOMIAL = resolve("binomial", "logit")[0]
GAUSSIAN = resolve("gaussian", "identity")[0]


@pytest.mark.parametrize("values", [
    np.array([7, 3, 3, 9, 7, 12, 3]),  # gaps, unsorted
    np.array([-5, 2, -5, 0, 11, 2]),  # negative keys
    np.array([4, 4, 4, 4, 5], dtype=np.uint32),  # unsigned
    np.array([0, 10 ** 9, 5, 0]),  # a span too wide to count: hashed
    np.array([2 ** 60, 3, 3]),  # beyond 2^53: hashed, as floats
])
def test_integer_group_codes_match_the_hashed_codes_of_the_keys_as_floats(values):
    codes, labels = frames.group_codes(pd.DataFrame({"g": values}), "g")
    want_codes, want_labels = frames.group_codes(pd.DataFrame({"g": values.astype(float)}), "g")
    assert labels == want_labels
    np.testing.assert_array_equal(codes, want_codes)


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 9])
def test_gather_rows_is_fancy_indexing_as_floats(k, threaded, monkeypatch):
    if threaded:  # the large data's path: runs of rows in threads (from THREADED_ROWS rows)
        monkeypatch.setattr(frames, "THREADED_ROWS", 10)
        monkeypatch.setattr(frames, "GATHER_ROWS", 64)
    rng = np.random.default_rng(k)
    n = 1000
    cols = [rng.standard_normal(n) if j % 2 else rng.integers(-3, 4, n) for j in range(k)]
    rows = rng.permutation(n)[:700]
    outs = [np.empty(rows.size) for _ in range(k)]
    frames.gather_rows(cols, rows, outs)
    for col, out in zip(cols, outs):
        np.testing.assert_array_equal(out, col[rows].astype(float))


def _plain_frame(df, response, group, fixed):
    """The frame as it would be built the plain way: rows with every value finite, sorted stably by group."""
    values = df[[response] + fixed].to_numpy(dtype=float)
    keep = np.isfinite(values).all(axis=1)
    keys = df[group].to_numpy(dtype=float)
    rows = np.flatnonzero(keep)
    levels = np.unique(keys[rows])
    g = np.searchsorted(levels, keys[rows])
    order = np.argsort(g, kind="stable")
    return rows[order], g[order], values[rows[order]], levels, order


@pytest.mark.parametrize("with_missing", [False, True])
def test_column_frame_matches_the_plain_construction(with_missing):
    rng = np.random.default_rng(7)
    n = 3000
    df = pd.DataFrame({"y": rng.integers(0, 2, n), "x1": rng.standard_normal(n), "x2": rng.integers(0, 3, n),
                       "x3": rng.uniform(size=n), "x4": rng.standard_normal(n).astype(np.float32),
                       "x5": rng.integers(-2, 2, n), "g": rng.integers(100, 160, n) * 3})
    if with_missing:
        df.loc[rng.choice(n, 40, replace=False), "x1"] = np.nan
        df.loc[rng.choice(n, 40, replace=False), "x3"] = np.inf
    fixed = ["x1", "x2", "x3", "x4", "x5"]
    mf, order = frames.column_frame(df, "y", "g", fixed, intercept=True, family=BINOMIAL, formula="f")
    rows, g, values, levels, want_order = _plain_frame(df, "y", "g", fixed)
    np.testing.assert_array_equal(mf.rows, rows)
    np.testing.assert_array_equal(order, want_order)
    np.testing.assert_array_equal(mf.terms[0].codes, g)
    assert mf.terms[0].levels == [str(int(v)) for v in levels]
    np.testing.assert_array_equal(mf.y, values[:, 0])
    np.testing.assert_array_equal(mf.X[:, 0], 1.0)
    np.testing.assert_array_equal(mf.X[:, 1:], values[:, 1:])
    assert mf.x_names == ["(Intercept)"] + fixed


def test_a_constant_column_is_left_out_and_the_later_ones_move_up():
    rng = np.random.default_rng(3)
    n = 500
    df = pd.DataFrame({"y": rng.standard_normal(n), "a": rng.standard_normal(n), "c": np.full(n, 2),
                       "b": rng.integers(0, 5, n), "g": rng.integers(0, 20, n)})
    for grouped in (True, False):
        mf, order = frames.column_frame(df, "y", "g", ["a", "c", "b"], intercept=True, family=GAUSSIAN,
                                        formula="f", grouped=grouped)
        assert mf.x_names == ["(Intercept)", "a", "b"]
        assert any("'c'" in w for w in mf.warnings)
        rows = np.asarray(mf.rows)
        np.testing.assert_array_equal(mf.X[:, 1], df["a"].to_numpy()[rows])
        np.testing.assert_array_equal(mf.X[:, 2], df["b"].to_numpy()[rows].astype(float))
        np.testing.assert_array_equal(mf.y, df["y"].to_numpy()[rows])
        if not grouped:  # input order; the float response is the column itself, read-only
            assert order is None and not mf.y.flags.writeable
            np.testing.assert_array_equal(rows, np.arange(n))


def test_a_large_datas_threaded_passes_give_the_same_fit(monkeypatch):
    """The gather of the rows, the design's scaling, the separation check's columns and the per-row results put
    back in input order run in threads from THREADED_ROWS rows: forced on a small fit, it is the same fit (its
    warnings too), its rows in input order."""
    import glmmlab
    from glmmlab.engine.solvers import fit, scaling
    from glmmlab.services.modeling import fitting

    rng = np.random.default_rng(11)
    n, groups = 3000, 60
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.8, groups)[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
    s = np.where(y == 1.0, rng.integers(0, 2, n), 0).astype(float)  # y is 1 wherever s is: separation
    df = pd.DataFrame({"y": y, "x": x, "s": s, "b": rng.integers(0, 2, n), "g": g})
    fixed = ["x", "s", "b"]
    plain = glmmlab.fit_glmm(df, response="y", group="g", fixed=fixed, family="binomial")
    for module in (frames, scaling, fitting, fit):
        monkeypatch.setattr(module, "THREADED_ROWS", 10)
    threaded = glmmlab.fit_glmm(df, response="y", group="g", fixed=fixed, family="binomial")
    assert any("separation" in w and "'s'" in w for w in plain.warnings)
    assert threaded.warnings == plain.warnings
    assert abs(threaded.llf - plain.llf) < 1e-8
    np.testing.assert_allclose(threaded.fitted, plain.fitted, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(threaded.rows, plain.rows)
