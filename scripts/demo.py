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
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import signal
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synchrod.core.naming import TMP_PREFIX  # noqa: E402
from synchrod.core.quality import quality  # noqa: E402
from synchrod.testing import recorders, stage  # noqa: E402
from synchrod.testing.pgserver import PgServer  # noqa: E402
from synchrod.testing.recorders import CallSpec, FileSpec  # noqa: E402
from synchrod.testing.stage import SYNCHROD, free_port, read_config, say, write_config  # noqa: E402

DEMO = REPO / ".demo"
STAGE = stage.Stage(DEMO)             # .demo/pg, and .demo/server.json to stop a server left by `--keep`
PG_ROOT = STAGE.pg_root
CONFIG = DEMO / "synchrod.yaml"
MOUNTS = {"rec1": DEMO / "mnt" / "rec1", "rec2": DEMO / "mnt" / "rec2"}
# the third recorder of the Latin-1 scene: an old SQL_ASCII installation
LATIN_REC = "rec3"
LATIN_MOUNT = DEMO / "mnt" / LATIN_REC
LATIN_DSN: dict[str, str] = {}   # its DSN once created (q() reads it as Latin-1)
TARGET_PATHS = [DEMO / "replay" / "calls", DEMO / "replay" / "calls2"]
REPLAY_DB = "replay"
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


def heading(text: str) -> None:
    say()
    say(f"== {text} " + "=" * max(3, 74 - len(text)))


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
        if i % 7 == 0:  # phrases of the replay database's definitions (they map by text)
            spec.voice_tags = [("thank you for calling", 500), ("please hold", 1000 * (i % 30))]
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
                         voice_tags=[("good morning", 100, 900, 91.0, "L")])
            b = CallSpec(sid=sid, start=start, length=30, files=[wav(sid, 0, 1.0), wav(sid, 1, 1.0)],
                         extdata=[("recorded_by", "rec2"), ("customer", "ACME")],
                         voice_tags=[("not happy", 2000, 2600, 77.5, "R")])
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
                 description="a FIFO where the file should be (a reader would hang)",
                 files=[FileSpec("AUDIO", f"/calls/odd/{rec}-fifo.wav", size=0, content="none")]),
        CallSpec(sid=f"{rec}-broken-size", start=t + dt.timedelta(minutes=2),
                 description="recorder says 999 bytes",
                 files=[FileSpec("AUDIO", f"/calls/odd/{rec}-size.wav", size=999)]),
        CallSpec(sid=f"{rec}-broken-symlink", start=t + dt.timedelta(minutes=3),
                 description="a symlink leading outside the mount",
                 files=[FileSpec("AUDIO", f"/calls/odd/{rec}-link.wav", size=0, content="none")]),
    ]


# The replay database is the master of the speech-analytics definitions:
# tag -> (icon, its phrases). Phrases carry a confidence threshold.
MASTER_TAGS = {
    "Greeting": ("smile", ["good morning", "thank you for calling"]),
    "Complaint": ("warning", ["not happy", "speak to your manager"]),
    "Cancellation": ("exit", ["cancel my contract"]),
    "Hold": (None, ["please hold"]),
}
# rec1 holds an old, drifted copy: another icon, an old phrase, an obsolete tag
STALE_TAGS = {
    "greeting": ("old-icon", ["hello", "good morning"]),
    "Obsolete": (None, ["whatever"]),
}


def define_tags(dsn: str, tags: dict[str, tuple[str | None, list[str]]], confidence: float | None) -> None:
    """Tags, their phrases and the tag_to_phrases links, as CallREC stores them
    (phrases are shared: a phrase already there is linked, not duplicated)."""
    with psycopg.connect(dsn) as conn:
        for name, (icon, phrases) in tags.items():
            (tagid,), = conn.execute(
                "INSERT INTO callrec.speech_tags (tag_name, state, icon) VALUES (%s, 'READY', %s)"
                " RETURNING tagid", (name, icon)).fetchall()
            for text in phrases:
                conn.execute("INSERT INTO callrec.speech_phrases (phrase_text, confidence, state, enabled)"
                             " VALUES (%s, %s, 'READY', true) ON CONFLICT (phrase_text) DO UPDATE"
                             " SET confidence = EXCLUDED.confidence", (text, confidence))
                conn.execute("INSERT INTO callrec.tag_to_phrases (tagid, phraseid) SELECT %s, phraseid"
                             " FROM callrec.speech_phrases WHERE phrase_text = %s", (tagid, text))


