"""Gamma GLMM estimates against the truth: glmmlab (the model's Laplace likelihood, AGQ with 7 nodes, and lme4's
criterion with ``dispersion="lme4"``) beside glmmTMB and glmer on the same simulated data, measured in one run.

    .venv/bin/python benchmarks/dispersion_truth.py [--groups 300] [--per 20] [--sd 0.5] [--cv 0.3] [--seed 1]
                                                    [--no-r]

The data: ``y ~ x + (1 | g)`` with a log link, beta = (1, 0.3), a random-intercept SD of ``--sd`` on the linear
predictor and a Gamma coefficient of variation ``--cv``. Prints a Markdown table (random-intercept SD, residual
sigma = the CV, log-likelihood, fit seconds). glmer's "VarCorr" SD is what lme4 1.1-x prints (its theta times
sigma); "model" is glmer's own SD (theta).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import glmmlab

R_SCRIPT = r"""
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
d <- read.csv(commandArgs(TRUE)[1])
t1 <- system.time(m1 <- glmmTMB(y ~ x + (1 | g), d, family = Gamma("log")))[["elapsed"]]
t2 <- system.time(m2 <- glmer(y ~ x + (1 | g), d, family = Gamma("log"),
                              control = glmerControl(optimizer = "bobyqa")))[["elapsed"]]
vc <- as.data.frame(VarCorr(m2))
cat(toJSON(list(
  glmmTMB = list(sd = sqrt(VarCorr(m1)$cond$g[1]), sigma = sigma(m1), logLik = as.numeric(logLik(m1)), seconds = t1),
  glmer = list(sd_varcorr = vc$sdcor[1], sd_model = getME(m2, "theta")[[1]], sigma = sigma(m2),
               logLik = as.numeric(logLik(m2)), seconds = t2)), auto_unbox = TRUE, digits = NA))
"""


def simulate(groups: int, per: int, sd: float, cv: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    mu = np.exp(1.0 + 0.3 * x + rng.normal(0, sd, groups)[g])
    return pd.DataFrame({"y": rng.gamma(1 / cv ** 2, mu * cv ** 2), "x": x, "g": [f"g{k}" for k in g]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--per", type=int, default=20)
    ap.add_argument("--sd", type=float, default=0.5)
    ap.add_argument("--cv", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-r", action="store_true")
    a = ap.parse_args()
    data = simulate(a.groups, a.per, a.sd, a.cv, a.seed)
    rows = [("truth", a.sd, a.cv, None, None)]
    for label, opts in (("glmmlab, Laplace (default)", {}), ("glmmlab, AGQ 7 nodes", {"nagq": 7}),
                        ("glmmlab, dispersion='lme4'", {"dispersion": "lme4"})):
        t = time.perf_counter()
        res = glmmlab.glmm("y ~ x + (1 | g)", data, family="gamma", link="log", **opts)
        rows.append((label, float(np.sqrt(res.variances[0]["variance"])), float(np.sqrt(res.var_residual)),
                     res.log_likelihood, time.perf_counter() - t))
    if not a.no_r:
        with tempfile.TemporaryDirectory() as tmp:
            csv, script = Path(tmp) / "d.csv", Path(tmp) / "fit.R"
            data.to_csv(csv, index=False)
            script.write_text(R_SCRIPT)
            out = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        rows.insert(1, ("glmmTMB 1.1.5 (Laplace, dispersion estimated)", r["glmmTMB"]["sd"], r["glmmTMB"]["sigma"],
                        r["glmmTMB"]["logLik"], r["glmmTMB"]["seconds"]))
        rows.append(("glmer VarCorr (lme4 1.1-31)", r["glmer"]["sd_varcorr"], r["glmer"]["sigma"],
                     r["glmer"]["logLik"], r["glmer"]["seconds"]))
        rows.append(("glmer model SD (theta)", r["glmer"]["sd_model"], r["glmer"]["sigma"], None, None))
    print(f"{a.groups} groups of {a.per}, random-intercept SD {a.sd}, Gamma CV {a.cv}, log link, seed {a.seed}\n")
    print("| fit | random-intercept SD | residual (CV) | log-likelihood | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for label, sd, sigma, ll, sec in rows:
        print(f"| {label} | {sd:.3f} | {sigma:.3f} | {'' if ll is None else f'{ll:.1f}'} | "
              f"{'' if sec is None else f'{sec:.2f}'} |")


if __name__ == "__main__":
    main()
