"""glmmTMB's model classes, glmmlab beside glmmTMB in one run: every case of ../shared/reference/breadth that its
README tags ``family``, ``zi``, ``hurdle`` or ``disp``, and a simulated 1,000,000-row zero-inflated NB2 with
``(1 | g)`` (10,000 groups) and ``zi = ~ x``.

    .venv/bin/python benchmarks/breadth.py [--repeat 3] [--only NAME[,NAME]] [--no-r] [--big-rows 1000000]
                                           [--big-timeout 1800] [--no-big]

Each fitter runs in its own process: glmmlab imports, reads the CSV and fits once untimed (warm-up), then times
``glmmlab.glmm(...)`` ``--repeat`` times (minimum reported); glmmTMB (Rscript) likewise times ``glmmTMB(...)``
(with its ``sdreport``, as the reference's ``seconds``). Both report their log-likelihoods, so the table shows that
they fitted the same model. The big case is timed once per fitter (glmmTMB under ``--big-timeout``). ``ratio`` is
glmmTMB's wall-clock time over glmmlab's; ``cpu ratio`` the same of their processes' CPU time (user and system, every
thread; the least of the repeats), which a machine shared with other work distorts less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BREADTH = ROOT.parent / "shared" / "reference" / "breadth"
TAGS = {"family", "zi", "hurdle", "disp"}

PY_WORKER = textwrap.dedent("""
    import json, sys, time
    import pandas as pd
    import glmmlab
    from glmmlab.interfaces.cli import read_table
    spec = json.loads(sys.argv[1])
    df = read_table(spec["csv"])
    kw = dict(family=spec["family"], link=spec["link"], zi=spec["zi"], disp=spec["disp"], reml=False)
    times, cpu = [], []
    for i in range(spec["repeat"] + (1 if spec["warm"] else 0)):
        t, c = time.perf_counter(), time.process_time()
        res = glmmlab.glmm(spec["formula"], df, **kw)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if spec["warm"]:
        times, cpu = times[1:], cpu[1:]
    print(json.dumps({"seconds": min(times), "cpu_seconds": min(cpu), "logLik": res.llf}))
""")

R_WORKER = textwrap.dedent("""
    suppressMessages(library(glmmTMB))
    args <- commandArgs(trailingOnly = TRUE)
    spec <- jsonlite::fromJSON(args[1])
    d <- read.csv(spec$csv)
    fam <- get(spec$family)(link = spec$link)
    zi <- if (is.null(spec$zi)) ~0 else as.formula(spec$zi)
    disp <- if (is.null(spec$disp)) ~1 else as.formula(spec$disp)
    f <- as.formula(spec$formula)
    times <- c()
    cpu <- c()
    for (i in seq_len(spec[["repeat"]])) {
      st <- system.time(m <- glmmTMB(f, ziformula = zi, dispformula = disp, family = fam, data = d))
      times <- c(times, st[["elapsed"]])
      cpu <- c(cpu, st[["user.self"]] + st[["sys.self"]])
    }
    cat(jsonlite::toJSON(list(seconds = min(times), cpu_seconds = min(cpu), logLik = as.numeric(logLik(m))),
                         auto_unbox = TRUE, digits = NA))
""")


def _run(cmd: list[str], timeout: float) -> dict:
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"status": "error: " + (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["status"] = "ok"
    out["process_seconds"] = time.perf_counter() - t
    return out


def glmmlab_fit(spec: dict, timeout: float) -> dict:
    return _run([sys.executable, "-c", PY_WORKER, json.dumps(spec)], timeout)


def glmmtmb_fit(spec: dict, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_WORKER)
    try:
        return _run(["Rscript", fh.name, json.dumps(spec)], timeout)
    finally:
        os.unlink(fh.name)


def big_case(rows: int, path: Path) -> dict:
    """The 1M-row zero-inflated NB2: y ~ x + (1 | g), zi = ~ x, 10,000 groups (theta 1.5, SD 0.5)."""
    import numpy as np
    import pandas as pd

    if not path.exists():
        rng = np.random.default_rng(20261205)
        g = rng.integers(0, 10_000, rows)
        x = rng.standard_normal(rows)
        b = rng.normal(0.0, 0.5, 10_000)
        mu = np.exp(0.5 + 0.3 * x + b[g])
        y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)).astype(float)
        y[rng.random(rows) < 1.0 / (1.0 + np.exp(1.0 - 0.5 * x))] = 0.0
        pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]}).to_csv(path, index=False)
    return {"case": f"sim_zinb2_{rows // 1000}k", "csv": str(path), "formula": "y ~ x + (1 | g)", "zi": "~ x",
            "disp": None, "family": "nbinom2", "link": "log", "nobs": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default=None)
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--big-timeout", type=float, default=1800.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    cases = []
    for p in sorted(BREADTH.glob("*.json")):
        ref = json.loads(p.read_text())
        if not TAGS & set(ref.get("needs", [])) or {"covstruct", "ordinal"} & set(ref["needs"]):
            continue
        if args.only and p.stem not in args.only.split(","):
            continue
        cases.append({"case": p.stem, "csv": str(p.with_suffix(".csv")), "formula": ref["formula"], "zi": ref["zi"],
                      "disp": ref["disp"], "family": ref["family"], "link": ref["link"],
                      "nobs": ref["results"]["ML"]["nobs"]})
    if not args.no_big and (not args.only or "big" in args.only.split(",")):
        data = HERE / "data"
        data.mkdir(exist_ok=True)
        cases.append(big_case(args.big_rows, data / f"sim_zinb2_{args.big_rows}.csv"))
    rows = []
    print(f"{'case':28s} {'rows':>8s} {'glmmlab s':>10s} {'glmmTMB s':>10s} {'ratio':>7s} {'cpu ratio':>9s} "
          f"{'dlogLik':>10s}")
    for c in cases:
        big = c["case"].startswith("sim_zinb2")
        spec = dict(c, repeat=1 if big else args.repeat, warm=not big)
        mine = glmmlab_fit(spec, args.big_timeout if big else args.timeout)
        peer = {"status": "skipped (--no-r)"} if args.no_r else glmmtmb_fit(
            spec, args.big_timeout if big else args.timeout)
        ratio = cpu_ratio = dll = ""
        if mine["status"] == "ok" and peer["status"] == "ok":
            ratio = f"{peer['seconds'] / mine['seconds']:.1f}x"
            cpu_ratio = f"{peer['cpu_seconds'] / max(mine['cpu_seconds'], 1e-9):.1f}x"
            dll = f"{mine['logLik'] - peer['logLik']:+.2e}"
        fmt = (lambda r: f"{r['seconds']:.3f}" if r["status"] == "ok" else r["status"][:10])  # noqa: E731
        print(f"{c['case']:28s} {c['nobs']:>8d} {fmt(mine):>10s} {fmt(peer):>10s} {ratio:>7s} {cpu_ratio:>9s} "
              f"{dll:>10s}", flush=True)
        rows.append({"case": c, "glmmlab": mine, "glmmTMB": peer})
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "breadth_latest.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
