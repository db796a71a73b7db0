"""The monitor's charts (``GET /api/v1/charts``, ``replay.samples``,
``daemon.sampler``) on a real replay database: calls per minute from the runs
of real cycles, spread over each run and cut at the window; the samples a
real daemon's state gives (owned sources only, filesystems only on the
storage duty's holder, a tick skipped when the database cannot be reached);
the buckets and their edges; pruning with the history and the index that
keeps the window's cost independent of the history kept; and the route of a
real `synchrod run`, whose own sampler writes a tick at the next minute."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess

import pytest
import structlog

import _daemon
from _daemon import wait_until
from _monitor import enable_monitor, start_monitor
from conftest import call
from synchrod.core import clock
from synchrod.daemon.process import Daemon
from synchrod.daemon.ownership import Ownership
from synchrod.pg.connect import connect, create_pool
from synchrod.replay import history, samples
from synchrod.sync.engine import Engine
from synchrod.sync.rounds import run_once

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)
MINUTE = dt.timedelta(minutes=1)


def _db(env, fn):
    """``fn(conn)`` on a real connection to env's replay database."""
    async def go():
        conn = await connect(env.target_dsn())
        try:
            return await fn(conn)
        finally:
            await conn.close()
    return asyncio.run(go())


def _runs(env) -> dict[str, tuple[int, int]]:
    """source -> (run id, synchronized) of each source's one run."""
    return {s: (i, n) for i, s, n in env.target(
        "SELECT id, source, synchronized FROM synchrod.runs WHERE synchronized > 0 ORDER BY id")}


def _move(env, run_id: int, started: dt.datetime, finished: dt.datetime) -> None:
    env.target("UPDATE synchrod.runs SET started_at = %s, finished_at = %s WHERE id = %s",
               started, finished, run_id)


def _df(path) -> tuple[str, float]:
    """(mount point, used %) of ``path`` as df(1) says."""
    out = subprocess.run(["df", "--output=target,pcent", str(path)], capture_output=True,
                         text=True, check=True).stdout.splitlines()[1].split()
    return out[0], float(out[1].rstrip("%"))


# --- the window -----------------------------------------------------------------------

@pytest.mark.parametrize("hours, step, count", [(1, 60, 60), (24, 60, 1440), (25, 120, 750),
                                                (48, 120, 1440), (720, 1800, 1440)])
def test_window_has_at_most_1440_buckets_of_whole_minutes_ending_now(hours, step, count):
    now = dt.datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=dt.timezone.utc)
    w = samples.window(now, hours)
    assert (w.step, w.count) == (step, count)
    assert w.start.timestamp() % step == 0                   # aligned on the epoch
    assert w.end - dt.timedelta(seconds=step) <= now < w.end  # the last bucket holds now
    assert w.end - w.start >= dt.timedelta(hours=hours) - dt.timedelta(seconds=step)
    assert w.time_of(0) == int(w.start.timestamp()) and w.time_of(2) == w.time_of(0) + 2 * step


# --- calls per minute from the cycle history ---------------------------------------------

