"""The metrics the operators' alerting rules need (etc/prometheus), on real
daemons: ``synchrod_source_owned`` (who runs each source's cycles, across two
daemons sharing the sources, a take-over and a source disabled through the
API), ``synchrod_config_last_reload_successful`` (a refused reload, a good
one) and ``synchrod_archive_runs_total{task,state}`` (a run completed, one
with errors, one failed, a slot missed while no daemon ran, a slot skipped
while the task was running elsewhere), each checked against the replay
database."""
from __future__ import annotations

import datetime as dt
import os
import time

import _daemon
import psycopg
import yaml
from _daemon import status_json, wait_until
from _monitor import enable_monitor, free_port, start_monitor
from _sync_helpers import wav
from test_metrics import promtool_check, scrape

from synchrod.archive.tasks import LOCK_CLASS
from synchrod.monitor.metrics import ARCHIVE_RUN_STATES
from synchrod.testing.recorders import CallSpec

daemons = _daemon.daemons   # the fixture (bound, not imported: no unused-import warning)

SOURCES = ("rec1", "rec2")


def _owned(mon) -> dict[str, float | None]:
    m = scrape(mon)
    return {s: m.get("synchrod_source_owned", source=s) for s in SOURCES}


def test_each_source_is_owned_by_one_daemon_and_reloads_are_gauged(env, daemons, tmp_path):
    env.raw["synchro"]["sleep_period"] = 1
    port_a, port_b = free_port(), free_port()
    enable_monitor(env, tmp_path, port=port_a)
    first = start_monitor(daemons, env, "d1")
    # alone, it owns both
    wait_until(lambda: _owned(first) == {"rec1": 1, "rec2": 1}, 20, "d1 owning both sources")
    m = scrape(first)
    assert m.value("synchrod_config_last_reload_successful") == 1
    assert m.families["synchrod_source_owned"].type == "gauge"
    assert m.families["synchrod_config_last_reload_successful"].type == "gauge"

    # the second daemon's file listens elsewhere: for the first one a refused reload
    enable_monitor(env, tmp_path, port=port_b)
    first.daemon.wait_event("config_reload_failed", key="monitor.listen")
    wait_until(lambda: scrape(first).get("synchrod_config_last_reload_successful") == 0, 10,
               "d1's reload gauge at 0")
    second = start_monitor(daemons, env, "d2")
    assert scrape(second).value("synchrod_config_last_reload_successful") == 1

    def shared():
        one, two = _owned(first), _owned(second)
        if all(sorted((one[s], two[s])) == [0, 1] for s in SOURCES) and \
                sum(one.values()) == 1:   # balanced: one source each
            return one, two
        return None
    one, two = wait_until(shared, 30, "each source owned by exactly one daemon, one each")
    # what `synchrod status` says once the daemons have published their ownership
    by_metrics = {s: (first if one[s] == 1 else second).daemon.name for s in SOURCES}
    wait_until(lambda: {s["sysname"]: s["owner"] for s in status_json(env)["sources"]}
               == by_metrics, 15, f"status naming the owners {by_metrics}")
    for s in SOURCES:
        owner, standby = (first, second) if one[s] == 1 else (second, first)
        # the standby reports no up/down for it (the owner does), but enabled and owned 0
        m = scrape(standby)
        assert m.get("synchrod_source_up", source=s) is None, m.text
        assert m.value("synchrod_source_enabled", source=s) == 1
        assert scrape(owner).value("synchrod_source_up", source=s) == 1
    # what the alert computes across the daemons: max by source of owned is 1 everywhere
    assert {s: max(one[s], two[s]) for s in SOURCES} == {"rec1": 1, "rec2": 1}
    promtool_check(scrape(second).text)

    # the first daemon killed: the survivor takes its source over
    first.daemon.kill9()
    wait_until(lambda: _owned(second) == {"rec1": 1, "rec2": 1}, 30, "d2 owning both sources")

    # a source disabled through the API is released: owned by nobody, and not enabled
    token = second.login()
    reply = second.action("rec1", "disable", token)
    assert reply.status in (200, 202), str(reply)
    wait_until(lambda: _owned(second) == {"rec1": 0, "rec2": 1}, 15, "rec1 released")
    m = scrape(second)
    assert m.value("synchrod_source_enabled", source="rec1") == 0
    assert m.value("synchrod_source_enabled", source="rec2") == 1

    # the reload gauge follows the last reload: refused (back to d1's port), then applied
    n = len(second.daemon.events("config_reload_failed"))
    enable_monitor(env, tmp_path, port=port_a)
    wait_until(lambda: len(second.daemon.events("config_reload_failed")) > n, 10, "d2 refusing")
    wait_until(lambda: scrape(second).get("synchrod_config_last_reload_successful") == 0, 10,
               "d2's reload gauge at 0")
    ok = len(second.daemon.events("config_reloaded"))
    enable_monitor(env, tmp_path, port=port_b)
    wait_until(lambda: len(second.daemon.events("config_reloaded")) > ok, 10, "d2 reloading")
    wait_until(lambda: scrape(second).get("synchrod_config_last_reload_successful") == 1, 10,
               "d2's reload gauge back at 1")
    assert second.daemon.stop() == 0


# --- archive runs by end state -------------------------------------------------------------

