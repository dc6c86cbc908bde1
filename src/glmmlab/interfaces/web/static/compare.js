/* Analysis > Compare Models...: choose two or more saved models of one dataset; the server refits them from the
 * dataset (REML fits by ML) and answers lme4's anova table, the notes and one sentence that reads it
 * (POST /api/models/compare). Data reach the page only as text nodes (glmmlab.el). */
(function () {
  "use strict";
  const g = window.glmmlab;
  const { el, append, clear, api } = g;
  let dlg = null;

  function build() {
    const list = el("div", { class: "checklist compare-models", role: "group", "aria-label": "Saved models" });
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const result = el("section", { class: "compare-result", "aria-live": "polite" });
    const submit = el("button", { type: "submit", class: "primary", dataset: { submit: "" } }, "Compare");
    const close = el("button", { type: "button", value: "cancel" }, "Close");
    const form = el("form", { method: "dialog", class: "dialog-body" },
      el("h2", { id: "dlg-compare-title" }, "Compare Models"),
      el("p", { class: "muted" }, "Choose two or more saved models of one dataset. Each is refitted from the " +
        "dataset; Gaussian (REML) fits are refitted by maximum likelihood. Rows are ordered by the number of " +
        "parameters and each is tested against the row before it (a likelihood-ratio test, as lme4's anova)."),
      list, error, result, el("div", { class: "buttons" }, close, submit));
    const d = el("dialog", { id: "dlg-compare", class: "dialog wide", "aria-labelledby": "dlg-compare-title" }, form);
    close.addEventListener("click", () => d.close());
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const ids = [...list.querySelectorAll("input:checked")].map((c) => Number(c.value));
      g.showError(error, "");
      clear(result);
      if (ids.length < 2) { g.showError(error, "Choose at least two saved models to compare."); return; }
      submit.disabled = true;
      submit.textContent = "Comparing...";
      try {
        show(result, await api.post("/api/models/compare", { model_ids: ids }));
      } catch (err) {
        g.showError(error, err.message || String(err));
      } finally {
        submit.disabled = false;
        submit.textContent = "Compare";
      }
    });
    document.body.appendChild(d);
    return d;
  }

  function show(box, out) {
    const body = out.rows.map((row, i) => el("tr", {}, row.map((v, j) => el("td", {
      class: v === null ? "na" : (out.kinds[j] !== "text" ? "num" : null),
      dataset: { value: v === null ? "" : String(v) } }, out.cells[i][j]))));
    append(box,
      el("h3", {}, `Likelihood-ratio tests on ${out.dataset_name} (${out.n_obs} observations, ${out.family})`),
      el("table", { class: "grid result-grid", dataset: { table: "anova" } },
        el("thead", {}, el("tr", {}, out.columns.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, body)),
      el("p", { class: "compare-reading" }, el("b", {}, out.reading)),
      el("ul", { class: "muted compare-formulas" },
        Object.entries(out.formulas).map(([name, f]) => el("li", {}, `${name}: ${f}`))),
      out.notes.map((n) => el("p", { class: "muted note" }, `Note: ${n}.`)));
    // Add to Report: the table, the sentence that reads it, the formulas and the notes
    const status = el("p", { class: "muted report-status", "aria-live": "polite" });
    const add = el("button", { type: "button", class: "add-compare" }, "Add to Report...");
    const item = { kind: "table", title: `Compare Models: ${Object.keys(out.formulas).join(", ")}`,
      payload: { columns: out.columns, rows: out.rows, kinds: out.kinds,
        note: [out.reading].concat(Object.entries(out.formulas).map(([name, f]) => `${name}: ${f}.`),
          out.notes.map((n) => `Note: ${n}.`)).join(" ") } };
    add.addEventListener("click", () => g.addToReport({ heading: "Add Comparison to Report", inline: [{ item }],
      onAdded: (rep, a, sk) => g.addedStatus(status, rep, a, sk) }).catch((e) => { status.textContent = e.message; }));
    append(box, el("div", { class: "compare-report" }, add), status);
  }

  async function open() {
    dlg = dlg || build();
    const list = dlg.querySelector(".compare-models");
    clear(list);
    clear(dlg.querySelector(".compare-result"));
    g.showError(dlg.querySelector(".error"), "");
    const models = (await api.get("/api/models")).models;
    if (!models.length) list.append(el("p", { class: "muted" }, "No saved models yet: run a GLMM and save it."));
    for (const m of models) {
      list.append(el("label", { class: "check" },
        el("input", { type: "checkbox", value: String(m.id), name: "model" }),
        `${m.name} `, el("span", { class: "muted" }, `(${m.dataset_name || "deleted dataset"})`)));
    }
    g.showDialog(dlg);  // modal; focus returns to the opener on close
  }

  g.addMenuItem("Analysis", "Compare Models...", "compare-models");
  g.registerAction("compare-models", () => open().catch((err) => g.status(err.message)));
})();
