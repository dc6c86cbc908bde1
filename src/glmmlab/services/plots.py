"""Diagnostic plots of a saved model as PNG images (matplotlib, Agg backend: no display needed).

- ``residuals``: deviance residuals against fitted values;
- ``qq``: normal Q-Q plot of the deviance residuals;
- ``caterpillar``: the groups' random intercepts (BLUPs / conditional modes), sorted, with +-1.96 SE bars;
- ``observed``: observed response against fitted values, with the line y = x.
"""

from __future__ import annotations

import io
import threading
from statistics import NormalDist
from typing import Any

import numpy as np

from glmmlab.services import datasets
from glmmlab.services.errors import NotFound, ServiceError
from glmmlab.services.models import get_model
from glmmlab.services.store import Project

PLOTS = {
    "residuals": "Residuals vs Fitted",
    "qq": "Normal Q-Q of Residuals",
    "caterpillar": "Caterpillar Plot of Random Intercepts",
    "observed": "Observed vs Fitted",
}
_LOCK = threading.Lock()  # pyplot's state is global; draw one figure at a time
MAX_POINTS = 20_000


def _arr(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _thin(n: int) -> np.ndarray:
    """Row positions to draw: all of them up to MAX_POINTS, else an evenly spaced subset (plots stay readable)."""
    return np.arange(n) if n <= MAX_POINTS else np.linspace(0, n - 1, MAX_POINTS).astype(int)


def plot_png(project: Project, model_id: int, kind: str) -> bytes:
    """One diagnostic plot of the saved model as PNG bytes."""
    if kind not in PLOTS:
        raise NotFound(f"There is no plot called {kind!r}; choose one of {', '.join(PLOTS)}.")
    model = get_model(project, model_id)
    result = model["result"] or {}
    diag = result.get("diagnostics") or {}
    fitted = _arr(diag.get("fitted_values", []))
    resid = _arr(diag.get("deviance_residuals", []))
    observed = None
    if kind == "observed":
        response = result["model"]["response"]
        try:
            frame = datasets.read_frame(project, model["dataset_id"], [response])
        except NotFound:
            raise ServiceError(f"The dataset of model '{model['name']}' no longer has column '{response}'.") from None
        y = frame[response].to_numpy(dtype=float, na_value=np.nan)
        rows = np.asarray(diag.get("row", []), dtype=int)
        observed = y[rows] if rows.size and rows.max() < y.size else np.full(fitted.size, np.nan)

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with _LOCK:
        fig = Figure(figsize=(5.6, 4.0), dpi=90)
        ax = fig.add_subplot()
        title = f"{PLOTS[kind]} — {model['name']}"
        if kind == "residuals":
            idx = _thin(fitted.size)
            ax.scatter(fitted[idx], resid[idx], s=8, alpha=.45, color="#2f6fdb", edgecolors="none")
            ax.axhline(0.0, color="#c0392b", lw=1)
            ax.set_xlabel("Fitted values")
            ax.set_ylabel("Deviance residuals")
        elif kind == "qq":
            r = np.sort(resid[np.isfinite(resid)])
            n = r.size
            theo = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]) if n else np.array([])
            idx = _thin(n)
            ax.scatter(theo[idx], r[idx], s=8, alpha=.5, color="#2f6fdb", edgecolors="none")
            if n > 1:
                q1, q3 = np.percentile(r, [25, 75])
                t1, t3 = NormalDist().inv_cdf(.25), NormalDist().inv_cdf(.75)
                slope = (q3 - q1) / (t3 - t1)
                ax.axline((t1, q1), slope=slope, color="#c0392b", lw=1)
            ax.set_xlabel("Theoretical normal quantiles")
            ax.set_ylabel("Deviance residuals (sorted)")
        elif kind == "caterpillar":
            blup = result.get("blup", [])
            est = _arr([b["random_intercept"] for b in blup])
            se = _arr([b["std_error"] for b in blup])
            order = np.argsort(est, kind="stable")
            pos = np.arange(len(order))
            ax.errorbar(est[order], pos, xerr=1.96 * se[order], fmt="o", ms=3, color="#2f6fdb",
                        ecolor="#9bb7e8", elinewidth=1)
            ax.axvline(0.0, color="#c0392b", lw=1)
            if len(order) <= 40:
                ax.set_yticks(pos, [str(blup[i]["group"]) for i in order], fontsize=7)
            else:
                ax.set_yticks([])
                ax.set_ylabel(f"{len(order)} groups, sorted")
            ax.set_xlabel("Random intercept ± 1.96 SE")
        else:
            idx = _thin(fitted.size)
            ax.scatter(fitted[idx], observed[idx], s=8, alpha=.45, color="#2f6fdb", edgecolors="none")
            finite = np.concatenate([fitted[np.isfinite(fitted)], observed[np.isfinite(observed)]])
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                ax.plot([lo, hi], [lo, hi], color="#c0392b", lw=1)
            ax.set_xlabel("Fitted values")
            ax.set_ylabel(f"Observed {result['model']['response']}")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=.25)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()
