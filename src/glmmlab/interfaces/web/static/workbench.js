/* glmmlab workbench: the core every tab builds on.
 *
 * window.glmmlab is the one global. What a tab module (for example static/glmm.js) uses:
 *
 *   glmmlab.registerTab(kind, spec)     spec is a function open(panel, params, tab) or an object
 *                                       {open(panel, params, tab), title(params) -> string, key(params) -> string}.
 *                                       open() builds the tab's content inside `panel` (an empty <div>); it may
 *                                       return a Promise. `key` makes a second openTab with the same key focus the
 *                                       existing tab instead of opening another (leave it out to allow several).
 *                                       Open tabs are reopened after a page reload with the same params (kept in
 *                                       sessionStorage, per project); set spec.restore = false to opt out.
 *   glmmlab.openTab(kind, params, opts) opens (or focuses) a tab; an unregistered kind opens a placeholder tab.
 *                                       opts: {title}. Returns the tab object:
 *       tab.id, tab.kind, tab.params, tab.panel, tab.setTitle(text), tab.activate(), tab.close() (at once),
 *       tab.requestClose() (as the close button: asks the beforeClose guards first), tab.onClose(fn),
 *       tab.onActivate(fn), tab.beforeClose(fn) (fn(tab) -> true, false or a Promise of either; false keeps the
 *       tab open: a tab with unsaved work asks first)
 *   glmmlab.tabs()                      the open tabs, in order.
 *   glmmlab.api.get(url) / .post(url, body) / .put / .patch / .del(url)
 *                                       JSON requests that send the CSRF token; they resolve to the JSON answer
 *                                       and reject with an Error whose .message is the server's {"error"} text
 *                                       (.status and .body too).
 *   glmmlab.api.upload(url, file, onProgress)   raw-body upload with progress(fraction) callbacks.
 *   glmmlab.el(tag, attrs, ...children) builds DOM safely: strings become text nodes, never HTML.
 *   glmmlab.table(columns, rows, opts)  a <table> of values (columns: names or {name, dtype, scale}).
 *   glmmlab.vocabulary()                Promise of GET /api/vocabulary (types, scales, scales_by_dtype, actions).
 *   glmmlab.on(event, fn) / .off(event, fn) / .emit(event, detail)   events: 'datasets-changed', 'models-changed',
 *                                       'reports-changed', 'tab-opened', 'tab-closed'.
 *   glmmlab.refreshSidebar()            reloads datasets, models and reports into the sidebar.
 *   glmmlab.datasets()                  Promise of the dataset list (GET /api/datasets, in lineage order).
 *   glmmlab.registerAction(name, fn)    what a menu item with data-action="name" does.
 *   glmmlab.addMenuItem(menu, label, action)   adds an item to the File/Data/Analysis/Help menu.
 *   glmmlab.showError(element, message) fills a role=alert element (hidden when message is empty).
 *   glmmlab.status(text)                a short message in the status bar.
 *
 * Only textContent and DOM nodes ever carry data into the page; innerHTML is never used.
 */