def test_calls_per_minute_come_from_the_runs_of_real_cycles(env):
    env.add_calls(0, [call(f"c{i}", 30 + i) for i in range(3)])
    env.add_calls(1, [call("d1"), call("d2", 70)])
    env.run_inprocess()
    runs = _runs(env)
    assert {s: n for s, (_, n) in runs.items()} == {"rec1": 3, "rec2": 2}, runs
    names = ["rec1", "rec2"]
    now = clock.now()   # one window for every read: a minute passing moves no bucket

    def read(hours=24, sources=names):
        w = samples.window(now, hours)
        return w, _db(env, lambda conn: samples.calls_per_minute(conn, w, sources))

    # as written by the cycles: every call counted once, in the last minutes
    w, got = read()
    assert sorted(got) == names
    assert round(sum(v for _, v in got["rec1"]), 6) == 3 and round(sum(v for _, v in got["rec2"]), 6) == 2
    assert all(w.time_of(w.count - 3) <= t <= w.time_of(w.count - 1) for s in got for t, _ in got[s])
    assert sorted(read(sources=["rec2"])[1]) == ["rec2"]
    # a failed cycle (no call) draws nothing
    _db(env, lambda conn: history.failed_cycle(conn, "rec1", "d", now, "down", "gone"))
    assert sum(v for _, v in read()[1]["rec1"]) == pytest.approx(3)

    # a run of three minutes: one call a minute in each of its buckets
    t0 = w.start + 10 * MINUTE
    _move(env, runs["rec1"][0], t0, t0 + 3 * MINUTE)
    # rec2's run a day and an hour ago: outside the day, inside two days (buckets of 2 min)
    old = w.start - dt.timedelta(hours=1)
    _move(env, runs["rec2"][0], old, old)
    w, got = read()
    first = w.time_of(10)
    assert got == {"rec1": [[first, 1.0], [first + 60, 1.0], [first + 120, 1.0]]}, got
    w2, got2 = read(hours=48)
    assert w2.step == 120
    (t, rate), = got2["rec2"]
    assert rate == 1.0 and w2.time_of(0) <= t < int(w.start.timestamp()), got2   # 2 calls / 2 min
    # a run that started before the window: only its share inside counts
    _move(env, runs["rec1"][0], w.start - 2 * MINUTE, w.start + MINUTE)
    w, got = read()
    assert got == {"rec1": [[w.time_of(0), 1.0]]}, got


# --- samples from a real daemon's state ---------------------------------------------------

def test_sampler_ticks_write_what_the_daemon_knows(env):
    env.raw["synchro"]["calls_per_period"] = 2
    env.write_config()
    env.add_calls(0, [call(f"s{i}", 100 - 10 * i) for i in range(5)])   # s0 oldest
    started = {sid: ts for sid, ts in env.source(0, "SELECT sid, start_ts FROM callrec.couples")}
    mount, percent = _df(env.target_path)
    other = Ownership(env.target_dsn(), "elsewhere:1")

    async def go():
        engine = Engine(env.config)
        await engine.open()
        await engine.verify_sources()
        await run_once(engine, None, False, False)       # one round: 2 of rec1's 5 calls
        daemon = Daemon(env.config, engine)
        try:
            assert await daemon.ownership.claim({"rec1", "rec2"}) == {"rec1", "rec2"}
            await engine.measure_targets()
            assert await other.claim_duty("storage")      # another daemon measures storage
            with structlog.testing.capture_logs() as logs:
                written = [await daemon.sampler.tick()]
                await daemon.ownership.release({"rec2"})
                await other.close()
                written.append(await daemon.sampler.tick())   # rec1, and the filesystem now
                pool = engine.target_pool
                await pool.close()                             # the replay database is gone
                written += [await daemon.sampler.tick(), await daemon.sampler.tick()]
                engine.target_pool = await create_pool(env.target_dsn(), application_name="test",
                                                  max_size=2)
                await pool.close()
                written.append(await daemon.sampler.tick())
            return written, [e["event"] for e in logs if e["event"].startswith("samples_")]
        finally:
            await other.close()
            await daemon.ownership.close()
            await engine.close()
    before = clock.now()
    written, events = asyncio.run(go())
    assert written == [2, 2, 0, 0, 2], written
    assert events == ["samples_skipped", "samples_resumed"], events   # once per outage

    rows = env.target("SELECT source, daemon, backlog, lag_seconds, at FROM synchrod.source_samples "
                      "ORDER BY at, source")
    assert [r[0] for r in rows] == ["rec1", "rec2", "rec1", "rec1"], rows
    assert {r[1] for r in rows} == {env.target("SELECT DISTINCT daemon FROM synchrod.runs")[0][0]}
    rec1 = [r for r in rows if r[0] == "rec1"]
    # 3 calls left, the oldest of them s2: its age is the lag
    assert all(r[2] == 3 for r in rec1), rec1
    for r in rec1:
        assert r[3] == pytest.approx((r[4] - started["s2"]).total_seconds(), abs=0.2), r
    assert [r[2:4] for r in rows if r[0] == "rec2"] == [(0, 0.0)]
    assert all(before <= r[4] <= clock.now() for r in rows)

    fs = env.target("SELECT filesystem, used_ratio, level FROM synchrod.filesystem_samples")
    assert len(fs) == 2 and {r[0] for r in fs} == {mount}, fs           # not while another held the duty
    assert all(r[2] is None for r in fs), fs                             # space management off
    assert all(abs(r[1] * 100 - percent) <= 1.5 for r in fs), (fs, percent)

    # the series: bucketed, the worst of each bucket
    w = samples.window(clock.now(), 24)
    series = _db(env, lambda conn: samples.source_series(conn, w, ["rec1", "rec2", "rec3"]))
    assert sorted(series) == ["rec1", "rec2"]
    lag, backlog = series["rec1"]
    assert {b for _, b in backlog} == {3} and len(lag) == len(backlog) <= 2
    assert max(v for _, v in lag) == pytest.approx(max(r[3] for r in rec1), abs=0.1)
    use = _db(env, lambda conn: samples.filesystem_series(conn, w))
    assert list(use) == [mount] and all(level is None for _, _, level in use[mount])


