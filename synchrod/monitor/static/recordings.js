// synchrod monitor page, the recordings view and the deletion jobs (SPEC §9,
// bulk delete): a logged-in operator lists the target's recordings (GET
// /api/v1/recordings, token needed: it shows phone numbers) by date, source,
// protected and deleted, oldest first, page by page; selects some, or all
// matching the dates and source; previews what would go (POST
// /api/v1/deletions with dry_run); confirms, which creates a deletion job; and
// watches the job live (SSE `deletion_job`, and GET /api/v1/deletions/{id}
// every second until it ends), with a Cancel button while it is queued or
// running. The deletion jobs list (GET /api/v1/deletions) needs no token.
// Built with DOM APIs and textContent only, like app.js.
"use strict";

(() => {
  const M = window.synchrodMonitor;
  if (!M) return;
  const {el, td, $, setText, setProp, fmt, DASH} = M;

  const PAGE = 100;
  const POLL_MS = 1000;
  const MAX_JOBS = 50;
  const FINAL = new Set(["done", "cancelled", "failed"]);
  const RANK = {queued: 0, running: 1, done: 2, cancelled: 2, failed: 2};

  const view = {
    filters: null,          // the filters of the list shown (ISO times), null before the first list
    rows: [],               // the recordings listed, oldest first
    next: null,             // next_cursor
    selected: new Set(),    // sids checked
    allMatching: false,     // the selection is the filter, not the sids
    preview: null,          // {key, data}: the dry run of the selection as it was
    busy: false,            // a preview, a confirm or a cancel in flight
    job: null,              // the job watched (its view)
    seq: 0,                 // list reads: only the latest one is shown
  };
  const jobs = [];          // deletion jobs, newest first
  const shownRows = new Map();
  const shownJobs = new Map();
  let pollTimer = null;
  let sourcesKey = null;

  // --- helpers --------------------------------------------------------------------

  /** A datetime-local value (local time) as ISO 8601 in UTC; null when empty or invalid. */
  function isoOf(value) {
    if (!value) return null;
    const t = new Date(value);
    return Number.isNaN(t.getTime()) ? null : t.toISOString();
  }

  const plural = (n, word) => `${fmt.number(n)} ${word}${n === 1 ? "" : "s"}`;

  function readFilters() {
    return {after: isoOf($("rec-after").value), before: isoOf($("rec-before").value),
            source: $("rec-source").value || null, protected: $("rec-protected").value || null,
            deleted: $("rec-deleted").value || null};
  }

  function listPath(filters, cursor) {
    const q = new URLSearchParams({limit: String(PAGE)});
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (cursor) q.set("cursor", cursor);
    return `/recordings?${q}`;
  }

  function filterText(f) {
    const parts = [`started before ${fmt.time(f.before)}`];
    if (f.after) parts.push(`from ${fmt.time(f.after)}`);
    parts.push(f.source ? `from source ${f.source}` : "from every source");
    return parts.join(", ");
  }

  // --- the list -------------------------------------------------------------------

  async function loadList(filters = readFilters()) {
    const seq = ++view.seq;
    setText($("rec-status"), "loading…");
    const res = await M.authorized(listPath(filters), {method: "GET"});
    if (seq !== view.seq || res === null) return;
    if (!res.ok) { setText($("rec-status"), `cannot list the recordings: ${M.errorText(res)}`); return; }
    view.filters = filters;
    view.rows = res.data.recordings;
    view.next = res.data.next_cursor;
    view.selected.clear();
    view.allMatching = false;
    view.preview = null;
    renderList();
  }

  async function loadMore() {
    if (!view.next || !view.filters) return;
    const seq = view.seq;
    const res = await M.authorized(listPath(view.filters, view.next), {method: "GET"});
    if (seq !== view.seq || res === null) return;
    if (!res.ok) { M.showNotice(`Cannot list more recordings: ${M.errorText(res)}`, "error"); return; }
    const known = new Set(view.rows.map((r) => r.couple_id));
    view.rows.push(...res.data.recordings.filter((r) => !known.has(r.couple_id)));
    view.next = res.data.next_cursor;
    renderList();
  }

  function recordingRow(r) {
    const checked = view.allMatching || view.selected.has(r.sid);
    const box = el("input", {type: "checkbox", className: "pick", checked, disabled: view.allMatching,
                             dataset: {sid: r.sid}});
    box.setAttribute("aria-label", `select ${r.sid}`);
    const n = r.numbers || {};
    const cls = [r.deleted ? "rec-deleted" : "", checked ? "rec-selected" : ""].filter(Boolean).join(" ");
    return el("tr", {className: cls, dataset: {sid: r.sid, couple: String(r.couple_id)}},
      el("td", {}, box), td(r.sid, "sid"), el("td", {title: r.start_ts}, fmt.time(r.start_ts)),
      td(r.length === null || r.length === undefined ? DASH : fmt.age(r.length), "num"),
      td(n.calling || DASH), td(n.final_called || n.original_called || DASH), td(r.source || DASH),
      td(fmt.number(r.files), "num"), el("td", {className: "num", title: `${fmt.number(r.bytes)} bytes`}, fmt.bytes(r.bytes)),
      el("td", {className: "protected"}, r.protected ? el("span", {className: "flag protected"}, "protected") : ""),
      el("td", {className: "deleted"}, r.deleted ? el("span", {className: "flag deleted"}, "deleted") : ""));
  }

  function renderList() {
    const items = view.rows.map((r) => {
      const sel = view.allMatching ? "A" : view.selected.has(r.sid) ? "1" : "0";
      return {id: String(r.couple_id), key: sel + JSON.stringify(r), build: () => recordingRow(r)};
    });
    M.syncRows(document.querySelector("#recordings tbody"), shownRows, items);
    setProp($("rec-more"), "hidden", !view.next);
    const n = view.rows.length;
    setText($("rec-status"), !view.filters ? "" : n ? `${plural(n, "recording")} listed${view.next ? " (more below)" : ""}`
      : "no recording matches");
    const pageAll = $("rec-page-all");
    pageAll.checked = n > 0 && (view.allMatching || view.rows.every((r) => view.selected.has(r.sid)));
    pageAll.disabled = view.allMatching || n === 0;
    renderSelection();
  }

  function onPick(ev) {
    const box = ev.target;
    if (!box.matches("input.pick")) return;
    if (box.checked) view.selected.add(box.dataset.sid);
    else view.selected.delete(box.dataset.sid);
    renderList();
  }

  function onPageAll(ev) {
    for (const r of view.rows) {
      if (ev.target.checked) view.selected.add(r.sid);
      else view.selected.delete(r.sid);
    }
    renderList();
  }

  function onAllMatching(ev) {
    view.allMatching = ev.target.checked && Boolean(view.filters && view.filters.before);
    renderList();
  }

  // --- selection, preview, confirm -------------------------------------------------

  /** The deletion request of the selection (without dry_run), or null when nothing is selected. */
  function request() {
    let body;
    if (view.allMatching && view.filters && view.filters.before) {
      const f = view.filters;
      body = {filter: {before: f.before, after: f.after, source: f.source}};
    } else if (view.selected.size) body = {sids: [...view.selected]};
    else return null;
    body.metadata = $("del-metadata").checked;
    return body;
  }

  const requestKey = () => JSON.stringify(request());
  const jobActive = () => Boolean(view.job && !FINAL.has(view.job.state));

  function renderSelection() {
    const f = view.filters;
    const canAll = Boolean(f && f.before);
    const all = $("rec-all-matching");
    setProp(all, "disabled", !canAll);
    setProp(all, "checked", view.allMatching);
    let note = "";
    if (!canAll) note = "(needs a “started before” date in the list’s filter)";
    else if (view.allMatching && (f.protected || f.deleted)) note = "(the protected and deleted filters do not narrow it: protected calls are skipped)";
    setText($("rec-all-note"), note);
    setText($("rec-selection"), view.allMatching ? `all matching: ${filterText(f)}`
      : view.selected.size ? `${plural(view.selected.size, "recording")} selected` : "nothing selected");
    if (view.preview && view.preview.key !== requestKey()) view.preview = null;   // the selection changed
    renderPreview();
    const body = request();
    setProp($("del-preview-button"), "disabled", !body || view.busy || jobActive());
    const ready = view.preview && !view.preview.error && view.preview.data.operations > 0;
    setProp($("del-confirm"), "disabled", !body || !ready || view.busy || jobActive());
  }

  function renderPreview() {
    const box = $("del-preview");
    const p = view.preview;
    setProp(box, "hidden", !p);
    if (!p) { box.replaceChildren(); return; }
    if (p.error) { box.replaceChildren(el("p", {className: "error"}, `Preview refused: ${p.error}`)); return; }
    const d = p.data;
    const parts = [el("span", {id: "del-preview-count", className: "count"}, fmt.number(d.operations)),
                   ` recording${d.operations === 1 ? "" : "s"} would go: ${plural(d.files, "file")}, ${fmt.bytes(d.bytes)}; `,
                   el("span", {id: "del-preview-skipped"}, fmt.number(d.skipped_protected)), " protected skipped."];
    if (d.operations === 0) parts.push(" Nothing to delete.");
    const listed = d.recordings || [];
    const nodes = [el("p", {}, ...parts)];
    if (listed.length) {
      const rows = listed.map((r) => el("tr", {dataset: {sid: r.sid}}, td(r.sid, "sid"),
        el("td", {title: r.start_ts}, fmt.time(r.start_ts)), td(fmt.number(r.files), "num"), td(fmt.bytes(r.bytes), "num")));
      nodes.push(el("details", {},
        el("summary", {}, listed.length < d.operations ? `the first ${listed.length}` : "which ones"),
        el("table", {className: "plan"}, el("thead", {}, el("tr", {}, ...["SID", "Started", "Files", "Bytes"].map((h) => el("th", {}, h)))),
           el("tbody", {}, ...rows))));
    }
    box.replaceChildren(...nodes);
  }

  async function onPreview() {
    const body = request();
    if (!body) return;
    const key = JSON.stringify(body);
    view.busy = true;
    renderSelection();
    const res = await M.authorized("/deletions", {body: {...body, dry_run: true}});
    view.busy = false;
    if (res !== null) {
      if (requestKey() === key) {
        view.preview = res.ok ? {key, data: res.data} : {key, error: M.errorText(res)};
      }
    }
    renderSelection();
  }

  async function onConfirm() {
    const body = request();
    if (!body || !view.preview || view.preview.key !== JSON.stringify(body)) return;
    const comment = $("del-comment").value.trim();
    if (comment) body.comment = comment;
    view.busy = true;
    renderSelection();
    const res = await M.authorized("/deletions", {body: {...body, dry_run: false}});
    view.busy = false;
    if (res === null) { renderSelection(); return; }
    if (!res.ok || !res.data || res.data.id === undefined) {
      M.showNotice(`Deletion refused: ${M.errorText(res)}`, "error");
      renderSelection();
      return;
    }
    view.preview = null;
    $("del-comment").value = "";
    M.showNotice(`Deletion job ${res.data.id} created.`);
    watch(res.data, true);
  }

  // --- the job watched --------------------------------------------------------------

  /** Whether b is a later view of the job than a (events and polls may cross). */
  function newer(a, b) {
    if (!a || String(a.id) !== String(b.id)) return true;
    if (RANK[b.state] !== RANK[a.state]) return (RANK[b.state] ?? 0) > (RANK[a.state] ?? 0);
    return (b.operations_completed ?? 0) >= (a.operations_completed ?? 0);
  }

  /** Shows job in the progress display and follows it until it ends (ours: this page created
   *  it, so its end is announced and the list read again even if it ended already). */
  function watch(job, ours = false) {
    const known = jobs.find((j) => String(j.id) === String(job.id));
    if (known && !newer(known, job)) job = known;   // its stream events came first
    view.job = job;
    upsertJob(job);
    renderJob();
    renderSelection();
    clearTimeout(pollTimer);
    pollTimer = null;
    if (FINAL.has(job.state)) {
      if (ours) jobEnded(job);
      return;
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    pollTimer = null;
    const job = view.job;
    if (!job || FINAL.has(job.state)) return;
    const res = await M.api("GET", `/deletions/${encodeURIComponent(job.id)}`);
    if (view.job !== job && !(view.job && String(view.job.id) === String(job.id))) return;
    if (res.ok && res.data) jobUpdate(res.data);
    if (view.job && !FINAL.has(view.job.state) && !pollTimer) pollTimer = setTimeout(poll, POLL_MS);
  }

  /** A view of a job, from the stream or a poll. */
  function jobUpdate(job) {
    const before = jobs.find((j) => String(j.id) === String(job.id));
    if (before && !newer(before, job)) return;
    upsertJob(job);
    const w = view.job;
    if (!w || String(w.id) !== String(job.id) || !newer(w, job)) return;
    const ended = !FINAL.has(w.state) && FINAL.has(job.state);
    view.job = job;
    M.render(renderJob);
    if (ended) jobEnded(job);
  }

  function jobEnded(job) {
    clearTimeout(pollTimer);
    pollTimer = null;
    const kind = job.state === "done" ? "ok" : job.state === "failed" ? "error" : "warning";
    M.showNotice(`Deletion job ${job.id} ${job.state}: ${plural(job.operations_completed, "recording")} removed, ` +
                 `${fmt.number(job.skipped_protected)} protected skipped, ${fmt.bytes(job.bytes_freed)} freed` +
                 (job.message && job.state !== "done" ? ` (${job.message})` : "") + ".", kind);
    renderSelection();
    if (M.auth() && view.filters) loadList(view.filters);   // what is left, as it is now
  }

  function progressOf(j) {
    const done = Number(j.operations_completed) || 0;
    const total = done + (Number(j.operations_remaining) || 0);
    return {done, total};
  }

  function progressBar(j, id) {
    const {done, total} = progressOf(j);
    const bar = el("progress", {id, max: total || 1, value: total ? done : (FINAL.has(j.state) ? 1 : 0)});
    bar.title = `${done} of ${total}`;
    return bar;
  }

  function renderJob() {
    const box = $("del-job");
    const j = view.job;
    setProp(box, "hidden", !j);
    if (!j) { box.replaceChildren(); return; }
    const {done, total} = progressOf(j);
    const active = !FINAL.has(j.state);
    const cancel = el("button", {id: "del-cancel", type: "button", className: "danger",
                                 disabled: view.busy || j.cancel_requested, onclick: onCancel}, "Cancel");
    box.replaceChildren(
      el("div", {className: "row"},
        el("b", {}, `Deletion job ${j.id}`),
        el("span", {id: "del-job-state", className: `badge js-${j.state}`}, j.state),
        progressBar(j, "del-job-progress"),
        el("span", {id: "del-job-count"}, `${fmt.number(done)} / ${fmt.number(total)}`),
        el("span", {}, "protected skipped ", el("b", {id: "del-job-skipped"}, fmt.number(j.skipped_protected))),
        el("span", {}, "freed ", el("b", {id: "del-job-freed"}, fmt.bytes(j.bytes_freed)),
           j.files_freed !== undefined && j.files_freed !== null ? ` (${plural(j.files_freed, "file")})` : ""),
        active ? cancel : null,
        j.cancel_requested && active ? el("span", {className: "muted"}, "cancel requested: it stops after the batch in hand") : null),
      j.message ? el("p", {className: j.state === "failed" ? "error" : "muted"}, j.message) : "");
  }

  async function onCancel() {
    const j = view.job;
    if (!j || FINAL.has(j.state)) return;
    view.busy = true;
    renderJob();
    const res = await M.authorized(`/deletions/${encodeURIComponent(j.id)}/cancel`);
    view.busy = false;
    if (res !== null) {
      if (res.ok && res.data && res.data.id !== undefined) jobUpdate(res.data);
      else if (res.status === 409) {
        M.showNotice(`Deletion job ${j.id} had already finished.`, "warning");
        poll();
      } else M.showNotice(`Cancel refused: ${M.errorText(res)}`, "error");
    }
    renderJob();
  }

  // --- the deletion jobs list --------------------------------------------------------

  function upsertJob(job) {
    const i = jobs.findIndex((j) => String(j.id) === String(job.id));
    if (i >= 0) jobs[i] = job;
    else jobs.unshift(job);
    jobs.length = Math.min(jobs.length, MAX_JOBS);
    M.render(renderJobs);
  }

  function selectionText(sel) {
    if (!sel) return DASH;
    if (sel.kind === "sids") return plural(sel.count, "named call");
    if (sel.kind === "filter") return filterText(sel);
    return sel.kind || DASH;
  }

  function jobRow(j) {
    const {done, total} = progressOf(j);
    return el("tr", {dataset: {job: String(j.id)}},
      td(String(j.id), "num"),
      el("td", {}, el("span", {className: `badge js-${j.state}`}, j.state),
         j.cancel_requested && !FINAL.has(j.state) ? " (cancelling)" : ""),
      el("td", {title: j.created_at || ""}, fmt.time(j.created_at)),
      td(j.requested_by || DASH),
      td(selectionText(j.selection) + (j.metadata ? ", metadata too" : ""), "selection"),
      el("td", {}, progressBar(j), ` ${fmt.number(done)} / ${fmt.number(total)}`),
      td(fmt.number(j.skipped_protected), "num"),
      td(fmt.bytes(j.bytes_freed), "num"),
      el("td", {className: "comment", title: j.message || ""}, j.comment || ""));
  }

  function renderJobs() {
    M.syncRows(document.querySelector("#deletions tbody"), shownJobs,
               jobs.map((j) => ({id: String(j.id), key: JSON.stringify(j), build: () => jobRow(j)})));
    setProp($("deletions"), "hidden", jobs.length === 0);
    const status = $("deletions-status");
    if (!status.dataset.error) setText(status, jobs.length ? "" : "No deletion job yet.");
  }

  async function loadJobs() {
    const res = await M.api("GET", "/deletions");
    const status = $("deletions-status");
    if (!res.ok || !res.data || !Array.isArray(res.data.jobs)) {
      status.dataset.error = "1";
      setText(status, `cannot read the deletion jobs: ${M.errorText(res)}`);
      return;
    }
    delete status.dataset.error;
    const known = new Map(jobs.map((j) => [String(j.id), j]));
    jobs.length = 0;
    for (const j of res.data.jobs.slice(0, MAX_JOBS)) {
      const mine = known.get(String(j.id));
      jobs.push(mine && !newer(mine, j) ? mine : j);
    }
    M.render(renderJobs);
    // after a page load: an operator sees (and may cancel) the job under way
    const running = jobs.find((j) => !FINAL.has(j.state));
    if (running && !view.job && M.auth()) watch(running);
  }

  // --- login, sources, live events ------------------------------------------------------

  function renderSources() {
    const select = $("rec-source");
    const current = select.value;
    const names = M.sources();
    if (current && !names.includes(current)) names.push(current);
    const key = JSON.stringify(names);
    if (key === sourcesKey) return;
    sourcesKey = key;
    select.replaceChildren(el("option", {value: ""}, "all sources"), ...names.map((n) => el("option", {value: n}, n)));
    select.value = current;
  }

  function onAuth(auth) {
    setProp($("rec-view"), "hidden", !auth);
    setProp($("rec-login-note"), "hidden", Boolean(auth));
    if (!auth) {   // the numbers shown go with the login
      view.seq += 1;
      view.filters = null;
      view.rows = [];
      view.next = null;
      view.selected.clear();
      view.allMatching = false;
      view.preview = null;
      renderList();
      return;
    }
    renderSources();
    if (!view.filters) loadList();
    if (!view.job) { const running = jobs.find((j) => !FINAL.has(j.state)); if (running) watch(running); }
  }

  /** Calls pruned or deleted (SSE `deletion`): rows shown may be out of date. */
  function onDeletion(event) {
    if (!view.filters || jobActive()) return;   // the job's end reads the list again
    const sids = new Set(event.sids || []);
    if (view.rows.some((r) => sids.has(r.sid))) {
      setText($("rec-status"), `some recordings listed were ${event.eventAction === "PRUNED" ? "pruned" : "deleted"} since: List again to see them as they are`);
    }
  }

  function init() {
    $("rec-filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadList(); });
    $("rec-more").addEventListener("click", loadMore);
    document.querySelector("#recordings tbody").addEventListener("change", onPick);
    $("rec-page-all").addEventListener("change", onPageAll);
    $("rec-all-matching").addEventListener("change", onAllMatching);
    $("del-metadata").addEventListener("change", renderSelection);
    $("del-preview-button").addEventListener("click", onPreview);
    $("del-confirm").addEventListener("click", onConfirm);
    M.on("auth", onAuth);
    M.on("deletion_job", jobUpdate);
    M.on("deletion", onDeletion);
    M.on("snapshot", () => { renderSources(); if (view.job && !FINAL.has(view.job.state)) poll(); });
    M.afterPaint(() => { onAuth(M.auth()); loadJobs(); });
  }

  init();
})();
