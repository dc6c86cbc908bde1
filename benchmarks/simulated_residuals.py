"""Simulated (DHARMa) residuals: the time to simulate N responses from a fit and compute its scaled residuals and
tests, per family.

    .venv/bin/python benchmarks/simulated_residuals.py [--rows 10000] [--nsim 250] [--repeat 5]

Each family's model is ``y ~ x + (1 | g)`` with 200 groups, fitted once to data drawn from it (the fit is not
timed). Timed: ``result.simulate_residuals(nsim, seed=1)`` (random effects drawn afresh) and with
``conditional=True``, then ``.tests()``; printed are the CPU seconds (``time.process_time``; the least of
``--repeat`` runs, since other processes only add to it) and the wall seconds of that run. For figures free of
other work run it on one core: ``taskset -c 1 .venv/bin/python benchmarks/simulated_residuals.py``. Results go to
benchmarks/results/simulated_residuals.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import glmmlab
from glmmlab.engine.families.glmmtmb import tweedie_sample

OUT = Path(__file__).resolve().parent / "results" / "simulated_residuals.json"


def data(rows: int, seed: int = 1) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 200, rows)
    x = rng.normal(size=rows)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.5, 200)[g]
    mu, p = np.exp(eta), 1 / (1 + np.exp(-eta))
    ys = {"gaussian": eta + rng.normal(size=rows), "binomial": rng.binomial(1, p), "poisson": rng.poisson(mu),
          "nbinom2": rng.negative_binomial(2, 2 / (2 + mu)), "beta_family": rng.beta(p * 10, (1 - p) * 10),
          "tweedie": tweedie_sample(rng, mu, 1.2, 1.4)}
    return {fam: pd.DataFrame({"y": y, "x": x, "g": g}) for fam, y in ys.items()}


def timed(fn, repeat: int) -> tuple[float, float]:
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        best = min(best, (time.process_time() - c, time.perf_counter() - w))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--nsim", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    print(f"{args.rows:,} rows, {args.nsim} simulations; CPU s (wall s), least of {args.repeat}")
    print(f"{'family':<12} {'unconditional':>16} {'conditional':>16} {'tests':>8}")
    for fam, df in data(args.rows).items():
        fit = glmmlab.glmm("y ~ x + (1 | g)", df, family=fam)
        unc = timed(lambda: fit.simulate_residuals(args.nsim, seed=1), args.repeat)  # noqa: B023
        con = timed(lambda: fit.simulate_residuals(args.nsim, seed=1, conditional=True), args.repeat)  # noqa: B023
        sr = fit.simulate_residuals(args.nsim, seed=1)
        tests = timed(sr.tests, args.repeat)
        print(f"{fam:<12} {unc[0]:8.3f} ({unc[1]:.3f}) {con[0]:8.3f} ({con[1]:.3f}) {tests[0]:8.4f}")
        rows.append({"family": fam, "unconditional_cpu": unc[0], "unconditional_wall": unc[1],
                     "conditional_cpu": con[0], "conditional_wall": con[1], "tests_cpu": tests[0]})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": args.rows, "nsim": args.nsim, "repeat": args.repeat, "results": rows},
                              indent=1))


if __name__ == "__main__":
    main()
