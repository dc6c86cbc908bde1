"""Benchmark cases of covariance structures (``us``, ``diag``, ``cs``, ``ar1``, ``toep``): the covstruct cases of
../shared/reference/breadth (glmmlab against glmmTMB; lme4 has no such structures) and a simulated
longitudinal ``ar1`` model of 100,000 rows, 10,000 subjects x 10 equally spaced occasions, Gaussian:

    y_it = b0 + b1 t + b2 trt_i + u_it + e_it,   (u_i1 .. u_i10) ~ N(0, sd^2 rho^|s - t|),   e ~ N(0, sigma^2)

``run.py`` fits them (``--only breadth:`` and ``--only sim_gaussian_ar1_100k``), one fresh process per fit. Run as a
script, this module prints glmmlab beside glmmTMB for the seven breadth cases, side by side in one run:

    .venv/bin/python benchmarks/covstruct_cases.py [--repeat 7] [--only NAME[,NAME]] [--no-r]

Each fitter runs in its own process per case (glmmlab: Python; glmmTMB: Rscript), imports its package, reads the
CSV (string columns as factors, levels sorted), then fits the model 1 + ``--repeat`` times: ``first`` is the
first fit in the process (the CPU time a one-off fit costs, lazily imported modules and first calls included),
``cpu`` the median CPU time (user + system) of the fits after it, ``wall`` their median wall time. Both fit
Gaussian models by REML (glmmlab's default; glmmTMB's ``REML = TRUE``), as ``run.py`` does, and Poisson ones by
the Laplace approximation; glmmTMB's ``ratio`` is its median CPU time over glmmlab's, and the log-likelihoods'
difference shows they fitted the same model. The reference's recorded glmmTMB seconds (its ML fit) are shown
beside them, and glmmlab's number of evaluations of its criterion. Results also go to
benchmarks/results/covstruct_latest.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cases import DATA_DIR, GENERATOR_VERSION, REFERENCE_DIR, Case, _is_current, _write_csv

AR1_FORMULA = "y ~ tnum + trt + ar1(0 + time | id)"
NO_LME4 = "lme4 has no covariance structures (glmmTMB's us, diag, cs, ar1, toep)"
NO_STATSMODELS = "statsmodels has no covariance structures for random effects"


@dataclass
class Ar1Spec:
    n_subjects: int
    n_times: int
    beta: tuple[float, float, float] = (10.0, 0.4, 1.0)
    sd: float = 1.2
    rho: float = 0.7
    sigma: float = 0.6
    seed: int = 20251205

    def meta(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, "kind": "gaussian_ar1", "n_subjects": self.n_subjects,
                "n_times": self.n_times, "beta": list(self.beta), "sd": self.sd, "rho": self.rho,
                "sigma": self.sigma, "seed": self.seed}

    def write(self, path: Path) -> None:
        rng = np.random.default_rng(self.seed)
        k, m = self.n_subjects, self.n_times
        ids = np.repeat(np.arange(k), m)
        t = np.tile(np.arange(1, m + 1), k)
        trt = (rng.random(k) < 0.5)[ids]
        # AR(1) effects per subject by the recursion u_t = rho u_(t-1) + sqrt(1 - rho^2) z_t (stationary)
        z = rng.standard_normal((k, m))
        u = np.empty((k, m))
        u[:, 0] = z[:, 0]
        for j in range(1, m):
            u[:, j] = self.rho * u[:, j - 1] + np.sqrt(1.0 - self.rho ** 2) * z[:, j]
        b0, b1, b2 = self.beta
        y = b0 + b1 * t + b2 * trt + self.sd * u.ravel() + self.sigma * rng.standard_normal(k * m)
        width = len(str(m))
        _write_csv(path, {"y": np.round(y, 6), "tnum": t, "time": [f"t{j:0{width}d}" for j in t],
                          "trt": np.where(trt, "trt", "ctl"), "id": [f"s{i:05d}" for i in ids]}, self.meta())


def ar1_case(quick: bool) -> Case:
    spec = Ar1Spec(200, 10) if quick else Ar1Spec(10_000, 10)
    n = spec.n_subjects * spec.n_times
    name = "sim_gaussian_ar1_100k" + ("_quick" if quick else "")
    path = DATA_DIR / f"{name}.csv"

    def build() -> None:
        if not _is_current(path, spec.meta()):
            spec.write(path)

    return Case(name=name, family="gaussian", link="identity", response="y", group="id", fixed=["tnum", "trt"],
                path=path, n=n, n_groups=spec.n_subjects, kind="formula", formula=AR1_FORMULA, n_columns=5,
                groups={"id": spec.n_subjects}, build=build,
                skip={"lme4": NO_LME4, "statsmodels": NO_STATSMODELS},
                notes=[f"{spec.n_subjects:,} subjects x {spec.n_times} occasions, AR(1) sd {spec.sd} rho {spec.rho}, "
                       f"residual sd {spec.sigma}"])


def reference_cases() -> list[Case]:
    """The covstruct cases of ../shared/reference/breadth (their glmmTMB ML fits are in the JSON; the benchmark
    fits Gaussian models by REML in both glmmlab and glmmTMB, as for every linear mixed model here)."""
    folder = REFERENCE_DIR / "breadth"
    out: list[Case] = []
    for jpath in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        ref = json.loads(jpath.read_text())
        if "covstruct" not in ref.get("needs", []) or not jpath.with_suffix(".csv").exists():
            continue
        fit = ref["results"]["ML"]
        groups = {k: int(v) for k, v in (fit.get("ngroups") or {}).items()}
        with open(jpath.with_suffix(".csv")) as fh:
            ncol = len(fh.readline().split(","))
        out.append(Case(
            name=f"breadth:{jpath.stem}", family=str(ref["family"]).lower(), link=ref["link"],
            response=ref["formula"].split("~")[0].strip(), group=next(iter(groups), ""), fixed=[],
            path=jpath.with_suffix(".csv"), n=int(fit["nobs"]), n_groups=max(groups.values()) if groups else None,
            kind="formula", formula=ref["formula"], n_columns=ncol, groups=groups,
            skip={"lme4": NO_LME4, "statsmodels": NO_STATSMODELS},
            notes=[f"glmmTMB's ML fit in R: {fit.get('seconds', float('nan')):.2f} s"]))
    return out


# -- glmmlab beside glmmTMB on the seven breadth cases (run as a script) ------------------------------------------
PY_TIMER = textwrap.dedent("""
    import json, sys, time
    import pandas as pd
    import glmmlab
    glmmlab.glmm  # the entry point's module, imported before the clock starts (as run.py's worker does)
    spec = json.loads(sys.argv[1])
    df = pd.read_csv(spec["csv"])
    for col in df.columns:  # string columns as factors, levels sorted (as the R worker)
        if df[col].dtype == object:
            df[col] = pd.Categorical(df[col], categories=sorted(df[col].unique()))
    cpu, wall = [], []
    for _ in range(spec["repeat"] + 1):
        t, c = time.perf_counter(), time.process_time()
        res = glmmlab.glmm(spec["formula"], df, family=spec["family"], link=spec["link"])
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    print(json.dumps({"cpu": cpu, "wall": wall, "logLik": res.llf, "evaluations": res.optimization["evaluations"]}))
""")

R_TIMER = textwrap.dedent("""
    suppressMessages(library(glmmTMB))
    spec <- jsonlite::fromJSON(commandArgs(trailingOnly = TRUE)[1])
    d <- read.csv(spec$csv, stringsAsFactors = FALSE)
    for (col in names(d)) if (is.character(d[[col]])) d[[col]] <- factor(d[[col]], levels = sort(unique(d[[col]])))
    fam <- get(spec$family)(link = spec$link)
    lmm <- spec$family == "gaussian" && spec$link == "identity"
    cpu <- c(); wall <- c()
    for (i in seq_len(spec[["repeat"]] + 1)) {
      t <- system.time(m <- glmmTMB(as.formula(spec$formula), data = d, family = fam, REML = lmm))
      cpu <- c(cpu, t[["user.self"]] + t[["sys.self"]])
      wall <- c(wall, t[["elapsed"]])
    }
    cat(jsonlite::toJSON(list(cpu = cpu, wall = wall, logLik = as.numeric(logLik(m))), digits = NA), "\n")