def seed_speech_tags(replay_dsn: str, rec1_dsn: str) -> None:
    define_tags(replay_dsn, MASTER_TAGS, confidence=60.0)
    define_tags(rec1_dsn, STALE_TAGS, confidence=None)


# What a database holds of the definitions, ids left out (ids differ between
# databases; synchrod.speech.DIGEST covers the rows with their ids, so it only
# tells whether one database changed, not whether two are identical).
SPEECH_CONTENT = """
SELECT md5(coalesce((SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
               SELECT concat_ws('|', lower(tag_name), tag_name, state, searchid, icon) AS x
                 FROM callrec.speech_tags) t), '')
           || E'\\x1c' ||
           coalesce((SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
               SELECT concat_ws('|', phrase_text, confidence, interaction_count, last_count_date,
                                state, enabled) AS x
                 FROM callrec.speech_phrases) p), '')
           || E'\\x1c' ||
           coalesce((SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
               SELECT lower(t.tag_name) || '|' || p.phrase_text AS x
                 FROM callrec.tag_to_phrases l
                 JOIN callrec.speech_tags t ON t.tagid = l.tagid
                 JOIN callrec.speech_phrases p ON p.phraseid = l.phraseid) l), ''))
"""
SPEECH_TAGS = """
SELECT t.tag_name, coalesce(t.icon, '-'),
       coalesce(string_agg(p.phrase_text, ' | ' ORDER BY p.phrase_text), '')
  FROM callrec.speech_tags t
  LEFT JOIN callrec.tag_to_phrases l ON l.tagid = t.tagid
  LEFT JOIN callrec.speech_phrases p ON p.phraseid = l.phraseid
 GROUP BY t.tagid, t.tag_name, t.icon ORDER BY lower(t.tag_name)
"""
UNTAGGED_PHRASES = """
SELECT coalesce(string_agg(phrase_text, ' | ' ORDER BY phrase_text), '') FROM callrec.speech_phrases p
 WHERE NOT EXISTS (SELECT 1 FROM callrec.tag_to_phrases l WHERE l.phraseid = p.phraseid)
"""


def show_speech_tags(dsns: dict[str, str], dbs) -> dict[str, str]:
    """Prints each database's tags (with their phrases) and returns its content digest."""
    for db in dbs:
        tags = q(dsns[db], SPEECH_TAGS)
        say(f"{db}: " + ("; ".join(f"{n} [{icon}]: {p}" for n, icon, p in tags) or "(none)"))
        untagged = q(dsns[db], UNTAGGED_PHRASES)[0][0]
        if untagged:
            say(f"{' ' * len(db)}  phrases without a tag: {untagged}")
    return {db: q(dsns[db], SPEECH_CONTENT)[0][0] for db in dbs}


def build(server: PgServer) -> dict[str, str]:
    dsns = stage.callrec_databases(server, ["rec1", "rec2", REPLAY_DB])
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
        os.mkfifo(MOUNTS[rec] / "calls" / "odd" / f"{rec}-fifo.wav")
    seed_speech_tags(dsns[REPLAY_DB], dsns["rec1"])
    try:  # CallREC's own schema already refuses a path that is not absolute and normalised
        with psycopg.connect(dsns["rec1"]) as conn:
            conn.execute("SELECT '/calls/../../etc/passwd'::callrec.localabspath")
        refused = "accepted (!)"
    except psycopg.errors.CheckViolation as exc:
        refused = f"refused ({str(exc).splitlines()[0]})"
    nfiles = {rec: sum(1 for p in MOUNTS[rec].rglob("*.wav") if p.is_file() and not p.is_symlink())
              for rec in MOUNTS}
    for rec, calls in per_rec.items():
        say(f"{rec}: {len(calls)} couples, {nfiles[rec]} WAV files below {MOUNTS[rec]}")
    say(f"duplicated sids (on both recorders): {len(d1)}  "
        f"({', '.join(f'{k}: {v}' for k, v in DUP_KINDS.items())})")
    say("broken calls per recorder: missing file, a FIFO, size mismatch, symlink to /etc/hostname")
    say(f"cfpath '/calls/../../etc/passwd' on a recorder: {refused}")
    say(f"speech tags: {len(MASTER_TAGS)} on the replay database (the master); rec1 holds an old "
        f"copy ({', '.join(STALE_TAGS)}), rec2 none")
    return dsns


