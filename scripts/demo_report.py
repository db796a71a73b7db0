"""The demo's report after its two passes: what the databases and the disk
show of the marks, example couples, who won each duplicated sid and why,
the failed calls, the speech tags and the replay directory, with every
difference from what the demo expects listed as a problem.
"""
from __future__ import annotations

import os
import re
import wave
from collections import Counter, defaultdict
from pathlib import Path

from demo_data import DUP_KINDS, show_speech_tags
from demo_env import MOUNTS, REPLAY_DB, REPO, TARGET_PATHS, heading, q
from synchrod.core.naming import TMP_PREFIX
from synchrod.core.quality import quality
from synchrod.testing.stage import say


def human(n: float) -> str:
    """A byte count as B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def report(dsns: dict[str, str]) -> list[str]:
    """Prints what the two passes did, from the databases and the disk: the marks, example
    couples, who won each duplicated sid and why, the failed calls, the speech tags and the
    replay directory; returns the problems found (none when everything is as expected)."""
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
