// synchrod monitor page: renders the daemon's status, keeps it live through
// Server-Sent Events, and (after a login) drives the source actions.
// Everything is built with DOM APIs and textContent: sysnames, paths and
// error messages come from recorders and are never parsed as HTML.
// The other views of the page (storage.js, recordings.js) use what this file
// shares as window.synchrodMonitor: the API helper, the DOM helpers and
// formatters, the login, and on(name, handler) for live events.
"use strict";

(() => {
  const API = "/api/v1";
  const AUTH_KEYS = {token: "synchrod.token", user: "synchrod.user", expires: "synchrod.expires_at"};
  const MAX_ALARMS = 20;
  const RUNS_PAGE = 50;
  const NOTICE_MS = 10000;
  const RECONNECT_MS = 5000;

  const state = {
    daemon: null,
    config: null,
    sources: new Map(),     // sysname -> Source, in the server's order
    jobs: new Map(),        // source -> Job
    targets: [],
    alarms: [],             // newest first
    runs: [],               // newest first
    nextBefore: null,
    expanded: new Map(),    // run id -> {calls, nextAfter, loading, error}
    auth: null,             // {token, user, expires}
    busy: new Set(),        // sysnames with an action in flight
    full: false,            // jobs, alarms and runs are rendered (after the first paint)
  };
  // the rows shown, per table: id -> {row, key}; a row is built again only when its key changes
  const shown = {sources: new Map(), targets: new Map(), jobs: new Map(), runs: new Map()};
  let filterKey = null;     // the source names in the runs filter
  let events = null;
  let noticeTimer = null;
  let expiryTimer = null;
  let runsRefreshTimer = null;

  // --- DOM helpers ----------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  /** el("td", {className: "num", title: "x"}, "text", childNode, ...) */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "onclick") node.addEventListener("click", value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const td = (text, className) => el("td", {className}, text);
  const num = (value) => td(fmtNumber(value), "num");

  /**
   * The rows of the big tables are cloned from a template row (one native call
   * instead of some thirty element and text creations each), then filled with
   * textContent. cells: a class name per cell, "td.x > span.y" for a cell
   * holding a span, "td > button.y" for one holding a button.
   */
  function rowTemplate(cells) {
    const tr = document.createElement("tr");
    for (const spec of cells) {
      const [cellClass, inner] = spec.split(" > ");
      const cell = document.createElement("td");
      const cls = cellClass.replace(/^td\.?/, "").replace(/\./g, " ");
      if (cls) cell.className = cls;
      if (inner) {
        const [tag, ...classes] = inner.split(".");
        const child = document.createElement(tag);
        if (tag === "button") child.type = "button";
        if (classes.length) child.className = classes.join(" ");
        cell.append(child);
      }
      tr.append(cell);
    }
    return tr;
  }

  const templates = new Map();
  function cloneRow(name, cells) {
    let tpl = templates.get(name);
    if (!tpl) { tpl = rowTemplate(cells); templates.set(name, tpl); }
    return tpl.cloneNode(true);
  }

  // Setters that leave the DOM alone when the value is already there: an
  // unchanged page must not cost a style recalculation or a layout.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  function setProp(node, prop, value) {
    if (node[prop] !== value) node[prop] = value;
  }

  /**
   * Brings the rows of tbody in line with items, in their order. A row whose
   * key (a cheap string of all it shows) did not change is kept as it is;
   * another one is built again and takes its place; rows of items that are
   * gone are removed. When nothing changed, nothing in the DOM is touched.
   * items: [{id, key, build: () => <tr>}]
   */
  function syncRows(tbody, cache, items) {
    const ids = new Set(items.map((it) => it.id));
    for (const [id, entry] of cache) {
      if (!ids.has(id)) { entry.row.remove(); cache.delete(id); }
    }
    let prev = null;
    for (const it of items) {
      let entry = cache.get(it.id);
      if (!entry || entry.key !== it.key) {
        const row = it.build();
        if (entry && entry.row.parentNode === tbody) entry.row.replaceWith(row);
        entry = {row, key: it.key};
        cache.set(it.id, entry);
      }
      const expected = prev ? prev.nextSibling : tbody.firstChild;
      if (entry.row !== expected) tbody.insertBefore(entry.row, expected);
      prev = entry.row;
    }
    // anything after the last row is not ours (nothing, normally)
    while (prev ? prev.nextSibling : tbody.firstChild) (prev ? prev.nextSibling : tbody.firstChild).remove();
  }

  /** Runs fn once the page has painted (in a task after the next frame), so it never
   *  delays the first paint; at once in a hidden tab, where no frame comes. */
  function afterPaint(fn) {
    let done = false;
    const run = () => { if (!done) { done = true; fn(); } };
    if (!document.hidden) requestAnimationFrame(() => setTimeout(run, 0));
    setTimeout(run, document.hidden ? 0 : 1000);   // hidden before its frame came
  }

  /** fn (async) run one call at a time: a call while one runs asks for one more run
   *  after it (so answers never cross and the last ask is served). */
  function serial(fn) {
    let running = false;
    let again = false;
    return async function run() {
      if (running) { again = true; return; }
      running = true;
      try { await fn(); } finally { running = false; }
      if (again) { again = false; run(); }
    };
  }

  /** Keeps a view fresh with load(): soon() for events, which come in bursts (one load
   *  for a burst); read() when a load answered; start() (after the first paint) loads
   *  every `every` ms while the page is visible, and when it becomes visible again after
   *  that long; seen() whether any load answered yet. */
  function keepFresh(load, {every = 30000, debounce = 300} = {}) {
    let timer = null;
    let lastAt = 0;
    return {
      soon() {
        if (timer) return;
        timer = setTimeout(() => { timer = null; load(); }, debounce);
      },
      read() { lastAt = Date.now(); },
      seen: () => lastAt > 0,
      start() {
        setInterval(() => { if (!document.hidden) load(); }, every);
        document.addEventListener("visibilitychange", () => {
          if (!document.hidden && Date.now() - lastAt >= every) load();
        });
      },
    };
  }

  /** Renders pushed by events wait for the next frame: a burst of them costs one render. */
  const queued = new Set();
  let frameRequested = false;
  function render(fn) {
    queued.add(fn);
    if (frameRequested) return;
    frameRequested = true;
    const flush = () => {
      frameRequested = false;
      const fns = [...queued];
      queued.clear();
      for (const f of fns) f();
    };
    if (document.hidden) setTimeout(flush, 0);
    else requestAnimationFrame(flush);
  }

  // --- formatting ---------------------------------------------------------------

  const DASH = "—";
  const pad = (n, width = 2) => String(n).padStart(width, "0");

  /** 1234567 -> "1,234,567" (integers by hand: toLocaleString is slow, and loads ICU on its first call). */
  function fmtNumber(n) {
    if (n === null || n === undefined) return DASH;
    const v = Number(n);
    if (Number.isSafeInteger(v)) return String(v).replace(/\B(?=(\d{3})+$)/g, ",");
    return v.toLocaleString("en-US");
  }

  /** Whole seconds as "45s", "3m 12s", "2h 05m", "3d 4h". */
  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return DASH;
    let s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s}s`;
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${pad(m)}m`;
    return `${m}m ${pad(s)}s`;
  }

  /** A cycle duration: fractions below ten seconds. */
  function fmtSeconds(seconds) {
    if (seconds === null || seconds === undefined) return DASH;
    return seconds < 10 ? `${seconds.toFixed(2)} s` : fmtAge(seconds);
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return DASH;
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let value = n, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
  }

  /** Local "YYYY-MM-DD HH:MM:SS". */
  function fmtTime(iso) {
    if (!iso) return DASH;
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return String(iso);
    return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ` +
           `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  }

  function fmtRelative(iso) {
    if (!iso) return DASH;
    const ms = Date.now() - new Date(iso).getTime();
    if (Number.isNaN(ms)) return String(iso);
    if (Math.abs(ms) < 2000) return "just now";
    return ms > 0 ? `${fmtAge(ms / 1000)} ago` : `in ${fmtAge(-ms / 1000)}`;
  }

  /** Makes cell show "3m 12s ago", the exact time in its title, kept current by tick(). */
  function setRelTime(cell, iso) {
    cell.textContent = fmtRelative(iso);
    if (iso) {
      cell.dataset.ts = iso;
      cell.title = `${iso} (${fmtTime(iso)} local)`;
    }
  }

  function tick() {
    if (document.hidden) return;
    for (const node of document.querySelectorAll("[data-ts]")) {
      setText(node, fmtRelative(node.dataset.ts));
    }
  }

  // --- API --------------------------------------------------------------------------

  /** Never throws: {status, ok, data, headers}; status 0 on a network error. */
  async function api(method, path, {body, auth = false} = {}) {
    const headers = {Accept: "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && state.auth) headers.Authorization = `Bearer ${state.auth.token}`;
    let resp;
    try {
      resp = await fetch(API + path, {
        method, headers, cache: "no-store", credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return {status: 0, ok: false, data: {error: `cannot reach the daemon (${err.message})`}};
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = {error: text.slice(0, 300)}; }
    }
    return {status: resp.status, ok: resp.ok, data, headers: resp.headers};
  }

  function errorText(res) {
    const err = res.data && typeof res.data.error === "string" ? res.data.error : null;
    return err || `HTTP ${res.status}`;
  }

  function showNotice(text, kind = "ok") {
    const box = $("notice");
    box.textContent = text;
    box.className = `banner ${kind}`;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { box.hidden = true; }, NOTICE_MS);
  }

  // --- authentication -----------------------------------------------------------

  function loadAuth() {
    const token = sessionStorage.getItem(AUTH_KEYS.token);
    const expires = sessionStorage.getItem(AUTH_KEYS.expires);
    if (!token) return null;
    if (expires && Date.parse(expires) <= Date.now()) {
      forgetAuth();
      return null;
    }
    return {token, user: sessionStorage.getItem(AUTH_KEYS.user) || "?", expires};
  }

  function forgetAuth() {
    for (const key of Object.values(AUTH_KEYS)) sessionStorage.removeItem(key);
  }

  function setAuth(auth) {
    state.auth = auth;
    clearTimeout(expiryTimer);
    if (auth) {
      sessionStorage.setItem(AUTH_KEYS.token, auth.token);
      sessionStorage.setItem(AUTH_KEYS.user, auth.user);
      if (auth.expires) sessionStorage.setItem(AUTH_KEYS.expires, auth.expires);
      const left = auth.expires ? Date.parse(auth.expires) - Date.now() : NaN;
      if (left > 0 && left < 2 ** 31 - 1) {
        expiryTimer = setTimeout(() => dropSession("Your session expired: log in again."), left);
      }
    } else {
      forgetAuth();
    }
    renderAuth();
    renderSources();
    emit("auth", auth);
  }

  /** Forgets the token (after a 401 or its expiry) and asks for a login again. */
  function dropSession(message) {
    setAuth(null);
    showLoginError(message);
  }

  function showLoginError(message) {
    const p = $("login-error");
    setText(p, message || "");
    setProp(p, "hidden", !message);
  }

  function renderAuth() {
    const loggedIn = Boolean(state.auth);
    const canLogIn = !state.daemon || state.daemon.users_configured;
    if (document.body.classList.contains("logged-in") !== loggedIn) {
      document.body.classList.toggle("logged-in", loggedIn);
    }
    setProp($("login-form"), "hidden", loggedIn || !canLogIn);
    setProp($("read-only-note"), "hidden", loggedIn || canLogIn);
    if (loggedIn) showLoginError("");
    setProp($("session"), "hidden", !loggedIn);
    setText($("session-user"), loggedIn ? state.auth.user : "");
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const username = $("login-user").value.trim();
    const password = $("login-password").value;
    const submit = $("login-submit");
    submit.disabled = true;
    showLoginError("");
    const res = await api("POST", "/login", {body: {username, password}});
    submit.disabled = false;
    if (res.ok && res.data && res.data.token) {
      $("login-password").value = "";
      setAuth({token: res.data.token, user: res.data.user || username, expires: res.data.expires_at});
      showNotice(`Logged in as ${res.data.user || username}.`);
      return;
    }
    let message = errorText(res);
    if (res.status === 401) message = `Login failed: ${message}`;
    if (res.status === 429) {
      const wait = res.headers && res.headers.get("Retry-After");
      const hint = wait && !/try again/i.test(message) ? ` (try again in ${wait} s)` : "";
      message = `Too many attempts: ${message}${hint}`;
    }
    showLoginError(message);
  }

  async function onLogout() {
    if (state.auth) await api("POST", "/logout", {auth: true});   // forgotten whatever the answer
    setAuth(null);
    showNotice("Logged out.");
  }

  /** A request with the token (a POST unless method says otherwise); null (and the
   *  login form again) on a 401. */
  async function authorized(path, {method = "POST", body} = {}) {
    if (!state.auth) {
      dropSession("Log in first.");
      return null;
    }
    const res = await api(method, path, {auth: true, body});
    if (res.status === 401) {
      dropSession(`Not authorized (${errorText(res)}): log in again.`);
      return null;
    }
    return res;
  }

  // --- actions --------------------------------------------------------------------

  async function sourceAction(sysname, action) {
    state.busy.add(sysname);
    renderSourceRow(sysname);
    const res = await authorized(`/sources/${encodeURIComponent(sysname)}/${action}`);
    state.busy.delete(sysname);
    if (res === null) return;
    if (res.ok && res.data) {
      if (res.data.source) updateSource(res.data.source);
      else renderSourceRow(sysname);
      showNotice(res.data.message || `${action}: done`);
    } else {
      renderSourceRow(sysname);
      showNotice(`${sysname}: ${action} refused: ${errorText(res)}`, "error");
    }
  }

  async function onReload() {
    const res = await authorized("/reload");
    if (res === null) return;
    if (!res.ok) showNotice(`Reload failed: ${errorText(res)}`, "error");
    else if (res.data.reloaded) showNotice("Configuration reloaded.");
    else showNotice(`Reload refused: ${res.data.error || "unknown error"}`, "error");
  }

  async function onShutdown() {
    const name = state.daemon ? state.daemon.name : "the daemon";
    if (!window.confirm(`Shut down ${name}? The calls in hand finish first.`)) return;
    const res = await authorized("/shutdown");
    if (res === null) return;
    if (res.ok) showNotice((res.data && res.data.message) || "The daemon is stopping.", "warning");
    else showNotice(`Shutdown failed: ${errorText(res)}`, "error");
  }

  // --- daemon header ------------------------------------------------------------

  function renderDaemon() {
    const d = state.daemon;
    if (!d) return;
    const title = `synchrod ${d.name}`;
    if (document.title !== title) document.title = title;
    setText($("daemon-name"), d.name);
    setProp($("daemon-name"), "title", `host ${d.host}, pid ${d.pid}, started ${d.started_at}`);
    setText($("daemon-version"), d.version);
    const badge = $("daemon-state");
    setText(badge, d.state);
    setProp(badge, "className", `badge daemon-${d.state}`);
    setText($("config-path"), d.config_path);
    setProp($("config-path"), "title", `loaded ${d.config_loaded_at}`);

    const err = $("config-error");
    setProp(err, "hidden", !d.config_error);
    setText(err, d.config_error
      ? `Configuration error${d.config_error_at ? ` (${fmtTime(d.config_error_at)})` : ""}: ` +
        `${d.config_error}. The daemon keeps running on its previous configuration.`
      : "");
    const banner = $("daemon-banner");
    setProp(banner, "hidden", d.state !== "stopping");
    setText(banner, d.state === "stopping" ? "The daemon is stopping." : "");
    renderAuth();
  }

  function renderConfig() {
    const c = state.config;
    if (!c) return;
    setText($("config-summary"),
      `${c.enabled ? "" : "synchronisation OFF · "}sleep ${fmtAge(c.sleep_period)} · ` +
      `${fmtNumber(c.calls_per_period)} calls/cycle · max attempts ${c.max_attempts}` +
      (c.mark_erroneous ? " · marks E" : ""));
  }

  // --- sources ------------------------------------------------------------------

  function fillState(cell, s) {
    const badge = cell.firstChild;
    badge.className = `badge st-${s.state}`;
    badge.textContent = s.state;
    if (s.stalled) {
      cell.append(" (stalled)");
      cell.classList.add("stalled");
      cell.title = s.stalled_since ? `stalled since ${s.stalled_since}` : "stalled";
    }
    if (s.disabled_by) cell.title = `disabled by ${s.disabled_by}`;
  }

  function fillCounts(cell, c) {
    if (!c) {
      cell.className = "";
      cell.textContent = DASH;
      return;
    }
    cell.textContent = `${c.synchronized} / ${c.not_used} / ${c.erroneous} / ${c.failed}`;
    cell.title = `taken ${c.taken}, synchronized ${c.synchronized}, not used ${c.not_used}, ` +
                 `erroneous ${c.erroneous}, failed ${c.failed}, skipped ${c.skipped}`;
  }

  function actionButton(s, action, label, title, disabled = false) {
    return el("button", {
      type: "button", className: `action act-${action}`, title, dataset: {action},
      disabled: disabled || state.busy.has(s.sysname),
      onclick: () => sourceAction(s.sysname, action),
    }, label);
  }

  function actionsCell(s) {
    const cell = el("div", {className: "buttons"});
    cell.append(s.paused
      ? actionButton(s, "resume", "Resume", "end the pause")
      : actionButton(s, "pause", "Pause", "take no new chunk until resumed (or the daemon restarts)"));
    if (s.disabled_by === "config") {
      cell.append(actionButton(s, "enable", "Enable", "disabled in the configuration file", true));
    } else if (s.disabled_by) {
      cell.append(actionButton(s, "enable", "Enable", `disabled by ${s.disabled_by}`));
    } else {
      cell.append(actionButton(s, "disable", "Disable", "stop it for every daemon, across restarts"));
    }
    cell.append(actionButton(s, "run", "Run now", "skip the sleep of its group"),
                actionButton(s, "retry", "Retry", "forget its failures, clear its E marks, run it now"));
    return el("td", {className: "actions"}, cell);
  }

  const SOURCE_CELLS = ["name", "", "state > span.badge", "", "num", "num", "time", "error-text",
                        "counts.num", "num", "num"];

  function sourceRow(s) {
    const row = cloneRow("source", SOURCE_CELLS);
    const c = row.cells;
    row.dataset.source = s.sysname;
    c[0].textContent = s.sysname;
    c[1].textContent = s.group;
    fillState(c[2], s);
    c[3].textContent = s.owner || DASH;
    if (s.owner && state.daemon && s.owner === state.daemon.name) c[3].className = "self";
    c[4].textContent = fmtNumber(s.backlog);
    c[5].textContent = fmtAge(s.lag_seconds);
    setRelTime(c[6], s.last_cycle_at);
    if (s.last_error) {
      c[7].textContent = s.last_error;
      c[7].title = s.last_error;
    }
    fillCounts(c[8], s.last_counts);
    c[9].textContent = fmtNumber(s.retrying);
    c[10].textContent = fmtNumber(s.erroneous);
    if (s.erroneous > 0) c[10].classList.add("bad");
    if (state.auth) row.append(actionsCell(s));
    return row;
  }

  /** Keyed: a source's row is built again only when it, the login or its busy flag changed. */
  function renderSources() {
    setProp(document.querySelector("#sources .col-actions"), "hidden", !state.auth);
    const context = `${state.auth ? 1 : 0}|${state.daemon ? state.daemon.name : ""}|`;
    const items = [];
    for (const s of state.sources.values()) {
      items.push({id: s.sysname, key: context + (state.busy.has(s.sysname) ? 1 : 0) + JSON.stringify(s),
                  build: () => sourceRow(s)});
    }
    syncRows(document.querySelector("#sources tbody"), shown.sources, items);
    if (state.full) renderRunsFilter();
  }

  const renderSourceRow = renderSources;   // keyed: only that row changes

  function updateSource(s) {
    state.sources.set(s.sysname, s);
    render(renderSources);
  }

  // --- target paths ---------------------------------------------------------------

  function useCell(t) {
    const cell = el("div", {className: "usewrap"});
    const bar = el("div", {className: "bar", title: `watermark ${t.watermark}%`});
    if (t.usage_ratio !== null && t.usage_ratio !== undefined) {
      const fill = el("div", {className: t.above_watermark ? "fill full" : "fill"});
      fill.style.width = `${Math.min(100, Math.max(0, t.usage_ratio * 100)).toFixed(1)}%`;
      bar.append(fill);
    }
    const mark = el("div", {className: "mark"});
    mark.style.left = `${Math.min(100, Math.max(0, t.watermark))}%`;
    bar.append(mark);
    const pct = t.usage_ratio === null || t.usage_ratio === undefined
      ? "unreadable" : `${(t.usage_ratio * 100).toFixed(1)}%`;
    cell.append(bar, el("span", {className: "pct"}, pct));
    if (t.problem) cell.append(el("span", {className: "badge full", title: "takes no new files"}, t.problem));
    else if (t.above_watermark) cell.append(el("span", {className: "badge full", title: "takes no new files"}, "full"));
    return el("td", {className: "use"}, cell);
  }

  function targetRow(t) {
    return el("tr", {dataset: {path: t.path}},
      td(t.path, "path"), td(t.kind), num(t.priority), td(String(t.balance), "num"), useCell(t),
      td(`${fmtBytes(t.used_bytes)} / ${fmtBytes(t.capacity_bytes)}`));
  }

  function renderTargets() {
    syncRows(document.querySelector("#targets tbody"), shown.targets,
             state.targets.map((t) => ({id: t.path, key: JSON.stringify(t), build: () => targetRow(t)})));
  }

  // --- jobs -------------------------------------------------------------------------

  const JOB_CELLS = ["num", "", "num", "td > span", "num", "", "td > span", "time", "comment"];

  function jobRow(j) {
    const row = cloneRow("job", JOB_CELLS);
    const c = row.cells;
    row.dataset.job = j.source;
    c[0].textContent = fmtNumber(j.id);
    c[1].textContent = j.source;
    c[2].textContent = fmtNumber(j.generation);
    c[3].firstChild.className = `badge st-${j.state}`;
    c[3].firstChild.textContent = j.state;
    c[4].textContent = fmtNumber(j.attempt);
    c[5].textContent = j.type || DASH;
    c[6].firstChild.className = `status status-${j.status.toLowerCase()}`;
    c[6].firstChild.textContent = j.status;
    c[7].textContent = fmtTime(j.timestamp);
    c[8].textContent = j.comment;
    return row;
  }

  function renderJobs() {
    if (!state.full) return;   // after the first paint
    const jobs = [...state.jobs.values()].sort((a, b) => a.id - b.id);
    syncRows(document.querySelector("#jobs tbody"), shown.jobs,
             jobs.map((j) => ({id: j.source, key: JSON.stringify(j), build: () => jobRow(j)})));
  }

  // --- alarms -------------------------------------------------------------------

  function renderAlarms() {
    if (!state.full) return;   // after the first paint
    const items = state.alarms.map((a) => el("li", {className: `alarm alarm-${a.kind}`},
      el("time", {dateTime: a.at, title: a.at}, fmtTime(a.at)), " ",
      el("span", {className: "badge"}, a.kind.replace(/_/g, " ")), " ",
      a.source ? el("b", {}, a.source) : null, a.source ? ": " : null,
      a.message));
    $("alarms").replaceChildren(...items);
    setProp($("no-alarms"), "hidden", items.length > 0);
  }

  function addAlarm(alarm) {
    state.alarms.unshift(alarm);
    state.alarms.length = Math.min(state.alarms.length, MAX_ALARMS);
    render(renderAlarms);
  }

  // --- run history --------------------------------------------------------------

  function renderRunsFilter() {
    const select = $("runs-source");
    const current = select.value;
    const names = [...state.sources.keys()];
    if (current && !names.includes(current)) names.push(current);
    const key = JSON.stringify(names);
    if (key === filterKey) return;
    filterKey = key;
    select.replaceChildren(el("option", {value: ""}, "all sources"),
                           ...names.map((n) => el("option", {value: n}, n)));
    select.value = current;
  }

  function runsQuery(before) {
    const params = new URLSearchParams({limit: String(RUNS_PAGE)});
    const source = $("runs-source").value;
    if (source) params.set("source", source);
    if (before) params.set("before", String(before));
    return `/runs?${params}`;
  }

  const RUN_CELLS = ["td > button.link", "", "time", "num", "num", "num", "num", "num", "num", "num",
                     "num", "num", "error-text"];

  /** A run's row; a click on it opens or closes it (one listener on the table: onRunsClick). */
  function runRow(r) {
    const open = state.expanded.has(r.id);
    const row = cloneRow("run", RUN_CELLS);
    const c = row.cells;
    row.className = `run run-${r.state}`;
    row.dataset.run = String(r.id);
    const toggle = c[0].firstChild;
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = `${open ? "▾" : "▸"} ${r.id}`;
    c[1].textContent = r.source;
    c[2].textContent = fmtTime(r.started_at);
    c[2].title = `${r.started_at} → ${r.finished_at} (daemon ${r.daemon})`;
    c[3].textContent = fmtSeconds(r.seconds);
    const counts = [r.taken, r.synchronized, r.not_used, r.erroneous, r.failed, r.skipped, r.files];
    for (let i = 0; i < counts.length; i += 1) c[4 + i].textContent = fmtNumber(counts[i]);
    c[11].textContent = fmtBytes(r.bytes);
    if (r.error) {
      c[12].textContent = r.error;
      c[12].title = r.error;
    }
    return row;
  }

  function onRunsClick(ev) {
    const row = ev.target.closest("tr.run");
    if (row && row.dataset.run) toggleRun(Number(row.dataset.run));
  }

  function runDetailRow(id) {
    const detail = state.expanded.get(id);
    const cell = el("td", {colSpan: 13});
    if (detail.error) cell.append(el("p", {className: "error"}, detail.error));
    if (detail.calls.length) {
      const rows = detail.calls.map((c) => el("tr", {className: `call out-${c.outcome}`},
        num(c.source_cplid), td(c.sid, "sid"), td(c.outcome), td(c.reason || DASH),
        td(c.detail || "", "detail")));
      cell.append(el("table", {className: "calls"},
        el("thead", {}, el("tr", {}, ...["Call id", "SID", "Outcome", "Reason", "Detail"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, ...rows)));
    } else if (!detail.loading && !detail.error) {
      cell.append(el("p", {className: "muted"}, "No call was taken in this run."));
    }
    if (detail.loading) cell.append(el("p", {className: "muted"}, "loading…"));
    else if (detail.nextAfter !== null && detail.nextAfter !== undefined) {
      cell.append(el("button", {type: "button", className: "more",
                                onclick: () => loadRunCalls(id)}, "More calls"));
    }
    return el("tr", {className: "run-detail", dataset: {detail: String(id)}}, cell);
  }

  /** A run's row (a run never changes: its key is whether it is open) and, open, its calls. */
  function runItems(r) {
    const detail = state.expanded.get(r.id);
    const row = {id: `r${r.id}`, key: detail ? "open" : "closed", build: () => runRow(r)};
    if (!detail) return [row];
    return [row, {id: `d${r.id}`, key: String(detail.version), build: () => runDetailRow(r.id)}];
  }

  function renderRuns() {
    syncRows(document.querySelector("#runs tbody"), shown.runs, state.runs.flatMap(runItems));
    setProp($("runs-older"), "hidden", state.nextBefore === null || state.nextBefore === undefined);
    renderRunsCount();
  }

  function renderRunsCount() {
    const n = state.runs.length;
    setText($("runs-status"), n ? `${n} run${n === 1 ? "" : "s"} shown` : "no run yet");
  }

  function rerenderRun(id) {
    const detail = state.expanded.get(id);
    if (detail) detail.version += 1;
    renderRuns();
  }

  async function loadRuns() {
    $("runs-status").textContent = "loading…";
    const res = await api("GET", runsQuery());
    if (!res.ok) { $("runs-status").textContent = `cannot load the runs: ${errorText(res)}`; return; }
    state.runs = res.data.runs;
    state.nextBefore = res.data.next_before;
    state.expanded.clear();
    renderRuns();
  }

  async function loadOlderRuns() {
    if (state.nextBefore === null) return;
    const res = await api("GET", runsQuery(state.nextBefore));
    if (!res.ok) { showNotice(`Cannot load older runs: ${errorText(res)}`, "error"); return; }
    const known = new Set(state.runs.map((r) => r.id));
    state.runs.push(...res.data.runs.filter((r) => !known.has(r.id)));
    state.nextBefore = res.data.next_before;
    renderRuns();
  }

  /** After cycle events: puts the runs newer than the newest shown on top. */
  async function refreshNewestRuns() {
    const res = await api("GET", runsQuery());
    if (!res.ok) return;
    const top = state.runs.length ? state.runs[0].id : 0;
    const newer = res.data.runs.filter((r) => r.id > top);
    if (!newer.length) return;
    if (newer.length === res.data.runs.length) {   // a gap, or nothing shown yet: start over
      state.runs = res.data.runs;
      state.nextBefore = res.data.next_before;
      renderRuns();
      return;
    }
    state.runs.unshift(...newer);
    renderRuns();   // keyed: only the new rows are built
  }

  function scheduleRunsRefresh() {
    if (runsRefreshTimer) return;
    runsRefreshTimer = setTimeout(() => { runsRefreshTimer = null; refreshNewestRuns(); }, 1000);
  }

  async function toggleRun(id) {
    if (state.expanded.has(id)) {
      state.expanded.delete(id);
      rerenderRun(id);
      return;
    }
    state.expanded.set(id, {calls: [], nextAfter: null, loading: true, error: null, version: 0});
    rerenderRun(id);
    await loadRunCalls(id, true);
  }

  async function loadRunCalls(id, first = false) {
    const detail = state.expanded.get(id);
    if (!detail) return;
    const after = first ? null : detail.nextAfter;
    detail.loading = true;
    rerenderRun(id);
    const res = await api("GET", `/runs/${id}` + (after !== null ? `?after=${after}` : ""));
    if (state.expanded.get(id) !== detail) return;   // closed meanwhile
    detail.loading = false;
    if (res.ok) {
      detail.calls.push(...res.data.calls);
      detail.nextAfter = res.data.next_after;
    } else {
      detail.error = `cannot load the calls: ${errorText(res)}`;
    }
    rerenderRun(id);
  }

  // --- status and live events -----------------------------------------------------

  function takeStatus(status) {
    state.daemon = status.daemon;
    state.config = status.config;
    state.sources = new Map(status.sources.map((s) => [s.sysname, s]));
    state.jobs = new Map(status.jobs.map((j) => [j.source, j]));
    state.targets = status.target_paths;
  }

  /** The header, the sources and the target paths; jobs once the first paint is done. */
  function renderStatus() {
    renderDaemon();
    renderConfig();
    renderSources();
    renderTargets();
    renderJobs();
  }

  /** A whole status (the snapshot that opens the event stream, or after a reload):
   *  keyed renders, so the same status as shown costs no DOM change. */
  function applyStatus(status) {
    takeStatus(status);
    render(renderStatus);
  }

  /** A reload may remove sources, and no event says so: then the whole status is read again. */
  async function onDaemonEvent(daemon) {
    const reloaded = state.daemon && state.daemon.config_loaded_at !== daemon.config_loaded_at;
    state.daemon = daemon;
    render(renderDaemon);
    render(renderSources);
    if (!reloaded) return;
    const res = await api("GET", "/status");
    if (res.ok) applyStatus(res.data);
  }

  const HANDLERS = {
    snapshot: applyStatus,
    source: updateSource,
    job: (job) => { state.jobs.set(job.source, job); render(renderJobs); },
    target: (paths) => { state.targets = paths; render(renderTargets); },
    daemon: onDaemonEvent,
    cycle: (cycle) => { if (cycle.run_id !== null && cycle.run_id !== undefined) scheduleRunsRefresh(); },
    alarm: addAlarm,
  };

  function setLive(mode) {
    const node = $("live");
    setProp(node, "className", `live ${mode}`);
    if (document.body.classList.contains("stale") !== (mode === "down")) {
      document.body.classList.toggle("stale", mode === "down");   // what is shown may be old
    }
    setText(node, {live: "live", connecting: "connecting…", down: "disconnected: reconnecting…"}[mode]);
  }

  function connectEvents() {
    if (events) events.close();
    setLive("connecting");
    events = new EventSource(`${API}/events`);
    events.onopen = () => setLive("live");
    events.onerror = () => {
      setLive("down");
      if (events.readyState === EventSource.CLOSED) setTimeout(connectEvents, RECONNECT_MS);
    };
    for (const name of new Set([...Object.keys(HANDLERS), ...listeners.keys()])) {
      if (!PAGE_EVENTS.has(name)) listen(events, name);
    }
  }

  /** Dispatches the SSE event name of source to this page's handler and the other views'. */
  function listen(source, name) {
    source.addEventListener(name, (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch { console.warn(`bad ${name} event`, ev.data); return; }
      if (HANDLERS[name]) HANDLERS[name](data);
      emit(name, data);
    });
  }

  // --- what the other views share ------------------------------------------------

  /** name -> handlers: SSE event names, and the page's own events (PAGE_EVENTS). */
  const listeners = new Map();
  const PAGE_EVENTS = new Set(["auth"]);   // the login changed: {token, user, expires} or null

  function emit(name, data) {
    for (const fn of listeners.get(name) || []) fn(data);
  }

  /** Calls handler(data) on every event name (an SSE event's parsed data, or "auth"). */
  function on(name, handler) {
    if (!listeners.has(name)) {
      listeners.set(name, []);
      if (events && !HANDLERS[name] && !PAGE_EVENTS.has(name)) listen(events, name);   // stream open already
    }
    listeners.get(name).push(handler);
  }

  window.synchrodMonitor = Object.freeze({
    api, authorized, errorText, showNotice, on, afterPaint, render, serial, keepFresh,
    $, el, td, num, setText, setProp, syncRows, setRelTime, DASH,
    fmt: Object.freeze({number: fmtNumber, bytes: fmtBytes, time: fmtTime, age: fmtAge,
                        relative: fmtRelative, seconds: fmtSeconds}),
    auth: () => state.auth,
    sources: () => [...state.sources.keys()],
  });

  /** The status the server embedded in the page (null: none, or unreadable). */
  function embeddedStatus() {
    const node = $("initial-status");
    if (node && node.textContent.trim()) {
      try { return JSON.parse(node.textContent); } catch { console.warn("bad initial status"); }
    }
    return null;
  }

  async function fetchStatus() {
    const res = await api("GET", "/status");
    if (res.ok) applyStatus(res.data);
    else showNotice(`Cannot load the status: ${errorText(res)}`, "error");
  }

  /** What the first paint does not need: jobs, alarms, the runs filter, then the
   *  event stream (its snapshot is a no-op when nothing changed) and the runs. */
  function renderTheRest() {
    state.full = true;
    renderJobs();
    renderAlarms();
    renderRunsFilter();
    connectEvents();
    loadRuns();
    setInterval(tick, 5000);
    document.addEventListener("visibilitychange", tick);   // ticks skip hidden pages
  }

  function init() {
    $("login-form").addEventListener("submit", onLogin);
    $("logout-button").addEventListener("click", onLogout);
    $("reload-button").addEventListener("click", onReload);
    $("shutdown-button").addEventListener("click", onShutdown);
    $("runs-source").addEventListener("change", loadRuns);
    $("runs-refresh").addEventListener("click", loadRuns);
    $("runs-older").addEventListener("click", loadOlderRuns);
    document.querySelector("#runs tbody").addEventListener("click", onRunsClick);
    // the first paint: header, sources and target paths, synchronously from the embedded status
    const status = embeddedStatus();
    if (status) takeStatus(status);
    setAuth(loadAuth());   // renders the login state and the sources
    renderDaemon();
    renderConfig();
    renderTargets();
    if (!status) fetchStatus();
    afterPaint(renderTheRest);
  }

  init();
})();