def write_demo_config(dsns: dict[str, str]) -> None:
    write_config(CONFIG, stage.config(
        synchro={"sleep_period": 10, "calls_per_period": 50,
                 "only_finished": False,   # so the DECODED copies are candidates too
                 "only_processed": True, "mark_erroneous": True, "max_attempts": 2,
                 "backoff_base": 1, "verify": "size"},
        target_dsn=dsns[REPLAY_DB], target_path=TARGET_PATHS[0], watermark=98,
        additional_paths=[{"path": str(TARGET_PATHS[1]), "priority": 0, "balance": 1, "watermark": 98}],
        sources=[stage.source(rec, dsns[rec], MOUNTS[rec], group=f"g-{rec}", copy_files=True)
                 for rec in MOUNTS],
        # the daemon phase serves the monitor on a free loopback port
        monitor=stage.monitor_section(f"127.0.0.1:{free_port()}", DEMO / "jwt.secret",
                                      {DEMO_USER: DEMO_PASSWORD}),
        log_format="console"))


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
    # a SQL_ASCII database hands its bytes over unconverted: read the Latin-1 recorder as Latin-1
    extra = {"client_encoding": "LATIN1"} if dsn == LATIN_DSN.get("dsn") else {}
    with psycopg.connect(dsn, autocommit=True, **extra) as conn:
        return conn.execute(sql, params or None).fetchall()


def execute(dsn: str, sql: str, *params) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, params or None)


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
    dbs = [REPLAY_DB, *MOUNTS]
    digest = show_speech_tags(dsns, dbs)
    same = len(set(digest.values())) == 1
    say(f"identical on the replay database and both recorders (tags, phrases, links; ids "
        f"aside): {same}  (md5 {digest[REPLAY_DB]})")
    if not same:
        problems.append(f"speech tags differ: {digest}")
    vt = q(replay, """SELECT c.sid, p.phrase_text, v.from_time, v.to_time, v.confidence, v.channel
                        FROM callrec.voice_tags v JOIN callrec.couples c ON c.id = v.cplid
                        JOIN callrec.speech_phrases p USING (phraseid)
                       WHERE c.sid IN ('rec1-0000', 'dup-state-0') ORDER BY c.sid, v.from_time""")
    say("voice tags on the replay database (mapped to its phrases by text), e.g.:")
    for sid, phrase, t0, t1, conf, channel in vt:
        say(f"    {sid:<12} {phrase!r:<26} {t0:>6}-{t1:<6} ms  confidence {conf}  channel {channel}")
    (nvt,), = q(replay, "SELECT count(*) FROM callrec.voice_tags")
    say(f"    ({nvt} voice tags in all)")
    if {p for s_, p, *_ in vt if s_ == "dup-state-0"} != {"good morning", "not happy"}:
        problems.append(f"voice tags of dup-state-0 are not the union of both recorders': {vt}")

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


# --- scenes on the real CallREC schema --------------------------------------------

def edit_config(**synchro) -> dict:
    raw = read_config(CONFIG)
    raw["synchro"].update(synchro)
    write_config(CONFIG, raw)
    return raw


