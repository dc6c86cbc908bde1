"""The command line as a new user meets it (issue 10, point 11): every option of ``glmmlab fit --help`` is
described, ``--diagnostics none`` leaves the per-row arrays out of the JSON, and each command imports only what it
needs (checked by the modules a fresh interpreter has loaded, not by timing)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import pytest

from glmmlab.engine.model.options import OPTIONS
from glmmlab.interfaces.cli import build_parser
from tests.conftest import REFERENCE, load_case

GLMMLAB = [sys.executable, "-m", "glmmlab.interfaces.cli"]
HEAVY = ["dask", "distributed", "matplotlib", "duckdb", "fastapi", "uvicorn", "starlette", "jinja2"]


def run(*args):
    return subprocess.run(GLMMLAB + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json as _json, sys as _sys
        _sys.stderr.write("MODULES " + _json.dumps(sorted({m.split(".")[0] for m in _sys.modules})) + "\\n")
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    line = next(x for x in p.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))


def _fit_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["fit"]


def test_fit_help_describes_every_option():
    p = run("fit", "--help")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    actions = [a for a in _fit_parser()._actions if a.option_strings or a.dest == "data"]
    assert len(actions) >= 20
    for a in actions:
        assert a.help and a.help != argparse.SUPPRESS and len(a.help) > 15, a.option_strings or a.dest
        for flag in a.option_strings:
            assert flag in out, flag
    for opt in OPTIONS.values():  # the options table's flags come with their rule
        assert opt.flag in out
    flat = " ".join(out.split())
    for words in ["between 0.5 and 0.9999", "an integer from 1 to 50", "default 100", "--diagnostics {full,none}",
                  "fitted values and residuals", "examples:", "exits with status 2"]:
        assert words in flat, words


def test_serve_and_top_level_help():
    top = run("--help")
    assert top.returncode == 0 and "fit" in top.stdout and "serve" in top.stdout
    serve = run("serve", "--help")
    assert serve.returncode == 0
    for flag in ["--project", "--host", "--port"]:
        assert flag in serve.stdout
    assert "default: 8765" in serve.stdout and "default: 127.0.0.1" in serve.stdout
    bare = run()
    assert bare.returncode == 2 and "fit" in bare.stdout


def _cbpp_args():
    ref, _ = load_case("cbpp_binomial_logit")
    return ["fit", REFERENCE / "cbpp_binomial_logit.csv", "--response", "y", "--group", "herd", "--fixed",
            *ref["fixed"], "--family", "binomial", "--format", "json"]


def test_diagnostics_none_leaves_out_the_per_row_arrays_only():
    full = run(*_cbpp_args())
    none = run(*_cbpp_args(), "--diagnostics", "none")
    default = run(*_cbpp_args(), "--diagnostics", "FULL")
    for p in (full, none, default):
        assert p.returncode == 0, p.stderr
    a, b, c = json.loads(full.stdout), json.loads(none.stdout), json.loads(default.stdout)
    assert len(a["diagnostics"]["row"]) == a["n_obs"] and len(a["diagnostics"]["fitted_values"]) == a["n_obs"]
    assert c["diagnostics"] == a["diagnostics"]
    assert b["diagnostics"] is None
    assert set(a) == set(b)
    for doc in (a, b):
        doc.pop("diagnostics"), doc.pop("timing"), doc.pop("optimization")
    assert a == b  # everything else is the same document
    assert len(none.stdout) < len(full.stdout)


def test_diagnostics_none_in_python():
    from glmmlab.interfaces.api import fit_glmm

    ref, data = load_case("cbpp_binomial_logit")
    res = fit_glmm(data, "y", "herd", ref["fixed"], family="binomial")
    assert res.to_dict(diagnostics=False)["diagnostics"] is None
    assert len(res.to_dict()["diagnostics"]["pearson_residuals"]) == res.n_obs


@pytest.mark.parametrize("value", ["some", "", "0"])
def test_bad_diagnostics_value_is_one_error_line(value):
    args = _cbpp_args() + ["--diagnostics", value]
    p = run(*args)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
    assert "--diagnostics" in p.stderr and "Traceback" not in p.stderr


def test_import_glmmlab_loads_no_heavy_module():
    mods = loaded_after("import glmmlab; glmmlab.GlmmInputError; glmmlab.FitCancelled")
    for m in HEAVY + ["pandas", "scipy", "numpy", "pyarrow"]:
        assert m not in mods, m


def test_engine_results_import_without_pandas():
    mods = loaded_after("import glmmlab.engine.inference.results")
    assert "numpy" in mods and "pandas" not in mods


def test_a_python_fit_loads_no_web_database_or_cluster_module():
    mods = loaded_after(f"""
        import glmmlab, pandas as pd
        df = pd.read_csv({str(REFERENCE / "sleepstudy_gaussian.csv")!r})
        res = glmmlab.glmm("Reaction ~ Days + (1 | Subject)", df)
        res.summary(), res.params, res.ranef
    """)
    assert "pandas" in mods
    for m in HEAVY:
        assert m not in mods, m


@pytest.mark.parametrize("argv,absent", [
    (["--help"], HEAVY + ["numpy", "pandas", "scipy"]),
    (["serve", "--help"], HEAVY + ["numpy", "pandas", "scipy"]),
    (["fit", "--help"], HEAVY + ["pandas"]),
    (["fit", str(REFERENCE / "sleepstudy_gaussian.csv"), "--formula", "Reaction ~ Days + (1 | Subject)"], HEAVY),
    (["fit", str(REFERENCE / "sleepstudy_gaussian.csv"), "--formula", "Reaction ~ Days + (1 | Subject)",
      "--format", "json", "--diagnostics", "none"], HEAVY),
])
def test_each_command_imports_what_it_needs(argv, absent):
    mods = loaded_after(f"""
        import sys
        from glmmlab.interfaces import cli
        try:
            code = cli.main({argv!r})
        except SystemExit as exc:
            code = exc.code
        assert code == 0, code
    """)
    for m in absent:
        assert m not in mods, m
