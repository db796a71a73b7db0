"""Archive export tasks with several daemons, and the pruning of their history
(SPEC §10, §11), against real PostgreSQL, real files and real processes.

- Two real `synchrod run` daemons share one replay database and one
  configuration. The "archive" duty is held by one of them: a ``once`` task at
  "now" and one whose time comes while both run each get exactly one run row,
  run by the holder, every target file archived once (one manifest row, two
  entries, one media file and one sidecar on disk). The holder is then killed
  with SIGKILL: the survivor takes the duty, runs neither slot again, and runs
  a task added afterwards (by a reload on SIGHUP) itself.
- The archive history is pruned with the cycle history, as the daemon's pruner
  does it (``history.prune`` then ``archiveruns.prune`` with
  ``monitor.history_days``): runs started before the retention, and their
  entries, go with the old cycle runs; recent runs and entries stay; the
  manifest (``archive_files``) stays whole, so a run afterwards copies nothing
  again.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import signal
import time
from pathlib import Path

import _daemon
from _daemon import synchrod, wait_until
from _sync_helpers import wav

from synchrod.core.naming import TMP_PREFIX
from synchrod.pg.connect import connect
from synchrod.replay import archiveruns, history
from synchrod.testing.recorders import CallSpec

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

UTC = dt.UTC


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _sync_calls(env) -> list[int]:
    """Three calls (four media files) on two recorders, synchronized to the
    target by a real `synchrod once`; the target's cfile ids."""
    start = _now() - dt.timedelta(hours=2)
    env.add_calls(0, [CallSpec("s1", start, files=[wav("/calls/s1/0.wav")]),
                      CallSpec("s2", start - dt.timedelta(minutes=5),
                               files=[wav("/calls/s2/0.wav"), wav("/calls/s2/1.wav", seconds=2)])])
    env.add_calls(1, [CallSpec("s3", start - dt.timedelta(minutes=9), files=[wav("/calls/s3/0.wav")])])
    assert env.once("--until-idle").returncode == 0
    assert set(env.marks(0).values()) == {"S"} and set(env.marks(1).values()) == {"S"}
    ids = sorted(i for (i,) in env.target("SELECT id FROM callrec.cfiles"))
    assert len(ids) == 4
    return ids


def _task(name: str, dest: Path, at: str) -> dict:
    return {"name": name, "destination": str(dest), "schedule": "once", "at": at,
            "min_age_minutes": 0}


def _runs(env, task: str) -> list[tuple]:
    return env.target("SELECT slot_at, state, daemon, files_ok, files_failed FROM"
                      " synchrod.archive_runs WHERE task = %s ORDER BY id", task)


def _completed(env, task: str):
    """The task's runs once it has some and none is still running, else None."""
    rows = _runs(env, task)
    return rows if rows and all(r[1] != "running" for r in rows) else None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_archived_once(env, dest: Path, task: str, cfile_ids: list[int]) -> None:
    """Every target file archived exactly once by ``task``: one manifest row per
    cfile, two archived entries (media and sidecar) per file over all the
    task's runs, one media file and one sidecar under the task's folder whose
    sha256 is the manifest's, no temporary file left."""
    manifest = env.target("SELECT cfile_id, destination, sha256 FROM synchrod.archive_files"
                          " WHERE task = %s ORDER BY cfile_id", task)
    assert [m[0] for m in manifest] == cfile_ids, manifest
    entries = env.target("SELECT e.kind, e.result, count(*) FROM synchrod.archive_entries e"
                         " JOIN synchrod.archive_runs r ON r.id = e.run_id WHERE r.task = %s"
                         " GROUP BY 1, 2 ORDER BY 1, 2", task)
    assert entries == [("media", "archived", 4), ("sidecar", "archived", 4)], entries
    files = sorted(p for p in (dest / task).rglob("*") if p.is_file())
    assert not [p for p in files if p.name.startswith(TMP_PREFIX)], files
    media = [p for p in files if not p.name.endswith(".json")]
    sidecars = [p for p in files if p.name.endswith(".json")]
    assert sorted(str(p) for p in media) == sorted(m[1] for m in manifest), (media, manifest)
    assert sorted(p.name for p in sidecars) == sorted(p.name + ".json" for p in media)
    assert {str(p): _sha(p) for p in media} == {m[1]: m[2] for m in manifest}


