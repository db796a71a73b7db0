"""The monitor page's storage and recordings views (SPEC §9) in a real
browser (Debian's chromium driven by Playwright) against a real `synchrod
run` whose first target path is a small real filesystem holding the files of
synchronized calls, one of them protected: the storage view shows the
filesystem with its level and follows a level change pushed by SSE; the
recordings view is for a logged-in operator only; it lists the calls oldest
first, filtered by a date given in the browser's own time zone (sent in UTC)
and a source; two rows selected are previewed (nothing changes), deleted by a
job whose progress reaches done, then listed as deleted with their files gone
from the disk; a running job is cancelled through its button and stops after
the batch in hand; "all matching" with the metadata deletes the rest but the
protected call (skipped and counted); the recordings go with the logout, the
jobs list stays. Any JavaScript error fails the test."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import psycopg

import _daemon
from _daemon import wait_until
from _monitor import PASSWORD, USER, start_monitor
from _sync_helpers import spec
from conftest import NOW
from test_monitor_browser import TIMEOUT, WatchedPage, _playwright
from test_purge import _paths_of
from test_storage_levels import fill_to, small_fs, storage_env  # noqa: F401 - small_fs: a fixture

daemons = _daemon.daemons
DAY = 24 * 60
ZONE = "Asia/Kolkata"          # +05:30: the page must send the filter's times in UTC
SIDS = ["a1", "a2", "ap", "a4", "y1"]


def _stage(env, small_fs, tmp_path) -> dict[str, list[str]]:
    """Five calls synchronized onto the small filesystem (retention priority:
    nothing is pruned by itself): four older than a day, ap protected, y1 young.
    Returns each sid's files on the target."""
    storage_env(env, small_fs, tmp_path)
    env.add_calls(0, [spec("a1", minutes_ago=5 * DAY), spec("a2", minutes_ago=4 * DAY),
                      spec("ap", minutes_ago=3 * DAY, protected=True),
                      spec("a4", minutes_ago=2 * DAY), spec("y1", minutes_ago=60)])
    env.once("--source", "rec1", "--until-idle", check_rc=0)
    files = {sid: _paths_of(env, sid) for sid in SIDS}
    for sid, paths in files.items():
        assert paths and all(Path(p).is_file() for p in paths), (sid, paths)
        assert all(p.startswith(str(small_fs)) for p in paths), (sid, paths)
    return files


def _gone(paths: list[str]) -> bool:
    return not any(os.path.exists(p) for p in paths)


def _screenshot(page, tmp_path: Path) -> None:
    shot = tmp_path / "monitor-storage.png"
    page.screenshot(path=str(shot), full_page=True)
    out = os.environ.get("SYNCHROD_TEST_OUTPUT")
    if out and Path(out).is_dir():
        shutil.copy(shot, Path(out) / shot.name)


