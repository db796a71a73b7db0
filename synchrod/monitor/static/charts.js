// synchrod monitor page, the charts: per source, synchronized calls per
// minute and lag; per target filesystem, its use with the storage levels'
// thresholds (dashed, labelled). From GET /api/v1/charts (no token), bucketed
// by the server (at most 1440 points a series), read again every minute while
// the page is visible and after every reconnection.
// Drawn by hand as inline SVG with DOM APIs and textContent only (no library,
// no CDN: the page's Content-Security-Policy allows scripts from itself only).
"use strict";

(() => {
  const M = window.synchrodMonitor;
  if (!M) return;
  const {api, el, $, setText, fmt} = M;

  const SVG = "http://www.w3.org/2000/svg";
  const W = 560, H = 180;                                // the viewBox; CSS scales it
  const PAD = {left: 52, right: 16, top: 12, bottom: 24};
  const LABELS = 78;                                     // room at the right for the thresholds' labels
  const LEVELS = ["warning", "critical", "emergency"];
  const LEVEL_NAMES = ["normal", "warning", "critical", "emergency"];
  const MINUTE = 60, HOUR = 3600, DAY = 86400;
  const TICK_STEPS = [15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
                      DAY, 2 * DAY, 7 * DAY];
  const MAX_TICKS = 8;
  const DURATION_STEPS = [15, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE,
                          30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY,
                          7 * DAY];

  let lastKey = null;

  // --- SVG helpers -------------------------------------------------------------------

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pad2 = (n) => String(n).padStart(2, "0");

  /** A tick's label in local time: HH:MM, the date at midnight or for steps of days. */
  function tickLabel(t, step) {
    const d = new Date(t * 1000);
    const date = `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    if (step >= DAY || (d.getHours() === 0 && d.getMinutes() === 0)) return date;
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }

  /** Time ticks on local hours (or days), at most MAX_TICKS over [from, to]. */
  function timeTicks(from, to) {
    const step = TICK_STEPS.find((s) => (to - from) / s <= MAX_TICKS) || TICK_STEPS[TICK_STEPS.length - 1];
    const offset = new Date(from * 1000).getTimezoneOffset() * 60;   // local midnight, not UTC's
    const ticks = [];
    for (let t = Math.ceil((from - offset) / step) * step + offset; t <= to; t += step) ticks.push(t);
    return {ticks, step};
  }

  /** The smallest 1, 2, 2.5 or 5 times a power of ten at or above v (and above 0). */
  function niceStep(v) {
    if (!(v > 0)) return 1;
    const exp = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * exp >= v - 1e-9) return m * exp;
    return 10 * exp;
  }

  /** A value axis up to at least max in about four steps of a round number. */
  function valueAxis(max) {
    const step = niceStep(Math.max(max, 1e-9) / 4);
    return {yMax: step * Math.max(1, Math.ceil(max / step - 1e-9)), yStep: step};
  }

  /** A duration axis (seconds) in at most five steps of a round duration. */
  function durationAxis(max) {
    const step = DURATION_STEPS.find((s) => max / s <= 5) || Math.ceil(max / 5 / DAY) * DAY;
    return {yMax: step * Math.max(1, Math.ceil(max / step - 1e-9)), yStep: step};
  }

  /** Seconds for an axis: "45s", "12m", "3.5h", "2d". */
  function shortAge(s) {
    if (s < MINUTE) return `${Math.round(s)}s`;
    if (s < HOUR) return `${+(s / MINUTE).toFixed(1)}m`;
    if (s < DAY) return `${+(s / HOUR).toFixed(1)}h`;
    return `${+(s / DAY).toFixed(1)}d`;
  }

  /**
   * One chart: axes, time ticks, a line per series (broken where buckets
   * have no sample for more than one, unless `zeros`), dashed threshold lines with their labels.
   * spec: {from, to, step, yMax, yStep, yLabel(v), points: [[t, v]], zeros, thresholds: [{name, value}]}
   */
  function chart(spec) {
    const right = spec.thresholds && spec.thresholds.length ? PAD.right + LABELS : PAD.right;
    const x0 = PAD.left, x1 = W - right, y0 = H - PAD.bottom, y1 = PAD.top;
    const xs = (t) => x0 + (t - spec.from) / (spec.to - spec.from) * (x1 - x0);
    const ys = (v) => y0 - Math.min(Math.max(v / spec.yMax, 0), 1) * (y0 - y1);
    const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img"});
    root.append(svg("title", {}, spec.title));

    // horizontal grid and the value axis
    for (let i = 0; i * spec.yStep <= spec.yMax + 1e-9; i++) {
      const v = i * spec.yStep, y = ys(v);
      root.append(svg("line", {x1: x0, x2: x1, y1: y, y2: y, class: i ? "grid" : "axis"}));
      root.append(svg("text", {x: x0 - 6, y: y + 3.5, class: "ylabel"}, spec.yLabel(v)));
    }
    // time axis
    root.append(svg("line", {x1: x0, x2: x0, y1: y1, y2: y0, class: "axis"}));
    const {ticks, step} = timeTicks(spec.from, spec.to);
    for (const t of ticks) {
      const x = xs(t);
      root.append(svg("line", {x1: x, x2: x, y1: y0, y2: y0 + 4, class: "axis tick"}));
      root.append(svg("line", {x1: x, x2: x, y1: y1, y2: y0, class: "grid vgrid"}));
      root.append(svg("text", {x, y: y0 + 15, class: "xlabel"}, tickLabel(t, step)));
    }
    // the levels' thresholds, labelled at the right
    for (const th of spec.thresholds || []) {
      const y = ys(th.value);
      root.append(svg("line", {x1: x0, x2: x1, y1: y, y2: y, class: `threshold th-${th.name}`,
                               "data-level": th.name}));
      root.append(svg("text", {x: x1 + 4, y: y + 3.5, class: `thlabel th-${th.name}`},
                      `${th.name} ${th.value}%`));
    }
    // the series: one path, a move where samples are missing; lone points as dots
    const pts = spec.zeros ? dense(spec) : spec.points;
    let d = "", run = 0, prev = null;
    const dots = [];
    const flush = () => { if (run === 1) dots.push(prev); };
    for (const [t, v] of pts) {
      // one bucket missed is drawn through (a tick late); more is a gap in the line
      const gap = prev === null || t - prev[0] > spec.step * 2.5;
      if (gap) { flush(); run = 0; }
      // a bucket's value drawn at its middle
      d += `${gap ? "M" : "L"}${xs(t + spec.step / 2).toFixed(1)},${ys(v).toFixed(1)}`;
      run += 1;
      prev = [t, v];
    }
    flush();
    if (d) root.append(svg("path", {d, class: "series"}));
    for (const [t, v] of dots) {
      root.append(svg("circle", {cx: xs(t + spec.step / 2).toFixed(1), cy: ys(v).toFixed(1), r: 2,
                                 class: "series-dot"}));
    }
    root.dataset.points = String(spec.points.length);
    if (!spec.points.length) {
      root.append(svg("text", {x: (x0 + x1) / 2, y: (y0 + y1) / 2, class: "nodata"}, spec.empty));
    }
    return root;
  }

  /** Every bucket of the window, 0 where the server sent no point (calls per minute). */
  function dense(spec) {
    const byT = new Map(spec.points.map(([t, v]) => [t, v]));
    const out = [];
    for (let t = spec.from; t < spec.to; t += spec.step) out.push([t, byT.get(t) || 0]);
    return out;
  }

  // --- the views -----------------------------------------------------------------------

  function card(kind, name, heading, now, svgNode) {
    return el("div", {className: "chart", dataset: {chart: kind, name}},
      el("div", {className: "chart-head"}, el("b", {}, name), ` ${heading}`,
        el("span", {className: "chart-now muted"}, now)),
      svgNode);
  }

  const lastValue = (points) => (points.length ? points[points.length - 1][1] : null);

  function sourceRow(body, span, s) {
    const calls = s.calls_per_minute || [];
    const lag = s.lag_seconds || [];
    const callsAxis = valueAxis(Math.max(1, ...calls.map((p) => p[1])));
    const lagAxis = durationAxis(Math.max(MINUTE, ...lag.map((p) => p[1])));
    const total = calls.reduce((sum, p) => sum + p[1], 0) * body.bucket_seconds / MINUTE;
    const lastLag = lastValue(lag);
    return el("div", {className: "chart-row", dataset: {source: s.source}},
      card("calls", s.source, "synchronized calls per minute", `${fmt.number(Math.round(total))} in ${body.hours} h`,
        chart({...span, title: `${s.source}: synchronized calls per minute`, points: calls, zeros: true,
               ...callsAxis, yLabel: (v) => String(+v.toFixed(2)), empty: "no call synchronized"})),
      card("lag", s.source, "lag", lastLag === null ? "" : `now ${fmt.age(lastLag)}`,
        chart({...span, title: `${s.source}: lag (age of the oldest call not yet synchronized)`,
               points: lag, ...lagAxis, yLabel: shortAge,
               empty: "not sampled (no daemon owned it)"})));
  }

  function filesystemCard(body, span, fs) {
    const use = (fs.use || []).map(([t, ratio]) => [t, ratio * 100]);
    const storage = body.storage || {};
    const thresholds = storage.enabled
      ? LEVELS.filter((n) => storage.levels && storage.levels[n])
        .map((n) => ({name: n, value: Number(storage.levels[n].enter)}))
      : [];
    const last = fs.use && fs.use.length ? fs.use[fs.use.length - 1] : null;
    const now = last === null ? "" : `now ${(last[1] * 100).toFixed(1)}%`;
    const node = card("filesystem", fs.filesystem, "use", now,
      chart({...span, title: `${fs.filesystem}: used share`, points: use, yMax: 100, yStep: 25,
             yLabel: (v) => `${v}%`, thresholds, empty: "not sampled"}));
    if (last !== null && last[2] !== null && last[2] !== undefined) {
      const level = LEVEL_NAMES[last[2]] || String(last[2]);
      node.querySelector(".chart-head").append(" ", el("span", {className: `badge lv-${level}`}, level));
    } else if (!storage.enabled) {
      node.querySelector(".chart-head").append(
        el("span", {className: "muted", title: "storage.enabled: false"}, " (space management off: no levels)"));
    }
    return node;
  }

  function renderCharts(body) {
    const from = Date.parse(body.from) / 1000, to = Date.parse(body.to) / 1000;
    const span = {from, to, step: body.bucket_seconds};
    const sources = body.sources || [];
    $("charts-sources").replaceChildren(...(sources.length
      ? sources.map((s) => sourceRow(body, span, s))
      : [el("p", {className: "muted"}, "No source configured.")]));
    const filesystems = body.filesystems || [];
    $("charts-filesystems").replaceChildren(...(filesystems.length
      ? filesystems.map((fs) => filesystemCard(body, span, fs))
      : [el("p", {className: "muted"}, "No filesystem sampled yet (once a minute, by the daemon " +
            "holding the storage duty).")]));
  }

  // --- loading ---------------------------------------------------------------------------

  const load = M.serial(async () => {
    const hours = $("charts-hours").value || "24";
    setText($("charts-status"), "loading…");
    const res = await api("GET", `/charts?hours=${encodeURIComponent(hours)}`);
    fresh.read();
    if (res.ok && res.data) {
      setText($("charts-status"), `read ${fmt.time(new Date().toISOString())}` +
              `, a point per ${shortAge(res.data.bucket_seconds)}`);
      const key = JSON.stringify(res.data);
      if (key !== lastKey) {
        lastKey = key;
        M.render(() => renderCharts(res.data));
      }
    } else {
      setText($("charts-status"), `cannot read the charts: ${M.errorText(res)}`);
    }
  });
  const fresh = M.keepFresh(load, {every: 60000});

  function init() {
    $("charts-refresh").addEventListener("click", load);
    $("charts-hours").addEventListener("change", load);
    M.on("snapshot", () => { if (fresh.seen()) fresh.soon(); });   // after a reconnection
    M.afterPaint(() => {
      load();
      fresh.start();
    });
  }

  init();
})();
