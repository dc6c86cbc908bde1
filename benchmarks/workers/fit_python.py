"""Fit one case with one Python fitter, in this process only, and write what was measured as JSON.

    python fit_python.py SPEC.json OUT.json

SPEC holds: fitter (glmmlab | statsmodels), data (CSV path), family, link, nagq, and either response, group, fixed
(a random-intercept model: ``glmmlab.fit_glmm``) or formula, weights, offset (lme4's language: ``glmmlab.glmm``);
``levels`` (column -> R's level order) turns those columns into pandas categoricals before the fit (not timed).

Measured here:
- ``rss_baseline_kb``: resident memory after the imports, before the data are read;
- ``rss_after_load_kb``: after the data are read into a DataFrame;
- ``peak_fit_kb``: the memory high-water mark while fitting.  The kernel's high-water mark (VmHWM) is reset just
  before the fit (``/proc/self/clear_refs``), so the peak of reading the CSV does not count; where the reset is not
  allowed, it is the whole process's peak and ``hwm_reset`` says so;
- ``fit_seconds``: wall time of the fit call alone (``time.perf_counter``), excluding imports and reading the data.
- ``cpu_seconds``: CPU time of this process's threads over the same call (``time.process_time``).

For glmmlab the record also holds ``glmmlab_file`` (the ``glmmlab/__init__.py`` that was imported).  ``run.py --vs``
adds to the spec ``glmmlab_src`` (the ``src`` folder glmmlab must come from; a glmmlab imported from anywhere else is
an error, not a fit) and ``revision`` (the git revision of that folder, named when its glmmlab lacks the function
this spec calls: the record is then ``unavailable``, "not available at REV").
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import traceback


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            m = re.search(rf"^{field}:\s+(\d+)\s+kB", fh.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _num(x):
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ---------------------------------------------------------------------------------------------------------------
# fitters: each has prepare(spec) -> (callable doing the fit, extract(result) -> dict)


def _glmmlab(spec, frame):
    import glmmlab

    def fit():
        if spec.get("formula"):
            return glmmlab.glmm(
                spec["formula"],
                frame,
                family=spec["family"],
                link=spec["link"],
                weights=spec.get("weights"),
                offset=spec.get("offset"),
                nagq=int(spec.get("nagq", 1)),
            )
        return glmmlab.fit_glmm(
            frame,
            response=spec["response"],
            group=spec["group"],
            fixed=list(spec["fixed"]),
            family=spec["family"],
            link=spec["link"],
            nagq=int(spec.get("nagq", 1)),
        )

    def extract(res):
        d = res.to_dict()
        fe = {r["variable"]: _num(r.get("estimate")) for r in d.get("fixed_effects", [])}
        se = {r["variable"]: _num(r.get("std_error")) for r in d.get("fixed_effects", [])}
        re_rows = {r.get("component"): r for r in d.get("random_effects", [])}
        grp = re_rows.get(spec["group"]) or next((r for k, r in re_rows.items() if k != "Residual"), {})
        fitd = d.get("fit", {}) or {}
        return {
            "log_likelihood": _num(fitd.get("log_likelihood")),
            "log_likelihood_kind": fitd.get("log_likelihood_kind"),
            "fixef": fe,
            "se": se,
            "var_group": _num(grp.get("variance")),
            "converged": d.get("converged"),
            "singular": d.get("singular"),
            "warnings": list(d.get("warnings") or []),
            "engine_fit_seconds": _num((d.get("timing") or {}).get("fit_seconds")),
            "n_obs": d.get("n_obs"),
            "method": d.get("method"),
            "groups": d.get("groups"),
        }

    return fit, extract, {"glmmlab": getattr(glmmlab, "__version__", "?")}


def _statsmodels(spec, frame):
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    import statsmodels

    family, link = spec["family"], spec["link"]
    versions = {"statsmodels": statsmodels.__version__}
    if spec.get("formula"):
        return _statsmodels_formula(spec, frame, versions)
    y = frame[spec["response"]].to_numpy(dtype=float)
    names = ["(Intercept)", *spec["fixed"]]
    X = np.column_stack([np.ones(len(frame)), *(frame[c].to_numpy(dtype=float) for c in spec["fixed"])])
    codes, uniques = pd.factorize(frame[spec["group"]])

    if family == "gaussian" and link == "identity":
        from statsmodels.regression.mixed_linear_model import MixedLM

        def fit():
            model = MixedLM(y, X, groups=codes)
            return model.fit(reml=True)

        def extract(res):
            fe = res.fe_params
            bse = res.bse_fe
            return {
                "method": "MixedLM REML",
                "log_likelihood": _num(res.llf),
                "log_likelihood_kind": "REML",
                "fixef": {n: _num(v) for n, v in zip(names, fe)},
                "se": {n: _num(v) for n, v in zip(names, bse)},
                "var_group": _num(np.asarray(res.cov_re)[0, 0]),
                "converged": bool(getattr(res, "converged", True)),
                "warnings": [],
            }

        return fit, extract, versions

    if (family, link) in {("binomial", "logit"), ("poisson", "log")}:
        from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM, PoissonBayesMixedGLM

        cls = BinomialBayesMixedGLM if family == "binomial" else PoissonBayesMixedGLM
        n = len(frame)
        Z = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, len(uniques)))
        method = spec.get("vb_method", "BFGS")

        def fit():
            import warnings as _w

            with _w.catch_warnings(record=True) as caught:
                _w.simplefilter("always")
                model = cls(y, X, exog_vc=Z, ident=np.zeros(Z.shape[1], dtype=int))
                res = model.fit_vb(fit_method=method, rng=0)
            res._bench_warnings = [str(w.message) for w in caught]
            return res

        def extract(res):
            k = len(names)
            sd_log = float(np.asarray(res.vcp_mean)[0])
            msgs = getattr(res, "_bench_warnings", [])
            return {
                "method": f"{cls.__name__}.fit_vb ({method})",
                "log_likelihood": None,  # variational Bayes: no marginal likelihood to compare
                "log_likelihood_kind": "n/a (variational Bayes)",
                "fixef": {n: _num(v) for n, v in zip(names, np.asarray(res.fe_mean)[:k])},
                "se": {n: _num(v) for n, v in zip(names, np.asarray(res.fe_sd)[:k])},
                "var_group": _num(math.exp(2.0 * sd_log)),
                "converged": not any("did not converge" in m for m in msgs),
                "warnings": sorted(set(msgs)),
            }

        return fit, extract, versions

    raise NotImplementedError(f"statsmodels has no random-intercept fitter for {family}/{link}")


_ONE_SLOPE = re.compile(r"^\s*(\w+)\s*~\s*(\w+)\s*\+\s*\(\s*(?:1\s*\+\s*)?(\w+)\s*\|\s*(\w+)\s*\)\s*$")


def _statsmodels_formula(spec, frame, versions):
    """The one general model statsmodels fits directly: Gaussian ``y ~ x + (1 + x | g)`` (MixedLM, REML)."""
    import numpy as np

    m = _ONE_SLOPE.match(spec["formula"])
    if not (m and spec["family"] == "gaussian" and spec["link"] == "identity" and m.group(2) == m.group(3)
            and not spec.get("weights") and not spec.get("offset")):
        raise NotImplementedError("statsmodels: no comparable fitter for this general model (MixedLM fits "
                                  "Gaussian models with one grouping factor only; its Bayes GLMMs have no slopes "
                                  "with correlation)")
    yname, x, _, g = m.groups()
    from statsmodels.regression.mixed_linear_model import MixedLM

    y = frame[yname].to_numpy(dtype=float)
    xv = frame[x].to_numpy(dtype=float)
    X = np.column_stack([np.ones(len(frame)), xv])
    codes = frame[g].to_numpy()

    def fit():
        return MixedLM(y, X, groups=codes, exog_re=X).fit(reml=True)

    def extract(res):
        names = ["(Intercept)", x]
        return {
            "method": "MixedLM REML (exog_re = [1, x])",
            "log_likelihood": _num(res.llf),
            "log_likelihood_kind": "REML",
            "fixef": {n: _num(v) for n, v in zip(names, res.fe_params)},
            "se": {n: _num(v) for n, v in zip(names, res.bse_fe)},
            "var_group": _num(np.asarray(res.cov_re)[0, 0]),
            "converged": bool(getattr(res, "converged", True)),
            "warnings": [],
        }

    return fit, extract, versions


FITTERS = {"glmmlab": _glmmlab, "statsmodels": _statsmodels}

# the keywords _glmmlab passes to each entry point
_GLMMLAB_KEYWORDS = {
    "glmm": ("family", "link", "weights", "offset", "nagq"),
    "fit_glmm": ("response", "group", "fixed", "family", "link", "nagq"),
}


def _import_glmmlab(spec, out) -> tuple[str, str] | None:
    """Import glmmlab and the entry point this spec calls (before the baseline, so no import is timed); record
    which glmmlab was imported.  Returns (status, error) when there is nothing to fit with: glmmlab not importable,
    imported from another folder than spec["glmmlab_src"], or without the entry point (or one of its keywords) at
    spec["revision"]."""
    from pathlib import Path

    rev = spec.get("revision")
    where = f"not available at {rev}: " if rev else ""
    want = spec.get("glmmlab_src")
    if want and not (Path(want) / "glmmlab" / "__init__.py").exists():
        return "unavailable", f"{where}no glmmlab package in {want}"
    try:
        import glmmlab
    except Exception as exc:  # noqa: BLE001
        return "unavailable", f"{where}import glmmlab failed: {type(exc).__name__}: {exc}"
    out["glmmlab_file"] = getattr(glmmlab, "__file__", None)
    if want:
        got = Path(out["glmmlab_file"] or "").resolve()
        if not got.is_relative_to(Path(want).resolve()):
            return "error", f"glmmlab was imported from {got}, not from {want}"
    entry = "glmm" if spec.get("formula") else "fit_glmm"
    try:
        fn = getattr(glmmlab, entry)  # a lazy name: imports its module now
    except Exception as exc:  # noqa: BLE001
        return "unavailable", f"{where}glmmlab.{entry} ({type(exc).__name__}: {exc})"
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        missing = [k for k in _GLMMLAB_KEYWORDS[entry] if k not in params]
        if missing:
            return "unavailable", f"{where}glmmlab.{entry} takes no {', '.join(missing)}"
    return None


def main(argv: list[str]) -> int:
    spec_path, out_path = argv[1], argv[2]
    with open(spec_path) as fh:
        spec = json.load(fh)
    out: dict = {"fitter": spec["fitter"], "status": "error"}

    def write():
        with open(out_path, "w") as fh:
            json.dump(out, fh, indent=1)

    # imports first (not timed, part of the baseline), including the scipy modules either fitter may import
    # lazily on its first call, so the fit time holds no import time
    try:
        import numpy  # noqa: F401
        import pandas as pd
        import scipy.linalg  # noqa: F401
        import scipy.optimize  # noqa: F401
        import scipy.sparse  # noqa: F401
        import scipy.special  # noqa: F401
        import scipy.stats  # noqa: F401

        if spec["fitter"] == "statsmodels":
            import statsmodels.genmod.bayes_mixed_glm  # noqa: F401
            import statsmodels.regression.mixed_linear_model  # noqa: F401
    except Exception as exc:  # the library is not there (yet)
        out.update(status="unavailable", error=f"{type(exc).__name__}: {exc}")
        write()
        return 0
    if spec["fitter"] == "glmmlab":
        problem = _import_glmmlab(spec, out)
        if problem:
            status, error = problem
            out.update(status=status, error=error)
            write()
            return 0
    out["rss_baseline_kb"] = _status_kb("VmRSS")

    frame = pd.read_csv(spec["data"])
    for col, levels in (spec.get("levels") or {}).items():  # R's level order (first = reference)
        if col in frame.columns:
            frame[col] = pd.Categorical(frame[col].astype(str), categories=[str(v) for v in levels])
    out["rss_after_load_kb"] = _status_kb("VmRSS")
    out["n_rows_read"] = int(frame.shape[0])

    try:
        fit, extract, versions = FITTERS[spec["fitter"]](spec, frame)
    except NotImplementedError as exc:
        out.update(status="n/a", error=str(exc))
        write()
        return 0
    out["versions"] = versions

    import gc

    gc.collect()
    out["hwm_reset"] = _reset_hwm()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        res = fit()
        t1, c1 = time.perf_counter(), time.process_time()
    except Exception as exc:
        out.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
        out["peak_fit_kb"] = _peak_kb()
        write()
        return 0
    out["peak_fit_kb"] = _peak_kb()  # before the result is turned into a dict (per-row lists would count)
    out["fit_seconds"] = t1 - t0
    out["cpu_seconds"] = c1 - c0  # every thread of this process (not a Dask cluster's workers)
    try:
        out.update(extract(res))
        out["status"] = "ok"
    except Exception as exc:
        out.update(status="error", error=f"reading the result: {type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc()[-4000:])
    import resource

    out["ru_maxrss_kb"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
