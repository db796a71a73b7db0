#!/usr/bin/env python3
"""synchrod demo: two recorders, one replay server, a few hundred real calls.

Run by ``make demo``. Everything lives under ``.demo/`` in the repository:

    .demo/pg/            an embedded PostgreSQL (recorders rec1, rec2 and replay)
    .demo/mnt/rec1, rec2 the recorders' media as the replay server mounts them
    .demo/replay/        the replay server's target paths
    .demo/synchrod.yaml  the configuration synchrod runs with

The demo builds the recorders (good calls, calls recorded by both recorders
in different quality, broken calls), runs ``synchrod check`` and
``synchrod once --until-idle`` twice as a user would, then reports what
happened from the databases and the disk. Then it runs the daemon
(``synchrod run``) as systemd would: new calls recorded while it sleeps,
``synchrod run-now``, a lost file restored and ``synchrod retry``,
``synchrod status``, SIGTERM. The server is destroyed at the end unless
``--keep`` is given.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
import wave
from collections import Counter, defaultdict
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synchrod.core.naming import TMP_PREFIX  # noqa: E402
from synchrod.core.quality import quality  # noqa: E402
from synchrod.passwords import hash_password  # noqa: E402
from synchrod.testing import recorders  # noqa: E402
from synchrod.testing.pgserver import PgServer  # noqa: E402
from synchrod.testing.recorders import CallSpec, FileSpec  # noqa: E402

DEMO = REPO / ".demo"
PG_ROOT = DEMO / "pg"
STATE = DEMO / "server.json"          # how to stop a server left by `--keep`
CONFIG = DEMO / "synchrod.yaml"
MOUNTS = {"rec1": DEMO / "mnt" / "rec1", "rec2": DEMO / "mnt" / "rec2"}
TARGET_PATHS = [DEMO / "replay" / "calls", DEMO / "replay" / "calls2"]
TEMPLATE = "callrec_tpl"
REPLAY_DB = "replay"
SYNCHROD = str(Path(sys.executable).parent / "synchrod")
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

# The same sid on both recorders: (kind, rec1 copy, rec2 copy, expected winner).
DUP_KINDS = {
    "state":   "rec1 DECODED vs rec2 FINISHED",
    "streams": "rec1 one stream (ONLY_ONE_STREAM) vs rec2 two streams (NO_PROBLEM)",
    "files":   "rec1 two files vs rec2 one file, otherwise equal",
    "tie":     "identical copies on both",
}


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text} " + "=" * max(3, 74 - len(text)))


# --- server ------------------------------------------------------------------

def stop_old_server() -> None:
    """Stops a server a previous `--keep` run left, then removes .demo/."""
    if (PG_ROOT / "data" / "postmaster.pid").exists():
        say("stopping the server of a previous demo run")
        old = PgServer(PG_ROOT)
        shutil.rmtree(old.socket_dir, ignore_errors=True)  # its own fresh, unused temp dir
        old.stop("fast")
    if STATE.exists():  # the old server's socket directory in /tmp
        try:
            socket_dir = json.loads(STATE.read_text()).get("socket_dir")
        except (OSError, ValueError):
            socket_dir = None
        if socket_dir and Path(socket_dir).name.startswith("spg-"):
            shutil.rmtree(socket_dir, ignore_errors=True)
    shutil.rmtree(DEMO, ignore_errors=True)


def start_server() -> PgServer:
    DEMO.mkdir(parents=True)
    os.chmod(DEMO, 0o755)
    server = PgServer(PG_ROOT, fast=True).start()
    STATE.write_text(json.dumps({"socket_dir": str(server.socket_dir), "port": server.port}))
    return server


# --- data ----------------------------------------------------------------------

def ts(minutes_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes_ago)


def wav(sid: str, n: int, seconds: float = 1.0) -> FileSpec:
    return FileSpec("AUDIO", f"/calls/{ts(0):%Y%m%d}/{sid}/stream{n}.wav", seconds=seconds)


def good_calls(rec: str, count: int, first_minute: int) -> list[CallSpec]:
    calls = []
    for i in range(count):
        sid = f"{rec}-{i:04d}"
        nfiles = 2 if i % 3 == 0 else 1
        spec = CallSpec(sid=sid, start=ts(first_minute - i * 2), length=5 + i % 40,
                        files=[wav(sid, n, 0.5 + (i % 4) * 0.25) for n in range(nfiles)],
                        callingnr=f"+4202{i:07d}", description=f"{rec} call {i}")
        if i % 5 == 0:
            spec.extdata = [("agent", f"agent{i % 7}"), ("queue", "sales" if i % 2 else "support")]
        if i % 7 == 0:
            spec.voice_tags = [("greeting", 500), ("hold", 1000 * (i % 30))]
        if i % 25 == 1:  # a transfer: two couples of one call
            spec.call_key = f"{rec}-xfer-{i}"
            other = CallSpec(sid=f"{sid}-xfer", start=spec.start + dt.timedelta(seconds=30),
                             call_key=spec.call_key, length=12, files=[wav(f"{sid}-xfer", 0)])
            calls.append(spec)
            calls.append(other)
            continue
        calls.append(spec)
    return calls


def duplicated_calls(per_kind: int) -> tuple[list[CallSpec], list[CallSpec]]:
    r1, r2 = [], []
    for kind in DUP_KINDS:
        for i in range(per_kind):
            sid = f"dup-{kind}-{i}"
            start = ts(900 + i * 3 + len(r1))
            a = CallSpec(sid=sid, start=start, length=30, files=[wav(sid, 0, 1.0), wav(sid, 1, 1.0)],
                         extdata=[("recorded_by", "rec1"), ("agent", "alice")],
                         voice_tags=[("rec1-tag", 100)])
            b = CallSpec(sid=sid, start=start, length=30, files=[wav(sid, 0, 1.0), wav(sid, 1, 1.0)],
                         extdata=[("recorded_by", "rec2"), ("customer", "ACME")],
                         voice_tags=[("rec2-tag", 200)])
            if kind == "state":
                a.state = "DECODED"
            elif kind == "streams":
                a.problemstatus, a.files = "ONLY_ONE_STREAM", a.files[:1]
            elif kind == "files":
                b.files = b.files[:1]
            r1.append(a)
            r2.append(b)
    return r1, r2


def broken_calls(rec: str) -> list[CallSpec]:
    t = ts(1200)
    return [
        CallSpec(sid=f"{rec}-broken-missing", start=t, description="file never written",
                 files=[FileSpec("AUDIO", f"/calls/lost/{rec}-missing.wav", size=48044, content="none")]),
        CallSpec(sid=f"{rec}-broken-unsafe", start=t + dt.timedelta(minutes=1),
                 description="path escapes the mount",
                 files=[FileSpec("AUDIO", "/calls/../../etc/passwd", content="none")]),
        CallSpec(sid=f"{rec}-broken-size", start=t + dt.timedelta(minutes=2),
                 description="recorder says 999 bytes",
                 files=[FileSpec("AUDIO", f"/calls/odd/{rec}-size.wav", size=999)]),
        CallSpec(sid=f"{rec}-broken-symlink", start=t + dt.timedelta(minutes=3),
                 description="a symlink leading outside the mount",
                 files=[FileSpec("AUDIO", f"/calls/odd/{rec}-link.wav", size=0, content="none")]),
    ]


def seed_speech_tags(replay_dsn: str, rec1_dsn: str) -> None:
    with psycopg.connect(replay_dsn) as conn:
        conn.execute("INSERT INTO callrec.speech_tags VALUES ('greeting', 'Agent greets the caller'),"
                     " ('complaint', 'Customer complains'), ('cancel', 'Cancellation intent')")
        conn.execute("INSERT INTO callrec.speech_phrases VALUES ('greeting', 'good morning'),"
                     " ('greeting', 'thank you for calling'), ('complaint', 'not happy'),"
                     " ('complaint', 'speak to your manager'), ('cancel', 'cancel my contract')")
    with psycopg.connect(rec1_dsn) as conn:  # an old, drifted copy
        conn.execute("INSERT INTO callrec.speech_tags VALUES ('greeting', 'old description'),"
                     " ('obsolete', 'no longer used')")
        conn.execute("INSERT INTO callrec.speech_phrases VALUES ('greeting', 'hello'),"
                     " ('obsolete', 'whatever')")


def build(server: PgServer) -> dict[str, str]:
    admin = server.dsn("postgres")
    recorders.create_template(admin, TEMPLATE, server.dsn)
    dsns = {}
    for db in ("rec1", "rec2", REPLAY_DB):
        recorders.create_database(admin, db, TEMPLATE)
        dsns[db] = server.dsn(db)
    for m in list(MOUNTS.values()) + TARGET_PATHS:
        m.mkdir(parents=True, exist_ok=True)

    d1, d2 = duplicated_calls(per_kind=6)
    per_rec = {"rec1": good_calls("rec1", 140, 600) + d1 + broken_calls("rec1"),
               "rec2": good_calls("rec2", 120, 500) + d2 + broken_calls("rec2")}
    for rec, calls in per_rec.items():
        recorders.add_calls(dsns[rec], MOUNTS[rec], calls)
        link = MOUNTS[rec] / "calls" / "odd" / f"{rec}-link.wav"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/etc/hostname", link)
    seed_speech_tags(dsns[REPLAY_DB], dsns["rec1"])
    nfiles = {rec: sum(1 for p in MOUNTS[rec].rglob("*.wav") if p.is_file() and not p.is_symlink())
              for rec in MOUNTS}
    for rec, calls in per_rec.items():
        say(f"{rec}: {len(calls)} couples, {nfiles[rec]} WAV files below {MOUNTS[rec]}")
    say(f"duplicated sids (on both recorders): {len(d1)}  "
        f"({', '.join(f'{k}: {v}' for k, v in DUP_KINDS.items())})")
    say("broken calls per recorder: missing file, '/calls/../../etc/passwd', size mismatch, "
        "symlink to /etc/hostname")
    return dsns


def write_config(dsns: dict[str, str]) -> None:
    raw = {
        "synchro": {"sleep_period": 10, "calls_per_period": 50,
                    "only_finished": False,   # so the DECODED copies are candidates too
                    "only_processed": True, "mark_erroneous": True, "max_attempts": 2,
                    "backoff_base": 1, "verify": "size"},
        "target": {"sysname": "replay", "database": dsns[REPLAY_DB],
                   "default_path": str(TARGET_PATHS[0]), "default_watermark": 98,
                   "additional_paths": [{"path": str(TARGET_PATHS[1]), "priority": 0,
                                         "balance": 1, "watermark": 98}]},
        "sources": [{"sysname": rec, "group": f"g-{rec}", "database": dsns[rec],
                     "mount_path": str(MOUNTS[rec]), "interval": "all", "copy_files": True}
                    for rec in MOUNTS],
        # the daemon phase serves the monitor on a free loopback port
        "monitor": {"enabled": True, "listen": f"127.0.0.1:{free_port()}",
                    "jwt_secret_file": str(DEMO / "jwt.secret"),
                    "users": [{"name": DEMO_USER, "password_hash": hash_password(DEMO_PASSWORD)}]},
        "logging": {"level": "warning", "format": "console"},
    }
    CONFIG.write_text(yaml.safe_dump(raw, sort_keys=False))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- running synchrod ---------------------------------------------------------

def synchrod(*args: str) -> int:
    cmd = [SYNCHROD, *args, "-c", str(CONFIG)]
    say(f"$ synchrod {' '.join(args)} -c {CONFIG.relative_to(REPO)}")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    for line in (proc.stdout + proc.stderr).rstrip().splitlines():
        say("    " + line)
    say(f"    (exit status {proc.returncode}, {time.monotonic() - t0:.1f} s)")
    return proc.returncode


# --- the daemon ------------------------------------------------------------------

DAEMON_LOG = DEMO / "daemon.log"


def wait_for(what: str, predicate, timeout: float = 30) -> bool:
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
    raw = yaml.safe_load(CONFIG.read_text())
    raw["logging"] = {"level": "info", "format": "console"}
    CONFIG.write_text(yaml.safe_dump(raw, sort_keys=False))
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


# --- report ----------------------------------------------------------------------

def q(dsn: str, sql: str, *params):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params or None).fetchall()


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def report(dsns: dict[str, str]) -> list[str]:
    problems: list[str] = []
    replay = dsns[REPLAY_DB]

    heading("marks on the recorders (callrec.couples.synchronized)")
    say(f"{'recorder':<9} {'S':>5} {'N':>5} {'E':>5} {'NULL':>5} {'total':>6}")
    for rec in MOUNTS:
        c = Counter(dict(q(dsns[rec], "SELECT coalesce(synchronized, 'NULL'), count(*)"
                                      " FROM callrec.couples GROUP BY 1")))
        say(f"{rec:<9} {c['S']:>5} {c['N']:>5} {c['E']:>5} {c['NULL']:>5} {sum(c.values()):>6}")
        if c["NULL"]:
            problems.append(f"{rec}: {c['NULL']} couples still unmarked")
    (ncpl, nfiles, nbytes), = q(replay, "SELECT (SELECT count(*) FROM callrec.couples),"
                                        " count(*), coalesce(sum(cfsize), 0) FROM callrec.cfiles")
    dups = q(replay, "SELECT count(*) FROM (SELECT sid FROM callrec.couples GROUP BY sid"
                     " HAVING count(*) > 1) d")[0][0]
    say(f"replay database: {ncpl} couples, {nfiles} cfiles, {human(nbytes)}; "
        f"sids held twice: {dups}")
    if dups:
        problems.append(f"{dups} sids held twice on the replay database")

    heading("example couples on the replay server")
    rows = q(replay, """
        SELECT c.sid, c.state, c.problemstatus, c.cfcnt, f.cftype, f.cfsize, f.cfpath
          FROM callrec.couples c JOIN callrec.cfiles f ON f.cplid = c.id
         WHERE c.sid IN ('rec1-0000', 'rec1-0001', 'rec1-0001-xfer', 'rec2-0003', 'dup-streams-0')
         ORDER BY c.sid, f.id""")
    for sid, state, prob, cfcnt, cftype, size, path in rows:
        p = Path(path)
        on_disk = p.stat().st_size if p.exists() else None
        seconds = ""
        if on_disk is not None:
            with wave.open(str(p)) as w:
                seconds = f", WAV {w.getnframes() / w.getframerate():.2f} s"
        ok = "OK" if on_disk == size else f"MISMATCH (disk {on_disk})"
        say(f"{sid:<15} {state:<8} {prob:<15} cfcnt={cfcnt} {cftype} {size:>6} B {ok}{seconds}")
        say(f"    {os.path.relpath(path, REPO)}")
        if on_disk != size:
            problems.append(f"{path}: size on disk {on_disk}, cfsize {size}")
    same_call = q(replay, """SELECT count(DISTINCT callid) FROM callrec.couples
                              WHERE sid IN ('rec1-0001', 'rec1-0001-xfer')""")[0][0]
    say(f"transfer rec1-0001 + rec1-0001-xfer share one target call: {same_call == 1}")
    if same_call != 1:
        problems.append("the two couples of one source call landed in different target calls")

    heading("duplicated sids: who won")
    src_q = {}
    for rec in MOUNTS:
        for sid, state, prob, length, nf, nb, mark in q(dsns[rec], """
                SELECT c.sid, c.state, c.problemstatus, c.length, count(f.id),
                       coalesce(sum(f.cfsize), 0), c.synchronized
                  FROM callrec.couples c LEFT JOIN callrec.cfiles f ON f.cplid = c.id
                 WHERE c.sid LIKE 'dup-%' GROUP BY c.id"""):
            src_q[(rec, sid)] = (quality(state, prob, nf, nb, length), mark,
                                 (state, prob, nf, nb, length))
    holder = defaultdict(set)
    for sid, path in q(replay, """SELECT c.sid, f.cfpath FROM callrec.couples c
                                    JOIN callrec.cfiles f ON f.cplid = c.id WHERE c.sid LIKE 'dup-%'"""):
        for rec in MOUNTS:  # copies are named <sid><sep><source><sep><cfile id>.<ext>
            if re.search(rf"(?:^|[^A-Za-z0-9]){rec}(?:[^A-Za-z0-9]|$)", Path(path).name[len(sid):]):
                holder[sid].add(rec)
    extdata = dict(q(replay, """SELECT c.sid, string_agg(e.key || '=' || e.value, ' ' ORDER BY e.key, e.value)
                                  FROM callrec.couples c JOIN callrec.couple_extdata e ON e.cplid = c.id
                                 WHERE c.sid LIKE 'dup-%' GROUP BY c.sid"""))
    fields = ("state", "problemstatus", "media files", "media bytes", "length")
    for kind, what in DUP_KINDS.items():
        sids = sorted({s for _, s in src_q if s.startswith(f"dup-{kind}-")})
        winners = Counter()
        for sid in sids:
            (q1, m1, _), (q2, m2, _) = src_q[("rec1", sid)], src_q[("rec2", sid)]
            expected = "rec1" if q1 > q2 else "rec2" if q2 > q1 else None
            got = holder.get(sid, set())
            winners[",".join(sorted(got)) or "none"] += 1
            if expected and got != {expected}:
                problems.append(f"{sid}: media from {got}, better copy is on {expected}")
            if len(got) != 1:
                problems.append(f"{sid}: media on the target from {got or 'no recorder'}")
        sid = sids[0]
        (q1, m1, v1), (q2, m2, v2) = src_q[("rec1", sid)], src_q[("rec2", sid)]
        diff = next((i for i in range(len(q1)) if q1[i] != q2[i]), None)
        if diff is None:
            why = "equal quality: a tie keeps what the target already had (the first to arrive)"
        else:
            better = "rec1" if q1[diff] > q2[diff] else "rec2"
            why = (f"{better} is better on {fields[diff]} (rec1 {v1[diff]} vs rec2 {v2[diff]}; "
                   f"earlier criteria equal)")
        say(f"{kind:<8} {what}")
        say(f"         media on the target from: {dict(winners)}; e.g. {sid}: "
            f"rec1 mark {m1}, rec2 mark {m2}")
        say(f"         why: {why}")
        if m1 == m2 == "S":
            say("         both S: the worse copy arrived first and was inserted (S), then the "
                "better one replaced its media (S)")
        say(f"         metadata union on the target: {extdata.get(sid)}")

    heading("failed calls (synchrod.attempts, last outcome in synchrod.run_calls)")
    rows = q(replay, """
        SELECT a.source, a.sid, a.attempts, a.last_reason, a.last_detail,
               (SELECT rc.outcome FROM synchrod.run_calls rc JOIN synchrod.runs r ON r.id = rc.run_id
                 WHERE r.source = a.source AND rc.source_cplid = a.source_cplid
                 ORDER BY rc.run_id DESC LIMIT 1)
          FROM synchrod.attempts a ORDER BY a.source, a.sid""")
    for source, sid, attempts, reason, detail, outcome in rows:
        say(f"{source} {sid:<20} attempts={attempts} {outcome:<10} {reason:<14} {detail}")
    expected_failed = {f"{rec}-broken-{k}" for rec in MOUNTS
                       for k in ("missing", "unsafe", "size", "symlink")}
    got_failed = {sid for _, sid, *_ in rows}
    if got_failed != expected_failed:
        problems.append(f"failed calls differ from the broken ones: {sorted(got_failed ^ expected_failed)}")
    for rec in MOUNTS:
        marks = dict(q(dsns[rec], "SELECT sid, synchronized FROM callrec.couples WHERE sid LIKE '%-broken-%'"))
        if set(marks.values()) != {"E"}:
            problems.append(f"{rec}: broken calls are marked {marks}")
    not_wav = [p for root in TARGET_PATHS for p in root.rglob("*")
               if p.is_file() and p.read_bytes()[:4] != b"RIFF"]
    if not_wav:  # /etc/passwd or /etc/hostname would show up here
        problems.append(f"non-WAV files were copied to the target: {not_wav[:3]}")

    heading("speech tags (the replay database is the master)")
    for db in (REPLAY_DB, "rec1", "rec2"):
        tags = q(dsns[db], """SELECT t.name, coalesce(t.description, ''),
                                     coalesce(string_agg(p.phrase, ' | ' ORDER BY p.phrase), '')
                                FROM callrec.speech_tags t LEFT JOIN callrec.speech_phrases p ON p.tag = t.name
                               GROUP BY t.name, t.description ORDER BY t.name""")
        say(f"{db}: " + "; ".join(f"{n} ({d}): {p}" for n, d, p in tags))
    digest = {db: q(dsns[db], (REPO / "synchrod" / "sql" / "speech_tags_digest.sql").read_text())[0][0]
              for db in (REPLAY_DB, "rec1", "rec2")}
    same = len(set(digest.values())) == 1
    say(f"identical on the replay database and both recorders: {same}  (md5 {digest[REPLAY_DB]})")
    if not same:
        problems.append(f"speech tags differ: {digest}")

    heading("replay directory (find .demo/replay -type f)")
    temp = 0
    for root in TARGET_PATHS:
        files = [p for p in root.rglob("*") if p.is_file()]
        temp += sum(1 for p in files if p.name.startswith(TMP_PREFIX))
        size = sum(p.stat().st_size for p in files)
        say(f"{os.path.relpath(root, REPO):<22} {len(files):>5} files  {human(size):>10}")
        for p in sorted(files)[:2]:
            say(f"    {os.path.relpath(p, REPO)}")
    referenced = {r[0] for r in q(replay, "SELECT cfpath FROM callrec.cfiles")}
    on_disk = {str(p) for root in TARGET_PATHS for p in root.rglob("*") if p.is_file()}
    say(f"files on disk: {len(on_disk)}, referenced by callrec.cfiles: {len(referenced)}, "
        f"unreferenced on disk: {len(on_disk - referenced)}, missing on disk: {len(referenced - on_disk)}, "
        f"temporary leftovers: {temp}")
    if on_disk != referenced:
        problems.append(f"disk and cfiles differ: {len(on_disk - referenced)} unreferenced, "
                        f"{len(referenced - on_disk)} missing")
    if temp:
        problems.append(f"{temp} temporary files left in the target paths")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true",
                    help="leave the PostgreSQL server running and print how to reach it")
    args = ap.parse_args()
    t0 = time.monotonic()
    stop_old_server()
    heading("setting up")
    server = start_server()
    ok = False
    try:
        say(f"embedded PostgreSQL in {PG_ROOT.relative_to(REPO)} (socket {server.socket_dir})")
        dsns = build(server)
        write_config(dsns)
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
            server.destroy()
            STATE.unlink(missing_ok=True)
            say(f"server stopped and removed (data in {PG_ROOT.relative_to(REPO)} deleted; "
                f"media left in .demo/mnt and .demo/replay)")
    say(f"demo finished in {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
