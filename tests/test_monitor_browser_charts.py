"""The monitor page's charts in a real browser (Debian's chromium driven by
Playwright) against a real `synchrod run` with a day of real history: the
runs of real cycles (moved back in time to spread them over the day), a
sample a minute of each source's lag and backlog and of each target
filesystem's use and level (written with ``replay.samples``, the levels
computed by space management's own rule, an hour missing while "no daemon
ran"), the first target path a small real filesystem filled into warning.
The page draws an SVG chart per series with the level thresholds dashed and
labelled, breaks the lag line where samples are missing, follows the period
chosen, asks nothing of another origin, and raises no JavaScript error; the
charts are screenshot (``SYNCHROD_TEST_OUTPUT``)."""
from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import re
import shutil
from pathlib import Path

import _daemon
from _monitor import start_monitor
from conftest import call
from synchrod.core import clock
from synchrod.core.levels import Level, next_level
from synchrod.fs.targets import fs_usage, target_state
from synchrod.pg.connect import connect
from synchrod.replay import samples
from test_monitor_browser import TIMEOUT, WatchedPage, _playwright
from test_storage_levels import fill_to, small_fs, storage_env  # noqa: F401 - small_fs: a fixture

daemons = _daemon.daemons
#: (hours ago, calls of rec1, calls of rec2): each batch one real cycle per source
BATCHES = [(20, 6, 2), (13, 12, 5), (6, 3, 0), (1.5, 8, 4)]
GAP = range(9 * 60, 10 * 60)      # minutes ago without samples: an hour no daemon ran


def _runs_of_the_day(env) -> int:
    """Real cycles synchronize each batch; their runs are moved back to the
    batch's hour, each lasting four minutes from the start of a minute. How many
    calls rec1 synchronized."""
    now, n = clock.now().replace(second=0, microsecond=0), 0
    for i, (hours, c1, c2) in enumerate(BATCHES):
        env.add_calls(0, [call(f"b{i}r1c{k}", 300 + k) for k in range(c1)])
        if c2:
            env.add_calls(1, [call(f"b{i}r2c{k}", 300 + k) for k in range(c2)])
        seen = env.target("SELECT coalesce(max(id), 0) FROM synchrod.runs")[0][0] if i else 0
        env.run_inprocess()
        at = now - dt.timedelta(hours=hours)
        env.target("UPDATE synchrod.runs SET started_at = %s, finished_at = %s + interval '4 minutes' "
                   "WHERE id > %s", at, at, seen)
        n += c1
    return n


def _samples_of_the_day(env, fs_paths: list[str]) -> None:
    """A sample a minute over the last day but the gap: rec1's lag rising and
    falling with its batches, rec2's small; the small filesystem filling from
    40 % to its use now, the other steady; their levels by the hysteresis rule."""
    thresholds = env.config.storage.thresholds
    now = clock.now()
    filesystems = [(target_state(p).filesystem, fs_usage(p)) for p in fs_paths]

    async def go():
        conn = await connect(env.target_dsn())
        levels = [Level.NORMAL] * len(filesystems)
        try:
            for m in range(24 * 60, -1, -1):
                if m in GAP:
                    continue
                wave = max(0.0, math.sin(m / 1440 * 4 * math.pi))
                lag1, lag2 = 30 + 2400 * wave, 5 + 120 * wave ** 4
                rows = []
                for i, (name, usage) in enumerate(filesystems):
                    share = 0.4 + (usage.ratio() - 0.4) * (1 - m / 1440) if i == 0 else usage.ratio()
                    used = int(usage.capacity * share)
                    levels[i] = next_level(levels[i], used, usage.capacity, thresholds)
                    rows.append((name, used / usage.capacity, int(levels[i])))
                await samples.write(conn, now - dt.timedelta(minutes=m), "yesterday:1",
                                    [("rec1", int(lag1 / 60), lag1), ("rec2", int(lag2 / 30), lag2)],
                                    rows)
        finally:
            await conn.close()
    asyncio.run(go())


def _points(svg) -> int:
    """The points a chart drew (its ``data-points``, once drawn)."""
    from playwright.sync_api import expect  # (installed: _playwright() said so)
    expect(svg).to_have_attribute("data-points", re.compile(r"^\d+$"))
    return int(svg.get_attribute("data-points"))


def _screenshot(locator, tmp_path: Path) -> Path:
    shot = tmp_path / "monitor-charts.png"
    locator.screenshot(path=str(shot))
    out = os.environ.get("SYNCHROD_TEST_OUTPUT")
    if out and Path(out).is_dir():
        shutil.copy(shot, Path(out) / shot.name)
    return shot


