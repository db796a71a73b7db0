"""The monitor page in a real browser (Debian's chromium driven by
Playwright) against a real `synchrod run`: first paint from the embedded
status, read-only without a token, a refused login, a login, pause and resume
of a source through the buttons, updates pushed by Server-Sent Events (an
action made elsewhere shows up without any reload), the run history and its
calls. Any JavaScript error in the page fails the test."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

import _daemon
from conftest import call
from synchrod.monitor.passwords import hash_password

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "s3cret-pass"
TIMEOUT = 15_000            # ms, for every expectation on the page


def _playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("playwright is not installed")
    return sync_api


class WatchedPage:
    """A headless Chromium page that records every JavaScript error, console
    error and API request it makes; :meth:`close` ends the browser."""

    def __init__(self, sync_api, timezone_id: str | None = None):
        self.problems: list[str] = []       # JavaScript errors and console errors
        self.requests: list[str] = []       # every API URL the page asked for
        self.pw = sync_api.sync_playwright().start()
        self.browser = None
        try:
            self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"],
                                                   headless=True)
            context = self.browser.new_context(viewport={"width": 1400, "height": 900},
                                               timezone_id=timezone_id)
            self.page = context.new_page()
        except BaseException:
            self.close()
            raise
        self.page.set_default_timeout(TIMEOUT)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)
        self.page.on("request", lambda req: self.requests.append(req.url)
                     if "/api/v1/" in req.url else None)

    def _console(self, msg) -> None:
        if msg.type == "error":
            self.problems.append(f"console error: {msg.text} "
                                 f"({(msg.location or {}).get('url', '')})")

    def close(self) -> None:
        """Closes the browser and stops Playwright."""
        if self.browser is not None:
            self.browser.close()
        self.pw.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    """A JSON POST outside the browser (urllib raises on any status >= 400)."""
    req = urllib.request.Request(base + path, method="POST",
                                 data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=15) as resp:
        text = resp.read().decode()
    return json.loads(text) if text else {}


def save_screenshot(page, tmp_path: Path) -> Path:
    shot = tmp_path / "monitor.png"
    page.screenshot(path=str(shot), full_page=True)
    out = os.environ.get("SYNCHROD_TEST_OUTPUT")
    if out and Path(out).is_dir():
        shutil.copy(shot, Path(out) / "monitor.png")
    return shot


def test_monitor_page_live_in_a_browser(env, daemons, tmp_path):
    sync_api = _playwright()
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT)
    port = free_port()
    env.write_config(
        synchro=dict(env.raw["synchro"], sleep_period=1),
        monitor={"enabled": True, "listen": f"127.0.0.1:{port}",
                 "jwt_secret_file": str(tmp_path / "jwt.secret"),
                 "users": [{"name": "admin", "password_hash": hash_password(PASSWORD)}]},
        logging={"level": "info", "format": "json"})
    env.add_calls(0, [call("m1"), call("m2")])
    d = daemons()
    d.wait_event("monitor_listening", timeout=60)
    base = f"http://127.0.0.1:{port}"
    d.wait_event("cycle", source="rec1", timeout=60)

    problems: list[str] = []            # JavaScript errors and unexpected console errors
    navigations: list[str] = []

    def on_console(msg):
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        # the refused login below: the browser logs the 401 of /api/v1/login
        if "status of 401" in msg.text and url.endswith("/api/v1/login"):
            return
        problems.append(f"console error: {msg.text} ({url})")

    pw = sync_api.sync_playwright().start()
    browser = None
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("console", on_console)
        page.on("framenavigated",
                lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

        page.goto(f"{base}/monitor/")
        # first paint from the status embedded by the server
        assert page.locator("script#initial-status").count() == 1
        rec1 = page.locator('tr[data-source="rec1"]')
        rec1_state = rec1.locator(".state")
        rec2_state = page.locator('tr[data-source="rec2"] .state')
        expect(rec1).to_be_visible()
        expect(rec1.locator("td").first).to_have_text("rec1")
        expect(page.locator("#live")).to_have_text("live")
        expect(page.locator("#daemon-version")).not_to_have_text("?")
        expect(page.locator("#jobs thead th")).to_have_text(
            ["ID", "Source", "Generation", "State", "Attempt", "Type", "Status", "Timestamp",
             "Comment"])
        expect(page.locator('#jobs tr[data-job="rec1"]')).to_be_visible()
        expect(page.locator("#targets tbody tr")).to_have_count(1)
        expect(page.locator("#targets tbody td.path")).to_have_text(str(env.target_path))

        # read-only: a login form, no action button anywhere
        expect(page.locator("#login-form")).to_be_visible()
        expect(page.locator("#sources button")).to_have_count(0)
        expect(page.locator("#session")).to_be_hidden()
        expect(page.get_by_role("button", name="Shut down")).to_be_hidden()

        # a wrong password is refused with a message
        page.fill("#login-user", "admin")
        page.fill("#login-password", "wrong-password")
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_be_visible()
        expect(page.locator("#login-error")).to_contain_text("Login failed")
        expect(page.locator("#sources button")).to_have_count(0)

        # the right one
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        expect(page.locator("#session")).to_be_visible()
        expect(page.locator("#session-user")).to_have_text("admin")
        expect(page.locator("#login-form")).to_be_hidden()
        expect(page.locator("#login-error")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('synchrod.token')")
        page.evaluate("window.__notReloaded = true")
        navs = len(navigations)

        # pause and resume rec1 through its buttons
        rec1.get_by_role("button", name="Pause").click()
        expect(rec1_state).to_have_text("paused")
        expect(page.locator("#notice")).to_be_visible()
        expect(rec1.get_by_role("button", name="Resume")).to_be_visible()
        rec1.get_by_role("button", name="Resume").click()
        expect(rec1_state).not_to_have_text(re.compile("paused"))
        expect(rec1.get_by_role("button", name="Pause")).to_be_visible()

        # an action made elsewhere arrives by SSE alone
        token = post(base, "/api/v1/login", {"username": "admin", "password": PASSWORD})["token"]
        post(base, "/api/v1/sources/rec2/pause", token=token)
        expect(rec2_state).to_have_text("paused")
        post(base, "/api/v1/sources/rec2/resume", token=token)
        expect(rec2_state).not_to_have_text(re.compile("paused"))
        assert page.evaluate("window.__notReloaded === true")
        assert len(navigations) == navs, navigations

        # the run history holds the cycle that synchronized m1 and m2; its calls
        run = page.locator("#runs tr.run").filter(has_text="rec1").filter(
            has=page.locator("td:nth-child(6)", has_text=re.compile(r"^2$")))
        expect(run.first).to_be_visible()
        run.first.click()
        detail = page.locator("#runs tr.run-detail")
        expect(detail.first).to_contain_text("m1")
        expect(detail.first).to_contain_text("m2")
        expect(detail.first).to_contain_text("synchronized")

        save_screenshot(page, tmp_path)

        page.get_by_role("button", name="Reload config").click()
        expect(page.locator("#notice")).to_have_text("Configuration reloaded.")
        d.wait_event("config_reloaded")

        # logging out takes the buttons away again
        page.get_by_role("button", name="Log out").click()
        expect(page.locator("#login-form")).to_be_visible()
        expect(page.locator("#sources button")).to_have_count(0)
        assert page.evaluate("sessionStorage.getItem('synchrod.token')") is None
        assert not problems, problems

        # shut the daemon down from the page (after its confirmation dialog)
        page.fill("#login-user", "admin")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        dialogs: list[str] = []

        def accept(dialog):
            dialogs.append(dialog.message)
            dialog.accept()
        page.once("dialog", accept)
        page.get_by_role("button", name="Shut down").click()
        assert d.wait_exit(30) == 0, d.tail()
        assert dialogs and "Shut down" in dialogs[0], dialogs
        # the stream ends with the daemon: the page says so (its reconnects now fail)
        expect(page.locator("#live")).to_have_text(re.compile("disconnected"))
        assert page.evaluate("window.__notReloaded === true")
    finally:
        if browser is not None:
            browser.close()
        pw.stop()
