"""Crossed scale-out benchmark: a crossed binomial GLMM ``y ~ x1 + x2 + (1 | user) + (1 | item)`` of 20,000,000
rows (200,000 users x 2,000 items) on a local Dask cluster of two workers with 4 GiB each; and, on the first
2,000,000 rows, the in-memory fit beside the Dask fit of the same rows (they must agree: the log-likelihood to
1e-8, the estimates to 1e-6 of their SE). Reports fit times and the peak memory of every process.

    .venv/bin/python benchmarks/scale_out_crossed.py [--rows 20000000] [--subsample-rows 2000000]
                                                     [--users 200000] [--items 2000] [--worker-memory 4GiB]
                                                     [--quick] [--skip-full]

Data are generated once (numpy, fixed seed) as Parquet files of 1,000,000 rows each under
``benchmarks/data/scale_out_crossed_<rows>/`` (of the subsample's rows when fewer), users and items spread over all
files (user activity and item popularity log-normal, skewed). ``--quick``: 400,000 rows, 20,000 users x 400 items,
100,000 in the comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scale_out import vm_hwm_mb, vm_rss_mb  # type: ignore[import-not-found]

HERE = Path(__file__).resolve().parent
CHUNK = 1_000_000
FORMULA = "y ~ x1 + x2 + (1 | user) + (1 | item)"
COLUMNS = ["y", "x1", "x2", "user", "item"]


def generate(folder: Path, rows: int, users: int, items: int, chunk: int) -> None:
    """Parquet files of ``chunk`` rows (the subsample is the first files)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "_complete.json"
    want = {"rows": rows, "users": users, "items": items, "chunk": chunk}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    rng0 = np.random.default_rng(11)
    u, v = rng0.normal(scale=0.7, size=users), rng0.normal(scale=0.5, size=items)
    pu, pi = rng0.lognormal(0.0, 0.8, users), rng0.lognormal(0.0, 1.0, items)
    pu, pi = pu / pu.sum(), pi / pi.sum()
    for k, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        rng = np.random.default_rng(2000 + k)
        user, item = rng.choice(users, size=n, p=pu), rng.choice(items, size=n, p=pi)
        x1, x2 = rng.normal(size=n), (rng.random(n) < 0.4).astype(float)
        eta = -0.2 + 0.5 * x1 - 0.3 * x2 + u[user] + v[item]
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int8)
        pd.DataFrame({"y": y, "x1": x1, "x2": x2, "user": user.astype(np.int64), "item": item.astype(np.int64)}
                     ).to_parquet(folder / f"part-{k:04d}.parquet", index=False)
    marker.write_text(json.dumps(want))