""")


def _timed(cmd: list[str], timeout: float) -> dict:
    from breadth import _run  # one process, its last line of output as JSON

    out = _run(cmd, timeout)
    if out["status"] == "ok":
        logl = out["logLik"]
        out.update(logLik=float(logl[0] if isinstance(logl, list) else logl), first=out["cpu"][0],
                   cpu_median=statistics.median(out["cpu"][1:]), wall_median=statistics.median(out["wall"][1:]))
    return out


def side_by_side(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="glmmlab beside glmmTMB on the covstruct cases of the breadth references")
    ap.add_argument("--repeat", type=int, default=7, help="timed fits after the first, per fitter and case")
    ap.add_argument("--only", default=None, help="comma-separated case names (e.g. ovary_ar1)")
    ap.add_argument("--no-r", action="store_true", help="glmmlab only")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    rows = []
    head = (f"{'case':22s} {'rows':>5s} | {'glmmlab first':>13s} {'cpu':>7s} {'wall':>7s} | {'glmmTMB first':>13s} "
            f"{'cpu':>7s} {'wall':>7s} | {'ratio':>6s} {'recorded':>8s} {'dlogLik':>9s} {'evals':>5s}")
    print(head)
    print("-" * len(head))
    for case in reference_cases():
        name = case.name.split(":", 1)[1]
        if args.only and name not in args.only.split(","):
            continue
        ref = json.loads(case.path.with_suffix(".json").read_text())
        spec = {"csv": str(case.path), "formula": case.formula, "family": case.family, "link": case.link,
                "repeat": args.repeat}
        mine = _timed([sys.executable, "-c", PY_TIMER, json.dumps(spec)], args.timeout)
        if args.no_r:
            peer: dict = {"status": "skipped (--no-r)"}
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
                fh.write(R_TIMER)
            try:
                peer = _timed(["Rscript", fh.name, json.dumps(spec)], args.timeout)
            finally:
                Path(fh.name).unlink()

        def cols(r: dict) -> str:
            if r["status"] != "ok":
                return f"{r['status'][:31]:>31s}"
            return f"{r['first']:13.4f} {r['cpu_median']:7.4f} {r['wall_median']:7.4f}"

        both = mine["status"] == "ok" and peer["status"] == "ok"
        ratio = f"{peer['cpu_median'] / mine['cpu_median']:5.1f}x" if both else ""
        dll = f"{mine['logLik'] - peer['logLik']:+9.1e}" if both else ""
        recorded = ref["results"]["ML"].get("seconds")
        evals = str(mine.get("evaluations", "")) if mine["status"] == "ok" else ""
        print(f"{name:22s} {case.n:5d} | {cols(mine)} | {cols(peer)} | {ratio:>6s} "
              f"{'' if recorded is None else f'{recorded:8.3f}'} {dll:>9s} {evals:>5s}", flush=True)
        rows.append({"case": name, "glmmlab": mine, "glmmTMB": peer, "recorded_glmmTMB_ML_seconds": recorded})
    print("seconds of CPU (user + system) per fit; first = the first fit in a fresh process; cpu, wall = medians of "
          f"the {args.repeat} fits after it; ratio = glmmTMB cpu / glmmlab cpu; recorded = the reference's glmmTMB "
          "ML fit; evals = glmmlab's evaluations of its criterion in its last fit (of the value, or of the value and "
          "the gradient, by optimiser)")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "covstruct_latest.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(side_by_side())
