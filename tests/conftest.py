"""Shared fixtures: the lme4 reference cases in ../shared/reference."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_cases() -> list[str]:
    return sorted(p.stem for p in REFERENCE.glob("*.json"))


def load_case(case: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REFERENCE / f"{case}.json").read_text())
    data = pd.read_csv(REFERENCE / f"{case}.csv")
    return ref, data


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.fail(f"reference data not found at {REFERENCE}: ../shared must sit beside the repository")
    return REFERENCE
