"""Reports (issue 19 point 6): choose which tables and plots go in and into which report (a new one made on the
way), no duplicates when added twice, intervals, omnibus tests, effect plots and Compare Models results as items,
and export as Word with real tables and pictures."""

from __future__ import annotations

import io

import docx

from tests.web.test_glmm_api import run, samples  # noqa: F401  (fixture)

FORMULA = "score ~ study_hours + track + (1 | school)"
PNG = b"\x89PNG\r\n\x1a\n"


def _model(client, samples, name="scores"):
    job = run(client, dataset_id=samples["school scores"]["id"], formula=FORMULA)
    r = client.post("/api/models", json={"fit_id": job["id"], "name": name})
    assert r.status_code == 201, r.text
    return job, r.json()


def test_the_dialog_lists_a_models_tables_and_plots_and_adds_the_chosen_ones_to_a_new_report(client, samples):
    _, model = _model(client, samples)
    first = client.post("/api/reports", json={"name": "First"}).json()
    choices = client.get(f"/api/models/{model['id']}/report-items").json()
    keys = {c["key"]: c for c in choices["items"]}
    assert keys["table:fixed-effects"]["checked"] and keys["table:omnibus"]["checked"]
    assert not keys["table:blup"]["checked"]  # a row per group: offered, not ticked
    assert keys["plot:caterpillar"]["kind"] == "plot" and not keys["plot:caterpillar"]["checked"]
    assert [r["name"] for r in choices["reports"]] == ["First"]

    chosen = ["table:fixed-effects", "table:omnibus", "plot:caterpillar", "effects?term=track",
              "emmeans?term=track", "pairs?term=track&adjust=holm", "effects?term=study_hours&by=track"]
    r = client.post(f"/api/models/{model['id']}/report", json={"new_report": "Second", "items": chosen})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["name"] == "Second" and rep["id"] != first["id"]
    assert [i["title"] for i in rep["items"]] == [
        "scores: Fixed Effects", "scores: Omnibus Tests (Type III)", "scores: Caterpillar Plot of Random Intercepts",
        "scores: Effect of track", "scores: Estimated Marginal Means: track",
        "scores: Pairwise Comparisons: track (holm)",
        "scores: Effect of study_hours by track"]
    assert [i["kind"] for i in rep["items"]] == ["table", "table", "plot", "plot", "table", "table", "plot"]
    assert rep["items"][1]["payload"]["rows"][1][0] == "track"
    assert len(rep["items"][5]["payload"]["rows"]) == 3  # 3 tracks: 3 pairs
    assert rep["added"] == [i["title"] for i in rep["items"]] and rep["skipped"] == []
    assert client.get(f"/api/reports/{first['id']}").json()["items"] == []  # the other report is untouched

    # clicked twice: nothing new
    again = client.post(f"/api/models/{model['id']}/report", json={"report_id": rep["id"], "items": chosen}).json()
    assert [i["id"] for i in again["items"]] == [i["id"] for i in rep["items"]]
    assert again["added"] == [] and len(again["skipped"]) == len(chosen)
    # the old one-button add (every table) and a plot added twice are not duplicated either
    client.post(f"/api/models/{model['id']}/report", json={"report_id": first["id"]})
    n = len(client.get(f"/api/reports/{first['id']}").json()["items"])
    client.post(f"/api/models/{model['id']}/report", json={"report_id": first["id"]})
    client.post(f"/api/models/{model['id']}/plots/qq/report", json={"report_id": first["id"]})
    client.post(f"/api/models/{model['id']}/plots/qq/report", json={"report_id": first["id"]})
    assert len(client.get(f"/api/reports/{first['id']}").json()["items"]) == n + 1


