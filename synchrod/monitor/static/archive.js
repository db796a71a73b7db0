// synchrod monitor page, the archive view (SPEC §10): the archive export
// tasks (GET /api/v1/archive/tasks, no token) with their schedule, folder,
// next run and last run; a "Run now" button per task for a logged-in
// operator (POST /api/v1/archive/tasks/{name}/run); the history of the runs
// (GET /api/v1/archive/runs, newest first, keyset pages: "Older runs"), each
// run opening onto its file entries (GET /api/v1/archive/runs/{id}, media and
// sidecar entries, keyset pages: "More files"). Read again on the SSE event
// `archive` (a run started, a batch of files written, a run ended), after a
// reconnection, and every 30 s while the page is visible.
// Built with DOM APIs and textContent only, like app.js.
"use strict";

(() => {
  const M = window.synchrodMonitor;
  if (!M) return;
  const {api, el, td, $, setText, setProp, fmt, DASH} = M;

  const RUNS_PAGE = 50;
  const FILES_PAGE = 100;
  const PENDING_MS = 60000;   // a "Run now" accepted: shown as starting until its run shows, at most this long
  const WEEKDAYS = {monday: "Mon", tuesday: "Tue", wednesday: "Wed", thursday: "Thu", friday: "Fri",
                    saturday: "Sat", sunday: "Sun"};
  const RUN_COLUMNS = 10;

  const view = {
    report: null,             // the last GET /archive/tasks
    runs: [],                 // newest first
    next: null,               // next_cursor of the history
    task: "",                 // the history's task filter ("" = all)
    expanded: new Map(),      // run id -> {files, next, loading, error, version, state}
    busy: new Set(),          // task names with a POST in flight
    pending: new Map(),       // task name -> {at, lastId}: accepted, its run not seen yet
    seq: 0,                   // history reads: only the latest one is shown
  };
  const shownTasks = new Map();
  const shownRuns = new Map();
  let filterKey = null;

  const plural = (n, word) => `${fmt.number(n)} ${word}${n === 1 ? "" : "s"}`;
  const running = (t) => Boolean(t.running) || (t.last_run && t.last_run.state === "running");

  // --- formatting -----------------------------------------------------------------

  function scheduleText(s) {
    if (!s) return DASH;
    const at = s.at === null || s.at === undefined ? "" : String(s.at);
    switch (s.kind) {
      case "once": return at === "now" ? "once, now" : `once, ${fmt.time(at)}`;
      case "hourly": return `hourly at ${at.startsWith(":") ? at : `:${at}`}`;
      case "daily": return `daily ${at}`;
      case "weekly": return `weekly ${WEEKDAYS[s.weekday] || s.weekday || "?"} ${at}`;
      case "monthly": return `monthly on day ${s.day ?? "?"} ${at}`;
      default: return [s.kind, at].filter(Boolean).join(" ") || DASH;
    }
  }

  /** A time cell: the local time, and "in 3h 02m" / "5m ago" beside it (kept current by app.js). */
  function timeCell(iso, className) {
    const cell = el("td", {className});
    if (!iso) { cell.textContent = DASH; return cell; }
    const rel = el("span", {className: "muted rel"});
    M.setRelTime(rel, iso);
    cell.append(el("span", {className: "at"}, fmt.time(iso)), " ", rel);
    cell.title = iso;
    return cell;
  }

  function stateBadge(state) {
    return el("span", {className: `badge as-${state}`}, state || "?");
  }

  function duration(r) {
    if (!r.started_at) return DASH;
    if (!r.finished_at) return r.state === "running" ? "running" : DASH;
    const s = (Date.parse(r.finished_at) - Date.parse(r.started_at)) / 1000;
    return Number.isFinite(s) ? fmt.seconds(Math.max(0, s)) : DASH;
  }

  function filesText(r) {
    const failed = Number(r.files_failed) || 0;
    return `${fmt.number(r.files_ok ?? 0)} archived` + (failed ? `, ${fmt.number(failed)} failed` : "");
  }

  // --- the tasks ------------------------------------------------------------------

  function pendingOf(t) {
    const p = view.pending.get(t.name);
    if (!p) return null;
    const lastId = t.last_run ? t.last_run.id : null;
    if (running(t) || lastId !== p.lastId || Date.now() - p.at > PENDING_MS) {
      view.pending.delete(t.name);   // its run shows now (or it never came)
      return null;
    }
    return p;
  }

  function runButton(t) {
    const going = running(t);
    const starting = !going && Boolean(pendingOf(t));
    const label = going ? "Running…" : starting ? "Starting…" : "Run now";
    const title = going ? "a run of this task is going on" : starting ? "the run was asked for"
      : "archive what is not archived yet, now";
    return el("button", {type: "button", className: "act-archive-run", title, dataset: {task: t.name},
                         disabled: going || starting || view.busy.has(t.name)}, label);
  }

  function lastRunCell(t) {
    const r = t.last_run;
    if (!r) return el("td", {className: "last muted"}, "never");
    const cell = el("td", {className: "last", title: r.message || ""}, stateBadge(r.state));
    cell.dataset.run = String(r.id);
    return cell;
  }

  function taskRow(t) {
    const r = t.last_run;
    const enabled = t.enabled !== false;
    const row = el("tr", {className: enabled ? "" : "ar-off", dataset: {task: t.name}},
      td(t.name, "name"),
      el("td", {className: "enabled"}, enabled ? "yes" : el("span", {className: "no"}, "no")),
      td(scheduleText(t.schedule), "schedule"),
      el("td", {className: "folder path", title: t.destination ? `destination ${t.destination}` : ""},
         t.folder || t.destination || DASH),
      enabled ? timeCell(t.next_run_at, "next") : el("td", {className: "next muted"}, "disabled"),
      lastRunCell(t),
      r ? timeCell(r.finished_at || r.started_at, "last-at") : td(DASH, "last-at"),
      td(r ? filesText(r) : DASH, "last-files num"));
    const sources = t.sources && t.sources.length ? `sources ${t.sources.join(", ")}` : "every source";
    row.cells[2].title = `${sources} · lookback ${t.lookback_days ?? "?"} days · ` +
                         `calls older than ${t.min_age_minutes ?? "?"} min`;
    if (M.auth()) row.append(el("td", {className: "actions"}, runButton(t)));
    return row;
  }

  function renderTasks() {
    const report = view.report;
    if (!report) return;
    const tasks = report.tasks || [];
    const authed = Boolean(M.auth());
    setProp(document.querySelector("#archive-tasks .col-actions"), "hidden", !authed);
    const items = tasks.map((t) => {
      const p = pendingOf(t) ? "p" : "";
      return {id: t.name, key: `${authed ? 1 : 0}${view.busy.has(t.name) ? 1 : 0}${p}` + JSON.stringify(t),
              build: () => taskRow(t)};
    });
    if (!items.length) {
      const note = "No archive task is configured.";
      items.push({id: "", key: note, build: () => el("tr", {className: "empty"},
        el("td", {colSpan: 9, className: "muted"}, note))});
    }
    M.syncRows(document.querySelector("#archive-tasks tbody"), shownTasks, items);
    setText($("archive-mode"), report.enabled === false
      ? "Archive export is off (archive.enabled: false): no schedule runs."
      : `schedules in ${report.timezone || "UTC"} · times shown in local time`);
    renderFilter();
  }

  function renderFilter() {
    const select = $("archive-runs-task");
    const names = ((view.report && view.report.tasks) || []).map((t) => t.name);
    if (view.task && !names.includes(view.task)) names.push(view.task);
    const key = JSON.stringify(names);
    if (key === filterKey) return;
    filterKey = key;
    select.replaceChildren(el("option", {value: ""}, "all tasks"), ...names.map((n) => el("option", {value: n}, n)));
    select.value = view.task;
  }

  const loadTasks = M.serial(async () => {
    const res = await api("GET", "/archive/tasks");
    fresh.read();
    if (res.ok && res.data && Array.isArray(res.data.tasks)) {
      view.report = res.data;
      setText($("archive-status"), `read ${fmt.time(new Date().toISOString())}`);
      M.render(renderTasks);
    } else {
      setText($("archive-status"), `cannot read the archive tasks: ${M.errorText(res)}`);
    }
  });

  async function onRunNow(ev) {
    const button = ev.target.closest("button.act-archive-run");
    if (!button || button.disabled) return;
    const name = button.dataset.task;
    const task = ((view.report && view.report.tasks) || []).find((t) => t.name === name);
    const lastId = task && task.last_run ? task.last_run.id : null;   // before: its events may come first
    view.busy.add(name);
    M.render(renderTasks);
    const res = await M.authorized(`/archive/tasks/${encodeURIComponent(name)}/run`);
    view.busy.delete(name);
    if (res !== null) {
      if (res.ok) {
        view.pending.set(name, {at: Date.now(), lastId});
        M.showNotice((res.data && res.data.message) || `Task '${name}' started.`);
        fresh.soon();
      } else if (res.status === 409) {
        M.showNotice(`Task '${name}' is running already.`, "warning");
        fresh.soon();
      } else {
        M.showNotice(`Run of task '${name}' refused: ${M.errorText(res)}`, "error");
      }
    }
    M.render(renderTasks);
  }

  // --- the history ------------------------------------------------------------------

  function runsPath(cursor) {
    const q = new URLSearchParams({limit: String(RUNS_PAGE)});
    if (view.task) q.set("task", view.task);
    if (cursor !== null && cursor !== undefined) q.set("cursor", String(cursor));
    return `/archive/runs?${q}`;
  }

  function runRow(r) {
    const open = view.expanded.has(r.id);
    const toggle = el("button", {type: "button", className: "link toggle"}, `${open ? "▾" : "▸"} ${r.id}`);
    toggle.setAttribute("aria-expanded", String(open));
    const started = el("td", {className: "time", title: `${r.started_at || ""} → ${r.finished_at || ""}` +
                                                     (r.daemon ? ` (daemon ${r.daemon})` : "")},
                       fmt.time(r.started_at));
    const by = r.requested_by ? r.requested_by : r.slot_at ? "schedule" : DASH;
    return el("tr", {className: `ar-run ar-run-${r.state}`, dataset: {run: String(r.id), task: r.task}},
      el("td", {}, toggle), td(r.task, "name"), el("td", {className: "state"}, stateBadge(r.state)),
      started, td(duration(r), "num"),
      td(fmt.number(r.files_ok ?? 0), "num ok"), td(fmt.number(r.files_failed ?? 0), "num failed"),
      el("td", {className: "num", title: `${fmt.number(r.bytes)} bytes`}, fmt.bytes(r.bytes)),
      el("td", {className: "by", title: r.slot_at ? `slot ${r.slot_at}` : "run by hand"}, by),
      el("td", {className: "message", title: r.message || ""}, r.message || ""));
  }

  function fileRow(f) {
    return el("tr", {className: `ar-file af-${f.kind} af-${f.result}`, dataset: {entry: String(f.id)}},
      td(f.kind, "kind"), td(f.result, "result"), td(f.sid || DASH, "sid"),
      td(f.destination || DASH, "path destination"), td(f.replay_path || DASH, "path replay"),
      td(f.message || "", "detail"));
  }

  function detailRow(id) {
    const d = view.expanded.get(id);
    const cell = el("td", {colSpan: RUN_COLUMNS});
    if (d.error) cell.append(el("p", {className: "error"}, d.error));
    if (d.files.length) {
      cell.append(el("table", {className: "calls ar-files"},
        el("thead", {}, el("tr", {}, ...["Kind", "Result", "SID", "Destination", "Replay path", "Message"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, ...d.files.map(fileRow))));
    } else if (!d.loading && !d.error) {
      cell.append(el("p", {className: "muted"}, "No file in this run."));
    }
    if (d.loading) cell.append(el("p", {className: "muted"}, "loading…"));
    else if (d.next !== null && d.next !== undefined) {
      cell.append(el("button", {type: "button", className: "more", onclick: () => loadFiles(id)}, "More files"));
    }
    return el("tr", {className: "run-detail ar-detail", dataset: {detail: String(id)}}, cell);
  }

  function runItems(r) {
    const d = view.expanded.get(r.id);
    const row = {id: `r${r.id}`, key: (d ? "o" : "c") + JSON.stringify(r), build: () => runRow(r)};
    if (!d) return [row];
    return [row, {id: `d${r.id}`, key: String(d.version), build: () => detailRow(r.id)}];
  }

  function renderRuns() {
    M.syncRows(document.querySelector("#archive-runs tbody"), shownRuns, view.runs.flatMap(runItems));
    setProp($("archive-older"), "hidden", view.next === null || view.next === undefined);
    const n = view.runs.length;
    setText($("archive-runs-status"), n ? `${plural(n, "run")} shown${view.next ? " (older below)" : ""}` : "no run yet");
  }

  async function loadRuns() {
    const seq = ++view.seq;
    const res = await api("GET", runsPath());
    if (seq !== view.seq) return;
    if (!res.ok || !res.data || !Array.isArray(res.data.runs)) {
      setText($("archive-runs-status"), `cannot read the archive runs: ${M.errorText(res)}`);
      return;
    }
    view.runs = res.data.runs;
    view.next = res.data.next_cursor;
    view.expanded.clear();
    M.render(renderRuns);
  }

  async function loadOlder() {
    if (view.next === null || view.next === undefined) return;
    const seq = view.seq;
    const res = await api("GET", runsPath(view.next));
    if (seq !== view.seq) return;
    if (!res.ok || !res.data) { M.showNotice(`Cannot read older runs: ${M.errorText(res)}`, "error"); return; }
    const known = new Set(view.runs.map((r) => r.id));
    view.runs.push(...res.data.runs.filter((r) => !known.has(r.id)));
    view.next = res.data.next_cursor;
    M.render(renderRuns);
  }

  /** The first page again: new runs on top, the runs shown brought up to date. */
  async function refreshRuns() {
    const seq = view.seq;
    const res = await api("GET", runsPath());
    if (seq !== view.seq || !res.ok || !res.data || !Array.isArray(res.data.runs)) return;
    const fresh = new Map(res.data.runs.map((r) => [r.id, r]));
    const top = view.runs.length ? view.runs[0].id : -Infinity;
    const newer = res.data.runs.filter((r) => r.id > top);
    if (newer.length === res.data.runs.length) {   // a gap, or nothing shown yet: start over
      view.runs = res.data.runs;
      view.next = res.data.next_cursor;
      for (const id of [...view.expanded.keys()]) if (!fresh.has(id)) view.expanded.delete(id);
    } else {
      view.runs = [...newer, ...view.runs.map((r) => fresh.get(r.id) || r)];
    }
    for (const r of view.runs) followRun(r);
    M.render(renderRuns);
  }

  /** A run of the list in a new state: its open entries are read again (a running run grows). */
  function followRun(r) {
    const d = view.expanded.get(r.id);
    if (d && !d.loading && d.state !== r.state) { d.state = r.state; loadFiles(r.id, true); }
  }

  /** The event's run put in the list (on top when new, and the filter takes it). */
  function upsertRun(r) {
    if (!r || r.id === undefined || (view.task && r.task !== view.task)) return;
    const i = view.runs.findIndex((x) => x.id === r.id);
    if (i >= 0) view.runs[i] = r;
    else if (!view.runs.length || r.id > view.runs[0].id) view.runs.unshift(r);
    else return;
    followRun(r);
    M.render(renderRuns);
  }

  function onRunsClick(ev) {
    const row = ev.target.closest("tr.ar-run");
    if (row && row.dataset.run) toggleRun(Number(row.dataset.run));
  }

  function rerender(id) {
    const d = view.expanded.get(id);
    if (d) d.version += 1;
    M.render(renderRuns);
  }

  function toggleRun(id) {
    if (view.expanded.has(id)) {
      view.expanded.delete(id);
      rerender(id);
      return;
    }
    const r = view.runs.find((x) => x.id === id);
    view.expanded.set(id, {files: [], next: null, loading: false, error: null, version: 0, state: r && r.state});
    loadFiles(id, true);
  }

  async function loadFiles(id, first = false) {
    const d = view.expanded.get(id);
    if (!d) return;
    const q = new URLSearchParams({limit: String(FILES_PAGE)});
    if (!first && d.next !== null && d.next !== undefined) q.set("cursor", String(d.next));
    d.loading = true;
    rerender(id);
    const res = await api("GET", `/archive/runs/${encodeURIComponent(id)}?${q}`);
    if (view.expanded.get(id) !== d) return;   // closed meanwhile
    d.loading = false;
    if (res.ok && res.data && Array.isArray(res.data.files)) {
      d.error = null;
      if (first) d.files = [];
      const known = new Set(d.files.map((f) => f.id));
      d.files.push(...res.data.files.filter((f) => !known.has(f.id)));
      d.next = res.data.next_cursor;
      if (res.data.run) {
        if (d.state !== res.data.run.state) d.state = res.data.run.state;
        const i = view.runs.findIndex((x) => x.id === id);
        if (i >= 0) view.runs[i] = res.data.run;
      }
    } else {
      d.error = res.status === 404 ? "This run is no longer in the history."
        : `cannot read the run's files: ${M.errorText(res)}`;
    }
    rerender(id);
  }

  // --- live events ---------------------------------------------------------------------

  /** The history's first page again, one read at a time (answers never cross). */
  const refreshRunsOnce = M.serial(refreshRuns);

  function load() {
    loadTasks();
    refreshRunsOnce();
  }
  // events come in bursts (a batch per page of files): one read for a burst
  const fresh = M.keepFresh(load);

  /** SSE `archive`: {event: started|batch|ended, task, run}. */
  function onArchive(ev) {
    if (!ev || typeof ev !== "object") return;
    const r = ev.run;
    if ((ev.event === "started" || ev.event === "ended") && r && r.id !== undefined) {
      upsertRun(r);
      const t = view.report && (view.report.tasks || []).find((x) => x.name === (ev.task || r.task));
      if (t) {
        t.last_run = r;
        t.running = ev.event === "started";
        M.render(renderTasks);
      }
    }
    fresh.soon();
  }

  function init() {
    $("archive-refresh").addEventListener("click", () => { loadTasks(); loadRuns(); });
    $("archive-older").addEventListener("click", loadOlder);
    $("archive-runs-task").addEventListener("change", (ev) => { view.task = ev.target.value; loadRuns(); });
    document.querySelector("#archive-tasks tbody").addEventListener("click", onRunNow);
    document.querySelector("#archive-runs tbody").addEventListener("click", onRunsClick);
    M.on("archive", onArchive);
    M.on("auth", () => M.render(renderTasks));
    M.on("snapshot", () => { if (fresh.seen()) fresh.soon(); });   // after a reconnection
    M.afterPaint(() => {
      loadTasks();
      loadRuns();
      fresh.start();
    });
  }

  init();
})();
