"""Unit tests of the general-model engine: theta layout, the blocked factor against dense linear algebra, nesting
detection, the exact Laplace gradient against finite differences, and invariance to the cut into blocks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import glmmlab
from glmmlab.engine.families.catalogue import FAMILIES
from glmmlab.engine.families.links import LINKS
from glmmlab.engine.model.terms import FactorBlock, RandomTerm, merge_terms
from glmmlab.engine.solvers.blocked_cholesky import Structure, factor
from glmmlab.engine.solvers.glm_start import glm_irls
from glmmlab.engine.solvers.laplace import GeneralLaplace
from glmmlab.engine.solvers.row_blocks import cut_blocks, outer_factor
from glmmlab.engine.solvers.scaling import scaled_design
from glmmlab.interfaces.cli import read_table
from glmmlab.services.modeling.modelframe import build_model_frame
from tests.conftest import MODELS, load_case
from tests.gradients import central_differences


def test_theta_layout_is_lme4s():
    b = FactorBlock("g", np.zeros(3, int), ["a"], np.ones((3, 3)), ["(Intercept)", "x", "z"], [[0, 1], [2]])
    assert b.n_theta == 4
    L = b.lam(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(L, [[1, 0, 0], [2, 3, 0], [0, 0, 4]])
    np.testing.assert_array_equal(b.theta_lower(), [0, -np.inf, 0, 0])
    assert b.diagonal_theta_index() == [0, 2, 3]


def test_terms_merge_by_factor_and_order_by_levels():
    n = 12
    rng = np.random.default_rng(0)
    g = np.arange(n) % 3
    h = np.arange(n) % 6
    terms = [RandomTerm("g", g, ["a", "b", "c"], np.ones((n, 1)), ["(Intercept)"]),
             RandomTerm("h", h, list("uvwxyz"), np.ones((n, 1)), ["(Intercept)"]),
             RandomTerm("g", g, ["a", "b", "c"], rng.normal(size=(n, 1)), ["x"], correlated=False)]
    blocks = merge_terms(terms)
    assert [b.component for b in blocks] == ["h", "g"]
    assert blocks[1].names == ["(Intercept)", "x"] and blocks[1].groups == [[0], [1]]


def _dense_system(st: Structure, w, E, theta):
    """H = Lambda'Z'WZ Lambda + I and the Schur complement of E, built densely."""
    Zs, lams = [], st.lambdas(theta)
    for b, L in zip(st.blocks, lams):
        Zb = np.zeros((st.n, b.size))
        for k in range(b.q):
            Zb[np.arange(st.n), np.asarray(b.codes) * b.q + k] = b.Z[:, k]
        Zs.append(Zb @ np.kron(np.eye(b.n_levels), L))
    Zl = np.hstack(Zs)
    H = Zl.T @ (w[:, None] * Zl) + np.eye(Zl.shape[1])
    B = Zl.T @ (w[:, None] * E)
    S = E.T @ (w[:, None] * E) - B.T @ np.linalg.solve(H, B)
    return H, S, Zl


@pytest.mark.parametrize("crossed,slope,coupling", [(False, True, "dense"), (True, True, "dense"),
                                                    (True, True, "sparse"), (True, False, "sparse"),
                                                    (True, False, "dense")])
def test_blocked_factor_equals_dense_algebra(crossed, slope, coupling, monkeypatch):
    import glmmlab.engine.solvers.structure as structure

    monkeypatch.setattr(structure, "DENSE_COUPLING", 10**9 if coupling == "dense" else 0)
    rng = np.random.default_rng(1)
    n = 300
    g, h = rng.integers(0, 12, n), rng.integers(0, 5, n)
    x = rng.normal(size=n)
    Z = np.column_stack([np.ones(n), x]) if slope else np.ones((n, 1))
    terms = [RandomTerm("g", g, [str(i) for i in range(12)], Z, ["(Intercept)", "x"][:Z.shape[1]])]
    if crossed:
        terms.append(RandomTerm("h", h, [str(i) for i in range(5)], np.ones((n, 1)), ["(Intercept)"]))
    st = Structure(merge_terms(terms))
    theta = np.array(([0.8, 0.3, 0.5] if slope else [0.8]) + ([1.3] if crossed else []))
    w = rng.uniform(0.5, 2.0, n)
    E = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    F = factor(st, st.crossprods(w, E), theta)
    H, S, Zl = _dense_system(st, w, E, theta)
    assert F.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
    np.testing.assert_allclose(F.SEE, S, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(F.solve_u(2), np.linalg.solve(H, Zl.T @ (w * E[:, 2])), rtol=1e-10, atol=1e-12)
    rhs = rng.normal(size=st.Q)
    np.testing.assert_allclose(F.solve(rhs), np.linalg.solve(H, rhs), rtol=1e-10, atol=1e-12)
    Hinv = np.linalg.inv(H)
    got = F.diag_blocks_inverse(st)
    q1 = st.q1
    for j in range(st.L1):
        np.testing.assert_allclose(got[0][j], Hinv[j * q1:(j + 1) * q1, j * q1:(j + 1) * q1], rtol=1e-9, atol=1e-12)
    if crossed:
        base = st.L1 * q1
        np.testing.assert_allclose(got[1][:, 0, 0], np.diag(Hinv)[base:], rtol=1e-9)


@pytest.mark.parametrize("heavy_share,max_pairs,heavy", [(10.0, 10**7, 0), (0.85, 10**7, 8), (10.0, 1500, 7),
                                                         (0.0, 10**7, 40)])
def test_crossed_scalar_factor_reused_over_thetas_equals_dense_algebra(heavy_share, max_pairs, heavy, monkeypatch):
    """REML factors one set of cross-products at every theta; from the second call on, the crossed scalar path
    builds the Schur complement from stored products (levels with equal weight sums share a column), the leading
    levels with many coupled entries as a dense panel (one syrk): none; those above a share of the coupled block's
    side (12: more than 10 entries); the largest ones, until the other levels' pairs fit under the cap (1,940
    pairs in all); every level."""
    import glmmlab.engine.solvers.coupled_pairs as coupled_pairs
    import glmmlab.engine.solvers.structure as structure
    from glmmlab.engine.solvers.coupled_pairs import CoupledPairs

    monkeypatch.setattr(structure, "DENSE_COUPLING", 0)
    monkeypatch.setattr(coupled_pairs, "HEAVY_SHARE", heavy_share)
    monkeypatch.setattr(coupled_pairs, "MAX_COUPLED_PAIRS", max_pairs)
    rng = np.random.default_rng(7)
    n = 400
    codes = [rng.integers(0, 40, n), rng.integers(0, 9, n), rng.integers(0, 3, n)]
    terms = [RandomTerm(name, c, [str(i) for i in range(c.max() + 1)], np.ones((n, 1)), ["(Intercept)"])
             for name, c in zip("ghk", codes)]
    st = Structure(merge_terms(terms))
    assert [b.component for b in st.blocks] == ["g", "h", "k"] and not st.dense and st.all_scalar
    w = rng.integers(1, 3, n).astype(float)  # integer weights: many leading levels share their sum
    E = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    once = st.crossprods(w, E)  # PIRLS's: factored once, so never built at the first call
    factor(st, once, np.array([0.8, 1.3, 0.4]))
    assert once._pairs is None
    cp = st.crossprods(w, E)
    cp.reused = True  # REML's: factored at every theta
    for k, theta in enumerate(([0.8, 1.3, 0.4], [0.2, 0.0, 2.5], [1.7, 0.6, 0.05])):
        F = factor(st, cp, np.array(theta))
        if k == 0:  # built at the first call when the pairs (1,940 here) exceed the cap, else at the second
            assert isinstance(cp._pairs, CoupledPairs) if max_pairs < 1940 else cp._pairs is None
        H, S, Zl = _dense_system(st, w, E, np.array(theta))
        assert F.logdet == pytest.approx(np.linalg.slogdet(H)[1], rel=1e-12)
        np.testing.assert_allclose(F.SEE, S, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(F.solve_u(2), np.linalg.solve(H, Zl.T @ (w * E[:, 2])), rtol=1e-10, atol=1e-12)
    assert isinstance(cp._pairs, CoupledPairs) and (cp._pairs.a.size < st.L1 - heavy or heavy == st.L1)
    assert (0 if cp._pairs.panel is None else cp._pairs.panel.shape[1]) == heavy


def test_nesting_is_detected_and_crossing_is_not():
    a = np.repeat(np.arange(4), 6)
    b = np.arange(24) // 2  # 12 levels, each within one level of a
    c = np.arange(24) % 3  # crosses a
    mk = lambda name, codes: FactorBlock(name, codes, [str(i) for i in range(codes.max() + 1)],  # noqa: E731
                                         np.ones((24, 1)), ["(Intercept)"], [[0]])
    assert outer_factor([mk("b", b), mk("a", a)]) == 1
    assert outer_factor([mk("a", a), mk("c", c)]) is None
    perm, specs = cut_blocks([mk("b", b), mk("a", a)], 3)
    assert len(specs) == 3
    a_sorted = a[perm]
    for s in specs:  # whole outer groups in each block
        inside = set(a_sorted[s.rows])
        outside = set(np.delete(a_sorted, np.arange(s.rows.start, s.rows.stop)))
        assert not inside & outside


@pytest.mark.parametrize("name", ["sim_binomial_slope", "sim_gamma_log_slope", "grouseticks_nested",
                                  "sim_poisson_crossed_slope", "salamanders_negbin_spp"])
def test_exact_gradient_equals_finite_differences(name):
    ref = json.loads((MODELS / f"{name}.json").read_text())
    mf = build_model_frame(read_table(str(MODELS / f"{name}.csv")), ref["formula"], family=ref["family"].lower())
    Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
    st = Structure(merge_terms(mf.terms))
    fam = FAMILIES[ref["family"].lower()]
    if fam.name == "negbin":
        from glmmlab.engine.families.distributions import negbin_family
        fam = negbin_family(0.8)
    lk = LINKS[ref["link"]]
    pw, off = np.ones(mf.n), np.zeros(mf.n)
    lap = GeneralLaplace(st, Xs, mf.y, pw, off, fam, lk)
    b0, _ = glm_irls(Xs, mf.y, pw, off, fam, lk)
    x = np.concatenate([st.theta_start() * 0.6 + 0.05, b0 + 0.001])
    _, g = lap.value_and_grad(x)
    gn = central_differences(lap.value, x)
    # central differences with h = 1e-5 carry errors of about 1e-6 relative here
    np.testing.assert_allclose(g, gn, rtol=1e-4, atol=1e-4 * np.max(np.abs(gn)))


@pytest.mark.parametrize("name", ["sim_binomial_slope", "grouseticks_nested", "sim_gamma_log_slope"])
def test_blocks_do_not_change_the_fit(name):
    ref = json.loads((MODELS / f"{name}.json").read_text())
    data = read_table(str(MODELS / f"{name}.csv"))
    fits = [glmmlab.glmm(ref["formula"], data, family=ref["family"].lower(), link=ref["link"], n_blocks=k)
            for k in (1, 3)]
    a, b = (f.to_dict() for f in fits)
    assert abs(a["fit"]["log_likelihood"] - b["fit"]["log_likelihood"]) <= 1e-8
    for fa, fb in zip(a["fixed_effects"], b["fixed_effects"]):
        assert abs(fa["estimate"] - fb["estimate"]) <= 1e-7 * fa["std_error"]
    va = np.array([r["value"] for r in a["blup"]])
    vb = np.array([r["value"] for r in b["blup"]])
    assert np.max(np.abs(va - vb)) <= 1e-7 * np.std(va)
    np.testing.assert_array_equal(a["diagnostics"]["row"], b["diagnostics"]["row"])


def _gaussian_frame(name: str, formula: str | None = None):
    ref = json.loads((MODELS / f"{name}.json").read_text())
    data = read_table(str(MODELS / f"{name}.csv"))
    mf = build_model_frame(data, formula or ref["formula"], family="gaussian", weights=ref.get("weights"))
    return mf, data, formula or ref["formula"], ref.get("weights")


# Gaussian identity models whose factors nest: sleepstudy's correlated and uncorrelated slopes, pastes' (1 | a/b),
# a nested model with a slope on the grouse ticks' data, prior weights
REML_NESTED = [("sleepstudy_slope", None), ("sleepstudy_uncorrelated", None), ("pastes_nested", None),
               ("grouseticks_nested", "log(TICKS + 1) ~ YEAR96 + YEAR97 + cHEIGHT + (1 | LOCATION/BROOD)"),
               ("sim_lmm_weights", None)]


@pytest.mark.parametrize("name,formula", REML_NESTED)
def test_blocked_reml_criterion_equals_the_whole_data_and_dense_algebra(name, formula):
    from glmmlab.engine.solvers.reml import ProfiledLmm
    from glmmlab.engine.solvers.row_blocks import BlockedProfiledLmm, centring_fit, local_blocks, normal_equations

    mf, _, _, _ = _gaussian_frame(name, formula)
    Xs, _, _, _ = scaled_design(mf.X, mf.x_names)
    pw = np.ones(mf.n) if mf.weights is None else np.asarray(mf.weights, dtype=float)
    blocks = merge_terms(mf.terms)
    perm, specs = cut_blocks(blocks, 3)
    assert len(specs) == 3
    whole_st = Structure(blocks)
    whole = ProfiledLmm(whole_st, Xs, mf.y, pw)  # the whole data, response not centred
    # three blocks of whole outer groups, each centring the response on the whole data's least-squares fit
    beta0 = centring_fit(sum(normal_equations(Xs[perm[s.rows]], mf.y[perm[s.rows]], pw[perm[s.rows]])
                             for s in specs))
    parts = []
    for spec in specs:
        r = perm[spec.rows]
        parts.append(ProfiledLmm(Structure(local_blocks(blocks, perm, spec)), Xs[r], mf.y[r], pw[r], beta0))
    blocked = BlockedProfiledLmm(parts, mf.n, float(np.sum(np.log(pw))), beta0)
    try:
        rng = np.random.default_rng(3)
        p = Xs.shape[1]
        for _ in range(3):
            theta = whole_st.theta_start() * rng.uniform(0.3, 1.5, whole_st.n_theta) + 0.1 * (
                np.isinf(whole_st.theta_lower()))
            d_whole, d_blocked = whole.value(theta), blocked.value(theta)
            assert abs(d_blocked - d_whole) <= 1e-10 * abs(d_whole)
            # lme4's REML criterion written densely: log det H + log det(X' V^-1 X / sigma^2 part) + (n - p) terms
            E = np.column_stack([Xs, mf.y])
            H, S, _ = _dense_system(whole_st, pw, E, theta)
            pwrss = S[p, p] - S[p, :p] @ np.linalg.solve(S[:p, :p], S[:p, p])
            dense = (np.linalg.slogdet(H)[1] + np.linalg.slogdet(S[:p, :p])[1]
                     + (mf.n - p) * (1 + np.log(2 * np.pi * pwrss / (mf.n - p))) - np.sum(np.log(pw)))
            assert abs(d_blocked - dense) <= 1e-10 * abs(dense)
    finally:
        blocked.close()


@pytest.mark.parametrize("name,formula", REML_NESTED)
def test_reml_blocks_do_not_change_the_fit(name, formula):
    _, data, formula, weights = _gaussian_frame(name, formula)
    a, b = (glmmlab.glmm(formula, data, weights=weights, n_blocks=k) for k in (1, 3))
    assert a.method == b.method == "REML"
    assert abs(a.log_likelihood - b.log_likelihood) <= 1e-8 * abs(a.log_likelihood)
    assert np.max(np.abs(a.beta - b.beta) / a.se) <= 1e-8
    np.testing.assert_allclose(b.se, a.se, rtol=1e-8)
    np.testing.assert_allclose([r["variance"] for r in b.variances], [r["variance"] for r in a.variances], rtol=1e-8)
    va, vb = (np.array([r["value"] for r in f.blup_table()]) for f in (a, b))
    assert np.max(np.abs(va - vb)) <= 1e-8 * np.std(va)
    sa, sb = (np.array([r["std_error"] for r in f.blup_table()]) for f in (a, b))
    np.testing.assert_allclose(sb, sa, rtol=1e-8)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_allclose(b.fitted, a.fitted, rtol=0, atol=1e-8 * np.std(a.fitted))


@pytest.mark.parametrize("q", [1, 2, 3, 5])
def test_batched_triangular_solves_equal_lapack(q):
    from glmmlab.engine.solvers.batched import batched_solve_lower, batched_solve_upper

    rng = np.random.default_rng(q)
    L = np.tril(rng.normal(size=(7, q, q))) + 3.0 * np.eye(q)[None]
    for B in (rng.normal(size=(7, q)), rng.normal(size=(7, q, 4))):
        want_lo = np.stack([np.linalg.solve(Lj, Bj) for Lj, Bj in zip(L, B)])
        want_up = np.stack([np.linalg.solve(Lj.T, Bj) for Lj, Bj in zip(L, B)])
        np.testing.assert_allclose(batched_solve_lower(L, B), want_lo, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(batched_solve_upper(L, B), want_up, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["contraception_slope", "sim_poisson_crossed_slope"])
def test_a_start_in_theta_reaches_the_same_optimum(name):
    """A refit started at a related fit's theta (the R² null model, bootstrap replicates) ends where a fit from
    lme4's start ends: the start changes the path, not the optimum. A start of the wrong length is ignored."""
    from glmmlab.engine.solvers.fit import fit_frame

    ref = json.loads((MODELS / f"{name}.json").read_text())
    fam, lk = FAMILIES[ref["family"].lower()], LINKS[ref["link"]]
    mf = build_model_frame(read_table(str(MODELS / f"{name}.csv")), ref["formula"], family=fam.name)
    model = {"family": fam.name, "link": lk.name, "max_iter": 500, "tol": 1e-6, "nagq": 1, "conf_level": 0.95}
    cold = fit_frame(mf, fam, lk, model)
    start = np.asarray(cold.theta) * 1.7 + 0.05
    warm = fit_frame(mf, fam, lk, model, theta_start=start)
    assert warm.optimization["start"][: start.size] == pytest.approx(list(start))
    assert warm.log_likelihood == pytest.approx(cold.log_likelihood, abs=1e-7)
    np.testing.assert_allclose(warm.beta, cold.beta, atol=1e-5 * float(np.max(cold.se)))
    np.testing.assert_allclose(warm.theta, cold.theta, atol=1e-5)
    ignored = fit_frame(mf, fam, lk, model, theta_start=np.ones(start.size + 1))
    assert ignored.optimization["start"] == cold.optimization["start"]


