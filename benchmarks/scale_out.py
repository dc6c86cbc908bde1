"""Scale-out benchmark (issue 5): a 50,000,000-row binomial GLMM with 5 fixed effects and 100,000 groups on a
local Dask cluster whose two workers are capped at 4 GiB of memory in total, and the in-memory engine on the
first 10,000,000 rows for comparison. Reports fit time and the peak memory of every process.

    .venv/bin/python benchmarks/scale_out.py [--rows 50000000] [--memory-rows 10000000] [--groups 100000]
                                             [--worker-memory 2GiB] [--quick]

Data are generated once (numpy, fixed seed) as Parquet files of 1,000,000 rows each under
benchmarks/data/scale_out_<rows>/, groups spread over all files (the worst case for the shuffle).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CHUNK = 1_000_000
P = 5


def generate(folder: Path, rows: int, groups: int) -> None:
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "_complete.json"
    if marker.exists() and json.loads(marker.read_text()) == {"rows": rows, "groups": groups}:
        return
    rng_u = np.random.default_rng(7)
    u = rng_u.normal(scale=0.6, size=groups)
    beta = np.array([-0.3, 0.5, -0.25, 0.15, 0.4, -0.6])
    for k, start in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - start)
        rng = np.random.default_rng(1000 + k)
        X = rng.normal(size=(n, P))
        X[:, 4] = (X[:, 4] > 0.3).astype(float)
        g = rng.integers(0, groups, n)
        eta = beta[0] + X @ beta[1:] + u[g]
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int8)
        df = pd.DataFrame(X, columns=[f"x{j + 1}" for j in range(P)])
        df["y"] = y
        df["g"] = g.astype(np.int64)
        df.to_parquet(folder / f"part-{k:04d}.parquet", index=False)
    marker.write_text(json.dumps({"rows": rows, "groups": groups}))


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def vm_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def worker_dask(folder: str, worker_memory: str) -> dict:
    import logging

    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    from glmmlab.services.distributed.cluster import worker_config
    from glmmlab.services.distributed.fitting import fit_columns_dask

    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    stages: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    with worker_config(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       memory_limit=worker_memory) as cluster, Client(cluster) as client:
        ddf = dd.read_parquet(folder, columns=["y", "g"] + [f"x{j + 1}" for j in range(P)])
        last = [""]

        def progress(stage: str, fraction: float) -> None:
            head = stage.split(" (")[0]
            if head != last[0]:
                stages.append((round(time.perf_counter() - t0, 2), stage))
                last[0] = head

        res = fit_columns_dask(ddf, "y", "g", [f"x{j + 1}" for j in range(P)], family="binomial", client=client,
                               progress=progress)
        workers = client.run(vm_hwm_mb)
        # Read before anything turns the result into Python lists (to_dict() of 50M rows of diagnostics
        # would take several GB of its own). The nannies of a LocalCluster run inside this process, so
        # "client+scheduler" covers them.
        client_peak = vm_hwm_mb()
    return {
        "fit_seconds": res.fit_seconds, "wall_seconds": time.perf_counter() - t0,
        "log_likelihood": res.log_likelihood, "converged": res.converged,
        "iterations": res.optimization["iterations"], "evaluations": res.optimization["evaluations"],
        "n_obs": res.n_obs, "n_groups": res.n_groups,
        "fixed_effects": dict(zip(res.names, res.beta.tolist())),
        "var_group": res.variances[0]["variance"], "peak_mb": {"client+scheduler": client_peak,
                                               **{f"worker {k}": v for k, v in workers.items()}},
        "stages": stages,
    }


def worker_memory_engine(folder: str, rows: int) -> dict:
    import pandas as pd

    import glmmlab

    files = sorted(Path(folder).glob("part-*.parquet"))[: max(1, rows // CHUNK)]
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    before = vm_rss_mb()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    res = glmmlab.fit_glmm(df, "y", "g", [f"x{j + 1}" for j in range(P)], family="binomial")
    return {"fit_seconds": res.fit_seconds, "n_obs": res.n_obs, "log_likelihood": res.log_likelihood,
            "converged": res.converged, "peak_mb_during_fit": vm_hwm_mb(), "rss_mb_before_fit": before,
            "data_mb": df.memory_usage(deep=True).sum() / 2**20,
            "fixed_effects": res.beta.tolist()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--memory-rows", type=int, default=10_000_000)
    ap.add_argument("--groups", type=int, default=100_000)
    ap.add_argument("--worker-memory", default="2GiB", help="per worker; two workers")
    ap.add_argument("--quick", action="store_true", help="2,000,000 rows, 10,000 groups (a smoke run)")
    ap.add_argument("--worker", choices=["dask", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "dask":
        print(json.dumps(worker_dask(args.folder, args.worker_memory)))
        return 0
    if args.worker == "memory":
        print(json.dumps(worker_memory_engine(args.folder, args.memory_rows)))
        return 0
    if args.quick:
        args.rows, args.memory_rows, args.groups = 2_000_000, 1_000_000, 10_000
    folder = HERE / "data" / f"scale_out_{args.rows}"
    t = time.perf_counter()
    generate(folder, args.rows, args.groups)
    print(f"data: {args.rows:,} rows, {args.groups:,} groups, {P} fixed effects in {folder} "
          f"({sum(f.stat().st_size for f in folder.glob('*.parquet')) / 2**20:,.0f} MB on disk; "
          f"{time.perf_counter() - t:.0f} s to generate or check)", flush=True)
    out = {"rows": args.rows, "groups": args.groups, "worker_memory": args.worker_memory}
    for kind in ("memory", "dask"):
        cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(folder),
               "--memory-rows", str(args.memory_rows), "--worker-memory", args.worker_memory]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{kind}: FAILED after {time.perf_counter() - t:.0f} s\n{p.stderr[-3000:]}")
            out[kind] = {"error": p.stderr[-3000:]}
            continue
        out[kind] = json.loads(p.stdout.strip().splitlines()[-1])
        r = out[kind]
        if kind == "memory":
            print(f"in memory, {r['n_obs']:,} rows: fit {r['fit_seconds']:.1f} s, "
                  f"peak {r['peak_mb_during_fit']:,.0f} MB "
                  f"(+{r['peak_mb_during_fit'] - r['rss_mb_before_fit']:,.0f} MB "
                  f"over the {r['rss_mb_before_fit']:,.0f} MB "
                  f"before the fit; data {r['data_mb']:,.0f} MB), logLik {r['log_likelihood']:.3f}, "
                  f"converged {r['converged']}")
        else:
            peaks = ", ".join(f"{k} {v:,.0f} MB" for k, v in r["peak_mb"].items())
            print(f"Dask, {r['n_obs']:,} rows, {r['n_groups']:,} groups: fit {r['fit_seconds']:.1f} s "
                  f"(wall {r['wall_seconds']:.1f} s incl. cluster start), {r['iterations']} iterations, "
                  f"{r['evaluations']} evaluations, logLik {r['log_likelihood']:.3f}, converged {r['converged']}")
            print(f"  peak memory: {peaks}")
            for when, stage in r["stages"]:
                print(f"  {when:8.1f} s  {stage}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "scale_out.json").write_text(json.dumps(out, indent=2))
    print(f"written {results / 'scale_out.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
