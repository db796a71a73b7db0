"""Archive export runs (SPEC §10) on the faithful CallREC schema with real
files: the Task/Date/Hour layout in a non-UTC time zone for calls near
midnight, byte-identical copies with their sha256, sidecars checked against
the database, modes, the manifest making runs idempotent, lookback, source
filter and minimum age, a missing replay file (a run with errors, the
others archived), a full destination (destination_full, then a later run
completing the rest), and a run killed mid-copy or before its commit."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from zoneinfo import ZoneInfo

import pytest
from _daemon import synchrod as synchrod_cli
from _sync_helpers import blob, define_phrases, tmpfs, wav

from synchrod.testing.recorders import CallSpec

PRAGUE = ZoneInfo("Europe/Prague")
UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)


def _archive(env, dest, **task):
    env.write_config(archive={"enabled": False, "timezone": "Europe/Prague", "tasks": [
        {"name": "nightly", "destination": str(dest), "schedule": "daily", "at": "02:00",
         "lookback_days": 30, "min_age_minutes": 0, **task}]})


def _sync(env, i: int, calls) -> None:
    env.add_calls(i, calls)
    assert env.once("--source", f"rec{i + 1}", "--until-idle").returncode == 0
    assert set(env.marks(i).values()) == {"S"}


def _run(env, *more):
    return synchrod_cli(env, "archive", "run", "nightly", *more, timeout=120)


def _files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _midnight_calls():
    """Two calls either side of midnight in Prague, two days ago (+01:00 in winter, +02:00 in
    summer: the expected folders come from the zone, not a fixed offset)."""
    day = (NOW - dt.timedelta(days=2)).astimezone(PRAGUE).date()
    midnight = dt.datetime.combine(day, dt.time(0, 0), PRAGUE).astimezone(UTC)
    before = CallSpec("before-midnight", midnight - dt.timedelta(minutes=20),
                      files=[wav("/calls/bm/0.wav"), blob("VIDEO", "/calls/bm/screen.mp4", 4096)],
                      extdata=[("agent", "007"), ("queue", "vip"), ("queue", "sales")],
                      voice_tags=[("hello", 100, 900, 80.0, "L")], description="first",
                      columns={"callingpartyname": "Alice"})
    after = CallSpec("after/midnight", midnight + dt.timedelta(minutes=20),
                     files=[wav("/calls/am/0.wav")])
    return before, after


def test_layout_sidecars_marks_and_idempotence(env, tmp_path):
    dest = tmp_path / "archive"
    _archive(env, dest)
    define_phrases(env, env.target_dsn(), "hello")   # voice tags map to the target's phrases
    _sync(env, 0, list(_midnight_calls()))
    proc = _run(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Task 'nightly' completed." in proc.stdout and "3 file(s) archived" in proc.stdout
    rows = env.target("SELECT f.id, f.cftype, f.cfpath, f.cfsize, c.sid, c.start_ts, c.id"
                      " FROM callrec.cfiles f JOIN callrec.couples c ON c.id = f.cplid ORDER BY f.id")
    assert len(rows) == 3
    for cfile_id, cftype, cfpath, cfsize, sid, start, cplid in rows:
        local = start.astimezone(PRAGUE)
        folder = dest / "nightly" / f"{local:%Y-%m-%d}" / f"{local:%H}"
        (media,) = [p for p in folder.iterdir() if p.name.endswith(f"_{cfile_id}{os.path.splitext(cfpath)[1]}")]
        assert "/" not in media.name and media.name.startswith(sid.replace("/", "_")[:5])
        assert media.read_bytes() == open(cfpath, "rb").read() and media.stat().st_size == cfsize
        assert stat.S_IMODE(media.stat().st_mode) == 0o640
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750
        side = json.loads((folder / (media.name + ".json")).read_text())
        assert side["schema_version"] == 1 and side["task"] == "nightly" and side["sid"] == sid
        assert side["source"] == "rec1" and side["couple_id"] == cplid
        assert dt.datetime.fromisoformat(side["start_ts"]) == start
        assert side["start_ts"].endswith(local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:])
        assert side["file"] == {"cfile_id": cfile_id, "cftype": cftype, "cfsize": cfsize,
                                "sha256": _sha(media), "replay_path": cfpath}
        if sid == "before-midnight":
            assert side["extdata"] == {"agent": ["007"], "queue": ["sales", "vip"]}
            assert [(t["phrase"], t["from_ms"], t["to_ms"], t["channel"]) for t in side["voice_tags"]] \
                == [("hello", 100, 900, "L")]
            assert side["callingpartyname"] == "Alice" and side["description"] == "first"
        manifest = env.target("SELECT destination, sha256, bytes FROM synchrod.archive_files"
                              " WHERE task = 'nightly' AND cfile_id = %s", cfile_id)
        assert manifest == [(str(media), _sha(media), cfsize)]
    # the two calls are on two dates: either side of midnight, local time
    assert len({p.parent.parent.name for p in _files(dest) if not p.name.endswith(".json")}) == 2
    marks = env.target("SELECT archived, b_method, b_location FROM callrec.couples")
    assert marks == [("A", "DISK_A", str(dest / "nightly"))] * 2
    entries = env.target("SELECT kind, result FROM synchrod.archive_entries ORDER BY id")
    assert sorted(entries) == [("media", "archived")] * 3 + [("sidecar", "archived")] * 3
    # a second run copies nothing again and changes nothing
    before = {p: (p.stat().st_mtime_ns, _sha(p)) for p in _files(dest)}
    again = _run(env)
    assert again.returncode == 0 and "0 file(s) archived" in again.stdout, again.stdout
    assert {p: (p.stat().st_mtime_ns, _sha(p)) for p in _files(dest)} == before
    history = synchrod_cli(env, "archive", "history", "nightly")
    assert history.stdout.count("Task 'nightly' completed.") == 2, history.stdout
    listing = synchrod_cli(env, "archive", "list")
    assert "nightly" in listing.stdout and "daily 02:00" in listing.stdout


def test_lookback_sources_and_minimum_age(env, tmp_path):
    dest = tmp_path / "archive"
    _archive(env, dest, lookback_days=10, min_age_minutes=30, sources=["rec1"])
    _sync(env, 0, [CallSpec("in", NOW - dt.timedelta(days=3), files=[wav("/calls/in/0.wav")]),
                   CallSpec("old", NOW - dt.timedelta(days=12), files=[wav("/calls/old/0.wav")]),
                   CallSpec("fresh", NOW - dt.timedelta(minutes=10), length=60,
                            files=[wav("/calls/fresh/0.wav")])])
    _sync(env, 1, [CallSpec("other", NOW - dt.timedelta(days=3), files=[wav("/calls/other/0.wav")])])
    assert _run(env).returncode == 0
    archived = {s for (s,) in env.target("SELECT sid FROM synchrod.archive_files")}
    assert archived == {"in"}
    assert len([p for p in _files(dest) if not p.name.endswith(".json")]) == 1


def test_missing_replay_file_gives_a_run_with_errors(env, tmp_path):
    dest = tmp_path / "archive"
    _archive(env, dest)
    _sync(env, 0, [CallSpec(f"c{i}", NOW - dt.timedelta(hours=5 + i), files=[wav(f"/calls/c{i}/0.wav")])
                   for i in range(3)])
    (gone,) = env.target("SELECT f.cfpath FROM callrec.cfiles f JOIN callrec.couples c ON c.id = f.cplid"
                         " WHERE c.sid = 'c1'")[0]
    os.unlink(gone)
    proc = _run(env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Task 'nightly' had errors" in proc.stdout and f"failed {gone}" in proc.stdout
    assert "missing_file" in proc.stdout
    assert {s for (s,) in env.target("SELECT sid FROM synchrod.archive_files")} == {"c0", "c2"}
    assert env.target("SELECT state, files_ok, files_failed FROM synchrod.archive_runs") == [("errors", 2, 1)]
    failed = env.target("SELECT kind, replay_path, message FROM synchrod.archive_entries"
                        " WHERE result = 'failed' ORDER BY kind")
    assert [(k, p) for k, p, _ in failed] == [("media", gone), ("sidecar", gone)]
    assert "does not exist" in failed[0][2]
    # no couple is marked archived that has a file not archived
    assert dict(env.target("SELECT sid, archived FROM callrec.couples")) == {"c0": "A", "c1": None, "c2": "A"}


def test_full_destination_ends_the_run_and_a_later_run_completes(env, tmp_path):
    # room for the first four media and sidecars, copied at once by the four workers, not six
    with tmpfs(tmp_path / "small", "700k") as small:
        _archive(env, small)
        _sync(env, 0, [CallSpec(f"big{i}", NOW - dt.timedelta(hours=5 + i),
                                files=[blob("AUDIO", f"/calls/big{i}/0.raw", 150 * 1024)])
                       for i in range(6)])
        proc = _run(env)
        assert proc.returncode == 1 and "destination_full" in proc.stdout, proc.stdout + proc.stderr
        (state, message, ok), = env.target("SELECT state, message, files_ok FROM synchrod.archive_runs")
        assert state == "failed" and "destination_full" in message and 1 <= ok < 6
        recorded = env.target("SELECT destination, sha256 FROM synchrod.archive_files")
        assert len(recorded) == ok and all(_sha(p) == h for p, h in recorded), "only complete files"
        assert not [p for p in _files(small) if ".synchrod-tmp." in p.name]
        # every media file left has its sidecar: one that could not be written took its media
        assert {str(p) for p in _files(small) if not p.name.endswith(".json")} == \
            {p for p, _ in recorded}
        # room again: the next run archives the rest, not the files already there
        for p, _ in recorded:
            os.unlink(p)
            os.unlink(p + ".json")
        assert _run(env).returncode in (0, 1)
        total = env.target("SELECT count(*) FROM synchrod.archive_files")[0][0]
        assert total > ok


@pytest.mark.parametrize("point", ["copy_partial", "archive_batch"])
def test_killed_run_leaves_nothing_unrepaired(env, tmp_path, point):
    dest = tmp_path / "archive"
    _archive(env, dest)
    _sync(env, 0, [CallSpec(f"k{i}", NOW - dt.timedelta(hours=5 + i),
                            files=[blob("AUDIO", f"/calls/k{i}/0.raw", 64 * 1024)]) for i in range(4)])
    import subprocess

    from _daemon import SYNCHROD, child_env
    killed = subprocess.run(SYNCHROD + ["archive", "run", "nightly", "-c", str(env.config_path)],
                            env=child_env({"SYNCHROD_FAULT": point}), capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert env.target("SELECT count(*) FROM synchrod.archive_files") == [(0,)], "nothing durable yet"
    assert env.target("SELECT count(*) FROM synchrod.archive_pending")[0][0] > 0
    proc = _run(env)
    assert proc.returncode == 0 and "4 file(s) archived" in proc.stdout, proc.stdout + proc.stderr
    assert not [p for p in _files(dest) if ".synchrod-tmp." in p.name]
    assert env.target("SELECT count(*) FROM synchrod.archive_pending") == [(0,)]
    for path, sha in env.target("SELECT destination, sha256 FROM synchrod.archive_files"):
        assert _sha(path) == sha and os.path.exists(path + ".json")
    states = [s for (s,) in env.target("SELECT state FROM synchrod.archive_runs ORDER BY id")]
    assert states == ["failed", "completed"], "the killed run is ended as interrupted"


def test_require_archived_prunes_only_what_the_task_archived(env, tmp_path):
    import asyncio

    from synchrod.config import from_dict
    from synchrod.pg.connect import connect
    from synchrod.storage.pruner import prune_round
    dest = tmp_path / "archive"
    _archive(env, dest, lookback_days=30)
    _sync(env, 0, [CallSpec(f"r{i}", NOW - dt.timedelta(days=3, hours=i), files=[wav(f"/calls/r{i}/0.wav")])
                   for i in range(3)])
    (gone,) = env.target("SELECT f.cfpath FROM callrec.cfiles f JOIN callrec.couples c ON c.id = f.cplid"
                         " WHERE c.sid = 'r1'")[0]
    os.rename(gone, gone + ".away")          # r1 cannot be archived this time
    assert _run(env).returncode == 1
    os.rename(gone + ".away", gone)
    env.raw["storage"] = {"enabled": True, "mode": "recording_priority", "prune_after_days": 1,
                          "require_archived": "nightly"}
    env.write_config()
    report = json.loads(synchrod_cli(env, "storage", "--json").stdout)
    assert report["plan"]["held_back"]["not_archived"] == 1
    assert sorted(c["sid"] for c in report["plan"]["next"]) == ["r0", "r2"]
    cfg = from_dict(env.raw)

    async def prune():
        conn = await connect(env.raw["target"]["database"])
        try:
            return await prune_round(conn, cfg.storage, [], daemon="t",
                                     owned_roots=cfg.target_paths())
        finally:
            await conn.close()
    result = asyncio.run(prune())
    assert result.calls == {"age": 2} and result.not_archived == 1
    assert dict(env.target("SELECT sid, deleted FROM callrec.couples")) == {"r0": "D", "r1": None, "r2": "D"}
    assert os.path.exists(gone)


def test_replay_paths_outside_the_target_and_mounts_are_refused_never_read(env, tmp_path):
    """A cfile row pointing outside the target paths and the sources' mounts
    (directly, or through a symlink placed under the target path) is that
    file's failure; nothing of it reaches the archive."""
    dest = tmp_path / "archive"
    _archive(env, dest)
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"not yours")
    _sync(env, 0, [CallSpec(f"u{i}", NOW - dt.timedelta(hours=5 + i), files=[wav(f"/calls/u{i}/0.wav")])
                   for i in range(3)])
    rows = dict(env.target("SELECT c.sid, f.cfpath FROM callrec.cfiles f"
                           " JOIN callrec.couples c ON c.id = f.cplid"))
    env.target("UPDATE callrec.cfiles SET cfpath = %s WHERE cfpath = %s", str(secret), rows["u0"])
    os.unlink(rows["u1"])
    os.symlink(secret, rows["u1"])
    proc = _run(env)
    assert proc.returncode == 1 and proc.stdout.count("unsafe_path") == 2, proc.stdout
    assert {s for (s,) in env.target("SELECT sid FROM synchrod.archive_files")} == {"u2"}
    assert not [p for p in _files(dest) if p.read_bytes() == b"not yours"]
