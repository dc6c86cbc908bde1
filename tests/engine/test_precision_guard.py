"""The precision guards (tests/precision.py) fail on a more-than-tenfold growth, with the 1e-9 floor, and on a
case or quantity that is not stored; every reference case has a stored entry."""

from __future__ import annotations

import json

import pytest

import tests.precision as precision
from tests.conftest import MODELS, REFERENCE, reference_files


@pytest.fixture
def table(monkeypatch):
    doc = {"s": {"case-nAGQ1": {"loglik": 1e-4, "tiny": 1e-13, "blup": None}}}
    monkeypatch.setattr(precision, "stored", lambda: doc)
    return doc


def test_within_tenfold_passes(table):
    precision.check_precision("s", "case-nAGQ1", {"loglik": 9.9e-4, "tiny": 9.9e-9, "blup": None})


@pytest.mark.parametrize("measured, why", [
    ({"loglik": 1.1e-3, "tiny": 1e-13, "blup": None}, "loglik"),        # 11-fold growth
    ({"loglik": 1e-4, "tiny": 1.1e-8, "blup": None}, "tiny"),           # above 10 x the 1e-9 floor
    ({"loglik": float("nan"), "tiny": 1e-13, "blup": None}, "loglik"),  # not a number
    ({"loglik": 1e-4, "tiny": 1e-13, "blup": 0.1}, "blup"),             # compared now, not stored
])
def test_growth_fails(table, measured, why):
    with pytest.raises(AssertionError, match=why):
        precision.check_precision("s", "case-nAGQ1", measured)


def test_unrecorded_case_or_quantity_fails(table):
    with pytest.raises(pytest.fail.Exception, match="no stored precision"):
        precision.check_precision("s", "other-nAGQ1", {"loglik": 0.0})
    with pytest.raises(AssertionError, match="quantities changed"):
        precision.check_precision("s", "case-nAGQ1", {"loglik": 0.0})


def test_every_reference_fit_has_a_stored_entry():
    doc = json.loads(precision.PRECISION.read_text())
    assert doc["factor"] == precision.FACTOR and doc["floor"] == precision.FLOOR
    for folder, base in ((REFERENCE, "lme4"), (MODELS, "models")):
        want = {}
        for p in reference_files(folder):
            ref = json.loads(p.read_text())
            sec = base + ("_dispersion" if precision.is_dispersion_case(ref) else "")
            want.setdefault(sec, set()).update(f"{p.stem}-{k}" for k in ref["results"])
        assert want, f"no reference cases under {folder}"
        for sec, cases in want.items():
            assert set(doc[sec]) == cases, sec
    assert set(doc["lme4_dispersion"]) == {"sim_gamma_log-nAGQ1"}
    assert set(doc["models_dispersion"]) == {"sim_gamma_log_slope-nAGQ1"}
