"""The command line on bad input for covariance structures and ordinal responses: one 'error: ' line naming the
term or the response, nothing on stdout (nothing fitted), exit status 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

GLMMLAB = [sys.executable, "-m", "glmmlab.interfaces.cli"]


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    rng = np.random.default_rng(3)
    n_id, n_t = 12, 4
    tnum = np.tile(np.arange(1, n_t + 1), n_id)
    d = pd.DataFrame({"id": np.repeat([f"s{i:02d}" for i in range(n_id)], n_t), "tnum": tnum,
                      "time": [f"t{t}" for t in tnum], "gap": [f"t{[1, 2, 4, 7][t - 1]}" for t in tnum],
                      "y": rng.normal(size=n_id * n_t), "r": "a"})
    path = tmp_path_factory.mktemp("cli") / "panel.csv"
    d.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("formula,extra,words", [
    ("y ~ tnum + ar1(0 + tnum | id)", [], ["tnum in the random term ar1(0 + tnum | id)", "numeric", "factor"]),
    ("y ~ tnum + ar1(0 + gap | id)", [], ["ar1(0 + gap | id)", "not equally spaced", "t1, t2, t4, t7"]),
    ("y ~ tnum + ar1(time | id)", [], ["ar1(time | id)", "intercept column", "ar1(0 + time | id)"]),
    ("y ~ tnum + toep(tnum | id)", [], ["toep(tnum | id)", "numeric", "factor"]),
    ("y ~ tnum + cs(0 + tnum | id)", [], ["cs(0 + tnum | id)", "two or more"]),
    ("r ~ tnum + (1 | id)", ["--family", "ordinal"], ["ordinal response 'r'", "single category ('a')"]),
])
def test_bad_structure_or_ordinal_input_exits_2_naming_it(panel, formula, extra, words):
    p = subprocess.run(GLMMLAB + ["fit", str(panel), "--formula", formula, *extra], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert p.stdout == "" and "Traceback" not in p.stderr
