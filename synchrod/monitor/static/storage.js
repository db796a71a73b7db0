// synchrod monitor page, the storage view (SPEC §9): every target filesystem
// with its level, its use against the level marks, whether it takes new
// files, and the plan of the next pruning round with what it holds back.
// From GET /api/v1/storage (no token), read again on the SSE events `storage`
// (a level changed) and `deletion` (calls pruned or deleted), after every
// reconnection, and every 30 s while the page is visible.
// Built with DOM APIs and textContent only, like app.js.
"use strict";

(() => {
  const M = window.synchrodMonitor;
  if (!M) return;
  const {api, el, td, $, setText, setProp, fmt, DASH} = M;

  const PLAN_LIMIT = 20;      // the report lists the first 20 calls of the next round
  const LEVELS = ["warning", "critical", "emergency"];
  const MODES = {retention_priority: "retention priority", recording_priority: "recording priority"};

  const shown = new Map();    // filesystem -> {row, key}
  let planKey = null;
  let heldKey = null;

  // --- rendering ------------------------------------------------------------------

  /** The level marks, when the report gives them: {warning: {enter, exit}, ...} in percent,
   *  per filesystem or for the whole report. */
  function levelMarks(report, fs) {
    const levels = fs.levels || fs.thresholds || report.levels || report.thresholds;
    if (!levels || typeof levels !== "object") return [];
    return LEVELS.filter((name) => levels[name] && Number.isFinite(Number(levels[name].enter)))
      .map((name) => ({name, enter: Number(levels[name].enter), exit: Number(levels[name].exit)}));
  }

  function useCell(report, fs) {
    const ratio = Number(fs.use_ratio);
    const marks = levelMarks(report, fs);
    const bar = el("div", {className: "bar"});
    const fill = el("div", {className: `fill lv-${fs.level}`});
    fill.style.width = `${Math.min(100, Math.max(0, ratio * 100)).toFixed(1)}%`;
    bar.append(fill);
    for (const m of marks) {
      const mark = el("div", {className: `mark mk-${m.name}`,
                              title: `${m.name}: entered at ${m.enter}%` +
                                     (Number.isFinite(m.exit) ? `, left below ${m.exit}%` : "")});
      mark.style.left = `${Math.min(100, Math.max(0, m.enter))}%`;
      bar.append(mark);
    }
    if (marks.length) {
      bar.title = marks.map((m) => `${m.name} ${m.enter}%`).join(" · ");
    }
    const pct = Number.isFinite(ratio) ? `${(ratio * 100).toFixed(1)}%` : "unreadable";
    return el("td", {className: "use"}, el("div", {className: "usewrap"}, bar, el("span", {className: "pct"}, pct)));
  }

  function filesystemRow(report, fs) {
    const since = td("", "time");
    M.setRelTime(since, fs.since);
    if (!fs.since) since.textContent = DASH;
    const paths = el("td", {className: "paths"}, ...(fs.paths || []).map((p) => el("span", {className: "path"}, p)));
    const used = fs.used_bytes === null || fs.used_bytes === undefined ? DASH
      : `${fmt.bytes(fs.used_bytes)} / ${fmt.bytes(fs.capacity_bytes)}`;
    return el("tr", {dataset: {filesystem: fs.filesystem}},
      td(fs.filesystem, "path name"),
      el("td", {className: "level"}, el("span", {className: `badge lv-${fs.level}`}, fs.level)),
      useCell(report, fs),
      td(used),
      el("td", {className: "accepting"}, fs.accepting
        ? el("span", {title: "its paths take new files"}, "yes")
        : el("span", {className: "no", title: "its paths take no new files at this level"}, "no")),
      since,
      paths);
  }

  function renderFilesystems(report) {
    const list = report.filesystems || [];
    const tbody = document.querySelector("#storage-filesystems tbody");
    const items = list.map((fs) => ({id: fs.filesystem, key: JSON.stringify(fs) + JSON.stringify(levelMarks(report, fs)),
                                     build: () => filesystemRow(report, fs)}));
    if (!items.length) {
      const note = report.enabled === false
        ? "Space management is off (storage.enabled: false): no level is kept."
        : "No target filesystem measured yet.";
      items.push({id: "", key: note, build: () => el("tr", {className: "empty"},
        el("td", {colSpan: 7, className: "muted"}, note))});
    }
    M.syncRows(tbody, shown, items);
  }

  function renderPlan(report) {
    const plan = report.plan || {next: [], held_back: {}};
    const next = plan.next || [];
    const key = JSON.stringify([report.mode, report.enabled, next]);
    if (key !== planKey) {
      planKey = key;
      const bytes = next.reduce((sum, c) => sum + (Number(c.bytes) || 0), 0);
      let summary;
      if (report.enabled === false) summary = "Space management is off: nothing is pruned.";
      else if (next.length) {
        const count = next.length >= PLAN_LIMIT ? `at least ${next.length}` : String(next.length);
        summary = `${count} call${next.length === 1 ? "" : "s"} would be pruned first ` +
                  `(${fmt.bytes(bytes)}${next.length >= PLAN_LIMIT ? " for those listed" : ""}).`;
      } else if (report.mode === "retention_priority") {
        summary = "Nothing: in retention priority nothing is pruned automatically " +
                  "(an operator makes room: the recordings below, or synchrod purge).";
      } else summary = "Nothing to prune now.";
      const p = $("storage-plan-summary");
      p.textContent = summary;
      p.dataset.count = String(next.length);
      const rows = next.map((c) => el("tr", {dataset: {sid: c.sid}},
        td(c.sid, "sid"), el("td", {title: c.start_ts}, fmt.time(c.start_ts)),
        td(c.reason), el("td", {className: "num", title: `${fmt.number(c.bytes)} bytes`}, fmt.bytes(c.bytes))));
      document.querySelector("#storage-plan tbody").replaceChildren(...rows);
      setProp($("storage-plan"), "hidden", rows.length === 0);
    }
    const held = plan.held_back || {};
    const hkey = JSON.stringify(held);
    if (hkey === heldKey) return;
    heldKey = hkey;
    const reasons = [
      ["protected", "protected", "protected calls are never pruned"],
      ["not_archived", "not archived yet", "storage.require_archived: only calls the archive task has exported are pruned"],
      ["in_flight", "copies in flight", "a batch is committing their files: they are waited for"],
    ];
    $("storage-held").replaceChildren(...reasons.map(([k, label, why]) => el("li", {dataset: {held: k}},
      el("b", {}, fmt.number(held[k] ?? 0)), ` ${label}`, el("span", {className: "muted"}, ` — ${why}`))));
  }

  function renderReport(report) {
    const mode = MODES[report.mode] || report.mode || "?";
    setText($("storage-mode"), report.enabled === false ? `${mode} (space management off)` : `mode: ${mode}`);
    renderFilesystems(report);
    renderPlan(report);
  }

  // --- loading --------------------------------------------------------------------

  // one read at a time; events come in bursts (one per level passed, one per batch)
  const load = M.serial(async () => {
    setText($("storage-status"), "loading…");
    const res = await api("GET", "/storage");
    fresh.read();
    if (res.ok && res.data) {
      setText($("storage-status"), `read ${fmt.time(new Date().toISOString())}`);
      M.render(() => renderReport(res.data));
    } else {
      setText($("storage-status"), `cannot read the storage report: ${M.errorText(res)}`);
    }
  });
  const fresh = M.keepFresh(load);

  function init() {
    $("storage-refresh").addEventListener("click", load);
    M.on("storage", fresh.soon);
    M.on("deletion", fresh.soon);
    M.on("snapshot", () => { if (fresh.seen()) fresh.soon(); });   // after a reconnection
    M.afterPaint(() => {
      load();
      fresh.start();
    });
  }

  init();
})();
