/* The GLMM tab (kind "glmm"), the Model Detail tab ("model"), the Diagnostics tab ("diagnostics") and the Reports
 * tab ("report"). Everything goes through the JSON API (/api/glmm, /api/models, /api/reports); data reach the page
 * only as text nodes (glmmlab.el), never as HTML. */
(function () {
  "use strict";
  const g = window.glmmlab;
  const { el, clear, api } = g;
  const BLUP_ROWS = 50;
  let optionsCache = null;

  function options() {
    if (!optionsCache) optionsCache = api.get("/api/glmm/options").catch((err) => { optionsCache = null; throw err; });
    return optionsCache;
  }

  // ---- tables ---------------------------------------------------------------------------------------------
  // Every results table comes from the server's one result view: `rows` hold the values (kept in data-value),
  // `cells` the same values written by the one number formatter (glmmlab/services/numbers.py); the page never
  // formats a number itself.

  function levelText(level) { return `${+(level * 100).toPrecision(10)}%`; }

  function isNumberKind(kind, i) { return (Array.isArray(kind) ? kind[i] : kind) !== "text"; }

  /* A results table from a view table {name, columns, kinds, rows, cells}; `limit` shows only the first rows. */
  function resultTable(t, limit, name) {
    const n = limit === undefined ? t.rows.length : Math.min(limit, t.rows.length);
    const body = [];
    for (let i = 0; i < n; i++) {
      body.push(el("tr", {}, t.rows[i].map((v, j) => el("td", {
        class: v === null ? "na" : (isNumberKind(t.kinds[j], i) ? "num" : null),
        dataset: { value: v === null ? "" : String(v) } }, t.cells[i][j]))));
    }
    // in a frame of its own: a wide table scrolls sideways inside it, the page and the border stay put
    return el("div", { class: "table-frame", dataset: { frameOf: name || t.name } },
      el("table", { class: "grid result-grid", dataset: { table: name || t.name } },
        el("thead", {}, el("tr", {}, t.columns.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, body)));
  }

  // ---- plots: a thumbnail that opens full size in a dialog, with PNG and SVG downloads ------------------------

  function plotFigure(p, name, extra) {
    const thumb = el("button", { type: "button", class: "plot-open", title: `Open “${p.title}” full size`,
      "aria-label": `Open ${p.title} full size` },
    el("img", { src: p.url, alt: p.title, loading: "lazy", width: "504", height: "360" }));
    thumb.addEventListener("click", () => openPlot(p, name));
    return el("figure", { class: "plot", dataset: { kind: p.kind } }, thumb,
      el("figcaption", {}, el("span", {}, p.title), extra || null));
  }

  function openPlot(p, name) {
    const svg = p.svg_url || p.url.replace(/\.png$/, ".svg");
    const base = fileName(`${name || "model"} ${p.title}`);
    const dlg = el("dialog", { class: "dialog plot-dialog", "aria-label": p.title },
      el("div", { class: "dialog-body" },
        el("h2", {}, p.title),
        el("img", { src: p.url, alt: p.title, class: "plot-full", width: "1008", height: "720" }),
        el("div", { class: "buttons" },
          el("a", { class: "button download-png", href: p.url, download: `${base}.png` }, "Download PNG"),
          el("a", { class: "button download-svg", href: svg, download: `${base}.svg` }, "Download SVG"),
          el("button", { type: "button", class: "close-plot", onclick: () => dlg.close() }, "Close"))));
    dlg.addEventListener("close", () => setTimeout(() => dlg.remove(), 0));
    document.body.appendChild(dlg);
    g.showDialog(dlg);
    dlg.querySelector(".close-plot").focus();
  }

  // Copy (tab-separated, the cells as shown: pastes into a spreadsheet) and CSV (the values at full precision).
  // A text cell that a spreadsheet would run as a formula (=, +, -, @, tab, carriage return first) gets a leading
  // ' (OWASP's CSV-injection advice); numbers and plain-number text such as -1.5 stay as they are. The same rule
  // as glmmlab.services.views.numbers.spreadsheet_safe.
  function spreadsheetSafe(v) {
    if (typeof v !== "string" || !/^[=+\-@\t\r]/.test(v) || /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(v)) return v;
    return "'" + v;
  }

  function tsvOf(t) {
    const clean = (s) => spreadsheetSafe(String(s).replace(/[\t\r\n]+/g, " "));
    return [t.columns.map(clean).join("\t")].concat(t.cells.map((r) => r.map(clean).join("\t"))).join("\n") + "\n";
  }

  function csvOf(t) {
    const q = (v) => {
      const s = v === null || v === undefined ? "" : String(spreadsheetSafe(v));
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    };
    return [t.columns.map(q).join(",")].concat(t.rows.map((r) => r.map(q).join(","))).join("\r\n") + "\r\n";
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch (err) { /* no clipboard permission: fall back to a selection */ }
    const area = el("textarea", { class: "copy-buffer", readonly: true }, text);
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    if (!ok) throw new Error("The browser did not allow copying; select the table and copy it instead.");
  }

  function fileName(title) { return (title || "table").replace(/[^\w.-]+/g, "_").replace(/^_+|_+$/g, "") || "table"; }

  function tableTools(t, title) {
    const note = el("span", { class: "muted copy-status", "aria-live": "polite" });
    const copy = el("button", { type: "button", class: "copy-table", title: "Copy the table as tab-separated text (pastes into a spreadsheet)" }, "Copy");
    copy.addEventListener("click", async () => {
      try { await copyText(tsvOf(t)); note.textContent = "Copied."; } catch (err) { note.textContent = err.message; }
      setTimeout(() => { note.textContent = ""; }, 3000);
    });
    const csv = el("button", { type: "button", class: "csv-table", title: "Download the table as CSV (full precision)" }, "CSV");
    csv.addEventListener("click", () => {
      const url = URL.createObjectURL(new Blob([csvOf(t)], { type: "text/csv;charset=utf-8" }));
      const a = el("a", { href: url, download: `${fileName(title || t.title)}.csv`, hidden: true });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
    return el("span", { class: "table-tools" }, copy, csv, note);
  }

  function blupSection(t) {
    const box = el("div", { class: "blup" });
    const total = t.rows.length;
    let all = false;
    function render() {
      clear(box).appendChild(resultTable(t, all ? undefined : BLUP_ROWS));
      if (total > BLUP_ROWS) {
        box.appendChild(el("p", { class: "muted blup-count" },
          all ? `All ${total} rows shown. ` : `Showing ${BLUP_ROWS} of ${total} rows. `,
          el("button", { type: "button", class: "show-all", onclick: () => { all = !all; render(); } },
            all ? `Show first ${BLUP_ROWS} rows` : `Show all ${total} rows`)));
      }
    }
    render();
    return box;
  }

  function section(title, table, ...children) {
    return el("section", { class: "result-section", dataset: { section: title } },
      el("div", { class: "section-head" }, el("h3", {}, title), table ? tableTools(table, title) : null), ...children);
  }

  function warningsBox(disp) {
    if (!disp.warnings.length) return null;  // (the view's warnings)
    return el("div", { class: "warnings", role: "status" }, el("strong", {}, "Warnings"),
      el("ul", {}, disp.warnings.map((w) => el("li", {}, w))));
  }

  function formula(m) {
    const terms = [m.intercept ? "1" : "0"].concat(m.fixed);
    return `${m.response} ~ ${terms.join(" + ")} + (1 | ${m.group})`;
  }

  /* One section per table of the view; `feBox` (Model Detail) replaces the Fixed Effects table with a box the
   * page refills when the confidence level changes. */
  function tableSections(disp, extra) {
    extra = extra || {};
    return disp.tables.flatMap((t) => {
      if (t.name === "icc") {
        return section("ICC", t, el("p", { class: "icc", dataset: { value: t.rows[0][1] === null ? "" : String(t.rows[0][1]) } },
          "ICC: ", el("b", {}, t.cells[0][1])), t.note ? el("p", { class: "muted note" }, t.note) : null);
      }
      if (t.name === "fixed-effects" && extra.fixedEffects) {
        return [section(t.title, extra.fixedTable, extra.fixedEffects)].concat(extra.afterFixed ? [extra.afterFixed] : []);
      }
      const blup = t.name === "blup" || t.name.startsWith("blup-");
      const content = blup ? blupSection(t) : resultTable(t);
      return section(t.title, t, content, t.note && !blup ? el("p", { class: "muted note" }, t.note) : null);
    });
  }

  function renderResults(result, disp) {
    const out = el("div", { class: "results" });
    g.append(out,
      el("p", { class: "model-line" }, el("code", {}, disp.formula), disp.reference_text ? ` · ${disp.reference_text}` : "",
        ` · ${disp.family_label}, ${result.model.link} link · ${result.method}` +
        ` · ${result.converged ? "converged" : "not converged"} in ${disp.fit_time_text}`),
      warningsBox(disp), tableSections(disp));
    return out;
  }

  // ---- Add to Report: choose the tables and plots and the report (a new one made on the way) -----------------
  /* opts: { heading, choicesUrl (GET: {items: [{key, kind, title, checked}]}), postUrl (POST {items: keys,
   * report_id | new_report, ...extraBody}), extraBody, extra ([{key, kind, title, checked}] more server keys, e.g.
   * an effect plot), inline ([{item: {kind, title, payload}, checked}] items the page holds: intervals, Compare
   * Models), onAdded(rep, added, skipped) }. Adding what a report holds already adds nothing (the server says so). */
  async function addToReport(opts) {
    const [choices, reps] = await Promise.all([
      opts.choicesUrl ? api.get(opts.choicesUrl) : Promise.resolve({ items: [] }),
      api.get("/api/reports")]);
    const list = (reps.reports || []);
    const server = (choices.items || []).concat(opts.extra || []);
    const inline = opts.inline || [];
    const groups = [["Tables", server.filter((c) => c.kind === "table")], ["Plots", server.filter((c) => c.kind === "plot")]];
    const boxes = [];
    function group(label, entries) {
      if (!entries.length) return null;
      const inputs = entries.map((c) => {
        const input = el("input", { type: "checkbox", value: c.key, name: "report-item" });
        input.checked = !!c.checked;
        boxes.push({ input, choice: c });
        return el("label", { class: "check" }, input, c.title);
      });
      const all = el("button", { type: "button", class: "link select-all", "aria-label": `Select all ${label.toLowerCase()}` }, "all");
      const none = el("button", { type: "button", class: "link select-none", "aria-label": `Select no ${label.toLowerCase()}` }, "none");
      all.addEventListener("click", () => inputs.forEach((l) => { l.querySelector("input").checked = true; }));
      none.addEventListener("click", () => inputs.forEach((l) => { l.querySelector("input").checked = false; }));
      return el("fieldset", { class: "report-choices", dataset: { group: label.toLowerCase() } },
        el("legend", {}, label, " ", all, " · ", none), inputs);
    }
    const inlineBox = inline.length ? el("fieldset", { class: "report-choices", dataset: { group: "results" } },
      el("legend", {}, "Results"), inline.map((c) => {
        const input = el("input", { type: "checkbox", name: "report-item" });
        input.checked = c.checked !== false;
        boxes.push({ input, inline: c.item });
        return el("label", { class: "check" }, input, c.item.title);
      })) : null;
    const select = el("select", { class: "report-choice", id: "report-choice" },
      list.map((r) => el("option", { value: String(r.id) }, `${r.name} (${r.n_items} item${r.n_items === 1 ? "" : "s"})`)),
      el("option", { value: "new" }, "New report..."));
    select.value = list.length ? String(list[list.length - 1].id) : "new";
    const newName = el("input", { type: "text", class: "new-report-name", id: "new-report-name", maxlength: "300",
      value: list.length ? `Report ${list.length + 1}` : "Report" });
    const newRow = el("label", { class: "new-report-row" }, "New report name", newName);
    const nameError = el("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: "new_report" } });
    const error = el("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: "items" } });
    const showNew = () => { newRow.hidden = select.value !== "new"; };
    newName.addEventListener("input", () => g.showError(nameError, ""));
    select.addEventListener("change", () => { showNew(); if (select.value === "new") newName.select(); });
    showNew();
    const add = el("button", { type: "submit", class: "primary add-chosen" }, "Add");
    const cancel = el("button", { type: "button", class: "cancel-add" }, "Cancel");
    const form = el("form", { method: "dialog", class: "dialog-body" },
      el("h2", { id: "dlg-add-report-title" }, opts.heading || "Add to Report"),
      el("p", { class: "muted" }, "Choose what goes in and into which report. What the report holds already is not added again."),
      el("div", { class: "report-choice-groups" }, groups.map(([label, entries]) => group(label, entries)), inlineBox),
      error,
      el("label", { for: "report-choice" }, "Report", select), newRow, nameError,
      el("div", { class: "buttons" }, cancel, add));
    const dlg = el("dialog", { class: "dialog wide add-report-dialog", "aria-labelledby": "dlg-add-report-title" }, form);
    cancel.addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => setTimeout(() => dlg.remove(), 0));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      g.showError(error, ""); g.showError(nameError, "");
      const keys = boxes.filter((b) => b.input.checked && b.choice).map((b) => b.choice.key);
      const items = boxes.filter((b) => b.input.checked && b.inline).map((b) => b.inline);
      if (!keys.length && !items.length) { g.showError(error, "Choose at least one table or plot to add."); return; }
      const target = {};
      if (select.value === "new") {
        if (!newName.value.trim()) { g.showError(nameError, "New report name: give the report a name."); newName.focus(); return; }
        target.new_report = newName.value.trim();
      } else target.report_id = Number(select.value);
      add.disabled = true;
      try {
        let rep = null;
        const added = [], skipped = [];
        if (keys.length) {
          rep = await api.post(opts.postUrl, Object.assign({}, opts.extraBody || {}, target, { items: keys }));
          added.push(...rep.added); skipped.push(...rep.skipped);
        }
        if (items.length) {
          const id = rep ? rep.id : (target.report_id || (await api.post("/api/reports", { name: target.new_report })).id);
          rep = await api.post(`/api/reports/${id}/items`, { items });
          added.push(...rep.added); skipped.push(...rep.skipped);
        }
        dlg.close();
        g.emit("reports-changed", rep);
        if (opts.onAdded) opts.onAdded(rep, added, skipped);
      } catch (err) {
        const body = err.body || {};
        g.showError(body.field === "new_report" ? nameError : error, err.message);
      } finally { add.disabled = false; }
    });
    document.body.appendChild(dlg);
    g.showDialog(dlg);
    const first = dlg.querySelector("input[type=checkbox]");
    if (first) first.focus();
    return dlg;
  }

  /* The sentence a page shows after Add to Report, with a button that opens the report. */
  function addedStatus(status, rep, added, skipped) {
    const short = (t) => t.replace(/^[^:]*: /, "").replace(/ \(.*\)$/, "");
    const byKind = (kind) => rep.items.filter((i) => added.includes(i.title) && i.kind === kind).map((i) => short(i.title));
    const tables = byKind("table"), plots = byKind("plot");
    const parts = [];
    if (tables.length) parts.push(`${tables.length} table${tables.length === 1 ? "" : "s"} (${tables.join(", ")})`);
    if (plots.length) parts.push(`${plots.length} plot${plots.length === 1 ? "" : "s"} (${plots.join(", ")})`);
    clear(status);
    g.append(status, (parts.length ? `Added ${parts.join(" and ")}` : "Added nothing new") +
      ` to report “${rep.name}” (${rep.items.length} items)` +
      (skipped.length ? `; ${skipped.length} already there, not added again. ` : ". "),
    el("button", { type: "button", class: "open-report", onclick: () => g.openTab("report", { id: rep.id }, { title: rep.name }) }, "Open Report"));
  }

  // ---- Effects: effect plot, estimated marginal means and pairwise comparisons of a fixed-effect term -------
  /* The plot is drawn by the server (matplotlib, as every other plot: the same image opens full size, downloads as
   * PNG or SVG and goes into reports and Word files); the tables come from /emmeans (services/fits.marginal_view). */
  function effectsSection(result, base, modelName, reportFrom) {
    const terms = ((result.anova_terms || {}).rows || []).map((r) => r.term).filter((t) => !t.includes(":"));
    if (!terms.length) return null;
    const term = el("select", { class: "effect-term", id: `effect-term-${++formCounter}` }, terms.map((t) => el("option", { value: t }, t)));
    const by = el("select", { class: "effect-by", id: `effect-by-${formCounter}` });
    const adjust = el("select", { class: "effect-adjust", id: `effect-adjust-${formCounter}` },
      [["tukey", "Tukey"], ["holm", "Holm"], ["bonferroni", "Bonferroni"], ["none", "None"]].map(([v, l]) => el("option", { value: v }, l)));
    const adjustRow = el("label", { class: "inline effect-adjust-row" }, "Adjustment ", adjust);
    const error = el("p", { class: "field-error", role: "alert", hidden: true });
    const out = el("div", { class: "effects-out" });
    const status = el("p", { class: "muted effects-report-status", "aria-live": "polite" });
    const add = el("button", { type: "button", class: "add-effects" }, "Add to Report...");
    function fillBy() {
      const keep = by.value;
      clear(by).appendChild(el("option", { value: "" }, "(none)"));
      for (const t of terms) if (t !== term.value) by.appendChild(el("option", { value: t }, t));
      by.value = terms.includes(keep) && keep !== term.value ? keep : "";
    }
    const query = (extra) => {
      const q = new URLSearchParams({ term: term.value });
      if (by.value) q.set("by", by.value);
      for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
      return q.toString();
    };
    let seq = 0, last = null;
    async function load() {
      const mine = ++seq;
      g.showError(error, "");
      let v;
      try { v = await api.get(`${base}/emmeans?${query({ adjust: adjust.value })}`); } catch (e) {
        if (mine === seq) { clear(out); g.showError(error, e.message); }
        return;
      }
      if (mine !== seq) return;
      last = v;
      adjustRow.hidden = v.kind !== "points";
      const title = `Effect of ${v.term}${v.by ? ` by ${v.by}` : ""}`;
      const p = { kind: "effects", title, url: `${base}/effects.png?${query({ name: modelName() })}`,
        svg_url: `${base}/effects.svg?${query({ name: modelName() })}` };
      clear(out).append(el("div", { class: "plots effect-plots" }, plotFigure(p, modelName())),
        el("div", { class: "effect-tables" }, v.tables.map((t) => el("div", { class: "effect-table", dataset: { table: t.name } },
          el("div", { class: "section-head" }, el("h4", {}, t.title), tableTools(t, t.title)),
          resultTable(t, undefined, t.name), t.note ? el("p", { class: "muted note" }, t.note) : null))));
    }
    term.addEventListener("change", () => { fillBy(); load(); });
    by.addEventListener("change", load);
    adjust.addEventListener("change", load);
    add.addEventListener("click", () => {
      if (!last) return;
      const key = (what, extra) => `${what}?${new URLSearchParams(Object.assign({ term: last.term }, last.by ? { by: last.by } : {}, extra || {}))}`;
      const extra = [{ key: key("effects"), kind: "plot", title: `Effect of ${last.term}${last.by ? ` by ${last.by}` : ""}`, checked: true }]
        .concat(last.tables.map((t) => ({ key: t.name === "pairs" ? key("pairs", { adjust: adjust.value }) : key("emmeans"),
          kind: "table", title: t.title, checked: true })));
      addToReport({ heading: "Add Effects to Report", postUrl: reportFrom.postUrl, extraBody: reportFrom.extraBody(), extra,
        onAdded: (rep, a, sk) => addedStatus(status, rep, a, sk) }).catch((e) => { status.textContent = e.message; });
    });
    fillBy();
    load();
    return el("section", { class: "result-section effects-section", dataset: { section: "Effects" } },
      el("div", { class: "section-head" }, el("h3", {}, "Effects"), add),
      el("p", { class: "muted note" }, "Predicted values on the response scale, other covariates at their means and factors averaged over (as emmeans). For a factor: its estimated marginal means and their pairwise comparisons."),
      el("div", { class: "field inline-field effect-controls" },
        el("label", { class: "inline", for: term.id }, "Term ", term), " ",
        el("label", { class: "inline", for: by.id }, "By ", by), " ", adjustRow),
      error, out, status);
  }

  // ---- the GLMM form --------------------------------------------------------------------------------------

  function field(name, label, control, extra) {
    const err = el("p", { class: "field-error", role: "alert", hidden: true, dataset: { errorFor: name } });
    return { row: el("div", { class: "field", dataset: { field: name } },
      el("label", { class: "field-label", for: control.id }, label), el("div", { class: "field-control" }, control, extra || null), err), err };
  }

  let formCounter = 0;

  /* The variable roles, as jamovi's GAMLj module has them. A column plays one role at a time; the single roles
   * hold one column, the others a list. `fits` says which columns a role takes, `refuse` why another does not. */
  const ROLES = [
    { key: "response", label: "Dependent Variable", single: true, none: "— choose —",
      hint: "The Response Variable (Y): numeric, boolean / 0-1 (binomial), or a column of the ordinal scale (ordinal).",
      fits: (c) => c.numeric || c.dtype === "boolean" || (c.scale === "ordinal" && c.dtype === "string"),
      refuse: (c) => `${c.name} is ${c.dtype}: the Dependent Variable must be numeric or boolean, or a column ` +
        "whose measurement scale is ordinal (ordered categories)." },
    { key: "factors", label: "Factors",
      hint: "Categorical fixed effects: string or boolean columns.",
      fits: (c) => c.categorical && !c.numeric,
      refuse: (c) => `${c.name} is ${c.dtype}: a factor needs a string or boolean column. Make it a Covariate, ` +
        "or change its type to string in the dataset (numbers as text keep their numeric order)." },
    { key: "fixed", label: "Covariates", hint: "Numeric fixed effects (X).",
      fits: (c) => c.numeric,
      refuse: (c) => `${c.name} is ${c.dtype}: a covariate must be numeric; make it a Factor or a Cluster Variable.` },
    { key: "group", label: "Cluster Variables",
      hint: "The Group Variables: a random intercept per group. Any column, numeric IDs too.",
      fits: () => true, refuse: () => "" },
    { key: "offset", label: "Offset", single: true, none: "— none —", extra: true,
      hint: "Enters with coefficient 1, e.g. log(exposure).",
      fits: (c) => c.numeric, refuse: (c) => `${c.name} is ${c.dtype}: the Offset must be numeric.` },
    { key: "weights", label: "Weights", single: true, none: "— none —", extra: true, hint: "Prior weights.",
      fits: (c) => c.numeric, refuse: (c) => `${c.name} is ${c.dtype}: Weights must be numeric.` },
    { key: "trials", label: "Trials", single: true, none: "— none —", extra: true,
      hint: "Binomial: trials per row; the Dependent Variable counts successes.",
      fits: (c) => c.numeric, refuse: (c) => `${c.name} is ${c.dtype}: Trials must be numeric.` },
  ];
  const ROLE = Object.fromEntries(ROLES.map((r) => [r.key, r]));

  /* The model the GLMM tab describes, one record behind the role lists, the two builders and the formula:
   * the roles (single: a column name or ""; lists: names in order), `terms` the fixed part (arrays of names: main
   * effects first, then interactions by degree, as lme4 expands a formula) and `cl` each cluster variable's random
   * effects {intercept, slopes: Set, correlated, nestedIn}. */
  function emptyModel() {
    return { response: "", factors: [], fixed: [], group: [], offset: "", weights: "", trials: "", terms: [], cl: {} };
  }

  function copyModel(m) {
    const cl = {};
    for (const [k, c] of Object.entries(m.cl)) cl[k] = { intercept: c.intercept, slopes: new Set(c.slopes), correlated: c.correlated, nestedIn: c.nestedIn || "", ...structureOf(c) };
    return { response: m.response, factors: m.factors.slice(), fixed: m.fixed.slice(), group: m.group.slice(), offset: m.offset,
      weights: m.weights, trials: m.trials, terms: m.terms.map((t) => t.slice()), cl };
  }

  function byDegree(terms) { return terms.slice().sort((a, b) => a.length - b.length); }  // stable: R's order
  function termKey(t) { return t.slice().sort().join("\u0000"); }
  function quote(name) { return /^[A-Za-z.][A-Za-z0-9._]*$/.test(name) && !/^\.\d/.test(name) ? name : "`" + name.replace(/`/g, "") + "`"; }

  /* The fixed part as written: "a * b" for a two-way interaction of neighbouring main effects when lme4 expands the
   * shorter text to the same terms in the same order; otherwise every term on its own. */
  function fixedParts(terms) {
    const mains = terms.filter((t) => t.length === 1).map((t) => t[0]);
    const inters = terms.filter((t) => t.length > 1);
    const plain = mains.map(quote).concat(inters.map((t) => t.map(quote).join(":")));
    const parts = [], done = new Set();
    for (let i = 0; i < mains.length; i++) {
      const a = mains[i], b = mains[i + 1];
      const k = b === undefined ? -1 : inters.findIndex((t, j) => !done.has(j) && t.length === 2 && t[0] === a && t[1] === b);
      if (k >= 0) { parts.push({ text: `${quote(a)} * ${quote(b)}`, mains: [a, b], inters: [inters[k]] }); done.add(k); i++; }
      else parts.push({ text: quote(a), mains: [a], inters: [] });
    }
    inters.forEach((t, j) => { if (!done.has(j)) parts.push({ text: t.map(quote).join(":"), mains: [], inters: [t] }); });
    const order = parts.flatMap((p) => p.mains.map((m) => [m])).concat(byDegree(parts.flatMap((p) => p.inters)));
    const want = mains.map((m) => [m]).concat(inters);
    const same = order.length === want.length && order.every((t, i) => t.join(":") === want[i].join(":"));
    return same ? parts.map((p) => p.text) : plain;
  }

  /* A cluster's covariance structure (glmmTMB's keywords): "" unstructured (lme4's default), "diag" or "cs" over its
   * intercept and slopes, "ar1", "toep" or "ou" over one column of occasions or times (`time`: 0 + time). */
  const STRUCTURES = [["", "Unstructured"], ["diag", "Diagonal"], ["cs", "Compound symmetry"], ["ar1", "AR(1)"],
    ["toep", "Toeplitz"], ["ou", "Continuous-time AR(1)"]];
  const OVER_TIME = ["ar1", "toep", "ou"];
  function structureOf(c) { return { structure: c.structure || "", time: c.time || "" }; }

  function randomTerm(c, grouping, eff) {
    if (OVER_TIME.includes(c.structure)) return c.time ? `${c.structure}(0 + ${quote(c.time)} | ${grouping})` : null;
    if (c.structure) {
      const sl = eff.filter((e) => c.slopes.has(e)).map(quote);
      if (!c.intercept && !sl.length) return null;
      return `${c.structure}(${(c.intercept ? ["1"] : ["0"]).concat(sl).join(" + ")} | ${grouping})`;
    }
    const slopes = eff.filter((e) => c.slopes.has(e)).map(quote);
    if (!c.intercept && !slopes.length) return null;
    const lhs = (c.intercept ? ["1"] : ["0"]).concat(slopes);
    const columns = slopes.length + (c.intercept ? 1 : 0);
    return `(${lhs.join(" + ")} ${c.correlated || columns < 2 ? "|" : "||"} ${grouping})`;
  }

  function mainsOf(m) { return m.terms.filter((t) => t.length === 1).map((t) => t[0]); }

  /* The lme4 formula of a model record (`binomial`: whether Trials go into cbind(successes, trials - successes)). */
  function formulaOf(m, intercept, binomial) {
    const y = m.response ? quote(m.response) : "y";
    const lhs = m.trials && binomial ? `cbind(${y}, ${quote(m.trials)} - ${y})` : y;
    const fixed = (intercept ? [] : ["0"]).concat(fixedParts(m.terms));
    if (!fixed.length) fixed.push("1");
    if (m.offset) fixed.push(`offset(${quote(m.offset)})`);
    const eff = mainsOf(m);
    const random = m.group.map((name) => {
      const c = m.cl[name];
      return randomTerm(c, c.nestedIn ? `${quote(name)}:${quote(c.nestedIn)}` : quote(name), eff);
    }).filter(Boolean);
    return `${lhs} ~ ${fixed.concat(random).join(" + ")}`;
  }

  /* A saved form record of before the roles (issue 11's form: Group Variable, Fixed Effects (X), a Model section)
   * as a model record. */
  function modelOfOldRecord(st) {
    const m = emptyModel();
    const general = !!st.model_open;
    m.response = st.response || "";
    m.fixed = (st.fixed || []).slice();
    m.factors = general ? (st.factors || []).slice() : [];
    m.terms = m.fixed.concat(m.factors).map((x) => [x]).concat(byDegree(general ? (st.interactions || []) : []));
    const add = (name, r, nestedIn) => {
      if (!name || m.cl[name]) return;
      m.group.push(name);
      m.cl[name] = { intercept: r.intercept !== false, slopes: new Set(r.slopes || []), correlated: r.correlated !== false, nestedIn: nestedIn || "" };
    };
    add(st.group, st.first_random || {}, "");
    if (general) for (const r of st.random_rows || []) add(r.group, r, r.nestedIn);
    if (general) { m.offset = st.offset || ""; m.weights = st.weights || ""; m.trials = st.trials || ""; }
    return m;
  }

  function modelRecord(m) {
    return { response: m.response, factors: m.factors.slice(), fixed: m.fixed.slice(), group: m.group.slice(),
      offset: m.offset, weights: m.weights, trials: m.trials, terms: m.terms.map((t) => t.slice()),
      clusters: m.group.map((n) => ({ group: n, intercept: m.cl[n].intercept, slopes: Array.from(m.cl[n].slopes),
        correlated: m.cl[n].correlated, nestedIn: m.cl[n].nestedIn, ...structureOf(m.cl[n]) })) };
  }

  function modelOfRecord(r) {
    const m = emptyModel();
    for (const k of ["response", "offset", "weights", "trials"]) m[k] = r[k] || "";
    for (const k of ["factors", "fixed"]) m[k] = (r[k] || []).slice();
    m.terms = (r.terms || []).map((t) => t.slice());
    for (const c of r.clusters || []) {
      if (!c.group || m.cl[c.group]) continue;
      m.group.push(c.group);
      m.cl[c.group] = { intercept: c.intercept !== false, slopes: new Set(c.slopes || []), correlated: c.correlated !== false, nestedIn: c.nestedIn || "", ...structureOf(c) };
    }
    return m;
  }

  async function openGlmm(panel, params, tab) {
    tab.setTitle("GLMM");
    const n = ++formCounter;
    const id = (s) => `glmm${n}-${s}`;
    const opts = await options();
    const dsSelect = el("select", { id: id("dataset"), name: "dataset" });
    const family = el("select", { id: id("family"), name: "family" },
      opts.general_families.map((x) => el("option", { value: x.value }, x.label)));
    const link = el("select", { id: id("link"), name: "link" });
    const intercept = el("input", { type: "checkbox", id: id("intercept"), name: "intercept", checked: true });
    const level = el("input", { type: "number", id: id("conf"), name: "conf_level", value: "95", min: "50", max: "99.99", step: "any", class: "short" });
    const maxIter = el("input", { type: "number", id: id("maxiter"), name: "max_iter", value: "100", min: "1", step: "1", class: "short" });
    const tol = el("input", { type: "text", id: id("tol"), name: "tol", value: "1e-6", class: "short" });
    const ddf = el("select", { id: id("ddf"), name: "ddf" },
      el("option", { value: "auto" }, "Automatic (Satterthwaite t for Gaussian identity, else Wald z)"),
      el("option", { value: "none" }, "Wald z tests"),
      el("option", { value: "satterthwaite" }, "t tests, Satterthwaite df (Gaussian, identity)"));
    const dispersion = el("select", { id: id("dispersion"), name: "dispersion" },
      (opts.dispersion ? opts.dispersion.choices : ["estimated", "lme4"]).map((c) => el("option", { value: c },
        c === "estimated" ? "Estimated (a parameter of the likelihood, as glmmTMB)" : "lme4 (glmer's deviance / n)")));
    const formulaInput = el("input", { type: "text", id: id("formula"), name: "formula", class: "formula", spellcheck: "false",
      autocomplete: "off", "aria-describedby": id("formula-help") });
    // an ordinal response's categories, lowest first: shown from the formula check, editable (comma-separated)
    const levelsInput = el("input", { type: "text", id: id("levels"), name: "levels", class: "levels", spellcheck: "false",
      autocomplete: "off", placeholder: "lowest first, separated by commas" });
    let levelsEdited = false;  // the order was typed: it is sent with the check and the fit
    const formulaReset = el("button", { type: "button", class: "formula-reset", hidden: true, title: "Show the formula of the controls again" }, "Use the form");
    const formulaHelp = el("p", { class: "muted formula-help", id: id("formula-help") });
    // glmmTMB's further model parts: one-sided formulas (empty: none); either makes the model run as a formula
    const ziInput = el("input", { type: "text", id: id("zi"), name: "zi", class: "part-formula", spellcheck: "false",
      autocomplete: "off", placeholder: "e.g. ~ mined   or   ~ 1 + (1 | site)" });
    const dispInput = el("input", { type: "text", id: id("disp"), name: "disp", class: "part-formula", spellcheck: "false",
      autocomplete: "off", placeholder: "e.g. ~ x" });
    // the variables without a role, checked to be given one with a role's arrow button
    const varList = el("div", { class: "var-list", id: id("variables"), role: "group", "aria-label": "Variables without a role" });
    const roleError = el("p", { class: "field-error role-error", role: "alert", hidden: true });
    // the roles: a select for the single ones, a list for the others
    const roleBox = {};
    for (const r of ROLES) {
      roleBox[r.key] = r.single ? el("select", { id: id(r.key), name: r.key, class: "role-select" })
        : el("ul", { id: id(r.key), class: "role-list", "aria-label": r.label });
    }
    const termPick = el("div", { class: "checks inline-checks", role: "group", "aria-label": "Variables to interact" });
    const termAdd = el("button", { type: "button", class: "add-interaction", dataset: { key: "add-interaction" },
      title: "Check two or more variables above, then add their interaction" }, "Add interaction");
    const termList = el("ul", { class: "model-terms", "aria-label": "Fixed-effect terms" });
    const randomBox = el("div", { class: "random-rows" });
    const run = el("button", { type: "button", class: "primary run" }, "Run GLMM");
    // the heading's line: what model the controls (or the typed formula) describe
    const modelKind = el("p", { class: "muted model-kind", "aria-live": "polite" });
    // the form folded to its one-line model (results get the room), and the button that folds and unfolds it
    const summaryCode = el("code", { class: "summary-formula" });
    const formSummary = el("div", { class: "form-summary", hidden: true }, el("span", { class: "muted" }, "Model: "), summaryCode);
    const collapse = el("button", { type: "button", class: "collapse-form", "aria-expanded": "true",
      title: "Fold the form to its one-line model; press again to edit the model" }, "Collapse form");
    const formError = el("p", { class: "error", role: "alert", hidden: true });
    const runs = el("div", { class: "runs" });

    const f = {
      dataset_id: field("dataset_id", "Dataset", dsSelect),
      family: field("family", "Distribution Family", family),
      link: field("link", "Link Function", link),
      intercept: field("intercept", "Include intercept", intercept),
      conf_level: field("conf_level", "Confidence Level", level, el("span", { class: "unit" }, "%")),
      max_iter: field("max_iter", "Max Iterations", maxIter),
      tol: field("tol", "Convergence Tolerance", tol),
      ddf: field("ddf", "Fixed-effect tests", ddf),
      dispersion: field("dispersion", "Dispersion", dispersion),
      levels: field("levels", "Category order", levelsInput),
      formula: field("formula", "Model formula", formulaInput, formulaReset),
      zi: field("zi", "Zero-inflation / hurdle model", ziInput),
      disp: field("disp", "Dispersion model", dispInput),
      terms: field("terms", "Fixed Effects", el("div", { class: "builder term-builder" },
        el("p", { class: "muted builder-help" }, "Main effects: the Factors and Covariates. For an interaction check two or more, then Add interaction."),
        el("div", { class: "term-pick-row" }, termPick, termAdd),
        el("span", { class: "builder-caption" }, "Model terms"), termList)),
      random: field("random", "Random Effects", el("div", { class: "builder random-box" },
        el("p", { class: "muted builder-help" }, "Per cluster variable: its random intercept, random slopes of the fixed effects, correlated or not, nested within another variable."),
        randomBox)),
    };
    const arrows = {};
    for (const r of ROLES) {
      f[r.key] = field(r.key, r.label, roleBox[r.key]);
      f[r.key].row.classList.add("role");
      f[r.key].row.dataset.role = r.key;
      if (!r.single) f[r.key].row.querySelector("label").removeAttribute("for");
      arrows[r.key] = el("button", { type: "button", class: "move-to", dataset: { role: r.key, key: `to:${r.key}` },
        title: `Move the checked variables to ${r.label}`, "aria-label": `Move the checked variables to ${r.label}` }, "→");
      f[r.key].row.insertBefore(arrows[r.key], f[r.key].row.firstChild);
      f[r.key].row.appendChild(el("p", { class: "muted role-hint" }, r.hint));
    }
    for (const k of ["terms", "random"]) { f[k].row.querySelector("label").removeAttribute("for"); f[k].row.classList.add("stack"); }
    f.formula.row.classList.add("wide");
    f.formula.row.appendChild(formulaHelp);
    const roles = el("section", { class: "roles", "aria-label": "Variables and their roles" },
      el("div", { class: "var-source" },
        el("div", { class: "var-head" }, el("span", { class: "field-label" }, "Variables"),
          el("span", { class: "muted" }, "check, then → a role")),
        varList, roleError),
      el("div", { class: "role-fields" },
        el("div", { class: "role-col" }, ROLES.filter((r) => !r.extra).map((r) => f[r.key].row)),
        el("div", { class: "role-col" }, ROLES.filter((r) => r.extra).map((r) => f[r.key].row))));
    const form = el("form", { class: "glmm-form", novalidate: true, onsubmit: (e) => e.preventDefault() },
      el("h2", {}, "Generalized Linear Mixed Model (GLMM)"),
      modelKind,
      formSummary,
      el("div", { class: "form-grid" },
        el("div", { class: "col" }, f.dataset_id.row, f.family.row, f.link.row, f.levels.row),
        el("div", { class: "col" }, f.intercept.row, f.conf_level.row,
          el("details", { class: "advanced" }, el("summary", {}, "Advanced Options"), f.max_iter.row, f.tol.row,
            f.ddf.row, f.dispersion.row))),
      roles,
      el("div", { class: "builders" }, f.terms.row, f.random.row),
      f.formula.row,
      el("details", { class: "model-parts" }, el("summary", {}, "Zero-inflation / hurdle and dispersion"),
        el("p", { class: "muted builder-help" }, "Zero-inflation (Poisson, NB2, NB1): the probability of a structural zero, logit scale. "
          + "With a truncated family or ziGamma: the model of P(y = 0) (a hurdle). Dispersion: the family's dispersion on its log scale "
          + "(Gaussian variance, Gamma shape, NB theta, ...). Fitted by maximum likelihood, as glmmTMB."),
        f.zi.row, f.disp.row),
      formError,
      el("div", { class: "form-actions" }, run, collapse, el("span", { class: "muted keys" }, "Ctrl+Enter runs the model")));
    const tabBox = el("div", { class: "glmm-tab" }, form, runs);
    g.append(panel, tabBox);

    function setCollapsed(on) {
      form.classList.toggle("collapsed", on);
      formSummary.hidden = !on;
      summaryCode.textContent = formulaInput.value;
      collapse.textContent = on ? "Edit model" : "Collapse form";
      collapse.setAttribute("aria-expanded", on ? "false" : "true");
    }
    collapse.addEventListener("click", () => setCollapsed(!form.classList.contains("collapsed")));
    // Ctrl+Enter (Cmd+Enter) anywhere in the tab runs the model, as the Run GLMM button does
    tabBox.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !e.altKey) { e.preventDefault(); run.click(); }
    });

    let columns = [];
    let M = emptyModel();   // the model of the controls
    let typed = false;      // the Model formula was edited by hand: it is the model
    let matched = false;    // ... and the controls were set to express it (the next change of a control rewrites it)
    let notForm = "";       // why the controls cannot express the typed formula, once known
    let factorLevels = {};  // factor column -> {levels (R's order), reference}: from the last formula check
    const references = {};  // factor column -> the reference level chosen (absent: R's default, the first level)
    const picked = new Set();  // the variables checked in the Variables list

    const colOf = (name) => columns.find((c) => c.name === name);
    // families whose response can be successes of trials (Trials go into cbind(successes, trials - successes))
    const binomial = () => family.value === "binomial" || family.value === "betabinomial";

    /* Every family the engine fits, from the start (issue 19). */
    function fillFamilies() {
      const keep = family.value;
      const list = opts.general_families;
      if (Array.from(family.options).map((o) => o.value).join() === list.map((x) => x.value).join()) return;
      clear(family);
      for (const x of list) family.appendChild(el("option", { value: x.value }, x.label));
      if (list.some((x) => x.value === keep)) family.value = keep;
      else { family.value = list[0].value; fillLinks(); }
    }

    function fillLinks() {
      const fam = opts.general_families.find((x) => x.value === family.value);
      clear(link);
      for (const l of fam.links) link.appendChild(el("option", { value: l }, l === fam.canonical_link ? `${cap(l)} (canonical)` : cap(l)));
      link.value = fam.canonical_link;
      showLevels();
    }

    function hasDispersion() {
      const fam = opts.general_families.find((x) => x.value === family.value);
      return !!(fam && fam.dispersion_links && fam.dispersion_links.includes(link.value));
    }

    // ---- roles ----
    function roleOf(name) {
      for (const r of ROLES) if (r.single ? M[r.key] === name : M[r.key].includes(name)) return r.key;
      return "";
    }

    /* Take a variable out of its role, its fixed-effect terms and the random slopes. */
    function takeOut(name) {
      for (const r of ROLES) {
        if (r.single) { if (M[r.key] === name) M[r.key] = ""; } else M[r.key] = M[r.key].filter((x) => x !== name);
      }
      M.terms = M.terms.filter((t) => !t.includes(name));
      delete M.cl[name];
      for (const c of Object.values(M.cl)) c.slopes.delete(name);
    }

    /* Give a variable a role (out of any other: one role per variable); "" gives it back to the Variables list. */
    function giveRole(name, key) {
      takeOut(name);
      if (!key) return;
      if (ROLE[key].single) { if (M[key]) takeOut(M[key]); M[key] = name; } else M[key].push(name);
      if (key === "factors" || key === "fixed") {
        const k = M.terms.findIndex((t) => t.length > 1);
        M.terms.splice(k < 0 ? M.terms.length : k, 0, [name]);
      }
      if (key === "group") M.cl[name] = { intercept: true, slopes: new Set(), correlated: true, nestedIn: "" };
      if (key === "response") {
        const c = colOf(name);
        if (c && c.dtype === "boolean" && family.value !== "binomial") { family.value = "binomial"; fillLinks(); }
        // a column of the ordinal scale is an ordered factor: the ordinal family, its order from the formula check
        if (c && c.scale === "ordinal" && c.dtype !== "boolean" && family.value !== "ordinal") {
          family.value = "ordinal"; fillLinks();
        }
        levelsEdited = false; levelsInput.value = "";
      }
    }

    /* The role's arrow: the checked variables (or the one chosen) get the role; those it does not take are named. */
    function moveTo(key, names) {
      const r = ROLE[key];
      names = names || Array.from(picked).filter((x) => colOf(x) && !roleOf(x));
      if (!names.length) { roleMessage(`Check one or more variables in the Variables list, then press → next to ${r.label}.`); return; }
      if (r.single && names.length > 1) { roleMessage(`${r.label} holds one variable; check only one.`); return; }
      const refused = names.map(colOf).filter((c) => c && !r.fits(c));
      for (const c of names.map(colOf)) if (c && r.fits(c)) { giveRole(c.name, key); picked.delete(c.name); }
      roleMessage(refused.map((c) => r.refuse(c)).join(" "));
      changed();
    }

    function roleMessage(text) { g.showError(roleError, text || ""); }

    /* A double-click on a variable: the role its type suggests (a numeric column a covariate, a string or boolean
     * one a factor, any other a cluster variable). */
    function naturalRole(c) { return c.numeric ? "fixed" : ROLE.factors.fits(c) ? "factors" : "group"; }

    /* The columns of a new dataset (or a type changed): roles keep the columns that still fit them. */
    function keepFitting() {
      for (const r of ROLES) {
        const names = r.single ? (M[r.key] ? [M[r.key]] : []) : M[r.key].slice();
        for (const name of names) { const c = colOf(name); if (!c || !r.fits(c)) takeOut(name); }
      }
      for (const c of Object.values(M.cl)) if (c.nestedIn && !colOf(c.nestedIn)) c.nestedIn = "";
      for (const x of Array.from(picked)) if (!colOf(x) || roleOf(x)) picked.delete(x);
    }

    // keyboard focus survives a render: the element with the same data-key gets it back
    function focusKey() {
      const a = document.activeElement;
      return a && form.contains(a) && a.dataset && a.dataset.key ? a.dataset.key : null;
    }
    function refocus(key, fallback) {
      if (!key) return;
      const again = form.querySelector(`[data-key="${CSS.escape(key)}"]`) || (fallback ? form.querySelector(`[data-key="${CSS.escape(fallback)}"]`) : null);
      if (again && again !== document.activeElement) again.focus();
    }

    function typeText(c) { return c.dtype + (c.scale ? ` · ${c.scale}` : ""); }

    function renderRoles() {
      const none = (what) => (dsSelect.value ? what : "Choose a dataset first");
      clear(varList);
      const free = columns.filter((c) => !roleOf(c.name));
      if (!free.length) varList.appendChild(el("p", { class: "muted empty" }, dsSelect.value ? (columns.length ? "Every variable has a role." : "No columns.") : "Choose a dataset first."));
      for (const c of free) {
        const box = el("input", { type: "checkbox", class: "var-pick", value: c.name, checked: picked.has(c.name),
          dataset: { key: `var:${c.name}` }, onchange: (ev) => { if (ev.target.checked) picked.add(c.name); else picked.delete(c.name); } });
        const item = el("label", { class: "var", title: `${c.name} (${typeText(c)}). Double-click: make it a ${ROLE[naturalRole(c)].label.replace(/s$/, "").toLowerCase()}.` },
          box, el("span", { class: "var-name" }, c.name), el("span", { class: "var-type" }, c.dtype));
        item.addEventListener("dblclick", (ev) => { ev.preventDefault(); moveTo(naturalRole(c), [c.name]); });
        varList.appendChild(item);
      }
      for (const r of ROLES) {
        const box = roleBox[r.key];
        if (r.single) {
          const fitting = columns.filter((c) => r.fits(c));
          clear(box).appendChild(el("option", { value: "" }, fitting.length ? r.none : none("(no numeric columns)")));
          for (const c of fitting) {
            const other = roleOf(c.name);
            box.appendChild(el("option", { value: c.name }, `${c.name} (${c.dtype})${other && other !== r.key ? ` · now ${ROLE[other].label.replace(/s$/, "").toLowerCase()}` : ""}`));
          }
          box.value = M[r.key] || "";
          continue;
        }
        clear(box);
        if (!M[r.key].length) box.appendChild(el("li", { class: "empty muted" }, dsSelect.value ? "none" : "Choose a dataset first."));
        for (const name of M[r.key]) {
          const c = colOf(name);
          const item = el("li", { class: "role-item", dataset: { name } },
            el("span", { class: "var-name" }, name), c ? el("span", { class: "var-type" }, c.dtype) : null);
          if (r.key === "factors") item.appendChild(referenceSelect(name));
          item.appendChild(el("button", { type: "button", class: "remove-role", dataset: { key: `rm:${r.key}:${name}` },
            title: `Remove ${name} from ${r.label} (back to Variables)`, "aria-label": `Remove ${name} from ${r.label}`,
            onclick: () => { takeOut(name); changed(); refocus(`to:${r.key}`); } }, "×"));
          box.appendChild(item);
        }
      }
      f.trials.row.hidden = !binomial();
    }

    function referenceSelect(name) {
      const info = factorLevels[name];
      const sel = el("select", { class: "reference-level", "aria-label": `Reference level of ${name}`, title: `Reference level of ${name}`,
        dataset: { factor: name, key: `ref:${name}` }, disabled: !info, onchange: (ev) => {
          if (ev.target.value === info.levels[0]) delete references[name]; else references[name] = ev.target.value;
          changed();
        } });
      if (info) {
        info.levels.forEach((lv, i) => sel.appendChild(el("option", { value: lv }, i === 0 ? `${lv} (first level)` : lv)));
        sel.value = references[name] && info.levels.includes(references[name]) ? references[name] : info.levels[0];
      } else sel.appendChild(el("option", { value: "" }, "(levels when checked)"));
      return el("label", { class: "reference" }, el("span", { class: "muted" }, "reference "), sel);
    }

    /* The other columns a cluster can be nested within: the cluster variables first, then any other column. */
    function nestOptions(sel, except) {
      const clusters = M.group.filter((x) => x !== except);
      for (const x of clusters) sel.appendChild(el("option", { value: x }, x));
      const others = columns.filter((c) => c.name !== except && !clusters.includes(c.name));
      if (others.length) sel.appendChild(el("optgroup", { label: "Other columns" }, others.map((c) => el("option", { value: c.name }, c.name))));
    }

    function renderBuilders() {
      const eff = mainsOf(M);
      const keepPick = new Set(Array.from(termPick.querySelectorAll("input:checked")).map((i) => i.value));
      clear(termPick);
      if (!eff.length) termPick.appendChild(el("span", { class: "muted" }, "Give variables the Factors or Covariates role."));
      for (const e of eff) {
        termPick.appendChild(el("label", { class: "check" }, el("input", { type: "checkbox", value: e, checked: keepPick.has(e),
          dataset: { key: `pick:${e}` } }), e));
      }
      termAdd.disabled = eff.length < 2;
      clear(termList);
      if (!M.terms.length) termList.appendChild(el("li", { class: "empty muted" }, intercept.checked ? "Intercept only" : "No fixed effects"));
      for (const t of M.terms) {
        const label = t.join(":");
        const main = t.length === 1;
        termList.appendChild(el("li", { class: main ? "term main" : "term interaction", dataset: { term: label } },
          el("code", {}, label), el("span", { class: "muted" }, main ? (ROLE[roleOf(t[0])] ? ROLE[roleOf(t[0])].label.replace(/s$/, "").toLowerCase() : "")
            : `${t.length}-way interaction`),
          el("button", { type: "button", class: main ? "remove-term remove-main" : "remove-term remove-interaction",
            dataset: { key: `term:${label}` }, "aria-label": `Remove ${label}`,
            title: main ? `Remove ${label} from the model (back to Variables)` : `Remove ${label}`,
            onclick: () => { if (main) takeOut(t[0]); else M.terms = M.terms.filter((x) => x !== t); changed(); refocus("add-interaction"); } }, "×")));
      }
      clear(randomBox);
      if (!M.group.length) randomBox.appendChild(el("p", { class: "muted empty" }, "Give a variable the Cluster Variables role: its groups get a random intercept."));
      for (const name of M.group) {
        const c = M.cl[name];
        const key = (what) => `re:${name}:${what}`;
        const nest = el("select", { class: "nested-in", "aria-label": `${name} nested within`, dataset: { key: key("nest") },
          onchange: (ev) => { c.nestedIn = ev.target.value; changed(); } }, el("option", { value: "" }, "— not nested —"));
        nestOptions(nest, name);
        nest.value = c.nestedIn || "";
        randomBox.appendChild(el("div", { class: "random-row", dataset: { group: name } },
          el("span", { class: "grouping" }, name),
          el("label", { class: "check" }, el("input", { type: "checkbox", class: "intercept", checked: c.intercept, dataset: { key: key("1") },
            onchange: (ev) => { c.intercept = ev.target.checked; changed(); } }), "Intercept"),
          eff.map((e) => el("label", { class: "check" }, el("input", { type: "checkbox", class: "slope", value: e, checked: c.slopes.has(e),
            dataset: { key: key(`slope:${e}`) }, onchange: (ev) => { if (ev.target.checked) c.slopes.add(e); else c.slopes.delete(e); changed(); } }), e)),
          el("label", { class: "check", title: "Correlated random effects (one term); unticked: independent terms (||)" },
            el("input", { type: "checkbox", class: "correlated", checked: c.correlated, dataset: { key: key("corr") },
              disabled: (c.intercept ? 1 : 0) + eff.filter((e) => c.slopes.has(e)).length < 2,
              onchange: (ev) => { c.correlated = ev.target.checked; changed(); } }), "Correlated"),
          el("label", { class: "check nest" }, "nested within ", nest), structureControls(name, c, key)));
      }
    }

    /* The covariance-structure choice of a cluster row, with the column of occasions or times where it needs one. */
    function structureControls(name, c, key) {
      const pick = el("select", { class: "structure", "aria-label": `${name} covariance structure`, dataset: { key: key("structure") },
        title: "Covariance structure of this cluster's random effects (glmmTMB's us, diag, cs, ar1, toep, ou)",
        onchange: (ev) => { c.structure = ev.target.value; changed(); } },
        STRUCTURES.map(([v, label]) => el("option", { value: v }, label)));
      pick.value = c.structure || "";
      const parts = [el("label", { class: "check structure-choice" }, "covariance ", pick)];
      if (OVER_TIME.includes(c.structure)) {
        const time = el("select", { class: "structure-time", "aria-label": `${name} occasions`, dataset: { key: key("time") },
          onchange: (ev) => { c.time = ev.target.value; changed(); } }, el("option", { value: "" }, "— choose —"),
          columns.filter((x) => x.name !== name && (c.structure === "ou" ? x.numeric : true)).map((x) => el("option", { value: x.name }, x.name)));
        time.value = c.time || "";
        parts.push(el("label", { class: "check" }, c.structure === "ou" ? "times " : "occasions ", time));
      }
      return parts;
    }

    /* The heading's line: the model the controls (or the typed formula, from its last check) describe. */
    let lastCheck = null;
    function describeModel() {
      const fam = opts.general_families.find((x) => x.value === family.value);
      const kind = family.value === "gaussian" && link.value === "identity" ? "Linear mixed model" : "Generalized linear mixed model";
      const head = `${kind} · ${fam ? fam.label : family.value}, ${link.value} link`;
      if (typed && !matched) {
        const parts = lastCheck && lastCheck.formula === formulaInput.value.trim()
          ? lastCheck.random_terms.map((t) => `${t.terms.join(" + ")} | ${t.component}`) : null;
        modelKind.textContent = parts ? `${head} · random effects: ${parts.join("; ")}` : `${head} · the typed formula`;
        modelKind.dataset.kind = "typed";
        return;
      }
      const eff = mainsOf(M);
      const rows = M.group.map((name) => ({ group: name, c: M.cl[name] })).filter((x) => x.c.intercept || eff.some((e) => x.c.slopes.has(e)) || OVER_TIME.includes(x.c.structure));
      const slopes = (c) => eff.filter((e) => c.slopes.has(e));
      let what;
      if (!rows.length) what = "choose a Group Variable: give a column the Cluster Variables role";
      else if (rows.length === 1 && !slopes(rows[0].c).length && rows[0].c.intercept && !rows[0].c.nestedIn && !rows[0].c.structure) {
        what = `Random intercept model: g(μ) = Xβ + u_${rows[0].group}, u ~ N(0, σu²)`;
      } else {
        what = rows.map((x) => {
          const sl = slopes(x.c);
          const terms = (x.c.intercept ? ["intercept"] : []).concat(sl.map((e) => `slope of ${e}`));
          const by = x.c.nestedIn ? `${x.group} within ${x.c.nestedIn}` : x.group;
          const struct = STRUCTURES.find(([v]) => v === x.c.structure);
          if (x.c.structure && OVER_TIME.includes(x.c.structure)) return `${struct[1]} over ${x.c.time || "(choose its column)"} by ${by}`;
          if (x.c.structure) return `${terms.join(" and ")} by ${by} (${struct[1].toLowerCase()})`;
          return `${terms.join(" and ")} by ${by}${sl.length && x.c.intercept ? (x.c.correlated ? " (correlated)" : " (uncorrelated)") : ""}`;
        }).join("; ");
        const nested = rows.some((x) => x.c.nestedIn);
        const label = rows.length > 1 ? (nested ? "Nested random effects" : "Crossed random effects")
          : nested ? "Nested random effects" : "Random intercept and slopes";
        what = `${label}: ${what}`;
      }
      const fixedText = M.terms.length ? ` · fixed: ${M.terms.map((t) => t.join(":")).join(", ")}` : "";
      modelKind.dataset.kind = rows.length ? "form" : "none";
      modelKind.textContent = `${head}${fixedText} · ${what}`;
    }

    /* Another dataset: a new model (the old dataset's roles, formula and reference levels go). */
    function resetModel() {
      typed = false; matched = false; notForm = ""; lastCheck = null;
      M = emptyModel(); factorLevels = {};
      picked.clear();
      for (const k of Object.keys(references)) delete references[k];
      roleMessage("");
      for (const name of ["formula", "weights", "factors", "terms", "random", "response", "group"]) showFieldError(name, "");
    }

    /* The formula of the controls. */
    function formFormula() { return formulaOf(M, intercept.checked, binomial()); }

    /* The random-intercept form of the product page (one cluster variable with its intercept, covariates only, no
     * offset, weights or trials) runs as response/fixed/group; everything else as the formula. */
    function simple() {
      // the simple form offers the product page's families only (not the negative binomial nor glmmTMB's)
      if (typed || !opts.families.some((f) => f.value === family.value)) return false;
      if (ziInput.value.trim() || dispInput.value.trim()) return false;  // zero and dispersion models: a formula
      if (M.factors.length || M.offset || M.weights || (M.trials && binomial())) return false;
      if (M.group.length !== 1 || M.terms.some((t) => t.length > 1)) return false;
      const c = M.cl[M.group[0]];
      return c.intercept && !c.slopes.size && !c.nestedIn && !c.structure;
    }

    /* The server's description of a typed formula (model_form.form_of) as a model record, or {why} when the
     * controls cannot show it. */
    function stateOf(form) {
      const m = emptyModel();
      const fits = (key, name) => { const c = colOf(name); return c && ROLE[key].fits(c); };
      const put = (key, name) => {
        if ([m.response, m.offset, m.trials].includes(name) || m.factors.includes(name) || m.fixed.includes(name) ||
            m.group.includes(name)) return `${name} plays two roles in it (a variable has one role in the form)`;
        if (!fits(key, name)) return `${name} does not fit the ${ROLE[key].label} role`;
        if (ROLE[key].single) m[key] = name; else m[key].push(name);
        return "";
      };
      let why = put("response", form.response);
      if (!why && form.trials) why = put("trials", form.trials);
      if (!why && form.offset) why = put("offset", form.offset);
      const terms = form.terms || (form.fixed || []).concat(form.factors || []).map((x) => [x]).concat(form.interactions || []);
      for (const t of terms) {
        if (why) break;
        if (t.length === 1) why = put((form.factors || []).includes(t[0]) ? "factors" : "fixed", t[0]);
        m.terms.push(t.slice());
      }
      const rows = (form.group ? [Object.assign({ group: form.group, nested_in: null }, form.first)] : []).concat(form.rows || []);
      const seen = {};
      for (const r of rows) {
        if (why) break;
        const comp = r.nested_in ? `${r.group}:${r.nested_in}` : r.group;
        if (seen[r.group]) { why = `${r.group} groups two random terms (${seen[r.group]} and ${comp}); the form has one row per cluster variable`; break; }
        seen[r.group] = comp;
        why = put("group", r.group);
        m.cl[r.group] = { intercept: r.intercept, slopes: new Set(r.slopes), correlated: r.correlated, nestedIn: r.nested_in || "", ...structureOf(r) };
      }
      if (!why && M.weights) why = put("weights", M.weights) && `${M.weights}, the Weights column, is also part of the formula`;
      if (why) return { why };
      return { model: m, intercept: form.intercept };
    }

    /* After the server accepted a typed formula: set the controls when their formula for the description is the
     * same model (the same signature), else say which part the controls cannot show (it runs as typed). */
    async function fillFrom(answer, text, mine) {
      const st = answer.form ? stateOf(answer.form) : null;
      let same = false;
      if (st && st.model) {
        const candidate = formulaOf(st.model, st.intercept, binomial());
        if (candidate.replace(/\s+/g, "") === text.replace(/\s+/g, "")) same = true;
        else {
          try {
            const other = await api.post("/api/glmm/formula", { dataset_id: collect().dataset_id, formula: candidate,
              family: family.value, weights: M.weights || null });
            same = other.signature === answer.signature;
          } catch (err) { same = false; }
        }
      }
      if (mine !== checkSeq || !typed || formulaInput.value !== text) return;
      if (same) { M = st.model; intercept.checked = st.intercept; matched = true; notForm = ""; }
      else if (st && st.why) notForm = st.why;
      else notForm = answer.not_form || "the form writes this model differently (for example its terms in another order)";
      renderModel();
    }

    /* The reference levels chosen for the factors of the model (sent with a general fit). */
    function chosenReferences() {
      const out = {};
      for (const name of M.factors) {
        const info = factorLevels[name];
        if (references[name] && info && info.levels.includes(references[name]) && references[name] !== info.levels[0]) out[name] = references[name];
      }
      return Object.keys(out).length ? out : null;
    }

    function renderModel() {
      const key = focusKey();
      renderRoles();
      renderBuilders();
      f.dispersion.row.hidden = !hasDispersion();
      describeModel();
      if (!typed) formulaInput.value = formFormula();
      formulaReset.hidden = !typed || matched;
      formulaHelp.dataset.state = !typed ? "form" : matched ? "filled" : notForm ? "typed" : "checking";
      formulaHelp.textContent = !typed ? "The formula of the controls; edit it to run any model of lme4's language."
        : matched ? "The controls now show this formula; changing a control writes their formula again."
          : notForm ? `The controls cannot show this formula (${notForm}): it runs as typed. “Use the form” shows the controls' formula again.`
            : "Typed by hand: it runs as typed. “Use the form” shows the controls' formula again.";
      if (form.classList.contains("collapsed")) summaryCode.textContent = formulaInput.value;
      if (key) refocus(key);
    }

    let checkSeq = 0, checkTimer = null;
    /* Check the formula against the dataset on the server (the fit's own model frame builder), soon after a change:
     * a typed formula, or the controls' once they describe more than the random-intercept form. */
    function checkFormulaSoon() {
      clearTimeout(checkTimer);
      if (!typed && (simple() || !M.response || !M.group.length)) return;
      checkTimer = setTimeout(checkFormula, 250);
    }
    async function checkFormula() {
      const mine = ++checkSeq;
      if (!dsSelect.value) return true;
      const text = formulaInput.value;
      try {
        const answer = await api.post("/api/glmm/formula", { dataset_id: collect().dataset_id, formula: text,
          family: family.value, weights: M.weights || null, reference_levels: chosenReferences(), levels: chosenLevels() });
        if (mine === checkSeq) {
          for (const name of ["formula", "weights", "reference_levels", "levels"]) showFieldError(name, "");
          if (answer.response_levels && !levelsEdited) levelsInput.value = answer.response_levels.join(", ");
          factorLevels = answer.factors || {};
          lastCheck = answer;
          if (typed && !matched) fillFrom(answer, text, mine);
          renderModel();
        }
        return true;
      } catch (err) {
        if (mine === checkSeq) {
          if (err.body && err.body.field) showFieldError(err.body.field, err.body.message || err.message);
          else showFieldError("formula", err.message);
        }
        return false;
      }
    }

    /* A control changed: once the controls showed a typed formula, they are the model again. */
    function changed() {
      if (matched) { typed = false; matched = false; }
      refresh();
    }

    function refresh() {
      fillFamilies();
      renderModel();
      validate(false);
      checkFormulaSoon();
    }

    for (const r of ROLES) {
      arrows[r.key].addEventListener("click", () => moveTo(r.key));
      if (r.single) {
        roleBox[r.key].addEventListener("change", (ev) => {
          const name = ev.target.value;
          if (name) giveRole(name, r.key); else if (M[r.key]) takeOut(M[r.key]);
          roleMessage("");
          changed();
        });
      }
    }
    termAdd.addEventListener("click", () => {
      const pick = Array.from(termPick.querySelectorAll("input:checked")).map((i) => i.value);
      if (pick.length < 2) { showFieldError("terms", "Check two or more variables, then Add interaction."); return; }
      showFieldError("terms", "");
      if (!M.terms.some((t) => termKey(t) === termKey(pick))) M.terms = byDegree(M.terms.concat([pick]));
      for (const i of termPick.querySelectorAll("input:checked")) i.checked = false;
      changed();
    });
    formulaInput.addEventListener("input", () => {
      typed = formulaInput.value.trim() !== "" && formulaInput.value !== formFormula();
      matched = false;
      notForm = "";
      refresh();
    });
    formulaReset.addEventListener("click", () => { typed = false; matched = false; refresh(); });

    async function loadDatasets(selectId) {
      const list = await g.datasets();
      const keep = selectId !== undefined ? String(selectId) : dsSelect.value;
      clear(dsSelect).appendChild(el("option", { value: "" }, list.length ? "— choose a dataset —" : "(no datasets: import one or add the samples)"));
      for (const d of list) dsSelect.appendChild(el("option", { value: String(d.id) }, `${"  ".repeat(d.depth || 0)}${d.name}`));
      if (list.some((d) => String(d.id) === keep)) dsSelect.value = keep;
      await loadColumns();
    }

    async function loadColumns() {
      columns = [];
      if (dsSelect.value) {
        try {
          columns = (await api.get(`/api/datasets/${encodeURIComponent(dsSelect.value)}`)).columns;
          g.showError(f.dataset_id.err, "");
        } catch (err) { g.showError(f.dataset_id.err, err.message); }
      }
      keepFitting();
      renderModel();
    }

    function showFieldError(name, message) {
      if (name === "reference_levels") name = "factors";  // the reference levels sit with the factors
      if (f[name]) { g.showError(f[name].err, message); f[name].row.classList.toggle("invalid", !!message); }
      else g.showError(formError, message);
    }

    function collect() {
      const common = {
        dataset_id: dsSelect.value ? (/^\d+$/.test(dsSelect.value) ? Number(dsSelect.value) : dsSelect.value) : null,
        family: family.value, link: link.value,
        conf_level: level.value.trim() === "" ? NaN : Number(level.value) / 100,
        max_iter: maxIter.value.trim() === "" ? NaN : Number(maxIter.value), tol: tol.value.trim() === "" ? NaN : Number(tol.value),
        ddf: ddf.value, dispersion: hasDispersion() ? dispersion.value : "estimated",
      };
      if (simple()) {
        return Object.assign(common, { response: M.response || null, fixed: mainsOf(M), group: M.group[0] || null,
          intercept: intercept.checked });
      }
      return Object.assign(common, { formula: formulaInput.value, weights: M.weights || null,
        reference_levels: chosenReferences(), response: M.response || null, levels: chosenLevels(),
        zi: ziInput.value.trim() || null, disp: dispInput.value.trim() || null });
    }

    /* The ordinal response's order typed in Category order (null: the data's order, which the check shows). */
    function chosenLevels() {
      if (family.value !== "ordinal" || !levelsEdited) return null;
      const out = levelsInput.value.split(",").map((s) => s.trim()).filter((s) => s !== "");
      return out.length ? out : null;
    }
    function showLevels() { f.levels.row.hidden = family.value !== "ordinal"; }

    // Satterthwaite's t tests are for linear mixed models only (the server says the same, next to the field)
    function ddfError(b) {
      return b.ddf === "satterthwaite" && !(b.family === "gaussian" && b.link === "identity")
        ? "Satterthwaite t tests are for the Gaussian family with the identity link; choose Wald z tests." : null;
    }

    /* The controls' rules, checked before anything runs; `all` also reports missing choices. A typed formula is
     * checked on the server, next to its field. */
    function validate(all) {
      const b = collect();
      const e = {};
      if (!b.dataset_id && all) e.dataset_id = "Choose a Dataset.";
      if (typed) {
        if (!formulaInput.value.trim() && all) e.formula = "Type a Model formula such as y ~ x + (1 | g), or build one with the form.";
      } else if (b.dataset_id) {
        if (!M.response && all) e.response = "Choose a Dependent Variable (the Response Variable (Y)): a numeric or boolean column.";
        if (!M.group.length && all) e.group = "Choose a Group Variable: give a column the Cluster Variables role (its groups get a random intercept); a GLMM needs groups.";
        const bare = M.group.filter((x) => !M.cl[x].intercept && !mainsOf(M).some((s) => M.cl[x].slopes.has(s)));
        if (bare.length) e.random = `${bare.join(", ")}: tick Intercept or a slope, or remove ${bare.length === 1 ? "it" : "them"} from Cluster Variables.`;
        if (!intercept.checked && !M.terms.length && all) e.terms = "Without an intercept, add at least one fixed effect: a Covariate or a Factor.";
      }
      if (!(b.conf_level >= 0.5 && b.conf_level <= 0.9999)) e.conf_level = "Confidence Level must be between 50 and 99.99 (%).";
      if (!(Number.isInteger(b.max_iter) && b.max_iter >= 1)) e.max_iter = "Max Iterations must be a whole number of at least 1.";
      if (!(b.tol > 0 && b.tol < 1)) e.tol = "Convergence Tolerance must be greater than 0 and less than 1 (for example 1e-6).";
      if (ddfError(b)) e.ddf = ddfError(b);
      const server = ["formula", "weights", "factors", "zi", "disp"];  // (their messages come from the server)
      for (const name of Object.keys(f)) if (!server.includes(name) || e[name]) showFieldError(name, e[name] || "");
      g.showError(formError, "");
      return Object.keys(e).length ? null : b;
    }

    /* Every control, with the model record: kept with a fit (and a saved model) so the form can be filled again
     * (Model Detail > Open in GLMM Form). */
    function formState() {
      return {
        version: 2, dataset_id: dsSelect.value, family: family.value, link: link.value, intercept: intercept.checked,
        conf_level: level.value, max_iter: maxIter.value, tol: tol.value, ddf: ddf.value, dispersion: dispersion.value,
        model: modelRecord(M), typed, matched, formula: formulaInput.value, references: Object.assign({}, references),
        zi: ziInput.value, disp: dispInput.value, levels: chosenLevels(),
      };
    }

    /* Fill the form from a saved model's spec (its `form` record, or for older models the spec's own fields);
     * nothing runs. */
    async function applySpec(spec, datasetId) {
      const st = spec.form || {
        dataset_id: String(datasetId), response: spec.response || "", fixed: spec.fixed || [], group: spec.group || "",
        family: spec.family, link: spec.link, intercept: spec.intercept !== false,
        conf_level: String(+(spec.conf_level * 100).toPrecision(10)), max_iter: String(spec.max_iter), tol: String(spec.tol),
        model_open: !!spec.formula, weights: spec.weights || "", typed: !!spec.formula, formula: spec.formula || "",
        references: spec.reference_levels || {}, levels: spec.levels || null,
      };
      dsSelect.value = String(st.dataset_id || datasetId);
      await loadColumns();
      M = st.version === 2 && st.model ? modelOfRecord(st.model) : modelOfOldRecord(st);
      keepFitting();
      intercept.checked = st.intercept !== false;
      level.value = st.conf_level; maxIter.value = st.max_iter; tol.value = st.tol;
      if (st.ddf) ddf.value = st.ddf;
      for (const k of Object.keys(references)) delete references[k];
      Object.assign(references, st.references || {});
      typed = !!st.typed;
      matched = typed && !!st.matched;
      if (typed) formulaInput.value = st.formula || "";
      fillFamilies();
      family.value = st.family;
      fillLinks();
      link.value = st.link;
      dispersion.value = st.dispersion || spec.dispersion || "estimated";
      ziInput.value = st.zi || spec.zi || "";
      dispInput.value = st.disp || spec.disp || "";
      if (ziInput.value || dispInput.value) form.querySelector("details.model-parts").open = true;
      levelsEdited = !!(st.levels && st.levels.length);  // a saved model's own order of the categories
      levelsInput.value = levelsEdited ? st.levels.join(", ") : "";
      renderModel();
      validate(false);
      checkFormulaSoon();
    }

    dsSelect.addEventListener("change", () => { resetModel(); loadColumns().then(() => { validate(false); checkFormulaSoon(); }); });
    family.addEventListener("change", () => { fillLinks(); showLevels(); changed(); });
    levelsInput.addEventListener("input", () => { levelsEdited = true; checkFormulaSoon(); });
    showLevels();
    link.addEventListener("change", () => { renderModel(); validate(false); });
    intercept.addEventListener("change", changed);
    ddf.addEventListener("change", () => validate(false));
    // a zero or dispersion formula is checked on the server when the model runs: an edit clears its message
    ziInput.addEventListener("input", () => showFieldError("zi", ""));
    dispInput.addEventListener("input", () => showFieldError("disp", ""));
    for (const c of [level, maxIter, tol]) c.addEventListener("input", () => validate(false));
    run.addEventListener("click", async () => {
      const body = validate(true);
      if (!body) { const bad = form.querySelector(".field.invalid select, .field.invalid input, .field.invalid button"); if (bad) bad.focus(); return; }
      let job;
      try {
        job = await api.post("/api/glmm/fits", Object.assign({}, body, { form: formState() }));
      } catch (err) {
        if (err.body && err.body.field) showFieldError(err.body.field, err.body.message || err.message);
        else g.showError(formError, err.message);
        return;
      }
      startRun(job, body);
    });

    function startRun(job, body) {
      const bar = el("progress", { max: "1", value: "0", "aria-label": "Fit progress" });
      const stage = el("span", { class: "stage", "aria-live": "polite" }, job.stage || "Starting");
      const cancel = el("button", { type: "button", class: "cancel" }, "Cancel");
      const remove = el("button", { type: "button", class: "remove-run", title: "Remove this run from the list",
        "aria-label": `Remove the run ${job.label}` }, "×");
      const head = el("div", { class: "run-head" }, el("b", {}, job.label), remove);
      const progress = el("div", { class: "progress-box run-progress" }, bar, stage, cancel);
      const body_ = el("div", { class: "run-body" });
      const card = el("article", { class: "run", dataset: { fitId: job.id, state: job.state } }, head, progress, body_);
      runs.insertBefore(card, runs.firstChild);
      runs.parentElement.classList.add("has-runs");
      card.scrollIntoView({ block: "start" });
      const record = { card, id: job.id, state: job.state, saved: false };
      runList.push(record);
      remove.addEventListener("click", async () => {
        if (record.state === "done" && !record.saved && !await g.confirm({ title: "Remove run",
          message: "This run's results are not saved. Remove it from the list anyway?", ok: "Remove" })) return;
        api.del(`/api/glmm/fits/${job.id}`).catch(() => {});  // the server forgets it (a running fit stops)
        stopped = true;
        runList.splice(runList.indexOf(record), 1);
        card.remove();
        runs.parentElement.classList.toggle("has-runs", runs.children.length > 0);
      });
      let cancelled = false;
      cancel.addEventListener("click", async () => {
        cancelled = true; cancel.disabled = true; stage.textContent = "Cancelling…";
        try { await api.post(`/api/glmm/fits/${job.id}/cancel`); } catch (err) { stage.textContent = err.message; }
      });
      let stopped = false;
      tab.onClose(() => { stopped = true; });
      (async function poll() {
        for (;;) {
          if (stopped) return;
          let j;
          try { j = await api.get(`/api/glmm/fits/${job.id}`); } catch (err) { stage.textContent = err.message; return; }
          card.dataset.state = j.state;
          record.state = j.state;
          bar.value = j.fraction;
          stage.textContent = `${j.stage} (${Math.round(j.fraction * 100)}%)`;
          if (j.state === "done") { progress.remove(); showDone(j, body_, body, record); return; }
          if (j.state === "failed" || j.state === "cancelled") {
            cancel.remove();
            bar.remove();
            stage.textContent = j.state === "cancelled" ? "Cancelled." : "";
            if (j.state === "failed") body_.appendChild(el("p", { class: "error", role: "alert" }, j.error));
            return;
          }
          await new Promise((r) => setTimeout(r, cancelled ? 100 : 200));
        }
      })();
    }

    function showDone(job, box, body, record) {
      const name = el("input", { type: "text", class: "model-name", "aria-label": "Model Name", value: `${job.result.model.response} GLMM (${body.family})` });
      const save = el("button", { type: "button", class: "primary save" }, "Save Model");
      const details = el("button", { type: "button", class: "view-details", disabled: true }, "View Model Details");
      const diag = el("button", { type: "button", class: "view-diagnostics", disabled: true }, "View Diagnostics");
      const err = el("p", { class: "field-error save-error", role: "alert", hidden: true });
      const saved = el("span", { class: "saved muted" });
      let model = null;
      save.addEventListener("click", async () => {
        if (!name.value.trim()) { g.showError(err, "Give the model a name (Model Name)."); name.focus(); return; }
        save.disabled = true;
        g.showError(err, "");
        try {
          model = await api.post("/api/models", { fit_id: job.id, name: name.value.trim() });
          saved.textContent = `Saved as “${model.name}”, with the diagnostics dataset “${model.diagnostics_dataset_name}”.`;
          record.saved = true;
          details.disabled = false; diag.disabled = false; name.disabled = true;
          g.emit("models-changed", model);
          g.emit("datasets-changed", { id: model.diagnostics_dataset_id });
        } catch (e) { g.showError(err, e.message); save.disabled = false; }
      });
      details.addEventListener("click", () => model && g.openTab("model", { id: model.id }, { title: model.name }));
      diag.addEventListener("click", () => model && g.openTab("diagnostics", { id: model.id }, { title: `Diagnostics: ${model.name}` }));
      const plotBox = el("div", { class: "plots run-plots" });
      const addRun = el("button", { type: "button", class: "add-report add-report-run" }, "Add to Report...");
      const status = el("p", { class: "muted report-status", "aria-live": "polite" });
      const reportFrom = { choicesUrl: `/api/glmm/fits/${job.id}/report-items`, postUrl: `/api/glmm/fits/${job.id}/report`,
        extraBody: () => ({ name: name.value.trim() || undefined }) };
      addRun.addEventListener("click", () => addToReport({ choicesUrl: reportFrom.choicesUrl, postUrl: reportFrom.postUrl,
        extraBody: reportFrom.extraBody(), onAdded: (rep, a, sk) => addedStatus(status, rep, a, sk) }).catch((e) => { status.textContent = e.message; }));
      // (the Omnibus Tests table is one of the result view's tables, shown with the others)
      g.append(box, renderResults(job.result, job.display),
        effectsSection(job.result, `/api/glmm/fits/${job.id}`, () => name.value, reportFrom),
        section("Plots", null, el("p", { class: "muted note" }, "Click a plot to see it full size and download it as PNG or SVG."), plotBox),
        simulatedSection(`/api/glmm/fits/${job.id}/simulated-residuals`, () => name.value),
        el("div", { class: "save-row" },
          el("label", { class: "inline" }, "Model Name ", name), save, details, diag, addRun, saved), status, err);
      requestAnimationFrame(() => box.closest(".run").scrollIntoView({ block: "start" }));  // the results in sight
      api.get(`/api/glmm/fits/${job.id}/plots`).then((list) => {
        for (const p of list.plots) plotBox.appendChild(plotFigure(p, name.value));
      }).catch((e) => plotBox.appendChild(el("p", { class: "muted" }, e.message)));
    }

    // Closing the tab with runs that are not saved (or still running) asks first.
    const runList = [];
    tab.beforeClose(() => {
      const open = runList.filter((r) => !r.saved && ["queued", "running", "done"].includes(r.state));
      if (!open.length) return true;
      const running = open.filter((r) => r.state !== "done").length;
      const done = open.length - running;
      const parts = [];
      if (done) parts.push(`${done} run${done === 1 ? "" : "s"} with results that are not saved`);
      if (running) parts.push(`${running} run${running === 1 ? "" : "s"} still running`);
      return g.confirm({ title: "Close GLMM tab", ok: "Close tab",
        message: `This tab has ${parts.join(" and ")}. Close it and lose them?` });
    });

    fillLinks();
    await loadDatasets(params.dataset);
    renderModel();
    if (params.model !== undefined) {
      const saved = await api.get(`/api/models/${encodeURIComponent(params.model)}`);
      tab.setTitle(`GLMM: ${saved.name}`);
      await applySpec(saved.spec || {}, saved.dataset_id);
    }
    const onDatasets = () => loadDatasets().catch(() => {});
    g.on("datasets-changed", onDatasets);
    g.on("datasets-deleted", onDatasets);
    tab.onClose(() => { g.off("datasets-changed", onDatasets); g.off("datasets-deleted", onDatasets); });
  }

  function cap(s) { return s.charAt(0).toUpperCase() + s.slice(1); }

  // ---- Model Detail ---------------------------------------------------------------------------------------

  async function openModel(panel, params, tab) {
    const model = await api.get(`/api/models/${params.id}`);
    const result = model.result;
    tab.setTitle(model.name);
    tab.datasetId = model.dataset_id;
    const saved = model.saved_conf_level;
    const level = el("input", { type: "number", class: "short conf-level", min: "50", max: "99.99", step: "any",
      value: String(+(saved * 100).toPrecision(10)), "aria-label": "Confidence Level" });
    const levelErr = el("p", { class: "field-error", role: "alert", hidden: true });
    const feBox = el("div", { class: "fe-box" });
    const status = el("p", { class: "muted report-status", "aria-live": "polite" });
    let current = model.fixed_effects;
    const feTable = { title: "Fixed Effects", columns: [], rows: [], cells: [] };  // what Copy and CSV take

    function renderFe(view) {
      current = view;
      Object.assign(feTable, { columns: view.columns, rows: view.values, cells: view.cells });
      clear(feBox).appendChild(resultTable(Object.assign({}, view, { rows: view.values })));
      feBox.appendChild(el("p", { class: "muted note" }, view.note));
    }
    let seq = 0;
    async function recompute() {
      const pct = Number(level.value);
      if (level.value.trim() === "" || !(pct >= 50 && pct <= 99.99)) {
        g.showError(levelErr, "Confidence Level must be between 50 and 99.99 (%).");
        return;
      }
      g.showError(levelErr, "");
      const mine = ++seq;
      try {
        const view = await api.get(`/api/models/${params.id}/fixed-effects?conf_level=${pct / 100}`);
        if (mine === seq) renderFe(view);
      } catch (err) { g.showError(levelErr, err.message); }
    }
    level.addEventListener("input", recompute);
    level.addEventListener("change", recompute);
    const addBtn = el("button", { type: "button", class: "add-report" }, "Add to Report...");
    const postUrl = `/api/models/${params.id}/report`;
    addBtn.addEventListener("click", () => addToReport({
      choicesUrl: `/api/models/${params.id}/report-items?conf_level=${current.conf_level}`, postUrl,
      extraBody: { conf_level: current.conf_level },
      onAdded: (rep, added, skipped) => addedStatus(status, rep, added, skipped) }).catch((err) => { status.textContent = err.message; }));
    const disp = model.display;
    g.append(panel, el("div", { class: "model-detail" },
      el("div", { class: "ds-head" },
        el("div", {}, el("h2", { class: "ds-title" }, model.name)),
        el("div", { class: "ds-actions" }, addBtn,
          el("button", { type: "button", class: "reopen", title: "Open a GLMM tab with this model's settings (nothing runs)",
            onclick: () => g.openTab("glmm", { dataset: model.dataset_id, model: model.id }) }, "Open in GLMM Form"),
          el("button", { type: "button", class: "view-diagnostics", onclick: () => g.openTab("diagnostics", { id: model.id }, { title: `Diagnostics: ${model.name}` }) }, "View Diagnostics"))),
      el("p", { class: "muted model-line" }, el("code", {}, disp.formula), disp.reference_text ? ` · ${disp.reference_text}` : "", ` · ${disp.family_label}, ${result.model.link} link · ${result.method} · `,
        `${disp.summary.split("; ").pop()} · dataset ${model.dataset_name || model.dataset_id}`,
        ` · saved level ${levelText(saved)}`),
      status,
      warningsBox(disp),
      tableSections(disp, { fixedTable: feTable, fixedEffects: el("div", {},
        el("div", { class: "field inline-field" }, el("label", {}, "Confidence Level ", level, " %"), levelErr), feBox),
        afterFixed: intervalsSection(params.id, () => Number(level.value) / 100, tab, model.name) }),
      effectsSection(result, `/api/models/${params.id}`, () => model.name,
        { postUrl, extraBody: () => ({ conf_level: current.conf_level }) })));
    renderFe(model.fixed_effects);
  }

  /* Confidence intervals by another method (Wald / Profile / Bootstrap): the server refits the saved model on its
   * dataset and profiles or bootstraps it in the background; the page polls the job for progress and the table. */
  function intervalsSection(modelId, currentLevel, tab, modelName) {
    const method = el("select", { class: "ci-method", "aria-label": "Interval Method" },
      el("option", { value: "profile" }, "Profile likelihood"),
      el("option", { value: "boot" }, "Parametric bootstrap"),
      el("option", { value: "wald" }, "Wald (fixed effects)"));
    const nsim = el("input", { type: "number", class: "short ci-nsim", min: "10", max: "100000", step: "1", value: "1000", "aria-label": "Bootstrap Samples" });
    const seed = el("input", { type: "number", class: "short ci-seed", min: "0", step: "1", placeholder: "random", "aria-label": "Random Seed" });
    const bootFields = el("span", { class: "ci-boot-fields", hidden: true },
      el("label", {}, " Samples ", nsim), el("label", {}, " Seed ", seed));
    const run = el("button", { type: "button", class: "ci-run" }, "Compute Intervals");
    const err = el("p", { class: "field-error", role: "alert", hidden: true });
    const box = el("div", { class: "ci-box" });
    const tableRef = { title: "Confidence Intervals", columns: [], rows: [], cells: [] };
    method.addEventListener("change", () => { bootFields.hidden = method.value !== "boot"; });
    let stopped = false;
    tab.onClose(() => { stopped = true; });
    run.addEventListener("click", async () => {
      g.showError(err, "");
      const body = { method: method.value, conf_level: currentLevel() };
      if (method.value === "boot") {
        const n = Number(nsim.value);
        if (!Number.isInteger(n) || n < 10 || n > 100000) { g.showError(err, "Bootstrap Samples must be a whole number from 10 to 100000."); return; }
        body.nsim = n;
        if (seed.value.trim() !== "") body.seed = Number(seed.value);
      }
      let job;
      try { job = await api.post(`/api/models/${modelId}/intervals`, body); } catch (e) { g.showError(err, e.message); return; }
      run.disabled = true;
      const bar = el("progress", { max: "1", value: "0", "aria-label": "Interval progress" });
      const stage = el("span", { class: "stage", "aria-live": "polite" }, "Starting");
      const cancel = el("button", { type: "button", class: "cancel" }, "Cancel");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true; stage.textContent = "Cancelling…";
        try { await api.post(`/api/models/${modelId}/intervals/${job.id}/cancel`); } catch (e) { stage.textContent = e.message; }
      });
      clear(box).appendChild(el("div", { class: "progress-box ci-progress" }, bar, stage, cancel));
      for (;;) {
        if (stopped) return;
        let j;
        try { j = await api.get(`/api/models/${modelId}/intervals/${job.id}`); } catch (e) { g.showError(err, e.message); break; }
        box.dataset.state = j.state;
        bar.value = j.fraction;
        stage.textContent = `${j.stage} (${Math.round(j.fraction * 100)}%)`;
        if (j.state === "done") {
          Object.assign(tableRef, { title: j.table.title, columns: j.table.columns, rows: j.table.rows, cells: j.table.cells });
          const t = j.table;
          const addCi = el("button", { type: "button", class: "add-intervals" }, "Add to Report...");
          const ciStatus = el("p", { class: "muted report-status", "aria-live": "polite" });
          addCi.addEventListener("click", () => addToReport({ heading: "Add Intervals to Report",
            inline: [{ item: { kind: "table", title: `${modelName}: ${t.title}`,
              payload: { columns: t.columns, rows: t.rows, kinds: t.kinds, note: t.note } } }],
            onAdded: (rep, a, sk) => addedStatus(ciStatus, rep, a, sk) }).catch((e) => { ciStatus.textContent = e.message; }));
          clear(box).append(el("div", { class: "section-head" }, el("h4", { class: "ci-title" }, t.title), addCi),
            resultTable(t, undefined, "intervals"),
            el("p", { class: "muted note" }, t.note + ` (${j.elapsed_seconds.toFixed(1)} s)`), ciStatus);
          break;
        }
        if (j.state === "failed" || j.state === "cancelled") {
          clear(box).appendChild(el("p", { class: j.state === "failed" ? "error" : "muted", role: "alert" },
            j.state === "cancelled" ? "Cancelled." : j.error));
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      run.disabled = false;
    });
    return section("Confidence Intervals", tableRef,
      el("div", { class: "field inline-field ci-controls" }, el("label", {}, "Interval Method ", method), bootFields, " ", run), err,
      el("p", { class: "muted note" }, "Profile and bootstrap intervals cover the random-effect standard deviations and correlations, sigma and the fixed effects (lme4's confint). They refit the model on its dataset, at the Confidence Level above."),
      box);
  }

  // ---- Simulated (DHARMa) residuals ---------------------------------------------------------------------------
  /* Simulations, Random Seed and "random effects at their fitted modes"; the server simulates from the fit (`base`:
   * the run's or the saved model's .../simulated-residuals) and answers the tests' table and the two plots' urls. */
  function simulatedSection(base, name) {
    const nsim = el("input", { type: "number", class: "short sim-nsim", min: "2", max: "10000", step: "1", value: "250", "aria-label": "Simulations" });
    const seed = el("input", { type: "number", class: "short sim-seed", min: "0", step: "1", value: "123", "aria-label": "Random Seed" });
    const cond = el("input", { type: "checkbox", class: "sim-conditional", checked: true });
    const run = el("button", { type: "button", class: "sim-run" }, "Simulate Residuals");
    const err = el("p", { class: "field-error sim-error", role: "alert", hidden: true });
    const box = el("div", { class: "sim-box" });
    const status = el("p", { class: "muted sim-report-status", "aria-live": "polite" });
    let query = null;
    const toReport = el("button", { type: "button", class: "sim-report", hidden: true }, "Add to Report");
    toReport.addEventListener("click", async () => {
      toReport.disabled = true;
      try {
        const label = typeof name === "function" ? name() : name;
        const extra = typeof name === "function" && label ? `&name=${encodeURIComponent(label)}` : "";
        const rep = await api.post(`${base}/report?${query}${extra}`, {});
        status.textContent = rep.added && !rep.added.length ? `These results are in report “${rep.name}” already.`
          : `Added the simulated residuals to report “${rep.name}” (${rep.items.length} items).`;
        g.emit("reports-changed", rep);
      } catch (e) { status.textContent = e.message; }
      toReport.disabled = false;
    });
    run.addEventListener("click", async () => {
      g.showError(err, "");
      const n = Number(nsim.value), s = Number(seed.value);
      if (!Number.isInteger(n) || n < 2 || n > 10000) { g.showError(err, "Simulations must be a whole number from 2 to 10,000."); nsim.focus(); return; }
      if (seed.value.trim() === "" || !Number.isInteger(s) || s < 0) { g.showError(err, "Random Seed must be a whole number of 0 or more."); seed.focus(); return; }
      run.disabled = true;
      try {
        const q = new URLSearchParams({ n_sim: String(n), seed: seed.value.trim(), conditional: String(cond.checked) });
        const doc = await api.get(`${base}?${q}`);
        query = q.toString();
        toReport.hidden = false;
        status.textContent = "";
        const label = typeof name === "function" ? name() : name;
        clear(box).append(resultTable(doc.table, undefined, "simulated_residuals"),
          el("p", { class: "muted note sim-note" }, doc.table.note),
          el("div", { class: "plots sim-plots" }, doc.plots.map((p) => plotFigure(p, label))));
      } catch (e) { g.showError(err, e.message); }
      run.disabled = false;
    });
    return section("Simulated Residuals (DHARMa)", null,
      el("p", { class: "muted note" }, "Scaled residuals from responses simulated from the fit, as R's DHARMa computes them: uniform between 0 and 1 when the model is right, whatever the family. The tests compare the data with the simulations: uniformity (Kolmogorov-Smirnov), dispersion, zero-inflation and outliers."),
      el("div", { class: "field inline-field sim-controls" }, el("label", {}, "Simulations ", nsim), el("label", {}, " Random Seed ", seed),
        el("label", { class: "inline" }, cond, " Random effects at their fitted modes"), " ", run, toReport), status, err, box);
  }

  // ---- Diagnostics ----------------------------------------------------------------------------------------

  async function openDiagnostics(panel, params, tab) {
    const d = await api.get(`/api/models/${params.id}/diagnostics`);
    tab.setTitle(`Diagnostics: ${d.name}`);
    const status = el("p", { class: "muted report-status", "aria-live": "polite" });
    const plots = el("div", { class: "plots" }, d.plots.map((p) => {
      const btn = el("button", { type: "button", class: "add-plot" }, "Add to Report");
      btn.addEventListener("click", async () => {
        btn.disabled = true;
        try {
          const rep = await api.post(`/api/models/${params.id}/plots/${p.kind}/report`, {});
          status.textContent = `Added “${p.title}” to report “${rep.name}” (${rep.items.length} items).`;
          g.emit("reports-changed", rep);
        } catch (err) { status.textContent = err.message; }
        btn.disabled = false;
      });
      return plotFigure(p, d.name, btn);
    }));
    const tableBox = el("div", { class: "table-scroll diag-table" });
    const pager = el("div", { class: "pager" });
    g.append(panel, el("div", { class: "diagnostics" },
      el("h2", { class: "ds-title" }, `Diagnostics: ${d.name}`), status,
      d.note ? el("p", { class: "muted diag-note" }, d.note) : null,
      el("div", { class: "diag-layout" }, plots,
        el("div", { class: "diag-data" },
          el("h3", {}, "Diagnostic dataset ",
            d.dataset_id !== null ? el("button", { type: "button", onclick: () => g.openTab("dataset", { id: d.dataset_id }) }, "Open as dataset") : null),
          tableBox, pager)),
      simulatedSection(`/api/models/${params.id}/simulated-residuals`, d.name)));
    if (d.dataset_id === null) { tableBox.appendChild(el("p", { class: "muted" }, "The diagnostics dataset was deleted.")); return; }
    const limit = 100;
    async function load(offset) {
      const page = await api.get(`/api/datasets/${d.dataset_id}/rows?offset=${offset}&limit=${limit}`);
      clear(tableBox).appendChild(g.table(page.columns, page.rows, { rowNumbers: true, rowOffset: offset }));
      const end = Math.min(offset + page.rows.length, page.total);
      clear(pager).appendChild(el("button", { type: "button", disabled: offset === 0, onclick: () => load(Math.max(0, offset - limit)) }, "‹"));
      pager.appendChild(el("span", { class: "range" }, `Rows ${g.formatNumber(offset + 1)}–${g.formatNumber(end)} of ${g.formatNumber(page.total)}`));
      pager.appendChild(el("button", { type: "button", disabled: end >= page.total, onclick: () => load(offset + limit) }, "›"));
    }
    await load(0);
  }

  // ---- Reports --------------------------------------------------------------------------------------------

  async function openReport(panel, params, tab) {
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const list = el("ol", { class: "report-items" });
    const title = el("h2", { class: "ds-title" });
    const exportLink = el("a", { class: "button export", href: `/api/reports/${params.id}/export`, download: "" }, "Export HTML");
    const exportWord = el("a", { class: "button export-docx", href: `/api/reports/${params.id}/export?format=docx`, download: "" }, "Export Word");
    const newReport = el("button", { type: "button", class: "new-report" }, "New Report...");
    newReport.addEventListener("click", () => g.runAction("new-report"));
    g.append(panel, el("div", { class: "report-tab" },
      el("div", { class: "ds-head" }, el("div", {}, title, el("p", { class: "muted" }, "Tables and plots added from models, in order.")),
        el("div", { class: "ds-actions" }, exportLink, exportWord, newReport)),
      error, list));

    function render(rep) {
      tab.setTitle(rep.name);
      title.textContent = rep.name;
      clear(list);
      if (!rep.items.length) list.appendChild(el("li", { class: "empty muted" }, "This report is empty. Use Add to Report after a run, in a Model Detail, Diagnostics or Compare Models."));
      rep.items.forEach((item, i) => {
        const up = el("button", { type: "button", class: "up", title: "Move up", "aria-label": `Move ${item.title} up`, disabled: i === 0 }, "↑");
        const down = el("button", { type: "button", class: "down", title: "Move down", "aria-label": `Move ${item.title} down`, disabled: i === rep.items.length - 1 }, "↓");
        const remove = el("button", { type: "button", class: "remove danger", "aria-label": `Remove ${item.title}` }, "Remove");
        up.addEventListener("click", () => change(api.post(`/api/reports/${rep.id}/items/${item.id}/move`, { direction: "up" })));
        down.addEventListener("click", () => change(api.post(`/api/reports/${rep.id}/items/${item.id}/move`, { direction: "down" })));
        remove.addEventListener("click", () => change(api.del(`/api/reports/${rep.id}/items/${item.id}`)));
        const p = item.payload;
        const table = item.kind === "table" && !item.invalid;
        const content = item.invalid ? el("p", { class: "error invalid-item" }, item.invalid)
          : table ? resultTable(p, undefined, "report-table")
          : el("img", { src: `data:image/png;base64,${p.png_base64}`, alt: item.title, class: "report-plot" });
        list.appendChild(el("li", { class: "report-item", dataset: { kind: item.kind, id: String(item.id) } },
          el("div", { class: "item-head" }, el("b", { class: "item-title" }, item.title),
            el("span", { class: "muted" }, ` ${item.kind}`), table ? tableTools(p, item.title) : null,
            el("span", { class: "item-buttons" }, up, down, remove)),
          p.note ? el("p", { class: "muted note" }, p.note) : null,
          el("div", { class: "item-content" }, content)));
      });
    }
    async function change(promise) {
      try { render(await promise); g.emit("reports-changed"); g.showError(error, ""); } catch (err) { g.showError(error, err.message); }
    }
    const onChanged = (detail) => { if (!detail || detail.id === params.id) reload(); };
    async function reload() {
      try { render(await api.get(`/api/reports/${params.id}`)); } catch (err) { g.showError(error, err.message); }
    }
    g.on("reports-changed", onChanged);
    tab.onClose(() => g.off("reports-changed", onChanged));
    await reload();
  }

  g.registerTab("glmm", { open: openGlmm, title: () => "GLMM" });
  g.registerTab("model", { open: openModel, key: (p) => String(p.id), title: () => "Model" });
  g.registerTab("diagnostics", { open: openDiagnostics, key: (p) => String(p.id), title: () => "Diagnostics" });
  g.registerTab("report", { open: openReport, key: (p) => String(p.id), title: () => "Report" });
  g.registerAction("open-reports", async () => {
    const list = (await api.get("/api/reports")).reports;
    const rep = list.length ? list[list.length - 1] : await api.post("/api/reports", { name: "Report" });
    if (!list.length) g.emit("reports-changed", rep);
    g.openTab("report", { id: rep.id }, { title: rep.name });
  });
  g.registerAction("new-report", async () => {
    const n = (await api.get("/api/reports")).reports.length;
    const dlg = g.rename({ title: "New Report", value: n ? `Report ${n + 1}` : "Report", save: async (name) => {
      const rep = await api.post("/api/reports", { name });
      g.emit("reports-changed", rep);
      g.openTab("report", { id: rep.id }, { title: rep.name });
    } });
    const ok = dlg.querySelector("[data-submit]");
    const label = ok.textContent;
    ok.textContent = "Create";
    dlg.addEventListener("close", () => { ok.textContent = label; }, { once: true });
  });
  g.addToReport = addToReport;  // for Compare Models
  g.addedStatus = addedStatus;
  try {
    g.addMenuItem("Analysis", "Reports...", "open-reports");
    g.addMenuItem("Analysis", "New Report...", "new-report");
  } catch (err) { console.error(err); }
})();