def _files(folder: str, rows: int) -> list[str]:
    """The first files holding ``rows`` rows."""
    chunk = int(json.loads((Path(folder) / "_complete.json").read_text())["chunk"])
    return [str(f) for f in sorted(Path(folder).glob("part-*.parquet"))[: max(1, -(-rows // chunk))]]


def _summary(res, seconds: float) -> dict:
    return {"fit_seconds": res.fit_seconds, "wall_seconds": seconds, "log_likelihood": res.log_likelihood,
            "converged": res.converged, "n_obs": res.n_obs, "groups": dict(res.groups),
            "beta": res.beta.tolist(), "se": res.se.tolist(), "names": list(res.names),
            "variances": [r["variance"] for r in res.variances],
            "evaluations": res.optimization.get("evaluations")}


def worker_dask(folder: str, rows: int, worker_memory: str) -> dict:
    import logging

    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster

    import glmmlab
    from glmmlab.services.distributed.cluster import worker_config

    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    stages: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    with worker_config(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       memory_limit=worker_memory) as cluster, Client(cluster) as client:
        ddf = dd.read_parquet(_files(folder, rows), columns=COLUMNS)
        last = [""]

        live = HERE / "results" / f"scale_out_crossed_{rows}.stages.log"  # the stages as they come (a long run)
        live.parent.mkdir(exist_ok=True)
        live.write_text("")

        written = [""]

        def progress(stage: str, fraction: float) -> None:
            head = stage.split(" (")[0]
            if head != last[0]:
                stages.append((round(time.perf_counter() - t0, 2), stage))
                last[0] = head
            if stage != written[0]:  # every new stage, count and evaluation; not the beats that repeat one
                written[0] = stage
                with live.open("a") as fh:
                    fh.write(f"{time.perf_counter() - t0:9.1f} s  {fraction:5.3f}  {stage}\n")

        res = glmmlab.glmm(FORMULA, ddf, family="binomial", progress=progress)
        workers = client.run(vm_hwm_mb)
        client_peak = vm_hwm_mb()
    out = _summary(res, time.perf_counter() - t0)
    out.update(peak_mb={"client+scheduler": client_peak, **{f"worker {k}": v for k, v in workers.items()}},
               stages=stages)
    return out


def worker_memory_engine(folder: str, rows: int) -> dict:
    import pandas as pd

    import glmmlab

    df = pd.concat([pd.read_parquet(f) for f in _files(folder, rows)], ignore_index=True)
    before = vm_rss_mb()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    t = time.perf_counter()
    res = glmmlab.glmm(FORMULA, df, family="binomial")
    out = _summary(res, time.perf_counter() - t)
    out.update(peak_mb_during_fit=vm_hwm_mb(), rss_mb_before_fit=before)
    return out


def agreement(a: dict, b: dict) -> dict:
    """b (Dask) against a (in memory): the log-likelihood's relative difference, the estimates' in their SEs."""
    dll = abs(b["log_likelihood"] - a["log_likelihood"]) / abs(a["log_likelihood"])
    dbeta = float(np.max(np.abs(np.subtract(b["beta"], a["beta"])) / np.asarray(a["se"])))
    return {"dloglik_rel": dll, "max_dbeta_se": dbeta, "equal": bool(dll <= 1e-8 and dbeta <= 1e-6)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--subsample-rows", type=int, default=2_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--worker-memory", default="4GiB", help="per worker; two workers")
    ap.add_argument("--quick", action="store_true", help="400,000 rows, 20,000 users x 400 items (a smoke run)")
    ap.add_argument("--skip-full", action="store_true", help="only the comparison on the subsample")
    ap.add_argument("--worker", choices=["dask", "memory"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "dask":
        print(json.dumps(worker_dask(args.folder, args.rows, args.worker_memory)))
        return 0
    if args.worker == "memory":
        print(json.dumps(worker_memory_engine(args.folder, args.rows)))
        return 0
    if args.quick:
        args.rows, args.subsample_rows, args.users, args.items = 400_000, 100_000, 20_000, 400
    folder = HERE / "data" / f"scale_out_crossed_{args.rows}"
    t = time.perf_counter()
    generate(folder, args.rows, args.users, args.items, min(CHUNK, args.subsample_rows))
    print(f"data: {args.rows:,} rows, {args.users:,} users x {args.items:,} items in {folder} "
          f"({time.perf_counter() - t:.0f} s to generate or check)", flush=True)
    out: dict = {"rows": args.rows, "users": args.users, "items": args.items, "worker_memory": args.worker_memory}
    runs = [("memory", args.subsample_rows), ("dask", args.subsample_rows)]
    if not args.skip_full:
        runs.append(("dask", args.rows))
    for kind, rows in runs:
        label = f"{kind} {rows:,} rows"
        cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(folder), "--rows", str(rows),
               "--worker-memory", args.worker_memory]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if p.returncode != 0:
            print(f"{label}: FAILED after {time.perf_counter() - t:.0f} s\n{p.stderr[-3000:]}", flush=True)
            out[label] = {"error": p.stderr[-3000:]}
            continue
        r = out[label] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{label}: fit {r['fit_seconds']:.1f} s, {r['evaluations']} evaluations, logLik "
              f"{r['log_likelihood']:.6f}, converged {r['converged']}, groups {r['groups']}", flush=True)
        if kind == "memory":
            print(f"  peak {r['peak_mb_during_fit']:,.0f} MB ({r['rss_mb_before_fit']:,.0f} MB before the fit)")
        else:
            print("  peak memory: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in r["peak_mb"].items()))
            for when, stage in r["stages"]:
                print(f"  {when:8.1f} s  {stage}")
        if kind == "dask" and rows == args.subsample_rows and f"memory {rows:,} rows" in out:
            a = out[f"memory {rows:,} rows"]
            if "error" not in a:
                out["agreement"] = agreement(a, r)
                print(f"  against the in-memory fit of the same rows: {out['agreement']}", flush=True)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "scale_out_crossed.json").write_text(json.dumps(out, indent=2))
    print(f"written {results / 'scale_out_crossed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