def test_bad_choices_and_bad_new_names_are_answered_naming_the_field_and_create_nothing(client, samples):
    _, model = _model(client, samples)
    for body, field in (({"new_report": "  ", "items": ["table:fixed-effects"]}, "new_report"),
                        ({"new_report": "X", "items": ["table:nope"]}, "items"),
                        ({"new_report": "X", "items": ["effects?term=nope"]}, "term"),
                        ({"new_report": "X", "items": ["pairs?term=study_hours"]}, "items"),
                        ({"new_report": "X", "items": []}, "items")):
        r = client.post(f"/api/models/{model['id']}/report", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert client.get("/api/reports").json()["reports"] == []


def test_a_run_that_is_not_saved_adds_its_tables_and_effect_plot(client, samples):
    job = run(client, dataset_id=samples["school scores"]["id"], formula=FORMULA)
    choices = client.get(f"/api/glmm/fits/{job['id']}/report-items").json()["items"]
    assert "plot:residuals" in [c["key"] for c in choices]
    r = client.post(f"/api/glmm/fits/{job['id']}/report",
                    json={"name": "run A", "items": ["table:fixed-effects", "effects?term=track", "plot:residuals"]})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["name"] == "Report"  # none existed: one is made
    assert [i["title"] for i in rep["items"]] == ["run A: Fixed Effects", "run A: Effect of track",
                                                  "run A: Residuals vs Fitted"]
    import base64
    assert base64.b64decode(rep["items"][1]["payload"]["png_base64"]).startswith(PNG)
    png = client.get(f"/api/glmm/fits/{job['id']}/effects.png", params={"term": "study_hours", "by": "track"})
    assert png.status_code == 200 and png.content.startswith(PNG)
    svg = client.get(f"/api/glmm/fits/{job['id']}/effects.svg", params={"term": "track"})
    assert svg.status_code == 200 and b"<svg" in svg.content
    bad = client.get(f"/api/glmm/fits/{job['id']}/effects.png", params={"term": "nope"})
    assert bad.status_code == 422 and bad.json()["field"] == "term"


def test_intervals_and_compare_results_posted_as_items_are_added_once(client):
    rep = client.post("/api/reports", json={"name": "R"}).json()
    compare = {"kind": "table", "title": "Compare Models: a, b",
               "payload": {"columns": ["Model", "AIC", "Pr(>Chisq)"], "rows": [["a", 10.5, None], ["b", 9.25, 0.01]],
                           "kinds": ["text", "decimal", "p"], "note": "refitted by ML"}}
    intervals = {"kind": "table", "title": "m: Profile Intervals",
                 "payload": {"columns": ["Parameter", "Lower", "Upper"], "rows": [["sigma", 1.0, 2.0]]}}
    for _ in range(2):
        out = client.post(f"/api/reports/{rep['id']}/items", json={"items": [compare, intervals]}).json()
    assert [i["title"] for i in out["items"]] == ["Compare Models: a, b", "m: Profile Intervals"]
    assert out["skipped"] == ["Compare Models: a, b", "m: Profile Intervals"]


def test_a_report_exports_as_word_with_real_tables_and_pictures(client, samples):
    _, model = _model(client, samples)
    rep = client.post(f"/api/models/{model['id']}/report",
                      json={"new_report": "Word", "items": ["table:omnibus", "effects?term=track"]}).json()
    r = client.get(f"/api/reports/{rep['id']}/export", params={"format": "docx"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.wordprocessingml")
    assert 'filename="Word.docx"' in r.headers["content-disposition"]
    doc = docx.Document(io.BytesIO(r.content))
    assert doc.paragraphs[0].text == "Word"
    assert [p.text for p in doc.paragraphs if p.style.name.startswith("Heading 2")] == [
        "scores: Omnibus Tests (Type III)", "scores: Effect of track"]
    (table,) = doc.tables
    omnibus = rep["items"][0]["payload"]
    assert [c.text for c in table.rows[0].cells] == omnibus["columns"] == ["Term", "Df", "DenDF", "F", "Pr(>F)"]
    assert [c.text for c in table.rows[2].cells] == omnibus["cells"][1] and table.rows[2].cells[0].text == "track"
    assert table.rows[2].cells[1].text == "2"
    (shape,) = doc.inline_shapes
    blob = doc.part.related_parts[shape._inline.graphic.graphicData.pic.blipFill.blip.embed].blob
    assert blob.startswith(PNG)