def sha256(path: str | bytes | Path) -> str:
    with open(path if isinstance(path, bytes) else os.fsencode(str(path)), "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def target_files(replay: str, sid: str) -> list[tuple]:
    """(cftype, cfsize, cfpath, sha256 of the file) of the replay couple ``sid``."""
    rows = q(replay, "SELECT f.cftype, f.cfsize, f.cfpath FROM callrec.cfiles f JOIN callrec.couples c"
                     " ON c.id = f.cplid WHERE c.sid = %s ORDER BY f.cfpath", sid)
    return [(t, size, path, sha256(path) if Path(path).exists() else None) for t, size, path in rows]


def scene_protected(dsns: dict[str, str]) -> list[str]:
    """A protected replay couple is never replaced, even by a better copy."""
    problems = []
    replay, sid = dsns[REPLAY_DB], "protected-0"
    say("rec1 records a call (one file); it reaches the replay server:")
    recorders.add_calls(dsns["rec1"], MOUNTS["rec1"], [CallSpec(
        sid=sid, start=ts(40), length=20, files=[wav(sid, 0, 1.0)], description="rec1's copy",
        extdata=[("recorded_by", "rec1")])])
    synchrod("once", "--until-idle", "--source", "rec1")
    execute(replay, "UPDATE callrec.couples SET protected = true WHERE sid = %s", sid)
    say(f"a supervisor protects it on the replay server: UPDATE callrec.couples SET protected = true "
        f"WHERE sid = '{sid}'")
    try:
        execute(replay, "DELETE FROM callrec.cfiles WHERE cplid ="
                        " (SELECT id FROM callrec.couples WHERE sid = %s)", sid)
        problems.append("CallREC's protection trigger let a protected couple's files be deleted")
    except psycopg.errors.RaiseException as exc:
        say(f"    CallREC's trigger now refuses to delete its files: {str(exc).splitlines()[0]}")
    before = target_files(replay, sid)
    say("then rec2 delivers a better copy of the same sid (two files, NO_PROBLEM, FINISHED), "
        "not protected:")
    recorders.add_calls(dsns["rec2"], MOUNTS["rec2"], [CallSpec(
        sid=sid, start=ts(40), length=20, files=[wav(sid, 0, 1.0), wav(sid, 1, 1.0)],
        description="rec2's better copy", extdata=[("recorded_by", "rec2")], protected=False)])
    synchrod("once", "--until-idle", "--source", "rec2")
    after = target_files(replay, sid)
    (mark,), = q(dsns["rec2"], "SELECT synchronized FROM callrec.couples WHERE sid = %s", sid)
    (protected, description, cfcnt), = q(replay, "SELECT protected, description, cfcnt FROM callrec.couples"
                                                 " WHERE sid = %s", sid)
    ext = q(replay, "SELECT string_agg(e.key || '=' || e.value, ' ' ORDER BY e.value) FROM callrec.couple_extdata e"
                    " JOIN callrec.couples c ON c.id = e.cplid WHERE c.sid = %s", sid)[0][0]
    say(f"rec2 mark: {mark}   (N: the target already holds this call, protected)")
    say(f"replay couple: protected={protected}, description {description!r}, cfcnt={cfcnt}, "
        f"extdata (unioned): {ext}")
    for (t, size, path, digest), was in zip(after, before):
        say(f"    {t} {size} B {os.path.relpath(path, REPO)} sha256 {(digest or 'missing')[:16]}… "
            f"{'unchanged' if (t, size, path, digest) == was else 'CHANGED'}")
    if mark != "N":
        problems.append(f"protected: rec2's better copy was marked {mark}, not N")
    if after != before:
        problems.append("protected: the replay couple's media changed")
    if protected is not True or description != "rec1's copy":
        problems.append(f"protected: the couple was updated (protected={protected}, {description!r})")
    if ext != "recorded_by=rec1 recorded_by=rec2":
        problems.append(f"protected: extdata not unioned: {ext}")
    return problems


def scene_latin1(server: PgServer, dsns: dict[str, str]) -> list[str]:
    """An old installation: a SQL_ASCII recorder database holding Latin-1 bytes."""
    problems = []
    dsns[LATIN_REC] = LATIN_DSN["dsn"] = stage.callrec_template(server, LATIN_REC, encoding="SQL_ASCII")
    LATIN_MOUNT.mkdir(parents=True, exist_ok=True)
    (enc,), = q(dsns[LATIN_REC], "SHOW server_encoding")
    sid, cfpath = "latin-0", "/calls/José/Müller.wav"
    recorders.add_calls(dsns[LATIN_REC], LATIN_MOUNT, [CallSpec(
        sid=sid, start=ts(35), length=15, files=[FileSpec("AUDIO", cfpath)],
        description="Rückruf für José Müller", extdata=[("agent", "Müller")],
        columns={"callingpartyname": "José", "calledpartyname": "Müller"})], client_encoding="LATIN1")
    # the bytes as stored
    (name_hex, path_bytes), = q(dsns[LATIN_REC], "SELECT encode(convert_to(c.callingpartyname, 'SQL_ASCII'),"
                                " 'hex'), convert_to(f.cfpath, 'SQL_ASCII') FROM callrec.couples c"
                                " JOIN callrec.cfiles f ON f.cplid = c.id")
    on_disk = [os.fsencode(str(p.relative_to(LATIN_MOUNT))) for p in LATIN_MOUNT.rglob("*.wav")]
    say(f"{LATIN_REC}: a new recorder database, encoding {enc}, text written as Latin-1 bytes:")
    say(f"    couples.callingpartyname bytes {name_hex}  (J o s 0xE9: 'José' in Latin-1, not UTF-8)")
    say(f"    cfiles.cfpath bytes {bytes(path_bytes)!r}")
    say(f"    the file on its mount (the same bytes): {on_disk[0]!r}")
    raw = read_config(CONFIG)
    raw["sources"].append(stage.source(LATIN_REC, dsns[LATIN_REC], LATIN_MOUNT, group=f"g-{LATIN_REC}",
                                       copy_files=True, text_encoding="latin1"))
    write_config(CONFIG, raw)
    say(f"configured as source {LATIN_REC} with text_encoding: latin1")
    synchrod("once", "--until-idle", "--source", LATIN_REC)
    replay = dsns[REPLAY_DB]
    rows = q(replay, "SELECT c.callingpartyname, c.calledpartyname, c.description,"
                     " encode(convert_to(c.callingpartyname, 'UTF8'), 'hex'), f.cfpath"
                     " FROM callrec.couples c JOIN callrec.cfiles f ON f.cplid = c.id WHERE c.sid = %s", sid)
    ext = q(replay, "SELECT e.value FROM callrec.couple_extdata e JOIN callrec.couples c ON c.id = e.cplid"
                    " WHERE c.sid = %s", sid)
    (mark,), = q(dsns[LATIN_REC], "SELECT synchronized FROM callrec.couples WHERE sid = %s", sid)
    say(f"{LATIN_REC} mark: {mark}")
    if not rows:
        return problems + [f"latin1: {sid} did not reach the replay database"]
    (calling, called, description, hexed, target_path), = rows
    say(f"on the replay database (UTF8): callingpartyname {calling!r} (bytes {hexed}),")
    say(f"    calledpartyname {called!r}, description {description!r}, "
        f"extdata agent={ext[0][0] if ext else None!r}")
    same = sha256(target_path) == sha256(os.fsencode(str(LATIN_MOUNT)) + b"/" + on_disk[0])
    say(f"    its file: {os.path.relpath(target_path, REPO)}  (same bytes as the recorder's: {same})")
    say("its speech tags, made identical to the replay database's:")
    digest = show_speech_tags(dsns, [LATIN_REC])
    if mark != "S":
        problems.append(f"latin1: marked {mark}")
    if (calling, called, description) != ("José", "Müller", "Rückruf für José Müller") \
            or [e for e, in ext] != ["Müller"]:
        problems.append(f"latin1: text arrived as {calling!r}, {called!r}, {description!r}, {ext}")
    if not same:
        problems.append("latin1: the copied file differs from the recorder's")
    if digest[LATIN_REC] != q(replay, SPEECH_CONTENT)[0][0]:
        problems.append("latin1: the recorder's speech tags differ from the replay database's")
    return problems


def scene_restored(dsns: dict[str, str], rec: str = "rec2") -> list[str]:
    """A recorder restored from a backup hands out the same ids again."""
    problems = []
    replay, db, mount = dsns[REPLAY_DB], dsns[rec], MOUNTS[rec]
    edit_config(backoff_base=3600)  # so a failed call's back-off is still running afterwards
    say(f"backoff_base 3600 s for this scene; {rec} records three calls (two couples of one call, "
        "and one whose file is missing):")
    lost = ["lost-a", "lost-b", "lost-c"]
    recorders.add_calls(db, mount, [
        CallSpec(sid="lost-a", start=ts(25), files=[wav("lost-a", 0)], call_key="lost", cplcnt=2),
        CallSpec(sid="lost-b", start=ts(24.5), files=[wav("lost-b", 0)], call_key="lost", cplcnt=2),
        CallSpec(sid="lost-c", start=ts(24), files=[FileSpec("AUDIO", "/calls/lost/lost-c.wav", size=8044,
                                                             content="none")])])
    synchrod("once", "--until-idle", "--source", rec)

    def table(sids):
        src = {sid: (cid, callid, mark) for sid, cid, callid, mark in q(
            db, "SELECT sid, id, callid, synchronized FROM callrec.couples WHERE sid = ANY(%s)", sids)}
        tgt = {sid: (callid, n) for sid, callid, n in q(
            replay, "SELECT c.sid, c.callid, (SELECT count(*) FROM callrec.couples o WHERE o.callid = c.callid)"
                    " FROM callrec.couples c WHERE c.sid = ANY(%s)", sids)}
        att = {sid: (n, reason, due) for sid, n, reason, due in q(
            replay, "SELECT sid, attempts, last_reason, next_try_at > now() FROM synchrod.attempts"
                    " WHERE source = %s AND sid = ANY(%s)", rec, sids)}
        say(f"    {'sid':<9} {'couple id':>9} {'call id':>7} {'mark':<4}  replay call (couples)  attempts")
        for sid in sids:
            cid, callid, mark = src.get(sid, (None, None, None))
            tc = tgt.get(sid)
            a = att.get(sid)
            say(f"    {sid:<9} {cid if cid is not None else '-':>9} {callid if callid is not None else '-':>7} "
                f"{mark or '-':<4}  {f'{tc[0]} ({tc[1]})' if tc else '-':<21}  "
                f"{f'{a[0]} ({a[1]}, in back-off)' if a and a[2] else (f'{a[0]} ({a[1]})' if a else '-')}")
        return src, tgt, att

    before_src, before_tgt, before_att = table(lost)
    first_couple = min(c for c, _, _ in before_src.values())
    first_call = min(k for _, k, _ in before_src.values())
    say(f"{rec} is restored from a backup taken before these were recorded: their rows are gone and "
        f"the sequences are back (seq_couples -> {first_couple}, seq_calls -> {first_call})")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM callrec.couples WHERE sid = ANY(%s)", (lost,))
        conn.execute("DELETE FROM callrec.calls k WHERE NOT EXISTS"
                     " (SELECT 1 FROM callrec.couples c WHERE c.callid = k.id)")
        conn.execute("SELECT setval('callrec.seq_couples', %s, false), setval('callrec.seq_calls', %s, false)",
                     (first_couple, first_call))
    fresh = ["new-a", "new-b", "new-c"]
    recorders.add_calls(db, mount, [CallSpec(sid=sid, start=ts(20 - i), files=[wav(sid, 0)])
                                    for i, sid in enumerate(fresh)])
    say(f"{rec} records three new calls, which get the lost calls' ids again; then:")
    synchrod("once", "--until-idle", "--source", rec)
    after_src, after_tgt, after_att = table(lost + fresh)
    edit_config(backoff_base=1)

    reused = [after_src[n][0] for n in fresh] == [before_src[o][0] for o in lost]
    say(f"same couple ids as the lost calls: {reused}; each new call is its own replay call: "
        f"{all(after_tgt.get(n, (None, 0))[1] == 1 for n in fresh)}; the lost calls stay on the "
        f"replay server untouched: {all(after_tgt.get(o) == before_tgt.get(o) for o in lost[:2])}")
    if not reused:
        problems.append("restored: the new calls did not reuse the lost ids (the scene shows nothing)")
    for n in fresh:
        if after_src[n][2] != "S":
            problems.append(f"restored: {n} marked {after_src[n][2]}, not S")
        if n not in after_tgt or after_tgt[n][1] != 1:
            problems.append(f"restored: {n} is not its own replay call: {after_tgt.get(n)}")
        if n in after_att:
            problems.append(f"restored: {n} inherited an attempt record {after_att[n]}")
    if any(after_tgt.get(n, (None,))[0] == before_tgt["lost-a"][0] for n in fresh):
        problems.append("restored: a new call joined the lost calls' replay call")
    if [after_tgt.get(o) for o in lost[:2]] != [before_tgt.get(o) for o in lost[:2]]:
        problems.append("restored: the lost calls changed on the replay server")
    return problems


def main() -> int:
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