def _task(name: str, dest, at: dt.datetime, **more) -> dict:
    return {"name": name, "destination": str(dest), "schedule": "once",
            "at": at.isoformat(timespec="seconds"), "min_age_minutes": 0, **more}


def _runs_counted(mon) -> dict[tuple[str, str], float]:
    m = scrape(mon)
    return {(s.labels["task"], s.labels["state"]): s.value
            for s in m.families["synchrod_archive_runs"].samples if s.name.endswith("_total")}


def _wait_counted(mon, task: str, state: str, n: int = 1) -> None:
    wait_until(lambda: _runs_counted(mon).get((task, state)) == n, 30,
               f"synchrod_archive_runs_total{{task={task!r},state={state!r}}} == {n}")


def _reconfigure(env, tasks: list[dict]) -> None:
    """A new archive section, the file replaced by a rename: the daemon never reads half a file."""
    env.raw["archive"] = {"enabled": True, "timezone": "UTC", "tasks": tasks}
    tmp = env.config_path.with_name(".synchrod.yaml.new")
    tmp.write_text(yaml.safe_dump(env.raw, sort_keys=False))
    os.rename(tmp, env.config_path)


def test_archive_runs_are_counted_by_how_each_slot_ended(env, daemons, tmp_path):
    now = dt.datetime.now(dt.UTC)
    env.add_calls(0, [CallSpec(f"a{i}", now - dt.timedelta(hours=2 + i),
                               files=[wav(f"/calls/a{i}/0.wav")]) for i in range(2)])
    env.add_calls(1, [CallSpec(f"b{i}", now - dt.timedelta(hours=2 + i),
                               files=[wav(f"/calls/b{i}/0.wav")]) for i in range(2)])
    assert env.once("--until-idle").returncode == 0
    # one of rec2's replay files gone: its task's run ends with errors
    (gone,), = env.target("SELECT f.cfpath FROM callrec.cfiles f JOIN callrec.couples c"
                          " ON c.id = f.cplid WHERE c.sid = 'b1'")
    os.unlink(gone)
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("a file where the archive's folder should be\n")
    later = now + dt.timedelta(days=6)   # never due during the test: these run by hand
    tasks = [_task("good", tmp_path / "arch", later, sources=["rec1"]),
             _task("gappy", tmp_path / "arch", later, sources=["rec2"]),
             _task("broken", not_a_dir, later)]
    env.raw["archive"] = {"enabled": True, "timezone": "UTC", "tasks": tasks}
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env, "first")
    counted = _runs_counted(mon)
    assert counted == {(t["name"], s): 0 for t in tasks for s in ARCHIVE_RUN_STATES}, counted
    mon.daemon.wait_event("duty_claimed", duty="archive")

    # a once slot seen by this daemon, whose time comes while no daemon runs: missed
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)).replace(microsecond=0)
    tasks.append(_task("late", tmp_path / "arch", due))
    _reconfigure(env, tasks)
    wait_until(lambda: env.target("SELECT 1 FROM synchrod.archive_tasks WHERE name = 'late'"),
               12, "the task 'late' seen before its time")
    assert dt.datetime.now(dt.UTC) < due, "seen too late for the test"
    assert _runs_counted(mon)[("late", "missed")] == 0   # a task added by a reload starts at 0
    assert mon.daemon.stop() == 0
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds() + 1))
    mon = start_monitor(daemons, env, "second")
    _wait_counted(mon, "late", "missed")

    token = mon.login()
    for name, state in (("good", "completed"), ("gappy", "errors"), ("broken", "failed")):
        mon.post(f"/api/v1/archive/tasks/{name}/run", token=token).expect(202)
        _wait_counted(mon, name, state)

    # a slot that comes while the task runs in another process (its lock held): skipped
    with psycopg.connect(env.target_dsn(), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext('busy'))", (LOCK_CLASS,))
        due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=8)).replace(microsecond=0)
        tasks.append(_task("busy", tmp_path / "arch", due))
        _reconfigure(env, tasks)
        _wait_counted(mon, "busy", "skipped")

    expected = {(t["name"], s): 0 for t in tasks for s in ARCHIVE_RUN_STATES}
    expected.update({("late", "missed"): 1, ("good", "completed"): 1, ("gappy", "errors"): 1,
                     ("broken", "failed"): 1, ("busy", "skipped"): 1})
    m = scrape(mon)
    assert _runs_counted(mon) == expected
    # the same as the replay database's history (every run of this test ended on "second")
    rows = env.target("SELECT task, state, count(*) FROM synchrod.archive_runs GROUP BY 1, 2")
    assert {(t, s): n for t, s, n in rows} == {k: v for k, v in expected.items() if v}
    (message,), = env.target("SELECT message FROM synchrod.archive_runs WHERE task = 'broken'")
    assert message.startswith("Task 'broken' failed: destination_unwritable: ") \
        and "Not a directory" in message, message
    assert m.value("synchrod_archive_files_total", task="gappy", result="failed") == 1
    assert m.value("synchrod_archive_files_total", task="gappy", result="archived") == 1
    assert m.value("synchrod_archive_files_total", task="good", result="archived") == 2
    assert m.families["synchrod_archive_runs"].type == "counter"
    promtool_check(m.text)
    assert mon.daemon.stop() == 0
