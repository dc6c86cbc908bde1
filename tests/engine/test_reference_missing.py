"""A missing or empty ../shared/reference fails the run: every case-listing helper then yields one param whose
test fails naming the folder (tests/conftest.py), instead of skipping or collecting nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tests.conftest as conftest
import tests.engine.test_reference_lme4 as lme4_tests
import tests.engine.test_reference_models as models_tests

ROOT = Path(__file__).resolve().parents[2]


def _listings():
    return {
        "fit_params": conftest.fit_params,
        "reference_cases": conftest.reference_cases,
        "reference_cases(keep)": lambda: conftest.reference_cases(lambda ref: ref["family"] != "gaussian"),
        "model_case_names": conftest.model_case_names,
        "test_reference_lme4._fits": lme4_tests._fits,
        "test_reference_models.model_cases": models_tests.model_cases,
    }


class _Item:
    def __init__(self, param):
        self.marks = list(param.marks)

    def get_closest_marker(self, name):
        return next((m for m in self.marks if m.name == name), None)


@pytest.mark.parametrize("state", ["empty", "absent"])
@pytest.mark.parametrize("name", list(_listings()))
def test_listing_of_a_missing_folder_fails(tmp_path, monkeypatch, name, state):
    folder = tmp_path / "reference"
    if state == "empty":
        (folder / "models").mkdir(parents=True)
    monkeypatch.setattr(conftest, "REFERENCE", folder)
    monkeypatch.setattr(conftest, "MODELS", folder / "models")
    monkeypatch.setattr(lme4_tests, "REFERENCE", folder)
    monkeypatch.setattr(models_tests, "MODELS", folder / "models")
    params = _listings()[name]()
    assert len(params) == 1, params
    (param,) = params
    assert param.id == "reference-missing"
    mark = _Item(param).get_closest_marker("reference_missing")
    assert mark is not None and str(folder) in mark.args[0]
    assert ("does not exist" if state == "absent" else "holds no") in mark.args[0]
    with pytest.raises(pytest.fail.Exception, match="no reference cases"):
        conftest.pytest_runtest_call(_Item(param))


def test_listing_of_the_real_folder_finds_the_cases():
    # the other side: with ../shared present the helpers list real cases (not the failing param)
    assert "cbpp_binomial_logit" in conftest.reference_cases()
    assert "sleepstudy_slope" in conftest.model_case_names()
    assert len(models_tests.model_cases()) >= 17 and len(conftest.fit_params()) >= 10


def test_reference_tests_fail_on_an_empty_folder(tmp_path):
    """End to end: the two reference modules, pointed at an empty ``shared``, fail (exit 1), nothing passes or
    is skipped, and the message names the missing folder."""
    (tmp_path / "reference" / "models").mkdir(parents=True)
    env = dict(os.environ, GLMMLAB_TEST_SHARED=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        "tests/engine/test_reference_lme4.py", "tests/engine/test_reference_models.py"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "passed" not in out and "skipped" not in out, out
    n_tests = sum(1 for m in (lme4_tests, models_tests) for name in vars(m) if name.startswith("test_"))
    assert f"{n_tests} failed" in out, out  # each test function of the two modules: once, on the failing param
    assert f"{tmp_path / 'reference'} holds no *.json" in out, out
