"""glmmlab benchmarks: one command, peers measured in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--no-r] [--fitters glmmlab,lme4,...]
                                       [--timeout 600] [--all-peers] [--no-cli] [--repeat N] [--peer-repeat N]
                                       [--vs REV]

Random-intercept cases are given as response/group/fixed; general cases as an lme4 formula (glmmlab.glmm against
lmer/glmer and glmmTMB).

For every case (see cases.py) each fitter runs in its own subprocess (workers/), which reads the data, resets the
memory high-water mark, times the fit call alone and writes a JSON record.  This script generates the data, runs
the workers with a time limit, prints the tables and writes benchmarks/results/latest.json.

--vs REV adds a row glmmlab@<short sha>: glmmlab at the git revision REV, checked out into a temporary git worktree
(removed at the end, also on an error or Ctrl-C) and imported by the same worker from that worktree's src; its runs
alternate with the working tree's glmmlab (now, before, now, before, ...) and a last table gives now/before per case.
See benchmarks/README.md for the columns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import cases as case_defs  # noqa: E402

RESULTS_DIR = HERE / "results"
WORKERS = HERE / "workers"
PY = sys.executable

ALL_FITTERS = ["glmmlab", "glmmlab-cli", "lme4", "glmmTMB", "statsmodels"]
R_FITTERS = ("lme4", "glmmTMB")
GENERAL_KINDS = ("formula", "models")  # cases given as an lme4 formula

# Peers left out of the default run where they would take far longer than the time limit (measured on the 2-core
# machine: PoissonBayesMixedGLM.fit_vb took 343 s with L-BFGS-B and did not finish in 900 s with its default BFGS
# on 100,000 rows / 2,000 groups; 1M rows / 10,000 groups is ten times the rows and five times the parameters).
# --all-peers runs them anyway, each still under --timeout.
HEAVY_SKIPS = {
    "sim_binomial_logit_1m": {
        "statsmodels": "skipped: BinomialBayesMixedGLM.fit_vb optimises 2 x 10,012 variational parameters over "
        "1M rows; on 100k rows / 2,000 groups it already took ~340 s (--all-peers to try, with L-BFGS-B)",
    },
    # glmer took 30-105 s and glmmTMB 29-57 s on the 200k-row slope case; five times the rows and groups would
    # be several minutes each (and close to the time limit)
    "sim_binomial_slope_1m": {
        "lme4": "skipped: heavy (glmer took 30-105 s on the 200k-row case; 5x the rows and groups here); "
        "--all-peers to run it",
        "glmmTMB": "skipped: heavy (glmmTMB took 29-57 s on the 200k-row case; 5x the rows and groups here); "
        "--all-peers to run it",
    },
    "elp_crossed": {
        "lme4": "skipped: glmer on 2.7M rows and 81,776 crossed levels would take hours; it runs on "
        "elp_crossed_sub10, a 10 % subsample of the same rows",
        "glmmTMB": "skipped: heavy (2.7M rows, 81,776 crossed levels); --all-peers to run it",
    },
}
STATSMODELS_NA = ("statsmodels: no comparable fitter for this general model (MixedLM: Gaussian, one grouping "
                  "factor; its Bayes GLMMs: variance components without correlated slopes, no likelihood)")


# ---------------------------------------------------------------------------------------------------------------
# running one worker


def run_child(cmd: list[str], timeout: float, stdout_path: Path, stderr_path: Path, env=None) -> dict:
    """Run cmd in its own process group with a time limit; return exit code, wall time and the child's ru_maxrss."""
    t0 = time.perf_counter()
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + timeout
        timed_out = False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        except BaseException:
            # Ctrl-C or SIGTERM: the worker runs in its own session, so it would not hear of it and keep running
            _kill_group(proc.pid)
            os.wait4(proc.pid, 0)
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "wall_seconds": time.perf_counter() - t0,
        "child_maxrss_kb": int(usage.ru_maxrss),
    }


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def worker_spec(case, fitter: str) -> dict:
    spec = {
        "fitter": fitter,
        "data": str(case.path),
        "response": case.response,
        "group": case.group,
        "fixed": list(case.fixed),
        "family": case.family,
        "link": case.link,
        "nagq": 1,
    }
    if case.formula:
        spec.update(formula=case.formula, weights=case.weights, offset=case.offset, levels=case.levels)
    elif fitter == "statsmodels" and case.n_groups and case.n_groups > 1_000:
        # fit_vb's default dense BFGS over 2 x (p + 1 + groups) parameters: a (4,000 x 4,000) inverse Hessian at
        # 2,000 groups, and it did not finish in 900 s on sim_poisson_log_big; L-BFGS-B finishes
        spec["vb_method"] = "L-BFGS-B"
    return spec


def run_fitter(case, fitter: str, timeout: float, logdir: Path, side: GlmmlabSide | None = None) -> dict:
    """One worker process.  side: which glmmlab the API worker imports (--vs: the working tree's or REV's)."""
    label = side.label if side else fitter
    tag = f"{case.name.replace(':', '_')}.{label}"
    spec_path = logdir / f"{tag}.spec.json"
    out_path = logdir / f"{tag}.out.json"
    spec = worker_spec(case, fitter)
    if side:
        spec.update(glmmlab_src=str(side.src), revision=side.revision)
    spec_path.write_text(json.dumps(spec, indent=1))
    out_path.unlink(missing_ok=True)
    if fitter == "glmmlab-cli":
        return run_cli(case, timeout, logdir, tag)
    if fitter in R_FITTERS:
        cmd = ["Rscript", str(WORKERS / "fit_r.R"), str(spec_path), str(out_path)]
    else:
        cmd = [PY, str(WORKERS / "fit_python.py"), str(spec_path), str(out_path)]
    run = run_child(cmd, timeout, logdir / f"{tag}.stdout", logdir / f"{tag}.stderr",
                    env=side.env() if side else None)
    if run["timed_out"]:
        rec = {"fitter": label, "status": "timeout", "timeout_seconds": timeout,
               "error": f"no result within {timeout:.0f} s (killed)"}
    elif out_path.exists():
        rec = json.loads(out_path.read_text())
        rec["fitter"] = label
    else:
        tail = (logdir / f"{tag}.stderr").read_text(errors="replace")[-1500:]
        rec = {"fitter": label, "status": "error", "error": f"worker exited {run['returncode']}: {tail.strip()}"}
    if side and side.revision:
        rec["revision"] = side.revision
    rec["process"] = run
    return rec