def test_each_slot_runs_on_one_daemon_only_and_the_survivor_takes_the_duty(env, daemons, tmp_path):
    """Two daemons, one "archive" duty: each slot has one run, by the holder;
    after the holder's SIGKILL the survivor holds the duty, does not run the
    same slots again and runs a new task's slot itself."""
    cfile_ids = _sync_calls(env)
    dest = tmp_path / "archive"
    launch = _now()
    at_time = (launch + dt.timedelta(seconds=15)).replace(microsecond=0)
    env.write_config(logging={"level": "info", "format": "json"}, archive={
        "enabled": True, "timezone": "Europe/Prague",
        "tasks": [_task("at-now", dest, "now"), _task("at-time", dest, at_time.isoformat())]})
    a, b = daemons("a"), daemons("b")
    both = (a, b)

    def holders():
        return [d for d in both if d.find("duty_claimed", duty="archive")]
    (holder,) = wait_until(holders, 30, "one daemon holding the archive duty")
    survivor = b if holder is a else a
    for d in both:
        d.wait_event("started", timeout=15)
    # the at-time task was first seen before its time: its slot comes while both run
    seen = wait_until(lambda: env.target("SELECT last_slot_at FROM synchrod.archive_tasks"
                                         " WHERE name = 'at-time'"), 20, "at-time seen")
    assert seen[0][0] < at_time, ("the first tick came after at-time's slot: machine too slow",
                                  seen, at_time)
    assert _now() < at_time and a.alive() and b.alive()

    wait_until(lambda: _completed(env, "at-now"), 30, "the at-now run")
    runs = wait_until(lambda: _completed(env, "at-time"), 40, "the at-time run")
    assert runs == [(at_time, "completed", holder.name, 4, 0)], runs
    (now_run,) = _runs(env, "at-now")
    assert now_run[1:] == ("completed", holder.name, 4, 0), now_run
    assert now_run[0] >= launch - dt.timedelta(seconds=1)
    time.sleep(6)   # another tick of the holder: nothing more
    assert len(_runs(env, "at-now")) == 1 and len(_runs(env, "at-time")) == 1
    assert holders() == [holder], "the duty is held by one live daemon only"
    for task in ("at-now", "at-time"):
        assert_archived_once(env, dest, task, cfile_ids)

    holder.kill9()
    survivor.wait_event("duty_claimed", timeout=20, duty="archive")
    time.sleep(6)   # the survivor's first tick holding the duty has come
    assert [r[:3] for r in _runs(env, "at-now")] == [(now_run[0], "completed", holder.name)]
    assert [r[:3] for r in _runs(env, "at-time")] == [(at_time, "completed", holder.name)]

    env.raw["archive"]["tasks"].append(_task("after", dest, "now"))
    env.write_config()
    survivor.signal(signal.SIGHUP)
    survivor.wait_event("config_reloaded", timeout=20)
    after = wait_until(lambda: _completed(env, "after"), 30, "the survivor's run of a new task")
    assert [r[1:] for r in after] == [("completed", survivor.name, 4, 0)], after
    assert_archived_once(env, dest, "after", cfile_ids)
    for task in ("at-now", "at-time"):
        assert len(_runs(env, task)) == 1
        assert_archived_once(env, dest, task, cfile_ids)
    total = env.target("SELECT count(*), count(DISTINCT (task, slot_at)) FROM synchrod.archive_runs")
    assert total == [(3, 3)], total
    assert survivor.stop() == 0


