"""The demo's scenes on the real CallREC schema, each run against the
databases the passes left and returning the problems it found: a protected
call a better copy must not replace, a third recorder that is an old
SQL_ASCII database holding Latin-1 text, and a recorder restored from a
backup that hands out the same ids again.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psycopg

from demo_data import SPEECH_CONTENT, show_speech_tags, ts, wav
from demo_env import (CONFIG, LATIN_DSN, LATIN_MOUNT, LATIN_REC, MOUNTS, REPLAY_DB, REPO,
                      execute, q, synchrod)
from synchrod.testing import recorders, stage
from synchrod.testing.pgserver import PgServer
from synchrod.testing.recorders import CallSpec, FileSpec
from synchrod.testing.stage import read_config, say, write_config


def edit_config(**synchro) -> dict:
    """Updates CONFIG's synchro section with ``synchro``; returns the whole configuration as
    written."""
    raw = read_config(CONFIG)
    raw["synchro"].update(synchro)
    write_config(CONFIG, raw)
    return raw


def sha256(path: str | bytes | Path) -> str:
    """The SHA-256 hex digest of the file at ``path`` (bytes: the path as is)."""
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
