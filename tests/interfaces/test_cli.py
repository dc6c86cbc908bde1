"""The command line: JSON contract, text tables, exit status 2 with one 'error: ' line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, load_case

GLMMLAB = [sys.executable, "-m", "glmmlab.interfaces.cli"]


def run(*args, **kw):
    return subprocess.run(GLMMLAB + [str(a) for a in args], capture_output=True, text=True, timeout=120, **kw)


def test_json_contract_keys_and_values():
    ref, data = load_case("cbpp_binomial_logit")
    p = run("fit", REFERENCE / "cbpp_binomial_logit.csv", "--response", "y", "--group", "herd", "--fixed",
            *ref["fixed"], "--family", "binomial", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    for key in ["model", "method", "n_obs", "n_groups", "n_excluded", "converged", "singular", "warnings",
                "fixed_effects", "random_effects", "icc", "fit", "blup", "diagnostics", "timing"]:
        assert key in doc
    assert doc["model"] == {"response": "y", "fixed": ref["fixed"], "group": "herd", "family": "binomial",
                            "link": "logit", "intercept": True, "conf_level": 0.95, "nagq": 1, "max_iter": 100,
                            "tol": 1e-06, "formula": f"y ~ {' + '.join(ref['fixed'])} + (1 | herd)",
                            "weights": None, "offset": None}
    assert doc["method"] == "Laplace"
    assert set(doc["fixed_effects"][0]) == {"variable", "estimate", "std_error", "statistic", "p_value", "lower",
                                            "upper", "exp_estimate", "exp_lower", "exp_upper"}
    for key in ["random_correlations", "groups", "family_parameter"]:  # contract version 2
        assert key in doc
    assert doc["groups"] == {"herd": doc["n_groups"]} and doc["family_parameter"] is None
    assert [r["component"] for r in doc["random_effects"]] == ["herd"]
    assert doc["fit"]["log_likelihood"] >= ref["results"]["nAGQ1"]["logLik"] - 1e-3
    assert doc["fit"]["log_likelihood_kind"] == "Laplace"
    assert set(doc["diagnostics"]) == {"row", "fitted_values", "deviance_residuals", "pearson_residuals",
                                       "group_random_effect"}
    assert doc["glm_comparison"]["lrt_df"] == 1
    assert doc["timing"]["fit_seconds"] > 0


def test_json_has_no_nan(tmp_path):
    ref, data = load_case("dyestuff2_singular")
    path = tmp_path / "d.tsv"
    data.to_csv(path, sep="\t", index=False)
    p = run("fit", path, "--response", "Yield", "--group", "Batch", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert doc["singular"] is True and doc["icc"] == 0.0
    assert any(w.startswith("Singular fit") for w in doc["warnings"])
    assert [r["component"] for r in doc["random_effects"]] == ["Batch", "Residual"]


def test_parquet_and_options(tmp_path):
    ref, data = load_case("grouseticks_poisson_log")
    path = tmp_path / "g.parquet"
    data.to_parquet(path)
    p = run("fit", path, "--response", "TICKS", "--group", "BROOD", "--fixed", *ref["fixed"], "--family", "poisson",
            "--nagq", "10", "--conf-level", "0.9", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["method"] == "AGQ" and doc["model"]["nagq"] == 10 and doc["icc"] is None
    f = doc["fixed_effects"][1]
    assert f["upper"] - f["estimate"] == pytest.approx(1.6448536 * f["std_error"], rel=1e-6)
    assert "exp_estimate" in f


def test_text_output_has_the_tables():
    ref, _ = load_case("sleepstudy_gaussian")
    p = run("fit", REFERENCE / "sleepstudy_gaussian.csv", "--response", "Reaction", "--group", "Subject",
            "--fixed", "Days", "--conf-level", "0.9")
    assert p.returncode == 0, p.stderr
    for label in ["Random Effects", "Residual", "ICC:", "Fixed Effects", "Lower 90%", "Upper 90%",
                  "REML Log-Likelihood", "AIC", "BIC", "BLUP", "Rank"]:
        assert label in p.stdout
    assert "OR" not in p.stdout.split("Fixed Effects")[1].split("Model Fit")[0]


def test_no_intercept():
    p = run("fit", REFERENCE / "sleepstudy_gaussian.csv", "--response", "Reaction", "--group", "Subject",
            "--fixed", "Days", "--no-intercept", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [f["variable"] for f in doc["fixed_effects"]] == ["Days"] and doc["model"]["intercept"] is False


@pytest.mark.parametrize("args,pattern", [
    (["fit", "missing.csv", "--response", "y", "--group", "g"], "data file 'missing.csv' does not exist"),
    (["fit", "{ref}", "--response", "y", "--group", "herd", "--family", "binomial", "--link", "log"],
     "link 'log' is not available for the binomial family: choose one of logit, probit"),
    (["fit", "{ref}", "--response", "y", "--group", "nope"], "group column 'nope' is not in the data"),
    (["fit", "{ref}", "--response", "y", "--group", "herd", "--family", "quasipoisson"], "--family"),
    (["fit", "{ref}", "--response", "y", "--group", "herd", "--conf-level", "2"], "conf_level must be between"),
    (["fit", "{ref}", "--response", "y", "--group", "herd", "--max-iter", "abc"], "--max-iter"),
    (["fit", "{ref}", "--response", "y"], "--group"),
    (["fit", "{ref}", "--response", "herd", "--group", "y", "--fixed", "period2"],
     "response column 'herd' is not numeric"),
    (["fit", "{txt}", "--response", "y", "--group", "g"], "must end in .csv, .tsv (.tab, .txt) or .parquet"),
    (["fit", "{bad}", "--response", "y", "--group", "g"], "cannot read"),
])
def test_bad_input_exits_2_with_one_error_line(tmp_path, args, pattern):
    txt = tmp_path / "data.dat"
    txt.write_text("y,g\n1,a\n")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    args = [a.format(ref=REFERENCE / "cbpp_binomial_logit.csv", txt=txt, bad=bad) for a in args]
    p = run(*args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert pattern in lines[0]
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_installed_entry_point():
    exe = Path(sys.executable).parent / "glmmlab"
    if not exe.exists():
        pytest.skip("glmmlab entry point not installed in this interpreter's environment")
    p = subprocess.run([str(exe), "fit", str(REFERENCE / "dyestuff_gaussian.csv"), "--response", "Yield",
                        "--group", "Batch", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)["method"] == "REML"


def test_dispersion_option_reaches_the_fit():
    """``--dispersion lme4`` fits glmer's criterion (another log-likelihood than the default's) and the JSON's
    model block says so; it was once parsed and then dropped."""
    data = REFERENCE / "dispersion" / "sim_gamma_log.csv"
    docs = {}
    for mode in ("estimated", "lme4"):
        p = run("fit", data, "--formula", "y ~ x1 + x2 + (1 | grp)", "--family", "gamma", "--link", "log",
                "--dispersion", mode, "--format", "json")
        assert p.returncode == 0, p.stderr
        docs[mode] = json.loads(p.stdout)
    assert docs["lme4"]["model"].get("dispersion") == "lme4"
    assert docs["estimated"]["model"].get("dispersion", "estimated") == "estimated"
    assert abs(docs["lme4"]["fit"]["log_likelihood"] - docs["estimated"]["fit"]["log_likelihood"]) > 1.0
