"""Cutting the groups into blocks (threads in memory, workers on a cluster) must not change the fit:
the results agree with the single-block fit to 1e-8 relative on every reference case."""

from __future__ import annotations

import numpy as np
import pytest

import glmmlab
from tests.conftest import load_case, reference_cases


def _cases():
    out = []
    for case in reference_cases():
        ref, _ = load_case(case)
        for key, r in ref["results"].items():
            out.append(pytest.param(case, r["nAGQ"], id=f"{case}-{key}"))
    return out


def close(a, b, rel=1e-8):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = np.maximum(np.abs(b), np.max(np.abs(b)) * 1e-6 + 1e-300)
    assert np.all(np.abs(a - b) <= rel * scale), np.max(np.abs(a - b) / scale)


@pytest.mark.parametrize("case,nagq", _cases())
def test_blocks_do_not_change_the_fit(case, nagq):
    ref, data = load_case(case)
    kw = dict(family=ref["family"].lower(), link=ref["link"], nagq=nagq)
    one = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], n_blocks=1, **kw)
    three = glmmlab.fit_glmm(data, ref["response"], ref["group"], ref["fixed"], n_blocks=3, **kw)
    close(three.log_likelihood, one.log_likelihood)
    close(three.beta, one.beta)
    close(three.se, one.se)
    close(three.var_group, one.var_group, rel=1e-7) if one.var_group > 0 else None
    close(three.blup, one.blup, rel=1e-7)
    close(three.fitted, one.fitted)
    assert three.rows.tolist() == one.rows.tolist()
