"""Plain-text tables of a fit, as a person reads them in the GLMM tab: the same tables, labels and digits
(:mod:`glmmlab.services.views.result_view`, :mod:`glmmlab.services.views.numbers`) as the web pages and the reports.

:func:`summary` and :func:`render_html` are a fitted model's ``summary()`` and ``_repr_html_()``
(:class:`glmmlab.services.modeling.fitted.FittedModel`); the command line prints :func:`render`."""

from __future__ import annotations

import html
from typing import Any

from glmmlab.services.views.numbers import numeric_kind
from glmmlab.services.views.result_view import ICC_NA, formula, reference_text, result_tables, warnings_of


def table(headers: list[str], rows: list[list[str]], right: list[bool] | None = None) -> str:
    """Columns padded to their widest cell; numbers (``right``) flush right, text flush left."""
    right = right if right is not None else [i > 0 for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def render_table(t: dict[str, Any]) -> str:
    return table(t["columns"], t["cells"], [numeric_kind(k) for k in t["kinds"]])


def _header(d: dict[str, Any]) -> list[str]:
    m = d["model"]
    refs = reference_text(m)
    return [f"GLMM: {formula(m)}   {refs + '   ' if refs else ''}family {m['family']}, link {m['link']}, "
            f"method {d['method']}"
            + (f" ({m['nagq']} nodes)" if d["method"] == "AGQ" else ""),
            f"Observations: {d['n_obs']:,}   Groups: {_groups(d)}   Rows excluded: {d['n_excluded']:,}   "
            f"Converged: {'yes' if d['converged'] else 'no'}   Fit time: {d['timing']['fit_seconds']:.3f} s"]


BLUP_ROWS = 10  # the command line's default: the first 10 levels of each BLUP table (--blups all shows every one)


def render_document(d: dict[str, Any], blups: bool | int | None = True) -> str:
    """The text of a result document (``GlmmResult.to_dict()``). ``blups``: True or None every BLUP row, False
    no BLUP table, a number N the first N levels of each BLUP table and a line saying how many were left out (0:
    one line instead of the tables)."""
    parts = _header(d)
    parts += [f"Warning: {w}" for w in warnings_of(d)]
    for t in result_tables(d):
        is_blup = t["name"] == "blup" or t["name"].startswith("blup-")
        if is_blup and blups is False:
            continue
        if t["name"] == "icc":
            parts.append(f"\nICC: {t['cells'][0][1]}")
            continue
        limit = blups if is_blup and not isinstance(blups, bool) and blups is not None else None
        n = len(t["cells"])
        if limit is not None and limit == 0:
            parts.append(f"\n{t['title']}: {n:,} levels not shown (--blups all or --blups N shows them)")
            continue
        if limit is not None and n > limit:
            t = dict(t, cells=t["cells"][:limit])
        parts.append(f"\n{t['title']}")
        parts.append(render_table(varcorr_layout(t) if t["name"] == "random-effects" else t))
        if limit is not None and n > limit:
            parts.append(f"... {n - limit:,} more of {n:,} levels not shown (--blups all shows every level)")
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


def render(result, blups: bool | int | None = True) -> str:
    """The text of a :class:`~glmmlab.engine.inference.results.GlmmResult` (``blups`` as :func:`render_document`)."""
    return render_document(result.to_dict(), blups=blups)


def summary(result) -> str:
    """``GlmmResult.summary()``: the text of :func:`render` without the BLUP table (``result.ranef`` has it) and
    without the per-row diagnostics."""
    return render_document(result.to_dict(diagnostics=False), blups=False) + \
        "\nBLUPs: result.ranef; variances: result.varcorr; coefficients: result.params, result.conf_int()\n"


def render_html(result) -> str:
    """``GlmmResult._repr_html_()``: the header, the warnings and the tables of :func:`summary` as HTML tables
    (every text escaped)."""
    d = result.to_dict(diagnostics=False)
    e = html.escape
    parts = ['<div class="glmmlab-result">'] + [f"<p>{e(line)}</p>" for line in _header(d)]
    parts += [f'<p class="warning"><strong>Warning:</strong> {e(w)}</p>' for w in warnings_of(d)]
    for t in result_tables(d):
        if t["name"] == "blup":
            continue
        right = [numeric_kind(k) for k in t["kinds"]]
        head = "".join(f"<th>{e(c)}</th>" for c in t["columns"])
        body = "".join(
            "<tr>" + "".join(f'<td style="text-align:{"right" if r else "left"}">{e(c)}</td>'
                             for c, r in zip(row, right)) + "</tr>"
            for row in t["cells"])
        parts.append(f"<table><caption>{e(t['title'])}</caption><thead><tr>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    parts.append("</div>")
    return "\n".join(parts)



__all__ = ["table", "render", "render_document", "render_table", "summary", "render_html", "ICC_NA"]
