"""The scaled design (engine/solvers/scaling.scaled_design): X_s = X T^-1 has orthogonal columns of norm sqrt(n),
on one core and, for a tall design, over runs of rows in threads (the same numbers to rounding); the in-place form
gives the same design in X's own memory."""

from __future__ import annotations

import numpy as np
import pytest

from glmmlab.engine.solvers import scaling


def _design(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(2.0, 3.0, n), rng.integers(0, 2, n), rng.uniform(0, 50, n),
                         rng.normal(size=n) * 1e-3 + 5.0])
    return np.asfortranarray(X)


@pytest.mark.parametrize("in_place", [False, True])
def test_threaded_scaling_is_the_one_core_scaling(in_place, monkeypatch):
    X = _design(3000)
    names = [f"c{j}" for j in range(X.shape[1])]
    Xs1, T1, kept1, dropped1 = scaling.scaled_design(X.copy(order="F"), names, in_place=in_place)
    monkeypatch.setattr(scaling, "THREADED_ROWS", 100)
    monkeypatch.setattr(scaling, "GLM_PIECE", 257)  # several pieces in each thread's run of rows
    assert scaling._threaded(*X.shape) or scaling.cpu_count() == 1
    X2 = X.copy(order="F")
    Xs2, T2, kept2, dropped2 = scaling.scaled_design(X2, names, in_place=in_place)
    assert (Xs2 is X2) == in_place
    assert kept1 == kept2 and dropped1 == dropped2 == []
    n = X.shape[0]
    np.testing.assert_allclose(Xs2.T @ Xs2 / n, np.eye(X.shape[1]), atol=1e-12)
    np.testing.assert_allclose(X @ T2, Xs2, rtol=0, atol=1e-9)
    np.testing.assert_allclose(Xs2, Xs1, rtol=0, atol=1e-9)
    np.testing.assert_allclose(T2, T1, rtol=1e-9)


def test_threaded_scaling_drops_a_collinear_column(monkeypatch):
    X = _design(2000)
    X = np.asfortranarray(np.column_stack([X, X[:, 1] + 2.0 * X[:, 3]]))
    monkeypatch.setattr(scaling, "THREADED_ROWS", 100)
    Xs, T, kept, dropped = scaling.scaled_design(X, [f"c{j}" for j in range(X.shape[1])])
    assert dropped == ["c5"] and Xs.shape[1] == 5
    np.testing.assert_allclose(Xs.T @ Xs / X.shape[0], np.eye(5), atol=1e-12)
