"""One small random intercept's Laplace evaluation (engine/solvers/intercept_laplace.py) gives the general path's
value and gradient (GeneralLaplace.pirls, the blocked factor, _gradient_split) to rounding, at random points away
from the optimum, with and without the twin on the distinct rows; a zero-inflated family's approximate Hessian for
the optimiser's Newton run (zero_model_curvature, zero_inflated_hessian; optimizer.minimize's hand-over to chord steps
with the forward-difference Hessian) against its definition and against L-BFGS-B's fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.solvers import intercept_laplace, laplace_fit, row_blocks


def _data(row_level: bool, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    G, per = 20, 25
    g = np.repeat(np.arange(G), per)
    x = rng.uniform(-1, 1, G * per) if row_level else rng.choice([0.0, 1.0], G)[g]
    mu = np.exp(0.6 + 0.5 * x + rng.normal(0, 0.6, G)[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    y[rng.random(y.size) < 0.3] = 0.0
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def _objective(df: pd.DataFrame, family: str, zi: str | None, disp: str | None):
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


CASES = [("poisson", "~ x", None), ("nbinom2", "~ x", "~ x"), ("nbinom1", "~ 1", None),
         ("truncated_nbinom2", "~ x", None), ("nbinom1", None, None)]


@pytest.mark.parametrize("row_level", [False, True])
@pytest.mark.parametrize("family, zi, disp", CASES)
def test_same_value_and_gradient_as_the_general_path(family, zi, disp, row_level, monkeypatch):
    df = _data(row_level)
    obj = _objective(df, family, zi, disp)
    lap = obj.laps[0]
    assert intercept_laplace.applies(lap)
    fam0 = lap.fam
    psi0 = np.asarray(fam0.to_internal(fam0.parameters), dtype=float)
    rng = np.random.default_rng(11)
    nt, p = lap.nt, lap.Xs.shape[1]
    for _ in range(4):
        params = np.concatenate([[rng.uniform(0.2, 1.5)], rng.normal(0.0, 0.4, p)])
        psi = psi0 + rng.normal(0.0, 0.3, psi0.size)
        fam = fam0.with_parameters(fam0.from_internal(psi))
        obj.set_family(fam, obj.lik)
        results = []
        for fast in (True, False):
            monkeypatch.setattr(intercept_laplace, "applies", (lambda lap: True) if fast else (lambda lap: False))
            obj.reset_modes()
            f, g = obj.value_and_grad(params)
            obj.reset_modes()
            v = obj.value(params)
            results.append((f, g, v, lap.u.copy()))
        (f1, g1, v1, u1), (f0, g0, v0, u0) = results
        assert np.isfinite(f0) and f1 == pytest.approx(f0, rel=1e-11, abs=1e-9)
        assert v1 == pytest.approx(v0, rel=1e-11, abs=1e-9)
        np.testing.assert_allclose(g1, g0, rtol=1e-7, atol=1e-7 * max(1.0, float(np.max(np.abs(g0)))))
        np.testing.assert_allclose(u1, u0, atol=1e-8)
    assert (lap._intercept_modes.lap is not lap) == (not row_level)  # the twin on the distinct rows
    assert nt == 1


@pytest.mark.parametrize("family, zi, disp", CASES[:2])
def test_a_path_of_points_with_predicted_modes(family, zi, disp, monkeypatch):
    """Evaluations in sequence (each mode search from the modes predicted at the last point) agree too."""
    obj = _objective(_data(False), family, zi, disp)
    lap = obj.laps[0]
    rng = np.random.default_rng(5)
    p = lap.Xs.shape[1]
    start = np.concatenate([[0.8], rng.normal(0.0, 0.3, p)])
    path = [start + 0.02 * k * rng.normal(0.0, 1.0, start.size) for k in range(8)]
    out = {}
    for fast in (True, False):
        monkeypatch.setattr(intercept_laplace, "applies", (lambda lap: True) if fast else (lambda lap: False))
        obj.reset_modes()
        out[fast] = [obj.value_and_grad(x) for x in path]
    for (f1, g1), (f0, g0) in zip(out[True], out[False]):
        assert f1 == pytest.approx(f0, rel=1e-11, abs=1e-9)
        np.testing.assert_allclose(g1, g0, rtol=1e-7, atol=1e-7 * max(1.0, float(np.max(np.abs(g0)))))


def test_predicted_modes_are_the_general_paths(monkeypatch):
    """The next point's starting modes (the implicit function theorem at the last modes) are the general path's."""
    obj = _objective(_data(False), "nbinom2", "~ x", "~ x")
    lap = obj.laps[0]
    a = np.array([0.7, 0.5, 0.3])
    b = a + np.array([0.05, -0.03, 0.04])
    monkeypatch.setattr(intercept_laplace, "applies", lambda lap: False)
    obj.reset_modes()
    obj.value_and_grad(a)
    general = lap._predicted_modes(b[:1], b[1:], lap._eta_fixed(b[1:]))
    monkeypatch.setattr(intercept_laplace, "applies", lambda lap: True)
    obj.reset_modes()
    obj.value_and_grad(a)
    search = lap._intercept_modes
    fast = search._predicted(float(b[0]), b[1:], search.lap._eta_fixed(b[1:]))
    assert np.max(np.abs(general - lap.u)) > 1e-4  # a real move from the last modes
    np.testing.assert_allclose(fast, general, atol=1e-9)


def _joint_point(rng, p: int, centre, theta_hi: float, beta_sd: float, psi_sd: float):
    """A random (theta, beta, psi): two SDs in [0.3, theta_hi), p coefficients of the mean around 0, the family's
    parameters around ``centre``."""
    theta, beta = rng.uniform(0.3, theta_hi, 2), rng.normal(0.0, beta_sd, p)
    return theta, beta, np.asarray(centre) + rng.normal(0.0, psi_sd, len(centre))


def _cold_at(o, psi) -> None:
    """``o`` (a JointLaplace) at the member ``psi``, its modes forgotten (the next search starts from 0)."""
    o.set_member(psi)
    o.u, o._last = np.zeros_like(o.u), None


def _joint_made(df, **kw):
    """The first JointLaplace a fit of ``y ~ x + (1 | g)`` with ``kw`` made, and its constructor's arguments."""
    import glmmlab.engine.solvers.joint_laplace as joint

    seen = []
    orig = joint.JointLaplace.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        seen.append((self, a))

    joint.JointLaplace.__init__ = spy
    try:
        glmmlab.glmm("y ~ x + (1 | g)", df, **kw)
    finally:
        joint.JointLaplace.__init__ = orig
    return seen[0]


