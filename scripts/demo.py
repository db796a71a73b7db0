#!/usr/bin/env python3
"""synchrod demo: three recorders, one replay server, a few hundred real calls.

Run by ``make demo``. Everything lives under ``.demo/`` in the repository:

    .demo/pg/            an embedded PostgreSQL (recorders rec1, rec2, rec3; replay)
    .demo/mnt/rec1, ...  the recorders' media as the replay server mounts them
    .demo/replay/        the replay server's target paths
    .demo/synchrod.yaml  the configuration synchrod runs with

The databases hold the real CallREC schema (synchrod.testing.callrec_schema).
The demo builds the recorders (good calls, calls recorded by both recorders
in different quality, broken calls, speech tags the replay database is the
master of), runs ``synchrod check`` and ``synchrod once --until-idle`` twice
as a user would, then reports what happened from the databases and the disk.
Three scenes follow: a protected call a better copy must not replace, a
third recorder (rec3) that is an old SQL_ASCII database holding Latin-1
text, and a recorder restored from a backup that hands out the same ids
again. Then it runs the daemon
(``synchrod run``) as systemd would: new calls recorded while it sleeps,
``synchrod run-now``, a lost file restored and ``synchrod retry``,
``synchrod status``, SIGTERM. The server is destroyed at the end unless
``--keep`` is given.

Its parts live beside it in scripts/: demo_env (the places and the
helpers all parts share), demo_data (the sample calls, the speech tags,
the build), demo_scenes (the three scenes), demo_report (the report
after the passes); this script runs the phases, the daemon's and the
monitor's included.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave

from demo_data import build, good_calls, write_demo_config
from demo_env import (CONFIG, DEMO, DEMO_PASSWORD, DEMO_USER, MOUNTS, PG_ROOT, REPO, STAGE,
                      heading, q, synchrod)
from demo_report import report
from demo_scenes import scene_latin1, scene_protected, scene_restored
from synchrod.testing import recorders
from synchrod.testing.stage import SYNCHROD, read_config, say, write_config


# --- the daemon ------------------------------------------------------------------

DAEMON_LOG = DEMO / "daemon.log"


def wait_for(what: str, predicate, timeout: float = 30) -> bool:
    """Polls ``predicate`` every 0.1 s for up to ``timeout`` seconds; returns whether it held
    (saying so when it never did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    say(f"    gave up waiting for {what}")
    return False


def recover_missing_file(rec: str) -> None:
    """The operator restores the lost file (48,044 bytes, as the recorder says)."""
    path = MOUNTS[rec] / "calls" / "lost" / f"{rec}-missing.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 24000)


def daemon_phase(dsns: dict[str, str]) -> list[str]:
    """`synchrod run` as under systemd: new calls, run-now, retry, status, SIGTERM."""
    problems = []
    raw = read_config(CONFIG)
    raw["logging"] = {"level": "info", "format": "console"}
    write_config(CONFIG, raw)
    say(f"$ synchrod run -c {CONFIG.relative_to(REPO)} &    (log: {DAEMON_LOG.relative_to(REPO)})")
    with open(DAEMON_LOG, "w") as log:
        proc = subprocess.Popen([SYNCHROD, "run", "-c", str(CONFIG)], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        if not wait_for("the daemon to start", lambda: " started " in DAEMON_LOG.read_text()):
            return ["the daemon did not start"]
        late = good_calls("rec1-late", 6, 5)
        recorders.add_calls(dsns["rec1"], MOUNTS["rec1"], late)
        say(f"recorded {len(late)} new calls on rec1 while the daemon sleeps (sleep_period 10 s)")
        synchrod("run-now", "--source", "rec1")
        sids = [c.sid for c in late]

        def marked(rec, wanted):
            rows = dict(q(dsns[rec], "SELECT sid, synchronized FROM callrec.couples "
                                     "WHERE sid = ANY(%s)", wanted))
            return all(rows.get(s) == "S" for s in wanted)
        if not wait_for("the new calls", lambda: marked("rec1", sids), 20):
            problems.append("new calls were not synchronized by the daemon")
        say("the new calls are marked S")
        recover_missing_file("rec2")
        say("the operator restores /calls/lost/rec2-missing.wav on rec2, then:")
        synchrod("retry", "--source", "rec2", "--sid", "rec2-broken-missing")
        if not wait_for("the retried call", lambda: marked("rec2", ["rec2-broken-missing"]), 20):
            problems.append("the retried call was not synchronized")
        say("rec2-broken-missing is marked S")
        synchrod("status")
        problems += monitor_phase(raw["monitor"]["listen"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    say(f"$ kill -TERM <daemon>   (exit status {rc})")
    if rc != 0:
        problems.append(f"the daemon exited with {rc} on SIGTERM")
    say("daemon log (idle cycles left out):")
    for line in DAEMON_LOG.read_text().splitlines():
        if "state=idle" not in line:
            say("    " + line)
    return problems


def http(url: str, method: str = "GET", body: dict | None = None, token: str | None = None):
    """``method url`` with an optional JSON ``body`` and bearer ``token``; returns (status,
    body text), HTTP errors included."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def monitor_phase(listen: str) -> list[str]:
    """What the monitor shows, and an action through the API with a token."""
    problems = []
    base = f"http://{listen}"
    say(f"monitor page: {base}/monitor/  (user {DEMO_USER}, password {DEMO_PASSWORD})")
    code, body = http(f"{base}/api/v1/status")
    if code != 200:
        return [f"GET /api/v1/status answered {code}"]
    say(f"$ curl {base}/api/v1/status   (sources and jobs)")
    status = json.loads(body)
    for s, j in zip(status["sources"], status["jobs"]):
        say(f"    {s['sysname']}: {s['state']}, backlog {s['backlog']}, lag {s['lag_seconds']} s; "
            f"job {j['id']} generation {j['generation']} {j['status']}: {j['comment']}")
    code, body = http(f"{base}/metrics")
    say(f"$ curl {base}/metrics | grep rec1   (a few of the series)")
    for line in body.splitlines():
        if 'source="rec1"' in line and line.startswith(("synchrod_calls_total", "synchrod_backlog",
                                                        "synchrod_source_up", "synchrod_bytes")):
            say("    " + line)
    code, body = http(f"{base}/api/v1/sources/rec2/pause", "POST")
    say(f"POST /api/v1/sources/rec2/pause without a token: {code}")
    if code != 401:
        problems.append(f"an action without a token answered {code}")
    code, body = http(f"{base}/api/v1/login", "POST",
                      {"username": DEMO_USER, "password": DEMO_PASSWORD})
    token = json.loads(body).get("token") if code == 200 else None
    if token is None:
        return problems + [f"login answered {code}"]
    for action in ("pause", "resume"):
        code, body = http(f"{base}/api/v1/sources/rec2/{action}", "POST", token=token)
        answer = json.loads(body)
        say(f"POST /api/v1/sources/rec2/{action} with the token: {code}, {answer.get('message')} "
            f"(state now {answer.get('source', {}).get('state')})")
        if code != 200:
            problems.append(f"{action} answered {code}")
    return problems


def main() -> int:
    """Runs the demo: set-up, check, two passes, the report, the scenes and the daemon, then
    prints the result; returns 0 when everything was as expected, 1 otherwise. The server is
    destroyed at the end unless --keep."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true",
                    help="leave the PostgreSQL server running and print how to reach it")
    args = ap.parse_args()
    t0 = time.monotonic()
    STAGE.clear("fast", lambda: say("stopping the server of a previous demo run"))
    heading("setting up")
    server = STAGE.start(fast=True)
    ok = False
    try:
        say(f"embedded PostgreSQL in {PG_ROOT.relative_to(REPO)} (socket {server.socket_dir})")
        dsns = build(server)
        write_demo_config(dsns)
        say(f"configuration: {CONFIG.relative_to(REPO)}")

        heading("synchrod check")
        synchrod("check")
        heading("synchrod once --until-idle (first pass)")
        synchrod("once", "--until-idle")
        say("waiting 2.5 s: the failed calls' back-off (backoff_base 1 s) runs out")
        time.sleep(2.5)
        heading("synchrod once --until-idle (second pass: failures reach max_attempts 2)")
        synchrod("once", "--until-idle")

        problems = report(dsns)
        heading("scene: a protected call on the replay server")
        problems += scene_protected(dsns)
        heading("scene: an old recorder, SQL_ASCII with Latin-1 text")
        problems += scene_latin1(server, dsns)
        heading("scene: a recorder restored from a backup reuses ids")
        problems += scene_restored(dsns)
        heading("the daemon: synchrod run, run-now, retry, status, SIGTERM")
        problems += daemon_phase(dsns)
        heading("result")
        if problems:
            say("PROBLEMS:")
            for p in problems:
                say(f"  - {p}")
        else:
            say("everything as expected")
        ok = not problems
        if args.keep:
            say()
            say("server kept running (run `make demo` again to start over):")
            for db, dsn in dsns.items():
                say(f"  {db:<7} {dsn}")
            say(f"  config  {CONFIG}")
            say(f"  try:    {SYNCHROD} status -c {CONFIG}")
    finally:
        if not args.keep:
            STAGE.destroy(server)
            say(f"server stopped and removed (data in {PG_ROOT.relative_to(REPO)} deleted; "
                f"media left in .demo/mnt and .demo/replay)")
    say(f"demo finished in {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
