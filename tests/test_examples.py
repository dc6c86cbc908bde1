"""Every script in examples/ runs from the repository root and prints what it is about (exit status 0).

The scripts read the reference data sets beside the repository (../shared/reference/models), as the reference
tests do. ``examples/cli.sh`` runs glmmlab with this interpreter (``PYTHON``), so it needs no ``.venv``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> lines its output must contain
EXPECTED = {
    "quickstart.py": ["GLMM: Reaction ~ Days + (Days | Subject)", "sd_Days|Subject", "Model comparison:",
                      "R² (Nakagawa): marginal 0.279, conditional 0.799"],
    "binomial_trials.py": ["method Laplace", "log-likelihood, cbind form -92.0263; proportion with weights -92.0263",
                           "P1 - P4"],
    "cli.sh": ["glmmlab ", "method REML | n_obs 180", "The model m2 fits better than m1"],
}


def test_every_example_is_tested() -> None:
    scripts = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh"))
    assert scripts == sorted(EXPECTED), f"examples/ holds {scripts}; tested: {sorted(EXPECTED)}"


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    path = EXAMPLES / script
    command = ["bash", str(path)] if path.suffix == ".sh" else [sys.executable, str(path)]
    env = dict(os.environ, PYTHON=sys.executable)
    src = str(ROOT / "src")  # this checkout's glmmlab, also where .venv's editable install points elsewhere
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, f"{script} exited with {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    for line in EXPECTED[script]:
        assert line in run.stdout, f"{script} did not print {line!r}:\n{run.stdout[-3000:]}"
