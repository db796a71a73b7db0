"""What the demo records: the sample calls (good ones, transfers, sids
recorded by both recorders in different quality, broken ones), the speech
tags the replay database is the master of (and rec1's drifted copy) with
the queries that show and compare them, the databases and media built from
them, and the configuration synchrod runs the demo with.
"""
from __future__ import annotations

import datetime as dt
import os

import psycopg

from demo_env import (CONFIG, DEMO, DEMO_PASSWORD, DEMO_USER, MOUNTS, NOW, REPLAY_DB,
                      TARGET_PATHS, q)
from synchrod.testing import recorders, stage
from synchrod.testing.pgserver import PgServer
from synchrod.testing.recorders import CallSpec, FileSpec
from synchrod.testing.stage import free_port, say, write_config


# The same sid on both recorders: (kind, rec1 copy, rec2 copy, expected winner).
DUP_KINDS = {
    "state":   "rec1 DECODED vs rec2 FINISHED",
    "streams": "rec1 one stream (ONLY_ONE_STREAM) vs rec2 two streams (NO_PROBLEM)",
    "files":   "rec1 two files vs rec2 one file, otherwise equal",
    "tie":     "identical copies on both",
}


# --- data ----------------------------------------------------------------------

def ts(minutes_ago: float) -> dt.datetime:
    """The moment ``minutes_ago`` minutes before the demo started (NOW)."""
    return NOW - dt.timedelta(minutes=minutes_ago)


def wav(sid: str, n: int, seconds: float = 1.0) -> FileSpec:
    """The ``n``-th stream of call ``sid``: a WAV file of ``seconds`` below today's /calls
    directory."""
    return FileSpec("AUDIO", f"/calls/{ts(0):%Y%m%d}/{sid}/stream{n}.wav", seconds=seconds)


def good_calls(rec: str, count: int, first_minute: int) -> list[CallSpec]:
    """``count`` well-formed calls of recorder ``rec``, two minutes apart from ``first_minute``
    minutes ago: every third with two files, some with extdata or voice tags, and every 25th
    a transfer (two couples of one call)."""
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
    """``per_kind`` sids of every kind of DUP_KINDS, each recorded by both recorders in the
    qualities the kind names; returns (rec1's copies, rec2's copies)."""
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
    """The four broken calls of recorder ``rec``: a file never written, a FIFO, a size the file
    does not have, a symlink out of the mount (build() puts the FIFO and the symlink in
    place)."""
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
    """The replay database gets MASTER_TAGS (the master's definitions), rec1 the drifted
    STALE_TAGS."""
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
    """Creates the rec1, rec2 and replay databases on ``server`` and the demo's directories,
    records the good, duplicated and broken calls with their media, seeds the speech tags,
    and prints what it built; returns database -> DSN."""
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
    """Writes CONFIG: rec1 and rec2 as copying sources into two target paths, DECODED copies
    candidates too, two attempts with a 1 s back-off, and the monitor on a free loopback
    port."""
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
