"""Cumulative-link mixed models: glmmlab beside ``ordinal::clmm`` in the same run.

    .venv/bin/python benchmarks/ordinal.py [--repeat 5] [--no-r] [--cpu 1]

Cases: the two wine cases of ../shared/reference/breadth (72 rows, 9 judges; logit and probit), and a simulated
rating panel of 5,000 rows with 200 judges (``sim_ordinal_5k``: five categories, two predictors, judge SD 0.8,
logit; seed 211), fitted with ``rating ~ temp + contact + (1 | judge)`` / ``rating ~ x1 + x2 + (1 | judge)``, and
the crossed case of tests/reference/ordinal_local (``sim_clmm_crossed``: 1,200 rows, 40 judges x 30 items,
``y ~ x + (1 | judge) + (1 | item)``).

Each fitter runs in its own process (``--cpu N`` pins both to that core with ``taskset``), after a warm-up fit;
``--repeat`` fits are timed in the process and the minimum is reported: CPU time for both (glmmlab's
``time.process_time``, clmm's ``system.time`` user + system), so other processes on the machine do not count.
Printed per case: each fitter's best time, the ratio clmm / glmmlab, and the log-likelihood difference. Results
go to benchmarks/results/ordinal.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# ../shared beside the repository, as the tests find it (GLMMLAB_TEST_SHARED overrides)
BREADTH = Path(os.environ.get("GLMMLAB_TEST_SHARED") or ROOT.parent / "shared") / "reference" / "breadth"
DATA = HERE / "data"
CROSSED = ROOT / "tests" / "reference" / "ordinal_local" / "sim_clmm_crossed.csv"  # 1,200 rows, 40 x 30 crossed

PY_WORKER = r"""
import json, sys, time
import pandas as pd
import glmmlab
csv, formula, link, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
df = pd.read_csv(csv)
glmmlab.glmm(formula, df, family="ordinal", link=link)  # warm-up: imports and first-call costs
best = float("inf")
for _ in range(repeat):
    t0 = time.process_time()
    r = glmmlab.glmm(formula, df, family="ordinal", link=link)
    best = min(best, time.process_time() - t0)
print(json.dumps({"seconds": best, "loglik": r.llf, "thresholds": r.thresholds.tolist()}))
"""

R_WORKER = r"""
suppressMessages(library(ordinal))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); f <- as.formula(args[2]); link <- args[3]; repeat_n <- as.integer(args[4])
d[[args[5]]] <- factor(d[[args[5]]], ordered = TRUE)
for (g in strsplit(args[6], ",")[[1]]) d[[g]] <- factor(d[[g]])
m <- clmm(f, data = d, link = link)
best <- Inf
for (i in seq_len(repeat_n)) {
  st <- system.time(m <- clmm(f, data = d, link = link))
  best <- min(best, st[["user.self"]] + st[["sys.self"]])  # CPU time, as glmmlab's process_time
}
cat(jsonlite::toJSON(list(seconds = best, loglik = as.numeric(logLik(m)), thresholds = unname(m$alpha)),
                     auto_unbox = TRUE, digits = NA))
"""


def simulated_case(n: int = 5000, judges: int = 200, seed: int = 211) -> Path:
    """A rating panel: P(Y <= j) = plogis(theta_j - 1.0 x1 - 0.7 x2 - u_judge), u ~ N(0, 0.8^2)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"sim_ordinal_{n // 1000}k.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    judge = rng.integers(0, judges, n)
    x1 = rng.normal(size=n)
    x2 = rng.integers(0, 2, n).astype(float)
    u = rng.normal(0.0, 0.8, judges)
    eta = 1.0 * x1 + 0.7 * x2 + u[judge]
    th = np.array([-1.5, -0.3, 0.8, 2.0])
    latent = eta + rng.logistic(size=n)
    rating = 1 + np.searchsorted(th, latent)
    import pandas as pd

    pd.DataFrame({"rating": rating, "x1": np.round(x1, 6), "x2": x2, "judge": judge + 1}).to_csv(path, index=False)
    return path


def cases() -> list[dict]:
    wine = BREADTH / "wine_clmm_logit.csv"
    sim = simulated_case()
    return [
        {"name": "wine_clmm_logit", "csv": wine, "formula": "rating ~ temp + contact + (1 | judge)", "link": "logit"},
        {"name": "wine_clmm_probit", "csv": wine, "formula": "rating ~ temp + contact + (1 | judge)",
         "link": "probit"},
        {"name": "sim_ordinal_5k", "csv": sim, "formula": "rating ~ x1 + x2 + (1 | judge)", "link": "logit"},
        {"name": "sim_clmm_crossed", "csv": CROSSED, "formula": "y ~ x + (1 | judge) + (1 | item)", "link": "logit",
         "response": "y", "groups": "judge,item"},
    ]


def run(cmd: list[str], cpu: str | None, env: dict | None = None) -> dict:
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpu] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-r", action="store_true")
    p.add_argument("--cpu", default="1", help="the core both fitters are pinned to (taskset); '' for none")
    args = p.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cpu = args.cpu or None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        py, r_script = Path(tmp) / "w.py", Path(tmp) / "w.R"
        py.write_text(PY_WORKER)
        r_script.write_text(R_WORKER)
        for case in cases():
            row: dict = {"case": case["name"], "rows": sum(1 for _ in open(case["csv"])) - 1}
            common = [str(case["csv"]), case["formula"], case["link"], str(args.repeat)]
            row["glmmlab"] = run([sys.executable, str(py)] + common, cpu, env)
            if not args.no_r and shutil.which("Rscript"):
                row["clmm"] = run(["Rscript", str(r_script)] + common
                                  + [case.get("response", "rating"), case.get("groups", "judge")], cpu)
            g, c = row["glmmlab"], row.get("clmm") or {}
            ratio = c["seconds"] / g["seconds"] if "seconds" in c and "seconds" in g and g["seconds"] > 0 else None
            dll = g["loglik"] - c["loglik"] if "loglik" in c and "loglik" in g else None
            row["clmm_over_glmmlab"], row["dloglik"] = ratio, dll
            results.append(row)
            print(f"{case['name']:<18} n={row['rows']:>5}  glmmlab {g.get('seconds', float('nan')):8.4f} s  "
                  f"clmm {c.get('seconds', float('nan')):8.4f} s  clmm/glmmlab "
                  f"{'n/a' if ratio is None else f'{ratio:6.1f}x'}  dLL "
                  f"{'n/a' if dll is None else f'{dll:+.2e}'}" + (f"  {g['error']}" if "error" in g else ""))
    out = HERE / "results" / "ordinal.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeat": args.repeat, "cpu": cpu, "cases": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
