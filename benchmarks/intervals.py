"""Profile and bootstrap intervals: glmmlab against lme4's confint in the same run (issue 12).

    .venv/bin/python benchmarks/intervals.py [--cases verbagg,sleepstudy,cbpp,slope2k] [--nsim 1000] [--quick]
                                             [--no-r] [--workers N] [--timeout 3600]

The cases (each fitted once by glmmlab and once by lme4; the fits themselves are not timed):

- ``verbagg``: the random-intercept binomial model of lme4's VerbAgg (7,584 rows, 316 subjects; `verbagg_binary`
  of cases.py): r2 ~ Anger + GenderM + btypescold + btypeshout + situself + modedo + (1 | id), glmer.
- ``sleepstudy``: Reaction ~ Days + (Days | Subject) (180 rows), lmer with its default REML. lme4's profile of a
  REML fit refits it by ML and profiles the ML deviance (``devfun2`` calls ``refitML``), and glmmlab's profile does
  the same; its bootstrap refits by REML, as bootMer's ``refit`` of a REML fit does, and so does glmmlab's.
- ``cbpp``: cbind(incidence, size - incidence) ~ period + (1 | herd) (56 rows, binomial trials), glmer.
- ``slope2k``: y ~ x1 + x2 + (1 + x1 | g), binomial, 2,000 rows in 100 groups simulated by cases.SlopeSpec (SDs
  0.8/0.5, correlation 0.3, seed 403), glmer.

glmmlab runs ``result.conf_int(method="profile")`` and the bootstrap of ``conf_int(method="boot", nsim=N, seed=1)``
(every core); R runs ``confint(m, method="profile")`` and bootMer with confint's statistic and
``confint(., type = "perc")`` (one core: bootMer's default), glmer with the bobyqa optimiser. Printed per case:
wall seconds and CPU seconds (glmmlab's own and its worker processes'; R's user + system), the ratios
lme4 / glmmlab, and agreement: the profile bounds' largest difference as a fraction of lme4's
interval width, the bootstrap bounds' largest difference in Monte Carlo standard errors of the two runs combined.
Results go to benchmarks/results/intervals.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import REFERENCE_DIR, SlopeSpec, r_status, slope_case, verbagg_case  # noqa: E402

FIXED = ["Anger", "GenderM", "btypescold", "btypeshout", "situself", "modedo"]
VERBAGG_FORMULA = "r2 ~ " + " + ".join(FIXED) + " + (1 | id)"


@dataclass
class IntervalCase:
    key: str
    title: str
    formula: str
    family: str  # glmmlab's spelling; "gaussian" is lmer (REML) in R
    path: Path | None = None


R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); form <- as.formula(args[2]); fam <- args[3]; nsim <- as.integer(args[4]); out <- args[5]
if (fam == "gaussian") {
  m <- lmer(form, d)  # REML, lmer's default
  stat <- function(x) c(Cv_to_Sv(x@theta, n = lengths(x@cnms), s = sigma(x)), fixef(x))
} else {
  m <- glmer(form, d, family = fam, control = glmerControl(optimizer = "bobyqa"))
  stat <- function(x) c(Cv_to_Sv(x@theta, n = lengths(x@cnms)), fixef(x))
}
st_prof <- system.time(pr <- confint(m, method = "profile", oldNames = FALSE, quiet = TRUE))
set.seed(1)
st_boot <- system.time({bb <- bootMer(m, FUN = stat, nsim = nsim)
                        ci <- confint(bb, type = "perc", level = 0.95)})
cpu <- function(st) sum(st[c("user.self", "sys.self", "user.child", "sys.child")], na.rm = TRUE)
qse <- function(x, p) { x <- sort(x[is.finite(x)]); n <- length(x); s <- sqrt(n * p * (1 - p))
  (x[min(n, ceiling(n * p + s))] - x[max(1, floor(n * p - s))]) / 2 }
writeLines(jsonlite::toJSON(list(
  profile = list(names = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]),
                 seconds = st_prof[["elapsed"]], cpu = cpu(st_prof)),
  boot = list(lower = unname(ci[, 1]), upper = unname(ci[, 2]), seconds = st_boot[["elapsed"]], cpu = cpu(st_boot),
              se_lower = unname(apply(bb$t, 2, qse, p = 0.025)), se_upper = unname(apply(bb$t, 2, qse, p = 0.975)),
              failed = sum(!complete.cases(bb$t)))),
  auto_unbox = TRUE, digits = NA), out)
"""


