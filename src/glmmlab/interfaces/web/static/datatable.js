/* The data view: a tab of kind "dataset" (params {id}) showing one dataset a page at a time, with the column
 * types and measurement scales editable for primary datasets. */
(function () {
  "use strict";
  const g = window.glmmlab;
  const { el, clear, api } = g;
  const PAGE_SIZES = [50, 100, 250, 1000];

  function lineageText(info, all) {
    const parts = [`${g.formatNumber(info.n_rows)} rows × ${info.columns.length} columns`];
    if (info.parent_id !== null && info.parent_id !== undefined) {
      const parent = all.find((d) => d.id === info.parent_id);
      const op = info.operation && info.operation.type ? info.operation.type.replace(/_/g, " ") : "derived";
      parts.push(`${op} of ${parent ? parent.name : "dataset " + info.parent_id}`);
    }
    if (info.read_only) parts.push("read-only");
    return parts.join(" · ");
  }

  function option(value, label, selected) {
    return el("option", { value, selected: selected || null }, label);
  }

  function openDataset(panel, params, tab) {
    const id = params.id;
    const state = { offset: 0, limit: 100, info: null, vocab: null };
    const title = el("h2", { class: "ds-title" });
    const lineage = el("p", { class: "muted ds-lineage" });
    const error = el("p", { class: "error", role: "alert", hidden: true });
    // the last type change of a column, with its Undo (the values and the type as they were)
    const undoBar = el("p", { class: "undo-bar", role: "status", hidden: true });
    const tableBox = el("div", { class: "table-scroll", tabindex: "0" });
    const rangeText = el("span", { class: "range" });
    const first = el("button", { type: "button", title: "First page", "aria-label": "First page" }, "«");
    const prev = el("button", { type: "button", title: "Previous page", "aria-label": "Previous page" }, "‹");
    const next = el("button", { type: "button", title: "Next page", "aria-label": "Next page" }, "›");
    const last = el("button", { type: "button", title: "Last page", "aria-label": "Last page" }, "»");
    const size = el("select", { "aria-label": "Rows per page" },
      PAGE_SIZES.map((n) => option(String(n), `${n} rows`, n === state.limit)));
    const goto = el("input", { type: "number", min: "1", placeholder: "Go to row", "aria-label": "Go to row", class: "goto" });

    g.append(panel,
      el("div", { class: "ds-head" },
        el("div", {}, title, lineage),
        el("div", { class: "ds-actions" },
          el("button", { type: "button", onclick: () => g.runAction("dummy-coding", { id }) }, "Dummy Coding..."),
          el("button", { type: "button", class: "danger", onclick: () => g.runAction("delete-dataset", { id }) }, "Delete..."))),
      error,
      undoBar,
      tableBox,
      el("div", { class: "pager" }, first, prev, rangeText, next, last, size, goto));

    first.addEventListener("click", () => load(0));
    prev.addEventListener("click", () => load(state.offset - state.limit));
    next.addEventListener("click", () => load(state.offset + state.limit));
    last.addEventListener("click", () => load(Math.floor(Math.max(0, state.info.n_rows - 1) / state.limit) * state.limit));
    size.addEventListener("change", () => { state.limit = Number(size.value); load(Math.floor(state.offset / state.limit) * state.limit); });
    goto.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      const row = Math.max(1, Number(goto.value) || 1);
      load(Math.floor((row - 1) / state.limit) * state.limit);
    });

    async function refreshInfo() {
      const [info, all, vocab] = await Promise.all([api.get(`/api/datasets/${id}`), g.datasets(), g.vocabulary()]);
      state.info = info;
      state.vocab = vocab;
      tab.setTitle(info.name);
      title.textContent = info.name;
      lineage.textContent = lineageText(info, all);
      panel.dataset.readOnly = info.read_only ? "true" : "false";
      if (!info.read_only) showUndo((await api.get(`/api/datasets/${id}/columns/undo`)).undo);
    }

    /* The last type change that can be undone ({column, dtype, to_dtype, made_missing}), or null. */
    function showUndo(u) {
      clear(undoBar);
      undoBar.hidden = !u;
      if (!u) return;
      const n = u.made_missing;
      const undo = el("button", { type: "button", class: "undo-type", title: `Give '${u.column}' its ${u.dtype} values back` }, "Undo");
      undo.addEventListener("click", async () => {
        undo.disabled = true;
        try {
          await api.post(`/api/datasets/${id}/columns/undo`);
          g.showError(error, "");
          g.status(`${u.column}: type ${u.dtype} again, with its values.`);
          g.emit("datasets-changed", { id });
        } catch (err) { g.showError(error, err.message); undo.disabled = false; }
      });
      g.append(undoBar, `'${u.column}' is now ${u.to_dtype}` +
        (n ? `; ${g.formatNumber(n)} value${n === 1 ? "" : "s"} became missing. ` : ". "), undo);
    }

    function header(col) {
      const th = el("th", { scope: "col", title: `${col.name} (${col.dtype}, ${col.scale})`, dataset: { column: col.name } },
        el("span", { class: "col-name" }, col.name));
      if (state.info.read_only) {
        th.appendChild(el("span", { class: "col-type" }, `${col.dtype} · ${col.scale}`));
        return th;
      }
      const dtype = el("select", { class: "dtype", "aria-label": `Type of ${col.name}` },
        state.vocab.dtypes.map((t) => option(t, t, t === col.dtype)));
      const scales = state.vocab.scales_by_dtype[col.dtype] || state.vocab.scales;
      const scale = el("select", { class: "scale", "aria-label": `Scale of ${col.name}` },
        scales.map((s) => option(s, s, s === col.scale)));
      dtype.addEventListener("change", () => change(col, { dtype: dtype.value }, dtype, col.dtype));
      scale.addEventListener("change", () => change(col, { scale: scale.value }, scale, col.scale));
      th.appendChild(el("span", { class: "col-controls" }, dtype, scale));
      return th;
    }

    async function change(col, what, select, previous) {
      g.showError(error, "");
      select.disabled = true;
      try {
        const res = await api.patch(`/api/datasets/${id}/columns`, Object.assign({ column: col.name }, what));
        if (what.dtype) showUndo(res.undo);
        g.status(`${col.name}: ${what.dtype ? "type " + what.dtype : "scale " + what.scale}.`);
        g.emit("datasets-changed", { id });
      } catch (err) {
        select.value = previous;
        g.showError(error, err.message);
        if (what.dtype && err.body && err.body.invalid_count) offerMissing(col, what.dtype, err.body);
      } finally {
        select.disabled = false;
      }
    }

    /* A type change refused because some cells do not fit: offer to turn exactly those cells into missing values,
     * asking first (how many of how many), with an Undo after it. */
    function offerMissing(col, dtype, info) {
      const n = info.invalid_count;
      const of = info.present_count ? ` of ${g.formatNumber(info.present_count)}` : "";
      const rule = info.rule || dtype;
      const label = `Turn the ${g.formatNumber(n)}${of} value${n === 1 && !of ? "" : "s"} that ${n === 1 ? "is" : "are"} not ` +
        `${rule} into missing and make '${col.name}' ${dtype}...`;
      const btn = el("button", { type: "button", class: "set-missing" }, label);
      btn.addEventListener("click", async () => {
        const all = info.present_count && n === info.present_count;
        const ok = await g.confirm({ title: "Turn values into missing?",
          message: `${all ? `All ${g.formatNumber(n)} values` : `${g.formatNumber(n)}${of} value${n === 1 && !of ? "" : "s"}`} of ` +
            `'${col.name}' ${n === 1 ? "is" : "are"} not ${rule} (for example '${info.example}') and will be missing ` +
            `when '${col.name}' becomes ${dtype}. Undo gives them back right after.`,
          ok: `Make ${g.formatNumber(n)} value${n === 1 ? "" : "s"} missing` });
        if (!ok) return;
        btn.disabled = true;
        try {
          const res = await api.patch(`/api/datasets/${id}/columns`, { column: col.name, dtype, invalid: "missing" });
          g.showError(error, "");
          showUndo(res.undo);
          g.status(`${col.name}: type ${dtype}; ${g.formatNumber(n)} cell${n === 1 ? "" : "s"} set to missing.`);
          g.emit("datasets-changed", { id });
        } catch (err) { g.showError(error, err.message); btn.disabled = false; }
      });
      error.appendChild(el("span", { class: "error-actions" }, " ", btn));
    }

    async function load(offset, withInfo) {
      try {
        if (withInfo || !state.info) await refreshInfo();
        const maxOffset = Math.max(0, state.info.n_rows - 1);
        offset = Math.max(0, Math.min(offset, Math.floor(maxOffset / state.limit) * state.limit));
        const page = await api.get(`/api/datasets/${id}/rows?offset=${offset}&limit=${state.limit}`);
        state.offset = offset;
        state.info.n_rows = page.total;
        const head = el("tr", {}, el("th", { class: "rownum", scope: "col" }, "#"), page.columns.map(header));
        const body = el("tbody", {}, page.rows.map((row, i) => el("tr", {},
          el("th", { scope: "row", class: "rownum" }, g.formatNumber(offset + i + 1)),
          row.map((v) => el("td", { class: v === null ? "null" : (typeof v === "number" ? "num" : null) },
            v === null ? g.MISSING : g.formatCell(v))))));
        clear(tableBox).appendChild(el("table", { class: "grid data" }, el("thead", {}, head), body));
        const end = Math.min(offset + page.rows.length, page.total);
        rangeText.textContent = page.total
          ? `Rows ${g.formatNumber(offset + 1)}–${g.formatNumber(end)} of ${g.formatNumber(page.total)}`
          : "No rows";
        first.disabled = prev.disabled = offset === 0;
        next.disabled = last.disabled = end >= page.total;
      } catch (err) {
        if (err.status === 404 && !state.info) {  // e.g. a tab kept over a reload whose dataset is gone
          tab.close();
          g.status(err.message);
          return;
        }
        g.showError(error, err.message);
        if (err.status === 404) clear(tableBox);
      }
    }

    const onChanged = (detail) => {
      if (detail && detail.id === id) load(state.offset, true);
    };
    const onDeleted = (detail) => {
      if (detail && detail.ids && detail.ids.includes(id)) tab.close();
    };
    g.on("datasets-changed", onChanged);
    g.on("datasets-deleted", onDeleted);
    tab.onClose(() => { g.off("datasets-changed", onChanged); g.off("datasets-deleted", onDeleted); });
    return load(0, true);
  }

  g.registerTab("dataset", { open: openDataset, key: (params) => String(params.id), title: () => "Dataset" });
})();
