"""Shared fixtures: the lme4 reference cases in ../shared/reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_cases() -> list[str]:
    return sorted(p.stem for p in REFERENCE.glob("*.json"))


def load_case(case: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REFERENCE / f"{case}.json").read_text())
    data = pd.read_csv(REFERENCE / f"{case}.csv")
    return ref, data


def fit_params() -> list:
    """One pytest param per (reference case, nAGQ) fit in ../shared/reference."""
    out = []
    for case in reference_cases():
        ref, _ = load_case(case)
        for key, r in ref["results"].items():
            out.append(pytest.param(case, r["nAGQ"], id=f"{case}-{key}"))
    return out


def assert_rel_close(a, b, rel: float = 1e-8) -> None:
    """|a - b| <= rel * |b| elementwise, with |b| floored at 1e-6 of the largest |b| (for values near 0)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(b), np.max(np.abs(b)) * 1e-6 + 1e-300)
    err = float(np.max(np.abs(a - b) / scale)) if a.size else 0.0
    assert err <= rel, err


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.fail(f"reference data not found at {REFERENCE}: ../shared must sit beside the repository")
    return REFERENCE