def run_interleaved(runners: dict, repeat: int) -> dict:
    """Run each of runners (name -> function returning a worker record) `repeat` times, in turn: a, b, a, b, ...
    so that whatever else the machine does hits them alike.  Per name: fit_seconds is the median of its runs, the
    other fields are the first run's; a name whose run fails is not run again (the record says so)."""
    first: dict = {}
    times: dict = {name: [] for name in runners}
    cpus: dict = {name: [] for name in runners}
    peaks: dict = {name: [] for name in runners}
    active = list(runners)
    for i in range(max(1, repeat)):
        for name in list(active):
            rec = runners[name]()
            if i == 0:
                first[name] = rec
            if rec.get("status") != "ok":
                active.remove(name)
                if i > 0:
                    first[name]["later_run_failed"] = {"run": i + 1, "status": rec.get("status"),
                                                       "error": rec.get("error")}
                continue
            times[name].append(rec["fit_seconds"])
            cpus[name].append(rec.get("cpu_seconds"))
            peaks[name].append(rec.get("peak_fit_kb"))
    for name, rec in first.items():
        if len(times[name]) > 1:
            rec["fit_seconds_runs"] = times[name]
            rec["fit_seconds"] = statistics.median(times[name])
            if all(c is not None for c in cpus[name]):
                rec["cpu_seconds_runs"] = cpus[name]
                rec["cpu_seconds"] = statistics.median(cpus[name])
            rec["peak_fit_kb_runs"] = peaks[name]
    return first


def run_repeated(case, fitter: str, args, logdir: Path) -> dict:
    """--repeat N: N fresh worker processes; fit_seconds is their median, the other fields are the first run's."""
    repeat = args.repeat if fitter in ("glmmlab", "glmmlab-cli") or args.peer_repeat is None else args.peer_repeat
    return run_interleaved({fitter: partial(run_fitter, case, fitter, args.timeout, logdir)}, repeat)[fitter]


# ---------------------------------------------------------------------------------------------------------------
# --vs REV: glmmlab at an earlier revision beside the working tree's


class GlmmlabSide:
    """Which glmmlab an API worker imports: the working tree's (revision None) or REV's, from a src folder."""

    def __init__(self, label: str, src: Path, revision: str | None = None):
        self.label, self.src, self.revision = label, src, revision

    def env(self) -> dict:
        """The environment with self.src first on PYTHONPATH and no other folder that holds a glmmlab package
        (the editable install's .pth entry comes after PYTHONPATH; the worker checks glmmlab.__file__ as well)."""
        env = dict(os.environ)
        rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                if p and not (Path(p) / "glmmlab" / "__init__.py").exists()]
        env["PYTHONPATH"] = os.pathsep.join([str(self.src), *rest])
        return env


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=check)


def resolve_revision(rev: str) -> tuple[str, str]:
    """(full sha, short sha) of rev; ValueError when git does not know it."""
    try:
        full = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").stdout.strip()
        short = _git("rev-parse", "--short", full).stdout.strip()
    except OSError as exc:
        raise ValueError(f"--vs {rev}: git did not run ({exc})") from None
    except subprocess.CalledProcessError:
        raise ValueError(f"--vs {rev}: not a commit of the git repository at {ROOT}") from None
    return full, short


@contextmanager
def revision_worktree(full_sha: str):
    """A detached git worktree of full_sha in a new temporary folder; removed on leaving, whatever happened
    (SIGTERM is turned into KeyboardInterrupt meanwhile so that it ends here too)."""
    path = Path(tempfile.mkdtemp(prefix=f"glmmlab-vs-{full_sha[:7]}-"))

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        _git("worktree", "add", "--detach", str(path), full_sha)
        yield path
    finally:
        # a second Ctrl-C or SIGTERM must not cut the removal short
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            remove_worktree(path)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


