"""Reference values for the inference features (anova, ML fits, Satterthwaite, R², prediction intervals), made by
tests/reference/inference/make_inference.R with lme4 1.1-31, lmerTest 3.1-3 and performance 0.10.2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REFERENCE

ROOT = Path(__file__).resolve().parents[2]
SHARED = REFERENCE
REF = json.loads((ROOT / "tests" / "reference" / "inference" / "inference.json").read_text())
# the R script's data-frame names
DATA = {"sleep": "sleepstudy_gaussian.csv", "pen": "models/penicillin_crossed.csv", "exam": "exam_gaussian.csv"}


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(SHARED / DATA.get(name, name))


@pytest.fixture(scope="session")
def ref() -> dict:
    return REF
