/* The workbench's dialogs: Import Data, Dummy Coding, Delete Dataset, New/Open/Import Project, About, and the
 * app's own confirm (glmmlab.confirm) and rename (glmmlab.rename) dialogs.
 *
 * Every dialog is modal: Escape closes it (the browser's own), Tab and Shift+Tab stay inside it, and when it closes
 * the focus goes back to the element that opened it. */
(function () {
  "use strict";
  const g = window.glmmlab;
  const { el, clear, api } = g;
  const enc = encodeURIComponent;
  const field = (form, name) => form.elements.namedItem(name);

  function focusables(dlg) {
    return Array.from(dlg.querySelectorAll("button, [href], input, select, textarea, [tabindex]"))
      .filter((n) => n.tabIndex >= 0 && !n.disabled && n.getClientRects().length > 0);
  }

  // Show a <dialog> modally; the focus goes back to its opener when it closes.
  function showDialog(dlg) {
    if (dlg.open) return dlg;
    const opener = document.activeElement;
    dlg.addEventListener("close", () => {
      if (opener && opener !== document.body && opener.isConnected && opener.getClientRects().length) opener.focus();
    }, { once: true });
    dlg.showModal();
    return dlg;
  }

  g.showDialog = showDialog;  // for dialogs made by tab modules (Compare Models)

  // Focus stays in the open dialog: Tab from its last control goes to its first, Shift+Tab from the first to the last.
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Tab") return;
    const open = Array.from(document.querySelectorAll("dialog[open]"));
    const dlg = open[open.length - 1];
    if (!dlg) return;
    const items = focusables(dlg);
    if (!items.length) { e.preventDefault(); return; }
    const first = items[0], last = items[items.length - 1];
    if (!dlg.contains(document.activeElement)) { e.preventDefault(); first.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
    else if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
  });

  // Opens a <dialog>, clears its error, and wires its Close buttons and its submit handler (once).
  function dialog(id, onSubmit) {
    const dlg = document.getElementById(id);
    const form = dlg.querySelector("form");
    if (!dlg.dataset.wired) {
      dlg.dataset.wired = "true";
      for (const b of dlg.querySelectorAll("[data-close]")) b.addEventListener("click", () => dlg.close());
      if (onSubmit) {
        form.addEventListener("submit", async (e) => {
          e.preventDefault();
          const submit = dlg.querySelector("[data-submit]");
          submit.disabled = true;
          g.showError(dlg.querySelector(".error"), "");
          try {
            await onSubmit(dlg, form);
          } catch (err) {
            g.showError(dlg.querySelector(".error"), err.message || String(err));
          } finally {
            submit.disabled = false;
          }
        });
      }
    }
    g.showError(dlg.querySelector(".error"), "");
    return showDialog(dlg);
  }

  function progress(dlg, fraction, text) {
    const box = dlg.querySelector(".progress-box");
    if (!box) return;
    box.hidden = fraction === null;
    if (fraction !== null) {
      box.querySelector("progress").value = fraction;
      box.querySelector(".progress-text").textContent = text;
    }
  }

  function datasetIdOfActiveTab() {
    const tab = g.activeTab();
    return tab && tab.kind === "dataset" ? tab.params.id : null;
  }

  // ---- File > Import Data... ------------------------------------------------------------------------------

  async function submitImport(dlg, form) {
    const file = form.file.files[0];
    if (!file) throw new Error("Choose a file to import.");
    const name = field(form, "name").value.trim() || file.name.replace(/\.[^.]*$/, "");
    const url = `/api/datasets/import?filename=${enc(file.name)}&name=${enc(name)}` +
      (form.format.value ? `&format=${enc(form.format.value)}` : "");
    progress(dlg, 0, "Uploading… 0%");
    try {
      const job = await api.upload(url, file, (f) => progress(dlg, f, `Uploading… ${Math.round(f * 100)}%`));
      progress(dlg, 0, "Importing…");
      const done = await g.pollJob(job.id, (j) =>
        progress(dlg, j.fraction, `${j.stage} ${Math.round(j.fraction * 100)}%`));
      const ds = done.result.dataset;
      progress(dlg, null);
      dlg.close();
      form.reset();
      g.emit("datasets-changed");
      g.status(`Imported ${ds.name}: ${g.formatNumber(ds.n_rows)} rows, ${ds.columns.length} columns.`);
      g.openTab("dataset", { id: ds.id }, { title: ds.name });
    } catch (err) {
      progress(dlg, null);
      throw err;
    }
  }

  g.registerAction("import-data", () => {
    const dlg = dialog("dlg-import", submitImport);
    const form = dlg.querySelector("form");
    if (!form.dataset.wired) {
      form.dataset.wired = "true";
      form.file.addEventListener("change", () => {
        const f = form.file.files[0];
        if (f && !field(form, "name").dataset.touched) field(form, "name").value = f.name.replace(/\.[^.]*$/, "");
      });
      field(form, "name").addEventListener("input", () => { field(form, "name").dataset.touched = "true"; });
      form.addEventListener("reset", () => { delete field(form, "name").dataset.touched; });
    }
  });

  // ---- Data > Dummy Coding... -----------------------------------------------------------------------------

  const ACTION_HELP = {
    exclude: "The column is left out of the new dataset.",
    as_is: "The column is copied unchanged.",
    dummy_drop: "k − 1 indicator columns replace the column.",
    dummy_keep: "The column is kept, followed by k − 1 indicator columns.",
  };

  const dummy = { info: null, timer: null, seq: 0, levels: {} };

  function specRows() {
    return Array.from(document.querySelectorAll("#dlg-dummy table.dummy-spec tbody tr"));
  }

  function currentSpec() {
    return specRows().map((tr) => {
      const entry = { column: tr.dataset.column, scale: tr.querySelector(".scale").value,
        action: tr.querySelector(".action").value };
      const ref = tr.querySelector(".reference").value;
      if (ref !== "" && entry.action.startsWith("dummy")) entry.reference = dummy.levels[tr.dataset.column][Number(ref)];
      return entry;
    });
  }

  function fillReferences() {
    for (const tr of specRows()) {
      const ref = tr.querySelector(".reference");
      const isDummy = tr.querySelector(".action").value.startsWith("dummy");
      const levels = dummy.levels[tr.dataset.column] || [];
      const chosen = ref.value;
      clear(ref).appendChild(el("option", { value: "" }, !isDummy ? "—"
        : levels.length ? `${g.formatCell(levels[0])} (first alphabetical)` : "First alphabetical"));
      levels.forEach((lv, i) => ref.appendChild(el("option", { value: String(i) }, g.formatCell(lv))));
      ref.value = chosen !== "" && Number(chosen) < levels.length ? chosen : "";
      ref.disabled = !isDummy;
    }
  }

  let dummyLoads = 0;  // the latest load wins: an earlier dataset's answer arriving late must not replace it
  async function loadDummyDataset(dlg, id) {
    const mine = ++dummyLoads;
    const [info, vocab] = await Promise.all([api.get(`/api/datasets/${id}`), g.vocabulary()]);
    if (mine !== dummyLoads) return;
    dummy.info = info;
    dummy.levels = {};
    const body = clear(dlg.querySelector("table.dummy-spec tbody"));
    for (const col of info.columns) {
      const scales = vocab.scales_by_dtype[col.dtype] || vocab.scales;
      const tr = el("tr", { dataset: { column: col.name } },
        el("th", { scope: "row" }, col.name),
        el("td", { class: "muted" }, col.dtype),
        el("td", {}, el("select", { class: "scale", "aria-label": `Scale of ${col.name}` },
          scales.map((s) => el("option", { value: s, selected: s === col.scale || null }, s)))),
        el("td", {}, el("select", { class: "action", "aria-label": `Action for ${col.name}` },
          vocab.dummy_actions.map((a) => el("option", { value: a.value, title: ACTION_HELP[a.value],
            selected: a.value === "as_is" || null }, a.label)))),
        el("td", {}, el("select", { class: "reference", "aria-label": `Reference category of ${col.name}`, disabled: true })));
      body.appendChild(tr);
    }
    fillReferences();
    const nameInput = dlg.querySelector("input[name=name]");
    nameInput.value = "";
    nameInput.placeholder = `${info.name} (dummy coded)`;
    showPreview(dlg, null);
  }

  function showPreview(dlg, preview, message) {
    const statusText = dlg.querySelector(".preview-status");
    const encodings = clear(dlg.querySelector(".encodings"));
    const rows = clear(dlg.querySelector(".preview-rows"));
    statusText.textContent = message || (preview ? "" : "Choose a dummy-coding action for a column to see its encoding.");
    statusText.hidden = !statusText.textContent;
    if (!preview) return;
    const shortList = (items, n) => items.length <= n ? items.join(", ")
      : `${items.slice(0, n).join(", ")} … and ${items.length - n} more`;
    for (const e of preview.encodings) {
      const counts = e.levels.map((lv, i) => `${g.formatCell(lv)} (${g.formatNumber(e.counts[i])})`);
      encodings.appendChild(el("div", { class: "encoding" },
        el("b", {}, e.column), ` — reference ${g.formatCell(e.reference)}; ${e.new_columns.length} new columns: `,
        el("code", {}, shortList(e.new_columns, 12)),
        el("div", { class: "muted" }, `${e.levels.length} categories: ${shortList(counts, 12)}`)));
    }
    rows.appendChild(g.table(preview.columns, preview.rows, { className: "preview" }));
    statusText.textContent = `The new dataset: ${g.formatNumber(preview.n_rows)} rows × ${preview.columns.length} columns; the first rows:`;
    statusText.hidden = false;
  }

  async function runPreview(dlg, force) {
    const spec = currentSpec();
    const error = dlg.querySelector(".error");
    if (!force && !spec.some((s) => s.action.startsWith("dummy"))) {
      g.showError(error, "");
      showPreview(dlg, null);
      return null;
    }
    const seq = ++dummy.seq;
    try {
      const preview = await api.post("/api/dummy/preview", { dataset_id: dummy.info.id, spec });
      if (seq !== dummy.seq) return null;
      g.showError(error, "");
      for (const e of preview.encodings) dummy.levels[e.column] = e.levels;
      fillReferences();
      showPreview(dlg, preview);
      return preview;
    } catch (err) {
      if (seq !== dummy.seq) return null;
      g.showError(error, err.message);
      showPreview(dlg, null, "No preview: fix the problem above.");
      return null;
    }
  }

  function schedulePreview(dlg) {
    clearTimeout(dummy.timer);
    dummy.timer = setTimeout(() => runPreview(dlg, false), 200);
  }

  async function submitDummy(dlg, form) {
    const name = field(form, "name").value.trim() || null;
    const r = await api.post("/api/dummy", { dataset_id: dummy.info.id, spec: currentSpec(), name });
    dlg.close();
    g.emit("datasets-changed");
    g.status(`Created ${r.dataset.name}.`);
    g.openTab("dataset", { id: r.dataset.id }, { title: r.dataset.name });
  }

  g.registerAction("dummy-coding", async (detail) => {
    const dlg = dialog("dlg-dummy", submitDummy);
    const select = dlg.querySelector("select[name=dataset]");
    if (!dlg.dataset.dummyWired) {
      dlg.dataset.dummyWired = "true";
      select.addEventListener("change", () => loadDummyDataset(dlg, select.value)
        .catch((err) => g.showError(dlg.querySelector(".error"), err.message)));
      dlg.querySelector("table.dummy-spec tbody").addEventListener("change", (e) => {
        if (e.target.classList.contains("action")) fillReferences();
        schedulePreview(dlg);
      });
      dlg.querySelector("[data-preview]").addEventListener("click", () => runPreview(dlg, true));
    }
    const all = await g.refreshSidebar();  // fresh: another window or a script may have changed the project
    clear(select);
    for (const d of all) {
      select.appendChild(el("option", { value: String(d.id) }, "\u00a0\u00a0".repeat(d.depth || 0) + d.name));
    }
    if (!all.length) {
      g.showError(dlg.querySelector(".error"), "The project has no datasets yet; import one first (File > Import Data...).");
      clear(dlg.querySelector("table.dummy-spec tbody"));
      return;
    }
    const wanted = (detail && detail.id) || datasetIdOfActiveTab() || all[0].id;
    select.value = String(all.some((d) => d.id === wanted) ? wanted : all[0].id);
    await loadDummyDataset(dlg, select.value);
  });

  // ---- Delete a dataset (with what depends on it) ---------------------------------------------------------

  const del = { id: null, deps: null };

  async function submitDelete(dlg) {
    const r = await api.del(`/api/datasets/${del.id}?cascade=true`);
    const ids = (r.deleted.datasets || []).map((d) => d.id);
    if (!ids.includes(del.id)) ids.push(del.id);
    dlg.close();
    g.emit("datasets-deleted", { ids });
    if ((r.deleted.models || []).length) g.emit("models-changed");
    g.status(`Deleted ${ids.length} dataset${ids.length === 1 ? "" : "s"}` +
      ((r.deleted.models || []).length ? ` and ${r.deleted.models.length} model(s).` : "."));
  }

  g.registerAction("delete-dataset", async (detail) => {
    const id = detail && detail.id !== undefined ? detail.id : datasetIdOfActiveTab();
    if (id === null || id === undefined) { g.status("Open or select a dataset to delete."); return; }
    const [info, deps] = await Promise.all([api.get(`/api/datasets/${id}`), api.get(`/api/datasets/${id}/dependents`)]);
    del.id = info.id;
    del.deps = deps;
    const dlg = document.getElementById("dlg-delete");
    dlg.querySelector(".question").textContent =
      `Delete the dataset “${info.name}” (${g.formatNumber(info.n_rows)} rows)? This cannot be undone.`;
    const list = clear(dlg.querySelector(".cascade-list"));
    for (const d of deps.datasets) list.appendChild(el("li", {}, "Dataset: ", el("b", {}, d.name)));
    for (const m of deps.models) list.appendChild(el("li", {}, "Model: ", el("b", {}, m.name)));
    dlg.querySelector(".cascade").hidden = !(deps.datasets.length || deps.models.length);
    dlg.querySelector("[data-submit]").textContent =
      deps.datasets.length || deps.models.length ? `Delete all ${1 + deps.datasets.length + deps.models.length}` : "Delete";
    dialog("dlg-delete", submitDelete);
  });

  // ---- Projects -------------------------------------------------------------------------------------------

  g.registerAction("new-project", () => {
    dialog("dlg-new-project", async (dlg, form) => {
      await api.post("/api/projects/new", { name: field(form, "name").value, samples: form.samples.checked });
      window.location.reload();
    });
  });

  g.registerAction("open-project", async () => {
    const dlg = document.getElementById("dlg-open-project");
    const select = clear(dlg.querySelector("select"));
    for (const p of await api.get("/api/projects")) {
      select.appendChild(el("option", { value: p.name, selected: p.current || null },
        p.name + (p.current ? " (open now)" : "")));
    }
    if (!select.dataset.wired) {
      select.dataset.wired = "true";
      select.addEventListener("dblclick", () => dlg.querySelector("form").requestSubmit());
    }
    dialog("dlg-open-project", async (d, form) => {
      if (!field(form, "name").value) throw new Error("Choose a project.");
      await api.post("/api/projects/open", { name: field(form, "name").value });
      window.location.reload();
    });
  });

  g.registerAction("import-project", () => {
    dialog("dlg-import-project", async (dlg, form) => {
      const file = form.file.files[0];
      if (!file) throw new Error("Choose an exported project file.");
      const name = field(form, "name").value.trim() || file.name.replace(/\.[^.]*$/, "");
      progress(dlg, 0, "Uploading… 0%");
      try {
        await api.upload(`/api/projects/import?filename=${enc(file.name)}&name=${enc(name)}`, file,
          (f) => progress(dlg, f, f < 1 ? `Uploading… ${Math.round(f * 100)}%` : "Importing…"));
      } finally {
        progress(dlg, null);
      }
      window.location.reload();
    });
  });

  g.registerAction("about", () => dialog("dlg-about"));

  // ---- the app's own confirm and rename dialogs -----------------------------------------------------------

  /* Ask a question; resolves true when the person presses the OK button (Cancel, Escape: false). */
  g.confirm = function (opts) {
    const dlg = document.getElementById("dlg-confirm");
    const form = dlg.querySelector("form");
    const ok = dlg.querySelector("[data-submit]");
    const cancel = dlg.querySelector("[data-close]");
    dlg.querySelector("h2").textContent = opts.title || "Are you sure?";
    dlg.querySelector(".question").textContent = opts.message || "";
    ok.textContent = opts.ok || "OK";
    ok.className = opts.danger === false ? "primary" : "danger";
    return new Promise((resolve) => {
      let answer = false;
      const onSubmit = (e) => { e.preventDefault(); answer = true; dlg.close(); };
      const onCancel = () => dlg.close();
      form.addEventListener("submit", onSubmit);
      cancel.addEventListener("click", onCancel);
      dlg.addEventListener("close", () => {
        form.removeEventListener("submit", onSubmit);
        cancel.removeEventListener("click", onCancel);
        resolve(answer);
      }, { once: true });
      showDialog(dlg);
      cancel.focus();  // the safe answer has the focus
    });
  };

  let renameSave = null;
  /* Ask for a new name; `save(name)` (a Promise) does the renaming, and its error shows in the dialog. */
  g.rename = function (opts) {
    renameSave = opts.save;
    const dlg = dialog("dlg-rename", async (d, form) => {
      await renameSave(field(form, "name").value.trim());
      d.close();
    });
    dlg.querySelector("h2").textContent = opts.title || "Rename";
    const input = field(dlg.querySelector("form"), "name");
    input.value = opts.value || "";
    input.select();
    return dlg;
  };

  // ---- rename and delete saved models and reports (the sidebar's ✎ and × buttons) -----------------------

  const ITEMS = {
    model: { url: "/api/models", noun: "model", event: "models-changed", tabs: ["model", "diagnostics"] },
    report: { url: "/api/reports", noun: "report", event: "reports-changed", tabs: ["report"] },
  };

  function tabsOf(kind, id) {
    return g.tabs().filter((t) => ITEMS[kind].tabs.includes(t.kind) && String(t.params.id) === String(id));
  }

  g.registerAction("rename-item", ({ kind, id, name }) => {
    const it = ITEMS[kind];
    g.rename({
      title: `Rename ${it.noun} “${name}”`, value: name,
      save: async (value) => {
        const r = await api.patch(`${it.url}/${id}`, { name: value });
        for (const t of tabsOf(kind, id)) {
          t.setTitle(t.kind === "diagnostics" ? `Diagnostics: ${r.name}` : r.name);
          const heading = t.panel.querySelector(".ds-title");
          if (heading) heading.textContent = t.kind === "diagnostics" ? `Diagnostics: ${r.name}` : r.name;
        }
        g.emit(it.event, r);
        if (kind === "model" && r.diagnostics_dataset_id != null) {  // its diagnostics dataset was renamed with it
          g.emit("datasets-changed", { id: r.diagnostics_dataset_id });
        }
        g.status(`Renamed the ${it.noun} “${name}” to “${r.name}”.`);
      },
    });
  });

  g.registerAction("delete-item", async ({ kind, id, name }) => {
    const it = ITEMS[kind];
    const message = kind === "model"
      ? `Delete the model “${name}” and its diagnostics dataset? This cannot be undone.`
      : `Delete the report “${name}” with all its items? This cannot be undone.`;
    if (!await g.confirm({ title: `Delete ${it.noun}`, message, ok: "Delete" })) return;
    const r = await api.del(`${it.url}/${id}`);
    for (const t of tabsOf(kind, id)) t.close();
    g.emit(it.event);
    const gone = (r.datasets || []).map((d) => d.id);
    if (gone.length) g.emit("datasets-deleted", { ids: gone });
    g.status(`Deleted the ${it.noun} “${name}”` + (gone.length ? " and its diagnostics dataset." : "."));
  });
})();
