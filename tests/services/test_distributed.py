"""The random-intercept form on Dask (services/distributed/dask_fit.py, as every model): equal to the in-memory fit to
1e-8 relative on every reference case (values scattered around 0 in their spread:
tests/conftest.assert_close_in_spread), on a local cluster with two workers; Parquet directories through the
command line; bad input answered as in memory; float32 blocks above LEAN_ROWS."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("dask.distributed")

import glmmlab  # noqa: E402
from tests.conftest import assert_close_in_spread, assert_rel_close, fit_params, load_case  # noqa: E402


@pytest.fixture(scope="module")
def client():
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit="2GiB") as cluster, distributed.Client(cluster) as c:
        yield c


def rel_close(a, b, rel=1e-8):
    assert_rel_close(a, b, rel)


@pytest.mark.parametrize("case,nagq", fit_params())
def test_dask_equals_in_memory(client, case, nagq):
    ref, data = load_case(case)
    kw = dict(family=ref["family"].lower(), link=ref["link"], nagq=nagq)
    a = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], **kw)
    stages = []
    b = glmmlab.fit_glmm(dd.from_pandas(data, npartitions=4), ref["response"], ref["group"], ref["fixed"],
                         progress=lambda s, f: stages.append(s), **kw)
    assert any(s.startswith("Pass 1") for s in stages)
    if a.method != "REML":
        assert any("iteration" in s for s in stages)
    da, db = a.to_dict(), b.to_dict()
    for key in ("n_obs", "n_groups", "n_excluded", "converged", "singular", "warnings", "method"):
        assert db[key] == da[key], key
    rel_close(b.log_likelihood, a.log_likelihood)
    rel_close(b.beta, a.beta)
    rel_close(b.se, a.se)
    if a.variances[0]["variance"] > 0:
        rel_close(b.variances[0]["variance"], a.variances[0]["variance"])
    assert b.modes[0].levels == a.modes[0].levels
    # values scattered around 0 (BLUPs, residuals, row effects): in their spread (the general engine determines theta
    # to ~1e-9 relative, its gradient's rounding floor), as its own Dask tests compare them
    assert_close_in_spread(b.modes[0].values[:, 0], a.modes[0].values[:, 0])
    rel_close(b.modes[0].std_errors[:, 0], a.modes[0].std_errors[:, 0])
    assert b.rows.tolist() == a.rows.tolist()
    for k in ("fitted", "deviance_residuals", "pearson_residuals", "row_random_effect"):  # fitted: a Gaussian's
        # centred response (exam's) scatters around 0 as well
        assert_close_in_spread(getattr(b, k), getattr(a, k))


def test_listwise_deletion_and_refusals_match(client):
    ref, data = load_case("grouseticks_poisson_log")
    data = data.copy()
    data.loc[[3, 50, 200], "cHEIGHT"] = np.nan
    data.loc[10, "BROOD"] = None
    a = glmmlab.fit_glmm(data, "TICKS", "BROOD", ref["fixed"], family="poisson")
    b = glmmlab.fit_glmm(dd.from_pandas(data, npartitions=5), "TICKS", "BROOD", ref["fixed"], family="poisson")
    assert b.n_excluded == a.n_excluded == 4
    rel_close(b.beta, a.beta)
    bad = data.copy()
    bad["TICKS"] = -bad["TICKS"] - 1
    with pytest.raises(glmmlab.GlmmInputError, match="non-negative count"):
        glmmlab.fit_glmm(dd.from_pandas(bad, npartitions=3), "TICKS", "BROOD", ref["fixed"], family="poisson")
    with pytest.raises(glmmlab.GlmmInputError, match="'nope' is not in the data"):
        glmmlab.fit_glmm(dd.from_pandas(data, npartitions=3), "TICKS", "BROOD", ["nope"], family="poisson")
    text = data.copy()
    text["word"] = "abc"
    with pytest.raises(glmmlab.GlmmInputError, match="fixed-effect column 'word' is not numeric"):
        glmmlab.fit_glmm(dd.from_pandas(text, npartitions=3), "TICKS", "BROOD", ["word"], family="poisson")


def test_constant_and_collinear_columns_dropped_as_in_memory(client):
    ref, data = load_case("sim_binomial_probit")
    data = data.copy()
    data["const"] = 2.0
    data["twice"] = 2 * data["x1"] - 1
    fixed = ref["fixed"] + ["const", "twice"]
    a = glmmlab.fit_glmm(data, "y", "grp", fixed, family="binomial", link="probit")
    b = glmmlab.fit_glmm(dd.from_pandas(data, npartitions=4), "y", "grp", fixed, family="binomial", link="probit")
    assert b.names == a.names == ["(Intercept)", "x1", "x2"]
    assert b.warnings == a.warnings
    rel_close(b.beta, a.beta)


def test_parquet_directory_through_the_command_line(tmp_path):
    ref, data = load_case("exam_gaussian")
    folder = tmp_path / "exam"
    dd.from_pandas(data, npartitions=7).to_parquet(folder)
    assert len(list(folder.glob("*.parquet"))) == 7
    csv = tmp_path / "exam.csv"
    data.to_csv(csv, index=False)
    args = ["--response", "normexam", "--group", "school", "--fixed", *ref["fixed"], "--format", "json"]
    mem = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(csv), *args],
                         capture_output=True, text=True, timeout=300)
    dsk = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(folder), "--engine", "dask",
                          *args], capture_output=True, text=True, timeout=300)
    assert mem.returncode == 0 and dsk.returncode == 0, dsk.stderr[-2000:]
    a, b = json.loads(mem.stdout), json.loads(dsk.stdout)
    rel_close(b["fit"]["log_likelihood"], a["fit"]["log_likelihood"])
    rel_close([f["estimate"] for f in b["fixed_effects"]], [f["estimate"] for f in a["fixed_effects"]])
    assert b["diagnostics"]["row"] == a["diagnostics"]["row"]


def test_unreachable_scheduler_exits_2(tmp_path):
    ref, data = load_case("dyestuff_gaussian")
    path = tmp_path / "d.parquet"
    data.to_parquet(path)
    p = subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(path), "--response", "Yield",
                        "--group", "Batch", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Dask scheduler"), p.stderr


def _blocks_on_worker(dask_worker) -> list[tuple[str, bool]]:
    """(dtype of the scaled design, whether per-row state is kept between evaluations) of every block actor on a
    worker (client.run)."""
    from glmmlab.services.distributed.dask_fit import GeneralBlockActor

    return [(str(a.Xs.dtype), bool(a.lap.keep_last)) for a in dask_worker.state.actors.values()
            if isinstance(a, GeneralBlockActor)]


@pytest.mark.parametrize("lean", [True, False])
def test_a_random_intercept_fit_above_the_lean_threshold_holds_float32_blocks(client, monkeypatch, lean):
    """The random-intercept form on Dask runs on the general engine's actors; with more rows than LEAN_ROWS (here
    lowered to just below the data's rows) every actor holds the scaled design in float32 and keeps nothing per
    row between evaluations, at LEAN_ROWS rows or fewer float64 and its last modes' weights, and either way the fit
    agrees with the in-memory one to the precision of float32 data (~1e-6)."""
    from glmmlab.services.distributed import dask_fit as dist

    ref, data = load_case("cbpp_binomial_logit")
    kw = dict(family=ref["family"].lower(), link=ref["link"])
    a = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], **kw)
    monkeypatch.setattr(dist, "LEAN_ROWS", a.n_obs - 1 if lean else a.n_obs)
    seen: list = []

    def progress(stage: str, fraction: float) -> None:  # the actors, once they are all loaded
        if stage.startswith("Initial values") and not seen:
            seen.extend(b for blocks in client.run(_blocks_on_worker).values() for b in blocks)

    b = glmmlab.fit_glmm(dd.from_pandas(data, npartitions=3), ref["response"], ref["group"], ref["fixed"],
                         progress=progress, **kw)
    assert len(seen) == 3 and set(seen) == ({("float32", False)} if lean else {("float64", True)}), seen
    assert b.converged and b.n_obs == a.n_obs and b.warnings == a.warnings
    assert_rel_close(b.log_likelihood, a.log_likelihood, 1e-6)
    np.testing.assert_allclose(b.beta, a.beta, rtol=0, atol=1e-4 * np.max(a.se))
    np.testing.assert_allclose(b.se, a.se, rtol=1e-4)
    assert_rel_close(b.variances[0]["variance"], a.variances[0]["variance"], 1e-4)
    assert b.rows.tolist() == a.rows.tolist()
    np.testing.assert_allclose(b.fitted, a.fitted, rtol=0, atol=1e-5)


def test_lean_blocks_store_the_design_in_float32_and_agree_to_its_precision(client, monkeypatch):
    """Above LEAN_ROWS the actors keep the scaled design in float32 and no per-row state between
    evaluations; the fit then agrees with the in-memory one to float32's precision of the data (~1e-6)."""
    from glmmlab.services.distributed import dask_fit as dist

    monkeypatch.setattr(dist, "LEAN_ROWS", 0)
    for case in ("cbpp_binomial_logit", "sleepstudy_gaussian", "sim_gamma_log"):
        ref, data = load_case(case)
        kw = dict(family=ref["family"].lower(), link=ref["link"])
        a = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], **kw)
        b = glmmlab.fit_glmm(dd.from_pandas(data, npartitions=3), ref["response"], ref["group"], ref["fixed"], **kw)
        assert b.converged and b.n_obs == a.n_obs
        assert_rel_close(b.log_likelihood, a.log_likelihood, 1e-6)
        np.testing.assert_allclose(b.beta, a.beta, rtol=0, atol=1e-4 * np.max(a.se))
        np.testing.assert_allclose(b.se, a.se, rtol=1e-4)
        assert_rel_close(b.variances[0]["variance"], a.variances[0]["variance"], 1e-4)
