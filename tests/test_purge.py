"""Removing target calls on request (SPEC §9, ``synchrod purge``), on the
faithful CallREC schema with real files: media pruned (couples kept with
``deleted = 'D'``) or couples deleted, protected calls skipped and counted,
every removal audited and tombstoned, a dry run changing nothing at all,
files removed only after the rows commit, and a pruned call never copied
back from any recorder."""
from __future__ import annotations

import asyncio
import hashlib
import os

import _daemon
from _daemon import synchrod as synchrod_cli
from _sync_helpers import spec
from synchrod.pg.connect import connect
from synchrod.replay import deletions
from synchrod.storage.purge import purge

daemons = _daemon.daemons


def _calls(env):
    """Five calls on rec1: three old (one protected), two young."""
    env.add_calls(0, [spec("old1", minutes_ago=3 * 24 * 60), spec("old2", minutes_ago=3 * 24 * 60 - 1),
                      spec("oldp", minutes_ago=3 * 24 * 60 - 2, protected=True),
                      spec("new1", minutes_ago=60), spec("new2", minutes_ago=59)])
    env.once("--source", "rec1", "--until-idle", check_rc=0)
    assert set(env.marks(0).values()) == {"S"}


def _state(env) -> tuple:
    """Everything a purge could change: target rows, synchrod's tables, the files."""
    files = sorted((str(p), hashlib.sha256(p.read_bytes()).hexdigest()) for p in env.target_files())
    return (env.target("SELECT id, sid, deleted, protected FROM callrec.couples ORDER BY id"),
            env.target("SELECT id, cplid, cfpath FROM callrec.cfiles ORDER BY id"),
            env.target("SELECT id FROM callrec.calls ORDER BY id"),
            env.target("SELECT * FROM synchrod.deletions"), env.target("SELECT * FROM synchrod.tombstones"),
            env.target("SELECT * FROM synchrod.pending_unlink"), files)


def _paths_of(env, sid: str) -> list[str]:
    return [p for (p,) in env.target("SELECT f.cfpath FROM callrec.cfiles f JOIN callrec.couples c"
                                     " ON c.id = f.cplid WHERE c.sid = %s", sid)]