def test_series_buckets_and_window_edges(env):
    env.run_inprocess()   # synchrod's schema
    now = clock.now()
    w = samples.window(now, 24)
    one = dt.timedelta(seconds=1)

    async def fill(conn):
        for at, lag, ratio, level in [(w.start - one, 999.0, 0.99, 3),   # just before the day
                                      (w.start, 10.0, 0.50, 0),
                                      (w.start + 59 * one, 30.0, 0.40, 1),   # same bucket: the worst
                                      (w.start + 60 * one, 5.0, 0.45, 0),
                                      (now, 7.5, 0.76, 1)]:
            await samples.write(conn, at, "d:1", [("rec1", int(lag), lag)], [("/srv", ratio, level)])
        return (await samples.source_series(conn, w, ["rec1"]),
                await samples.filesystem_series(conn, w))
    (lags, use) = _db(env, fill)
    last = w.time_of(w.count - 1)
    assert lags == {"rec1": ([[w.time_of(0), 30.0], [w.time_of(1), 5.0], [last, 7.5]],
                             [[w.time_of(0), 30], [w.time_of(1), 5], [last, 7]])}, lags
    assert use == {"/srv": [[w.time_of(0), 0.5, 1], [w.time_of(1), 0.45, 0], [last, 0.76, 1]]}, use


def test_samples_are_pruned_with_the_history_and_read_through_the_index(env):
    env.run_inprocess()
    # a sample a minute for 2 sources and a filesystem, aged 1 day to 30 days and an hour:
    # what an hourly prune finds (an hour's worth), with a day idle in front
    env.target("INSERT INTO synchrod.source_samples (at, source, daemon, backlog, lag_seconds) "
               "SELECT now() - make_interval(mins => m), s, 'd:1', 1, 1.0 "
               "FROM generate_series(1440, 30 * 1440 + 60) m, unnest(array['rec1', 'rec2']) s")
    env.target("INSERT INTO synchrod.filesystem_samples (at, filesystem, daemon, used_ratio, level) "
               "SELECT now() - make_interval(mins => m), '/srv', 'd:1', 0.5, 0 "
               "FROM generate_series(1440, 30 * 1440 + 60) m")
    env.target("ANALYZE synchrod.source_samples")
    env.target("ANALYZE synchrod.filesystem_samples")

    async def plans(conn):
        w = samples.window(clock.now(), 24)
        out = []
        for query, args in ((samples._SOURCES, (w.start, 60.0, w.count, ["rec1", "rec2"])),
                            (samples._FILESYSTEMS, (w.start, 60.0, w.count)),
                            (samples._PRUNE_SOURCES, (30,)), (samples._PRUNE_FILESYSTEMS, (30,))):
            out.append(json.dumps(json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + query, *args))))
        return out
    for plan, index in zip(_db(env, plans), ["source_samples_at", "filesystem_samples_at"] * 2):
        assert index in plan and "Seq Scan" not in plan, plan
    pruned = _db(env, lambda conn: samples.prune(conn, 30))
    assert pruned == 3 * 61, pruned   # the minutes 30 days to 30 days and an hour old
    left = env.target("SELECT min(at) > now() - interval '30 days', count(*) "
                      "FROM synchrod.source_samples")
    assert left == [(True, 2 * (30 * 1440 - 1440))], left


