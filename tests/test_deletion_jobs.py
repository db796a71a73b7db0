"""Bulk delete jobs (SPEC §9, MediaSense ``deleteSessions``) on the faithful
CallREC schema with real files: created through the API (a token needed),
carried out by the daemon in batches without the client, with progress,
protected calls skipped and counted, a dry run changing nothing, cancelled
before or while running, resumed after a SIGKILL between a batch's commit
and its unlinks, counted in the metrics and pushed as SSE events."""
from __future__ import annotations

import asyncio
import datetime as dt
import os

import _daemon
from _daemon import wait_until
from _monitor import EventStream, enable_monitor, start_monitor, wait_listening
from test_purge import _calls, _paths_of, _state

from synchrod.pg.connect import connect
from synchrod.replay import deletionjobs
from synchrod.replay.deletionjobs import Selection
from synchrod.storage import jobs

daemons = _daemon.daemons


def _finished(mon, job_id: int, timeout: float = 30) -> dict:
    def probe():
        job = mon.get_json(f"/api/v1/deletions/{job_id}")
        return job if job["state"] in deletionjobs.FINAL else None
    return wait_until(probe, timeout, f"deletion job {job_id} to end")


def test_deletions_need_a_token_and_a_valid_body(env, daemons, tmp_path):
    _calls(env)
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    body = {"sids": ["old1"]}
    assert mon.post("/api/v1/deletions", json_body=body).status == 401
    assert mon.post("/api/v1/deletions", json_body=body, token="not.a.token").status == 401
    token = mon.login()
    for bad in ([], {"sids": []}, {"sids": "old1"}, {"sids": [1]}, {"sids": ["a\x00b"]},
                {"sids": ["old1"], "filter": {"before": "2030-01-01T00:00:00Z"}},
                {"filter": {}}, {"filter": {"after": "2020-01-01T00:00:00Z"}},
                {"filter": {"before": "yesterday"}}, {"filter": {"before": 5}},
                {"filter": {"before": "2030-01-01T00:00:00Z", "after": "2031-01-01T00:00:00Z"}},
                {"filter": {"before": "2030-01-01T00:00:00Z", "sourc": "rec1"}},
                {"sids": ["old1"], "dry_run": "yes"}, {"sids": ["old1"], "comment": "x" * 501},
                {"sids": ["old1"], "force": True}):
        reply = mon.post("/api/v1/deletions", json_body=bad, token=token)
        assert reply.status == 400 and reply.json()["error"], (bad, reply)
    assert mon.post("/api/v1/deletions", data=b"{nope", token=token).status == 400
    assert mon.get("/api/v1/deletions/999").status == 404
    assert mon.get("/api/v1/deletions/x").status == 404
    assert mon.post("/api/v1/deletions/999/cancel", token=token).status == 404
    assert mon.post("/api/v1/deletions/999/cancel").status == 401
    assert mon.get_json("/api/v1/deletions") == {"jobs": []}
    assert env.target("SELECT count(*) FROM synchrod.deletion_jobs") == [(0,)]
    assert mon.daemon.stop() == 0