def test_the_later_of_collinear_columns_is_dropped_as_lme4_does():
    """lme4 (and the random-intercept engine) drop a column that is a linear combination of the columns before
    it, whatever the columns' scales: here x3 = x1 + x2 has the largest norm, which a norm-pivoted QR would
    keep (dropping x1 instead), and a constant column goes with the intercept."""
    rng = np.random.default_rng(3)
    n = 400
    df = {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "g": rng.integers(0, 20, n)}
    df["x3"] = df["x1"] + df["x2"]
    df["c"] = np.full(n, 2.0)
    df["y"] = rng.poisson(np.exp(0.2 + 0.3 * df["x1"] - 0.2 * df["x2"]))
    r = glmmlab.glmm("y ~ x1 + x2 + x3 + c + (1 + x1 | g)", df, family="poisson")
    assert r.names == ["(Intercept)", "x1", "x2"]
    assert any("dropping 2 column(s): 'x3', 'c'" in w for w in r.warnings)
    ref = glmmlab.glmm("y ~ x1 + x2 + (1 + x1 | g)", df, family="poisson")
    assert r.log_likelihood == pytest.approx(ref.log_likelihood, abs=1e-8)
    np.testing.assert_allclose(r.beta, ref.beta, rtol=1e-7, atol=1e-9)


