"""The web API of omnibus tests, marginal means, pairwise comparisons and effect plots (issue 19 points 3 and 5):
the numbers equal result.anova() / emmeans() / pairs() of the same fit in Python (1e-9 relative), for a fit of this
session and for a saved model; answers are valid JSON (GLMM df: null, never Infinity); bad choices get 422 naming
the field."""

from __future__ import annotations

import json

import numpy as np

import glmmlab
from tests.web.test_glmm_api import close, frame_of, run, samples  # noqa: F401  (fixture)

FORMULA = "score ~ study_hours + track + (1 | school)"


def _python_fit(client, ds, **options):
    return glmmlab.glmm(FORMULA, frame_of(client, ds["id"], ["score", "study_hours", "track", "school"]), **options)


def test_fit_anova_emmeans_pairs_and_effects(client, samples):
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], formula=FORMULA)
    want = _python_fit(client, ds)
    a = client.get(f"/api/glmm/fits/{job['id']}/anova").json()
    terms = a["anova_terms"]
    assert terms["test"] == "F" and terms["type"] == "III" and [r["term"] for r in terms["rows"]] == \
        ["study_hours", "track"]
    wa = want.anova()
    for r in terms["rows"]:
        assert r["df"] == wa.loc[r["term"], "Df"]
        assert close(r["statistic"], wa.loc[r["term"], "F"]) and close(r["den_df"], wa.loc[r["term"], "DenDF"], 1e-6)
    assert a["table"]["name"] == "omnibus" and a["table"]["columns"][:4] == ["Term", "Df", "DenDF", "F"]
    assert job["result"]["anova_terms"] == terms  # the same in the fit's document

    r = client.get(f"/api/glmm/fits/{job['id']}/emmeans", params={"term": "track", "adjust": "holm"})
    assert r.status_code == 200, r.text
    m = r.json()
    em, pr = want.emmeans("track"), want.pairs("track", adjust="holm")
    assert m["kind"] == "points" and [row["track"] for row in m["emmeans"]["rows"]] == list(em["track"])
    np.testing.assert_allclose([row["estimate"] for row in m["emmeans"]["rows"]], em["estimate"], rtol=1e-9)
    np.testing.assert_allclose([row["df"] for row in m["emmeans"]["rows"]], em["df"], rtol=1e-6)
    np.testing.assert_allclose([row["p"] for row in m["pairs"]["rows"]], pr["p"], rtol=1e-6)
    assert [t["name"] for t in m["tables"]] == ["emmeans", "pairs"]
    line = client.get(f"/api/glmm/fits/{job['id']}/emmeans", params={"term": "study_hours", "by": "track"}).json()
    assert line["kind"] == "line" and line["pairs"] is None and len(line["effects"]["rows"]) == 20 * 3
    assert set(line["effects"]["rows"][0]) == {"x", "by", "estimate", "lower", "upper", "SE"}


def test_bad_choices_name_the_field(client, samples):
    ds = samples["school scores"]
    job = run(client, dataset_id=ds["id"], formula=FORMULA)
    for params, field in (({"term": "nope"}, "term"), ({"term": "track", "adjust": "x"}, "adjust"),
                          ({"term": "track", "type": "odds"}, "type"), ({"term": "track", "by": "track"}, "by")):
        r = client.get(f"/api/glmm/fits/{job['id']}/emmeans", params=params)
        assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)


def test_saved_model_and_glmm_json_is_clean(client, samples):
    ds = samples["clinic recovery"]
    job = run(client, dataset_id=ds["id"], formula="recovered ~ age + severity + (1 | clinic)", family="binomial")
    model = client.post("/api/models", json={"fit_id": job["id"], "name": "recovery"}).json()
    a = client.get(f"/api/models/{model['id']}/anova").json()
    assert a["anova_terms"]["test"] == "Chisq" and [r["term"] for r in a["anova_terms"]["rows"]] == ["age", "severity"]
    assert a["anova_terms"]["rows"][1]["df"] == 2
    r = client.get(f"/api/models/{model['id']}/emmeans", params={"term": "severity"})
    assert r.status_code == 200, r.text
    json.loads(r.text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN or Infinity
    m = r.json()
    assert all(row["df"] is None for row in m["emmeans"]["rows"])  # asymptotic: infinite df
    assert all(0 < row["estimate"] < 1 for row in m["emmeans"]["rows"])  # probabilities (the response scale)


def test_a_logit_models_pairs_are_odds_ratios_on_the_response_scale(client, samples):
    """Issue 19.5 as emmeans: means on the response scale compare as odds ratios (logit) or ratios (log), "a / b";
    type=link gives the differences."""
    from glmmlab.services.modeling.marginal import pairs

    ds = samples["clinic recovery"]
    formula = "recovered ~ age + severity + (1 | clinic)"
    job = run(client, dataset_id=ds["id"], formula=formula, family="binomial")
    want = glmmlab.glmm(formula, frame_of(client, ds["id"], ["recovered", "age", "severity", "clinic"]),
                        family="binomial")
    m = client.get(f"/api/glmm/fits/{job['id']}/emmeans", params={"term": "severity"}).json()
    theirs = pairs(want, "severity", type="response")
    assert m["pairs"]["scale"] == "odds ratio"
    assert [r["contrast"] for r in m["pairs"]["rows"]] == theirs["contrast"].tolist()
    assert all(" / " in r["contrast"] for r in m["pairs"]["rows"])
    np.testing.assert_allclose([r["estimate"] for r in m["pairs"]["rows"]], theirs["estimate"], rtol=1e-6)
    table = next(t for t in m["tables"] if t["name"] == "pairs")
    assert table["columns"][:3] == ["Contrast", "Odds ratio", "SE"] and "odds ratios of the means" in table["note"]
    link = client.get(f"/api/glmm/fits/{job['id']}/emmeans", params={"term": "severity", "type": "link"}).json()
    assert link["pairs"]["scale"] == "difference" and " - " in link["pairs"]["rows"][0]["contrast"]
    np.testing.assert_allclose(np.exp([r["estimate"] for r in link["pairs"]["rows"]]),
                               [r["estimate"] for r in m["pairs"]["rows"]], rtol=1e-9)
