"""Crossed and partially crossed grouping factors on a Dask DataFrame (services/distributed/coupled*.py): the rows
cut by the leading factor, each actor's part of the coupled block reduced on the driver; the fit equals the
in-memory fit (log-likelihood to 1e-8 relative, estimates to 1e-6 of their SE, and the rest of the record to
1e-6) on the crossed references (Penicillin by REML, VerbAgg's binomial), an InstEval-shaped subsample with a
factor nested in another and both crossed with the leading one, and every kind of family, link, weights and
offsets; too many coupled levels are refused in words before the rows are moved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import glmmlab  # noqa: E402
from glmmlab.engine.errors import GlmmInputError  # noqa: E402
from glmmlab.services.distributed.coupled import COUPLED_LEVELS  # noqa: E402
from tests.services.test_distributed import client  # noqa: E402,F401  (the local two-worker cluster)
from tests.services.test_distributed_general import assert_same_fit, load  # noqa: E402


def assert_crossed_fit(b, a) -> None:
    """b (Dask) equals a (in memory): the log-likelihood to 1e-8 relative and the estimates to 1e-6 of their SE,
    everything else (SEs, variances, modes and their SEs, per-row results) to 1e-6. (BOBYQA's and L-BFGS-B's paths
    differ at rounding level when the sums come in another order, and crossed fits are not polished to rounding
    level in memory either: theta is determined to about 1e-7.)"""
    assert abs(b.log_likelihood - a.log_likelihood) <= 1e-8 * abs(a.log_likelihood)
    assert np.max(np.abs(b.beta - a.beta) / a.se) <= 1e-6
    assert_same_fit(b, a, 1e-6)


def dask_and_memory(formula: str, df: pd.DataFrame, npartitions: int, **kw):
    a = glmmlab.glmm(formula, df, **kw)
    stages: list[str] = []
    b = glmmlab.glmm(formula, dd.from_pandas(df, npartitions=npartitions), progress=lambda s, f: stages.append(s),
                     **kw)
    assert any(s.startswith("Pass 1") for s in stages)
    return a, b


@pytest.mark.parametrize("case", ["penicillin_crossed", "verbagg_crossed"])
def test_crossed_references_equal_in_memory(client, case):  # noqa: F811
    ref, df = load(case)
    a, b = dask_and_memory(ref["formula"], df, 3, family=ref["family"].lower(), link=ref["link"])
    assert a.method == ("REML" if case.startswith("penicillin") else "Laplace")
    assert_crossed_fit(b, a)
    # and the reference itself (lme4), to the precision the in-memory tests hold it
    assert abs(b.log_likelihood - ref["results"]["nAGQ1"]["logLik"]) <= 1e-5 * abs(b.log_likelihood)
    new = df.head(30)
    assert np.allclose(b.predict(new), a.predict(new), rtol=1e-6, atol=1e-8)


def test_crossed_intercepts_on_dask_start_where_in_memory_does(client, monkeypatch):  # noqa: F811
    """Crossed random intercepts on Dask take the in-memory path: each factor's theta starts at its own levels'
    moment estimate (the actors' per-level sums pooled on the driver) and Newton steps follow, so both fits start at
    the same point and take the same number of evaluations (from lme4's start (1, 1) the Dask fit took twice as
    many on VerbAgg)."""
    from glmmlab.engine.solvers import laplace_fit

    starts: list[np.ndarray] = []
    optimize = laplace_fit._optimize

    def spy(fun, x0, *args, **kw):
        starts.append(np.array(x0, dtype=float))
        return optimize(fun, x0, *args, **kw)

    monkeypatch.setattr(laplace_fit, "_optimize", spy)
    ref, df = load("verbagg_crossed")
    a, b = dask_and_memory(ref["formula"], df, 3, family="binomial", link="logit")
    assert len(starts) == 2
    nt = 2  # the thetas (the betas after them are on each path's own scaled design)
    assert not np.allclose(starts[0][:nt], 1.0)  # not lme4's start
    np.testing.assert_allclose(starts[1][:nt], starts[0][:nt], rtol=1e-10)
    assert b.optimization["evaluations"] == a.optimization["evaluations"]
    assert_crossed_fit(b, a)


def insteval_like(n_students: int = 120, seed: int = 2) -> pd.DataFrame:
    """Rows of InstEval's shape: students (s) crossed with lecturers (d), each lecturer in one department (dept),
    a numeric service indicator, ratings 1-5; a subsample of whole students."""
    rng = np.random.default_rng(seed)
    nd, ndept = 300, 14
    per = rng.integers(5, 40, n_students)
    s = np.repeat(np.arange(n_students), per)
    d = rng.integers(0, nd, s.size)
    dept = d % ndept
    service = (rng.random(s.size) < 0.43).astype(float)
    eta = 3.2 - 0.07 * service + rng.normal(0, 0.32, n_students)[s] + rng.normal(0, 0.5, nd)[d] \
        + rng.normal(0, 0.1, ndept)[dept]
    y = np.clip(np.round(eta + rng.normal(0, 1.18, s.size)), 1, 5)
    return pd.DataFrame({"s": [f"s{i}" for i in s], "d": [f"d{i}" for i in d], "dept": [f"p{i}" for i in dept],
                         "service": service, "y": y}).sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.slow
def test_insteval_subsample_partially_crossed_equals_in_memory(client):  # noqa: F811
    df = insteval_like()
    a, b = dask_and_memory("y ~ service + (1 | s) + (1 | d) + (1 | dept)", df, 4)
    assert a.method == "REML" and [g for g in a.groups] == [g for g in b.groups]
    assert_crossed_fit(b, a)


def families_data() -> pd.DataFrame:
    ref, df = load("sim_poisson_crossed_slope")
    rng = np.random.default_rng(1)
    df = df.iloc[:2000].copy()
    df["w"] = rng.uniform(0.5, 2, len(df))
    df["off"] = rng.normal(0, 0.1, len(df))
    df["pos"] = df["y"] + 0.5
    df["bin"] = (df["y"] > 1).astype(int)
    return df


@pytest.mark.slow
@pytest.mark.parametrize("formula,family,link,weights,offset", [
    ("y ~ x + (1 + x | a) + (1 | b)", "poisson", "log", None, None),  # the reference, a slope on the leading one
    ("y ~ x + (1 | a) + (1 | b)", "poisson", "log", "w", "off"),
    ("y ~ x + (1 | a) + (1 | b)", "negbin", "log", None, None),
    ("pos ~ x + (1 | a) + (1 | b)", "gamma", "log", "w", None),  # the dispersion estimated with the others
    ("bin ~ x + (1 | a) + (1 | b)", "binomial", "probit", None, "off"),  # Newton steps in the mode search
    ("pos ~ x + (1 + x | b) + (1 | a)", "gaussian", "identity", "w", "off"),  # a slope on a coupled factor
])
def test_families_links_weights_offsets_equal_in_memory(client, formula, family, link, weights, offset):  # noqa
    a, b = dask_and_memory(formula, families_data(), 3, family=family, link=link, weights=weights, offset=offset)
    assert_crossed_fit(b, a)


def test_too_many_coupled_levels_refused_before_the_rows_move(client):  # noqa: F811
    n = COUPLED_LEVELS + 2  # 'b' has COUPLED_LEVELS + 1 levels, 'a' one more: they cross through the last rows
    a = np.arange(n)
    b = a % (COUPLED_LEVELS + 1)
    df = pd.DataFrame({"y": np.random.default_rng(0).normal(size=n + 1), "a": np.append(a, 0),
                       "b": np.append(b, 5)})
    stages: list[str] = []
    with pytest.raises(GlmmInputError) as exc:
        glmmlab.glmm("y ~ 1 + (1 | a) + (1 | b)", dd.from_pandas(df, npartitions=2),
                     progress=lambda s, f: stages.append(s))
    msg = str(exc.value)
    assert "'b' (20,001 levels) is crossed with 'a' (20,002 levels)" in msg
    assert "up to 20,000 coupled random effects" in msg and "fit in memory" in msg
    assert not any(s.startswith("Pass 2") for s in stages)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["penicillin_crossed", "verbagg_crossed"])
def test_crossed_lean_blocks_agree_to_float32_precision(client, monkeypatch, case):  # noqa: F811
    """Above LEAN_ROWS (here 0) the actors of a crossed fit hold the design in float32 too; the fit then agrees
    with the in-memory one to the precision of float32 data, as the nested fits do."""
    from glmmlab.services.distributed import dask_fit as dist

    monkeypatch.setattr(dist, "LEAN_ROWS", 0)
    ref, df = load(case)
    a, b = dask_and_memory(ref["formula"], df, 3, family=ref["family"].lower(), link=ref["link"])
    assert b.converged and b.n_obs == a.n_obs and b.warnings == a.warnings
    assert abs(b.log_likelihood - a.log_likelihood) <= 1e-6 * abs(a.log_likelihood)
    np.testing.assert_allclose(b.beta, a.beta, rtol=0, atol=1e-4 * np.max(a.se))
    np.testing.assert_allclose(b.se, a.se, rtol=1e-4)
    assert b.rows.tolist() == a.rows.tolist()
    np.testing.assert_allclose(b.fitted, a.fitted, rtol=0, atol=1e-5 * np.max(np.abs(a.fitted)))


def many_levels(seed: int = 5) -> pd.DataFrame:
    """6,000 rows over 3,000 x 400 crossed levels: every block's coupling is above DENSE_COUPLING entries, so
    the actors take the sparse paths of their parts (scalar terms, and a slope on the leading factor)."""
    rng = np.random.default_rng(seed)
    n, na, nb = 6_000, 3_000, 400
    a = np.concatenate([np.arange(na), rng.integers(0, na, n - na)])
    b = np.concatenate([np.arange(nb), rng.integers(0, nb, n - nb)])
    rng.shuffle(a)
    x = rng.normal(size=n)
    eta = 0.3 + 0.4 * x + rng.normal(0, 0.5, na)[a] + rng.normal(0, 0.2, na)[a] * x + rng.normal(0, 0.4, nb)[b]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "bin": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int),
                         "x": x, "a": a, "b": b})


@pytest.mark.slow
@pytest.mark.parametrize("formula,family", [("bin ~ x + (1 | a) + (1 | b)", "binomial"),
                                            ("y ~ x + (1 + x | a) + (1 | b)", "poisson")])
def test_sparse_couplings_equal_in_memory(client, formula, family):  # noqa: F811
    from glmmlab.engine.solvers.structure import DENSE_COUPLING

    assert 1_500 * 400 > DENSE_COUPLING  # each of the two blocks' couplings is held sparse
    a, b = dask_and_memory(formula, many_levels(), 2, family=family)
    assert_crossed_fit(b, a)


@pytest.mark.slow
def test_link_with_an_edge_equals_in_memory(client):  # noqa: F811
    """Poisson with the identity link: every step of the mode search stays inside the link's range (the steps
    cut short at the nearest row's edge, the edge tests over every block's rows)."""
    rng = np.random.default_rng(3)
    n, na, nb = 1500, 60, 25
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x = rng.uniform(0, 1, n)
    mu = 6 + 2 * x + rng.normal(0, 1.5, na)[a] + rng.normal(0, 1.0, nb)[b]
    df = pd.DataFrame({"y": rng.poisson(np.maximum(mu, 0.3)), "x": x, "a": [f"a{i}" for i in a],
                       "b": [f"b{i}" for i in b]})
    first, second = dask_and_memory("y ~ x + (1 | a) + (1 | b)", df, 3, family="poisson", link="identity")
    assert not first.singular
    assert_crossed_fit(second, first)