def _archive_run(env) -> int:
    """``synchrod archive run nightly`` as a real process; the run's id."""
    proc = synchrod(env, "archive", "run", "nightly", timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    (rid,) = env.target("SELECT max(id) FROM synchrod.archive_runs WHERE task = 'nightly'")[0]
    return rid


def _prune_like_the_daemon(env) -> tuple[int, int]:
    """What the daemon's pruner does (``Daemon._pruner``): the cycle history,
    then the archive history, with ``monitor.history_days`` of the configuration
    as synchrod reads it, on one real connection to the replay database."""
    days = env.config.monitor.history_days

    async def go():
        conn = await connect(env.raw["target"]["database"])
        try:
            return (await history.prune(conn, days), await archiveruns.prune(conn, days))
        finally:
            await conn.close()
    return asyncio.run(go())


def _age(env, table: str, run_id: int, days: float) -> None:
    """Moves a run of ``table`` (``runs`` or ``archive_runs``) ``days`` back in time."""
    env.target(f"UPDATE synchrod.{table} SET started_at = started_at - make_interval(days => %s),"
               f" finished_at = finished_at - make_interval(days => %s) WHERE id = %s",
               days, days, run_id)


def test_archive_history_is_pruned_with_the_cycle_history_and_the_manifest_stays(env, tmp_path):
    """Runs (and their entries) started more than ``monitor.history_days`` ago
    go with the old cycle runs; recent runs, their entries and the whole
    manifest stay, and a later run archives nothing twice."""
    env.raw["monitor"]["history_days"] = 7
    dest = tmp_path / "archive"
    env.write_config(archive={"enabled": False, "timezone": "UTC", "tasks": [
        {"name": "nightly", "destination": str(dest), "schedule": "daily", "at": "02:00",
         "min_age_minutes": 0}]})
    assert env.config.monitor.history_days == 7
    start = _now() - dt.timedelta(hours=3)
    env.add_calls(0, [CallSpec(f"p{i}", start - dt.timedelta(minutes=i), files=[wav(f"/calls/p{i}/0.wav")])
                      for i in range(3)])
    assert env.once("--until-idle").returncode == 0
    old_run = _archive_run(env)                          # archives p0..p2
    env.add_calls(1, [CallSpec("q0", start, files=[wav("/calls/q0/0.wav")])])
    assert env.once("--until-idle").returncode == 0
    new_run = _archive_run(env)                          # archives q0 only
    entries = dict(env.target("SELECT run_id, count(*) FROM synchrod.archive_entries GROUP BY 1"))
    assert entries == {old_run: 6, new_run: 2}, entries

    # history 10 days old (beyond 7, within the default 30) and 3 days old
    _age(env, "archive_runs", old_run, 10)
    _age(env, "archive_runs", new_run, 3)
    ten, three = _now() - dt.timedelta(days=10), _now() - dt.timedelta(days=3)
    for slot in (ten, three):
        env.target("INSERT INTO synchrod.archive_runs (task, slot_at, state, message, started_at,"
                   " finished_at, daemon) VALUES ('nightly', %s, 'missed', 'missed', %s, %s, 'x')",
                   slot, slot, slot)
    # a run still going that began 10 days ago (a long first backlog) keeps its row
    (long_run,), = env.target("INSERT INTO synchrod.archive_runs (task, slot_at, state, message,"
                              " started_at, daemon) VALUES ('other', %s, 'running', '', %s, 'x')"
                              " RETURNING id", ten, ten)
    cycles = [i for (i,) in env.target("SELECT id FROM synchrod.runs ORDER BY id")]
    assert len(cycles) >= 2
    _age(env, "runs", cycles[0], 10)
    _age(env, "runs", cycles[-1], 3)
    manifest = env.target("SELECT task, cfile_id, sid, destination, sha256, bytes, run_id,"
                          " archived_at FROM synchrod.archive_files ORDER BY cfile_id")
    assert sorted(r[6] for r in manifest) == [old_run] * 3 + [new_run]
    on_disk = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(on_disk) == 8

    pruned_cycles, pruned_archive = _prune_like_the_daemon(env)
    assert (pruned_cycles, pruned_archive) == (1, 2)
    left = env.target("SELECT id, state, slot_at FROM synchrod.archive_runs"
                      " WHERE id <> %s ORDER BY id", long_run)
    assert [r[:2] for r in left] == [(new_run, "completed"), (left[1][0], "missed")], left
    assert env.target("SELECT state FROM synchrod.archive_runs WHERE id = %s", long_run) == \
        [("running",)], "a run still going is not history yet"
    assert abs((left[1][2] - three).total_seconds()) < 1, left
    entries = dict(env.target("SELECT run_id, count(*) FROM synchrod.archive_entries GROUP BY 1"))
    assert entries == {new_run: 2}, "the old run's entries go with it, the recent ones stay"
    assert cycles[0] not in {i for (i,) in env.target("SELECT id FROM synchrod.runs")}
    assert cycles[-1] in {i for (i,) in env.target("SELECT id FROM synchrod.runs")}
    assert env.target("SELECT task, cfile_id, sid, destination, sha256, bytes, run_id, archived_at"
                      " FROM synchrod.archive_files ORDER BY cfile_id") == manifest, \
        "the manifest is not history: it stays whole"
    history_out = synchrod(env, "archive", "history", "nightly")
    assert history_out.returncode == 0, history_out.stderr
    assert str(new_run) in history_out.stdout

    again = _archive_run(env)                           # the manifest still makes it idempotent
    assert env.target("SELECT state, files_ok, files_failed FROM synchrod.archive_runs WHERE id = %s",
                      again) == [("completed", 0, 0)]
    assert sorted(p for p in dest.rglob("*") if p.is_file()) == on_disk
    assert len(env.target("SELECT 1 FROM synchrod.archive_files")) == 4
    assert _prune_like_the_daemon(env) == (0, 0), "nothing more to prune"


def test_a_slot_without_a_run_is_recorded_once_and_said_so(env):
    """``record_slot`` tells whether it recorded the slot, so a slot the
    scheduler meets again (or one that ran) is not counted a second time."""
    env.once(check_rc=0)   # synchrod's schema in the replay database
    slot = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.timezone.utc)
    ran = slot + dt.timedelta(days=1)

    async def go():
        conn = await connect(env.raw["target"]["database"])
        try:
            first = await archiveruns.record_slot(conn, "nightly", slot, "missed", "m", "d1")
            again = await archiveruns.record_slot(conn, "nightly", slot, "skipped", "s", "d2")
            assert await archiveruns.start(conn, "nightly", ran, "d1", None) is not None
            after_run = await archiveruns.record_slot(conn, "nightly", ran, "skipped", "s", "d2")
            return first, again, after_run
        finally:
            await conn.close()
    assert asyncio.run(go()) == (True, False, False)
    assert env.target("SELECT state, daemon FROM synchrod.archive_runs ORDER BY slot_at") == \
        [("missed", "d1"), ("running", "d1")]