# --- the route on a real daemon ---------------------------------------------------------------

def test_charts_route_of_a_real_daemon(env, daemons, tmp_path):
    env.raw["synchro"]["sleep_period"] = 2
    enable_monitor(env, tmp_path)
    env.add_calls(0, [call("r1"), call("r2", 50)])
    env.run_inprocess()                    # two real runs, then an hour of samples before the start
    mount, _ = _df(env.target_path)
    now = clock.now()

    async def history_of_an_hour(conn):
        for m in range(60, 0, -5):
            await samples.write(conn, now - m * MINUTE, "before:1", [("rec1", m, 60.0 * m)],
                                [(mount, 0.2, None)])
    _db(env, history_of_an_hour)
    mon = start_monitor(daemons, env)
    body = mon.get_json("/api/v1/charts")
    assert (body["hours"], body["bucket_seconds"]) == (24, 60)
    start, end = (dt.datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert end - start == dt.timedelta(days=1) and start < now - dt.timedelta(hours=23) and end > now
    assert [s["source"] for s in body["sources"]] == ["rec1", "rec2"]
    rec1, rec2 = body["sources"]
    assert sum(v for _, v in rec1["calls_per_minute"]) == pytest.approx(2)
    assert rec2["calls_per_minute"] == []
    assert [v for _, v in rec1["lag_seconds"]][:12] == [60.0 * m for m in range(60, 0, -5)]
    assert [v for _, v in rec1["backlog"]][:12] == list(range(60, 0, -5))
    assert all(t % 60 == 0 for s in body["sources"] for k in ("calls_per_minute", "lag_seconds")
               for t, _ in s[k])
    (fs,) = body["filesystems"]
    assert fs["filesystem"] == mount and len(fs["use"]) >= 12
    assert body["storage"] == {"enabled": False, "levels": {"warning": {"enter": 75, "exit": 70},
                                                            "critical": {"enter": 90, "exit": 87},
                                                            "emergency": {"enter": 99, "exit": 97}}}
    assert mon.get_json("/api/v1/charts", params={"hours": 48})["bucket_seconds"] == 120
    for bad in ("0", "721", "x", "1.5"):
        reply = mon.get("/api/v1/charts", params={"hours": bad}).expect(400)
        assert "hours" in reply.json()["error"]

    # the daemon's own sampler: a tick at the start of the next minute, its lag known
    # (its sources' backlog known once they cycled: within two ticks)
    name = mon.daemon.wait_event("started")["daemon"]
    mine = "SELECT DISTINCT source, backlog, lag_seconds FROM synchrod.source_samples WHERE daemon = %s"
    rows = wait_until(lambda: len(env.target(mine, name)) >= 2 and env.target(mine, name), 130,
                      "the daemon's samples of both sources", 1)
    assert sorted(rows) == [("rec1", 0, 0.0), ("rec2", 0, 0.0)], rows
    assert {r[0] for r in env.target("SELECT at FROM synchrod.source_samples WHERE daemon = %s",
                                     name) if r[0].second >= 5} == set()   # at each minute's start
    assert env.target("SELECT DISTINCT filesystem, level FROM synchrod.filesystem_samples "
                      "WHERE daemon = %s", name) == [(mount, None)]
    body = mon.get_json("/api/v1/charts")
    assert body["sources"][0]["lag_seconds"][-1][1] == 0.0
    assert body["filesystems"][0]["use"][-1][0] > now.timestamp()
    assert mon.daemon.stop() == 0
