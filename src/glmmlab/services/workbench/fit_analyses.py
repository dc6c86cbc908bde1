"""What the workbench shows of a fit beyond its document: omnibus tests, estimated marginal means, pairwise
comparisons and effect plots, of a finished fit job (kept in memory, or fitted again) or of a saved model (fitted
again on its dataset: a saved model keeps JSON only; the last few refits are kept)."""

from __future__ import annotations

from typing import Any, Callable, ContextManager

from glmmlab.engine.errors import GlmmInputError
from glmmlab.services.errors import ServiceError
from glmmlab.services.modeling import marginal
from glmmlab.services.project import catalogue
from glmmlab.services.project.store import Project
from glmmlab.services.views import result_view
from glmmlab.services.views.jsonable import jsonable
from glmmlab.services.workbench import models
from glmmlab.services.workbench.glmm_form import FieldError
from glmmlab.services.workbench.jobs import Job

_REFITS: dict[tuple, Any] = {}  # the last few saved models fitted again for their marginal means
_REFITS_KEPT = 4


def anova_view(document: dict[str, Any]) -> dict[str, Any]:
    """The omnibus tests per term of a fit's document: ``anova_terms`` (test, type, contrasts, note, rows of term,
    df, den_df, statistic, p_value) and ``table`` (the Omnibus Tests table as the result view shows it; null when
    the fit has no term to test)."""
    return {"anova_terms": document.get("anova_terms"), "table": result_view.omnibus_table(document)}


def fit_anova(job: Job) -> dict[str, Any]:
    return anova_view(_done(job))


def _done(job: Job) -> dict[str, Any]:
    if job.result is None:
        raise ServiceError(f"The fit '{job.id}' has no result ({job.state}); wait until it is done.")
    return job.result


def fit_result_of_job(job: Job, open_project: Callable[[], ContextManager[Project]]) -> Any:
    """The fitted model of a finished fit job: kept in memory, or fitted again on its dataset (large fits)."""
    _done(job)
    kept = job.kept.get("fit")
    if kept is not None:
        return kept
    spec = job.info["spec"]
    with open_project() as project:
        frame = catalogue.read_frame(project, job.info["dataset_id"], models.spec_columns(spec))
    result = models.fit_form(frame, spec)
    job.kept["fit"] = result
    return result


def saved_fit(project: Project, model: dict[str, Any], key: Any = None) -> Any:
    """A saved model fitted again on its dataset (a model keeps JSON only); the last few are kept."""
    frame = models.model_data(project, model)  # checked each time: a kept refit is of the data as saved
    k = (key, model["id"], repr(model.get("spec")), (model.get("result") or {}).get("n_obs"))
    if k in _REFITS:
        return _REFITS[k]
    result = models.refit_model(project, model, frame=frame)
    _REFITS[k] = result
    while len(_REFITS) > _REFITS_KEPT:
        _REFITS.pop(next(iter(_REFITS)))
    return result


def saved_anova(project: Project, model: dict[str, Any], key: Any = None) -> dict[str, Any]:
    """The omnibus tests of a saved model: from its document, or (a model saved before they existed) refitted."""
    document = model.get("result") or {}
    if document.get("anova_terms") is None:
        document = dict(document, anova_terms=saved_fit(project, model, key).anova_terms_document())
    return anova_view(document)


def marginal_view(result: Any, term: Any, by: Any = None, type: str = "response", level: Any = None,
                  adjust: str = "tukey") -> dict[str, Any]:
    """Estimated marginal means of ``term`` (by ``by``), their pairwise comparisons (a factor term) and the effect
    plot's data, JSON-clean (no NaN: infinite df, as for GLMMs, are null)::

        {"term", "by", "type", "level", "kind": "line" | "points", "response",
         "emmeans": {"columns", "rows": [{<variables>, "estimate", "SE", "df", "lower", "upper"}], "note"},
         "pairs": {"adjust", "scale" ("difference", or with type "response" and a log / logit link "ratio" /
                   "odds ratio"), "columns", "rows": [{<by>, "contrast", "estimate", "SE", "df", "statistic", "p"}],
                   "note"} | null,
         "effects": {"kind", "x", "by", "rows": [{"x", "by"?, "estimate", "lower", "upper", "SE"}]},
         "tables": [the Marginal Means and Pairwise Comparisons tables, formatted as the result view's]}

    Bad choices raise :class:`FieldError` naming the field (term, by, type, level, adjust)."""
    term = term if term is None else str(term)
    by = None if by in (None, "") else str(by)
    try:
        em = result.emmeans(term, by=by, type=type, level=level)
        eff = result.effects(term, by=by, level=level)
        pr = marginal.pairs(result, term, by=by, adjust=adjust, type=type) if eff.attrs["kind"] == "points" else None
    except GlmmInputError as exc:
        raise FieldError(_field_of(str(exc)), str(exc)) from None
    keys = [c for c in em.columns if c not in ("estimate", "SE", "df", "lower", "upper")]
    out = {
        "term": em.attrs["term"], "by": by, "type": em.attrs["type"], "level": em.attrs["level"],
        "kind": eff.attrs["kind"], "response": eff.attrs.get("response"),
        "emmeans": {"columns": list(em.columns), "rows": em.to_dict(orient="records"), "note": em.attrs["note"]},
        "pairs": None if pr is None else {"adjust": pr.attrs["adjust"], "scale": pr.attrs["scale"],
                                          "columns": list(pr.columns),
                                          "rows": pr.to_dict(orient="records"), "note": pr.attrs["note"]},
        "effects": {"kind": eff.attrs["kind"], "x": eff.attrs["x"], "by": by,
                    "rows": eff.to_dict(orient="records")},
    }
    lv = result_view.level_text(em.attrs["level"])
    tables = [result_view._table(
        "emmeans", f"Estimated Marginal Means: {em.attrs['term']}" + (f" by {by}" if by else ""),
        keys + ["Estimate", "SE", "df", f"Lower {lv}", f"Upper {lv}"],
        ["text"] * len(keys) + ["decimal", "decimal", "df", "decimal", "decimal"],
        [[r[k] for k in keys] + [r["estimate"], r["SE"], r["df"], r["lower"], r["upper"]]
         for r in out["emmeans"]["rows"]], note=em.attrs["note"])]
    if pr is not None:
        bys = [c for c in pr.columns if c not in ("contrast", "estimate", "SE", "df", "statistic", "p")]
        tables.append(result_view._table(
            "pairs", f"Pairwise Comparisons: {em.attrs['term']} ({pr.attrs['adjust']})",
            bys + ["Contrast", {"ratio": "Ratio", "odds ratio": "Odds ratio"}.get(pr.attrs["scale"], "Estimate"), "SE",
                   "df", "t" if result.link == "identity" and
                   result.family == "gaussian" else "z", "p"],
            ["text"] * (len(bys) + 1) + ["decimal", "decimal", "df", "decimal", "p"],
            [[r[k] for k in bys] + [r["contrast"], r["estimate"], r["SE"], r["df"], r["statistic"], r["p"]]
             for r in out["pairs"]["rows"]], note=pr.attrs["note"]))
    out["tables"] = tables
    return jsonable(out)


def _field_of(message: str) -> str:
    first = message.split(" ", 1)[0]
    return first if first in ("term", "by", "type", "level", "adjust", "at", "n_grid") else "term"