def build_cases(keys: list[str], quick: bool, use_r: bool, r_ok: bool) -> list[IntervalCase]:
    out = []
    for key in keys:
        if key == "verbagg":
            va = verbagg_case(quick, use_r, r_ok)
            va.build()
            out.append(IntervalCase(key, f"VerbAgg random-intercept binomial ({'; '.join(va.notes)})",
                                    VERBAGG_FORMULA, "binomial", va.path))
        elif key == "sleepstudy":
            out.append(IntervalCase(key, "sleepstudy (Days | Subject), lmer REML", "Reaction ~ Days + (Days | Subject)",
                                    "gaussian", REFERENCE_DIR / "models" / "sleepstudy_slope.csv"))
        elif key == "cbpp":
            out.append(IntervalCase(key, "cbpp (1 | herd) with trials, glmer binomial",
                                    "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial",
                                    REFERENCE_DIR / "models" / "cbpp_trials.csv"))
        elif key == "slope2k":
            sc = slope_case("sim_binomial_slope_2k", SlopeSpec(2000, 100, seed=403))
            sc.build()
            out.append(IntervalCase(key, "simulated binomial (1 + x1 | g), 2,000 rows x 100 groups, glmer",
                                    "y ~ x1 + x2 + (1 + x1 | g)", "binomial", sc.path))
        else:
            raise SystemExit(f"unknown case {key!r}")
    return out


def quantile_se(x: np.ndarray, p: float) -> float:
    x = np.sort(x[np.isfinite(x)])
    n = x.size
    s = math.sqrt(n * p * (1 - p))
    return float(x[min(n, math.ceil(n * p + s)) - 1] - x[max(1, math.floor(n * p - s)) - 1]) / 2


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (the worker processes of a pool)."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def fit_glmmlab(case: IntervalCase):
    import pandas as pd

    import glmmlab

    data = pd.read_csv(case.path)
    if case.key == "verbagg":  # the column form: the random-intercept fast path, as before
        return glmmlab.fit_glmm(data, response="r2", group="id", fixed=FIXED, family="binomial")
    return glmmlab.glmm(case.formula, data, family=case.family)


def run_glmmlab(case: IntervalCase, nsim: int, workers: int | None) -> dict:
    from glmmlab.engine.inference.intervals import percentile_interval
    from glmmlab.services.modeling.bootstrap import bootstrap

    res = fit_glmmlab(case)
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    prof = res.conf_int(method="profile")
    t_prof = time.perf_counter() - t0
    c1 = cpu_seconds()
    run = bootstrap(res, nsim=nsim, seed=1, workers=workers)
    c2 = cpu_seconds()
    lo, up = percentile_interval(run["replicates"], 0.95)
    reps = run["replicates"]
    return {"n": int(res.n_obs),
            "profile": {"names": list(prof.index), "lower": prof["lower"].tolist(), "upper": prof["upper"].tolist(),
                        "seconds": t_prof, "cpu": c1 - c0},
            "boot": {"names": run["names"], "lower": lo.tolist(), "upper": up.tolist(), "seconds": run["seconds"],
                     "cpu": c2 - c1,
                     "workers": run["workers"], "failed": run["failed"],
                     "se_lower": [quantile_se(reps[:, j], 0.025) for j in range(reps.shape[1])],
                     "se_upper": [quantile_se(reps[:, j], 0.975) for j in range(reps.shape[1])]}}


