"""The browser side of the monitor benchmark: cold loads in headless
Chromium (through playwright) timed by the page's own performance entries
and Chromium's counters, and the static baseline page served from a
thread, the floor of this browser on this machine.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from collections import defaultdict

from bench_monitor_env import CHROMIUM, pct


INIT_SCRIPT = """
(() => {
  const want = %d;
  const check = () => {
    if (window.__rowsDom === undefined &&
        document.querySelectorAll('tr[data-source]').length >= want) {
      window.__rowsDom = performance.now();
      // the frame that shows them
      requestAnimationFrame(() => { window.__rowsFrame = performance.now(); });
    }
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true});
})();
"""


def poll(page, expression: str, timeout: float) -> bool:
    """Evaluates ``expression`` in ``page`` every 10 ms until it is true (True) or ``timeout``
    seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


BROWSER_KEYS = (("ttfb", "ttfb"), ("dom_content_loaded", "dcl"), ("load", "load"),
                ("first_contentful_paint", "fcp"), ("sources_table_dom", "rowsDom"),
                ("sources_table_painted", "rowsFrame"))
CDP_KEYS = ("Nodes", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")


def baseline_server(nsources: int):
    """A trivial static page (no script, no stylesheet, a table of as many rows)
    served from a thread: what this browser on this machine needs at the least."""
    import http.server

    rows = "".join(f'<tr data-source="s{i}"><td>s{i}</td><td>waiting</td></tr>' for i in range(nsources))
    body = (f"<!doctype html><html><head><meta charset=utf-8><title>baseline</title>"
            f'<link rel="icon" href="data:,"></head><body>'
            f"<h1>baseline</h1><table>{rows}</table></body></html>").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser closed a connection it did not need

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True, name="baseline").start()
    return httpd


def browser_loads(browser, url: str, nsources: int, loads: int, warmup: int, notes: list[str]) -> dict:
    """``loads`` cold loads of ``url`` (a fresh context each: empty cache)."""
    got: dict[str, list[float]] = defaultdict(list)
    for i in range(warmup + loads):
        ctx = browser.new_context()
        ctx.add_init_script(INIT_SCRIPT % nsources)
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            page.goto(url, wait_until="load", timeout=30000)
            # polled from here: the page's CSP (script-src 'self') forbids the eval
            # page.wait_for_function needs; the times themselves are taken in the page
            if not poll(page, "performance.getEntriesByType('paint')"
                              ".some(e => e.name === 'first-contentful-paint')", 10):
                notes.append(f"{url} load {i + 1}: no first-contentful-paint entry after 10 s")
            if not poll(page, "window.__rowsFrame !== undefined", 15):
                n = page.evaluate("document.querySelectorAll('tr[data-source]').length")
                notes.append(f"{url} load {i + 1}: the table showed {n} rows tr[data-source] "
                             f"after 15 s, expected {nsources}")
            m = page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const p = performance.getEntriesByType('paint')
                          .find(e => e.name === 'first-contentful-paint');
                return {fcp: p ? p.startTime : null, rowsFrame: window.__rowsFrame ?? null,
                        rowsDom: window.__rowsDom ?? null, ttfb: nav.responseStart,
                        dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd};
            }""")
            perf = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
        finally:
            ctx.close()
        if errors:
            notes.append(f"{url} load {i + 1}: page errors: {errors[:3]}")
        if i < warmup:
            continue
        for _, key in BROWSER_KEYS:
            if m[key] is not None:
                got[key].append(m[key])
        for key in CDP_KEYS:
            if key in perf:
                got[key].append(perf[key] * 1000 if key.endswith("Duration") else perf[key])
    out: dict = {}
    for name, key in BROWSER_KEYS:
        lst = got.get(key)
        out[name] = {"n": len(lst), "p50": pct(lst, 50), "p95": pct(lst, 95), "max": max(lst)} \
            if lst else None
    out["chromium"] = {key: statistics.median(got[key]) for key in CDP_KEYS if got.get(key)}
    return out


def measure_browser(url: str, nsources: int, loads: int, warmup: int) -> dict:
    """``loads`` cold loads of ``url`` in headless Chromium after ``warmup``, then half as many
    (at least 10) of the baseline page; returns the figures with notes, or {'skipped': why}
    without Chromium or playwright."""
    if not os.access(CHROMIUM, os.X_OK):
        return {"skipped": f"{CHROMIUM} not found"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    notes: list[str] = []
    base = baseline_server(nsources)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                out = browser_loads(browser, url, nsources, loads, warmup, notes)
                out["baseline"] = browser_loads(browser, f"http://127.0.0.1:{base.server_address[1]}/",
                                                nsources, max(10, loads // 2), warmup, notes)
            finally:
                browser.close()
    finally:
        base.shutdown()
    out["loads"] = loads
    out["notes"] = notes[:10]
    return out