def test_separation_is_flagged_by_the_general_engine_as_by_the_random_intercept_engine():
    """A two-valued predictor whose one level has only 1s separates the data: both engines name it; a model
    without separation gets no such warning."""
    rng = np.random.default_rng(3)
    n = 400
    g = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    t = (rng.random(n) < 0.3).astype(float)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 * x + rng.normal(0, 0.5, 20)[g])))).astype(float)
    clean = pd.DataFrame({"y": y, "x": x, "t": t, "g": g})
    sep = clean.assign(y=np.where(t == 1, 1.0, y))
    for data, expected in ((sep, ["t"]), (clean, [])):
        ri = glmmlab.fit_glmm(data, "y", "g", ["x", "t"], family="binomial")
        general = glmmlab.glmm("y ~ x + t + (1 + x | g)", data, family="binomial")
        for res in (ri, general):
            named = [w.split("'")[1] for w in res.warnings if w.startswith("Possible separation")]
            assert named == expected, res.warnings


def test_optimization_keeps_every_stage_and_whole_vectors():
    """The JSON's ``optimization`` holds one summary per stage (the Laplace fit that starts AGQ is not lost), each
    with its optimiser, settings and bounds, and a log whose every entry has the whole parameter vector."""
    ref, data = load_case("cbpp_binomial_logit")
    r = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], family="binomial", nagq=5)
    o = r.to_dict()["optimization"]
    assert [s["stage"] for s in o["stages"]] == ["Laplace", "AGQ (5 nodes)"] and o["stage"] == "AGQ (5 nodes)"
    laplace, agq = o["stages"]
    assert agq["start"] == pytest.approx(laplace["final"])  # AGQ starts where the Laplace fit ended
    assert o["final"] == agq["final"] and o["lower"][0] == 0.0 and o["lower"][1] is None
    for stage in o["stages"]:
        assert stage["optimizer"] and stage["settings"]["max_iter"] == 100
        assert stage["log"] and all(len(e["x"]) == len(stage["final"]) and e["theta"] == e["x"][0]
                                    for e in stage["log"])
    reml = glmmlab.glmm("Reaction ~ Days + (Days | Subject)", pd.read_csv(MODELS / "sleepstudy_slope.csv"))
    so = reml.to_dict()["optimization"]
    assert [s["stage"] for s in so["stages"]] == ["REML"] and so["optimizer"].startswith("BOBYQA")
    assert {e["step"] for e in so["log"]} <= {"bobyqa", "polish"} and len(so["log"][0]["x"]) == 3


