"""The zero-inflated, hurdle and dispersion-model densities without R: probabilities that sum to 1 over the counts,
the first three mu-derivatives of log f against central differences, the zero model's closed-form partials against
differences in its predictor, the exact gradient of the Laplace deviance (every part's coefficients) against
differences of the deviance, and the sampler's moments against the model's means."""

from __future__ import annotations

import numpy as np
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.families.modelled import ModelledFamily, modelled_family
from glmmlab.engine.families.response import Response
from glmmlab.engine.families.state import row_state
from tests.gradients import central_differences

# (family, zero model?, dispersion model?, coefficients: zi..., disp..., rest...)
CASES = [
    ("poisson", True, False, [-0.7]),
    ("negbin", True, False, [-0.7, np.log(1.3)]),
    ("nbinom1", True, True, [-0.7, np.log(0.8), 0.4]),
    ("truncated_poisson", True, False, [-0.2]),
    ("truncated_nbinom2", True, True, [-0.2, np.log(1.3), -0.3]),
    ("truncated_nbinom1", True, False, [-0.2, np.log(0.8)]),
]


def _member(name, zi, disp, coef, n, x) -> tuple[ModelledFamily, Response]:
    fam = modelled_family(FAMILIES[name], ["(Intercept)"] if zi else None, ["(Intercept)", "x"] if disp else None)
    member = fam.with_parameters(coef)
    assert isinstance(member, ModelledFamily)
    data = {"zi_X": np.ones((n, 1)), "disp_X": np.column_stack([np.ones(n), x]) if disp else np.ones((n, 1))}
    return member, data


@pytest.mark.parametrize("name,zi,disp,coef", CASES, ids=[c[0] for c in CASES])
def test_probabilities_sum_to_one(name, zi, disp, coef):
    ks = np.arange(0.0, 400.0)
    mu = 2.5
    fam, data = _member(name, zi, disp, coef, ks.size, np.full(ks.size, 0.3))
    resp = Response(ks, fam, None, data)
    ll = fam.mu_terms(resp, np.full(ks.size, mu), None)[0]
    assert float(np.sum(np.exp(ll))) == pytest.approx(1.0, abs=1e-10)
    mean = fam.response_means(resp, np.full(ks.size, mu))["fitted"][0]
    assert float(np.sum(ks * np.exp(ll))) == pytest.approx(mean, rel=1e-9)


