"""`benchmarks/run.py --vs REV`: glmmlab at an earlier git revision beside the working tree's, in the same run.

The end-to-end test compares the working tree with HEAD on one shrunken case (a few seconds): both rows are real
fits, the earlier one imported from the temporary worktree, and the worktree is gone afterwards.  Speed is never
asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def _load_run():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interleaved_runs_alternate_and_take_the_median():
    run = _load_run()
    calls = []

    def runner(name, times):
        it = iter(times)

        def go():
            calls.append(name)
            return {"status": "ok", "fit_seconds": next(it), "peak_fit_kb": 1}

        return go

    def failing():
        calls.append("c")
        return {"status": "unavailable", "error": "not available at abc1234"}

    recs = run.run_interleaved({"a": runner("a", [3.0, 1.0, 2.0]), "b": runner("b", [5.0, 4.0, 6.0]),
                                "c": failing}, 3)
    assert calls == ["a", "b", "c", "a", "b", "a", "b"]  # a failed side is not run again
    assert recs["a"]["fit_seconds"] == 2.0 and recs["a"]["fit_seconds_runs"] == [3.0, 1.0, 2.0]
    assert recs["b"]["fit_seconds"] == 5.0
    assert recs["c"]["status"] == "unavailable"
    cmp = run.vs_compare(recs["a"], recs["b"])
    assert cmp["now_over_before"] == pytest.approx(0.4)


def test_vs_head_runs_both_rows_and_removes_the_worktree(tmp_path):
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    short = _git("rev-parse", "--short", "HEAD").stdout.strip()
    out = tmp_path / "vs.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "sim_poisson_log_big", "--fitters", "glmmlab", "--no-r",
         "--vs", "HEAD", "--timeout", "120", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    label = f"glmmlab@{short}"
    text = proc.stdout
    assert f"   {label} " in text and "   glmmlab " in text
    assert f"vs {label}" in text and "== summary: now/before per case" in text

    doc = json.loads(out.read_text())
    vs = doc["environment"]["vs"]
    assert vs["label"] == label and vs["rev"] == "HEAD"
    (entry,) = doc["cases"]
    now, before = entry["fitters"]["glmmlab"], entry["fitters"][label]
    for rec in (now, before):
        assert rec["status"] == "ok", rec.get("error")
        assert rec["fit_seconds"] > 0 and rec["peak_fit_kb"] > 0 and math.isfinite(rec["log_likelihood"])
    # each side imported its own glmmlab: the earlier one from the temporary worktree, not the working tree
    assert Path(before["glmmlab_file"]).is_relative_to(vs["worktree"])
    assert Path(now["glmmlab_file"]).resolve().is_relative_to((ROOT / "src").resolve())
    assert before["revision"] == short
    assert entry["vs"]["now_over_before"] > 0 and "abs_dloglik" in entry["vs"]

    # the worktree is gone, from the disk and from git's list
    assert vs["worktree_removed"] is True
    assert not Path(vs["worktree"]).exists()
    assert vs["worktree"] not in _git("worktree", "list", "--porcelain").stdout
