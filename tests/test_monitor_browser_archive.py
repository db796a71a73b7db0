"""The monitor page's archive view (SPEC §10) in a real browser (Debian's
chromium driven by Playwright) against a real `synchrod run` with one archive
task over two synchronized calls (three media files): the task is listed with
its schedule, folder and next run (02:00 in the task's time zone, the
browser's own here); "Run now" is for a logged-in operator only; clicked, the
run shows as running in the history (its copies held by a hang fault), the
button stays disabled and the API refuses a second start (409); the run's
entries, opened while it runs, fill in by themselves once it ends; it
completes with 3 files, its 6 entries (media and sidecar) in keyset pages;
a second "Run now" completes with no file (idempotent); the history's pages
("Older runs") and its task filter; the buttons go with the logout. Any
JavaScript error fails the test."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path

import _daemon
from _monitor import PASSWORD, USER, enable_monitor, start_monitor
from _sync_helpers import blob, wav
from test_archive import _sync
from test_monitor_browser import TIMEOUT, WatchedPage, _playwright

from synchrod.testing.recorders import CallSpec

daemons = _daemon.daemons
ZONE = "Europe/Prague"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _stage(env, tmp_path: Path) -> Path:
    """Two calls synchronized (x1 with an audio and a video file, x2 with one audio
    file) and the archive task `nightly`; returns its destination."""
    _sync(env, 0, [CallSpec("x1", NOW - dt.timedelta(hours=3),
                            files=[wav("/calls/x1/0.wav"), blob("VIDEO", "/calls/x1/screen.mp4", 4096)]),
                   CallSpec("x2", NOW - dt.timedelta(hours=2), files=[wav("/calls/x2/0.wav")])])
    dest = tmp_path / "arch"
    env.raw["archive"] = {"enabled": True, "timezone": ZONE, "tasks": [
        {"name": "nightly", "destination": str(dest), "schedule": "daily", "at": "02:00",
         "min_age_minutes": 0}]}
    enable_monitor(env, tmp_path)
    return dest


def _screenshot(page, tmp_path: Path) -> None:
    shot = tmp_path / "monitor-archive.png"
    page.screenshot(path=str(shot), full_page=True)
    out = os.environ.get("SYNCHROD_TEST_OUTPUT")
    if out and Path(out).is_dir():
        shutil.copy(shot, Path(out) / shot.name)


def test_archive_view_runs_a_task_and_shows_its_history(env, daemons, tmp_path):
    sync_api = _playwright()
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    dest = _stage(env, tmp_path)
    replay_paths = {p for (p,) in env.target("SELECT cfpath FROM callrec.cfiles")}
    assert len(replay_paths) == 3
    # every file copy (the archive's, the daemon has nothing to synchronize) waits for `release`
    release = tmp_path / "release-copies"
    mon = start_monitor(daemons, env, extra_env={
        "SYNCHROD_FAULT": "copy_partial", "SYNCHROD_FAULT_ACTION": "hang",
        "SYNCHROD_FAULT_RELEASE": str(release)})
    api_task = mon.get_json("/api/v1/archive/tasks")["tasks"][0]

    watched = WatchedPage(sync_api, timezone_id=ZONE)
    page, problems, requests = watched.page, watched.problems, watched.requests
    try:
        # small keyset pages (the requests rewritten on their way): a run per page, 4 entries per page
        page.route(re.compile(r".*/api/v1/archive/runs\?.*"), lambda route: route.continue_(
            url=route.request.url.replace("limit=50", "limit=1")))
        page.route(re.compile(r".*/api/v1/archive/runs/\d+\?.*"), lambda route: route.continue_(
            url=route.request.url.replace("limit=100", "limit=4")))
        page.goto(f"{mon.url}/monitor/")
        expect(page.locator("#live")).to_have_text("live")

        # --- the task, read-only ------------------------------------------------------
        task = page.locator('#archive-tasks tr[data-task="nightly"]')
        expect(task.locator("td.name")).to_have_text("nightly")
        expect(task.locator("td.enabled")).to_have_text("yes")
        expect(task.locator("td.schedule")).to_have_text("daily 02:00")
        expect(task.locator("td.folder")).to_have_text(str(dest / "nightly"))
        nxt = dt.datetime.fromisoformat(api_task["next_run_at"]).astimezone(dt.timezone.utc)
        assert nxt > NOW, api_task
        expect(task.locator("td.next .at")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d 02:00:00$"))
        expect(task.locator("td.next")).to_have_attribute("title", api_task["next_run_at"])
        expect(task.locator("td.next .rel")).to_have_text(re.compile(r"^in "))
        expect(task.locator("td.last")).to_have_text("never")
        expect(page.locator("#archive-mode")).to_contain_text(f"schedules in {ZONE}")
        expect(page.locator("#archive-runs-status")).to_have_text("no run yet")
        expect(page.locator("#archive-tasks button")).to_have_count(0)      # no token, no button
        expect(page.locator("#archive-tasks th.col-actions")).to_be_hidden()

        # --- Run now: the run shows running, the button stays disabled ---------------------
        page.fill("#login-user", USER)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        expect(page.locator("#session")).to_be_visible()
        run_now = task.get_by_role("button", name="Run now")
        expect(run_now).to_be_enabled()
        run_now.click()
        expect(page.locator("#notice")).to_have_text("Task 'nightly' started.")
        runs = page.locator("#archive-runs tr.ar-run")
        expect(runs).to_have_count(1)
        first = runs.first
        expect(first.locator("td.state")).to_have_text("running")
        expect(first.locator("td.name")).to_have_text("nightly")
        expect(first.locator("td.by")).to_have_text(USER)
        expect(task.locator("td.last")).to_have_text("running")
        button = task.locator("button.act-archive-run")
        expect(button).to_be_disabled()
        expect(button).to_have_text("Running…")
        token = mon.login()
        assert mon.post("/api/v1/archive/tasks/nightly/run", token=token).status == 409
        # opened while it runs: no entry yet (its copies are held)
        first.locator("button.toggle").click()
        detail = page.locator("#archive-runs tr.ar-detail")
        expect(detail).to_contain_text("No file in this run.")
        expect(first.locator("button.toggle")).to_have_attribute("aria-expanded", "true")

        # --- released: completed with 3 files; the open entries fill in by themselves -------
        release.touch()
        expect(first.locator("td.state")).to_have_text("completed")
        expect(first.locator("td.ok")).to_have_text("3")
        expect(first.locator("td.failed")).to_have_text("0")
        expect(first.locator("td.message")).to_have_text("Task 'nightly' completed.")
        entries = detail.locator("tr.ar-file")
        expect(entries).to_have_count(4)                       # the first page of entries
        detail.get_by_role("button", name="More files").click()
        expect(entries).to_have_count(6)
        expect(detail.get_by_role("button", name="More files")).to_have_count(0)
        assert len([u for u in requests if re.search(r"/archive/runs/\d+\?.*cursor=", u)]) == 1, requests
        expect(detail.locator("tr.af-media")).to_have_count(3)
        expect(detail.locator("tr.af-sidecar")).to_have_count(3)
        expect(detail.locator("td.result")).to_have_text(["archived"] * 6)
        assert sorted(detail.locator("td.sid").all_inner_texts()) == ["x1"] * 4 + ["x2"] * 2
        assert set(detail.locator("td.replay").all_inner_texts()) == replay_paths
        shown = detail.locator("td.destination").all_inner_texts()
        assert all(p.startswith(str(dest / "nightly") + "/") for p in shown), shown
        assert {p for p in shown if p.endswith(".json")} == {p + ".json" for p in shown
                                                             if not p.endswith(".json")}
        assert all(os.path.isfile(p) for p in shown), shown
        expect(task.locator("td.last")).to_have_text("completed")
        expect(task.locator("td.last-files")).to_have_text("3 archived")
        expect(run_now).to_be_enabled()
        _screenshot(page, tmp_path)

        # --- a second run: completed, no file (what is archived is not copied again) --------
        run_now.click()
        expect(runs).to_have_count(2)
        newest = runs.first
        expect(newest.locator("td.state")).to_have_text("completed")
        expect(newest.locator("td.ok")).to_have_text("0")
        expect(runs.nth(1).locator("td.ok")).to_have_text("3")
        ids = [int(r) for r in runs.evaluate_all("rows => rows.map((r) => r.dataset.run)")]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 2, ids
        expect(task.locator("td.last-files")).to_have_text("0 archived")
        expect(run_now).to_be_enabled()
        newest.click()
        expect(page.locator(f'#archive-runs tr[data-detail="{ids[0]}"]')).to_contain_text("No file in this run.")
        assert mon.get_json("/api/v1/archive/runs")["runs"][0]["files_ok"] == 0

        # --- the history's pages and its task filter ------------------------------------------
        page.click("#archive-refresh")
        expect(runs).to_have_count(1)                          # pages of one run
        expect(runs.first).to_have_attribute("data-run", str(ids[0]))
        older = page.locator("#archive-older")
        expect(older).to_be_visible()
        older.click()
        expect(runs).to_have_count(2)
        expect(runs.nth(1)).to_have_attribute("data-run", str(ids[1]))
        expect(older).to_be_hidden()
        assert any(re.search(r"/archive/runs\?.*cursor=", u) for u in requests), requests
        page.select_option("#archive-runs-task", "nightly")
        expect(runs).to_have_count(1)
        assert "task=nightly" in [u for u in requests if "/archive/runs?" in u][-1], requests

        # logging out takes the button away
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("#login-form")).to_be_visible()
        expect(page.locator("#archive-tasks button")).to_have_count(0)
        assert not problems, problems
    finally:
        watched.close()
    assert mon.daemon.stop() == 0, mon.daemon.tail()