@pytest.mark.parametrize("name,zi,disp,coef", CASES, ids=[c[0] for c in CASES])
def test_mu_derivatives(name, zi, disp, coef):
    rng = np.random.default_rng(3)
    y = np.concatenate([np.zeros(20), rng.integers(1, 12, 40).astype(float)])
    mu = rng.uniform(0.3, 6.0, y.size)
    fam, data = _member(name, zi, disp, coef, y.size, rng.uniform(-1, 1, y.size))
    resp = Response(y, fam, None, data)
    ll, l1, l2, _, _ = fam.mu_terms(resp, mu, None)
    l3 = fam.mu_third(Response(y, fam, None, data), mu, None)
    h = 1e-5 * mu

    def at(m):
        return fam.mu_terms(Response(y, fam, None, data), m, None)

    up, down = at(mu + h), at(mu - h)
    np.testing.assert_allclose(l1, (up[0] - down[0]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(l2, (up[1] - down[1]) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(l3, (up[2] - down[2]) / (2 * h), rtol=1e-5, atol=1e-7)


PARTS = [(c, part) for c in CASES for part in ("zi", "disp") if (part == "zi" and c[1]) or
         (part == "disp" and c[0] not in ("poisson", "truncated_poisson"))]


@pytest.mark.parametrize("case,part", PARTS, ids=[f"{c[0]}-{part}" for c, part in PARTS])
def test_row_partials(case, part):
    """The closed-form partials in the zero model's and the dispersion model's predictors against differences of
    the row state."""
    name, zi, disp, coef = case
    rng = np.random.default_rng(4)
    y = np.concatenate([np.zeros(15), rng.integers(1, 9, 30).astype(float)])
    eta = rng.normal(0.5, 0.6, y.size)
    fam, data = _member(name, zi, disp, coef, y.size, rng.uniform(-1, 1, y.size))
    lk = LINKS["log"]
    rs = row_state(Response(y, fam, None, data), eta, lk)
    exact = fam.row_partials(part, Response(y, fam, None, data), rs)
    assert exact is not None
    d_ll, d_e1, d_e2 = exact
    h = 1e-5
    up = row_state(Response(y, fam.shifted(part, h), None, data), eta, lk)
    down = row_state(Response(y, fam.shifted(part, -h), None, data), eta, lk)
    np.testing.assert_allclose(d_ll, -0.5 * (up.dev - down.dev) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d_e1, (up.dev_eta - down.dev_eta) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(d_e2, (up.dev_eta2 - down.dev_eta2) / (2 * h), rtol=1e-5, atol=1e-8)


CONTINUOUS = [("gaussian", "identity", False), ("gamma", "log", False), ("ziGamma", "log", True)]


@pytest.mark.parametrize("name,link,hurdle", CONTINUOUS, ids=[c[0] for c in CONTINUOUS])
def test_dispersion_partials_of_the_continuous_bases(name, link, hurdle):
    """The Gaussian's (log variance) and the Gamma's (log shape) closed-form partials in the dispersion model's
    predictor, also a hurdle's positive Gamma part (its zeros free of it), against differences of the row state."""
    rng = np.random.default_rng(6)
    n = 60
    x = rng.uniform(-1, 1, n)
    eta = rng.normal(0.5, 0.6, n)
    y = rng.normal(eta, 0.8) if name == "gaussian" else rng.gamma(2.0, np.exp(eta) / 2.0)
    if hurdle:
        y[:12] = 0.0
    fam = modelled_family(FAMILIES[name], ["(Intercept)"] if hurdle else None, ["(Intercept)", "x"])
    fam = fam.with_parameters(([-0.5] if hurdle else []) + [0.3, -0.4])
    assert isinstance(fam, ModelledFamily)
    data = {"zi_X": np.ones((n, 1)), "disp_X": np.column_stack([np.ones(n), x])}
    lk = LINKS[link]
    exact = fam.row_partials("disp", Response(y, fam, None, data), row_state(Response(y, fam, None, data), eta, lk))
    assert exact is not None
    h = 1e-5
    up = row_state(Response(y, fam.shifted("disp", h), None, data), eta, lk)
    down = row_state(Response(y, fam.shifted("disp", -h), None, data), eta, lk)
    np.testing.assert_allclose(exact[0], -0.5 * (up.dev - down.dev) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(exact[1], (up.dev_eta - down.dev_eta) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(exact[2], (up.dev_eta2 - down.dev_eta2) / (2 * h), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name,zi,disp,coef", CASES, ids=[c[0] for c in CASES])
def test_sampler_moments(name, zi, disp, coef):
    rng = np.random.default_rng(5)
    n = 200_000
    x = rng.uniform(-1, 1, n)
    mu = np.exp(0.4 + 0.3 * x)
    fam, data = _member(name, zi, disp, coef, n, x)
    resp = Response(np.ones(n), fam, None, data)
    y = fam.sample_rows(rng, resp, mu, np.ones(n))
    means = fam.response_means(resp, mu)
    assert float(np.mean(y)) == pytest.approx(float(np.mean(means["fitted"])), rel=0.01)
    assert float(np.mean(y == 0)) >= 0.0
    if name.startswith("truncated"):
        assert float(np.mean(y == 0)) == pytest.approx(float(np.mean(means["zi_prob"])), abs=0.005)


def test_exact_gradient_of_the_laplace_deviance():
    """The optimiser's gradient (theta, the mean's coefficients, the zero and dispersion models') equals central
    differences of the Laplace deviance at a point away from the optimum."""
    import glmmlab.engine.solvers.laplace_fit as laplace_fit

    rng = np.random.default_rng(6)
    G, per = 25, 20
    g = np.repeat(np.arange(G), per)
    x = rng.uniform(-1, 1, G * per)
    mu = np.exp(0.5 + 0.4 * x + rng.normal(0, 0.5, G)[g])
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)).astype(float)
    y[rng.random(y.size) < 0.25] = 0.0
    import pandas as pd

    df = pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})
    seen = []
    orig = laplace_fit._optimize

    def spy(fun, x0, lower, *a, **k):
        seen.append((fun, k.get("fun_grad"), np.array(x0)))
        return orig(fun, x0, lower, *a, **k)

    laplace_fit._optimize = spy
    try:
        glmmlab.glmm("y ~ x + (1 | g)", df, family="nbinom2", zi="~ x", disp="~ x")
    finally:
        laplace_fit._optimize = orig
    fun, fg, x0 = seen[0]
    point = x0 + np.linspace(-0.1, 0.1, x0.size)
    point[0] = abs(point[0]) + 0.2
    f, g = fg(point)
    np.testing.assert_allclose(g, central_differences(fun, point, 1e-5), rtol=1e-5, atol=1e-5)


def test_exact_gradient_with_random_effects_in_the_zero_model():
    """The joint Laplace deviance (random intercepts in the mean and the zero model, a dispersion) has the exact
    gradient of central differences, at a point away from the optimum."""
    import pandas as pd

    import glmmlab.engine.solvers.joint_laplace as joint
    from tests.conftest import REFERENCE

    df = pd.read_csv(REFERENCE / "breadth" / "salamanders_zinb2.csv")
    seen = []
    orig = joint.minimize

    def spy(f, x0, *a, **k):
        seen.append((f, np.array(x0)))
        return orig(f, x0, *a, **k)

    joint.minimize = spy
    try:
        res = glmmlab.glmm("count ~ mined + (1 | site)", df, family="nbinom2", zi="~ mined + (1 | site)")
    finally:
        joint.minimize = orig
    assert res.converged and list(res.fixef["zi"].index) == ["(Intercept)", "minedyes"]
    fg, x0 = seen[-1]
    point = x0 + 0.05
    g = fg(point)[1]
    numeric = central_differences(lambda z: fg(z)[0], point, 1e-5)
    np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-4)
