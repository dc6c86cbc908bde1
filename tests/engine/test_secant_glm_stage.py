"""The optimiser's pieces around the Laplace evaluations of zero and dispersion models: the standard errors'
forward-difference Hessian that reuses nearby points (solvers/secant.py), and the model without random effects
fitted by BFGS from its Hessian at the start (modelled_glm.glm_start_hessian, glm_stage), each against an
independent computation (exact Hessians, central differences, L-BFGS-B)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.optimize import minimize

from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.families.modelled import modelled_family
from glmmlab.engine.families.response import Response
from glmmlab.engine.solvers.modelled_glm import glm_objective, glm_stage, glm_start_hessian
from glmmlab.engine.solvers.optimizer import fd_hessian
from glmmlab.engine.solvers.secant import Recent, secant_hessian

A = np.array([[4.0, 1.0, 0.5, 0.0], [1.0, 3.0, 0.2, 0.1], [0.5, 0.2, 2.0, 0.3], [0.0, 0.1, 0.3, 1.5]])


def _cubic(x: np.ndarray) -> tuple[float, np.ndarray]:
    """f = x'Ax / 2 + sum(x^3) / 6, whose Hessian is A + diag(x)."""
    return float(0.5 * x @ A @ x + np.sum(x ** 3) / 6.0), A @ x + 0.5 * x * x


def test_secant_hessian_reuses_near_points_and_matches_the_exact_hessian():
    x = np.array([0.3, -0.2, 0.5, 1.1])
    lower = np.array([0.0, -np.inf, -np.inf, -np.inf])
    recent = Recent()
    rng = np.random.default_rng(1)
    for step in (2e-4, 1e-4):  # two points an optimiser evaluated just before, near x
        z = x + step * rng.standard_normal(4)
        recent.add(z, *_cubic(z))
    recent.add(x + 0.1, *_cubic(x + 0.1))  # too far to be a secant pair
    calls = []

    def fg(z):
        calls.append(z.copy())
        return _cubic(z)

    H = secant_hessian(fg, x, lower, recent)
    exact = A + np.diag(x)
    assert H is not None and np.allclose(H, H.T)
    assert np.max(np.abs(H - exact)) <= 1e-3 * np.max(np.abs(exact))
    assert len(calls) == 1 + 4 - 2  # the point itself and differences along the two directions left
    # the same accuracy as forward differences along every axis, which take a gradient per parameter
    assert np.max(np.abs(fd_hessian(_cubic, x, lower, forward=True) - exact)) <= 1e-3 * np.max(np.abs(exact))


def test_secant_hessian_without_near_points_leaves_it_to_the_axes():
    x = np.array([0.3, -0.2, 0.5, 1.1])
    recent = Recent()
    recent.add(x + 0.05, *_cubic(x + 0.05))
    assert secant_hessian(_cubic, x, np.full(4, -np.inf), recent) is None
    assert secant_hessian(_cubic, x, np.full(4, -np.inf), None) is None


def _rows(name: str, n: int = 400, seed: int = 7):
    """Rows of a zero-inflated count model with a covariate in both parts, as glm_objective reads a block."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, n)
    X = np.column_stack([np.ones(n), x])
    mu = np.exp(0.8 + 0.5 * x)
    y = rng.poisson(mu).astype(float)
    y[rng.random(n) < 1.0 / (1.0 + np.exp(0.5 - 1.2 * x))] = 0.0
    disp = ["(Intercept)"] if name != "poisson" else None
    fam = modelled_family(FAMILIES[name], ["(Intercept)", "x"], disp)
    data = {"zi_X": X, "disp_X": np.ones((n, 1))} if disp else {"zi_X": X}
    lap = SimpleNamespace(resp=Response(y, fam, None, data), Xs=X, off=np.zeros(n), pw=np.ones(n))
    return fam, lap


@pytest.mark.parametrize("name", ["poisson", "negbin"])
def test_glm_start_hessian_against_central_differences(name):
    fam, lap = _rows(name)
    lk = LINKS["log"]
    fg = glm_objective([lap], fam, lk, 2)
    z = np.array([0.6, 0.3, -0.4, 0.9] + ([0.2] if name == "negbin" else []))
    H = glm_start_hessian([lap], fam, lk, 2, fg)(z, fg(z)[1], np.ones(z.size, dtype=bool))
    k = z.size
    ref = np.zeros((k, k))
    for j in range(k):
        h = 1e-5 * max(1.0, abs(z[j]))
        zp, zm = z.copy(), z.copy()
        zp[j] += h
        zm[j] -= h
        ref[:, j] = (fg(zp)[1] - fg(zm)[1]) / (2 * h)
    ref = 0.5 * (ref + ref.T)
    scale = np.sqrt(np.outer(np.abs(np.diag(ref)), np.abs(np.diag(ref))))
    # closed-form blocks (mean, zero model) to the differences' accuracy; the NB2 theta column by a forward difference
    assert np.max(np.abs(H - ref) / scale) <= (1e-6 if name == "poisson" else 1e-3)


@pytest.mark.parametrize("name", ["poisson", "negbin"])
def test_glm_stage_reaches_the_maximum_lbfgsb_reaches(name):
    fam, lap = _rows(name, seed=11)
    lk = LINKS["log"]
    fg = glm_objective([lap], fam, lk, 2)
    beta0 = np.array([0.2, 0.0])
    psi0 = np.array([0.0, 0.0] + ([0.0] if name == "negbin" else []))
    beta, psi, m2 = glm_stage(None, beta0, psi0, 0, fg, None, glm_start_hessian([lap], fam, lk, 2, fg))
    ref = minimize(fg, np.append(beta0, psi0), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10})
    assert m2 == pytest.approx(fg(np.append(beta, psi))[0], abs=1e-12)
    assert abs(m2 - ref.fun) <= 1e-7 * abs(ref.fun)
    np.testing.assert_allclose(np.append(beta, psi), ref.x, atol=1e-4)


def test_glm_stage_with_the_closed_form_hessian_takes_fewer_evaluations_than_lbfgsb():
    fam, lap = _rows("poisson", seed=11)
    lk = LINKS["log"]
    fg = glm_objective([lap], fam, lk, 2)
    calls = []

    def counted(z):
        calls.append(1)
        out = fg(z)
        counted.last = fg.last
        return out

    counted.last = None
    beta0, psi0 = np.array([0.2, 0.0]), np.array([0.0, 0.0])
    _, _, m2 = glm_stage(None, beta0, psi0, 0, counted, None, glm_start_hessian([lap], fam, lk, 2, counted))
    ref = minimize(fg, np.append(beta0, psi0), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10})
    assert abs(m2 - ref.fun) <= 1e-9 * abs(ref.fun)
    assert len(calls) < ref.nfev / 2