def remove_worktree(path: Path) -> None:
    done = _git("worktree", "remove", "--force", str(path), check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
    if done.returncode != 0:
        _git("worktree", "prune", check=False)
    if path.exists() or str(path) in _git("worktree", "list", "--porcelain", check=False).stdout:
        print(f"warning: could not remove the worktree {path}: {done.stderr.strip()}", file=sys.stderr)


def run_cli(case, timeout: float, logdir: Path, tag: str) -> dict:
    """The command line end to end: `glmmlab fit DATA ... --format json` (start-up, reading the CSV, JSON out)."""
    exe = Path(PY).parent / "glmmlab"
    if not exe.exists():
        return {"fitter": "glmmlab-cli", "status": "unavailable", "error": f"{exe} not found"}
    if case.formula:
        cmd = [str(exe), "fit", str(case.path), "--formula", case.formula, "--family", case.family,
               "--link", case.link, "--format", "json"]
        if case.weights:
            cmd[-2:-2] = ["--weights", case.weights]
        if case.offset:
            cmd[-2:-2] = ["--offset", case.offset]
    else:
        cmd = [str(exe), "fit", str(case.path), "--response", case.response, "--group", case.group,
               "--family", case.family, "--link", case.link, "--format", "json"]
        if case.fixed:
            cmd[5:5] = ["--fixed", *case.fixed]
    stdout = logdir / f"{tag}.stdout"
    run = run_child(cmd, timeout, stdout, logdir / f"{tag}.stderr")
    rec: dict = {"fitter": "glmmlab-cli", "process": run, "command": " ".join(cmd)}
    if case.levels:  # the command line reads the CSV: its factors get sorted levels, not R's order
        rec["coding"] = "sorted levels"
    if run["timed_out"]:
        rec.update(status="timeout", timeout_seconds=timeout, error=f"no result within {timeout:.0f} s (killed)")
        return rec
    if run["returncode"] != 0:
        err = (logdir / f"{tag}.stderr").read_text(errors="replace").strip()
        rec.update(status="error", error=f"exit {run['returncode']}: {err[-1500:]}")
        return rec
    try:
        doc = json.loads(stdout.read_text())
    except ValueError as exc:
        rec.update(status="error", error=f"stdout is not one JSON document: {exc}")
        return rec
    fe = {r["variable"]: r.get("estimate") for r in doc.get("fixed_effects", [])}
    rec.update(
        status="ok",
        fit_seconds=(doc.get("timing") or {}).get("fit_seconds"),
        log_likelihood=(doc.get("fit") or {}).get("log_likelihood"),
        log_likelihood_kind=(doc.get("fit") or {}).get("log_likelihood_kind"),
        fixef=fe,
        converged=doc.get("converged"),
        warnings=doc.get("warnings") or [],
        peak_total_kb=run["child_maxrss_kb"],
        json_bytes=stdout.stat().st_size,
    )
    stdout.unlink(missing_ok=True)  # can be large (per-row diagnostics)
    return rec


# ---------------------------------------------------------------------------------------------------------------
# comparing


def agreement(rec: dict, ref: dict | None) -> dict:
    """Log-likelihood difference (rec - peer, positive = higher) and fixed-effect differences against the peer
    (lme4 or glmmTMB): max |beta - beta_peer| and max |beta - beta_peer| / SE_peer."""
    if not ref or rec.get("status") != "ok" or ref.get("status") != "ok":
        return {}
    out: dict = {}
    ll, ll_ref = rec.get("log_likelihood"), ref.get("log_likelihood")
    if ll is not None and ll_ref is not None:
        out["dloglik"] = ll - ll_ref
    if rec.get("coding") or ref.get("coding"):
        # another parameterisation of the same model (e.g. the CLI's sorted factor levels): only the
        # log-likelihood is comparable
        out["fixef_not_compared"] = f"{rec.get('coding') or ref.get('coding')}: another parameterisation"
        return out
    fe, fe_ref, se_ref = rec.get("fixef") or {}, ref.get("fixef") or {}, ref.get("se") or {}
    common = [k for k in fe_ref if fe.get(k) is not None and fe_ref.get(k) is not None]
    if common:
        diffs = {k: abs(fe[k] - fe_ref[k]) for k in common}
        worst = max(diffs, key=diffs.get)
        out["max_abs_dfixef"] = diffs[worst]
        out["max_abs_dfixef_term"] = worst
        scaled = [diffs[k] / se_ref[k] for k in common if se_ref.get(k)]
        if scaled:
            out["max_dfixef_over_se"] = max(scaled)
        missing = sorted(set(fe_ref) - set(common))
        if missing:
            out["terms_missing"] = missing
    return out


def vs_compare(now: dict, before: dict) -> dict:
    """now/before fit time, both peaks and |logLik difference| (only what both records have)."""
    out: dict = {"now_status": now.get("status"), "before_status": before.get("status")}
    if now.get("status") == "ok" and before.get("status") == "ok":
        if now.get("fit_seconds") and before.get("fit_seconds"):
            out["now_over_before"] = now["fit_seconds"] / before["fit_seconds"]
        if now.get("log_likelihood") is not None and before.get("log_likelihood") is not None:
            out["abs_dloglik"] = abs(now["log_likelihood"] - before["log_likelihood"])
    return out


def stored_lme4(case) -> dict | None:
    """lme4's fit from the reference JSON, shaped like a worker record."""
    fit = case.stored_lme4
    if not fit:
        return None
    return {
        "fitter": "lme4 (stored)",
        "status": "ok",
        "log_likelihood": fit.get("logLik"),
        "fixef": fit.get("fixef"),
        "se": fit.get("se"),
        "var_group": fit.get("var_group"),
        "fit_seconds": fit.get("seconds"),
    }


# ---------------------------------------------------------------------------------------------------------------
# printing


def _mb(kb) -> str:
    return "-" if kb is None else f"{kb / 1024:.0f}"


def _sec(s) -> str:
    if s is None:
        return "-"
    return f"{s:.3f}" if s < 100 else f"{s:.1f}"


def _ll(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ratio(t, t_ref) -> str:
    if not t or not t_ref:
        return "-"
    r = t / t_ref
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def _agr_cells(agr: dict) -> tuple[str, str]:
    dll = f"{agr['dloglik']:+.4g}" if "dloglik" in agr else "-"
    if "max_abs_dfixef" in agr:
        db = f"{agr['max_abs_dfixef']:.2g}"
        if "max_dfixef_over_se" in agr:
            db += f" ({agr['max_dfixef_over_se']:.2g})"
    elif "fixef_not_compared" in agr:
        db = "n/c (coding)"
    else:
        db = "-"
    return dll, db


def format_case(entry: dict) -> str:
    c = entry["case"]
    general = bool(c.get("formula"))
    if general:
        groups = ", ".join(f"{k} {v:,}" for k, v in (c.get("groups") or {}).items())
        extra = "".join(f", {k}={c[k]}" for k in ("weights", "offset") if c.get(k))
        head_line = (f"== {c['name']}: {c['formula']}  [{c['family']}/{c['link']}{extra}], n={c['n']:,}, "
                     f"levels: {groups}, data {c['data_bytes'] / 2**20:.1f} MB")
    else:
        head_line = (f"== {c['name']}: {c['family']}/{c['link']}, n={c['n']:,}, groups={c['n_groups']:,}, "
                     f"fixed effects={len(c['fixed']) + 1}, numeric data {c['data_bytes'] / 2**20:.1f} MB")
    lines = [head_line]
    lines += [f"   ({n})" for n in c["notes"]]
    w = max([14, *(len(name) + 2 for name in entry["fitters"])])  # glmmlab@<sha> can be longer than 14
    head = (f"   {'fitter':<{w}}{'status':<10}{'fit s':>9}{'peak MB':>9}{'net MB':>8}  {'log-likelihood':>16}  "
            f"{'time vs glmmlab':<26}{'dLL vs lme4':>12}  {'max|dβ| vs lme4 (/SE)':<24}")
    if general:
        head += f"{'dLL vs TMB':>12}  {'max|dβ| vs TMB (/SE)':<22}"
    lines.append(head)
    g = entry["fitters"].get("glmmlab", {})
    t_g = g.get("fit_seconds") if g.get("status") == "ok" else None
    ref_name = entry.get("agreement_reference")
    for name, rec in entry["fitters"].items():
        status = rec.get("status", "?")
        ok = status == "ok"
        t = rec.get("fit_seconds") if ok else None
        if name == "glmmlab-cli":
            peak = rec.get("peak_total_kb")
            net = None
        else:
            peak = rec.get("peak_fit_kb")
            net = (peak - rec["rss_baseline_kb"]) if (peak and rec.get("rss_baseline_kb")) else None
        if ok and rec.get("log_likelihood") is None and "variational" in str(rec.get("log_likelihood_kind")):
            ll = "n/a (VB)"
        else:
            ll = _ll(rec.get("log_likelihood")) if ok else "-"
        if name.startswith("glmmlab@"):  # --vs: the earlier revision; the ratio is now over before
            vs = f"now/before = {t_g / t:.2f}x" if (ok and t and t_g) else "-"
        elif name in ("glmmlab", "glmmlab-cli") or not ok or not t_g:
            vs = "" if name == "glmmlab" else "-"
            if name == "glmmlab-cli" and ok and t_g and t:
                vs = f"engine {t:.3f}s / api {t_g:.3f}s"
            if status == "timeout" and t_g and rec.get("timeout_seconds"):
                vs = f"{name}/glmmlab > {_ratio(rec['timeout_seconds'], t_g)}"
        else:
            vs = f"{name}/glmmlab = {_ratio(t, t_g)}"
        dll, db = _agr_cells(entry["agreement"].get(name, {})) if name != "lme4" else ("", "")
        row = (f"   {name:<{w}}{status:<10}{_sec(t):>9}{_mb(peak):>9}{_mb(net):>8}  {ll:>16}  "
               f"{vs:<26}{dll:>12}  {db:<24}")
        if general:
            tdll, tdb = (_agr_cells(entry.get("agreement_tmb", {}).get(name, {}))
                         if name != "glmmTMB" else ("", ""))
            row += f"{tdll:>12}  {tdb:<22}"
        lines.append(row.rstrip())
        for note in row_notes(name, rec, entry):
            lines.append(f"   {'':<{w}}note: {note}")
    if ref_name and ref_name != "lme4":
        lines.append(f"   agreement is against {ref_name} (lme4 was not run live here)")
    return "\n".join(lines)


def row_notes(name: str, rec: dict, entry: dict) -> list[str]:
    notes = []
    status = rec.get("status")
    if status in ("error", "timeout", "unavailable", "n/a", "skipped"):
        notes.append(_one_line(rec.get("error") or rec.get("reason") or ""))
    if status == "ok":
        if rec.get("converged") is False:
            notes.append("reports NOT converged")
        for w in (rec.get("warnings") or [])[:3]:
            notes.append("warning: " + str(w)[:200])
        if name == "statsmodels" and "fit_vb" in str(rec.get("method")):
            notes.append(f"{rec['method']}: variational Bayes posterior means (priors fe_p=2, vcp_p=1), "
                         "no comparable likelihood")
        if len(rec.get("fit_seconds_runs") or []) > 1:
            runs = ", ".join(f"{t:.3f}" for t in rec["fit_seconds_runs"])
            notes.append(f"fit s is the median of {len(rec['fit_seconds_runs'])} runs: {runs}")
        if rec.get("cpu_seconds") is not None:
            notes.append(f"CPU s = {rec['cpu_seconds']:.3f}")
        if (name == "glmmlab" or name.startswith("glmmlab@")) and rec.get("engine_fit_seconds") is not None:
            first = " (first run)" if len(rec.get("fit_seconds_runs") or []) > 1 else ""
            notes.append(f"engine's own timing.fit_seconds{first} = {rec['engine_fit_seconds']:.3f}")
        if name.startswith("glmmlab@"):
            cmp = entry.get("vs") or {}
            if "abs_dloglik" in cmp:
                notes.append(f"|log-likelihood now - before| = {cmp['abs_dloglik']:.3g}")
        if rec.get("coding"):
            notes.append(f"reads the CSV, so its factors have {rec['coding']} (not R's order): other coefficient "
                         "names, the log-likelihood alone is compared")
        if name == "glmmTMB" and rec.get("method"):
            notes.append(f"{rec['method']} (glmmTMB's default controls, one thread)")
        if name == "glmmlab-cli":
            pr = rec.get("process", {})
            notes.append(f"whole command {pr.get('wall_seconds', 0):.2f}s wall (start-up, CSV, fit, "
                         f"{rec.get('json_bytes', 0) / 2**20:.1f} MB JSON); peak MB is the whole process")
        if rec.get("hwm_reset") is False:
            notes.append("could not reset the memory high-water mark: peak includes reading the data")
    return [n for n in notes if n]


def _one_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of a message (a traceback's last line is the exception), shortened."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    head = lines[0].split(":")[0] + ": " if len(lines) > 1 and lines[0].startswith(("exit", "worker exited")) else ""
    return (head + lines[-1])[:limit]


def format_reference(entries: list[dict], kind: str = "reference") -> str:
    """The small reference cases, one line each (the per-fitter details are in the JSON)."""
    rows = [e for e in entries if e["case"]["kind"] == kind]
    title = ("== reference cases (../shared/reference; small data, fixed costs dominate)" if kind == "reference"
             else "== general reference cases (../shared/reference/models; glmmlab.glmm(formula); small data)")
    lines = [title,
             f"   {'case':<30}{'family/link':<19}{'n':>6}{'groups':>7}{'glmmlab s':>11}{'lme4 s':>9}"
             f"{'lme4/glmmlab':>13}{'statsmodels s':>15}  {'glmmlab logLik':>15}{'dLL vs lme4':>12}"
             f"  {'max|dβ| (/SE)':<18}{'agreement vs':<14}"]
    for e in rows:
        c, f = e["case"], e["fitters"]
        g, r, sm = f.get("glmmlab", {}), f.get("lme4", {}), f.get("statsmodels", {})
        tg = g.get("fit_seconds") if g.get("status") == "ok" else None
        tr = r.get("fit_seconds") if r.get("status") == "ok" else None
        if sm.get("status") == "ok":
            tsm = _sec(sm.get("fit_seconds"))
        else:
            tsm = sm.get("status", "-") if sm else "-"
        agr = e["agreement"].get("glmmlab", {})
        dll = f"{agr['dloglik']:+.3g}" if "dloglik" in agr else "-"
        db = "-"
        if "max_abs_dfixef" in agr:
            db = f"{agr['max_abs_dfixef']:.2g}" + (f" ({agr['max_dfixef_over_se']:.2g})"
                                                   if "max_dfixef_over_se" in agr else "")
        against = ("live lme4" if e.get("agreement_reference") == "lme4"
                   else "stored " + str(e.get("agreement_reference") or "-").split(" ")[0])
        gstat = _sec(tg) if tg is not None else g.get("status", "-")
        lines.append(f"   {c['name'].split(':', 1)[1]:<30}{c['family'] + '/' + c['link']:<19}{c['n']:>6}"
                     f"{c['n_groups']:>7}{gstat:>11}{_sec(tr):>9}{_ratio(tr, tg):>13}{tsm:>15}  "
                     f"{_ll(g.get('log_likelihood')):>15}{dll:>12}  {db:<18}{against:<14}")
        if kind == "models":
            lines.append(f"   {'':<30}{c['formula']}" + "".join(f"  {k}={c[k]}" for k in ("weights", "offset")
                                                             if c.get(k)))
        for note in row_notes("glmmlab", g, e):
            if not note.startswith("engine's own"):
                lines.append(f"   {'':<30}glmmlab: {note}")
        if sm.get("status") == "ok" and sm.get("converged") is False:
            lines.append(f"   {'':<30}statsmodels: reports NOT converged")
    return "\n".join(lines)


def format_memory(entries: list[dict]) -> str:
    lines = ["== glmmlab memory (API worker; MB = 2^20 bytes)",
             f"   {'case':<30}{'data MB':>9}{'baseline':>10}{'loaded':>9}{'peak':>9}{'net':>9}"
             f"{'peak/data':>11}{'net/data':>10}{'fit extra/data':>16}"]
    for e in entries:
        rec = e["fitters"].get("glmmlab", {})
        c = e["case"]
        if rec.get("status") != "ok" or not c["data_bytes"] or c["kind"] in ("reference", "models"):
            continue
        data_kb = c["data_bytes"] / 1024
        base, load, peak = rec.get("rss_baseline_kb"), rec.get("rss_after_load_kb"), rec.get("peak_fit_kb")
        if not (base and load and peak):
            continue
        lines.append(f"   {c['name']:<30}{data_kb / 1024:>9.1f}{base / 1024:>10.0f}{load / 1024:>9.0f}"
                     f"{peak / 1024:>9.0f}{(peak - base) / 1024:>9.0f}{peak / data_kb:>11.1f}"
                     f"{(peak - base) / data_kb:>10.2f}{(peak - load) / data_kb:>16.2f}")
    lines.append("   baseline = RSS after imports; loaded = after reading the CSV into pandas; peak = high-water mark "
                 "during the fit; net = peak - baseline (includes the DataFrame); fit extra = peak - loaded")
    return "\n".join(lines)


def format_vs(entries: list[dict], vs: dict) -> str:
    """--vs: per case, the working tree's glmmlab against REV's (runs alternated), then the short summary."""
    label = vs["label"]
    lines = [f"== glmmlab now (working tree) vs {label} ({vs['rev']} = {vs['sha']}); runs alternated, "
             f"fit s the median of each",
             f"   {'case':<34}{'now s':>12}{'before s':>13}{'now/before':>12}{'peak MB now':>13}{'before':>8}"
             f"{'|dLL|':>10}  runs"]
    files = {}
    for e in entries:
        for side in ("glmmlab", label):
            f = e["fitters"].get(side, {}).get("glmmlab_file")
            if f and side not in files:
                files[side] = f
    lines.insert(1, f"   imported (and checked by each worker): now {files.get('glmmlab', '-')}, "
                    f"before {files.get(label, '-')}")
    summary = []
    for e in entries:
        cmp = e.get("vs")
        if cmp is None:
            continue
        name = e["case"]["name"]
        now, before = e["fitters"].get("glmmlab", {}), e["fitters"].get(label, {})
        ok_n, ok_b = now.get("status") == "ok", before.get("status") == "ok"
        ratio = cmp.get("now_over_before")
        mark = "  SLOWER" if ratio is not None and ratio > SLOWER_THAN else ""
        rtxt = f"{ratio:.2f}x" if ratio is not None else "-"
        dll = f"{cmp['abs_dloglik']:.2g}" if "abs_dloglik" in cmp else "-"
        t_now = _sec(now.get("fit_seconds")) if ok_n else now.get("status", "-")
        t_before = _sec(before.get("fit_seconds")) if ok_b else before.get("status", "-")
        p_now = _mb(now.get("peak_fit_kb")) if ok_n else "-"
        p_before = _mb(before.get("peak_fit_kb")) if ok_b else "-"
        runs = f"{_nruns(now)}/{_nruns(before)}"
        lines.append(f"   {name:<34}{t_now:>12}{t_before:>13}{rtxt:>12}{p_now:>13}{p_before:>8}{dll:>10}  {runs}{mark}")
        for side, rec in (("now", now), (label, before)):
            if rec.get("status") not in ("ok", None):
                lines.append(f"   {'':<34}{side}: {_one_line(rec.get('error') or rec.get('reason') or '')}")
        if ratio is not None:
            summary.append(f"{name} {ratio:.2f}x{' <- slower by more than 10 %' if mark else ''}")
        else:
            why = before.get("error") if not ok_b else now.get("error")
            summary.append(f"{name} -" + (f" ({_one_line(why or '', 120)})" if why else ""))
    lines.append("   now/before = the working tree's median fit time over the earlier revision's (> 1 = slower now); "
                 "peak MB = the first run's high-water mark during the fit; |dLL| = |log-likelihood now - before|")
    lines.append("")
    lines.append(f"== summary: now/before per case (glmmlab vs {label}; SLOWER = ratio above {SLOWER_THAN:.2f})")
    lines += [f"   {line}" for line in summary]
    return "\n".join(lines)


SLOWER_THAN = 1.10  # --vs summary: marked when now/before is above this


def _nruns(rec: dict) -> int:
    """How many runs a record's fit time is the median of (0 when it has no fit)."""
    return len(rec.get("fit_seconds_runs") or [1]) if rec.get("status") == "ok" else 0

TARGETS = [
    # (case, kind, threshold, text); speedups are lme4's fit time over glmmlab's, measured in the same run
    ("sim_poisson_log_big", "speedup", 50.0, ">= 50x faster than lme4 glmer"),
    ("verbagg_binary", "speedup", 50.0, ">= 50x faster than lme4 glmer"),
    ("sim_binomial_logit_1m", "seconds", 5.0, "fit < 5 s"),
    ("sim_gaussian_1m", "seconds", 1.0, "fit < 1 s"),
    # issue 8 (general random effects)
    ("sim_binomial_slope_200k", "speedup", 30.0, ">= 30x faster than glmer"),
    ("insteval_crossed", "speedup", 10.0, ">= 10x faster than lmer"),
    ("verbagg_crossed", "speedup", 20.0, ">= 20x faster than glmer"),
    ("sim_binomial_slope_1m", "seconds", 10.0, "fit < 10 s"),
    ("sim_binomial_logit_1m", "seconds", 2.3, "no slower than 2.3 s (issue 8)"),
    ("sim_poisson_log_big", "seconds", 0.14, "no slower than 0.14 s (issue 8)"),
    # big crossed models in memory
    ("elp_crossed", "seconds", 60.0, "fit < 60 s (2.7M rows)"),
    ("elp_crossed_sub10", "speedup", 30.0, ">= 30x faster than glmer"),
    ("movielens_crossed", "seconds", 10.0, "fit < 10 s (1M rows)"),
    # issue 22 (the random intercept at a million rows)
    ("sim_binomial_logit_1m", "seconds", 1.0, "fit < 1 s (issue 22)"),
    ("sim_gaussian_1m", "seconds", 0.3, "fit < 0.3 s (issue 22)"),
]


def format_targets(entries: list[dict]) -> str:
    by_name = {e["case"]["name"]: e for e in entries}
    lines = ["== targets from the engine issue and issues 8 and 22 (measured, not asserted)"]
    for name, kind, thr, text in TARGETS:
        e = by_name.get(name)
        if not e:
            continue
        g = e["fitters"].get("glmmlab", {})
        if g.get("status") != "ok":
            lines.append(f"   {name:<24}{text:<32}glmmlab: {g.get('status', 'not run')}")
            continue
        if kind == "seconds":
            val = g["fit_seconds"]
            lines.append(f"   {name:<24}{text:<32}{val:.3f} s  -> {'met' if val <= thr else 'NOT met'}")
        else:
            r = e["fitters"].get("lme4", {})
            if r.get("status") != "ok":
                lines.append(f"   {name:<24}{text:<32}lme4: {r.get('status', 'not run')}")
                continue
            sp = r["fit_seconds"] / g["fit_seconds"]
            tmb = e["fitters"].get("glmmTMB", {})
            also = (f"; glmmTMB/glmmlab {tmb['fit_seconds'] / g['fit_seconds']:.1f}x" if tmb.get("status") == "ok"
                    else "")
            if r.get("cpu_seconds") and g.get("cpu_seconds"):
                also += (f"; CPU {r['cpu_seconds'] / g['cpu_seconds']:.1f}x"
                         f" ({r['cpu_seconds']:.2f} s / {g['cpu_seconds']:.3f} s)")
            lines.append(f"   {name:<24}{text:<32}{sp:.1f}x ({r['fit_seconds']:.2f} s / {g['fit_seconds']:.3f} s)"
                         f"  -> {'met' if sp >= thr else 'NOT met'}{also}")
    # Two readings of "peak memory below three times the numeric data", both reported: the net peak
    # (includes the DataFrame the caller already holds, whose string group column alone can exceed the
    # numeric data) and what the fit itself adds on top of the loaded data.
    worst = {"net": None, "extra": None}
    for e in entries:
        g = e["fitters"].get("glmmlab", {})
        # small data sets measure the fixed overhead (threads, buffers), not the scaling with n
        if e["case"]["kind"] in ("reference", "models") or g.get("status") != "ok" \
                or e["case"]["data_bytes"] < 10 * 2**20:
            continue
        base, load, peak = g.get("rss_baseline_kb"), g.get("rss_after_load_kb"), g.get("peak_fit_kb")
        if not (base and load and peak):
            continue
        for key, used in (("net", peak - base), ("extra", peak - load)):
            r = used * 1024 / e["case"]["data_bytes"]
            if worst[key] is None or r > worst[key][1]:
                worst[key] = (e["case"]["name"], r)
    for key, text in (("net", "net peak < 3x numeric data"), ("extra", "fit's own extra < 3x data")):
        if worst[key]:
            name, r = worst[key]
            lines.append(f"   {'memory (>= 10 MB data)':<24}{text:<32}worst {r:.2f}x ({name})"
                         f"  -> {'met' if r < 3 else 'NOT met'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------


def environment(r_msg: str) -> dict:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "r": r_msg,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            env["cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        pass
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip()
        # the fit measured is the working tree's: say whether it differs from that commit
        env["src_uncommitted_changes"] = bool(subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    except OSError:
        pass
    for mod in ("numpy", "scipy", "pandas", "statsmodels"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            env[mod] = None
    return env


def select(cases: list, only: str | None) -> list:
    if not only:
        return cases
    out = []
    for want in [w.strip() for w in only.split(",") if w.strip()]:
        exact = [c for c in cases if c.name == want]
        hits = exact or [c for c in cases if want in c.name]
        out += [c for c in hits if c not in out]
    return out


def run_cases(cases: list, fitters: list[str], args, logdir: Path, use_r: bool, r_msg: str,
              sides: dict | None = None) -> list[dict]:
    """Every fitter on every case.  sides (--vs): label -> GlmmlabSide, the working tree's glmmlab first; they
    replace the single glmmlab row and run alternately."""
    entries: list[dict] = []
    for case in cases:
        t_gen = time.perf_counter()
        if case.build:
            case.build()
        gen_s = time.perf_counter() - t_gen
        entry: dict = {"case": case.describe(), "data_seconds": gen_s, "fitters": {}, "agreement": {}}
        general = case.kind in GENERAL_KINDS
        for fitter in fitters:
            if fitter == "glmmTMB" and not general:
                continue  # glmmTMB is a peer of the general (formula) cases
            if fitter in R_FITTERS and not use_r:
                if not args.no_r and not (case.kind == "models" and not args.all_peers):
                    entry["fitters"][fitter] = {"fitter": fitter, "status": "skipped", "reason": r_msg}
                continue
            if fitter == "glmmlab-cli" and case.kind in ("reference", "models"):
                continue  # the API row covers these small cases
            if case.kind == "models" and fitter != "glmmlab" and not args.all_peers:
                continue  # glmmlab only by default; agreement against the stored lme4 fit
            if args.quick and case.kind == "models" and fitter != "glmmlab":
                continue
            if args.quick and case.kind == "reference" and fitter != "glmmlab":
                continue  # keeps the smoke run short; the full run has the peers on these cases
            # the quick run mirrors the full run's skips (and stays short)
            reason = None if args.all_peers else HEAVY_SKIPS.get(case.name.removesuffix("_quick"), {}).get(fitter)
            reason = reason or case.skip.get(fitter)  # a model the fitter cannot fit (lme4: no covariance structures)
            if reason:
                entry["fitters"][fitter] = {"fitter": fitter, "status": "skipped", "reason": reason}
                continue
            if fitter == "statsmodels" and general and not (case.family == "gaussian" and case.link == "identity"):
                # no process needed to say so (fit_python.py says the same for the Gaussian models it cannot fit)
                entry["fitters"][fitter] = {"fitter": fitter, "status": "n/a", "error": STATSMODELS_NA}
                continue
            if fitter == "glmmlab" and sides:
                # --vs: the working tree's glmmlab and REV's, alternately (now, before, now, before, ...)
                print(f"   running {case.name} / {' and '.join(sides)} alternately ...", end="", flush=True)
                recs = run_interleaved({label: partial(run_fitter, case, "glmmlab", args.timeout, logdir, side)
                                        for label, side in sides.items()}, args.repeat)
                entry["fitters"].update(recs)
                entry["vs"] = vs_compare(*recs.values())
                print("".join(f"  {label}: {_progress(rec)}" for label, rec in recs.items()), flush=True)
                continue
            print(f"   running {case.name} / {fitter} ...", end="", flush=True)
            rec = run_repeated(case, fitter, args, logdir)
            entry["fitters"][fitter] = rec
            print(f" {_progress(rec)}", flush=True)
        ref = entry["fitters"].get("lme4")
        if ref and ref.get("status") == "ok":
            entry["agreement_reference"] = "lme4"
        else:
            ref = stored_lme4(case)
            engine = (case.stored_lme4 or {}).get("engine", "lme4")
            entry["agreement_reference"] = f"{engine} (stored reference JSON)" if ref else None
        for name, rec in entry["fitters"].items():
            if name != "lme4":
                entry["agreement"][name] = agreement(rec, ref)
        tmb = entry["fitters"].get("glmmTMB")
        if general and tmb and tmb.get("status") == "ok":
            entry["agreement_tmb"] = {name: agreement(rec, tmb) for name, rec in entry["fitters"].items()
                                      if name != "glmmTMB"}
        entries.append(entry)

    return entries


def _progress(rec: dict) -> str:
    runs = rec.get("fit_seconds_runs") or []
    return (f"{rec.get('status')}" + (f" {rec['fit_seconds']:.3f}s" if rec.get("fit_seconds") else "")
            + (f" (median of {len(runs)})" if len(runs) > 1 else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shrink the simulated cases to 2,000 rows (smoke run)")
    ap.add_argument("--only", help="comma-separated case names (exact, else substring: 'ref' = reference cases)")
    ap.add_argument("--no-r", action="store_true", help="do not run R/lme4 (agreement uses stored lme4 fits)")
    ap.add_argument("--fitters", default=",".join(ALL_FITTERS), help=f"subset of {','.join(ALL_FITTERS)}")
    ap.add_argument("--no-cli", action="store_true", help="leave out the glmmlab command-line row")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per fitter per case (default 600)")
    ap.add_argument("--all-peers", action="store_true", help="also run the peers skipped on the 1M-row cases")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every fitter N times (fresh processes) and report the median fit time")
    ap.add_argument("--peer-repeat", type=int, default=None,
                    help="runs per peer (lme4, glmmTMB, statsmodels); default: as --repeat")
    ap.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    ap.add_argument("--vs", metavar="REV",
                    help="also time glmmlab at git revision REV (a temporary worktree), alternating its runs with "
                         "the working tree's, and report now/before per case")
    args = ap.parse_args(argv)

    fitters = [f.strip() for f in args.fitters.split(",") if f.strip()]
    unknown = set(fitters) - set(ALL_FITTERS)
    if unknown:
        ap.error(f"unknown fitter(s) {sorted(unknown)}; choose from {ALL_FITTERS}")
    if args.no_cli and "glmmlab-cli" in fitters:
        fitters.remove("glmmlab-cli")
    if args.vs and "glmmlab" not in fitters:
        ap.error("--vs compares glmmlab's API rows: --fitters must include glmmlab")
    if args.vs:
        try:
            resolve_revision(args.vs)
        except ValueError as exc:
            ap.error(str(exc))

    t_start = time.perf_counter()
    if args.no_r:
        r_ok, r_msg = False, "not used (--no-r)"
    else:
        r_ok, r_msg = case_defs.r_status()
    use_r = r_ok  # lme4 and glmmTMB run through Rscript (a missing package: the worker says unavailable)

    cases = select(case_defs.all_cases(args.quick, use_r=not args.no_r, r_ok=r_ok), args.only)
    if not cases:
        print(f"no case matches --only {args.only!r}", file=sys.stderr)
        return 2
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    logdir = RESULTS_DIR / "logs"
    logdir.mkdir(parents=True, exist_ok=True)

    env = environment(r_msg)
    print(f"glmmlab benchmarks{' (--quick)' if args.quick else ''}: {len(cases)} case(s), fitters {fitters}, "
          f"time limit {args.timeout:.0f} s each")
    print(f"machine: {env.get('cpu')}, {env['cpu_count']} cores, load average {env['loadavg_start'][0]:.2f}; "
          f"python {env['python']}, numpy {env['numpy']}, statsmodels {env['statsmodels']}; R: {r_msg}")
    sys.stdout.flush()

    vs: dict | None = None
    try:
        if args.vs:
            full, short = resolve_revision(args.vs)
            label = f"glmmlab@{short}"
            vs = {"rev": args.vs, "sha": full, "short": short, "label": label}
            print(f"--vs {args.vs}: checking out {full} into a temporary git worktree ...", flush=True)
            with revision_worktree(full) as tree:
                vs["worktree"] = str(tree)
                src = tree / "src"
                if not (src / "glmmlab" / "__init__.py").exists():
                    print(f"   (no src/glmmlab at {short}: its row will say not available)", flush=True)
                # bytecode for both sides now: a module imported lazily inside the first timed fit would
                # otherwise be compiled within that fit (always on REV's side, a fresh checkout)
                for folder in (src, ROOT / "src"):
                    if folder.is_dir():
                        subprocess.run([PY, "-m", "compileall", "-q", str(folder)], capture_output=True,
                                       check=False)
                sides = {"glmmlab": GlmmlabSide("glmmlab", ROOT / "src"),
                         label: GlmmlabSide(label, src, revision=short)}
                entries = run_cases(cases, fitters, args, logdir, use_r, r_msg, sides)
            vs["worktree_removed"] = not Path(vs["worktree"]).exists()
            env["vs"] = vs
        else:
            entries = run_cases(cases, fitters, args, logdir, use_r, r_msg)
    except KeyboardInterrupt:
        print("\ninterrupted" + (f"; the worktree of {args.vs} was removed" if vs and vs.get("worktree")
                                  and not Path(vs["worktree"]).exists() else ""), file=sys.stderr)
        return 130

    env["loadavg_end"] = list(os.getloadavg())
    versions = {}
    for e in entries:
        for rec in e["fitters"].values():
            versions.update(rec.get("versions") or {})
    env["fitter_versions"] = versions

    print()
    print("glmmlab benchmark results" + (" (--quick: shrunken data, figures mean nothing)" if args.quick else ""))
    print("fit s = the fit call alone, inside the worker process; peak MB = memory high-water mark during the fit; "
          "net MB = peak minus the RSS after imports")
    print()
    for e in entries:
        if e["case"]["kind"] not in ("reference", "models"):
            print(format_case(e))
            print()
    for kind in ("reference", "models"):
        if any(e["case"]["kind"] == kind for e in entries):
            print(format_reference(entries, kind))
            print()
    print(format_memory(entries))
    print()
    if args.quick:
        print("== targets: not evaluated on --quick data")
    else:
        print(format_targets(entries))
    print()
    if vs:
        print(format_vs(entries, vs))
        print()
    vtxt = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    print(f"versions: {vtxt or '-'}; load average {env['loadavg_start'][0]:.2f} -> {env['loadavg_end'][0]:.2f}")
    total = time.perf_counter() - t_start
    print(f"total run time {total:.1f} s")

    doc = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arguments": vars(args) | {"output": str(args.output)},
        "environment": env,
        "total_seconds": total,
        "cases": entries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(_clean(doc), indent=1, default=str, allow_nan=False))
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


def _clean(o):
    """NaN and infinities become null so the file is valid JSON."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


if __name__ == "__main__":
    sys.exit(main())