@pytest.mark.parametrize("case", ["sim_binomial_probit", "grouseticks_poisson_log", "cbpp_binomial_logit",
                                  "sim_poisson_identity"])
def test_the_scalar_intercepts_fast_paths_keep_the_exact_gradient(case):
    """One random intercept on rows sorted by level takes the fast paths (cross-products as sums over runs of
    rows, Newton steps in the mode search for a non-canonical link): the exact gradient still equals central
    differences of the Laplace deviance."""
    from tests.conftest import REFERENCE

    ref = json.loads((REFERENCE / f"{case}.json").read_text())
    df = pd.read_csv(REFERENCE / f"{case}.csv")
    formula = f"{ref['response']} ~ {' + '.join(ref['fixed'])} + (1 | {ref['group']})"
    mf = build_model_frame(df, formula, family=ref["family"].lower())
    order = np.argsort(np.asarray(mf.terms[0].codes), kind="stable")
    X, y, codes = mf.X[order], mf.y[order], np.asarray(mf.terms[0].codes)[order]
    term = RandomTerm(mf.terms[0].component, codes, mf.terms[0].levels, np.ones((mf.n, 1)), ["(Intercept)"])
    st = Structure(merge_terms([term]))
    assert st.sorted1 and st.q1 == 1
    Xs, _, _, _ = scaled_design(X, mf.x_names)
    fam, lk = FAMILIES[ref["family"].lower()], LINKS[ref["link"]]
    pw, off = np.ones(mf.n), np.zeros(mf.n)
    lap = GeneralLaplace(st, Xs, y, pw, off, fam, lk)
    assert lap.newton == (lk.name != fam.canonical_link or lap.edge)
    b0, _ = glm_irls(Xs, y, pw, off, fam, lk)
    x = np.concatenate([[0.7], b0 + 0.001])
    _, g = lap.value_and_grad(x)
    gn = central_differences(lap.value, x)
    np.testing.assert_allclose(g, gn, rtol=1e-4, atol=1e-4 * np.max(np.abs(gn)))
