"""The GLM that starts a Laplace fit (engine/solvers/glm_start.py): IRLS takes the step it expects to be its last
with the deviance alone, and takes the normal equations there after all when the deviance says otherwise."""

from __future__ import annotations

import numpy as np

from glmmlab.engine.families.catalogue import resolve
from glmmlab.engine.solvers import glm_start


def test_irls_computes_the_equations_after_a_deviance_only_pass_that_does_not_end_it():
    # one coefficient whose deviance falls steeply though the equations promise a tiny step: the step predicted to
    # be the last is not, so the equations there are computed after all, and the next step ends the iteration
    target = 1e-8
    calls = []

    def dev(beta):
        return 10.0 - 1e6 * float(beta[0])

    def passes(beta):
        calls.append(("equations", None if beta is None else float(beta[0])))
        return [(dev(np.zeros(1)) if beta is None else dev(beta), True, np.eye(1), np.array([target]))]

    def deviance_passes(beta):
        calls.append(("deviance", float(beta[0])))
        return [(dev(beta), True)]

    beta, d = glm_start.irls(passes, lambda A, c, parts: np.linalg.solve(A, c), beta0=np.zeros(1),
                             deviance_passes=deviance_passes)
    assert beta[0] == target and d == dev(beta)
    assert calls == [("equations", 0.0), ("deviance", target), ("equations", target), ("deviance", target)]


def test_the_glm_start_matches_plain_irls_and_skips_the_last_equations(monkeypatch):
    rng = np.random.default_rng(11)
    n = 20_000
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 3))])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ np.array([-0.3, 0.8, -0.5, 0.2]))))).astype(float)
    fam, lk = resolve("binomial", "logit")
    pw, off = np.broadcast_to(1.0, (n,)), np.broadcast_to(0.0, (n,))
    kinds = []
    real = glm_start.glm_pass

    def spy(*args):
        kinds.append(args[8] if len(args) > 8 else True)
        return real(*args)

    monkeypatch.setattr(glm_start, "glm_pass", spy)
    beta, dev = glm_start.glm_irls(X, y, pw, off, fam, lk, n_chunks=3)
    # Newton's method on the log-likelihood, to convergence
    b = np.zeros(4)
    for _ in range(50):
        mu = 1 / (1 + np.exp(-(X @ b)))
        step = np.linalg.solve(X.T @ (X * (mu * (1 - mu))[:, None]), X.T @ (y - mu))
        b += step
        if np.max(np.abs(step)) < 1e-14:
            break
    mu = 1 / (1 + np.exp(-(X @ b)))
    want_dev = -2.0 * float(np.sum(y * np.log(mu) + (1 - y) * np.log1p(-mu)))
    np.testing.assert_allclose(beta, b, rtol=0, atol=1e-9)
    np.testing.assert_allclose(dev, want_dev, rtol=1e-12)
    assert kinds[-3:] == [False, False, False] and all(kinds[:-3])  # the last pass (3 chunks): deviance alone
