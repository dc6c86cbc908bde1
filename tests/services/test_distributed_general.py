"""General models whose grouping factors nest, on a Dask DataFrame (services/distributed/dask_fit.py): equal to the
in-memory fit to 1e-8 on the reference cases (random slopes, nested factors, offsets, weights, the negative
binomial, AGQ, REML for Gaussian identity models), through glmmlab.glmm and the command line (crossed factors:
test_distributed_crossed.py; fixed factors and scale(): test_distributed_whole_data.py); bad input refused with
the in-memory message."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("dask.distributed")

import glmmlab  # noqa: E402
from glmmlab.engine.errors import GlmmInputError  # noqa: E402
from tests.conftest import REFERENCE, assert_rel_close  # noqa: E402
from tests.services.test_distributed import client  # noqa: E402,F401  (the local two-worker cluster)


def load(case: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REFERENCE / "models" / f"{case}.json").read_text())
    return ref, pd.read_csv(REFERENCE / "models" / f"{case}.csv")


def assert_same_fit(b, a, tol: float = 1e-8) -> None:
    """b (Dask) equals a (in memory): the log-likelihood relative, estimates relative to their SE, variances and
    SEs relative, conditional modes relative to their spread per component and term, per-row results."""
    for key in ("n_obs", "n_groups", "n_excluded", "converged", "singular", "method", "names", "groups", "k"):
        assert getattr(b, key) == getattr(a, key), key
    assert b.warnings == a.warnings
    assert abs(b.log_likelihood - a.log_likelihood) <= tol * abs(a.log_likelihood)
    assert np.max(np.abs(b.beta - a.beta) / a.se) <= tol
    assert_rel_close(b.se, a.se, tol)
    assert [r["term"] for r in b.variances] == [r["term"] for r in a.variances]
    assert_rel_close([r["variance"] for r in b.variances], [r["variance"] for r in a.variances], tol)
    if a.correlations:
        assert_rel_close([r["correlation"] or 0.0 for r in b.correlations],
                         [r["correlation"] or 0.0 for r in a.correlations], tol)
    ta, tb = pd.DataFrame(a.blup_table()), pd.DataFrame(b.blup_table())
    assert tb[["component", "group", "term"]].equals(ta[["component", "group", "term"]])
    for _, idx in ta.groupby(["component", "term"]).groups.items():
        spread = float(ta.loc[idx, "value"].std()) or 1.0
        assert np.max(np.abs(tb.loc[idx, "value"] - ta.loc[idx, "value"])) <= tol * spread
        assert_rel_close(tb.loc[idx, "std_error"], ta.loc[idx, "std_error"], tol)
    assert b.rows.tolist() == a.rows.tolist()
    for k in ("fitted", "pearson_residuals", "row_random_effect"):
        x, y = np.asarray(getattr(b, k)), np.asarray(getattr(a, k))
        assert np.max(np.abs(x - y)) <= tol * (np.std(y) + np.max(np.abs(y)) * 1e-6), k


def both(case: str, npartitions: int, client, data=None, **kw):  # noqa: F811
    ref, df = load(case)
    df = df if data is None else data
    kw = {"family": ref["family"].lower(), "link": ref["link"], **kw}
    if ref.get("weights"):
        kw["weights"] = ref["weights"]
    a = glmmlab.glmm(ref["formula"], df, **kw)
    stages = []
    b = glmmlab.glmm(ref["formula"], dd.from_pandas(df, npartitions=npartitions),
                     progress=lambda s, f: stages.append(s), **kw)
    assert any(s.startswith("Pass 1") for s in stages)
    assert any(("iteration" if a.method != "REML" else "evaluation") in s for s in stages)
    return a, b


@pytest.mark.parametrize("case,npartitions", [("grouseticks_nested", 4), ("mmmec_offset", 3),
                                              ("sim_binomial_proportion", 3)])
def test_nested_offset_and_weights_equal_in_memory(client, case, npartitions):  # noqa: F811
    a, b = both(case, npartitions, client)
    assert_same_fit(b, a)
    new = load(case)[1].head(40)
    assert_rel_close(b.predict(new), a.predict(new))


@pytest.mark.slow
def test_random_slope_equals_in_memory(client):  # noqa: F811
    a, b = both("sim_binomial_slope", 4, client)
    assert [r["term"] for r in a.variances] == ["(Intercept)", "x1"]
    assert_same_fit(b, a)


@pytest.mark.slow
def test_uncorrelated_slopes_and_missing_rows_equal_in_memory(client):  # noqa: F811
    """(x1 || g) with a log link on a Gamma-free family, and rows missing in several columns."""
    ref, df = load("sim_binomial_slope")
    df = df.copy()
    df.loc[df.index[::97], "x2"] = np.nan
    df.loc[df.index[5::131], "g"] = None
    formula = "y ~ x1 + I(x2^2) + exp(x2 / 4) + x1:x2 + (x1 || g)"
    a = glmmlab.glmm(formula, df, family="binomial")
    b = glmmlab.glmm(formula, dd.from_pandas(df, npartitions=3), family="binomial")
    assert a.n_excluded > 0
    assert_same_fit(b, a)


@pytest.mark.slow
def test_negative_binomial_and_agq_equal_in_memory(client):  # noqa: F811
    ref, df = load("salamanders_negbin")
    df = df.assign(mined=(df["mined"].astype(str) == "yes").astype(float))
    formula = "count ~ mined + (1 | site)"
    a = glmmlab.glmm(formula, df, family="negbin")
    b = glmmlab.glmm(formula, dd.from_pandas(df, npartitions=3), family="negbin")
    assert_same_fit(b, a)
    assert abs(b.family_parameter["value"] - a.family_parameter["value"]) <= 1e-8 * a.family_parameter["value"]
    a, b = both("mmmec_offset", 3, client, nagq=7)
    assert a.method == "AGQ"
    assert_same_fit(b, a)


def test_reml_random_slopes_equal_in_memory(client):  # noqa: F811
    """sleepstudy's (Days | Subject) by REML: the criterion's parts (log-determinants and reduced cross-products)
    come from 3 actors; estimates, variances, correlation, BLUPs and their SEs, per-row results equal the
    in-memory fit."""
    a, b = both("sleepstudy_slope", 3, client)
    assert a.method == b.method == "REML"
    assert [r["term"] for r in a.variances] == ["(Intercept)", "Days"] and a.correlations
    assert_same_fit(b, a)
    ref, df = load("sleepstudy_slope")
    lme4 = ref["results"]["nAGQ1"]["logLik"]  # and lme4's (tests/engine/test_reference_models.py's tolerance)
    assert abs(b.log_likelihood - lme4) <= 1e-4
    new = df.head(30).assign(Subject=lambda d: d["Subject"].where(d.index % 7 != 0, "unseen"))
    assert_rel_close(b.predict(new), a.predict(new))


@pytest.mark.slow
@pytest.mark.parametrize("case,npartitions", [("sleepstudy_uncorrelated", 4), ("pastes_nested", 3),
                                              ("sim_lmm_weights", 3)])
def test_reml_uncorrelated_nested_and_weighted_equal_in_memory(client, case, npartitions):  # noqa: F811
    """(Days || Subject), (1 | batch/cask), and (1 | g) with prior weights (the general path: weights keep it
    off the random-intercept engine) by REML on Dask equal the in-memory fit."""
    a, b = both(case, npartitions, client)
    assert a.method == b.method == "REML"
    assert_same_fit(b, a)
    new = load(case)[1].head(25)
    assert_rel_close(b.predict(new), a.predict(new))


@pytest.mark.slow
def test_reml_nested_with_offset_and_missing_rows_equals_in_memory(client):  # noqa: F811
    """The grouse ticks' nested factors by REML with a transformed response, an offset and rows missing in
    several columns."""
    ref, df = load("grouseticks_nested")
    df = df.copy()
    df.loc[df.index[::37], "cHEIGHT"] = np.nan
    df.loc[df.index[5::53], "BROOD"] = np.nan
    df["off"] = 0.01 * df["YEAR96"]
    formula = "log(TICKS + 1) ~ YEAR96 + YEAR97 + cHEIGHT + offset(off) + (1 | LOCATION/BROOD)"
    a = glmmlab.glmm(formula, df)
    b = glmmlab.glmm(formula, dd.from_pandas(df, npartitions=4))
    assert a.n_excluded > 0 and a.method == "REML"
    assert_same_fit(b, a)


def test_bad_input_refused_with_the_in_memory_message(client):  # noqa: F811
    ref, df = load("grouseticks_nested")
    ddf = dd.from_pandas(df, npartitions=3)
    for formula, kw in [("TICKS ~ YEAR96 + cHEIGT + (1 | LOCATION/BROOD)", {"family": "poisson"}),
                        ("TICKS ~ log(cHEIGHT) + (1 | LOCATION/BROOD)", {"family": "poisson"}),
                        ("TICKS ~ cHEIGHT + (1 | LOCATION/BROOD)", {"family": "binomial"})]:
        with pytest.raises(GlmmInputError) as mem:
            glmmlab.glmm(formula, df, **kw)
        with pytest.raises(GlmmInputError) as dsk:
            glmmlab.glmm(formula, ddf, **kw)
        if "row" in str(mem.value):  # counts and row numbers are the first failing partition's
            head = str(mem.value).split(" on ")[0]
            assert str(dsk.value).startswith(head) and "within partition 0 of the Dask DataFrame" in str(dsk.value)
        else:
            assert str(dsk.value) == str(mem.value), formula


@pytest.mark.slow
def test_formula_on_parquet_through_the_command_line(tmp_path):
    ref, df = load("grouseticks_nested")
    folder = tmp_path / "grouse"
    dd.from_pandas(df, npartitions=3).to_parquet(folder)
    csv = tmp_path / "grouse.csv"
    df.to_csv(csv, index=False)
    args = ["--formula", ref["formula"], "--family", "poisson", "--format", "json"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "glmmlab.interfaces.cli", "fit", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    mem, dsk = run(str(csv), *args), run(str(folder), "--engine", "dask", *args)
    assert mem.returncode == 0 and dsk.returncode == 0, dsk.stderr[-2000:]
    a, b = json.loads(mem.stdout), json.loads(dsk.stdout)
    assert abs(b["fit"]["log_likelihood"] - a["fit"]["log_likelihood"]) <= 1e-8 * abs(a["fit"]["log_likelihood"])
    assert_rel_close([f["estimate"] for f in b["fixed_effects"]], [f["estimate"] for f in a["fixed_effects"]])
    assert b["diagnostics"]["row"] == a["diagnostics"]["row"]