def test_job_by_sids_deletes_skips_protected_and_reports_progress(env, daemons, tmp_path):
    _calls(env)
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    token = mon.login()
    body = {"sids": ["old1", "oldp", "nosuch", "new1"], "comment": "customer asked"}
    before = _state(env)
    dry = mon.post("/api/v1/deletions", json_body={**body, "dry_run": True}, token=token)
    preview = dry.expect(200).json()
    assert preview["dry_run"] and preview["operations"] == 2 and preview["skipped_protected"] == 1
    assert sorted(r["sid"] for r in preview["recordings"]) == ["new1", "old1"]
    assert preview["files"] == 2 and preview["bytes"] > 0
    assert _state(env) == before, "a dry run changes nothing"
    paths = _paths_of(env, "old1") + _paths_of(env, "new1")
    with EventStream(mon.url) as stream:
        reply = mon.post("/api/v1/deletions", json_body=body, token=token).expect(202).json()
        assert reply["state"] in ("queued", "running", "done") and reply["requested_by"] == "admin"
        job = _finished(mon, reply["id"])
        wait_until(lambda: any(e.name == "deletion_job" and e.json()["state"] == "done"
                               for e in stream.events), 10, "the done event")
        deleted = [e.json() for e in stream.events if e.name == "deletion"]
    assert job["state"] == "done" and job["operations_completed"] == 2
    assert job["skipped_protected"] == 1 and job["not_found"] == 1
    assert job["operations_remaining"] == 0 and job["bytes_freed"] == preview["bytes"]
    assert job["files_freed"] == 2 and job["comment"] == "customer asked"
    assert job["selection"] == {"kind": "sids", "count": 4}
    assert job["started_at"] and job["finished_at"] and job["daemon"]
    assert not any(os.path.exists(p) for p in paths)
    assert dict(env.target("SELECT sid, deleted FROM callrec.couples WHERE sid IN ('old1','new1','oldp')")) \
        == {"old1": "D", "new1": "D", "oldp": None}
    audit = env.target("SELECT sid, reason, requested_by, comment, job_id FROM synchrod.deletions ORDER BY sid")
    assert audit == [("new1", "api", "admin", "customer asked", job["id"]),
                     ("old1", "api", "admin", "customer asked", job["id"])]
    assert deleted and sorted(s for e in deleted for s in e["sids"]) == ["new1", "old1"]
    assert all(e["eventType"] == "SESSION_EVENT" and e["eventAction"] == "DELETED"
               and e["reason"] == "api" for e in deleted)
    metrics = mon.get("/metrics").text
    assert 'synchrod_deletion_jobs_total{state="done"} 1.0' in metrics
    assert 'synchrod_deletion_jobs_total{state="queued"} 1.0' in metrics
    assert 'synchrod_pruned_calls_total{reason="api"} 2.0' in metrics
    assert [j["id"] for j in mon.get_json("/api/v1/deletions")["jobs"]] == [job["id"]]
    # an ended job cannot be cancelled
    assert mon.post(f"/api/v1/deletions/{job['id']}/cancel", token=token).status == 409
    assert mon.daemon.stop() == 0


def test_job_by_filter_deletes_couples_with_metadata(env, daemons, tmp_path):
    _calls(env)
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    token = mon.login()
    (cut,) = env.target("SELECT start_ts FROM callrec.couples WHERE sid = 'new1'")[0]
    filt = {"before": cut.isoformat(), "source": "rec1"}
    other = mon.post("/api/v1/deletions", json_body={"filter": {**filt, "source": "rec2"},
                                                     "dry_run": True}, token=token).expect(200).json()
    assert other["operations"] == 0 and other["recordings"] == []
    reply = mon.post("/api/v1/deletions", json_body={"filter": filt, "metadata": True},
                     token=token).expect(202).json()
    job = _finished(mon, reply["id"])
    assert (job["state"], job["operations_completed"], job["skipped_protected"]) == ("done", 2, 1)
    assert job["selection"]["kind"] == "filter" and job["selection"]["source"] == "rec1"
    assert sorted(s for (s,) in env.target("SELECT sid FROM callrec.couples")) == ["new1", "new2", "oldp"]
    assert env.target("SELECT count(*) FROM synchrod.deletions WHERE metadata") == [(2,)]
    assert sorted(s for (s,) in env.target("SELECT sid FROM synchrod.tombstones")) == ["old1", "old2"]
    assert mon.daemon.stop() == 0


def _run_in_process(env, coro_fn):
    async def main():
        conn = await connect(env.raw["target"]["database"])
        try:
            return await coro_fn(conn)
        finally:
            await conn.close()
    return asyncio.run(main())


