"""A zero-inflated family with one small random intercept: the optimiser's Newton run from an approximate Hessian
(engine/solvers/intercept_laplace.zero_model_curvature, zero_inflated_hessian; optimizer.minimize's hand-over to
chord steps with the forward-difference Hessian) against its pieces' definitions and against L-BFGS-B's fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.solvers import laplace_fit, row_blocks


def _data(row_level: bool, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    G, per = 20, 25
    g = np.repeat(np.arange(G), per)
    x = rng.uniform(-1, 1, G * per) if row_level else rng.choice([0.0, 1.0], G)[g]
    mu = np.exp(0.6 + 0.5 * x + rng.normal(0, 0.6, G)[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    y[rng.random(y.size) < 0.3] = 0.0
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def _objective(df: pd.DataFrame, family: str, zi: str, disp: str | None):
    seen = []
    orig = row_blocks.BlockedLaplace.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        seen.append(self)

    row_blocks.BlockedLaplace.__init__ = spy
    try:
        glmmlab.glmm("y ~ x + (1 | g)", df, family=family, zi=zi, disp=disp)
    finally:
        row_blocks.BlockedLaplace.__init__ = orig
    return seen[-1]


CASES = [("poisson", "~ x", None), ("nbinom2", "~ x", "~ x")]


@pytest.mark.parametrize("row_level", [False, True])
@pytest.mark.parametrize("family, zi, disp", CASES)
def test_curvature_is_the_profiled_penalised_deviances_hessian(family, zi, disp, row_level):
    """zero_model_curvature is the Hessian in (beta, the zero model's coefficients) of min_u (sum dev + |u|^2): central
    second differences of the mode search's penalised deviance, at random points."""
    obj = _objective(_data(row_level), family, zi, disp)
    lap = obj.laps[0]
    fam0 = lap.fam
    n_zi, p = fam0.n_zi, lap.Xs.shape[1]
    psi0 = np.asarray(fam0.to_internal(fam0.parameters), dtype=float)
    rng = np.random.default_rng(7)

    def member(psi):
        fam = fam0.with_parameters(fam0.from_internal(psi))
        obj.set_family(fam, obj.lik)

    def pdev(z, theta, psi):
        psi = psi.copy()
        psi[:n_zi] = z[p:]
        member(psi)
        search = lap._intercept_modes
        search.lap.set_family(lap.fam)  # (the twin on the distinct rows: parts() passes the member on)
        return search.modes(theta, z[:p])["pdev"]

    for _ in range(3):
        theta = np.array([rng.uniform(0.3, 1.2)])
        beta = rng.normal(0.0, 0.3, p)
        psi = psi0 + rng.normal(0.0, 0.2, psi0.size)
        member(psi)
        obj.value_and_grad(np.concatenate([theta, beta]))
        C = obj.zero_model_curvature(np.concatenate([theta, beta]))
        assert C is not None and C.shape == (p + n_zi, p + n_zi)
        z0 = np.concatenate([beta, psi[:n_zi]])
        k, h = z0.size, 1e-4
        H = np.empty((k, k))
        for i in range(k):
            for j in range(k):
                sides = []
                for a, b in ((h, h), (h, -h), (-h, h), (-h, -h)):
                    z = z0.copy()
                    z[i] += a
                    z[j] += b
                    sides.append(pdev(z, theta, psi))
                H[i, j] = (sides[0] - sides[1] - sides[2] + sides[3]) / (4 * h * h)
        np.testing.assert_allclose(C, H, rtol=2e-4, atol=2e-4 * float(np.max(np.abs(H))))
        # the modes are no longer those of the last evaluation: no curvature
        assert obj.zero_model_curvature(np.concatenate([theta, beta + 0.1])) is None


@pytest.mark.parametrize("family, zi, disp", CASES + [("nbinom1", "~ 1", None)])
def test_newton_run_reaches_lbfgs_fit(family, zi, disp, monkeypatch):
    """The fit by Newton steps from the approximate Hessian (handed over to chord steps with the forward-difference
    Hessian) is L-BFGS-B's (the same function minimised to rounding level): log-likelihood, estimates within 1e-4
    of their standard errors, standard errors within 2e-3; and it takes no more evaluations."""
    df = _data(True, seed=11)
    fits = {}
    for newton in (True, False):
        if not newton:
            monkeypatch.setattr(laplace_fit, "intercept_applies", lambda lap: False)
        r = glmmlab.glmm("y ~ x + (1 | g)", df, family=family, zi=zi, disp=disp)
        fits[newton] = (r, r.to_dict())
    (r1, d1), (r0, d0) = fits[True], fits[False]
    assert d1["optimization"]["optimizer"].startswith("Newton steps")
    assert d0["optimization"]["optimizer"].startswith("L-BFGS-B")
    assert d1["optimization"]["converged"] and d0["optimization"]["converged"]
    assert r1.llf == pytest.approx(r0.llf, abs=1e-8)
    assert d1["optimization"]["evaluations"] <= d0["optimization"]["evaluations"]
    for key in ("fixed_effects", "zi_fixed_effects"):
        for a, b in zip(d1[key], d0[key]):
            assert a["estimate"] == pytest.approx(b["estimate"], abs=1e-4 * b["std_error"])
            assert a["std_error"] == pytest.approx(b["std_error"], rel=2e-3)