def test_joint_laplace_on_the_distinct_rows():
    """A zero model with random effects (JointLaplace): the optimiser's evaluations on the twin of the distinct rows
    give the rows' own value and gradient to rounding, at random points."""
    import glmmlab.engine.solvers.joint_laplace as joint

    obj, args = _joint_made(_data(False), family="nbinom2", zi="~ x + (1 | g)")
    assert isinstance(obj._twin, joint.JointLaplace) and obj._twin.y.size < 0.5 * obj.y.size
    plain = joint.JointLaplace(*args)
    plain._twin = False
    rng = np.random.default_rng(2)
    fam = obj.fam
    designs = {"cond": obj.Xs, "zi": obj.resp.zi_X, "disp": obj.resp.disp_X}
    for _ in range(4):
        theta, beta, psi = _joint_point(rng, obj.Xs.shape[1], fam.parameters, 1.2, 0.4, 0.3)
        res = []
        for o in (obj, plain):
            _cold_at(o, psi)
            res.append((o.value_and_grad(theta, beta, designs), o.value(theta, beta), o.u.copy()))
        ((f1, g1), v1, u1), ((f0, g0), v0, u0) = res
        assert np.isfinite(f0) and f1 == pytest.approx(f0, rel=1e-11) and v1 == pytest.approx(v0, rel=1e-11)
        np.testing.assert_allclose(g1, g0, rtol=1e-7, atol=1e-7 * max(1.0, float(np.max(np.abs(g0)))))
        np.testing.assert_allclose(u1, u0, atol=1e-8)


@pytest.mark.parametrize("family, zi, disp", [("nbinom2", "~ x + (1 | g)", None), ("poisson", "~ 1 + (1 | g)", None),
                                              ("nbinom2", "~ x + (1 | g)", "~ x")])
def test_joint_gradient_of_one_intercept_per_part(family, zi, disp):
    """JointLaplace's gradient by per-level sums (one intercept in the mean and one in the zero model) is its general
    gradient, at random points."""
    import glmmlab.engine.solvers.joint_laplace as joint

    args = _joint_made(_data(True), family=family, zi=zi, disp=disp)[1]
    fast, general = joint.JointLaplace(*args), joint.JointLaplace(*args)
    fast._twin = general._twin = False
    general._intercepts = False
    fast._zip = general._zip = None  # the family's own row states in both (the fused rows: the next test)
    assert fast._intercepts
    rng = np.random.default_rng(1)
    designs = {"cond": fast.Xs, "zi": fast.resp.zi_X, "disp": fast.resp.disp_X if fast.fam.n_disp else None}
    for _ in range(4):
        theta, beta, psi = _joint_point(rng, fast.Xs.shape[1], fast.fam.parameters, 1.2, 0.4, 0.3)
        out = []
        for o in (fast, general):
            _cold_at(o, psi)
            out.append(o.value_and_grad(theta, beta, designs))
        (f1, g1), (f0, g0) = out
        assert np.isfinite(f0) and f1 == f0
        np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-10 * max(1.0, float(np.max(np.abs(g0)))))
    # the next point's predicted modes (one reduceat per part) are the general ones
    theta2, beta2 = theta + 0.03, beta - 0.02
    predicted = []
    for o in (fast, general):
        predicted.append(o._predicted_modes(theta2, o.Xs @ beta2 + o.off, o._zero_fixed()))
    assert np.max(np.abs(predicted[1] - fast.u)) > 1e-4
    np.testing.assert_allclose(predicted[0], predicted[1], rtol=1e-12, atol=1e-12)