def test_cancel_a_queued_job_and_a_running_one_after_its_batch(env):
    _calls(env)
    env.once("--until-idle")   # synchrod's schema on the replay database

    async def scenario(conn):
        everything = Selection(before=(await conn.fetchval("SELECT max(start_ts) FROM callrec.couples"))
                               + dt.timedelta(seconds=1))
        queued = await deletionjobs.create(conn, everything, metadata=False, comment=None,
                                           requested_by="ops")
        cancelled = await deletionjobs.cancel(conn, queued["id"], "ops")
        assert cancelled["state"] == "cancelled" and cancelled["finished_at"]
        assert await jobs.carry_out(conn, queued["id"], daemon="t", owned_roots=[], progress=lambda *a: None,
                                    deleted=lambda e: None) is None, "an ended job is not taken on"
        running = await deletionjobs.create(conn, everything, metadata=False, comment=None,
                                            requested_by="ops")
        seen = []

        def progress(view, entered):
            seen.append((view["state"], view["operations_completed"], entered))
            if entered is None and len(seen) == 2:   # after the first batch: the API asks it to stop
                env.target("UPDATE synchrod.deletion_jobs SET cancel_requested = true WHERE id = %s",
                           running["id"])
        end = await jobs.carry_out(conn, running["id"], daemon="t", owned_roots=[str(env.target_path)],
                                   progress=progress, deleted=lambda e: None, batch=2)
        return end, seen
    end, seen = _run_in_process(env, scenario)
    # the first batch (old1, old2) went; the cancellation was seen before the next
    assert end["state"] == "cancelled" and end["operations_completed"] == 2, (end, seen)
    assert end["operations_remaining"] == 3 and end["cancel_requested"]
    assert [e for _, _, e in seen] == ["running", None, "cancelled"]
    assert dict(env.target("SELECT sid, deleted FROM callrec.couples")) == {
        "old1": "D", "old2": "D", "oldp": None, "new1": None, "new2": None}


def test_job_resumes_after_a_kill_between_commit_and_unlink(env, daemons, tmp_path):
    _calls(env)
    enable_monitor(env, tmp_path)
    paths = [p for sid in ("old1", "old2", "new1", "new2") for p in _paths_of(env, sid)]
    killed = daemons("killed", extra_env={"SYNCHROD_FAULT": "deletion_batch"})
    mon = wait_listening(killed, env.raw["monitor"], 60)
    token = mon.login()
    (last,) = env.target("SELECT max(start_ts) FROM callrec.couples")[0]
    everything = (last + dt.timedelta(seconds=1)).isoformat()
    reply = mon.post("/api/v1/deletions", json_body={"filter": {"before": everything}},
                     token=token).expect(202).json()
    assert killed.wait_exit(30) == -9
    # the first batch committed: its rows are gone, its files not yet
    assert env.target("SELECT state, operations_completed FROM synchrod.deletion_jobs") == [("running", 4)]
    assert all(os.path.exists(p) for p in paths)
    mon = start_monitor(daemons, env, "restarted")
    job = _finished(mon, reply["id"])
    assert job["state"] == "done" and job["operations_completed"] == 4 and job["skipped_protected"] == 1
    wait_until(lambda: not any(os.path.exists(p) for p in paths), 30, "the repair of the unlinks")
    assert env.target("SELECT count(*) FROM synchrod.deletions") == [(4,)]
    assert env.target("SELECT count(*) FROM synchrod.pending_unlink") == [(0,)]
    assert mon.daemon.stop() == 0


def test_one_daemon_at_a_time_carries_out_a_job_and_another_takes_it_over(env, daemons):
    """The holder of the deletions duty dies after a batch's commit; of the
    two daemons started then, exactly one takes the job over and ends it."""
    _calls(env)
    env.write_config(logging={"level": "info", "format": "json"})
    first = daemons("first", extra_env={"SYNCHROD_FAULT": "deletion_batch"})
    first.wait_event("started", timeout=30)

    async def queue(conn):
        last = await conn.fetchval("SELECT max(start_ts) FROM callrec.couples")
        return await deletionjobs.create(conn, Selection(before=last + dt.timedelta(seconds=1)),
                                         metadata=False, comment=None, requested_by="ops")
    job = _run_in_process(env, queue)
    assert first.wait_exit(30) == -9
    assert first.find("duty_claimed", duty="deletions")
    pair = [daemons("second"), daemons("third")]

    def ended():
        rows = env.target("SELECT state, daemon FROM synchrod.deletion_jobs WHERE id = %s", job["id"])
        return rows[0] if rows[0][0] == "done" else None
    _, by = wait_until(ended, 30, "the job to be taken over")
    runners = [d for d in pair if d.find("deletion_job_running")]
    assert [d.name for d in runners] == [by], [d.tail() for d in pair]
    assert env.target("SELECT count(*), count(DISTINCT sid) FROM synchrod.deletions") == [(4, 4)]
    for d in pair:
        assert d.stop() == 0
