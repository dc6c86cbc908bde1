"""DHARMa's two plots of simulation-based scaled residuals, as matplotlib figures (no pyplot: each call makes its own
:class:`~matplotlib.figure.Figure`, so the web server's threads never share one):

- :func:`qq_uniform`: the sorted residuals against the quantiles of U(0, 1), with the uniformity (KS), dispersion,
  zero-inflation and outlier tests' p-values in the corners, in red where p < 0.05;
- :func:`residuals_vs_predicted`: the residuals against the rank-transformed predictions (ranks / their maximum,
  ties averaged), with the 0.25, 0.5 and 0.75 quantiles of the residuals along the predictions
  (:func:`quantile_bins`; a box per value where there are ten distinct predictions or fewer) and dashed lines at
  the quantiles expected; residuals outside every simulation are marked
  (red where the outlier test is significant).

DHARMa draws its quantile lines by quantile GAMs (qgam) and tests them; here the predictions are cut into bins of
about equal size (each distinct value its own bin when there are few) and each quantile is tested by how many
residuals of each bin fall below it (binomial counts, a chi-squared sum over the bins, Benjamini-Hochberg across
the quantiles).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

SIGNAL = "#c0392b"  # DHARMa's signal colour for a significant test
POINTS = "#2f6fdb"
MAX_POINTS = 20_000  # points drawn at most (an evenly spaced subset in the order of the predictions beyond)
_FIGSIZE, _DPI = (4.2, 3.0), 240


def rank_transform(x: np.ndarray) -> np.ndarray:
    """DHARMa's ``rankTransform``: ranks (ties averaged) divided by the largest."""
    r = stats.rankdata(np.asarray(x, dtype=float), method="average")
    return r / r.max() if r.size else r


