"""The separation check's summary of a design (advice.design_columns): each column's one or two values with
whether the response is all 0 / all 1 on its rows, and its moments."""

from __future__ import annotations

import numpy as np
import pytest

from glmmlab.engine.inference.advice import MOMENT_PIECE, design_columns


def test_design_columns_values_and_moments():
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    X = np.column_stack([
        np.ones(6),                               # the intercept: None
        [1.0, 1.0, 0.0, 0.0, 1.0, 0.0],           # two values; all y == 0 where it is 1, all y == 1 where it is 0
        [3.0] * 6,                                # one value
        [0.0, 1.0, 2.0, 0.0, 1.0, 2.0],           # three values in its first rows: no values
        [0.0, 0.0, 0.0, 0.0, 0.0, 5.0],           # two values, the second only in the last row
    ])
    got = design_columns(["(Intercept)", "a", "b", "c", "d"], X, y)
    assert got[0] is None
    assert got[1]["values"] == {1.0: (True, False), 0.0: (False, True)}
    assert got[2]["values"] == {3.0: (False, False)}
    assert got[3]["values"] is None
    assert got[4]["values"] == {0.0: (False, False), 5.0: (False, True)}
    for j in range(1, 5):
        x = X[:, j]
        assert got[j]["n"] == 6 and got[j]["mean"] == float(np.mean(x))
        assert got[j]["m2"] == float(np.sum((x - np.mean(x)) ** 2))


def test_design_columns_of_no_rows():
    got = design_columns(["(Intercept)", "x"], np.zeros((0, 2)), np.zeros(0))
    assert got == [None, {"values": {}, "n": 0, "mean": 0.0, "m2": 0.0}]


def test_design_columns_by_pieces_of_rows():
    # values that first appear after the first piece of rows (MOMENT_PIECE) are seen, and the moments pooled over
    # the pieces are the whole column's
    n = 3 * MOMENT_PIECE + 5
    rng = np.random.default_rng(4)
    y = (rng.random(n) < 0.4).astype(float)
    late = np.zeros(n)
    late[MOMENT_PIECE + 7:] = 2.0  # its second value in the second piece only
    y[late == 0.0] = 0.0  # all y == 0 at its first value
    third = np.where(rng.random(n) < 0.5, 1.0, 0.0)
    third[-1] = 9.0  # a third value in the last row
    wide = 1e6 + rng.normal(size=n)  # a large mean: the deviations' sum of squares without cancellation
    X = np.column_stack([np.ones(n), late, third, wide])
    got = design_columns(["(Intercept)", "late", "third", "wide"], X, y)
    assert got[1]["values"] == {0.0: (True, False), 2.0: (bool(np.all(y[late == 2.0] == 0)), False)}
    assert got[2]["values"] is None
    for j in range(1, 4):
        x = X[:, j]
        assert got[j]["mean"] == pytest.approx(float(np.mean(x)), rel=1e-14)
        assert got[j]["m2"] == pytest.approx(float(np.sum((x - np.mean(x)) ** 2)), rel=1e-10)