def test_dry_run_changes_nothing(env):
    _calls(env)
    before = _state(env)
    proc = synchrod_cli(env, "purge", "--older-than", "2", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would remove media of old1 (cli)" in proc.stdout and "old2" in proc.stdout
    assert "skipped oldp: protected" in proc.stdout and "new1" not in proc.stdout
    assert "dry run: 2 call(s) would be removed" in proc.stdout, proc.stdout
    assert _state(env) == before


def test_old_media_pruned_protected_and_young_kept(env):
    _calls(env)
    old_paths = _paths_of(env, "old1") + _paths_of(env, "old2")
    kept = {sid: _paths_of(env, sid) for sid in ("oldp", "new1", "new2")}
    proc = synchrod_cli(env, "purge", "--older-than", "2", "--comment", "disk 2 retired")
    assert proc.returncode == 0, proc.stderr
    assert "removed media of old1 (cli): 1 file(s)" in proc.stdout, proc.stdout
    assert "2 call(s) removed (2 file(s)" in proc.stdout and "1 protected call(s) skipped" in proc.stdout
    # rows: the couples stay with deleted = 'D', their cfiles go; files removed after the commit
    assert dict(env.target("SELECT sid, deleted FROM callrec.couples")) == {
        "old1": "D", "old2": "D", "oldp": None, "new1": None, "new2": None}
    assert _paths_of(env, "old1") == [] and all(not os.path.exists(p) for p in old_paths)
    assert {sid: _paths_of(env, sid) for sid in kept} == kept
    assert all(os.path.exists(p) for ps in kept.values() for p in ps)
    audit = env.target("SELECT sid, reason, files, bytes > 0, metadata, comment FROM synchrod.deletions"
                       " ORDER BY sid")
    assert audit == [("old1", "cli", 1, True, False, "disk 2 retired"),
                     ("old2", "cli", 1, True, False, "disk 2 retired")]
    assert sorted(s for (s,) in env.target("SELECT sid FROM synchrod.tombstones")) == ["old1", "old2"]
    assert env.target("SELECT count(*) FROM synchrod.pending_unlink") == [(0,)]
    # nothing left to prune: a second purge removes nothing
    again = synchrod_cli(env, "purge", "--older-than", "2")
    assert "0 call(s) removed" in again.stdout, again.stdout


def test_named_sids_and_metadata(env):
    _calls(env)
    proc = synchrod_cli(env, "purge", "--sid", "new1", "--sid", "nosuch", "--metadata")
    assert proc.returncode == 1   # a named call could not be removed
    assert "removed call new1 (cli)" in proc.stdout and "not found nosuch" in proc.stdout
    assert env.target("SELECT count(*) FROM callrec.couples WHERE sid = 'new1'") == [(0,)]
    assert env.target("SELECT metadata FROM synchrod.deletions WHERE sid = 'new1'") == [(True,)]
    protected = synchrod_cli(env, "purge", "--sid", "oldp")
    assert protected.returncode == 1 and "skipped oldp: protected" in protected.stdout
    assert _paths_of(env, "oldp")
    ok = synchrod_cli(env, "purge", "--sid", "old1", "--source", "rec1")
    assert ok.returncode == 0 and "removed media of old1" in ok.stdout, ok.stdout
    other = synchrod_cli(env, "purge", "--sid", "old2", "--source", "rec2")
    assert other.returncode == 1 and "not found old2" in other.stdout   # not rec2's


def test_a_pruned_call_is_never_copied_back(env):
    """Pruned on the target, the same sids offered again by another recorder
    (one pruned of its media, one deleted whole): both marked N, no file and
    no row reappears; the pruned couple gets the metadata."""
    _calls(env)
    assert synchrod_cli(env, "purge", "--sid", "old1").returncode == 0
    assert synchrod_cli(env, "purge", "--sid", "old2", "--metadata").returncode == 0
    files_before = env.target_files()
    env.add_calls(1, [spec("old1", minutes_ago=3 * 24 * 60), spec("old2", minutes_ago=3 * 24 * 60 - 1),
                      spec("fresh", minutes_ago=30)])
    proc = env.once("--source", "rec2", "--until-idle", check_rc=0)
    assert env.marks(1) == {"old1": "N", "old2": "N", "fresh": "S"}, proc.stdout
    assert _paths_of(env, "old1") == [] and _paths_of(env, "old2") == []
    assert env.target("SELECT count(*) FROM callrec.couples WHERE sid = 'old2'") == [(0,)]
    assert env.target("SELECT deleted FROM callrec.couples WHERE sid = 'old1'") == [("D",)]
    new_files = sorted(set(env.target_files()) - set(files_before))
    assert [p.name for p in new_files] and all("fresh" in str(p) for p in new_files), new_files


def test_files_go_only_after_the_commit_and_a_repair_finishes_the_job(env):
    """A crash between a batch's commit and its unlinks leaves the files
    scheduled; the next cycle's repair removes them."""
    _calls(env)
    paths = _paths_of(env, "new1")

    async def prune_without_unlinking():
        conn = await connect(env.target_dsn())
        try:
            (cplid,), = env.target("SELECT id FROM callrec.couples WHERE sid = 'new1'")
            return await deletions.prune_batch(conn, [cplid], reason="cli", requested_by="test",
                                               comment=None, metadata=False,
                                               owned_roots=[str(env.target_path)])
        finally:
            await conn.close()
    done = asyncio.run(prune_without_unlinking())
    assert done.sids == ["new1"] and done.unlink == paths
    assert all(os.path.exists(p) for p in paths)      # the crash: not yet removed
    assert env.target("SELECT path FROM synchrod.pending_unlink") == [(p,) for p in paths]
    env.once("--source", "rec1", check_rc=0)
    assert not any(os.path.exists(p) for p in paths)
    assert env.target("SELECT count(*) FROM synchrod.pending_unlink") == [(0,)]


def test_purge_in_process_reports_what_a_dry_run_would_do(env):
    _calls(env)

    async def run(dry_run):
        conn = await connect(env.target_dsn())
        try:
            import datetime as dt
            return await purge(conn, before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2),
                               dry_run=dry_run, owned_roots=[str(env.target_path)])
        finally:
            await conn.close()
    dry = asyncio.run(run(True))
    real = asyncio.run(run(False))
    assert [(x.sid, x.files, x.bytes) for x in dry.removed] == [(x.sid, x.files, x.bytes)
                                                                for x in real.removed]
    assert dry.protected == real.protected == ["oldp"]


