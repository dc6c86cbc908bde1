"""Shared fixtures: the lme4 reference cases in ../shared/reference.

A reference folder that is missing or holds no case must fail the run, never skip it or collect nothing: every
helper that lists cases (:func:`reference_cases`, :func:`fit_params`, :func:`model_case_names`,
``model_cases()`` in tests/engine/test_reference_models.py) then returns one param, :func:`missing_reference`,
whose test fails naming the folder (the ``reference_missing`` mark, :func:`pytest_runtest_call`).
``GLMMLAB_TEST_SHARED`` points the tests at another ``shared`` folder (tests/engine/test_reference_missing.py uses
it to run the reference tests against an empty one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(os.environ.get("GLMMLAB_TEST_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
REFERENCE = SHARED / "reference"
MODELS = REFERENCE / "models"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "reference_missing(folder): the reference folder is missing or empty; the "
                                       "test fails")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item) -> None:
    mark = item.get_closest_marker("reference_missing")
    if mark is not None:
        pytest.fail(mark.args[0], pytrace=False)


def missing_reference(folder: Path, n_args: int = 1, what: str = "*.json") -> object:
    """The one param of a case list whose folder is missing or has no case: its test fails naming the folder."""
    state = "does not exist" if not Path(folder).is_dir() else f"holds no {what}"
    msg = (f"no reference cases: {folder} {state}. The tests compare with the lme4 references in ../shared, "
           "which must sit beside the repository (or set GLMMLAB_TEST_SHARED).")
    values = [f"<missing {folder}>"] * n_args
    return pytest.param(*values, id="reference-missing", marks=pytest.mark.reference_missing(msg))


def reference_files(folder: Path, pattern: str = "*.json") -> list[Path]:
    """The case files of a reference folder, sorted ([] when it is missing)."""
    return sorted(Path(folder).glob(pattern)) if Path(folder).is_dir() else []


def reference_cases(keep: Callable[[dict], bool] | None = None) -> list:
    """The case names of ../shared/reference (those whose JSON passes ``keep``), or a failing param when none."""
    names = [p.stem for p in reference_files(REFERENCE)
             if keep is None or keep(json.loads(p.read_text()))]
    return names or [missing_reference(REFERENCE)]


def model_case_names() -> list:
    """The case names of ../shared/reference/models, or a failing param when none."""
    return [p.stem for p in reference_files(MODELS)] or [missing_reference(MODELS)]


def load_case(case: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REFERENCE / f"{case}.json").read_text())
    data = pd.read_csv(REFERENCE / f"{case}.csv")
    return ref, data


def fit_params() -> list:
    """One pytest param per (reference case, nAGQ) fit in ../shared/reference, or a failing param when none."""
    out = []
    for p in reference_files(REFERENCE):
        for key, r in json.loads(p.read_text())["results"].items():
            out.append(pytest.param(p.stem, r["nAGQ"], id=f"{p.stem}-{key}"))
    return out or [missing_reference(REFERENCE, 2)]


def assert_rel_close(a, b, rel: float = 1e-8) -> None:
    """|a - b| <= rel * |b| elementwise, with |b| floored at 1e-6 of the largest |b| (for values near 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(b), np.max(np.abs(b)) * 1e-6 + 1e-300)
    err = float(np.max(np.abs(a - b) / scale)) if a.size else 0.0
    assert err <= rel, err


def assert_close_in_spread(a, b, rel: float = 1e-8) -> None:
    """max |a - b| <= rel * (SD(b) + 1e-6 max |b|): arrays of values that scatter around 0 (BLUPs, residuals), as
    the general engine's invariance tests compare them. That engine determines theta to ~1e-9 relative (its
    gradient's rounding floor), so a BLUP near 0 moves by ~1e-10 absolute, far below 1e-8 of the spread but not
    1e-8 of its own size; the random-intercept engine's per-group arithmetic is compared element by element."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size:
        err = float(np.max(np.abs(a - b))) / (float(np.std(b)) + 1e-6 * float(np.max(np.abs(b))) + 1e-300)
        assert err <= rel, err


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.fail(f"reference data not found at {REFERENCE}: ../shared must sit beside the repository")
    return REFERENCE
