"""Chaos of automatic pruning (SPEC §9): a replay target on a real tmpfs
holds a few hundred calls the real daemon synchronized, most of them older
than ``prune_after_days`` (some protected), the filesystem filled to
critical; the daemon (`synchrod run`, recording priority, small
``max_prune_calls``, ``check_interval`` 1) prunes them in many rounds while
a second recorder offers copies of the same calls, and it is SIGKILLed at
seeded random moments (every other kill right between a batch's commit and
its unlinks) and started again, until everything prunable is pruned.

Afterwards: every cfiles row's file exists, every file below the target
path is referenced, each removed call is audited once and tombstoned,
protected calls lost only their RECD files (audited once, not tombstoned,
as CallREC's trigger allows) and young calls nothing, no pruned call came
back, and the journal is empty. The kill moments come from ``random.Random(seed)``
(``SYNCHROD_STORAGE_CHAOS_SEED`` replays one).

Also here: two pruners racing for the same calls (an operator's ``synchrod
purge`` beside the daemon's own rounds) must remove each call once.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from _sync_helpers import tmpfs
from conftest import NOW, REPO, SYNCHROD
from test_storage_levels import fill_to
from synchrod.core.naming import TMP_PREFIX
from synchrod.fs.targets import fs_usage
from synchrod.testing.recorders import CallSpec, FileSpec

SEED = int(os.environ.get("SYNCHROD_STORAGE_CHAOS_SEED", "20261205"))
KILLS = 6
DELAY = (0.4, 2.5)          # seconds after a start: start-up (~0.7 s), then pruning rounds
FINAL_TIMEOUT = 120         # seconds for the last, uninterrupted run
N_OLD, N_YOUNG = 250, 50    # rec1's calls; old ones start 40+ days ago
PROTECTED_EVERY = 10        # every tenth old call is protected
PRUNE_AFTER_DAYS = 30
N_COPIES, N_YOUNG_COPIES, N_REC2_OWN = 40, 10, 30


def _wav(sid: str, n: int, seconds: float, side: str) -> FileSpec:
    return FileSpec("AUDIO", f"/{side}/{sid}/{n}.wav", seconds=seconds)


def _recd(sid: str) -> FileSpec:
    return FileSpec("RECD", f"/r1/{sid}/screen.recd", size=12 << 10, content="bytes")


def _population(rng: random.Random) -> tuple[list[CallSpec], list[CallSpec], dict[str, set[str]]]:
    """rec1's calls, rec2's (copies of some of rec1's, worse or better, and
    young calls of its own) and the sids by kind: prunable, protected (with_recd: those
    with a RECD file too), young, rec2."""
    rec1, rec2 = [], []
    kinds: dict[str, set[str]] = {"prunable": set(), "protected": set(), "with_recd": set(),
                                  "young": set(), "rec2": set()}
    nfiles: dict[str, int] = {}
    for i in range(N_OLD):
        sid, protected = f"o{i:03d}", i % PROTECTED_EVERY == 3
        start = NOW - dt.timedelta(days=40, minutes=rng.randrange(0, 200 * 24 * 60))
        nfiles[sid] = 1 + (i % 4 == 0)
        files = [_wav(sid, n, 1, "r1") for n in range(nfiles[sid])]
        if protected and i % (2 * PROTECTED_EVERY) == 3:   # half the protected have a screen too
            files.append(_recd(sid))
            kinds["with_recd"].add(sid)
        rec1.append(CallSpec(sid, start, files=files, protected=protected or None))
        kinds["protected" if protected else "prunable"].add(sid)
    for i in range(N_YOUNG):
        sid = f"y{i:03d}"
        start = NOW - dt.timedelta(minutes=rng.randrange(60, 20 * 24 * 60))
        nfiles[sid] = 1 + (i % 4 == 0)
        rec1.append(CallSpec(sid, start, files=[_wav(sid, n, 1, "r1") for n in range(nfiles[sid])]))
        kinds["young"].add(sid)
    starts = {c.sid: c.start for c in rec1}
    old_copies = rng.sample(sorted(kinds["prunable"] | kinds["protected"]), N_COPIES)
    for j, sid in enumerate(old_copies):
        # half better (one file more: replaces an unprotected copy), half worse (merged)
        files = ([_wav(sid, n, 1, "r2") for n in range(nfiles[sid] + 1)] if j % 2 == 0 else
                 [_wav(sid, n, 0.25, "r2") for n in range(nfiles[sid])])
        rec2.append(CallSpec(sid, starts[sid], files=files, extdata=[("copy", "rec2")]))
    for sid in rng.sample(sorted(kinds["young"]), N_YOUNG_COPIES):   # worse: merged, media kept
        rec2.append(CallSpec(sid, starts[sid], extdata=[("copy", "rec2")],
                             files=[_wav(sid, n, 0.25, "r2") for n in range(nfiles[sid])]))
    for i in range(N_REC2_OWN):
        sid = f"n{i:03d}"
        rec2.append(CallSpec(sid, NOW - dt.timedelta(minutes=rng.randrange(30, 600)),
                             files=[_wav(sid, 0, 0.5, "r2")]))
        kinds["rec2"].add(sid)
    rng.shuffle(rec1)
    rng.shuffle(rec2)
    return rec1, rec2, kinds


def _media(env) -> dict[str, list[tuple[str, str, str]]]:
    """sid -> sorted (cftype, cfpath, sha256 of the file) of its target files."""
    out: dict[str, list] = {}
    for sid, cftype, path in env.target("SELECT c.sid, f.cftype, f.cfpath FROM callrec.cfiles f"
                                        " JOIN callrec.couples c ON c.id = f.cplid"):
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if os.path.exists(path) else None
        out.setdefault(sid, []).append((cftype, path, digest))
    return {sid: sorted(v) for sid, v in out.items()}


def _files_below(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file()}


def _start(env, log_dir: Path, k: int) -> tuple[subprocess.Popen, Path]:
    out = log_dir / f"run{k:02d}.log"
    env_vars = {k_: v for k_, v in os.environ.items()
                if not k_.startswith(("SYNCHROD_FAULT", "NOTIFY_", "WATCHDOG_"))}
    with open(out, "w") as fh:
        proc = subprocess.Popen(SYNCHROD + ["run", "-c", str(env.config_path)], cwd=REPO,
                                env=env_vars, stdout=fh, stderr=subprocess.STDOUT)
    return proc, out


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _kill_between_commit_and_unlink(env, proc: subprocess.Popen, limit: float) -> bool:
    """SIGKILLs the daemon while files of a committed batch wait in
    pending_unlink: holding that table's lock, this sees the committed
    schedule while the daemon waits for the lock, about to read it back
    before unlinking the files (or to forget it after unlinking them). False
    if no batch committed within ``limit`` seconds (the daemon is then left
    running)."""
    deadline = time.monotonic() + limit
    with psycopg.connect(env.target_dsn(), autocommit=True) as conn:
        # what an earlier kill left there is not this run's batch
        stale = [p for p, in conn.execute("SELECT path FROM synchrod.pending_unlink")]
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL lock_timeout = '2s'")
                    conn.execute("LOCK TABLE synchrod.pending_unlink IN ACCESS EXCLUSIVE MODE")
                    if conn.execute("SELECT EXISTS (SELECT 1 FROM synchrod.pending_unlink"
                                    " WHERE path <> ALL(%s))", (stale,)).fetchone()[0]:
                        _kill(proc)
                        return True
            except psycopg.errors.LockNotAvailable:
                pass
            time.sleep(0.003)
    return False


def _snapshot(env, target: Path) -> dict:
    """What a kill left behind: calls removed, audit rows, files scheduled or
    journaled, files on disk, unreferenced ones."""
    referenced = {p for p, in env.target("SELECT cfpath FROM callrec.cfiles")}
    on_disk = _files_below(target)
    return {
        "removed": env.target("SELECT count(*) FROM synchrod.deletions")[0][0],
        "pending_unlink": env.target("SELECT count(*) FROM synchrod.pending_unlink")[0][0],
        "pending_files": env.target("SELECT count(*) FROM synchrod.pending_files")[0][0],
        "files": len(on_disk), "unreferenced": len(on_disk - referenced),
        "missing": len({p for p in referenced if p.startswith(str(target))} - on_disk),
    }


def _suspicious(log_dir: Path) -> list[str]:
    lines = []
    for path in sorted(log_dir.glob("run*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or "Traceback" in line or "storage_measure_failed" in line:
                lines.append(f"{path.name}: {line[:300]}")
    return lines


def _left(env, kinds) -> dict:
    """What keeps the last run going: prunable calls not yet removed, RECD files
    of protected calls, rec2 calls not yet marked, the journal."""
    live = {sid for sid, d in env.target("SELECT sid, deleted FROM callrec.couples") if d != "D"}
    return {"prunable": len(kinds["prunable"] & live), "e.g.": sorted(kinds["prunable"] & live)[:5],
            "recd": env.target("SELECT count(*) FROM callrec.cfiles WHERE cftype = 'RECD'")[0][0],
            "unmarked": [s for s, m in env.marks(1).items() if m is None],
            "journal": env.target("SELECT (SELECT count(*) FROM synchrod.pending_unlink)"
                                  " + (SELECT count(*) FROM synchrod.pending_files)")[0][0]}


@pytest.mark.slow
@pytest.mark.parametrize("prune_metadata", [False, True], ids=["media", "metadata"])
def test_pruning_survives_sigkill(env, tmp_path, prune_metadata):
    rng = random.Random(SEED + prune_metadata)
    tag = (f"seed={SEED} (replay with SYNCHROD_STORAGE_CHAOS_SEED={SEED}), "
           f"prune_metadata={prune_metadata}")
    t0 = time.monotonic()
    with tmpfs(tmp_path / "fs", "16m") as fs:
        target = fs / "calls"          # the filler lives beside it, on the same filesystem
        target.mkdir()
        env.write_config(target={**env.raw["target"], "default_path": str(target),
                                 "default_watermark": 100},
                         synchro={**env.raw["synchro"], "sleep_period": 1, "calls_per_period": 50})
        rec1, rec2, kinds = _population(rng)
        env.add_calls(0, rec1)
        env.add_calls(1, rec2)
        env.once("--source", "rec1", "--until-idle", check_rc=0)   # the real daemon's copies
        assert set(env.marks(0).values()) == {"S"}
        staged = _media(env)
        assert all(p.startswith(str(target)) for v in staged.values() for _, p, _ in v)
        assert {s for s, v in staged.items() for t, _, _ in v if t == "RECD"} == kinds["with_recd"]
        fill_to(fs, 91)                 # critical: its oldest calls go first
        env.write_config(synchro={**env.raw["synchro"], "calls_per_period": 10},
                         storage={"enabled": True, "mode": "recording_priority",
                                  "prune_after_days": PRUNE_AFTER_DAYS, "check_interval": 1,
                                  "max_prune_calls": 20, "prune_metadata": prune_metadata},
                         logging={"level": "info", "format": "json"})
        t_staged = time.monotonic()

        log_dir = tmp_path / "logs"
        log_dir.mkdir()
        history, before = [], _snapshot(env, target)
        for k in range(KILLS):
            proc, out = _start(env, log_dir, k)
            try:
                targeted = k % 2 == 1 and _kill_between_commit_and_unlink(env, proc, DELAY[1] + 3)
                if not targeted:
                    time.sleep(rng.uniform(*DELAY))
                    assert proc.poll() is None, (f"{tag}: run {k} exited {proc.returncode}\n"
                                                 f"{out.read_text()[-3000:]}")
                    _kill(proc)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == -signal.SIGKILL, (tag, k, proc.returncode)
            after = _snapshot(env, target)
            history.append((k, targeted, after["removed"] > before["removed"], after))
            before = after
        t_kills = time.monotonic()

        # the last run is left alone until everything is pruned and repaired, then stopped
        proc, out = _start(env, log_dir, KILLS)
        try:
            deadline = time.monotonic() + FINAL_TIMEOUT
            while True:
                left = _left(env, kinds)
                if not left["prunable"] and not left["recd"] and not left["unmarked"] \
                        and not left["journal"] \
                        and '"event": "started"' in out.read_text():
                    break
                assert proc.poll() is None, f"{tag}: final run died\n{out.read_text()[-3000:]}"
                assert time.monotonic() < deadline, (tag, left, _suspicious(log_dir)[-10:])
                time.sleep(0.3)
            time.sleep(1.5)     # one more cycle of each source (its repair) and pruning round
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        t_done = time.monotonic()
        report = "\n".join(f"kill {k}: targeted={t} progressed={p} {s}" for k, t, p, s in history)
        context = f"{tag}\n{report}\nsuspicious:\n" + "\n".join(_suspicious(log_dir)[-20:])
        assert proc.returncode == 0, f"{context}\nSIGTERM exit {proc.returncode}"
        assert sum(p for _, _, p, _ in history) >= 2, context   # kills landed mid-work
        assert any(t for _, t, _, _ in history), context   # one at least between commit and unlinks
        _check_end_state(env, target, kinds, staged, prune_metadata, context)
        use = fs_usage(str(fs)).ratio() * 100
        assert use < 87, (use, context)       # below critical's exit
    print(f"\nstorage chaos {tag}: staging {t_staged - t0:.1f}s, kills {t_kills - t_staged:.1f}s, "
          f"final run {t_done - t_kills:.1f}s\n{report}")


def _check_end_state(env, target: Path, kinds: dict, staged: dict, metadata: bool,
                     context: str) -> None:
    """The invariants of the end state (see the module docstring)."""
    # files: every row's file exists, every file is some row's, no temporary left
    referenced = {p for p, in env.target("SELECT cfpath FROM callrec.cfiles")}
    on_disk = _files_below(target)
    assert not [p for p in on_disk if Path(p).name.startswith(TMP_PREFIX)], context
    assert referenced <= on_disk, (sorted(referenced - on_disk)[:5], context)
    assert on_disk <= referenced, (sorted(on_disk - referenced)[:5], context)
    assert env.target("SELECT count(*) FROM synchrod.pending_unlink")[0][0] == 0, context
    assert env.target("SELECT count(*) FROM synchrod.pending_files")[0][0] == 0, context

    couples = {sid: (d, p) for sid, d, p in env.target(
        "SELECT sid, deleted, coalesce(protected, false) FROM callrec.couples")}
    removed = {s for s in set().union(*kinds.values()) if s not in couples or couples[s][0] == "D"}
    # exactly the prunable calls went, each audited once and tombstoned; protected
    # calls with a screen recording lost that file only (audited once, not tombstoned)
    assert removed == kinds["prunable"], (sorted(removed ^ kinds["prunable"])[:10], context)
    audit = env.target("SELECT sid, count(*), min(files), array_agg(reason), bool_and(metadata),"
                       " array_agg(array_to_string(cftypes, ',')) FROM synchrod.deletions GROUP BY sid")
    twice = [row for row in audit if row[1] != 1]
    assert not twice, (twice[:10], context)
    whole = {row[0]: row for row in audit if row[5] == [None]}
    recd = {row[0]: row for row in audit if row[5] == ["RECD"]}
    assert set(whole) == removed and set(recd) == kinds["with_recd"], (
        sorted(set(whole) ^ removed)[:10], sorted(set(recd) ^ kinds["with_recd"])[:10], context)
    assert all(row[2] >= 1 and row[4] is metadata for row in whole.values()), (audit[:5], context)
    assert all(row[2] == 1 and row[4] is False for row in recd.values()), (recd, context)
    reasons = {r for row in audit for r in row[3]}
    assert "critical" in reasons and reasons <= {"critical", "age"}, (reasons, context)
    tombstoned = {s for s, in env.target("SELECT sid FROM synchrod.tombstones")}
    assert tombstoned == removed, (sorted(tombstoned ^ removed)[:10], context)
    if metadata:
        assert not removed & set(couples), context
    else:
        assert all(couples[s][0] == "D" for s in removed), context
    assert env.target("SELECT count(*) FROM callrec.cfiles f JOIN callrec.couples c ON c.id = f.cplid"
                      " WHERE c.deleted = 'D'")[0][0] == 0, context

    # protected and young calls: their very files (but a protected call's RECD),
    # unchanged: rec2's copies of them were only merged
    media = _media(env)
    for sid in kinds["protected"] | kinds["young"]:
        kept = [f for f in staged[sid] if f[0] != "RECD"]
        assert couples[sid][0] is None and media.get(sid) == kept, (sid, media.get(sid), kept, context)
    assert all(couples[s][1] for s in kinds["protected"]), context
    for sid in kinds["rec2"]:
        assert couples[sid][0] is None and media.get(sid), (sid, context)
    # every call of both recorders marked, none in error
    m1, m2 = env.marks(0), env.marks(1)
    assert set(m1.values()) == {"S"}, context
    assert set(m2.values()) <= {"S", "N"}, (sorted(set(m2.values()), key=str), context)
    assert all(m2[s] == "N" for s in kinds["protected"] | kinds["young"] if s in m2), context
    assert all(m2[s] == "S" for s in kinds["rec2"]), context


# --- two pruners racing --------------------------------------------------------------------

def test_two_pruners_racing_remove_each_call_once(env):
    """Two pruners (say `synchrod purge` by an operator and the daemon's own
    round) list the same old calls before either has committed: the one that
    locks them second must find them pruned and leave them, not audit,
    tombstone and report them (and their events) a second time."""
    from synchrod.pg.connect import connect
    from synchrod.storage.purge import purge

    old = [CallSpec(f"race{i}", NOW - dt.timedelta(days=5, minutes=i),
                    files=[FileSpec("AUDIO", f"/race/{i}.wav", seconds=0.5)]) for i in range(3)]
    env.add_calls(0, old)
    env.once("--source", "rec1", "--until-idle", check_rc=0)
    sids = sorted(c.sid for c in old)
    before = NOW - dt.timedelta(days=1)

    async def race():
        holder, a, b = [await connect(env.target_dsn()) for _ in range(3)]
        try:
            hold = holder.transaction()
            await hold.start()     # a third party holds the rows: both pruners list, then wait
            await holder.execute("SELECT 1 FROM callrec.couples WHERE sid = ANY($1::text[]) FOR UPDATE",
                                 sids)
            kw = dict(before=before, owned_roots=[str(env.target_path)])
            ta = asyncio.create_task(purge(a, requested_by="A", **kw))
            tb = asyncio.create_task(purge(b, requested_by="B", **kw))
            pids = [a.get_server_pid(), b.get_server_pid()]
            for _ in range(500):
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
                    " AND wait_event_type = 'Lock'", pids)
                if waiting == 2:
                    break
                await asyncio.sleep(0.01)
            assert waiting == 2, "both pruners should wait for the rows"
            await hold.rollback()
            return await asyncio.gather(ta, tb)
        finally:
            for c in (holder, a, b):
                await c.close()

    ra, rb = asyncio.run(race())
    audit = env.target("SELECT sid, requested_by, files FROM synchrod.deletions ORDER BY id")
    assert sorted(s for s, _, _ in audit) == sids, audit   # one audit row per call
    reported = sorted(line.sid for r in (ra, rb) for line in r.removed)
    assert reported == sids, reported                       # and one report (event) per call