def test_storage_and_recordings_views_delete_calls(env, daemons, small_fs, tmp_path):
    sync_api = _playwright()
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    files = _stage(env, small_fs, tmp_path)
    mon = start_monitor(daemons, env)

    stream = mon.events()              # what the page receives, seen from outside
    watched = WatchedPage(sync_api, timezone_id=ZONE)
    page, problems, requests = watched.page, watched.problems, watched.requests
    try:
        page.goto(f"{mon.url}/monitor/")
        expect(page.locator("#live")).to_have_text("live")

        # --- the storage view, read-only ---------------------------------------------
        fs_row = page.locator(f'#storage-filesystems tr[data-filesystem="{small_fs}"]')
        expect(fs_row.locator("td.level .badge")).to_have_text("normal")
        expect(fs_row.locator("td.accepting")).to_have_text("yes")
        expect(fs_row.locator("td.paths")).to_have_text(str(small_fs))
        expect(fs_row.locator(".bar .fill")).to_have_count(1)
        expect(page.locator("#storage-mode")).to_contain_text("retention priority")
        expect(page.locator("#storage-plan-summary")).to_contain_text("nothing is pruned automatically")
        expect(page.locator("#storage-held li")).to_have_count(3)
        # a level change reaches the page through the stream (no 30 s wait, no reload)
        fill_to(small_fs, 80)
        expect(fs_row.locator("td.level .badge")).to_have_text("warning", timeout=10_000)
        expect(fs_row.locator("td.accepting")).to_have_text("yes")
        expect(fs_row.locator(".pct")).to_have_text(re.compile(r"^(79|80|81)\.\d%$"))

        # --- recordings: for a logged-in operator only ----------------------------------
        expect(page.locator("#rec-login-note")).to_be_visible()
        expect(page.locator("#rec-view")).to_be_hidden()
        assert not any("/api/v1/recordings" in u for u in requests), requests
        expect(page.locator("#deletions-status")).to_have_text("No deletion job yet.")
        # pages of 2 instead of 100 (the request rewritten on its way): the keyset pages
        listing = re.compile(r".*/api/v1/recordings\?.*")
        page.route(listing, lambda route: route.continue_(
            url=route.request.url.replace("limit=100", "limit=2")))
        page.fill("#login-user", USER)
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        expect(page.locator("#session")).to_be_visible()
        expect(page.locator("#rec-view")).to_be_visible()
        expect(page.locator("#rec-login-note")).to_be_hidden()
        sids = page.locator("#recordings tbody td.sid")
        expect(sids).to_have_text(SIDS[:2])                   # oldest first
        page.click("#rec-more")
        expect(sids).to_have_text(SIDS[:4])
        page.click("#rec-more")
        expect(sids).to_have_text(SIDS)
        expect(page.locator("#rec-more")).to_be_hidden()
        assert len([u for u in requests if "cursor=" in u]) == 2, requests
        page.unroute(listing)
        expect(page.locator('#recordings tr[data-sid="ap"] td.protected')).to_have_text("protected")
        expect(page.locator("#rec-all-matching")).to_be_disabled()   # no "before" yet

        # filter: started before a day ago (in the browser's zone), from rec1
        cut = NOW - dt.timedelta(days=1)
        page.fill("#rec-before", cut.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M:%S"))
        page.select_option("#rec-source", "rec1")
        page.click("#rec-list")
        expect(sids).to_have_text(["a1", "a2", "ap", "a4"])
        listed = [u for u in requests if "/api/v1/recordings" in u][-1]
        query = parse_qs(urlsplit(listed).query)
        assert query["before"] == [cut.strftime("%Y-%m-%dT%H:%M:%S.000Z")], listed
        assert query["source"] == ["rec1"] and "after" not in query, listed
        assert query["limit"] == ["100"] and "cursor" not in query, listed

        # two rows: the preview says 2 and changes nothing
        page.locator('#recordings tr[data-sid="a1"] input.pick').check()
        page.locator('#recordings tr[data-sid="a2"] input.pick').check()
        expect(page.locator("#rec-selection")).to_have_text("2 recordings selected")
        expect(page.locator("#del-confirm")).to_be_disabled()        # not before a preview
        page.click("#del-preview-button")
        expect(page.locator("#del-preview-count")).to_have_text("2")
        expect(page.locator("#del-preview-skipped")).to_have_text("0")
        expect(page.locator("#del-preview details tr[data-sid]")).to_have_count(2)
        expect(page.locator("#del-preview details td.sid")).to_have_text(["a1", "a2"])
        assert not _gone(files["a1"]) and not _gone(files["a2"])
        assert env.target("SELECT count(*) FROM synchrod.deletions") == [(0,)]

        # confirm: a job, its progress to done, the rows listed as deleted, the files gone
        page.fill("#del-comment", "browser test: two calls")
        since = len(requests)
        page.click("#del-confirm")
        expect(page.locator("#del-job-state")).to_have_text("done")
        expect(page.locator("#del-job-count")).to_have_text("2 / 2")
        expect(page.locator("#del-job-skipped")).to_have_text("0")
        expect(page.locator("#del-job-progress")).to_have_attribute("value", "2")
        expect(page.locator("#del-cancel")).to_have_count(0)
        expect(page.locator('#recordings tr[data-sid="a1"] td.deleted')).to_have_text("deleted")
        expect(page.locator('#recordings tr[data-sid="a2"] td.deleted')).to_have_text("deleted")
        expect(page.locator('#recordings tr[data-sid="a4"] td.deleted')).to_have_text("")
        expect(page.locator("#recordings input.pick:checked")).to_have_count(0)
        wait_until(lambda: _gone(files["a1"]) and _gone(files["a2"]), 10, "a1's and a2's files gone")
        assert not _gone(files["ap"]) and not _gone(files["a4"])
        job1, = mon.get_json("/api/v1/deletions")["jobs"]
        assert job1["state"] == "done" and job1["comment"] == "browser test: two calls", job1
        assert job1["requested_by"] == USER and job1["selection"] == {"kind": "sids", "count": 2}, job1
        expect(page.locator(f'#deletions tr[data-job="{job1["id"]}"]')).to_contain_text("done")
        # the job's session event reached the stream, and the storage view read its report again
        deleted = stream.wait("deletion", lambda e: e["eventAction"] == "DELETED", timeout=10)
        assert sorted(deleted["sids"]) == ["a1", "a2"] and deleted["reason"] == "api", deleted
        wait_until(lambda: page.wait_for_timeout(100) or any(
            u.endswith("/api/v1/storage") for u in requests[since:]), 10,   # (events come in Playwright calls)
            "the storage view to read its report again after the deletion")

        # a running job cancelled from the page: the batch in hand waits on a row lock held
        # here, the cancellation is asked meanwhile, the job stops once the batch is done
        page.locator('#recordings tr[data-sid="a4"] input.pick').check()
        page.click("#del-preview-button")
        expect(page.locator("#del-preview-count")).to_have_text("1")
        with psycopg.connect(env.target_dsn()) as lock:
            lock.execute("SELECT 1 FROM callrec.couples WHERE sid = 'a4' FOR UPDATE")
            page.click("#del-confirm")
            expect(page.locator("#del-job-state")).to_have_text("running")
            page.click("#del-cancel")
            expect(page.locator("#del-job")).to_contain_text("cancel requested")
            expect(page.locator("#del-cancel")).to_be_disabled()
            job = mon.get_json("/api/v1/deletions")["jobs"][0]
            assert job["state"] == "running" and job["cancel_requested"], job
            lock.rollback()
        expect(page.locator("#del-job-state")).to_have_text("cancelled")
        expect(page.locator("#del-cancel")).to_have_count(0)
        expect(page.locator(f'#deletions tr[data-job="{job["id"]}"]')).to_contain_text("cancelled")
        expect(page.locator('#recordings tr[data-sid="a4"] td.deleted')).to_have_text("deleted")
        wait_until(lambda: _gone(files["a4"]), 10, "a4's files gone (the batch in hand)")

        # all matching, metadata too: the rest goes but the protected call
        page.check("#rec-all-matching")
        page.check("#del-metadata")
        expect(page.locator("#rec-selection")).to_contain_text("all matching")
        expect(page.locator("#recordings input.pick:checked")).to_have_count(4)
        page.click("#del-preview-button")
        expect(page.locator("#del-preview-skipped")).to_have_text("1")
        page.click("#del-confirm")
        expect(page.locator("#del-job-state")).to_have_text("done")
        expect(page.locator("#del-job-skipped")).to_have_text("1")
        expect(sids).to_have_text(["ap"])                    # metadata deleted: gone from the list
        assert not _gone(files["ap"]) and not _gone(files["y1"])
        assert {s for (s,) in env.target("SELECT sid FROM callrec.couples")} == {"ap", "y1"}
        jobs = mon.get_json("/api/v1/deletions")["jobs"]
        assert [j["id"] for j in jobs][1:] == [job["id"], job1["id"]], jobs   # newest first
        job2 = jobs[0]
        assert job2["state"] == "done" and job2["skipped_protected"] == 1 and job2["metadata"], job2
        assert job2["selection"]["kind"] == "filter" and job2["selection"]["source"] == "rec1", job2
        expect(page.locator("#deletions tbody tr")).to_have_count(3)
        expect(page.locator(f'#deletions tr[data-job="{job2["id"]}"] td:nth-child(7)')).to_have_text("1")
        _screenshot(page, tmp_path)

        # logging out takes the recordings (and their phone numbers) away; the jobs stay
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("#rec-view")).to_be_hidden()
        expect(page.locator("#recordings tbody tr")).to_have_count(0)
        expect(page.locator("#deletions tbody tr")).to_have_count(3)
        assert not problems, problems
    finally:
        watched.close()
        stream.close()
    assert mon.daemon.stop() == 0, mon.daemon.tail()