ZI_CASES = [("poisson", "~ x", None), ("nbinom2", "~ x", "~ x")]


@pytest.mark.parametrize("row_level", [False, True])
@pytest.mark.parametrize("family, zi, disp", ZI_CASES)
def test_zero_model_curvature_is_the_profiled_penalised_deviances_hessian(family, zi, disp, row_level):
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


@pytest.mark.parametrize("family, zi, disp", ZI_CASES + [("nbinom1", "~ 1", None)])
def test_zero_inflated_newton_run_reaches_lbfgs_fit(family, zi, disp, monkeypatch):
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


def test_fused_zero_inflated_poisson_rows():
    """The fused rows of a zero-inflated Poisson (joint_zip) give JointLaplace's value, gradient and modes of the
    family's own row states, at random points and at the next point's predicted modes."""
    import glmmlab.engine.solvers.joint_laplace as joint

    args = _joint_made(_data(True), family="poisson", zi="~ x + (1 | g)")[1]
    fused, plain = joint.JointLaplace(*args), joint.JointLaplace(*args)
    fused._twin = plain._twin = False
    plain._zip = None
    assert fused._zip is not None
    rng = np.random.default_rng(3)
    designs = {"cond": fused.Xs, "zi": fused.resp.zi_X, "disp": None}
    for _ in range(4):
        theta, beta, psi = _joint_point(rng, fused.Xs.shape[1], fused.fam.parameters, 1.5, 0.5, 0.5)
        out = []
        for o in (fused, plain):
            _cold_at(o, psi)
            first = o.value_and_grad(theta, beta, designs)
            out.append((first, o.u.copy(), o.value_and_grad(theta + 0.02, beta - 0.03, designs)))
        for k in (0, 2):
            (f1, g1), (f0, g0) = out[0][k], out[1][k]
            assert np.isfinite(f0) and f1 == pytest.approx(f0, rel=1e-12)
            np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-9 * max(1.0, float(np.max(np.abs(g0)))))
        np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-10)


def test_distinct_rows_are_numpy_unique_rows():
    """distinct_rows' sort and runs give np.unique(axis=0)'s first rows and counts (signed zeros equal), or None
    above MAX_SHARE distinct."""
    from glmmlab.engine.solvers.distinct_rows import MAX_SHARE, distinct_rows

    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(2, 200))
        cols = [rng.integers(0, 3, n).astype(float)] + [
            rng.integers(0, 2, (n, int(rng.integers(1, 3)))) * rng.choice([0.5, -0.0, 0.0]) for _ in range(2)]
        keys = np.column_stack([np.asarray(c, dtype=float).reshape(n, -1) for c in cols])
        _, rows, counts = np.unique(keys, axis=0, return_index=True, return_counts=True)
        found = distinct_rows(cols, n)
        if rows.size > MAX_SHARE * n:
            assert found is None
        else:
            assert found is not None
            np.testing.assert_array_equal(found[0], rows)
            np.testing.assert_array_equal(found[1], counts)


def test_fused_rows_model_without_random_effects():
    """The fused rows' -2 log L of the model without random effects, its gradient and Hessian (joint_zip's
    glm_functions, glm_stage's inputs) are glm_objective's and glm_start_hessian's on the same rows."""
    from types import SimpleNamespace

    from glmmlab.engine.families.response import Response
    from glmmlab.engine.solvers.modelled_glm import glm_objective, glm_start_hessian

    obj = _joint_made(_data(True), family="poisson", zi="~ x + (1 | g)")[0]
    assert obj._zip is not None
    fam, p = obj.fam, obj.Xs.shape[1]
    Z = obj._data["zi_X"]
    fg, hessian = obj._zip.glm_functions(obj.Xs, Z, obj.off, 0.0, fam.internal_range())
    rows = SimpleNamespace(resp=Response(obj.y, fam, None, {k: v for k, v in obj._data.items() if v is not None}),
                           Xs=obj.Xs, off=obj.off, pw=obj.pw)
    ref_fg = glm_objective([rows], fam, obj.lk, p)
    ref_h = glm_start_hessian([rows], fam, obj.lk, p, ref_fg)
    rng = np.random.default_rng(4)
    for _ in range(4):
        z = np.concatenate([rng.normal(0.0, 0.5, p), rng.normal(0.0, 0.8, Z.shape[1])])
        (f1, g1), (f0, g0) = fg(z), ref_fg(z)
        assert np.isfinite(f0) and f1 == pytest.approx(f0, rel=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-10 * max(1.0, float(np.max(np.abs(g0)))))
        wanted = np.ones(z.size, dtype=bool)
        H0 = ref_h(z, g0, wanted)
        np.testing.assert_allclose(hessian(z, g1, wanted), H0, rtol=1e-10, atol=1e-10 * float(np.max(np.abs(H0))))
    assert fg(np.r_[np.zeros(p), np.full(Z.shape[1], 100.0)])[0] == np.inf  # outside the coefficients' range