def run_lme4(case: IntervalCase, nsim: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script, out = Path(tmp) / "ci.R", Path(tmp) / "ci.json"
        script.write_text(R_SCRIPT)
        try:
            proc = subprocess.run(["Rscript", str(script), str(case.path), case.formula, case.family, str(nsim),
                                   str(out)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {"error": (proc.stderr.strip().splitlines() or ["R failed"])[-1]}
        return json.loads(out.read_text())


def report_case(case: IntervalCase, ours: dict, theirs: dict) -> None:
    print(f"\n{case.title}: {ours['n']:,} rows")
    print(f"{'':10s}{'glmmlab s':>10s}{'lme4 s':>10s}{'ratio':>8s}{'glmmlab cpu':>13s}{'lme4 cpu':>10s}"
          f"{'ratio':>8s}  agreement")
    for kind in ("profile", "boot"):
        o = ours[kind]
        t = theirs.get(kind) if "error" not in theirs else None
        if t is None:
            print(f"{kind:10s}{o['seconds']:10.2f}{'-':>10s}{'-':>8s}{o['cpu']:13.2f}{'-':>10s}{'-':>8s}  lme4: "
                  f"{theirs.get('error')}")
            continue
        lo_o, up_o = np.array(o["lower"]), np.array(o["upper"])
        lo_t, up_t = np.array(t["lower"], dtype=float), np.array(t["upper"], dtype=float)
        if kind == "profile":
            width = up_t - lo_t
            worst = max(np.max(np.abs(lo_o - lo_t) / width), np.max(np.abs(up_o - up_t) / width))
            agree = f"max |diff| = {worst:.2e} of lme4's width"
        else:
            se_lo = np.hypot(o["se_lower"], t["se_lower"])
            se_up = np.hypot(o["se_upper"], t["se_upper"])
            agree = (f"max |diff| = {max(np.max(np.abs(lo_o - lo_t) / se_lo), np.max(np.abs(up_o - up_t) / se_up)):.2f}"
                     f" Monte Carlo SEs (glmmlab {o['workers']} workers, {o['failed']} failed; lme4 "
                     f"{t.get('failed', 0)} failed)")
        t["ratio"] = t["seconds"] / o["seconds"]
        t["cpu_ratio"] = t["cpu"] / o["cpu"]
        print(f"{kind:10s}{o['seconds']:10.2f}{t['seconds']:10.2f}{t['ratio']:8.1f}{o['cpu']:13.2f}{t['cpu']:10.2f}"
              f"{t['cpu_ratio']:8.1f}  {agree}")
    names = ours["profile"]["names"]
    print("intervals (glmmlab profile | lme4 profile | glmmlab boot | lme4 boot)")
    for j, name in enumerate(names):
        cells = [f"{ours['profile']['lower'][j]:9.4f} {ours['profile']['upper'][j]:9.4f}"]
        if "error" not in theirs:
            cells.append(f"{theirs['profile']['lower'][j]:9.4f} {theirs['profile']['upper'][j]:9.4f}")
        cells.append(f"{ours['boot']['lower'][j]:9.4f} {ours['boot']['upper'][j]:9.4f}")
        if "error" not in theirs:
            cells.append(f"{theirs['boot']['lower'][j]:9.4f} {theirs['boot']['upper'][j]:9.4f}")
        print(f"  {name:28s} " + " | ".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="verbagg,sleepstudy,cbpp,slope2k",
                    help="comma-separated: verbagg, sleepstudy, cbpp, slope2k (default all)")
    ap.add_argument("--nsim", type=int, default=1000, help="bootstrap samples (default 1000)")
    ap.add_argument("--quick", action="store_true", help="the first 84 subjects of VerbAgg (smoke run)")
    ap.add_argument("--no-r", action="store_true", help="do not run lme4")
    ap.add_argument("--workers", type=int, default=None, help="bootstrap workers (default: every core)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds for R per case (default 3600)")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "intervals.json")
    args = ap.parse_args(argv)

    r_ok, r_msg = (False, "--no-r") if args.no_r else r_status()
    cases = build_cases([k.strip() for k in args.cases.split(",") if k.strip()], args.quick, not args.no_r, r_ok)
    print(f"cores: {os.cpu_count()}; nsim {args.nsim}; R: {r_msg}; load average {os.getloadavg()[0]:.2f}")
    results = {}
    for case in cases:
        # lme4 first (the long part), then glmmlab, one after the other: neither competes with the other for the cores
        theirs = run_lme4(case, args.nsim, args.timeout) if r_ok else {"error": r_msg}
        ours = run_glmmlab(case, args.nsim, args.workers)
        report_case(case, ours, theirs)
        results[case.key] = {"formula": case.formula, "family": case.family, "glmmlab": ours, "lme4": theirs}
    print(f"\nload average {os.getloadavg()[0]:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"nsim": args.nsim, "cores": os.cpu_count(), "cases": results}, indent=1))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