def quantile_bins(residuals: np.ndarray, predicted: np.ndarray, quantiles=(0.25, 0.5, 0.75)) -> dict[str, Any]:
    """The quantiles of the residuals along the rank-transformed predictions: ``x`` (each bin's mean rank; with
    ``by_value`` each distinct prediction is its own bin), ``lines``
    (one array of the bins' empirical quantiles per quantile) and ``p_values`` (per quantile: the counts of
    residuals below it per bin against Binomial(n_bin, q), summed as a chi-squared with one degree of freedom per
    bin), ``p_adjusted`` (Benjamini-Hochberg over the quantiles) and ``p_value`` (their smallest)."""
    res = np.asarray(residuals, dtype=float)
    x = rank_transform(predicted)
    n = res.size
    uniq, inverse = np.unique(x, return_inverse=True)
    if uniq.size <= 10:  # few distinct predictions: a bin per value (DHARMa draws boxes per value then)
        bin_of = inverse
    else:
        n_bins = int(min(12, max(3, n // 200), uniq.size))
        bin_of = np.minimum((np.argsort(np.argsort(x, kind="stable"), kind="stable") * n_bins) // max(n, 1),
                            n_bins - 1)
    n_bins = int(bin_of.max()) + 1 if n else 0
    counts = np.bincount(bin_of, minlength=n_bins).astype(float)
    keep = counts > 0
    order = np.lexsort((res, bin_of))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    centres = np.bincount(bin_of, weights=x, minlength=n_bins)[keep] / counts[keep]
    lines, pvals = [], []
    sorted_res = res[order]
    for q in quantiles:
        # the q-quantile of each bin (type 7, as numpy's default): interpolated between order statistics
        pos = starts + q * (counts - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts + counts.astype(np.int64) - 1)
        frac = pos - lo
        lines.append((sorted_res[np.maximum(lo, 0)] * (1 - frac) + sorted_res[np.maximum(hi, 0)] * frac)[keep])
        below = np.bincount(bin_of, weights=(res < q).astype(float), minlength=n_bins)[keep]
        m = counts[keep]
        chi2 = float(np.sum((below - m * q) ** 2 / (m * q * (1.0 - q))))
        pvals.append(float(stats.chi2.sf(chi2, df=int(keep.sum()))))
    adjusted = _bh(np.array(pvals))
    return {"x": centres, "lines": lines, "quantiles": list(quantiles), "by_value": bool(uniq.size <= 10),
            "p_values": pvals,
            "p_adjusted": list(adjusted), "p_value": float(adjusted.min()) if adjusted.size else float("nan")}


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R's ``p.adjust(method = "BH")``)."""
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)[::-1]
    adj = np.minimum.accumulate(p[order] * m / np.arange(m, 0, -1))
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def _figure(ax: Any, size=_FIGSIZE):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI)
    return fig, fig.add_subplot()


def _thin(n: int) -> np.ndarray:
    return np.arange(n) if n <= MAX_POINTS else np.linspace(0, n - 1, MAX_POINTS).astype(int)


def _p_text(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}".rstrip("0").rstrip(".") if p < 1 else "1"


def corner_lines(tests: dict[str, Any]) -> list[tuple[str, float | None]]:
    """(text, p-value) of each test named in the Q-Q plot's corner."""
    names = {"uniformity": "KS test", "dispersion": "Dispersion test", "zero_inflation": "Zero-inflation test",
             "outliers": "Outlier test"}
    out = []
    for key, label in names.items():
        t = tests.get(key)
        if t is None:
            continue
        p_text = _p_text(t.p_value)
        shown = p_text if p_text.startswith("<") else "= " + p_text
        out.append((f"{label}: p {shown}" + (" (significant)" if t.p_value < 0.05 else ""), t.p_value))
    return out


def qq_uniform(residuals: np.ndarray, tests: dict[str, Any], ax: Any = None, title: str | None = None):
    """The uniform Q-Q plot: sorted residuals against (i - 0.5) / n, the line y = x, the tests' p-values."""
    fig, ax = _figure(ax)
    r = np.sort(np.asarray(residuals, dtype=float))
    n = r.size
    expected = (np.arange(1, n + 1) - 0.5) / max(n, 1)
    idx = _thin(n)
    ax.scatter(expected[idx], r[idx], s=6, alpha=.5, color=POINTS, edgecolors="none")
    ax.plot([0, 1], [0, 1], color=SIGNAL, lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Expected (uniform)")
    ax.set_ylabel("Observed scaled residual")
    lines = corner_lines(tests)
    for i, (text, p) in enumerate(lines):
        ax.text(0.03, 0.97 - 0.075 * i, text, transform=ax.transAxes, ha="left", va="top", fontsize=6.5,
                color=SIGNAL if p is not None and p < 0.05 else "black")
    ax.set_title(title or "Q-Q plot of scaled residuals", fontsize=10)
    ax.grid(True, alpha=.25)
    fig.tight_layout()
    return fig


def residuals_vs_predicted(residuals: np.ndarray, predicted: np.ndarray, quantiles=(0.25, 0.5, 0.75),
                           outliers: Any = None, ax: Any = None, title: str | None = None):
    """Residuals against rank-transformed predictions with their quantile lines (red: a quantile that deviates,
    BH-adjusted p < 0.05; with ten distinct predictions or fewer a box per value instead, red where any quantile
    deviates) and dashed lines at the expected quantiles."""
    fig, ax = _figure(ax)
    res = np.asarray(residuals, dtype=float)
    bins = quantile_bins(res, predicted, quantiles)
    deviating = bool(np.any(np.asarray(bins["p_adjusted"]) < 0.05))
    if bins["by_value"]:  # a box per distinct prediction, side by side, as DHARMa draws them
        values, inverse = np.unique(np.asarray(predicted, dtype=float), return_inverse=True)
        pos = (np.arange(values.size) + 0.5) / values.size
        xpos = pos[inverse]
    else:
        xpos = rank_transform(predicted)
    idx = np.argsort(xpos, kind="stable")[_thin(res.size)]
    alpha = max(0.12, min(0.6, 3000.0 / max(res.size, 1)))
    ax.scatter(xpos[idx], res[idx], s=6, alpha=alpha, color=POINTS, edgecolors="none")
    edge = (res == 0.0) | (res == 1.0)
    if np.any(edge):
        flagged = outliers is not None and outliers.p_value < 0.05
        ax.scatter(xpos[edge], res[edge], s=14, marker="*", color=SIGNAL if flagged else "black", lw=0)
    for q in bins["quantiles"]:
        ax.axhline(q, color="grey", lw=.7, ls="--")
    if bins["by_value"]:
        colour = SIGNAL if deviating else "black"
        ax.boxplot([res[inverse == i] for i in range(values.size)], positions=pos, widths=0.5 / values.size,
                   manage_ticks=False, showfliers=False, boxprops={"color": colour},
                   whiskerprops={"color": colour}, capprops={"color": colour},
                   medianprops={"color": colour, "lw": 1.6})
        ax.set_xticks(pos, [f"{v:.3g}" for v in values], fontsize=7)
        ax.set_xlabel("Model predictions")
    else:
        for line, p in zip(bins["lines"], bins["p_adjusted"]):
            ax.plot(bins["x"], line, color=SIGNAL if p < 0.05 else "black", lw=1.4)
        ax.set_xlabel("Model predictions (rank transformed)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, *quantiles, 1])
    ax.set_ylabel("Scaled residual")
    head = title or "Residual vs. predicted"
    ax.set_title(head + ("\nQuantile deviations detected (red)" if deviating else
                         "\nNo significant problems detected"), fontsize=9,
                 color=SIGNAL if deviating else "black")
    ax.grid(True, alpha=.25)
    fig.tight_layout()
    return fig


def both(sr: Any):
    """The two plots side by side (DHARMa's ``plot()`` of its residuals)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.4, 3.4), dpi=_DPI)
    a1, a2 = fig.subplots(1, 2)
    sr.plot_qq(ax=a1)
    sr.plot_vs_predicted(ax=a2)
    fig.suptitle("Simulated (DHARMa) residuals", fontsize=10)
    fig.tight_layout()
    return fig
