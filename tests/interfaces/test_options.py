"""Every bad value of every option, through the Python API and the command line: the message names the option
and its rule (the rules are declared once, in glmmlab.engine.model.options)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import glmmlab
from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.model.options import OPTIONS
from glmmlab.interfaces.cli import read_table
from tests.conftest import MODELS

DATA = MODELS / "cbpp_trials.csv"
FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"

CASES = [pytest.param(opt.name, bad, id=f"{opt.name}={bad!r}") for opt in OPTIONS.values()
         for bad in opt.examples_bad]


def _api_kwargs(name, bad):
    kw = {"family": "binomial"}
    kw[name] = bad
    if name == "link":
        kw["family"] = "binomial"
    return kw


@pytest.mark.parametrize("name,bad", CASES)
def test_api_names_the_option_and_rule(name, bad):
    data = read_table(str(DATA))
    with pytest.raises(GlmmInputError) as err:
        glmmlab.glmm(FORMULA, data, **_api_kwargs(name, bad))
    msg = str(err.value)
    opt = OPTIONS[name]
    assert name in msg or (name == "family" and "family" in msg), msg
    if opt.kind != "choice":
        assert opt.rule() in msg, msg
    else:  # choices are listed
        assert any(c in msg for c in opt.choices if c), msg


@pytest.mark.parametrize("name,bad", CASES)
def test_cli_names_the_option_and_exits_2(name, bad):
    opt = OPTIONS[name]
    args = [sys.executable, "-m", "glmmlab.interfaces.cli", "fit", str(DATA), "--formula", FORMULA]
    if name != "family":
        args += ["--family", "binomial"]
    args += [opt.flag, str(bad)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert name in p.stderr or opt.flag in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_every_option_has_bad_examples_and_a_default_that_passes():
    for opt in OPTIONS.values():
        assert opt.examples_bad, opt.name
        if opt.default is not None and opt.kind != "choice":
            assert opt.check(opt.default) == opt.default
