"""Plain-text tables of a fit, as a person reads them in the GLMM tab: the same tables, labels and digits
(:mod:`glmmlab.services.result_view`, :mod:`glmmlab.services.numbers`) as the web pages and the reports."""

from __future__ import annotations

from typing import Any

from glmmlab.services.numbers import numeric_kind
from glmmlab.services.result_view import ICC_NA, result_tables, warnings_of, formula


def table(headers: list[str], rows: list[list[str]], right: list[bool] | None = None) -> str:
    """Columns padded to their widest cell; numbers (``right``) flush right, text flush left."""
    right = right if right is not None else [i > 0 for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def render_table(t: dict[str, Any]) -> str:
    return table(t["columns"], t["cells"], [numeric_kind(k) for k in t["kinds"]])


def render_document(d: dict[str, Any]) -> str:
    """The text of a result document (``GlmmResult.to_dict()``)."""
    m = d["model"]
    parts = [f"GLMM: {formula(m)}   family {m['family']}, link {m['link']}, method {d['method']}"
             + (f" ({m['nagq']} nodes)" if d["method"] == "AGQ" else ""),
             f"Observations: {d['n_obs']:,}   Groups: {_groups(d)}   Rows excluded: {d['n_excluded']:,}   "
             f"Converged: {'yes' if d['converged'] else 'no'}   Fit time: {d['timing']['fit_seconds']:.3f} s"]
    parts += [f"Warning: {w}" for w in warnings_of(d)]
    for t in result_tables(d):
        if t["name"] == "icc":
            parts.append(f"\nICC: {t['cells'][0][1]}")
            continue
        parts.append(f"\n{t['title']}")
        parts.append(render_table(varcorr_layout(t) if t["name"] == "random-effects" else t))
    return "\n".join(parts) + "\n"


def varcorr_layout(t: dict[str, Any]) -> dict[str, Any]:
    """lme4's printed VarCorr layout for a general model's Random Effects (the web's Component/Term table):
    headed Groups and Name, each grouping factor named once."""
    if t["columns"][:2] != ["Component", "Term"]:
        return t
    cells, last = [], None
    for row in t["cells"]:
        cells.append([row[0] if row[0] != last else ""] + list(row[1:]))
        last = row[0]
    return dict(t, columns=["Groups", "Name"] + list(t["columns"][2:]), cells=cells)


def _groups(d: dict[str, Any]) -> str:
    groups = d.get("groups") or {}
    if len(groups) > 1:
        return ", ".join(f"{k} {v:,}" for k, v in groups.items())
    return f"{d['n_groups']:,}"


def render(result) -> str:
    """The text of a :class:`~glmmlab.engine.results.GlmmResult`."""
    return render_document(result.to_dict())


__all__ = ["table", "render", "render_document", "render_table", "ICC_NA"]