def test_joint_newton_steps_reach_the_quasi_newton_optimum():
    """The zero-inflated Poisson's Newton steps from the approximate Hessian (joint_search, newton_run with
    refresh_every) end where L-BFGS-B alone does, on data whose zero-model SD is small (where the approximation
    alone crept) and where it is 0, in fewer evaluations than 30."""
    import pandas as pd

    import glmmlab.engine.solvers.joint_laplace as joint

    rng = np.random.default_rng(11)
    for sd_c, sd_z in ((0.4, 0.8), (0.5, 0.0)):
        g = np.repeat(np.arange(30), 20)
        x = rng.standard_normal(g.size)
        y = rng.poisson(np.exp(0.5 + 0.4 * x + rng.normal(0.0, sd_c, 30)[g])).astype(float)
        y[rng.random(g.size) < 1.0 / (1.0 + np.exp(0.5 - rng.normal(0.0, sd_z, 30)[g]))] = 0.0
        df = pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})
        obj, _ = _joint_made(df, family="poisson", zi="~ 1 + (1 | g)")
        newton = glmmlab.glmm("y ~ x + (1 | g)", df, family="poisson", zi="~ 1 + (1 | g)")
        orig = joint.newton_run
        joint.newton_run = lambda fg, x0, *a, **k: (x0, fg(x0)[0], [])  # (no steps: L-BFGS-B from the start)
        try:
            plain = glmmlab.glmm("y ~ x + (1 | g)", df, family="poisson", zi="~ 1 + (1 | g)")
        finally:
            joint.newton_run = orig
        assert obj._zip is not None and newton.converged and plain.converged
        assert abs(newton.llf - plain.llf) < 1e-9
        np.testing.assert_allclose(newton.theta, plain.theta, atol=1e-5)
        assert obj.evaluations < 30


@pytest.mark.parametrize("family, zi, disp", [("poisson", "~ x", None), ("nbinom2", "~ x", "~ x")])
def test_model_without_random_effects_on_the_summed_rows(family, zi, disp):
    """The GLM stage sums over the distinct rows (summed_rows: the compact twin, summed weights) where the
    evaluations do: its -2 log L, gradient and Hessian are those over every row, at random points."""
    from glmmlab.engine.solvers.laplace import GeneralLaplace
    from glmmlab.engine.solvers.modelled_glm import glm_objective, glm_start_hessian

    obj = _objective(_data(False), family, zi, disp)  # (a group-level covariate: 144 distinct rows of 500)
    lap = obj.laps[0]
    rows = intercept_laplace.summed_rows(lap, GeneralLaplace)
    assert rows is not lap and rows.y.size < lap.y.size / 3
    fam, p = lap.fam, lap.Xs.shape[1]
    fg_all, fg_sum = glm_objective([lap], fam, lap.lk, p), glm_objective([rows], fam, lap.lk, p)
    h_all, h_sum = glm_start_hessian([lap], fam, lap.lk, p, fg_all), glm_start_hessian([rows], fam, lap.lk, p, fg_sum)
    psi0 = np.asarray(fam.to_internal(fam.parameters), dtype=float)
    rng = np.random.default_rng(2)
    for _ in range(3):
        z = np.concatenate([rng.normal(0.0, 0.5, p), psi0 + rng.normal(0.0, 0.3, psi0.size)])
        (f1, g1), (f0, g0) = fg_sum(z), fg_all(z)
        assert np.isfinite(f0) and f1 == pytest.approx(f0, rel=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-9, atol=1e-9 * float(np.max(np.abs(g0))))
        wanted = np.ones(z.size, dtype=bool)
        H0 = h_all(z, g0, wanted)
        np.testing.assert_allclose(h_sum(z, g1, wanted), H0, rtol=1e-6, atol=1e-6 * float(np.max(np.abs(H0))))