def test_charts_of_a_day_in_a_browser(env, daemons, small_fs, tmp_path):
    sync_api = _playwright()
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    storage_env(env, small_fs, tmp_path)
    synchronized = _runs_of_the_day(env)
    fill_to(small_fs, 78)                                  # warning: entered at 75 %
    _samples_of_the_day(env, [str(small_fs), str(env.target_path)])
    mon = start_monitor(daemons, env)
    small = target_state(str(small_fs)).filesystem
    other = target_state(str(env.target_path)).filesystem

    watched = WatchedPage(sync_api)
    page, problems = watched.page, watched.problems
    urls: list[str] = []
    page.on("request", lambda req: urls.append(req.url))
    try:
        reply = page.goto(f"{mon.url}/monitor/")
        assert "script-src 'self'" in reply.headers["content-security-policy"], reply.headers
        expect(page.locator("#live")).to_have_text("live")
        section = page.locator("#charts-section")
        section.scroll_into_view_if_needed()
        expect(page.locator("#charts-status")).to_contain_text("a point per 1m")
        body = mon.get_json("/api/v1/charts")

        # per source: calls per minute (a point per busy bucket) and lag (broken at the gap)
        for source in ("rec1", "rec2"):
            row = page.locator(f'#charts-sources .chart-row[data-source="{source}"]')
            calls = row.locator('.chart[data-chart="calls"] svg')
            lag = row.locator('.chart[data-chart="lag"] svg')
            series = next(s for s in body["sources"] if s["source"] == source)
            expect(calls).to_have_attribute("data-points", str(len(series["calls_per_minute"])))
            # (a sample may come between the page's read and this one)
            assert abs(_points(lag) - len(series["lag_seconds"])) <= 1, series["lag_seconds"][-3:]
            assert len(series["lag_seconds"]) >= 24 * 60 - len(GAP) - 1, len(series["lag_seconds"])
            expect(calls.locator("path.series")).to_have_count(1)
            expect(lag.locator("path.series")).to_have_count(1)
            assert lag.locator("path.series").get_attribute("d").count("M") == 2   # the hour missing
            expect(calls.locator("text.xlabel")).not_to_have_count(0)
            assert calls.locator("text.ylabel").count() >= 3
            assert lag.locator("text.ylabel").all_text_contents()[0] == "0s"
        rec1 = page.locator('#charts-sources .chart-row[data-source="rec1"]')
        expect(rec1.locator('.chart[data-chart="calls"] .chart-now')).to_have_text(f"{synchronized} in 24 h")
        assert len(next(s for s in body["sources"] if s["source"] == "rec1")["calls_per_minute"]) \
            == 4 * len(BATCHES)          # four minutes a batch

        # per filesystem: its use, the three levels' thresholds dashed and labelled
        assert {f["filesystem"] for f in body["filesystems"]} == {small, other}, body["filesystems"]
        fs = page.locator(f'#charts-filesystems .chart[data-name="{small}"]')
        expect(fs.locator("svg path.series")).to_have_count(1)
        expect(fs.locator("svg line.threshold")).to_have_count(3)
        expect(fs.locator("svg text.thlabel")).to_have_text(["warning 75%", "critical 90%", "emergency 99%"])
        dash = fs.locator("svg line.th-warning").evaluate("n => getComputedStyle(n).strokeDasharray")
        assert dash not in ("", "none"), dash
        expect(fs.locator(".chart-head .badge")).to_have_text("warning")
        expect(fs.locator(".chart-now")).to_have_text(re.compile(r"^now 7[6-9]\.\d%$"))
        expect(page.locator(f'#charts-filesystems .chart[data-name="{other}"] .badge')).to_have_text("normal")
        shot = _screenshot(section, tmp_path)
        assert shot.stat().st_size > 10_000

        # another period: read again, drawn again
        since = len(urls)
        page.select_option("#charts-hours", "6")
        expect(rec1.locator('.chart[data-chart="lag"] svg')).to_have_attribute(   # 6 h of minutes
            "data-points", re.compile(r"^3(5[89]|6[0-2])$"))
        expect(page.locator("#charts-status")).to_contain_text("a point per 1m")
        assert any(u.endswith("/api/v1/charts?hours=6") for u in urls[since:]), urls[since:]

        assert urls and all(u.startswith((mon.url + "/", "data:")) for u in urls), \
            [u for u in urls if not u.startswith(mon.url)]
        assert not problems, problems
    finally:
        watched.close()
    assert mon.daemon.stop() == 0, mon.daemon.tail()