def test_recordings_pages_need_a_token_and_list_pruned_calls(env, daemons, tmp_path):
    from _monitor import enable_monitor, start_monitor
    _calls(env)
    assert synchrod_cli(env, "purge", "--sid", "old2").returncode == 0
    enable_monitor(env, tmp_path)
    mon = start_monitor(daemons, env)
    assert mon.get("/api/v1/recordings").status == 401
    token = mon.login()
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = mon.get("/api/v1/recordings", token=token, params=params).expect(200).json()
        seen += page["recordings"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [r["sid"] for r in seen] == ["old1", "old2", "oldp", "new1", "new2"]   # oldest first
    by_sid = {r["sid"]: r for r in seen}
    assert by_sid["old2"]["deleted"] and by_sid["old2"]["files"] == 0
    assert by_sid["old1"]["files"] == 1 and by_sid["old1"]["bytes"] > 0 and by_sid["old1"]["source"] == "rec1"
    assert by_sid["oldp"]["protected"] and not by_sid["new1"]["protected"]

    def sids(**params):
        reply = mon.get("/api/v1/recordings", token=token, params=params).expect(200).json()
        return [r["sid"] for r in reply["recordings"]]
    assert sids(deleted="true") == ["old2"]
    assert sids(protected="true") == ["oldp"]
    assert sids(source="rec2") == []
    cut = by_sid["new1"]["start_ts"]
    assert sids(before=cut) == ["old1", "old2", "oldp"] and sids(after=cut) == ["new1", "new2"]
    for bad in ({"before": "yesterday"}, {"protected": "maybe"}, {"cursor": "bm9wZQ=="},
                {"limit": "0"}):
        assert mon.get("/api/v1/recordings", token=token, params=bad).status == 400, bad
    assert mon.daemon.stop() == 0


def test_purge_and_storage_need_synchrods_schema(env):
    if env.target("SELECT to_regclass('synchrod.attempts') IS NOT NULL") == [(True,)]:
        env.target("DROP SCHEMA synchrod CASCADE")
    for args in (("purge", "--older-than", "1"), ("storage",)):
        proc = synchrod_cli(env, *args)
        assert proc.returncode == 69 and "run synchrod init-db" in proc.stderr, (args, proc.stderr)


def test_an_age_pass_goes_on_from_where_the_last_one_ended(env):
    """Automatic age pruning does not walk the pruned history every round:
    a round reports where its pass ended and the next starts there; a round
    cut short by its budget goes on from its last call."""
    import datetime as dt
    from synchrod.config import from_dict
    from synchrod.storage.pruner import prune_round
    _calls(env)
    raw = {**env.raw, "storage": {"enabled": True, "mode": "recording_priority", "prune_after_days": 1,
                                  "max_prune_calls": 1}}
    cfg = from_dict(raw).storage

    async def rounds():
        conn = await connect(env.target_dsn())
        try:
            kw = dict(daemon="test", owned_roots=[str(env.target_path)])
            first = await prune_round(conn, cfg, [], **kw)                      # budget: one call
            second = await prune_round(conn, cfg, [], age_position=first.age_position, **kw)
            third = await prune_round(conn, cfg, [], age_position=second.age_position, **kw)
            return first, second, third
        finally:
            await conn.close()
    first, second, third = asyncio.run(rounds())
    assert [e["sids"] for e in first.events] == [["old1"]]
    assert [e["sids"] for e in second.events] == [["old2"]]          # oldp is protected: passed over
    assert third.events == [] and third.age_position >= second.age_position
    assert third.age_position[0] < dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)


def test_recordings_by_source_the_same_whichever_way_the_page_is_read(env, monkeypatch):
    """A source with few couples is read from its synced rows, one with some
    by hashing them and walking the couples, one with many by probing couples
    in order: the three give the same pages."""
    from synchrod.replay import recordings
    _calls(env)
    env.add_calls(1, [spec("other", minutes_ago=30)])
    env.once("--source", "rec2", "--until-idle", check_rc=0)

    choose = recordings._statement

    async def pages(statement: str) -> list:
        async def chosen(conn, source, limit):
            return statement
        monkeypatch.setattr(recordings, "_statement", chosen)
        conn = await connect(env.raw["target"]["database"])
        try:
            out, cursor = [], None
            while True:
                page = await recordings.page(conn, before=None, after=None, source="rec1",
                                             protected=None, deleted=None, limit=2, cursor=cursor)
                out.append([r["sid"] for r in page["recordings"]])
                cursor = page["next_cursor"]
                if cursor is None:
                    return out
        finally:
            await conn.close()
    expected = [["old1", "old2"], ["oldp", "new1"], ["new2"]]
    for statement in (recordings._PAGE_FEW, recordings._PAGE_HASHED, recordings._PAGE):
        assert asyncio.run(pages(statement)) == expected, statement
    # the choice itself, on this small replay database: few
    async def chosen():
        conn = await connect(env.raw["target"]["database"])
        try:
            return await choose(conn, "rec1", 2)
        finally:
            await conn.close()
    assert asyncio.run(chosen()) is recordings._PAGE_FEW
