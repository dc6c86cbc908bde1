"""What a run or a saved model can put into a report, and the report items themselves (the Add to Report dialog).

A choice is named by a key:

- ``table:<name>``: a table of the result view (``random-effects``, ``fixed-effects``, ``omnibus``, ``model-fit``,
  ``glm-comparison``, ``blup`` / ``blup-<factor>``; the ICC only where an ICC is defined);
- ``plot:<kind>``: a diagnostic plot (:mod:`glmmlab.services.workbench.plots`);
- ``effects?term=<t>&by=<b>``, ``emmeans?term=<t>&by=<b>``, ``pairs?term=<t>&by=<b>&adjust=<a>``: the effect plot,
  the estimated marginal means and the pairwise comparisons of a term.

Every item built here carries ``payload["source"]`` (the owner, the key and, for the fixed effects, the level), which
:func:`glmmlab.services.workbench.reports.add_items` uses to add an item to a report only once.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any, Callable, Optional

from glmmlab.services.errors import ServiceError
from glmmlab.services.views import result_view

# tables a user usually wants; BLUP tables (one row per group: often hundreds) are offered unchecked
_UNCHECKED_TABLES = ("blup",)


def catalog(result: dict[str, Any], plot_titles: dict[str, str], conf_level: Optional[float] = None
            ) -> list[dict[str, Any]]:
    """The tables and plots of a result that can go into a report: ``[{key, kind, title, checked}]``."""
    out = []
    for t in result_view.result_tables(result, conf_level):
        if t["name"] == "icc" and result.get("icc") is None:
            continue  # no ICC for this model: nothing to report
        out.append({"key": f"table:{t['name']}", "kind": "table", "title": t["title"],
                    "checked": not t["name"].startswith(_UNCHECKED_TABLES)})
    for kind, title in plot_titles.items():
        out.append({"key": f"plot:{kind}", "kind": "plot", "title": title, "checked": False})
    return out


def marginal_key(what: str, term: str, by: Optional[str] = None, adjust: Optional[str] = None) -> str:
    """The key of an effect plot (``what="effects"``), marginal means (``"emmeans"``) or comparisons (``"pairs"``)."""
    params = {"term": term} | ({"by": by} if by else {}) | ({"adjust": adjust} if adjust and what == "pairs" else {})
    return f"{what}?{urllib.parse.urlencode(params)}"


def build(keys: list[str], *, owner: str, name: str, result: dict[str, Any], conf_level: float,
          plot_png: Callable[[str], bytes], marginal: Callable[[str, Optional[str], str], dict[str, Any]],
          effect_png: Callable[[dict[str, Any], str], bytes]) -> list[dict[str, Any]]:
    """The report items of ``keys`` (in that order), titled ``"<name>: <title>"``; ``owner`` (e.g. ``model:3``)
    makes each item's ``source``. ``plot_png(kind)`` draws a diagnostic plot, ``marginal(term, by, adjust)`` answers
    as :func:`glmmlab.services.workbench.fit_analyses.marginal_view` and ``effect_png(view, title)`` draws an effect
    plot."""
    if not isinstance(keys, list) or not keys:
        raise ServiceError("Choose at least one table or plot to add to the report.")
    tables = {t["name"]: t for t in result_view.result_tables(result, conf_level)}
    first_note = " ".join([result_view.summary_line(result) + "."]
                          + [f"Warning: {w}" for w in result_view.warnings_of(result)])
    items: list[dict[str, Any]] = []
    for key in keys:
        if not isinstance(key, str):
            raise ServiceError(f"A report choice is a key such as 'table:fixed-effects', not {key!r}.")
        head, _, query = key.partition("?")
        kind, _, arg = head.partition(":")
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        source = f"{owner}:{key}"
        if kind == "table":
            t = tables.get(arg)
            if t is None:
                raise ServiceError(f"This model has no table '{arg}'; choose one of {', '.join(tables)}.")
            note = t["note"] or ""
            if arg == "fixed-effects":
                source += f"@{conf_level:g}"
            if not any(i["kind"] == "table" for i in items):
                # the fit's summary line and warnings go with the first table chosen, whichever it is, so a report
                # never shows a fit's numbers without its warnings (a fit that did not converge, say)
                note = " ".join([first_note] + ([note] if note else []))
            items.append(_table_item(f"{name}: {t['title']}", t, note, source))
        elif kind == "plot":
            png = plot_png(arg)
            from glmmlab.services.workbench import plots  # (plots imports models; keep this module light)

            items.append({"kind": "plot", "title": f"{name}: {plots.title_of(result, arg)}",
                          "payload": {"png_base64": base64.b64encode(png).decode("ascii"), "source": source}})
        elif head in ("effects", "emmeans", "pairs"):
            term = params.get("term")
            if not term:
                raise ServiceError(f"Say which term ('{head}?term=...').")
            by = params.get("by") or None
            view = marginal(term, by, params.get("adjust") or "tukey")
            if head == "effects":
                title = f"Effect of {view['term']}" + (f" by {by}" if by else "")
                png = effect_png(view, f"{title} — {name}")
                items.append({"kind": "plot", "title": f"{name}: {title}",
                              "payload": {"png_base64": base64.b64encode(png).decode("ascii"),
                                          "note": view["emmeans"]["note"], "source": source}})
            else:
                t = {tt["name"]: tt for tt in view["tables"]}.get(head)
                if t is None:
                    raise ServiceError(f"'{term}' is a covariate: it has marginal means over a grid of values but no "
                                       "pairwise comparisons.")
                items.append(_table_item(f"{name}: {t['title']}", t, t["note"] or "", source))
        else:
            raise ServiceError(f"Unknown report choice {key!r}: a key starts with table:, plot:, effects?, emmeans? "
                               "or pairs?.")
    return items


def _table_item(title: str, t: dict[str, Any], note: str, source: str) -> dict[str, Any]:
    return {"kind": "table", "title": title,
            "payload": {"columns": t["columns"], "rows": t["rows"], "kinds": t["kinds"], "note": note,
                        "source": source}}
