"""The analytic derivatives the optimisers rely on agree with central finite differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glmmlab.engine import design, families
from glmmlab.engine.blocks import LocalBlocks, split_design
from glmmlab.engine.glm import fit_glm
from glmmlab.engine.laplace import LaplaceObjective
from glmmlab.engine.lmm import LmmSums, reml_slope, reml_state
from tests.conftest import load_case, reference_cases


def _design(case):
    ref, df = load_case(case)
    codes, levels = pd.factorize(df[ref["group"]].astype(str), sort=True)
    fam, link = families.resolve(ref["family"].lower(), ref["link"])
    d = design.prepare(df[ref["response"]].to_numpy(float), df[ref["fixed"]].to_numpy(float), ref["fixed"],
                       codes, list(levels), fam)
    return d, fam, link


GLMM_CASES = reference_cases(lambda ref: ref["family"].lower() != "gaussian")


@pytest.mark.parametrize("case", GLMM_CASES)
@pytest.mark.parametrize("n_blocks", [1, 2])
def test_laplace_gradient(case, n_blocks):
    d, fam, link = _design(case)
    blocks = LocalBlocks(split_design(d, fam.name, link.name, n_blocks))
    obj = LaplaceObjective(blocks, fam.name)
    x = np.concatenate([[0.7], fit_glm(blocks) + 0.05])
    _, g = obj.value_and_grad(x)
    num = np.empty_like(x)
    for k in range(x.size):
        h = 1e-6 * max(1.0, abs(x[k]))
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        num[k] = (obj.value(xp) - obj.value(xm)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-4)
    blocks.close()


@pytest.mark.parametrize("case", ["sleepstudy_gaussian", "exam_gaussian", "dyestuff_gaussian"])
@pytest.mark.parametrize("psi", [0.05, 0.5, 2.0])
def test_reml_slope(case, psi):
    d, fam, link = _design(case)
    blocks = LocalBlocks(split_design(d, fam.name, link.name, 1))
    s = LmmSums.from_parts(blocks.map("lmm_sums"), d.n_groups)
    h = 1e-6 * psi
    num = (reml_state(s, np.sqrt(psi + h)).deviance - reml_state(s, np.sqrt(psi - h)).deviance) / (2 * h)
    assert reml_slope(s, psi) == pytest.approx(num, rel=1e-5, abs=1e-6)