(function () {
  "use strict";

  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const listeners = {};
  const tabKinds = {};
  const actions = {};
  const openTabs = [];
  let nextTabId = 1;
  let activeTab = null;
  let datasetCache = null;
  let restoring = false;

  // ---- DOM helpers ----------------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, ...children);
    return node;
  }

  function append(node, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function showError(node, message) {
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
  }

  function formatNumber(n) {
    return typeof n === "number" ? n.toLocaleString("en-US") : String(n);
  }

  /* A missing cell in a grid reads NA (as in R), never "null"; formatCell leaves it blank in running text. */
  const MISSING = "NA";

  function formatCell(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number" && !Number.isInteger(value)) {
      return Math.abs(value) >= 1e-4 && Math.abs(value) < 1e9 ? String(+value.toPrecision(10)) : value.toPrecision(6);
    }
    return String(value);
  }

  function table(columns, rows, opts) {
    opts = opts || {};
    const head = el("tr", {}, columns.map((c) => {
      const name = typeof c === "string" ? c : c.name;
      return el("th", { scope: "col", title: name }, el("span", { class: "col-name" }, name),
        typeof c === "object" && c.dtype ? el("span", { class: "col-type" }, c.dtype + (c.scale ? " · " + c.scale : "")) : null);
    }));
    const body = el("tbody", {}, rows.map((row, i) => el("tr", {},
      opts.rowNumbers ? el("th", { scope: "row", class: "rownum" }, formatNumber(opts.rowOffset + i + 1)) : null,
      row.map((v) => el("td", { class: v === null ? "null" : (typeof v === "number" ? "num" : null) },
        v === null ? MISSING : formatCell(v))))));
    if (opts.rowNumbers) head.insertBefore(el("th", { class: "rownum" }, "#"), head.firstChild);
    return el("table", { class: "grid" + (opts.className ? " " + opts.className : "") }, el("thead", {}, head), body);
  }

  // ---- events ---------------------------------------------------------------------------------------------

  function on(event, fn) {
    (listeners[event] = listeners[event] || []).push(fn);
  }

  function off(event, fn) {
    listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
  }

  function emit(event, detail) {
    if (event.startsWith("datasets-")) datasetCache = null;
    for (const fn of listeners[event] || []) {
      try { fn(detail); } catch (err) { console.error(err); }
    }
  }

  // ---- the JSON API ---------------------------------------------------------------------------------------

  async function request(method, url, body) {
    const headers = { "Accept": "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (method !== "GET") headers["X-CSRF-Token"] = meta("csrf-token");
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw apiError(0, null, "The workbench server does not answer. Is it still running?");
    }
    return readResponse(response.status, await response.text());
  }

  function readResponse(status, text) {
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
    if (status >= 200 && status < 300) return data;
    const message = data && data.error ? data.error : `The server answered ${status}.`;
    throw apiError(status, data, message);
  }

  function apiError(status, body, message) {
    const err = new Error(message);
    err.status = status;
    err.body = body;
    return err;
  }

  function upload(url, file, onProgress) {
    const limit = Number(meta("max-upload-bytes"));
    if (limit && file.size > limit) {
      return Promise.reject(apiError(413, null,
        `The file is ${(file.size / 1048576).toFixed(1)} MiB, larger than the upload limit of ${meta("max-upload-human")}.`));
    }
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", meta("csrf-token"));
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
      xhr.onload = () => {
        try { resolve(readResponse(xhr.status, xhr.responseText)); } catch (err) { reject(err); }
      };
      xhr.onerror = () => reject(apiError(0, null, "The upload was interrupted. Is the server still running?"));
      xhr.send(file);
    });
  }

  const api = {
    get: (url) => request("GET", url),
    post: (url, body) => request("POST", url, body === undefined ? {} : body),
    put: (url, body) => request("PUT", url, body),
    patch: (url, body) => request("PATCH", url, body),
    del: (url) => request("DELETE", url),
    upload,
  };

  async function pollJob(jobId, onUpdate) {
    for (;;) {
      const job = await api.get(`/api/jobs/${encodeURIComponent(jobId)}`);
      if (onUpdate) onUpdate(job);
      if (job.state === "done") return job;
      if (job.state === "failed") throw apiError(400, job, job.error || "The job failed.");
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  // ---- tabs -----------------------------------------------------------------------------------------------

  function registerTab(kind, spec) {
    tabKinds[kind] = typeof spec === "function" ? { open: spec } : spec;
  }

  function findTab(kind, key) {
    return openTabs.find((t) => t.kind === kind && t.key === key);
  }

  function openTab(kind, params, opts) {
    params = params || {};
    opts = opts || {};
    const spec = tabKinds[kind];
    const key = spec && spec.key ? String(spec.key(params)) : null;
    if (key !== null) {
      const existing = findTab(kind, key);
      if (existing) { existing.activate(); return existing; }
    }
    const id = nextTabId++;
    const title = opts.title || (spec && spec.title ? spec.title(params) : null) || kind;
    const label = el("span", { class: "tab-label" }, title);
    const closeBtn = el("button", { type: "button", class: "tab-close", title: "Close tab (Delete)", "aria-label": "Close tab",
      tabindex: "-1" }, "×");
    const handle = el("div", { class: "tab", role: "tab", id: `tab-${id}`, "aria-controls": `panel-${id}`,
      "aria-selected": "false", tabindex: "-1", dataset: { kind } }, label, closeBtn);
    const panel = el("div", { class: "tabpanel", role: "tabpanel", id: `panel-${id}`, "aria-labelledby": `tab-${id}`,
      hidden: true, dataset: { kind } });
    const closers = [];
    const activators = [];
    const guards = [];
    const tab = {
      id, kind, params, key, panel, handle,
      setTitle(text) { label.textContent = text; handle.title = text; closeBtn.setAttribute("aria-label", `Close ${text}`); },
      activate() { activate(tab); },
      close() { closeTab(tab); },
      requestClose() { return requestClose(tab); },
      onClose(fn) { closers.push(fn); },
      onActivate(fn) { activators.push(fn); },
      beforeClose(fn) { guards.push(fn); },
      _closers: closers,
      _activators: activators,
      _guards: guards,
    };
    tab.setTitle(title);
    handle.addEventListener("click", (e) => { if (e.target !== closeBtn) activate(tab); });
    handle.addEventListener("auxclick", (e) => { if (e.button === 1) requestClose(tab); });
    closeBtn.addEventListener("click", () => requestClose(tab));
    document.getElementById("tabstrip").appendChild(handle);
    document.getElementById("tabpanels").appendChild(panel);
    openTabs.push(tab);
    activate(tab);
    const opener = spec ? spec.open : placeholder;
    const fromMenu = Date.now() - menuActionAt < 1000;  // a menu item opened it: the focus goes into the tab
    Promise.resolve()
      .then(() => opener(panel, params, tab))
      .then(() => {
        const where = document.activeElement;
        if (!fromMenu || activeTab !== tab || (where && where !== document.body && !where.closest(".menubar"))) return;
        const first = panel.querySelector("[data-autofocus], select:not([disabled]), input:not([disabled]), textarea, button:not([disabled])");
        if (first) first.focus();
      })
      .catch((err) => {
        console.error(err);
        append(clear(panel), el("p", { class: "error", role: "alert" }, err.message || String(err)));
      });
    emit("tab-opened", tab);
    saveTabs();
    return tab;
  }

  function placeholder(panel, params, tab) {
    tab.setTitle(tab.kind === "glmm" ? "GLMM" : tab.kind);
    append(panel, el("section", { class: "placeholder" },
      el("h2", {}, tab.kind === "glmm" ? "Mixed Effects Model (GLMM)" : `“${tab.kind}”`),
      el("p", {}, "This analysis is not available yet in this version of the workbench.")));
  }

  function activate(tab) {
    for (const t of openTabs) {
      const on = t === tab;
      t.handle.classList.toggle("active", on);
      t.handle.setAttribute("aria-selected", on ? "true" : "false");
      t.handle.tabIndex = on ? 0 : -1;  // one tab stop for the strip; arrow keys move between tabs
      t.panel.hidden = !on;
    }
    activeTab = tab;
    document.getElementById("welcome").hidden = openTabs.length > 0;
    tab.handle.scrollIntoView({ block: "nearest", inline: "nearest" });
    for (const fn of tab._activators) fn(tab);
    saveTabs();
  }

  /* Close a tab as the person asked (close button, middle click, Delete): a tab may ask first (beforeClose
   * guards return false, or a Promise of false, to keep it open). Resolves true when the tab was closed. */
  async function requestClose(tab) {
    for (const guard of tab._guards) {
      let ok = false;
      try { ok = await guard(tab); } catch (err) { console.error(err); ok = false; }
      if (!ok) return false;
    }
    const hadFocus = tab.handle.contains(document.activeElement);
    closeTab(tab);
    if (hadFocus && activeTab) activeTab.handle.focus();
    return true;
  }

  // The tab strip with the keyboard: arrows (and Home/End) move between tabs, Enter or Space opens the focused one,
  // Delete closes it.
  function onTabKey(e) {
    const i = openTabs.findIndex((t) => t.handle === e.target);
    if (i < 0) return;
    const go = (j) => { e.preventDefault(); const t = openTabs[(j + openTabs.length) % openTabs.length]; t.handle.focus(); t.handle.scrollIntoView({ block: "nearest", inline: "nearest" }); };
    if (e.key === "ArrowRight") go(i + 1);
    else if (e.key === "ArrowLeft") go(i - 1);
    else if (e.key === "Home") go(0);
    else if (e.key === "End") go(openTabs.length - 1);
    else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); activate(openTabs[i]); openTabs[i].handle.focus(); }
    else if (e.key === "Delete") { e.preventDefault(); requestClose(openTabs[i]); }
  }

  // A strip wider than its box scrolls; the ‹ › buttons at its ends show that there is more and scroll to it.
  function setUpTabOverflow() {
    const strip = document.getElementById("tabstrip");
    const box = strip.parentElement;
    const left = el("button", { type: "button", class: "tab-scroll left", tabindex: "-1", "aria-hidden": "true",
      title: "More tabs to the left", onclick: () => strip.scrollBy({ left: -strip.clientWidth * 0.8 }) }, "‹");
    const right = el("button", { type: "button", class: "tab-scroll right", tabindex: "-1", "aria-hidden": "true",
      title: "More tabs to the right", onclick: () => strip.scrollBy({ left: strip.clientWidth * 0.8 }) }, "›");
    box.insertBefore(left, strip);
    box.insertBefore(right, strip.nextSibling);
    const update = () => {
      const more = strip.scrollWidth - strip.clientWidth;
      left.hidden = !(more > 1 && strip.scrollLeft > 10);  // the strip's own padding is not "more tabs"
      right.hidden = !(more > 1 && strip.scrollLeft < more - 10);
      box.classList.toggle("tabs-overflow", more > 1);
    };
    strip.addEventListener("scroll", update, { passive: true });
    window.addEventListener("resize", update);
    new MutationObserver(update).observe(strip, { childList: true, subtree: true, characterData: true });
    update();
  }

  function closeTab(tab) {
    const i = openTabs.indexOf(tab);
    if (i < 0) return;
    for (const fn of tab._closers) { try { fn(tab); } catch (err) { console.error(err); } }
    openTabs.splice(i, 1);
    tab.handle.remove();
    tab.panel.remove();
    if (activeTab === tab) {
      activeTab = null;
      const next = openTabs[Math.min(i, openTabs.length - 1)];
      if (next) activate(next);
    }
    document.getElementById("welcome").hidden = openTabs.length > 0;
    emit("tab-closed", tab);
    saveTabs();
  }

  // Open tabs survive a page reload (per project, in this browser tab's session storage).
  function storageKey() { return "glmmlab.tabs." + meta("project-name"); }

  function saveTabs() {
    if (restoring) return;
    try {
      const state = openTabs.filter((t) => t.kind in tabKinds && tabKinds[t.kind].restore !== false)
        .map((t) => ({ kind: t.kind, params: t.params, active: t === activeTab }));
      sessionStorage.setItem(storageKey(), JSON.stringify(state));
    } catch (err) { /* storage unavailable: nothing to keep */ }
  }

  function restoreTabs() {
    let state = [];
    try { state = JSON.parse(sessionStorage.getItem(storageKey()) || "[]"); } catch (err) { state = []; }
    restoring = true;
    let active = null;
    try {
      for (const s of state) {
        if (!(s.kind in tabKinds)) continue;
        const tab = openTab(s.kind, s.params || {});
        if (s.active) active = tab;
      }
    } finally {
      restoring = false;
    }
    if (active) active.activate();
    saveTabs();
  }

  // ---- sidebar --------------------------------------------------------------------------------------------

  let vocabularyCache = null;
  function vocabulary() {
    if (!vocabularyCache) vocabularyCache = api.get("/api/vocabulary").catch((err) => { vocabularyCache = null; throw err; });
    return vocabularyCache;
  }

  async function datasets() {
    if (!datasetCache) datasetCache = api.get("/api/datasets").then((r) => r.datasets);
    try {
      return await datasetCache;
    } catch (err) {
      datasetCache = null;
      throw err;
    }
  }

  function datasetItem(d) {
    const meta = [`${formatNumber(d.n_rows)} row${d.n_rows === 1 ? "" : "s"}`];
    if (d.parent_name) meta.push(`${d.operation_label} of ${d.parent_name}`);
    if (d.read_only) meta.push("read-only");
    const li = el("li", { class: "item dataset" + (d.parent_id !== null && d.parent_id !== undefined ? " derived" : ""),
      dataset: { kind: "dataset", id: String(d.id) } },
      el("button", { type: "button", class: "open", title: `Open ${d.name}` }, d.name),
      el("span", { class: "meta" }, meta.join(" · ")),
      el("button", { type: "button", class: "delete", title: `Delete ${d.name}...`, "aria-label": `Delete ${d.name}` }, "×"));
    li.style.setProperty("--depth", String(d.depth || 0));
    return li;
  }

  function simpleItem(kind, item) {
    const name = item.name || `${kind} ${item.id}`;
    return el("li", { class: "item", dataset: { kind, id: String(item.id) } },
      el("button", { type: "button", class: "open" }, name),
      el("span", { class: "item-tools" },
        el("button", { type: "button", class: "rename", title: `Rename ${name}...`, "aria-label": `Rename ${name}` }, "✎"),
        el("button", { type: "button", class: "delete", title: `Delete ${name}...`, "aria-label": `Delete ${name}` }, "×")));
  }

  function fillList(id, items, make, emptyText) {
    const list = clear(document.getElementById(id));
    if (!items.length) list.appendChild(el("li", { class: "empty" }, emptyText));
    for (const item of items) list.appendChild(make(item));
  }

  async function refreshSidebar() {
    datasetCache = null;
    const [ds, models, reports] = await Promise.all([
      datasets(),
      api.get("/api/models").then((r) => (Array.isArray(r) ? r : r.models) || []).catch(() => []),
      api.get("/api/reports").then((r) => (Array.isArray(r) ? r : r.reports) || []).catch(() => []),
    ]);
    fillList("dataset-list", ds, datasetItem, "No datasets yet.");
    fillList("model-list", models, (m) => simpleItem("model", m), "No saved models.");
    fillList("report-list", reports, (r) => simpleItem("report", r), "No reports.");
    return ds;
  }

  function onSidebarClick(e) {
    const li = e.target.closest("li.item");
    if (!li) return;
    const id = /^\d+$/.test(li.dataset.id) ? Number(li.dataset.id) : li.dataset.id;
    const name = li.querySelector("button.open").textContent;
    if (e.target.closest("button.delete")) {
      if (li.dataset.kind === "dataset") runAction("delete-dataset", { id });
      else runAction("delete-item", { kind: li.dataset.kind, id, name });
    } else if (e.target.closest("button.rename")) {
      runAction("rename-item", { kind: li.dataset.kind, id, name });
    } else if (e.target.closest("button.open")) {
      openTab(li.dataset.kind, { id }, { title: e.target.closest("button.open").textContent });
    }
  }

  // ---- menus and actions ----------------------------------------------------------------------------------

  function registerAction(name, fn) { actions[name] = fn; }
  let menuActionAt = 0;  // when a menu item was last chosen (a tab it opens takes the focus)

  function runAction(name, detail) {
    const fn = actions[name];
    if (!fn) { status(`“${name}” is not available yet.`); return; }
    Promise.resolve().then(() => fn(detail)).catch((err) => { console.error(err); status(err.message || String(err)); });
  }

  function closeMenus(except) {
    for (const m of document.querySelectorAll(".menu.open")) {
      if (m === except) continue;
      m.classList.remove("open");
      m.querySelector(".menu-title").setAttribute("aria-expanded", "false");
    }
  }

  /* The menu bar (WAI-ARIA menubar): Enter, Space or ArrowDown on a title opens its menu at the first item (ArrowUp
   * at the last); ArrowUp/ArrowDown/Home/End move in a menu, ArrowLeft/ArrowRight go to the next menu; Enter
   * activates an item; Escape closes the menu and puts the focus back where it was before the menu opened. */
  function setUpMenus() {
    const bar = document.querySelector(".menubar");
    const titles = () => Array.from(bar.querySelectorAll(".menu-title"));
    const itemsOf = (menu) => Array.from(menu.querySelectorAll(".menu-items [role=menuitem]"));
    let returnTo = null;  // where the focus was before a menu opened

    function remember(node) {
      if (!bar.querySelector(".menu.open")) returnTo = node && node !== document.body && !bar.contains(node) ? node : null;
    }
    function openMenu(menu, focus) {
      closeMenus(menu);
      menu.classList.add("open");
      const title = menu.querySelector(".menu-title");
      title.setAttribute("aria-expanded", "true");
      for (const t of titles()) t.tabIndex = t === title ? 0 : -1;
      const items = itemsOf(menu);
      if (focus === "first" && items.length) items[0].focus();
      else if (focus === "last" && items.length) items[items.length - 1].focus();
      else title.focus();
    }
    function close(restoreFocus, title) {
      closeMenus();
      const target = returnTo && returnTo.isConnected ? returnTo : title;
      returnTo = null;
      if (restoreFocus && target) target.focus();
    }
    function neighbour(menu, step) {
      const all = titles();
      const i = all.indexOf(menu.querySelector(".menu-title"));
      return all[(i + step + all.length) % all.length].parentElement;
    }

    bar.addEventListener("pointerdown", (e) => { if (e.target.closest(".menu-title")) remember(document.activeElement); }, true);
    bar.addEventListener("click", (e) => {
      const title = e.target.closest(".menu-title");
      if (title) {
        const menu = title.parentElement;
        if (menu.classList.contains("open")) close(false);
        else openMenu(menu, "first");
        return;
      }
      const item = e.target.closest("[data-action]");
      const menu = e.target.closest(".menu");
      if (item) { close(true, menu && menu.querySelector(".menu-title")); menuActionAt = Date.now(); runAction(item.dataset.action); }
      else if (e.target.closest("a[role=menuitem]")) close(false);
    });
    bar.addEventListener("mouseover", (e) => {
      const menu = e.target.closest(".menu");
      if (menu && bar.querySelector(".menu.open") && !menu.classList.contains("open")) openMenu(menu, null);
    });
    bar.addEventListener("keydown", (e) => {
      const menu = e.target.closest(".menu");
      if (!menu) return;
      const title = menu.querySelector(".menu-title");
      const onTitle = e.target === title;
      const key = e.key;
      if (onTitle) {
        if (key === "Enter" || key === " " || key === "ArrowDown") { e.preventDefault(); remember(title); openMenu(menu, "first"); }
        else if (key === "ArrowUp") { e.preventDefault(); remember(title); openMenu(menu, "last"); }
        else if (key === "ArrowRight" || key === "ArrowLeft") {
          e.preventDefault();
          const next = neighbour(menu, key === "ArrowRight" ? 1 : -1);
          if (menu.classList.contains("open")) openMenu(next, "first");
          else { for (const t of titles()) t.tabIndex = -1; const t = next.querySelector(".menu-title"); t.tabIndex = 0; t.focus(); }
        } else if (key === "Escape") { e.preventDefault(); close(true, title); }
        return;
      }
      const items = itemsOf(menu);
      const i = items.indexOf(e.target);
      if (key === "ArrowDown" || key === "ArrowUp") {
        e.preventDefault();
        items[(i + (key === "ArrowDown" ? 1 : -1) + items.length) % items.length].focus();
      } else if (key === "Home" || key === "End") {
        e.preventDefault();
        items[key === "Home" ? 0 : items.length - 1].focus();
      } else if (key === "ArrowRight" || key === "ArrowLeft") {
        e.preventDefault();
        openMenu(neighbour(menu, key === "ArrowRight" ? 1 : -1), "first");
      } else if (key === "Escape") {
        e.preventDefault();
        close(true, title);
      } else if (key === "Tab") {
        close(false);
      } else if (key === " " && e.target.tagName === "A") {
        e.preventDefault();
        e.target.click();
      }
    });
    document.addEventListener("click", (e) => { if (!e.target.closest(".menubar")) closeMenus(); });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && bar.querySelector(".menu.open") && !bar.contains(e.target)) close(true);
    });
  }

  function addMenuItem(menuName, label, action) {
    for (const menu of document.querySelectorAll(".menu")) {
      if (menu.querySelector(".menu-title").textContent.trim() !== menuName) continue;
      const item = el("button", { type: "button", role: "menuitem", dataset: { action } }, label);
      menu.querySelector(".menu-items").appendChild(item);
      return item;
    }
    throw new Error(`There is no menu called ${menuName}.`);
  }

  let statusTimer = null;
  function status(text, sticky) {
    const bar = document.getElementById("statusbar");
    bar.textContent = text || "";
    clearTimeout(statusTimer);
    if (text && !sticky) statusTimer = setTimeout(() => { bar.textContent = ""; }, 8000);
  }

  // ---- built-in actions -----------------------------------------------------------------------------------

  // The GLMM form starts on the dataset in view (a dataset tab, or the dataset of a model or diagnostics tab).
  registerAction("open-glmm", () => {
    const t = activeTab;
    const dataset = t && t.kind === "dataset" ? t.params.id : (t && t.datasetId !== undefined ? t.datasetId : undefined);
    openTab("glmm", dataset !== undefined ? { dataset } : {});
  });
  registerAction("export-project", () => { window.location.href = "/api/project/export"; });
  registerAction("add-samples", async () => {
    const r = await api.post("/api/samples");
    emit("datasets-changed");
    status(r.datasets.length ? `Added ${r.datasets.length} sample datasets.`
      : "The sample datasets were added to this project before; nothing to add.");
  });

  function start() {
    setUpMenus();
    setUpTabOverflow();
    document.getElementById("tabstrip").addEventListener("keydown", onTabKey);
    document.querySelector(".sidebar").addEventListener("click", onSidebarClick);
    for (const event of ["datasets-changed", "datasets-deleted", "models-changed", "reports-changed"]) {
      on(event, () => refreshSidebar().catch((err) => status(err.message)));
    }
    restoreTabs();
    refreshSidebar().catch((err) => status(err.message));
    document.getElementById("welcome").hidden = openTabs.length > 0;
    document.body.dataset.ready = "true";
  }

  window.glmmlab = {
    el, append, clear, table, formatNumber, formatCell, MISSING, showError, status,
    on, off, emit, api, pollJob, vocabulary,
    registerTab, openTab, closeTab, requestClose, tabs: () => openTabs.slice(), activeTab: () => activeTab,
    hasTab: (kind) => kind in tabKinds,
    datasets, refreshSidebar,
    registerAction, runAction, addMenuItem,
    start,
  };
})();
