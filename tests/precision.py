"""Guards at the precision reached against the lme4 references (tests/reference/precision/README.md).

Each reference test module measures, per case, its largest differences from the reference (one number per
quantity); ``check_precision`` fails when one exceeds ``FACTOR`` times the stored value, the stored value floored at
``FLOOR`` (so differences at rounding level, 1e-12, do not make the guard brittle). The stated tolerances of the
modules stay as they are: the guards come on top of them.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import pytest

PRECISION = Path(__file__).resolve().parent / "reference" / "precision" / "precision.json"
FACTOR = 10.0
FLOOR = 1e-9
RECORD = "python tests/reference/precision/record_precision.py"


def is_dispersion_case(ref: dict) -> bool:
    """Gamma, or Gaussian with a non-identity link: the fits another change will move to glmmTMB's likelihood."""
    fam = ref["family"].lower()
    return fam == "gamma" or (fam == "gaussian" and ref["link"] != "identity")


@cache
def stored() -> dict:
    if not PRECISION.exists():
        pytest.fail(f"{PRECISION} is missing: record it with `{RECORD}`", pytrace=False)
    return json.loads(PRECISION.read_text())


def check_precision(section: str, case: str, measured: dict) -> None:
    table = stored().get(section, {})
    if case not in table:
        pytest.fail(f"no stored precision for {case} in section {section!r} of {PRECISION}: record it with "
                    f"`{RECORD}`", pytrace=False)
    old = table[case]
    assert set(measured) == set(old), f"quantities changed: {sorted(measured)} vs stored {sorted(old)}"
    grown = []
    for q, m in measured.items():
        s = old[q]
        if (m is None) != (s is None):
            grown.append(f"{q}: measured {m}, stored {s}")
        elif m is not None and not (math.isfinite(m) and m <= FACTOR * max(s, FLOOR)):
            grown.append(f"{q}: {m:.3g} > {FACTOR:g} x stored {s:.3g}")
    assert not grown, (f"{case}: the difference from the reference grew more than {FACTOR:g}-fold: "
                       + "; ".join(grown) + f". If intended (and within the stated tolerances), re-record with "
                       f"`{RECORD} --section {section}` and say why in the commit")
