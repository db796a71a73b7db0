"""Archive schedules end to end with a real daemon (SPEC §10): a ``once``
task at "now" runs when the definition first appears and never again after
a restart; a once task whose time comes while no daemon runs is recorded as
``missed`` at the next start, not run late."""
from __future__ import annotations

import datetime as dt
import time

import _daemon
from _daemon import wait_until
from _sync_helpers import wav

from synchrod.testing.recorders import CallSpec

daemons = _daemon.daemons


def _runs(env) -> list[tuple]:
    return env.target("SELECT task, state, files_ok FROM synchrod.archive_runs ORDER BY id")


def test_once_now_runs_once_and_a_slot_passed_while_stopped_is_missed(env, daemons, tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    env.add_calls(0, [CallSpec("a1", now - dt.timedelta(hours=2), files=[wav("/calls/a1/0.wav")])])
    assert env.once("--until-idle").returncode == 0
    later = (now + dt.timedelta(seconds=20)).replace(microsecond=0)
    env.write_config(logging={"level": "info", "format": "json"}, archive={
        "enabled": True, "timezone": "Europe/Prague", "tasks": [
            {"name": "at-once", "destination": str(tmp_path / "arch"), "schedule": "once",
             "at": "now", "min_age_minutes": 0},
            {"name": "later", "destination": str(tmp_path / "arch"), "schedule": "once",
             "at": later.isoformat(), "min_age_minutes": 0}]})
    first = daemons("first")
    wait_until(lambda: ("at-once", "completed", 1) in _runs(env), 30, "the once-now run")
    assert first.find("duty_claimed", duty="archive")
    assert first.stop() == 0
    assert ("later",) not in [r[:1] for r in _runs(env)], "its time has not come yet"
    time.sleep(max(0.0, (later - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1))
    second = daemons("second")
    try:
        wait_until(lambda: ("later", "missed", 0) in _runs(env), 30, "the missed slot recorded")
    except AssertionError:
        raise AssertionError(f"{_runs(env)} {env.target('SELECT * FROM synchrod.archive_tasks')}\n{second.tail()}")
    time.sleep(6)   # another tick: nothing runs again
    assert _runs(env) == [("at-once", "completed", 1), ("later", "missed", 0)]
    (slot,), = env.target("SELECT slot_at FROM synchrod.archive_runs WHERE task = 'later'")
    assert slot == later
    assert second.stop() == 0


def test_a_slot_coming_while_the_previous_run_goes_on_is_skipped(env, tmp_path):
    """The scheduler's tick with a run of the task still going: the slot that
    comes is recorded ``skipped`` (once), and the next tick starts nothing."""
    import asyncio

    from synchrod.config import from_dict
    from synchrod.daemon.archivewatch import ArchiveWatch
    from synchrod.sync.engine import Engine
    env.write_config(archive={"enabled": True, "timezone": "UTC", "tasks": [
        {"name": "hourly", "destination": str(tmp_path / "arch"), "schedule": "hourly", "at": ":30"}]})
    assert env.once("--until-idle").returncode == 0   # synchrod's schema
    t0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)

    async def scenario():
        engine = Engine(from_dict(env.raw, str(env.config_path)))
        await engine.open()
        try:
            watch = ArchiveWatch(engine, ownership=None)
            watch.active_since = t0
            await watch.tick(t0)                      # first seen: its slots count from t0
            started = []
            watch.start = lambda task, slot, user=None: started.append(slot) or True
            watch.running["hourly"] = asyncio.get_running_loop().create_future()
            await watch.tick(t0 + dt.timedelta(minutes=31))   # 10:30 comes while it runs
            await watch.tick(t0 + dt.timedelta(minutes=32))
            del watch.running["hourly"]
            await watch.tick(t0 + dt.timedelta(minutes=91))   # 11:30 runs
            return started
        finally:
            await engine.close()
    started = asyncio.run(scenario())
    assert started == [t0 + dt.timedelta(minutes=90)]
    rows = env.target("SELECT slot_at, state, message FROM synchrod.archive_runs ORDER BY slot_at")
    assert [(r[0], r[1]) for r in rows] == [(t0 + dt.timedelta(minutes=30), "skipped")]
    assert "still going" in rows[0][2]
