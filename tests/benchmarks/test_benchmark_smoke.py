"""Smoke test of the benchmark harness: `benchmarks/run.py --quick --no-r` runs and prints its table.

Speed is never asserted here (timings depend on the machine and its load); the full benchmark is a command, not a
test.  While glmmlab's Python API is not importable the glmmlab rows are reported as "unavailable" and only the
harness and the statsmodels peer are exercised; once ``glmmlab.fit_glmm`` exists its rows must be real fits.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"
MAIN_CASES = {"sim_poisson_log_big_quick", "verbagg_binary", "sim_binomial_logit_1m_quick", "sim_gaussian_1m_quick"}
# general models given as an lme4 formula (glmmlab.glmm); without R, InstEval/VerbAgg may be simulated stand-ins
FORMULA_CASES = {"sim_binomial_slope_200k_quick", "sim_binomial_slope_1m_quick", "insteval_crossed",
                 "verbagg_crossed", "sleepstudy_slope", "elp_crossed_quick", "elp_crossed_sub10_quick",
                 "movielens_crossed_quick"}


def _api_available() -> bool:
    proc = subprocess.run([sys.executable, "-c", "import glmmlab; glmmlab.fit_glmm"], capture_output=True,
                          cwd=ROOT, timeout=120)
    return proc.returncode == 0


@pytest.mark.slow
def test_quick_benchmark_runs_and_prints_the_table(tmp_path):
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--no-r", "--timeout", "120", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1200,  # ~40 worker processes; 5 minutes on the shared 2-core machine under load
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "glmmlab benchmark results" in text
    for column in ("fitter", "fit s", "peak MB", "log-likelihood", "time vs glmmlab", "dLL vs lme4"):
        assert column in text, column
    for name in MAIN_CASES | FORMULA_CASES:
        assert f"== {name}:" in text, name
    assert "== reference cases" in text
    assert "== general reference cases" in text
    assert "dLL vs TMB" in text
    assert "== glmmlab memory" in text or not _api_available()

    doc = json.loads(out.read_text())
    entries = {e["case"]["name"]: e for e in doc["cases"]}
    assert MAIN_CASES | FORMULA_CASES <= set(entries)
    assert any(name.startswith("ref:") for name in entries)
    models = [name for name in entries if name.startswith("models:")]
    assert models
    for name in FORMULA_CASES:
        assert entries[name]["case"]["formula"], name
        assert "lme4" not in entries[name]["fitters"] and "glmmTMB" not in entries[name]["fitters"]  # --no-r
    assert entries["sim_binomial_slope_200k_quick"]["fitters"]["statsmodels"]["status"] == "n/a"
    assert entries["sleepstudy_slope"]["fitters"]["statsmodels"]["status"] == "ok"

    # the statsmodels peer ran (MixedLM on the Gaussian case is always available)
    sm = entries["sim_gaussian_1m_quick"]["fitters"]["statsmodels"]
    assert sm["status"] == "ok", sm
    assert sm["fit_seconds"] > 0 and sm["peak_fit_kb"] > 0

    if _api_available():
        for name in MAIN_CASES:
            rec = entries[name]["fitters"]["glmmlab"]
            assert rec["status"] == "ok", (name, rec.get("error"))
            assert rec["fit_seconds"] > 0
            assert rec["peak_fit_kb"] >= rec["rss_baseline_kb"] > 0
            assert math.isfinite(rec["log_likelihood"])
            assert "(Intercept)" in rec["fixef"]
        for name in FORMULA_CASES:  # glmmlab.glmm(formula, df)
            rec = entries[name]["fitters"]["glmmlab"]
            assert rec["status"] == "ok", (name, rec.get("error"))
            assert math.isfinite(rec["log_likelihood"]) and "(Intercept)" in rec["fixef"]
        sleep = entries["sleepstudy_slope"]
        assert set(sleep["fitters"]["glmmlab"]["fixef"]) == {"(Intercept)", "Days"}
        for name in models:  # agreement against the stored lme4 fit is computed
            entry = entries[name]
            if entry["fitters"]["glmmlab"]["status"] == "ok":
                assert "dloglik" in entry["agreement"]["glmmlab"], name
        for name, entry in entries.items():
            assert entry["fitters"]["glmmlab"]["status"] != "unavailable", name
        assert "peak/data" in text
    else:
        for entry in entries.values():
            assert entry["fitters"]["glmmlab"]["status"] == "unavailable"
